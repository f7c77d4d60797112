"""From captured packets to TCP byte streams: link layer, IPv4/IPv6, TCP, and reassembly. No protocol.

Link types read: Ethernet (1, with 802.1Q/802.1ad tags), BSD loopback (0, 108), raw IP (101, 228,
229), Linux cooked captures (113 SLL, 276 SLL2). Other packets (ARP, UDP, IP fragments, other link
types) are counted and skipped.

Reassembly follows each direction's sequence numbers: a retransmitted segment (data already seen) is
trimmed to what is new, a segment that arrives early waits for the gap before it to fill, and a gap
that never fills (the capture lost a packet) is skipped over at the end and reported, so the bytes
after it are still read (a framer then finds its footing again, or says the stream broke there).
The connection's client is the side that sent the first SYN; with no handshake in the capture, the
importer decides from what each side sends.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Endpoint = tuple[str, int]

_ETHERNET, _NULL, _LOOP, _RAW, _IPV4, _IPV6, _SLL, _SLL2 = 1, 0, 108, 101, 228, 229, 113, 276
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_IPV6_EXTENSIONS = frozenset((0, 43, 60, 135, 139, 140))  # hop-by-hop, routing, destination, mobility, HIP, shim6
_MAX_EARLY = 4 * 1024 * 1024  # bytes held ahead of a gap per direction before giving up on it


@dataclass(slots=True)
class Direction:
    """One direction of a connection: its data in order, as (time, bytes) chunks."""

    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    next_seq: int | None = None
    early: dict[int, tuple[float, bytes]] = field(default_factory=dict)
    early_bytes: int = 0
    gaps: list[str] = field(default_factory=list)
    gap_before: set[int] = field(default_factory=set)
    """Indices of chunks that follow lost bytes: a framer starts afresh there."""
    closed: bool = False


@dataclass
class Connection:
    """One TCP connection: its two ends, who opened it (if seen), and both directions' data."""

    number: int
    a: Endpoint
    b: Endpoint
    client: Endpoint | None = None
    first_time: float = 0.0
    sides: dict[Endpoint, Direction] = field(default_factory=dict)

    def direction(self, sender: Endpoint) -> Direction:
        side = self.sides.get(sender)
        if side is None:
            side = self.sides[sender] = Direction()
        return side

    def other(self, end: Endpoint) -> Endpoint:
        return self.b if end == self.a else self.a

    def name(self) -> str:
        client = self.client or self.a
        server = self.other(client)
        return f"{client[0]}:{client[1]} -> {server[0]}:{server[1]}"


@dataclass
class Streams:
    """Every TCP connection of a capture, in the order they were first seen, and what was skipped."""

    connections: list[Connection] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def _ip_payload(linktype: int, data: bytes) -> tuple[int, int]:
    """(IP version, offset of the IP header), or (0, reason code) when there is no IP packet."""
    if linktype == _ETHERNET:
        if len(data) < 14:
            return 0, 0
        ethertype = (data[12] << 8) | data[13]
        offset = 14
        while ethertype in (0x8100, 0x88A8) and len(data) >= offset + 4:
            ethertype = (data[offset + 2] << 8) | data[offset + 3]
            offset += 4
        if ethertype == 0x0800:
            return 4, offset
        if ethertype == 0x86DD:
            return 6, offset
        return 0, 0
    if linktype in (_NULL, _LOOP):
        if len(data) < 4:
            return 0, 0
        family = struct.unpack_from("<I" if linktype == _NULL else ">I", data)[0]
        if family > 0xFFFF:  # a NULL header written on a host of the other byte order
            family = struct.unpack_from(">I" if linktype == _NULL else "<I", data)[0]
        if family == 2:
            return 4, 4
        if family in (10, 24, 28, 30):
            return 6, 4
        return 0, 0
    if linktype in (_RAW, _IPV4, _IPV6):
        if not data:
            return 0, 0
        version = data[0] >> 4
        return (version, 0) if version in (4, 6) else (0, 0)
    if linktype == _SLL:
        if len(data) < 16:
            return 0, 0
        protocol = (data[14] << 8) | data[15]
        return (4, 16) if protocol == 0x0800 else (6, 16) if protocol == 0x86DD else (0, 0)
    if linktype == _SLL2:
        if len(data) < 20:
            return 0, 0
        protocol = (data[0] << 8) | data[1]
        return (4, 20) if protocol == 0x0800 else (6, 20) if protocol == 0x86DD else (0, 0)
    return 0, -1


def _address(raw: bytes) -> str:
    if len(raw) == 4:
        return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"
    import ipaddress

    return str(ipaddress.IPv6Address(raw))


def reassemble(packets: Iterable[tuple[float, int, bytes]]) -> Streams:
    """The TCP connections in `packets` ((time, link type, bytes) each), their data in order."""
    records: list[tuple[float, int, int, int]] = []
    parts: list[bytes] = []
    position = 0
    for when, linktype, data in packets:
        records.append((when, linktype, position, position + len(data)))
        parts.append(data)
        position += len(data)
    return reassemble_records(b"".join(parts), records)


# Link types with a fixed header ending in an ethertype-like protocol field: (where that field is, the
# header's length). Their IPv4 packets with a 20-byte header to a known flow take the fast path.
_FAST_LINKS = {_ETHERNET: (12, 14), _SLL: (14, 16), _SLL2: (0, 20)}


def _fast_unpackers() -> dict[int, tuple[Any, int]]:
    """Per link type: one unpack of link, IPv4 and TCP header fields (protocol, version and header length,
    total length, fragment, IP protocol, the flow's addresses and ports, sequence, TCP offset, flags),
    and the packet's shortest length for it (headers whole)."""
    out: dict[int, tuple[Any, int]] = {}
    for linktype, (field_at, ip_at) in _FAST_LINKS.items():
        layout = f">{field_at}xH{ip_at - field_at - 2}xBxH2xHxB2x12sI4xBB".replace(">0x", ">")
        out[linktype] = (struct.Struct(layout).unpack_from, ip_at + 40)
    return out


_FAST = _fast_unpackers()


def reassemble_records(data: bytes, records: Iterable[tuple[float, int, int, int]]) -> Streams:
    """The TCP connections of the packets `data[start:end]` of `records` ((time, link type, start, end)
    each, as pcap.Capture holds them), their data in order.

    The common packet (IPv4 without options, a flow already known, no SYN/FIN/RST) costs one unpack,
    one dict lookup and one slice of its payload; any other goes through `_Reader.packet`."""
    reader = _Reader()
    flows = reader.flows
    slow = reader.packet
    fast = _FAST
    for when, linktype, start, stop in records:
        unpacker = fast.get(linktype)
        if unpacker is not None and stop - start >= unpacker[1]:
            ethertype, version, total, fragment, protocol, key, seq, offset, flags = unpacker[0](data, start)
            if ethertype == 0x0800 and version == 0x45 and protocol == 6 and not fragment & 0x3FFF and not flags & 7:
                side = flows.get(key)
                if side is not None:
                    ip = start + unpacker[1] - 40
                    end = ip + total if total else stop
                    if end > stop:
                        end = stop
                    payload = data[ip + 20 + (offset >> 4) * 4 : end]
                    if payload:
                        if seq == side.next_seq and not side.early:  # in order, nothing waiting
                            side.chunks.append((when, payload))
                            side.next_seq = (seq + len(payload)) & 0xFFFFFFFF
                        else:
                            _add(side, when, seq, payload)
                    continue
        slow(when, linktype, data[start:stop])
    streams = reader.streams
    for connection in streams.connections:
        for side in connection.sides.values():
            _flush(side)
    return streams


class _Reader:
    """Any packet, one at a time: what the fast path does not take (a new flow, a SYN, FIN or RST,
    IPv6, IP options, other link types, anything to skip)."""

    def __init__(self) -> None:
        self.streams = Streams()
        self.by_key: dict[tuple[Endpoint, Endpoint], Connection] = {}
        # Raw addresses and ports -> direction: the common packet costs one dict lookup.
        self.flows: dict[bytes, Direction] = {}
        self.addresses: dict[bytes, str] = {}

    def _name(self, raw: bytes) -> str:
        name = self.addresses.get(raw)
        if name is None:
            name = self.addresses[raw] = _address(raw)
        return name

    def packet(self, when: float, linktype: int, data: bytes) -> None:
        streams = self.streams
        if linktype == _ETHERNET and data[12:14] == b"\x08\x00":
            version, offset = 4, 14  # the common case, without a call
        else:
            version, offset = _ip_payload(linktype, data)
        if version == 0:
            streams.skip("not IP" if offset == 0 else f"link type {linktype} (not read)")
            return
        if version == 4:
            if len(data) < offset + 20:
                streams.skip("IPv4 header cut short")
                return
            if data[offset + 9] != 6:
                streams.skip("not TCP")
                return
            if ((data[offset + 6] & 0x3F) << 8) | data[offset + 7]:
                streams.skip("IP fragment (not reassembled)")
                return
            total = (data[offset + 2] << 8) | data[offset + 3]
            addressed = offset + 12
            width = 4
            tcp = offset + (data[offset] & 0x0F) * 4
            # The IP length, not the frame's: Ethernet pads short frames to 60 bytes.
            end = offset + total if total else len(data)
        else:
            if len(data) < offset + 40:
                streams.skip("IPv6 header cut short")
                return
            next_header = data[offset + 6]
            end = offset + 40 + ((data[offset + 4] << 8) | data[offset + 5])
            addressed = offset + 8
            width = 16
            tcp = offset + 40
            while next_header in _IPV6_EXTENSIONS and tcp + 2 <= len(data):
                next_header, tcp = data[tcp], tcp + 8 + data[tcp + 1] * 8
            if next_header != 6:
                streams.skip("not TCP")
                return
        if len(data) < tcp + 20:
            streams.skip("TCP header cut short")
            return
        sport, dport, seq, _ack = _TCP.unpack_from(data, tcp)
        flags = data[tcp + 13]
        payload = data[tcp + (data[tcp + 12] >> 4) * 4 : min(end, len(data))]
        flow_key = data[addressed : addressed + 2 * width] + data[tcp : tcp + 4]
        side = None if flags & _SYN else self.flows.get(flow_key)
        if side is None:
            src = self._name(data[addressed : addressed + width])
            dst = self._name(data[addressed + width : addressed + 2 * width])
            sender, receiver = (src, sport), (dst, dport)
            connection = self.by_key.get((sender, receiver))
            if connection is None or (
                flags & _SYN and not flags & _ACK and connection.sides.get(sender, Direction()).closed
            ):
                # A new connection (or the same ports used again after both ends closed).
                connection = Connection(len(streams.connections) + 1, sender, receiver, first_time=when)
                streams.connections.append(connection)
                self.by_key[(sender, receiver)] = self.by_key[(receiver, sender)] = connection
            side = connection.direction(sender)
            self.flows[flow_key] = side
            if flags & _SYN:
                if not flags & _ACK and connection.client is None:
                    connection.client = sender
                side.next_seq = (seq + 1) & 0xFFFFFFFF
                return
        if flags & (_FIN | _RST):
            side.closed = True
        if payload:
            if seq == side.next_seq and not side.early:  # in order, nothing waiting: the common case
                side.chunks.append((when, payload))
                side.next_seq = (seq + len(payload)) & 0xFFFFFFFF
            else:
                _add(side, when, seq, payload)


_TCP = struct.Struct(">HHII")


def _add(side: Direction, when: float, seq: int, payload: bytes) -> None:
    expected = side.next_seq
    if expected is None:  # no SYN seen: the first data sets the start
        expected = seq
    delta = (seq - expected) & 0xFFFFFFFF
    if delta >= 0x80000000:  # before what is expected: a retransmission; keep only what is new
        behind = 0x100000000 - delta
        if behind >= len(payload):
            side.next_seq = expected
            return
        payload = payload[behind:]
        seq = expected
        delta = 0
    if delta:  # ahead of a gap: wait for it to fill
        if seq not in side.early or len(side.early[seq][1]) < len(payload):
            side.early[seq] = (when, payload)
            side.early_bytes += len(payload)
        side.next_seq = expected
        if side.early_bytes > _MAX_EARLY:
            _skip_gap(side)
        return
    side.chunks.append((when, payload))
    side.next_seq = (expected + len(payload)) & 0xFFFFFFFF
    if side.early:
        _drain(side)


def _drain(side: Direction) -> None:
    while side.early:
        expected = side.next_seq
        assert expected is not None
        ready = [s for s in side.early if ((s - expected) & 0xFFFFFFFF) >= 0x80000000 or s == expected]
        if not ready:
            return
        for seq in ready:
            when, payload = side.early.pop(seq)
            side.early_bytes -= len(payload)
            _add(side, when, seq, payload)


def _skip_gap(side: Direction) -> None:
    """Give up on the bytes before the earliest segment held: the capture lost them."""
    expected = side.next_seq
    assert expected is not None
    first = min(side.early, key=lambda s: (s - expected) & 0xFFFFFFFF)
    missing = (first - expected) & 0xFFFFFFFF
    side.gaps.append(f"{missing} bytes missing from the capture")
    side.gap_before.add(len(side.chunks))
    side.next_seq = first
    _drain(side)


def _flush(side: Direction) -> None:
    while side.early:
        _skip_gap(side)


__all__ = ["Connection", "Direction", "Endpoint", "Streams", "reassemble", "reassemble_records"]
