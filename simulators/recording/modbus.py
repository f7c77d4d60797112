"""Modbus in recording and replay: PDUs decoded for the cassette, and the learned image. No I/O.

Every decode goes through bifrost.modbus.pdu (the one Modbus codec). The decoded form of a PDU is
its dataclass's fields under the request's or response's name, for people and for diff:
`{"type": "read_holding_registers", "function": 3, "address": 0, "count": 2}`; an exception answer is
`{"type": "exception", "function": 3, "code": 2, "name": "ILLEGAL_DATA_ADDRESS"}`.

The image holds the four tables of each unit, filled from what the capture showed: the values of read
answers, the values of accepted writes (FC23: the write, then the read). It answers reads whose every
address it holds and writes whose every address it holds (so a write to an address never seen is
refused like an unmapped one); anything else is not its to answer.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

from bifrost.modbus import pdu
from bifrost.modbus.framing import BrokenStream, Frame, MbapFramer, RtuFramer
from bifrost.modbus.pdu import MAX_PDU, ExceptionResponse, MalformedFrame
from simulators.modbus.traffic import describe_request, describe_response
from simulators.recording.codec import Cut, Expect, Pair, pair_by_id, register_codec
from simulators.recording.codec import Frame as CutFrame

if TYPE_CHECKING:
    from simulators.recording.tcp import Direction

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_SUFFIX = re.compile(r"_(request|response)$")


def _name(obj: object) -> str:
    return _SUFFIX.sub("", _CAMEL.sub("_", type(obj).__name__).lower())


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)  # an IntEnum as its number
    return value


def _fields(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _name(obj), "function": int(obj.function)}
    for item in dataclasses.fields(obj):
        out[item.name] = _plain(getattr(obj, item.name))
    return out


def _request(raw: bytes) -> pdu.RequestPdu | None:
    try:
        return pdu.decode_request(raw)
    except MalformedFrame:
        return None


class ModbusCodec:
    protocol = "modbus"
    framings: tuple[str, ...] = ("mbap", "rtu")
    default_unknown = 2

    def decode_request(self, request: bytes) -> dict[str, Any]:
        try:
            return _fields(pdu.decode_request(request))
        except MalformedFrame as exc:
            return {"type": "malformed", "function": request[0] if request else None, "error": str(exc)}

    def decode_response(self, response: bytes, request: bytes) -> dict[str, Any]:
        try:
            decoded = pdu.decode_response(response, _request(request))
        except MalformedFrame as exc:
            return {"type": "malformed", "function": response[0] & 0x7F if response else None, "error": str(exc)}
        if isinstance(decoded, ExceptionResponse):
            code = decoded.code
            name = code.name if isinstance(code, pdu.ExceptionCode) else "non-standard"
            return {"type": "exception", "function": decoded.function, "code": int(code), "name": name}
        return _fields(decoded)

    def describe(self, request: bytes, response: bytes | None) -> str:
        decoded = _request(request)
        shown = describe_request(request if decoded is None else decoded)
        if response is None:
            return f"{shown} -> no answer"
        try:
            answer = describe_response(pdu.decode_response(response, decoded))
        except MalformedFrame as exc:
            answer = f"malformed answer ({exc})"
        return f"{shown} -> {answer}"

    def render(self, request: bytes, response: bytes | None) -> tuple[dict[str, Any], str, dict[str, Any] | None, str]:
        try:
            asked: pdu.RequestPdu | None = pdu.decode_request(request)
        except MalformedFrame as exc:
            asked = None
            request_fields = {"type": "malformed", "function": request[0] if request else None, "error": str(exc)}
        else:
            request_fields = _fields(asked)
        request_text = describe_request(request if asked is None else asked)
        if response is None:
            return request_fields, request_text, None, "no answer"
        try:
            answer = pdu.decode_response(response, asked)
        except MalformedFrame as exc:
            error = {"type": "malformed", "function": response[0] & 0x7F if response else None, "error": str(exc)}
            return request_fields, request_text, error, f"malformed answer ({exc})"
        if isinstance(answer, ExceptionResponse):
            code = answer.code
            name = code.name if isinstance(code, pdu.ExceptionCode) else "non-standard"
            fields = {"type": "exception", "function": answer.function, "code": int(code), "name": name}
        else:
            fields = _fields(answer)
        return request_fields, request_text, fields, describe_response(answer)

    def match_key(self, unit: int, request: bytes) -> Hashable:
        return (unit, request)

    def error_response(self, request: bytes, code: int) -> bytes:
        function = request[0] & 0x7F if request else 1
        return pdu.encode_response(ExceptionResponse(function or 1, code))

    def is_error(self, response: bytes) -> bool:
        return bool(response) and bool(response[0] & 0x80)

    def new_image(self) -> ModbusImage:
        return ModbusImage()

    # --- the wire -------------------------------------------------------------------------------------

    def sniff(self, data: bytes) -> str | None:
        return _framing_of(data)

    def opens_request(self, framing: str, data: bytes) -> bool:
        raw = data[7:] if _framing_of(data) == "mbap" else data[1:-2]
        return _request(raw) is not None

    def frames(
        self, framing: str, side: Direction, expect: Expect, notes: list[str], who: str, origin: float
    ) -> list[CutFrame]:
        return _frames(side, framing, expect, notes, who, origin)

    def pair(self, framing: str, asked: Sequence[CutFrame], answered: Sequence[CutFrame]) -> list[Pair]:
        return pair_by_id(asked, answered) if framing == "mbap" else _pair_rtu(asked, answered)

    def cutter(self, framing: str, expect: Expect) -> _Cutter:
        return _Cutter(framing, expect)

    def pairs_by_id(self, framing: str) -> bool:
        return framing == "mbap"

    def unwrap(self, framing: str, data: bytes, expect: Expect) -> bytes | None:
        """The PDU of one whole frame, cut by bifrost's framers; None when the bytes are no frame."""
        items: list[Any]
        if framing == "mbap":
            items = list(MbapFramer().feed(data))
        else:
            rtu = RtuFramer(expect)
            items = [*rtu.feed(data), *rtu.silence()]
        frames = [item for item in items if type(item) is Frame]
        return frames[0].pdu if frames else None

    # --- the traffic log and replay -------------------------------------------------------------------

    def log_exchange(self, exchange: Any, device: Any) -> tuple[int, bytes, bytes | None] | None:
        request = exchange.request
        raw = request if isinstance(request, bytes) else pdu.encode_request(request)
        response = None if exchange.response is None else pdu.encode_response(exchange.response)
        return (exchange.unit if exchange.unit is not None else 0), raw, response

    def is_handshake(self, request: bytes) -> bool:
        return False

    def replay_devices(
        self, device: str, units: Sequence[int], listen: str, transport: str, replay: dict[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """One device per unit recorded (several units share one listener, as on a gateway)."""
        served: dict[str, dict[str, Any]] = {}
        for index, unit in enumerate(units or [1]):
            name = device if index == 0 else f"{device}#unit{unit}"
            spec: dict[str, Any] = {"protocol": "modbus", "transport": transport, "unit": unit}
            if transport != "rtu":
                spec["listen"] = listen
            spec["replay"] = dict(replay)
            served[name] = spec
        return served


_Table = dict[int, Any]


class ModbusImage:
    """Each unit's coils, discrete inputs, holding and input registers, as the capture showed them."""

    def __init__(self) -> None:
        self._units: dict[int, dict[str, _Table]] = {}

    def tables(self, unit: int) -> dict[str, _Table]:
        tables = self._units.get(unit)
        if tables is None:
            tables = self._units[unit] = {"coil": {}, "di": {}, "hr": {}, "ir": {}}
        return tables

    def values(self, unit: int, area: str) -> dict[int, Any]:
        """A copy of one table: address -> value (bool for bits, int for registers)."""
        return dict(self.tables(unit)[area])

    def learn(self, unit: int, request: bytes, response: bytes) -> None:
        if not response or response[0] & 0x80:
            return
        asked = _request(request)
        if asked is None:
            return
        try:
            answer = pdu.decode_response(response, asked)
        except MalformedFrame:
            return
        if pdu.response_mismatch(asked, answer) is not None:
            return
        tables = self.tables(unit)
        if isinstance(asked, pdu.ReadWriteMultipleRegistersRequest):
            _put(tables["hr"], asked.write_address, asked.values)
            _put(tables["hr"], asked.read_address, answer.values)  # type: ignore[union-attr]
        elif isinstance(asked, pdu.ReadCoilsRequest | pdu.ReadDiscreteInputsRequest):
            area = "coil" if isinstance(asked, pdu.ReadCoilsRequest) else "di"
            _put(tables[area], asked.address, answer.values)  # type: ignore[union-attr]
        elif isinstance(asked, pdu.ReadHoldingRegistersRequest | pdu.ReadInputRegistersRequest):
            area = "hr" if isinstance(asked, pdu.ReadHoldingRegistersRequest) else "ir"
            _put(tables[area], asked.address, answer.values)  # type: ignore[union-attr]
        elif isinstance(asked, pdu.WriteSingleCoilRequest):
            tables["coil"][asked.address] = asked.value
        elif isinstance(asked, pdu.WriteMultipleCoilsRequest):
            _put(tables["coil"], asked.address, asked.values)
        elif isinstance(asked, pdu.WriteSingleRegisterRequest):
            tables["hr"][asked.address] = asked.value
        elif isinstance(asked, pdu.WriteMultipleRegistersRequest):
            _put(tables["hr"], asked.address, asked.values)
        elif isinstance(asked, pdu.MaskWriteRegisterRequest) and asked.address in tables["hr"]:
            tables["hr"][asked.address] = asked.apply(tables["hr"][asked.address])

    def answer(self, unit: int, request: bytes) -> bytes | None:
        asked = _request(request)
        if asked is None:
            return None
        tables = self.tables(unit)
        response: pdu.ResponsePdu | None = None
        if isinstance(asked, pdu.ReadCoilsRequest):
            bits = _get(tables["coil"], asked.address, asked.count)
            response = None if bits is None else pdu.ReadCoilsResponse(bits)
        elif isinstance(asked, pdu.ReadDiscreteInputsRequest):
            bits = _get(tables["di"], asked.address, asked.count)
            response = None if bits is None else pdu.ReadDiscreteInputsResponse(bits)
        elif isinstance(asked, pdu.ReadHoldingRegistersRequest):
            words = _get(tables["hr"], asked.address, asked.count)
            response = None if words is None else pdu.ReadHoldingRegistersResponse(words)
        elif isinstance(asked, pdu.ReadInputRegistersRequest):
            words = _get(tables["ir"], asked.address, asked.count)
            response = None if words is None else pdu.ReadInputRegistersResponse(words)
        elif isinstance(asked, pdu.WriteSingleCoilRequest):
            if asked.address in tables["coil"]:
                tables["coil"][asked.address] = asked.value
                response = pdu.WriteSingleCoilResponse(asked.address, asked.value)
        elif isinstance(asked, pdu.WriteMultipleCoilsRequest):
            if _get(tables["coil"], asked.address, len(asked.values)) is not None:
                _put(tables["coil"], asked.address, asked.values)
                response = pdu.WriteMultipleCoilsResponse(asked.address, len(asked.values))
        elif isinstance(asked, pdu.WriteSingleRegisterRequest):
            if asked.address in tables["hr"]:
                tables["hr"][asked.address] = asked.value
                response = pdu.WriteSingleRegisterResponse(asked.address, asked.value)
        elif isinstance(asked, pdu.WriteMultipleRegistersRequest):
            if _get(tables["hr"], asked.address, len(asked.values)) is not None:
                _put(tables["hr"], asked.address, asked.values)
                response = pdu.WriteMultipleRegistersResponse(asked.address, len(asked.values))
        elif isinstance(asked, pdu.MaskWriteRegisterRequest):
            if asked.address in tables["hr"]:
                tables["hr"][asked.address] = asked.apply(tables["hr"][asked.address])
                response = pdu.MaskWriteRegisterResponse(asked.address, asked.and_mask, asked.or_mask)
        elif isinstance(asked, pdu.ReadWriteMultipleRegistersRequest):
            hr = tables["hr"]
            if (
                _get(hr, asked.write_address, len(asked.values)) is not None
                and _get(hr, asked.read_address, asked.read_count) is not None
            ):
                _put(hr, asked.write_address, asked.values)
                words = _get(hr, asked.read_address, asked.read_count)
                assert words is not None
                response = pdu.ReadWriteMultipleRegistersResponse(words)
        return None if response is None else pdu.encode_response(response)


def _put(table: _Table, address: int, values: tuple[Any, ...]) -> None:
    for offset, value in enumerate(values):
        table[address + offset] = value


def _get(table: _Table, address: int, count: int) -> tuple[Any, ...] | None:
    try:
        return tuple(table[address + offset] for offset in range(count))
    except KeyError:
        return None


# --- the wire: Modbus/TCP and RTU over TCP in captures and through the proxy ------------------------------


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


_MBAP = struct.Struct(">HHHB")
_MAX_LENGTH = MAX_PDU + 1  # unit + PDU, as MbapFramer checks it


def _frames(side: Direction, framing: str, expect: Expect, notes: list[str], who: str, origin: float) -> list[CutFrame]:
    """The frames of one direction with the time of the packet that completed each."""
    if framing == "mbap" and not side.gap_before:
        return _mbap_segments(side.chunks) or _mbap_frames(side, notes, who, origin)
    framer: MbapFramer | RtuFramer = MbapFramer() if framing == "mbap" else RtuFramer(expect)
    out: list[CutFrame] = []
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


def _mbap_segments(chunks: list[tuple[float, bytes]]) -> list[CutFrame] | None:
    """The fastest path, and the common one: every segment is exactly one well-formed MBAP frame (what
    a client and a server send with one write per frame). None when any is not: then the stream is cut
    as a whole. The checks are MbapFramer's, so both paths give the same frames."""
    unpack = _MBAP.unpack_from
    out: list[CutFrame] = []
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


def _mbap_frames(side: Direction, notes: list[str], who: str, origin: float) -> list[CutFrame]:
    """The fast path of an unbroken Modbus/TCP stream: the framer cuts the whole stream at once, and each
    frame takes the time of the segment holding its last byte (MBAP frames are their PDU plus 7 bytes)."""
    chunks = side.chunks
    items = MbapFramer().feed(b"".join(data for _, data in chunks))
    out: list[CutFrame] = []
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


def _pair_rtu(asked: Sequence[CutFrame], answered: Sequence[CutFrame]) -> list[Pair]:
    """One request at a time: an answer belongs to the open request before it, if it is of its unit and
    function (a lost packet must not pair a request with the next request's answer)."""
    events = [(frame[0], 0, frame) for frame in asked] + [(frame[0], 1, frame) for frame in answered]
    events.sort(key=lambda item: (item[0], item[1]))
    out: list[Pair] = []
    pending: CutFrame | None = None
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


class _Cutter:
    """The proxy's Splitter (simulators.modbus.frames) as a Cutter: MBAP or RTU frames as they come."""

    def __init__(self, framing: str, expect: Expect) -> None:
        from simulators.modbus.frames import Splitter

        self._splitter = Splitter("rtu" if framing == "rtu" else "mbap", expect)

    @property
    def pending(self) -> int:
        return self._splitter.pending

    def feed(self, data: bytes) -> list[Cut]:
        return [_cut(piece, frame) for piece, frame in self._splitter.feed(data)]

    def flush(self) -> list[Cut]:
        return [_cut(piece, frame) for piece, frame in self._splitter.rest()]


def _cut(piece: bytes, frame: object) -> Cut:
    if not isinstance(frame, Frame):
        return Cut(piece, text=f"{len(piece)} bytes that are no frame")
    return Cut(piece, frame.unit, frame.transaction_id, frame.pdu)


register_codec(ModbusCodec())

__all__ = ["ModbusCodec", "ModbusImage"]
