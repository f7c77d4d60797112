"""Modbus framing and connection state machines: bytes in, frames and events out. No I/O.

In the style of h11 (python-hyper/h11): nothing here reads a socket or a clock, so the caller
owns I/O and time, and every behaviour can be tested byte by byte.

Framers cut a byte stream into frames. `feed(data)` takes bytes in any split, one at a time included,
and returns what is complete:

- `MbapFramer`: Modbus TCP. The MBAP header carries a length; a header with a protocol id other than 0
  or an impossible length means the stream can no longer be cut, so the framer reports `BrokenStream`
  once and ignores the rest: the caller closes the connection.
- `RtuFramer`: serial RTU, and RTU over TCP (the same bytes on a TCP stream). RTU has no length field,
  so the length comes from the function code (a framer knows whether it reads requests or responses),
  and frames end with a CRC. A frame with a bad CRC is reported as `DamagedFrame` and skipped: the
  framer resynchronises one byte at a time, never raising from the middle of a stream. `silence()`
  tells it the line went quiet (the t3.5 gap), which ends any unfinished frame.

Connections pair a framer with pdu.py:

- `ClientConnection`: `send(request) -> bytes` allocates a transaction id (16-bit, wrapping);
  `receive_data(bytes)` then `next_event()` gives `Response` (matched to its request) or says why
  a reply is not an answer: `StaleReply` (its transaction was abandoned), `UnexpectedReply` (no such
  transaction), `MismatchedReply` (wrong unit, function, echo or size), `MalformedReply`.
  `abandon(transaction_id)` after a timeout makes its late reply stale. RTU has no transaction id on
  the wire, so a client keeps one request outstanding, and after an abandoned or failed one every
  frame is stale until `quiet()` says the line has been silent long enough.
- `ServerConnection`: `receive_data(bytes)` then `next_event()` gives `Request` (or `BadRequest`, which
  carries the exception a server answers with); `send(response) -> bytes` echoes the transaction id
  and unit of the request it answers.
"""

from __future__ import annotations

import struct
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeAlias

from bifrost.errors import BifrostError, ConfigError
from bifrost.modbus.pdu import (
    MAX_PDU,
    ExceptionCode,
    ExceptionResponse,
    LimitError,
    MalformedFrame,
    RequestPdu,
    ResponsePdu,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    function_name,
    response_mismatch,
)

Framing: TypeAlias = Literal["mbap", "rtu"]
"""How frames are cut: "mbap" for Modbus TCP, "rtu" for serial RTU and for RTU over TCP."""

MAX_RTU_FRAME = 256  # unit + 253-byte PDU + CRC


class StateError(BifrostError, RuntimeError):
    """The caller used a connection out of turn (h11's LocalProtocolError): a bug in the caller."""


# ---------------------------------------------------------------------------------------------- CRC


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray, crc: int = 0xFFFF) -> int:
    """CRC-16/MODBUS of `data` (reflected polynomial 0xA001, initial 0xFFFF); sent low byte first."""
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


# ----------------------------------------------------------------------------------------- encoding

_MBAP_HEADER = struct.Struct(">HHHB")
_MBAP_PREFIX = struct.Struct(">HHH")


def _check_frame_fields(unit: int, pdu: bytes) -> None:
    if not isinstance(unit, int) or not 0 <= unit <= 255:
        raise LimitError(f"unit: {unit!r} is not a unit id (0..255)", field="unit")
    if not 1 <= len(pdu) <= MAX_PDU:
        raise LimitError(f"pdu: {len(pdu)} bytes is not a PDU's length (1..{MAX_PDU})", field="pdu")


def encode_mbap(transaction_id: int, unit: int, pdu: bytes) -> bytes:
    """A Modbus TCP frame: MBAP header (protocol id 0) and PDU."""
    _check_frame_fields(unit, pdu)
    if not isinstance(transaction_id, int) or not 0 <= transaction_id <= 0xFFFF:
        raise LimitError(f"transaction_id: {transaction_id!r} is not 0..65535", field="transaction_id")
    return _MBAP_HEADER.pack(transaction_id, 0, len(pdu) + 1, unit) + pdu


def encode_rtu(unit: int, pdu: bytes) -> bytes:
    """An RTU frame: unit, PDU and CRC."""
    _check_frame_fields(unit, pdu)
    body = bytes((unit,)) + pdu
    return body + crc16(body).to_bytes(2, "little")


# ------------------------------------------------------------------------------------ framer events


@dataclass(frozen=True, slots=True)
class Frame:
    """One whole frame. `transaction_id` is None for RTU, which has none."""

    unit: int
    pdu: bytes
    transaction_id: int | None = None


@dataclass(frozen=True, slots=True)
class DamagedFrame:
    """RTU bytes that are no frame (bad CRC, impossible function code or length), skipped.

    One is reported per run of damage; `data` is the first candidate that failed. The framer
    counts every byte it dropped in `discarded`.
    """

    data: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class BrokenStream:
    """An MBAP header that cannot be right: the stream cannot be cut into frames any more. Close it."""

    reason: str
    data: bytes


# ------------------------------------------------------------------------------------------ framers


class MbapFramer:
    """Cuts a Modbus TCP stream into frames (both directions look the same)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.broken: BrokenStream | None = None

    def feed(self, data: bytes) -> list[Frame | BrokenStream]:
        if self.broken is not None:
            return []  # reported once; the caller is closing the connection
        buffer = self._buffer
        buffer += data
        out: list[Frame | BrokenStream] = []
        start = 0
        while len(buffer) - start >= 6:
            transaction_id, protocol, length = _MBAP_PREFIX.unpack_from(buffer, start)
            if protocol != 0 or not 2 <= length <= MAX_PDU + 1:
                why = (
                    f"protocol id {protocol} (Modbus is 0)"
                    if protocol != 0
                    else f"length {length} (unit + PDU is 2..{MAX_PDU + 1})"
                )
                self.broken = BrokenStream(f"bad MBAP header: {why}", bytes(buffer[start:]))
                buffer.clear()
                out.append(self.broken)
                return out
            end = start + 6 + length
            if len(buffer) < end:
                break
            out.append(Frame(buffer[start + 6], bytes(buffer[start + 7 : end]), transaction_id))
            start = end
        del buffer[:start]
        return out


# RTU frame shapes: function -> (length without the count, offset of a byte-count field, its width).
# Lengths count unit, PDU and CRC. Function codes without a dataclass in pdu.py are listed too, so a
# server can cut them out of a stream and answer exception 1.
_Shape: TypeAlias = tuple[int, int, int]
_FIXED = 0
_REQUEST_SHAPES: dict[int, _Shape] = {
    1: (8, 0, _FIXED),
    2: (8, 0, _FIXED),
    3: (8, 0, _FIXED),
    4: (8, 0, _FIXED),
    5: (8, 0, _FIXED),
    6: (8, 0, _FIXED),
    7: (4, 0, _FIXED),
    8: (8, 0, _FIXED),
    11: (4, 0, _FIXED),
    12: (4, 0, _FIXED),
    15: (9, 6, 1),
    16: (9, 6, 1),
    17: (4, 0, _FIXED),
    20: (5, 2, 1),
    21: (5, 2, 1),
    22: (10, 0, _FIXED),
    23: (13, 10, 1),
    24: (6, 0, _FIXED),
}
_RESPONSE_SHAPES: dict[int, _Shape] = {
    1: (5, 2, 1),
    2: (5, 2, 1),
    3: (5, 2, 1),
    4: (5, 2, 1),
    5: (8, 0, _FIXED),
    6: (8, 0, _FIXED),
    7: (5, 0, _FIXED),
    8: (8, 0, _FIXED),
    11: (8, 0, _FIXED),
    12: (5, 2, 1),
    15: (8, 0, _FIXED),
    16: (8, 0, _FIXED),
    17: (5, 2, 1),
    20: (5, 2, 1),
    21: (5, 2, 1),
    22: (10, 0, _FIXED),
    23: (5, 2, 1),
    24: (6, 2, 2),
}
_EXCEPTION_LENGTH = 5
_DEVICE_ID_REQUEST_LENGTH = 7

# What _measure says besides a length.
_NEED_MORE = -1
_INVALID = -2
_UNKNOWN = 0


class RtuFramer:
    """Cuts an RTU byte stream into frames; `expect` says whether it carries requests or responses."""

    def __init__(self, expect: Literal["requests", "responses"]) -> None:
        if expect not in ("requests", "responses"):
            raise ConfigError(f"expect must be 'requests' or 'responses', not {expect!r}")
        self.expect = expect
        self._responses = expect == "responses"
        self._shapes = _RESPONSE_SHAPES if self._responses else _REQUEST_SHAPES
        self._buffer = bytearray()
        self._resyncing = False
        self.discarded = 0
        """Bytes dropped as damage so far."""

    def feed(self, data: bytes) -> list[Frame | DamagedFrame]:
        self._buffer += data
        return self._parse()

    def silence(self) -> list[Frame | DamagedFrame]:
        """The line has been quiet for t3.5, so the frame being read is unfinished: it is damaged.

        Whole frames already buffered behind its start are still taken: a damaged length byte may
        have made the framer wait on them, and RTU over TCP has no silences to separate frames.
        """
        buffer = self._buffer
        out: list[Frame | DamagedFrame] = []
        if buffer:
            self._damage(out, buffer, 1, f"unfinished frame of {len(buffer)} bytes at a silence")
            del buffer[:1]
            out += self._parse()
            self.discarded += len(buffer)
            buffer.clear()
        self._resyncing = False
        return out

    def _parse(self) -> list[Frame | DamagedFrame]:
        buffer = self._buffer
        out: list[Frame | DamagedFrame] = []
        start = 0
        while len(buffer) - start >= 2:
            available = len(buffer) - start
            length = self._measure(buffer, start)
            unknown = length == _UNKNOWN
            if unknown:
                # No shape for this function code: its end is where a CRC matches. While resyncing,
                # only known shapes count, or noise would keep the framer waiting for 256 bytes.
                if self._resyncing:
                    length = _INVALID
                else:
                    length = self._crc_scan(buffer, start)
                    if not length:
                        length = _INVALID if available >= MAX_RTU_FRAME else _NEED_MORE
            if length == _INVALID:
                reason = "" if self._resyncing else self._why_invalid(buffer, start, unknown)
                self._damage(out, buffer[start : start + 1], 1, reason)
                start += 1
                continue
            if length == _NEED_MORE or length > available:
                # A doubtful start may be noise in front of a frame that is already whole.
                if self._resyncing or unknown:
                    found = self._lookahead(buffer, start)
                    if found:
                        self._damage(out, buffer[start:found], found - start, "bytes before a valid frame")
                        start = found
                        continue
                break
            candidate = buffer[start : start + length]
            if crc16(candidate[:-2]) != int.from_bytes(candidate[-2:], "little"):
                self._damage(out, candidate, 1, f"CRC mismatch in a {length}-byte frame")
                start += 1
                continue
            out.append(Frame(candidate[0], bytes(candidate[1:-2])))
            self._resyncing = False
            start += length
        del buffer[:start]
        return out

    def _damage(self, out: list[Frame | DamagedFrame], data: bytearray, dropped: int, reason: str) -> None:
        # Only the first failure of a run is reported: the bytes after it are re-read one by one,
        # and each of them failing again is the same damage, not news.
        self.discarded += dropped
        if not self._resyncing:
            out.append(DamagedFrame(bytes(data), reason))
            self._resyncing = True

    def _why_invalid(self, buffer: bytearray, start: int, unknown: bool) -> str:
        function = buffer[start + 1]
        if unknown:
            return f"no CRC matches within {MAX_RTU_FRAME} bytes after function code {function}"
        return f"function code {function} cannot start a {self.expect[:-1]} frame of at most {MAX_RTU_FRAME} bytes"

    def _measure(self, buffer: bytearray, start: int) -> int:
        """The frame's whole length, or _NEED_MORE, _INVALID, _UNKNOWN. Needs unit and function code."""
        available = len(buffer) - start
        function = buffer[start + 1]
        if function & 0x80:
            return _EXCEPTION_LENGTH if self._responses and function != 0x80 else _INVALID
        if function == 0:
            return _INVALID
        if function == 43:
            return self._measure_mei(buffer, start)
        shape = self._shapes.get(function)
        if shape is None:
            return _UNKNOWN
        base, offset, width = shape
        if width == _FIXED:
            return base
        if available < offset + width:
            return _NEED_MORE
        count = int.from_bytes(buffer[start + offset : start + offset + width], "big")
        return base + count if base + count <= MAX_RTU_FRAME else _INVALID

    def _measure_mei(self, buffer: bytearray, start: int) -> int:
        if len(buffer) - start < 3:
            return _NEED_MORE
        if buffer[start + 2] != 0x0E:
            return _UNKNOWN  # other MEI types: found by CRC
        if not self._responses:
            return _DEVICE_ID_REQUEST_LENGTH
        # Device identification answers have no byte count: walk the objects' length bytes.
        if len(buffer) - start < 8:
            return _NEED_MORE
        position = start + 8
        for _ in range(buffer[start + 7]):
            if position + 2 > len(buffer):
                return _NEED_MORE
            position += 2 + buffer[position + 1]
            if position - start + 2 > MAX_RTU_FRAME:
                return _INVALID
        return position - start + 2

    def _crc_scan(self, buffer: bytearray, start: int) -> int:
        """The length of the shortest frame from `start` whose CRC matches, or 0."""
        crc = 0xFFFF
        table = _CRC_TABLE
        end = min(len(buffer), start + MAX_RTU_FRAME) - 2
        for index in range(start, end):
            crc = (crc >> 8) ^ table[(crc ^ buffer[index]) & 0xFF]
            if index > start and buffer[index + 1] == crc & 0xFF and buffer[index + 2] == crc >> 8:
                return index + 3 - start
        return 0

    def _lookahead(self, buffer: bytearray, start: int) -> int:
        """The offset of the first whole, valid frame of a known shape after `start`, or 0."""
        for offset in range(start + 1, len(buffer) - 3):
            length = self._measure(buffer, offset)
            if length > 0 and offset + length <= len(buffer):
                candidate = buffer[offset : offset + length]
                if crc16(candidate[:-2]) == int.from_bytes(candidate[-2:], "little"):
                    return offset
        return 0


def _framer_for(framing: Framing, expect: Literal["requests", "responses"]) -> MbapFramer | RtuFramer:
    if framing == "mbap":
        return MbapFramer()
    if framing == "rtu":
        return RtuFramer(expect)
    raise ConfigError(f"framing must be 'mbap' or 'rtu', not {framing!r}")


# -------------------------------------------------------------------------------- connection events


@dataclass(frozen=True, slots=True)
class Response:
    """The answer to a request (possibly an ExceptionResponse: the device refused it)."""

    transaction_id: int
    unit: int
    request: RequestPdu
    response: ResponsePdu


@dataclass(frozen=True, slots=True)
class StaleReply:
    """A reply to a transaction the caller abandoned (timed out). Never an answer."""

    transaction_id: int
    unit: int
    request: RequestPdu
    pdu: bytes


@dataclass(frozen=True, slots=True)
class UnexpectedReply:
    """A reply to no transaction this client sent (RTU: none was outstanding)."""

    transaction_id: int | None
    unit: int
    pdu: bytes


@dataclass(frozen=True, slots=True)
class MismatchedReply:
    """A reply on the right transaction that cannot answer its request. The transaction is over."""

    transaction_id: int
    unit: int
    request: RequestPdu
    response: ResponsePdu
    reason: str


@dataclass(frozen=True, slots=True)
class MalformedReply:
    """A reply on the right transaction whose PDU does not decode. The transaction is over."""

    transaction_id: int
    unit: int
    request: RequestPdu
    pdu: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class Request:
    """A request for the server. RTU has no transaction id; a broadcast (RTU unit 0) gets no reply."""

    transaction_id: int | None
    unit: int
    request: RequestPdu
    broadcast: bool = False


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A request that does not decode. `answer()` is the exception to send, if one can be sent."""

    transaction_id: int | None
    unit: int
    pdu: bytes
    function: int | None
    exception_code: ExceptionCode
    reason: str
    broadcast: bool = False

    def answer(self) -> ExceptionResponse | None:
        if self.function is None or self.broadcast:
            return None
        return ExceptionResponse(self.function, self.exception_code)


ClientEvent: TypeAlias = (
    Response | StaleReply | UnexpectedReply | MismatchedReply | MalformedReply | DamagedFrame | BrokenStream
)
ServerEvent: TypeAlias = Request | BadRequest | DamagedFrame | BrokenStream


# -------------------------------------------------------------------------------------------- client


class _Pending(NamedTuple):
    unit: int
    request: RequestPdu


# The RTU line's states. One request may be outstanding; once a transaction is abandoned or fails,
# its reply may still be on the wire, so every frame is stale until the caller says the line is quiet.
IDLE = "idle"
AWAITING_REPLY = "awaiting reply"
DRAINING = "draining"

_RTU_LINE: dict[tuple[str, str], str] = {
    (IDLE, "send"): AWAITING_REPLY,
    (IDLE, "broadcast"): IDLE,
    (IDLE, "quiet"): IDLE,
    (AWAITING_REPLY, "answered"): IDLE,
    (AWAITING_REPLY, "failed"): DRAINING,
    (AWAITING_REPLY, "abandon"): DRAINING,
    (AWAITING_REPLY, "quiet"): AWAITING_REPLY,
    (DRAINING, "quiet"): IDLE,
}
_RTU_REFUSALS = {
    (AWAITING_REPLY, "send"): "a request is outstanding: RTU allows one at a time",
    (AWAITING_REPLY, "broadcast"): "a request is outstanding: RTU allows one at a time",
    (DRAINING, "send"): "a late reply may still arrive: wait for the line to go quiet, then call quiet()",
    (DRAINING, "broadcast"): "a late reply may still arrive: wait for the line to go quiet, then call quiet()",
}


class ClientConnection:
    """The client side of a Modbus connection, without I/O.

    `unit` is the default unit id of `send`. Transaction ids are allocated from `first_transaction_id`,
    wrapping at 65536 and skipping ids still outstanding or recently abandoned. Over RTU they exist only
    here, as handles for `abandon` and in events; the wire has none.
    """

    def __init__(
        self,
        framing: Framing = "mbap",
        *,
        unit: int = 1,
        first_transaction_id: int = 1,
        remember_abandoned: int = 1024,
    ) -> None:
        self.framing = framing
        self._framer = _framer_for(framing, "responses")
        self._rtu = isinstance(self._framer, RtuFramer)
        self.unit = unit
        self._next_id = first_transaction_id & 0xFFFF
        self._pending: dict[int, _Pending] = {}
        self._abandoned: OrderedDict[int, _Pending] = OrderedDict()
        self._remember = remember_abandoned
        self._events: deque[ClientEvent] = deque()
        self._line = IDLE
        self._drained: tuple[int, _Pending] | None = None
        self.last_transaction_id: int | None = None
        """The id `send` gave its request: the handle for `abandon`."""

    @property
    def unfinished(self) -> int:
        """Bytes of a frame begun but not complete. After a timeout they mean a reply was cut short,
        and the next reply would be read behind them: the caller should drop the connection."""
        return len(self._framer._buffer)

    @property
    def line_state(self) -> str:
        """RTU: idle, awaiting reply or draining. Modbus TCP pipelines, so it is always idle."""
        return self._line

    @property
    def pending(self) -> Mapping[int, RequestPdu]:
        """Outstanding requests by transaction id."""
        return {transaction_id: pending.request for transaction_id, pending in self._pending.items()}

    @property
    def broken(self) -> BrokenStream | None:
        return self._framer.broken if isinstance(self._framer, MbapFramer) else None

    def send(self, request: RequestPdu, *, unit: int | None = None) -> bytes:
        """The bytes to write for `request`; its transaction id is then `last_transaction_id`."""
        unit = self.unit if unit is None else unit
        pdu = encode_request(request)
        _check_frame_fields(unit, pdu)
        if self.broken is not None:
            raise StateError(f"the connection is broken ({self.broken.reason}): open a new one")
        if self._rtu:
            broadcast = unit == 0  # nobody answers a broadcast, so nothing is outstanding
            frame = encode_rtu(unit, pdu)
            self._move("broadcast" if broadcast else "send")
            transaction_id = self._allocate()
            if not broadcast:
                self._pending[transaction_id] = _Pending(unit, request)
        else:
            transaction_id = self._allocate()
            frame = encode_mbap(transaction_id, unit, pdu)
            self._pending[transaction_id] = _Pending(unit, request)
        self.last_transaction_id = transaction_id
        return frame

    def receive_data(self, data: bytes) -> None:
        self._take(self._framer.feed(data))

    def _take(self, items: Sequence[Frame | DamagedFrame | BrokenStream]) -> None:
        for item in items:
            self._events.append(self._classify(item) if isinstance(item, Frame) else item)

    def next_event(self) -> ClientEvent | None:
        """The next event, or None until more data arrives."""
        return self._events.popleft() if self._events else None

    def abandon(self, transaction_id: int | None = None) -> bool:
        """Give up on a transaction (None: on every one), e.g. after a timeout; its reply will be stale.

        A reply already received but not yet taken from `next_event` becomes a StaleReply too.
        Returns whether there was anything to give up.
        """
        found = False
        for tid in list(self._pending) if transaction_id is None else [transaction_id]:
            pending = self._pending.pop(tid, None)
            if pending is not None:
                found = True
                self._forget(tid, pending)
                if self._rtu:
                    self._drained = (tid, pending)
                    self._move("abandon")
        kept: deque[ClientEvent] = deque()
        for event in self._events:
            if isinstance(event, Response) and transaction_id in (None, event.transaction_id):
                found = True
                self._forget(event.transaction_id, _Pending(event.unit, event.request))
                event = StaleReply(event.transaction_id, event.unit, event.request, encode_response(event.response))
            kept.append(event)
        self._events = kept
        return found

    def quiet(self) -> None:
        """The line has been silent long enough (RTU): a late reply would have arrived by now.

        Ends draining and any unfinished frame. Modbus TCP needs no such thing; there it does nothing.
        """
        if isinstance(self._framer, RtuFramer):
            self._take(self._framer.silence())  # frames found in what was left are still late, if draining
            self._move("quiet")
            self._drained = None

    def _move(self, action: str) -> None:
        key = (self._line, action)
        if key not in _RTU_LINE:
            raise StateError(_RTU_REFUSALS.get(key, f"cannot {action} while {self._line}"))
        self._line = _RTU_LINE[key]

    def _allocate(self) -> int:
        for _ in range(0x10000):
            transaction_id = self._next_id
            self._next_id = (transaction_id + 1) & 0xFFFF
            if transaction_id not in self._pending and transaction_id not in self._abandoned:
                return transaction_id
        raise StateError("all 65536 transaction ids are outstanding or recently abandoned")

    def _forget(self, transaction_id: int, pending: _Pending) -> None:
        self._abandoned[transaction_id] = pending
        self._abandoned.move_to_end(transaction_id)
        while len(self._abandoned) > self._remember:
            self._abandoned.popitem(last=False)

    def _classify(self, frame: Frame) -> ClientEvent:
        if self._rtu:
            if self._line == DRAINING:
                assert self._drained is not None
                transaction_id, pending = self._drained
                return StaleReply(transaction_id, frame.unit, pending.request, frame.pdu)
            if self._line == IDLE:
                return UnexpectedReply(None, frame.unit, frame.pdu)
            transaction_id, pending = self._pending.popitem()
            return self._answer(transaction_id, pending, frame)
        assert frame.transaction_id is not None
        transaction_id = frame.transaction_id
        found = self._pending.pop(transaction_id, None)
        if found is not None:
            return self._answer(transaction_id, found, frame)
        abandoned = self._abandoned.get(transaction_id)
        if abandoned is not None:
            return StaleReply(transaction_id, frame.unit, abandoned.request, frame.pdu)
        return UnexpectedReply(transaction_id, frame.unit, frame.pdu)

    def _answer(self, transaction_id: int, pending: _Pending, frame: Frame) -> ClientEvent:
        try:
            response = decode_response(frame.pdu, pending.request)
        except MalformedFrame as exc:
            self._failed(transaction_id, pending)
            return MalformedReply(transaction_id, frame.unit, pending.request, frame.pdu, str(exc))
        reason = (
            f"asked unit {pending.unit}, answered by unit {frame.unit}"
            if frame.unit != pending.unit
            else response_mismatch(pending.request, response)
        )
        if reason is not None:
            self._failed(transaction_id, pending)
            return MismatchedReply(transaction_id, frame.unit, pending.request, response, reason)
        if self._rtu:
            self._move("answered")
        return Response(transaction_id, frame.unit, pending.request, response)

    def _failed(self, transaction_id: int, pending: _Pending) -> None:
        if self._rtu:
            # The real answer may still be coming: drain, as after an abandon.
            self._drained = (transaction_id, pending)
            self._move("failed")


# -------------------------------------------------------------------------------------------- server


class ServerConnection:
    """The server side of a Modbus connection, without I/O.

    Requests wait for an answer in arrival order. `send(response)` answers the oldest; `send(response,
    to=event)` answers that one (Modbus TCP clients may pipeline). A request that will never be answered
    (a fault that drops it, a unit this server does not serve) should be `discard`ed, so the oldest-first
    default stays right. Over RTU a new request replaces any unanswered one: the client has moved on.
    """

    def __init__(self, framing: Framing = "mbap") -> None:
        self.framing = framing
        self._framer = _framer_for(framing, "requests")
        self._rtu = isinstance(self._framer, RtuFramer)
        self._events: deque[ServerEvent] = deque()
        self._waiting: deque[Request | BadRequest] = deque()

    @property
    def broken(self) -> BrokenStream | None:
        return self._framer.broken if isinstance(self._framer, MbapFramer) else None

    @property
    def waiting(self) -> tuple[Request | BadRequest, ...]:
        """Requests received and not yet answered or discarded, oldest first."""
        return tuple(self._waiting)

    def receive_data(self, data: bytes) -> None:
        self._take(self._framer.feed(data))

    def _take(self, items: Sequence[Frame | DamagedFrame | BrokenStream]) -> None:
        for item in items:
            if isinstance(item, Frame):
                event = self._request(item)
                if self._answerable(event):
                    if self._rtu:
                        self._waiting.clear()
                    self._waiting.append(event)
                self._events.append(event)
            else:
                self._events.append(item)

    def next_event(self) -> ServerEvent | None:
        """The next event, or None until more data arrives."""
        return self._events.popleft() if self._events else None

    def send(self, response: ResponsePdu, *, to: Request | BadRequest | None = None) -> bytes:
        """The bytes that answer `to` (default: the oldest waiting request) with `response`."""
        if to is None:
            if not self._waiting:
                raise StateError("no request is waiting for an answer")
            to = self._waiting[0]
        elif not any(waiting is to for waiting in self._waiting):
            raise StateError("that request is not waiting for an answer (answered, discarded, replaced or broadcast)")
        function = to.request.function if isinstance(to, Request) else to.function
        if response.function != function:
            raise StateError(f"a {type(response).__name__} cannot answer {function_name(function or 0)}")
        self.discard(to)
        pdu = encode_response(response)
        if self._rtu:
            return encode_rtu(to.unit, pdu)
        assert to.transaction_id is not None
        return encode_mbap(to.transaction_id, to.unit, pdu)

    def discard(self, event: Request | BadRequest) -> None:
        """Stop waiting to answer `event`."""
        for index, waiting in enumerate(self._waiting):
            if waiting is event:
                del self._waiting[index]
                return

    def quiet(self) -> None:
        """The line has been silent for t3.5 (RTU): any unfinished frame is damaged. TCP: nothing."""
        if isinstance(self._framer, RtuFramer):
            self._take(self._framer.silence())

    def _request(self, frame: Frame) -> Request | BadRequest:
        broadcast = self._rtu and frame.unit == 0
        try:
            request = decode_request(frame.pdu)
        except MalformedFrame as exc:
            return BadRequest(
                frame.transaction_id, frame.unit, frame.pdu, exc.function, exc.exception_code, str(exc), broadcast
            )
        return Request(frame.transaction_id, frame.unit, request, broadcast)

    @staticmethod
    def _answerable(event: Request | BadRequest) -> bool:
        if event.broadcast:
            return False
        return isinstance(event, Request) or event.function is not None


__all__ = [
    "AWAITING_REPLY",
    "DRAINING",
    "IDLE",
    "MAX_RTU_FRAME",
    "BadRequest",
    "BrokenStream",
    "ClientConnection",
    "ClientEvent",
    "DamagedFrame",
    "Frame",
    "Framing",
    "MalformedReply",
    "MbapFramer",
    "MismatchedReply",
    "Request",
    "Response",
    "RtuFramer",
    "ServerConnection",
    "ServerEvent",
    "StaleReply",
    "StateError",
    "UnexpectedReply",
    "crc16",
    "encode_mbap",
    "encode_rtu",
]
