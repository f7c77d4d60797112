"""OPC UA frames for the fault lanes, read in the relay in front of the C server (OPC UA Part 6, 7.1):
each message chunk starts with a header of 3 bytes of type (HEL, ACK, ERR, OPN, CLO, MSG, RHE), a chunk
type (F, C, A) and its whole size (UInt32, little-endian). Replies pair with requests by the request id
of the sequence header; a request shows to a match as its service (`function`: the request's DataType
id, as the traffic log counts them).

The message header is never encrypted, so frames are cut under every security mode; under
SignAndEncrypt the sequence header and body are, so there replies pair with nothing and matches see no
service (a fault with a match does not hit those messages).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from simulators.faults.frames import LengthFramer
from simulators.hooks import Described, RequestInfo
from simulators.opcua.traffic import SERVICE_IDS

HEADER = 8
_TYPES = frozenset({b"HEL", b"ACK", b"ERR", b"RHE", b"OPN", b"CLO", b"MSG"})
_CHUNKS = frozenset(b"FCA")
# A request's binary encoding id is its DataType id + 2 for every service (NodeIds.csv).
_BY_ENCODING = {data_type + 2: data_type for data_type in SERVICE_IDS.values()} | {446: 444}  # + OpenSecureChannel


def message_size(header: bytes) -> int | None:
    if header[:3] not in _TYPES or header[3] not in _CHUNKS:
        return None
    return int.from_bytes(header[4:8], "little")


def _sequence_header(frame: bytes) -> int | None:
    """Where the sequence header (sequence number, request id) starts, or None."""
    kind = frame[:3]
    if kind in (b"MSG", b"CLO"):
        return 16  # header, secure channel id, token id
    if kind != b"OPN":
        return None
    at = 12  # header, secure channel id; then the asymmetric security header: three ByteStrings
    for _ in range(3):
        (length,) = struct.unpack_from("<i", frame, at)
        at += 4 + max(0, length)
    return at


def request_id(frame: bytes) -> int | None:
    try:
        at = _sequence_header(frame)
        return None if at is None else int(struct.unpack_from("<I", frame, at + 4)[0])
    except struct.error:
        return None


def service_of(body: bytes) -> int | None:
    """The service (its request DataType id) of a service message: its type's NodeId, then the request."""
    if len(body) < 2:
        return None
    encoding = body[0]
    if encoding == 0x00:  # two-byte NodeId
        type_id = body[1]
    elif encoding == 0x01 and len(body) >= 4 and body[1] == 0:  # four-byte NodeId, namespace 0
        type_id = int.from_bytes(body[2:4], "little")
    else:
        return None
    return _BY_ENCODING.get(type_id)


def describe(frame: bytes) -> RequestInfo | None:
    try:
        at = _sequence_header(frame)
    except struct.error:
        return None
    if at is None or frame[3] not in b"F" or len(frame) < at + 10:
        return None  # a later chunk of a message (C) has no type id in front of it
    service = service_of(frame[at + 8 :])
    return None if service is None else Described(function=service)


# --- chunks the proxy writes (simulators.opcua.proxying) ------------------------------------------------


def chunks_of(piece: bytes) -> list[tuple[int, int]]:
    """(start, end) of each whole chunk in `piece`, in order (a message's chunks, relayed together)."""
    out = []
    at = 0
    while len(piece) - at >= HEADER:
        size = message_size(piece[at : at + HEADER])
        if size is None or size < HEADER or at + size > len(piece):
            break
        out.append((at, at + size))
        at += size
    return out


def sequence_number(chunk: bytes) -> int | None:
    try:
        at = _sequence_header(chunk)
        return None if at is None else int(struct.unpack_from("<I", chunk, at)[0])
    except struct.error:
        return None


def renumbered(piece: bytes, number: Callable[[int], int]) -> tuple[bytes, int | None]:
    """`piece` with each chunk's sequence number n made `number(n)`, and the last one it then carries."""
    out = bytearray(piece)
    last = None
    for start, end in chunks_of(piece):
        chunk = piece[start:end]
        try:
            at = _sequence_header(chunk)
            if at is None:
                continue
            found = number(int(struct.unpack_from("<I", chunk, at)[0])) & 0xFFFFFFFF
        except struct.error:
            continue  # too short for its headers: no frame to number, passed on as it is
        struct.pack_into("<I", out, start + at, found)
        last = found
    return bytes(out), last


def message_chunk(request: bytes, sequence: int, body: bytes) -> bytes:
    """A final MSG chunk answering `request` (a MSG chunk: its channel, token and request id) with the
    service message `body`, under security None."""
    channel, token = struct.unpack_from("<II", request, 8)
    answered = request_id(request)
    size = 24 + len(body)
    return b"MSGF" + struct.pack("<IIIII", size, channel, token, sequence, answered or 0) + body


MESSAGES = LengthFramer("opcua", HEADER, message_size, request_id, describe)

__all__ = [
    "HEADER",
    "MESSAGES",
    "chunks_of",
    "describe",
    "message_chunk",
    "message_size",
    "renumbered",
    "request_id",
    "sequence_number",
    "service_of",
]
