"""`bifrost-sim import CAPTURE -o FILE`: the exchanges of a pcap/pcapng capture, as a cassette.

Any protocol with a recording codec (simulators.recording.codec), on any port: Modbus/TCP, RTU over
TCP, S7. Each TCP connection of the capture is reassembled (simulators.recording.tcp); the codec that
recognises its client's first bytes (`sniff`) cuts both directions into frames with the protocol's
own framers and pairs requests with their responses — by the protocol's id where it has one (Modbus's
transaction id, S7's PDU reference: a client may pipeline), in turn over RTU (one request at a time).
Which side is the client: the one that sent the SYN; with no handshake in the capture, the one that
spoke first, unless only the other side's first frame is a request.

Modbus/TCP is an MBAP header, RTU a frame whose CRC matches, S7 a TPKT packet holding COTP; a
connection no codec recognises is skipped and said so. A device is a server address
(`10.0.0.5:502`) unless `device` names the only one. Nothing is lost quietly: requests that got no
answer go into the cassette with a null response (replay answers them with nothing, as the device
did), and the report lists them, the answers that match no request, and the streams that broke.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from simulators.recording.cassette import Cassette, Entry, header
from simulators.recording.codec import Codec, Frame, codec_for, codec_of_framing, known_codecs
from simulators.recording.pcap import read_capture
from simulators.recording.tcp import Connection, Direction, Endpoint, reassemble_records

_TITLES = {"modbus": "Modbus", "s7": "S7", "opcua": "OPC UA"}  # how a report names a protocol
FramingChoice = str
""""auto", or a framing of one protocol: "mbap", "rtu" (Modbus), "s7"."""


@dataclass
class ConnectionReport:
    name: str
    framing: str  # "mbap", "rtu", "s7", ..., or "skipped"
    protocol: str = ""
    exchanges: int = 0
    unanswered: int = 0
    unmatched: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    capture: str
    packets: int = 0
    exchanges: int = 0
    connections: list[ConnectionReport] = field(default_factory=list)
    skipped_packets: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def unanswered(self) -> int:
        return sum(c.unanswered for c in self.connections)

    @property
    def unmatched(self) -> int:
        return sum(c.unmatched for c in self.connections)

    def lines(self) -> list[str]:
        out = [
            f"{self.capture}: {self.packets} packets, {len(self.connections)} TCP connection(s), "
            f"{self.exchanges} exchange(s); {self.unanswered} request(s) without an answer, "
            f"{self.unmatched} answer(s) matching no request"
        ]
        for report in self.connections:
            if report.framing == "skipped":
                out.append(f"  {report.name}: skipped: {'; '.join(report.notes)}")
                continue
            line = f"  {report.name}: {report.framing}, {report.exchanges} exchange(s)"
            if report.unanswered or report.unmatched:
                line += f", {report.unanswered} unanswered, {report.unmatched} unmatched"
            out.append(line)
            out.extend(f"    {note}" for note in report.notes)
        for why, count in sorted(self.skipped_packets.items()):
            out.append(f"  {count} packet(s) skipped: {why}")
        out.extend(f"  {note}" for note in self.notes)
        return out


def _client(connection: Connection, codecs: Sequence[Codec]) -> Endpoint | None:
    if connection.client is not None:
        return connection.client
    talking = [end for end, side in connection.sides.items() if side.chunks]
    if not talking:
        return None
    if len(talking) == 1:
        return talking[0]
    first, second = sorted(talking, key=lambda end: connection.sides[end].chunks[0][0])
    # The capture may start between a request and its answer: then the first to speak is the server.

    def starts_with_request(end: Endpoint) -> bool:
        data = connection.sides[end].chunks[0][1]
        for codec in codecs:
            framing = codec.sniff(data)
            if framing is not None:
                return codec.opens_request(framing, data)
        return any(codec.opens_request(codec.framings[0], data) for codec in codecs)

    if not starts_with_request(first) and starts_with_request(second):
        return second
    return first


def _choose(first: bytes, codecs: Sequence[Codec]) -> tuple[Codec, str] | None:
    for codec in codecs:
        framing = codec.sniff(first)
        if framing is not None:
            return codec, framing
    return None


def import_capture(
    path: str | Path,
    *,
    framing: str = "auto",
    device: str | None = None,
    ports: Sequence[int] = (),
    protocols: Sequence[str] = (),
) -> tuple[Cassette, ImportReport]:
    """The exchanges of a capture as a cassette, and a report of what could not be used.

    `framing`: "auto" tells the protocol and its framing per connection (Modbus/TCP, RTU over TCP, S7,
    ...), or one framing of one protocol ("mbap", "rtu", "s7") for every connection. `protocols`: only
    these (default: every protocol with a codec). `ports`: only connections to these server ports
    (default: every port). `device`: the device name for every exchange (default: the server's address).
    A ValueError names a framing or protocol that is not known.
    """
    if framing == "auto":
        codecs = [codec_for(name) for name in protocols] if protocols else known_codecs()
        forced: tuple[Codec, str] | None = None
    else:
        forced = (codec_of_framing(framing), framing)
        codecs = [forced[0]]
    capture = read_capture(path)
    report = ImportReport(str(path), packets=len(capture.records), notes=list(capture.notes))
    streams = reassemble_records(capture.data, capture.records)
    report.skipped_packets = dict(streams.skipped)
    # (request time, order found, protocol, device, connection, request frame, response PDU, latency)
    exchanges: list[tuple[float, int, str, str, int, Frame, bytes | None, float | None]] = []
    numbers: dict[int, int] = {}
    origin = capture.records[0][0] if capture.records else 0.0  # notes give times from the capture's start
    for connection in streams.connections:
        client = _client(connection, codecs)
        if client is None:
            continue  # a handshake with no data: nothing to say
        server = connection.other(client)
        name = f"{client[0]}:{client[1]} -> {server[0]}:{server[1]}"
        if ports and server[1] not in ports:
            continue
        requests_side = connection.sides.get(client, Direction())
        responses_side = connection.sides.get(server, Direction())
        first = b"".join(chunk for _, chunk in requests_side.chunks[:8])[:512]  # a frame may span segments
        found = forced or _choose(first, codecs)
        conn_report = ConnectionReport(name, "skipped" if found is None else found[1])
        report.connections.append(conn_report)
        if found is None:
            shown = sorted(codecs, key=lambda codec: codec.protocol != "modbus")  # Modbus first: the common case
            titles = [_TITLES.get(codec.protocol, codec.protocol) for codec in shown]
            known = titles[0] if len(titles) == 1 else f"{', '.join(titles[:-1])} or {titles[-1]}"
            conn_report.notes.append(f"not {known}: the client's first bytes are {first[:12].hex(' ')}")
            continue
        codec, chosen = found
        conn_report.protocol = codec.protocol
        for side in (requests_side, responses_side):
            conn_report.notes.extend(side.gaps)
        asked = codec.frames(chosen, requests_side, "requests", conn_report.notes, "client", origin)
        answered = codec.frames(chosen, responses_side, "responses", conn_report.notes, "server", origin)
        number = numbers.setdefault(connection.number, len(numbers) + 1)
        name_of_device = device or f"{server[0]}:{server[1]}"
        pairs = codec.pair(chosen, asked, answered)
        protocol = codec.protocol
        append = exchanges.append
        for request, response in pairs:
            if request is None:
                assert response is not None
                conn_report.unmatched += 1
                tid = "" if response[1] is None else f"transaction {response[1]}, "
                conn_report.notes.append(
                    f"answer at t={response[0] - origin:.6f}s ({tid}unit {response[2]}) matches no request: left out"
                )
                continue
            if response is None:
                conn_report.unanswered += 1
                append((request[0], len(exchanges), protocol, name_of_device, number, request, None, None))
            else:
                latency = max(0.0, response[0] - request[0])
                append((request[0], len(exchanges), protocol, name_of_device, number, request, response[3], latency))
            conn_report.exchanges += 1
    exchanges.sort()  # by request time, then the order found (a tuple's first two fields decide)
    start = exchanges[0][0] if exchanges else 0.0
    cassette = Cassette(header=header(f"import {Path(path).name}"))
    # tuple.__new__ with every field: an Entry without the cost of NamedTuple's keyword handling.
    new = tuple.__new__
    cassette.entries = [
        new(Entry, (protocol, device_name, frame[2], number, when - start, frame[3], answer, latency, frame[1], None))
        for when, _, protocol, device_name, number, frame, answer, latency in exchanges
    ]
    report.exchanges = len(cassette.entries)
    return cassette, report


__all__ = ["ConnectionReport", "ImportReport", "import_capture"]
