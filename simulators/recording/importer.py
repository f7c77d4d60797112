"""`bifrost-sim import CAPTURE -o FILE`: the Modbus exchanges of a pcap/pcapng capture, as a cassette.

Modbus/TCP on any port, and RTU over TCP: each TCP connection of the capture is reassembled
(simulators.recording.tcp), cut into frames by bifrost.modbus.framing's framers, and its requests
paired with their responses — by transaction id over Modbus/TCP (a client may pipeline), in turn over
RTU (one request at a time). Which side is the client: the one that sent the SYN; with no handshake
in the capture, the one that spoke first, unless only the other side's first frame is a request.

A connection is read as Modbus/TCP when its client's first bytes are an MBAP header, as RTU when they
are a frame whose CRC matches; anything else is skipped and said so. A device is a server address
(`10.0.0.5:502`) unless `device` names the only one. Nothing is lost quietly: requests that got no
answer go into the cassette with a null response (replay answers them with nothing, as the device
did), and the report lists them, the answers that match no request, and the streams that broke.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bifrost.modbus.framing import BrokenStream, Frame, MbapFramer, RtuFramer
from bifrost.modbus.pdu import MAX_PDU
from simulators.recording.cassette import Cassette, Entry, header
from simulators.recording.pcap import read_capture
from simulators.recording.tcp import Connection, Direction, Endpoint, reassemble_records

FramingChoice = Literal["auto", "mbap", "rtu"]


@dataclass
class ConnectionReport:
    name: str
    framing: str  # "mbap", "rtu", or "skipped"
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


def _framing_of(data: bytes) -> str | None:
    """ "mbap" or "rtu" from a client's first bytes, told by the framers themselves; None: neither."""
    # An RTU frame whose CRC matches is the stronger evidence: an MBAP header is only two zero bytes
    # and a plausible length, which the start of many RTU requests also is.
    rtu = RtuFramer("requests").feed(data[:256])
    if rtu and type(rtu[0]) is Frame:
        return "rtu"
    mbap = MbapFramer().feed(data)
    if mbap and type(mbap[0]) is Frame:
        return "mbap"
    return None


# A frame as the importer keeps it: (time of the packet completing it, transaction id, unit, PDU). A
# plain tuple: an import makes one per frame, and pairing and the cassette need nothing more.
_Frame = tuple[float, int | None, int, bytes]
_MBAP = struct.Struct(">HHHB")
_MAX_LENGTH = MAX_PDU + 1  # unit + PDU, as MbapFramer checks it


def _frames(
    side: Direction, framing: str, expect: Literal["requests", "responses"], notes: list[str], who: str, origin: float
) -> list[_Frame]:
    """The frames of one direction with the time of the packet that completed each."""
    if framing == "mbap" and not side.gap_before:
        return _mbap_segments(side.chunks) or _mbap_frames(side, notes, who, origin)
    framer: MbapFramer | RtuFramer = MbapFramer() if framing == "mbap" else RtuFramer(expect)
    out: list[_Frame] = []
    append = out.append
    for index, (when, data) in enumerate(side.chunks):
        if index in side.gap_before:
            # Lost bytes: start afresh at this segment, which most likely begins a frame.
            framer = MbapFramer() if framing == "mbap" else RtuFramer(expect)
            notes.append(f"{who}: bytes lost before t={when - origin:.6f}s; framing restarted there")
        for item in framer.feed(data):
            if type(item) is Frame:
                append((when, item.transaction_id, item.unit, item.pdu))
            elif isinstance(item, BrokenStream):
                notes.append(f"{who}: stream broken at t={when - origin:.6f}s: {item.reason}")
            else:
                notes.append(f"{who}: damaged frame at t={when - origin:.6f}s: {item.reason}")  # type: ignore[union-attr]
    if isinstance(framer, RtuFramer):
        for item in framer.silence():
            if type(item) is Frame:
                append((side.chunks[-1][0], item.transaction_id, item.unit, item.pdu))
    return out


def _mbap_segments(chunks: list[tuple[float, bytes]]) -> list[_Frame] | None:
    """The fastest path, and the common one: every segment is exactly one well-formed MBAP frame (what
    a client and a server send with one write per frame). None when any is not: then the stream is cut
    as a whole. The checks are MbapFramer's, so both paths give the same frames."""
    unpack = _MBAP.unpack_from
    out: list[_Frame] = []
    append = out.append
    for when, data in chunks:
        size = len(data)
        if size < 8:
            return None
        transaction_id, protocol, length, unit = unpack(data)
        if protocol or size != length + 6 or length > _MAX_LENGTH:
            return None
        append((when, transaction_id, unit, data[7:]))
    return out


def _mbap_frames(side: Direction, notes: list[str], who: str, origin: float) -> list[_Frame]:
    """The fast path of an unbroken Modbus/TCP stream: the framer cuts the whole stream at once, and each
    frame takes the time of the segment holding its last byte (MBAP frames are their PDU plus 7 bytes)."""
    chunks = side.chunks
    items = MbapFramer().feed(b"".join(data for _, data in chunks))
    out: list[_Frame] = []
    append = out.append
    index, chunk_end, position = 0, len(chunks[0][1]) if chunks else 0, 0
    for item in items:
        if type(item) is not Frame:
            while index + 1 < len(chunks) and chunk_end <= position:
                index += 1
                chunk_end += len(chunks[index][1])
            notes.append(f"{who}: stream broken at t={chunks[index][0] - origin:.6f}s: {item.reason}")  # type: ignore[union-attr]
            break
        position += len(item.pdu) + 7
        while chunk_end < position:
            index += 1
            chunk_end += len(chunks[index][1])
        append((chunks[index][0], item.transaction_id, item.unit, item.pdu))
    return out


def _client(connection: Connection) -> Endpoint | None:
    if connection.client is not None:
        return connection.client
    talking = [end for end, side in connection.sides.items() if side.chunks]
    if not talking:
        return None
    if len(talking) == 1:
        return talking[0]
    first, second = sorted(talking, key=lambda end: connection.sides[end].chunks[0][0])
    # The capture may start between a request and its answer: then the first to speak is the server.
    from bifrost.modbus.pdu import MalformedFrame, decode_request

    def starts_with_request(end: Endpoint) -> bool:
        data = connection.sides[end].chunks[0][1]
        pdu = data[7:] if _framing_of(data) == "mbap" else data[1:-2]
        try:
            decode_request(pdu)
        except MalformedFrame:
            return False
        return True

    if not starts_with_request(first) and starts_with_request(second):
        return second
    return first


def import_capture(
    path: str | Path,
    *,
    framing: FramingChoice = "auto",
    device: str | None = None,
    ports: Sequence[int] = (),
) -> tuple[Cassette, ImportReport]:
    """The Modbus exchanges of a capture as a cassette, and a report of what could not be used.

    `framing`: "auto" tells Modbus/TCP from RTU over TCP per connection. `ports`: only connections to
    these server ports (default: every port). `device`: the device name for every exchange (default:
    the server's address).
    """
    capture = read_capture(path)
    report = ImportReport(str(path), packets=len(capture.records), notes=list(capture.notes))
    streams = reassemble_records(capture.data, capture.records)
    report.skipped_packets = dict(streams.skipped)
    # (request time, order found, device, connection, request frame, response PDU, latency)
    exchanges: list[tuple[float, int, str, int, _Frame, bytes | None, float | None]] = []
    numbers: dict[int, int] = {}
    origin = capture.records[0][0] if capture.records else 0.0  # notes give times from the capture's start
    for connection in streams.connections:
        client = _client(connection)
        if client is None:
            continue  # a handshake with no data: nothing to say
        server = connection.other(client)
        name = f"{client[0]}:{client[1]} -> {server[0]}:{server[1]}"
        if ports and server[1] not in ports:
            continue
        requests_side = connection.sides.get(client, Direction())
        responses_side = connection.sides.get(server, Direction())
        first = b"".join(chunk for _, chunk in requests_side.chunks[:8])[:512]  # a frame may span segments
        chosen: str = framing
        if chosen == "auto":
            chosen = _framing_of(first) or "skipped"
        conn_report = ConnectionReport(name, chosen)
        report.connections.append(conn_report)
        if chosen == "skipped":
            conn_report.notes.append(f"not Modbus: the client's first bytes are {first[:12].hex(' ')}")
            continue
        for side in (requests_side, responses_side):
            conn_report.notes.extend(side.gaps)
        asked = _frames(requests_side, chosen, "requests", conn_report.notes, "client", origin)
        answered = _frames(responses_side, chosen, "responses", conn_report.notes, "server", origin)
        number = numbers.setdefault(connection.number, len(numbers) + 1)
        name_of_device = device or f"{server[0]}:{server[1]}"
        pairs = _pair_mbap(asked, answered) if chosen == "mbap" else _pair_rtu(asked, answered)
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
                append((request[0], len(exchanges), name_of_device, number, request, None, None))
            else:
                latency = response[0] - request[0]
                append((request[0], len(exchanges), name_of_device, number, request, response[3], max(0.0, latency)))
            conn_report.exchanges += 1
    exchanges.sort()  # by request time, then the order found (a tuple's first two fields decide)
    start = exchanges[0][0] if exchanges else 0.0
    cassette = Cassette(header=header(f"import {Path(path).name}"))
    # tuple.__new__ with every field: an Entry without the cost of NamedTuple's keyword handling.
    new = tuple.__new__
    cassette.entries = [
        new(Entry, ("modbus", device_name, frame[2], number, when - start, frame[3], answer, latency, frame[1], None))
        for when, _, device_name, number, frame, answer, latency in exchanges
    ]
    report.exchanges = len(cassette.entries)
    return cassette, report


_Pair = tuple[_Frame | None, _Frame | None]


def _pair_mbap(asked: list[_Frame], answered: list[_Frame]) -> list[_Pair]:
    """Requests and responses by transaction id; a repeated id pairs with its oldest open request.

    Both lists are in time order: they are merged in one pass, an answer pairing only with a request
    seen before it. The answers matching no request come first, then every request with its answer."""
    if len(asked) == len(answered) and all(
        request[1] == response[1] and request[0] <= response[0]
        for request, response in zip(asked, answered, strict=True)
    ):
        # Each request's answer is the one in its place (the common capture): the merge below would pair
        # them so, since every earlier request of the same id is answered before.
        return list(zip(asked, answered, strict=True))
    answers: list[_Frame | None] = [None] * len(asked)
    waiting: dict[int | None, list[int]] = {}
    out: list[_Pair] = []
    next_request, count = 0, len(asked)
    for response in answered:
        when = response[0]
        while next_request < count and asked[next_request][0] <= when:
            transaction_id = asked[next_request][1]
            queue = waiting.get(transaction_id)
            if queue is None:
                waiting[transaction_id] = [next_request]
            else:
                queue.append(next_request)
            next_request += 1
        queue = waiting.get(response[1])
        if queue:
            answers[queue.pop(0)] = response
        else:
            out.append((None, response))
    out.extend(zip(asked, answers, strict=True))
    return out


def _pair_rtu(asked: list[_Frame], answered: list[_Frame]) -> list[_Pair]:
    """One request at a time: an answer belongs to the open request before it, if it is of its unit and
    function (a lost packet must not pair a request with the next request's answer)."""
    events = [(frame[0], 0, frame) for frame in asked] + [(frame[0], 1, frame) for frame in answered]
    events.sort(key=lambda item: (item[0], item[1]))
    out: list[_Pair] = []
    pending: _Frame | None = None
    for _, is_response, frame in events:
        if not is_response:
            if pending is not None:
                out.append((pending, None))
            pending = None if frame[2] == 0 else frame  # nobody answers a broadcast
            if frame[2] == 0:
                out.append((frame, None))
            continue
        if pending is not None and pending[2] == frame[2] and pending[3][:1] == bytes((frame[3][0] & 0x7F,)):
            out.append((pending, frame))
            pending = None
        else:
            # Another function's answer: the capture lost this request's answer and that answer's request.
            if pending is not None:
                out.append((pending, None))
                pending = None
            out.append((None, frame))
    if pending is not None:
        out.append((pending, None))
    return out


__all__ = ["ConnectionReport", "ImportReport", "import_capture"]
