"""OPC UA binary (opc.tcp) byte streams cut into messages, and requests paired with responses. No I/O.

A message starts with an 8-byte header: its type (`HEL`, `ACK`, `ERR`, `OPN`, `CLO`, `MSG`), a chunk
type (`F` final, `C` one more to come, `A` aborted) and its size. `OPN` then carries the secure
channel id, the asymmetric security header (policy URI, certificates) and the sequence header;
`CLO` and `MSG` the channel id, a token id and the sequence header (sequence number, request id).
What follows is the message body: the service, its type's NodeId first — what recording keeps
(`simulators.recording.opcua` decodes it). Chunks of one request id are joined into one body.

Only security policy None can be read: a channel opened with another policy is said so, and its
messages are left out (they are signed or encrypted).

`captured_frames` cuts a captured direction into service messages for the importer (which pairs them
by request id: a response carries its request's id); `OpcuaCutter` cuts a relayed direction for the
recording proxy, passing each message on unchanged. `CLO` is never answered.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulators.recording.codec import Cut

NONE_POLICY = "http://opcfoundation.org/UA/SecurityPolicy#None"
MESSAGE_TYPES = frozenset({b"HEL", b"ACK", b"ERR", b"RHE", b"OPN", b"CLO", b"MSG"})
CHUNK_TYPES = frozenset(b"FCA")
MAX_CHUNK = 1 << 24  # a chunk claiming more is no OPC UA chunk (servers negotiate at most a few MiB)
_HEADER = struct.Struct("<3scI")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


def looks_like_opcua(data: bytes) -> bool:
    """Whether a client's first bytes are an OPC UA message header (a Hello, or a secure channel's
    message when the capture started after the Hello)."""
    if len(data) < 8:
        return False
    kind, chunk, size = _HEADER.unpack_from(data)
    return kind in (b"HEL", b"OPN", b"MSG", b"CLO") and chunk[0] in CHUNK_TYPES and 8 <= size <= MAX_CHUNK


@dataclass(frozen=True, slots=True)
class Message:
    """One whole message. `body`: for OPN/CLO/MSG the service (type NodeId and fields), chunks joined;
    for HEL/ACK/ERR what follows the header. `aborted`: the sender gave it up (an `A` chunk, whose
    body is an error code and reason). `secured`: signed or encrypted (a policy other than None), so
    `body` is unreadable."""

    kind: str
    channel: int
    request_id: int | None
    body: bytes
    aborted: bool = False
    secured: bool = False


@dataclass(frozen=True, slots=True)
class Broken:
    """The stream is not OPC UA from here on (a bad header): nothing after it is read."""

    reason: str


def _string(data: bytes, at: int, what: str) -> tuple[bytes | None, int]:
    (length,) = _I32.unpack_from(data, at)
    at += 4
    if length < 0:
        return None, at
    if at + length > len(data):
        raise ValueError(f"{what}: {length} bytes claimed, {len(data) - at} left")
    return data[at : at + length], at + length


def sequence_at(raw: bytes) -> int:
    """Where an OPN, CLO or MSG chunk's sequence header (sequence number, request id) starts: after
    the channel id and, for OPN, the asymmetric security header (three strings), else the token id."""
    if raw[:3] != b"OPN":
        return 16
    at = 12
    for what in ("security policy", "sender certificate", "receiver thumbprint"):
        _, at = _string(raw, at, what)
    return at


class ChunkFramer:
    """One direction of one connection: bytes in, whole messages out (`feed`)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._partial: dict[int, list[bytes]] = {}
        self.secured = False
        self.policy: str | None = None
        self.broken: str | None = None

    def feed(self, data: bytes) -> list[Message | Broken]:
        if self.broken is not None:
            return []
        self._buffer += data
        out: list[Message | Broken] = []
        buffer = self._buffer
        at = 0
        while len(buffer) - at >= 8:
            kind, chunk, size = _HEADER.unpack_from(buffer, at)
            if kind not in MESSAGE_TYPES or chunk[0] not in CHUNK_TYPES or not 8 <= size <= MAX_CHUNK:
                self.broken = f"not an OPC UA message header: {bytes(buffer[at : at + 8]).hex(' ')}"
                out.append(Broken(self.broken))
                del buffer[:]
                return out
            if len(buffer) - at < size:
                break
            raw = bytes(buffer[at : at + size])
            at += size
            try:
                message = self._chunk(kind.decode(), chunk, raw)
            except (ValueError, struct.error) as exc:
                self.broken = f"a damaged {kind.decode()} chunk: {exc}"
                out.append(Broken(self.broken))
                del buffer[:]
                return out
            if message is not None:
                out.append(message)
        del buffer[:at]
        return out

    def _chunk(self, kind: str, chunk: bytes, raw: bytes) -> Message | None:
        if kind in ("HEL", "ACK", "ERR", "RHE"):
            return Message(kind, 0, None, raw[8:])
        (channel,) = _U32.unpack_from(raw, 8)
        at = sequence_at(raw)
        if kind == "OPN":
            policy, _ = _string(raw, 12, "security policy")
            self.policy = (policy or b"").decode("utf-8", "replace")
            self.secured = self.policy != NONE_POLICY
        if len(raw) < at + 8:
            raise ValueError(f"{len(raw)} bytes, too short for its sequence header")
        _sequence, request_id = struct.unpack_from("<II", raw, at)
        body = raw[at + 8 :]
        if chunk == b"C":
            self._partial.setdefault(request_id, []).append(body)
            return None
        parts = self._partial.pop(request_id, [])
        if chunk == b"A":
            return Message(kind, channel, request_id, body, aborted=True, secured=self.secured)
        return Message(kind, channel, request_id, b"".join([*parts, body]), secured=self.secured)


def _error_text(body: bytes) -> str:
    """An ERR message's or abort chunk's body (status code, reason) for people."""
    if len(body) < 4:
        return "(no error code)"
    (code,) = _U32.unpack_from(body)
    try:
        reason, _ = _string(body, 4, "reason")
    except (ValueError, struct.error):
        reason = None
    from simulators.recording.opcua import status_text

    text = status_text(code)
    return f"{text}: {reason.decode('utf-8', 'replace')}" if reason else text


Frame = tuple[float, int | None, int, bytes]
"""(time of the packet completing it, request id, unit 0, service message): what an import pairs."""


def captured_frames(
    chunks: list[tuple[float, bytes]], gap_before: set[int], notes: list[str], who: str, origin: float
) -> list[Frame]:
    """One captured direction's service messages (OPN, CLO, MSG), each with the time of the packet
    that completed it. After bytes the capture lost, framing starts afresh (the next chunk most
    likely begins a message); what cannot be read is said in `notes`."""
    framer = ChunkFramer()
    out: list[Frame] = []
    secured = 0
    for index, (when, data) in enumerate(chunks):
        if index in gap_before:
            framer = ChunkFramer()
            notes.append(f"{who}: bytes lost before t={when - origin:.6f}s; framing restarted there")
        for item in framer.feed(data):
            if isinstance(item, Broken):
                notes.append(f"{who}: at t={when - origin:.6f}s: {item.reason}")
            elif item.kind == "ERR":
                notes.append(f"{who}: ERR at t={when - origin:.6f}s: {_error_text(item.body)}")
            elif item.secured:
                secured += 1
            elif item.aborted:
                notes.append(
                    f"{who}: request {item.request_id} aborted at t={when - origin:.6f}s: {_error_text(item.body)}"
                )
            elif item.kind in ("OPN", "CLO", "MSG"):
                out.append((when, item.request_id, 0, item.body))
    if secured:
        notes.append(f"{who}: {secured} message(s) left out: security policy {framer.policy}; only None can be read")
    return out


class OpcuaCutter:
    """One direction of a relayed connection cut into whole messages as bytes arrive (the recording
    proxy's Cutter): the chunks of a message are held until its final one, then passed on together,
    unchanged, with the service message they carry."""

    def __init__(self) -> None:
        self._framer = ChunkFramer()
        self._buffer = bytearray()
        self._held = bytearray()
        self._passing = False

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._held)

    def feed(self, data: bytes) -> list[Cut]:
        from simulators.recording.codec import Cut

        if self._passing:
            return [Cut(data, text=f"{len(data)} bytes after a stream that is not OPC UA")] if data else []
        self._buffer += data
        out: list[Cut] = []
        while len(self._buffer) >= 8:
            kind, chunk, size = _HEADER.unpack_from(self._buffer)
            if kind not in MESSAGE_TYPES or chunk[0] not in CHUNK_TYPES or not 8 <= size <= MAX_CHUNK:
                self._passing = True
                rest = bytes(self._held + self._buffer)
                self._held.clear()
                self._buffer.clear()
                out.append(Cut(rest, text=f"not an OPC UA message: {rest[:8].hex(' ')}"))
                return out
            if len(self._buffer) < size:
                break
            raw = bytes(self._buffer[:size])
            del self._buffer[:size]
            self._held += raw
            for item in self._framer.feed(raw):
                piece = bytes(self._held)
                self._held.clear()
                if isinstance(item, Broken):
                    out.append(Cut(piece, text=item.reason))
                elif item.kind in ("HEL", "ACK", "RHE"):
                    out.append(Cut(piece, text={"HEL": "Hello", "ACK": "Acknowledge"}.get(item.kind, item.kind)))
                elif item.kind == "ERR":
                    out.append(Cut(piece, text=f"ERR {_error_text(item.body)}"))
                elif item.secured:
                    out.append(Cut(piece, text=f"{item.kind} signed or encrypted ({self._framer.policy})"))
                elif item.aborted:
                    out.append(Cut(piece, text=f"{item.kind} {item.request_id} aborted: {_error_text(item.body)}"))
                else:
                    out.append(Cut(piece, 0, item.request_id, item.body))
        return out

    def flush(self) -> list[Cut]:
        from simulators.recording.codec import Cut

        rest = bytes(self._held + self._buffer)
        self._held.clear()
        self._buffer.clear()
        return [Cut(rest, text=f"{len(rest)} bytes of an unfinished message")] if rest else []


def unwrap(data: bytes) -> bytes | None:
    """The service message of one whole message as relayed (a cut's piece: its chunks); None if none."""
    found = [item for item in ChunkFramer().feed(data) if isinstance(item, Message)]
    last = found[-1] if found else None
    if last is None or last.kind not in ("OPN", "CLO", "MSG") or last.aborted or last.secured:
        return None
    return last.body


__all__ = [
    "NONE_POLICY",
    "Broken",
    "ChunkFramer",
    "Frame",
    "Message",
    "OpcuaCutter",
    "captured_frames",
    "looks_like_opcua",
    "sequence_at",
    "unwrap",
]
