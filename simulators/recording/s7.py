"""S7 in recording and replay: S7 PDUs decoded for the cassette, TPKT/COTP cut, and the learned image.

Every decode goes through bifrost.s7 (pdu.py for S7comm, framing.py for COTP): recording has no S7
parser of its own. A cassette holds the S7 PDU (from its 0x32, without TPKT and COTP); the PDU
reference is the `transaction_id` and pairs a request with its acknowledgement. The `unit` is the
CPU's rack and slot as the client's COTP connect names them (rack * 32 + slot; 1 is rack 0 slot 1).

- decoded: `{"type": "read", "reference": 3, "items": ["DB1.DBW0 x2"]}`; an answer's items are their
  hex data or return code; a job refused as a whole is `{"type": "error", "error_class": 0x85, ...}`.
- text: `read DB1.DBW0 x2` -> `00 01 00 02`.
- equal requests (replay by request): the same PDU but for its reference, which a client allocates.
- refusal (`unknown`, a fault's `exception`): an error class 0x81..0x87 refuses the job as a whole;
  any other code answers every item with it (0x0A, object does not exist, by default).
- setup communication is answered by the replaying S7 server itself (it negotiates the PDU size the
  recording showed), so replay leaves it out (`is_handshake`).

The image keeps the bytes of DB, M, I and Q areas that read answers and accepted writes showed, per
CPU; it answers reads and writes whose every byte (or bit) it holds.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

from bifrost.s7 import framing, pdu
from bifrost.s7.pdu import (
    Area,
    DataTransport,
    ErrorResponse,
    ItemData,
    MalformedPdu,
    RequestPdu,
    ResponsePdu,
    ReturnCode,
    Rosctr,
    TransportSize,
    VarSpec,
)
from simulators.recording.codec import Cut, Expect, Frame, Pair, pair_by_id, register_codec
from simulators.s7.faults import refusal
from simulators.s7.traffic import describe_response, refused

if TYPE_CHECKING:
    from simulators.recording.tcp import Direction

DEFAULT_UNIT = 1  # rack 0, slot 1: what a capture that missed the COTP connect most likely spoke to
NOT_FOUND = int(ReturnCode.OBJECT_DOES_NOT_EXIST)
_TPKT = struct.Struct(">BBH")
_SIZE_LETTER = {1: "B", 2: "W", 4: "D"}
_AREA_PREFIX = {Area.INPUTS: "I", Area.OUTPUTS: "Q", Area.FLAGS: "M", Area.COUNTERS: "C", Area.TIMERS: "T"}
_DATA_TRANSPORT = {
    TransportSize.BIT: DataTransport.BIT,
    TransportSize.INT: DataTransport.INT,
    TransportSize.DINT: DataTransport.INT,
    TransportSize.REAL: DataTransport.REAL,
}


def unit_of(rack: int, slot: int) -> int:
    return (rack & 0x07) << 5 | (slot & 0x1F)


def rack_slot(unit: int) -> tuple[int, int]:
    return framing.rack_slot(unit)


def address(spec: VarSpec) -> str:
    """An item in the S7 address grammar (docs/s7.md): `DB1.DBW0 x2`, `M10.3`, `IB4`, `C3`."""
    if spec.area in (Area.COUNTERS, Area.TIMERS) or spec.transport in (TransportSize.COUNTER, TransportSize.TIMER):
        where = f"{_AREA_PREFIX.get(spec.area, spec.area.name)}{spec.start}"
    else:
        prefix = f"DB{spec.db}.DB" if spec.area is Area.DB else _AREA_PREFIX.get(spec.area, spec.area.name)
        if spec.transport is TransportSize.BIT:
            where = f"{prefix}{'X' if spec.area is Area.DB else ''}{spec.start}.{spec.bit}"
        else:
            size = pdu.ELEMENT_BYTES[spec.transport]
            where = f"{prefix}{_SIZE_LETTER.get(size, 'B')}{spec.start}"
    return where if spec.count == 1 else f"{where} x{spec.count}"


def _request(raw: bytes) -> tuple[int, RequestPdu] | None:
    try:
        return pdu.decode_request(raw)
    except MalformedPdu:
        return None


def _response(raw: bytes, request: RequestPdu | None) -> tuple[int, ResponsePdu] | str:
    try:
        return pdu.decode_response(raw, request)
    except MalformedPdu as exc:
        return str(exc)


def _request_fields(reference: int, request: RequestPdu) -> dict[str, Any]:
    if isinstance(request, pdu.ReadRequest):
        return {"type": "read", "reference": reference, "items": [address(spec) for spec in request.items]}
    if isinstance(request, pdu.WriteRequest):
        items = [
            {"address": address(spec), "data": data.data.hex()}
            for spec, data in zip(request.items, request.data, strict=False)
        ]
        return {"type": "write", "reference": reference, "items": items}
    if isinstance(request, pdu.SzlRequest):
        return {"type": "szl", "reference": reference, "szl_id": request.szl_id, "index": request.index}
    if isinstance(request, pdu.SetupRequest):
        return {"type": "setup", "reference": reference, "pdu_size": request.pdu_size, "amq": request.max_amq_calling}
    if isinstance(request, pdu.PlcStopRequest):
        return {"type": "plc_stop", "reference": reference}
    return {"type": "plc_control", "reference": reference, "service": request.service.decode("latin-1")}


def _request_text(request: RequestPdu) -> str:
    if isinstance(request, pdu.ReadRequest):
        return "read " + ", ".join(address(spec) for spec in request.items)
    if isinstance(request, pdu.WriteRequest):
        parts = (
            f"{address(spec)} = {data.data.hex(' ')}" for spec, data in zip(request.items, request.data, strict=False)
        )
        return "write " + ", ".join(parts)
    from simulators.s7.traffic import describe_request

    return describe_request(request)


def _response_fields(reference: int, response: ResponsePdu) -> dict[str, Any]:
    if isinstance(response, ErrorResponse):
        return {
            "type": "error",
            "reference": reference,
            "error_class": response.error_class,
            "error_code": response.error_code,
            "text": response.message,
        }
    if isinstance(response, pdu.ReadResponse):
        items: list[Any] = [
            item.data.hex() if item.ok else {"return_code": item.return_code} for item in response.items
        ]
        return {"type": "read", "reference": reference, "items": items}
    if isinstance(response, pdu.WriteResponse):
        return {"type": "write", "reference": reference, "return_codes": list(response.return_codes)}
    if isinstance(response, pdu.SzlResponse):
        return {"type": "szl", "reference": reference, "szl_id": response.szl_id, "error": response.error,
                "data": response.data.hex()}  # fmt: skip
    if isinstance(response, pdu.SetupResponse):
        return {"type": "setup", "reference": reference, "pdu_size": response.pdu_size, "amq": response.max_amq_calling}
    return {"type": type(response).__name__.removesuffix("Response").lower(), "reference": reference}


def _response_text(response: ResponsePdu) -> str:
    if isinstance(response, pdu.ReadResponse):
        return ", ".join(item.data.hex(" ") if item.ok else pdu.return_code_text(item.return_code)
                         for item in response.items)  # fmt: skip
    return describe_response(response)


class S7Codec:
    protocol = "s7"
    framings: tuple[str, ...] = ("s7",)
    default_unknown = NOT_FOUND

    # --- the cassette ---------------------------------------------------------------------------------

    def decode_request(self, request: bytes) -> dict[str, Any]:
        return self.render(request, None)[0]

    def decode_response(self, response: bytes, request: bytes) -> dict[str, Any]:
        fields = self.render(request, response)[2]
        assert fields is not None
        return fields

    def describe(self, request: bytes, response: bytes | None) -> str:
        _, asked, _, answered = self.render(request, response)
        return f"{asked} -> {answered}"

    def render(self, request: bytes, response: bytes | None) -> tuple[dict[str, Any], str, dict[str, Any] | None, str]:
        decoded = _request(request)
        if decoded is None:
            try:
                pdu.decode_request(request)
            except MalformedPdu as exc:
                why = str(exc)
            request_fields: dict[str, Any] = {"type": "malformed", "error": why}
            request_text = f"undecodable PDU {request[:16].hex(' ')}"
            asked: RequestPdu | None = None
        else:
            reference, asked = decoded
            request_fields, request_text = _request_fields(reference, asked), _request_text(asked)
        if response is None:
            return request_fields, request_text, None, "no answer"
        answer = _response(response, asked)
        if isinstance(answer, str):
            return request_fields, request_text, {"type": "malformed", "error": answer}, f"malformed answer ({answer})"
        return request_fields, request_text, _response_fields(*answer), _response_text(answer[1])

    def match_key(self, unit: int, request: bytes) -> Hashable:
        decoded = _request(request)
        if decoded is None:
            return (unit, request[:4] + b"\x00\x00" + request[6:])  # the reference is the client's to choose
        try:
            return (unit, pdu.encode_request(0, decoded[1]))  # one spelling of each request
        except pdu.S7PduError:
            return (unit, request[:4] + b"\x00\x00" + request[6:])

    def error_response(self, request: bytes, code: int) -> bytes:
        decoded = _request(request)
        reference = decoded[0] if decoded else (request[4] << 8 | request[5] if len(request) >= 6 else 0)
        return pdu.encode_response(reference, refusal(decoded[1] if decoded else None, code))

    def is_error(self, response: bytes) -> bool:
        answer = _response(response, None)
        return isinstance(answer, str) or refused(answer[1])

    def new_image(self) -> S7Image:
        return S7Image()

    # --- the wire -------------------------------------------------------------------------------------

    def sniff(self, data: bytes) -> str | None:
        if len(data) < 7:
            return None
        version, reserved, length = _TPKT.unpack_from(data)
        if version != framing.TPKT_VERSION or reserved or length < 7 or data[4] + 5 > length:
            return None
        code = data[5] & 0xF0
        if code == framing.CR or (code == framing.DT and len(data) > 7 and data[7] == pdu.PROTOCOL_ID):
            return "s7"
        return None

    def opens_request(self, framing_name: str, data: bytes) -> bool:
        if len(data) < 9 or data[0] != framing.TPKT_VERSION:
            return False
        code = data[5] & 0xF0
        if code == framing.CR:
            return True
        if code != framing.DT or data[7] != pdu.PROTOCOL_ID:
            return False
        if data[8] == Rosctr.USERDATA:
            return len(data) > 22 and data[22] >> 4 == 0x4  # the parameter's type: 4 request, 8 response
        return data[8] == Rosctr.JOB

    def frames(
        self, framing_name: str, side: Direction, expect: Expect, notes: list[str], who: str, origin: float
    ) -> list[Frame]:
        cutter = S7Cutter(expect)
        out: list[Frame] = []
        for index, (when, data) in enumerate(side.chunks):
            if index in side.gap_before:
                cutter = S7Cutter(expect, unit=cutter.unit)  # start afresh where bytes were lost
                notes.append(f"{who}: bytes lost before t={when - origin:.6f}s; framing restarted there")
            size = len(data)
            if (
                size > 13
                and not cutter.pending
                and data[0] == 3
                and data[2] << 8 | data[3] == size
                and data[4:7] == b"\x02\xf0\x80"
                and data[7] == 0x32
            ):
                # The common segment: one whole TPKT packet holding one whole S7 PDU (what a client and
                # a CPU send, one write each): cut here, as S7Cutter would, without its decoding.
                unit = cutter.unit if cutter.unit is not None else DEFAULT_UNIT
                out.append((when, data[11] << 8 | data[12], unit, data[7:]))
                continue
            for cut in cutter.feed(data):
                if cut.pdu is not None:
                    out.append((when, cut.ident, cut.unit if cut.unit is not None else DEFAULT_UNIT, cut.pdu))
                elif cut.text.startswith("broken"):
                    notes.append(f"{who}: stream {cut.text} at t={when - origin:.6f}s")
        return out

    def pair(self, framing_name: str, asked: Sequence[Frame], answered: Sequence[Frame]) -> list[Pair]:
        return pair_by_id(asked, answered)

    def cutter(self, framing_name: str, expect: Expect) -> S7Cutter:
        return S7Cutter(expect)

    def pairs_by_id(self, framing_name: str) -> bool:
        return True

    def unwrap(self, framing_name: str, data: bytes, expect: Expect) -> bytes | None:
        parts: list[bytes] = []
        at = 0
        while at + 4 <= len(data):
            length = _TPKT.unpack_from(data, at)[2]
            if length < 7:
                return None
            try:
                cotp = framing.decode_cotp(data[at + 4 : at + length])
            except ValueError:
                return None
            if cotp.code == framing.DT:
                parts.append(cotp.data)
            at += length
        return b"".join(parts) if parts else None

    # --- the traffic log and replay -------------------------------------------------------------------

    def log_exchange(self, exchange: Any, device: Any) -> tuple[int, bytes, bytes | None] | None:
        request = exchange.request
        reference = exchange.transaction_id or 0
        if isinstance(request, bytes):
            if not request:
                return None  # a refused COTP connect: no job
            raw = request
        else:
            raw = pdu.encode_request(reference, request)
        response = None if exchange.response is None else pdu.encode_response(reference, exchange.response)
        unit = unit_of(getattr(device, "rack", 0), getattr(device, "slot", 1))
        return unit, raw, response

    def is_handshake(self, request: bytes) -> bool:
        return len(request) > 10 and request[1] == Rosctr.JOB and request[10] == pdu.Function.SETUP_COMMUNICATION

    def replay_devices(
        self, device: str, units: Sequence[int], listen: str, transport: str, replay: dict[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """A CPU per rack and slot recorded, each on a listener of its own."""
        served: dict[str, dict[str, Any]] = {}
        for index, unit in enumerate(units or [DEFAULT_UNIT]):
            rack, slot = rack_slot(unit)
            name = device if index == 0 else f"{device}#rack{rack}slot{slot}"
            served[name] = {"protocol": "s7", "listen": listen, "rack": rack, "slot": slot, "replay": dict(replay)}
        return served


class S7Cutter:
    """One direction of an S7 connection cut into TPKT packets byte for byte: COTP connects and
    disconnects as pieces of their own, DT fragments joined until the end of an S7 PDU. The client's
    connect request (the server's confirm) names the rack and slot: the `unit` of what follows."""

    def __init__(self, expect: Expect, *, unit: int | None = None) -> None:
        self.expect = expect
        self.unit = unit
        self._buffer = bytearray()
        self._fragments = bytearray()  # raw TPKT packets of an unfinished PDU
        self._data = bytearray()  # their COTP user data
        self._broken = False

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._fragments)

    def feed(self, data: bytes) -> list[Cut]:
        if self._broken:
            return [Cut(bytes(data), text=f"{len(data)} bytes after a broken stream")] if data else []
        buffer = self._buffer
        buffer += data
        out: list[Cut] = []
        at = 0
        while len(buffer) - at >= 4:
            version, _, length = _TPKT.unpack_from(buffer, at)
            if version != framing.TPKT_VERSION or length < 7:
                self._broken = True
                rest = bytes(self._fragments) + bytes(buffer[at:])
                out.append(Cut(rest, text=f"broken: a TPKT header of version {version}, length {length}"))
                self._fragments.clear()
                buffer.clear()
                return out
            if len(buffer) - at < length:
                break
            packet = bytes(buffer[at : at + length])
            at += length
            cut = self._packet(packet)
            if cut is not None:
                out.append(cut)
        del buffer[:at]
        return out

    def _packet(self, packet: bytes) -> Cut | None:
        try:
            cotp = framing.decode_cotp(packet[4:])
        except ValueError as exc:
            return Cut(packet, text=f"COTP that does not decode: {exc}")
        if cotp.code in (framing.CR, framing.CC):
            tsap = cotp.called_tsap
            if len(tsap) == 2:
                self.unit = tsap[1]
            rack, slot = rack_slot(self.unit if self.unit is not None else DEFAULT_UNIT)
            what = "connect request" if cotp.code == framing.CR else "connect confirm"
            return Cut(packet, text=f"COTP {what} (rack {rack}, slot {slot})")
        if cotp.code != framing.DT:
            return Cut(packet, text="COTP disconnect")
        self._fragments += packet
        self._data += cotp.data
        if not cotp.eot:
            return None
        piece, message = bytes(self._fragments), bytes(self._data)
        self._fragments.clear()
        self._data.clear()
        reference = message[4] << 8 | message[5] if len(message) >= 6 and message[0] == pdu.PROTOCOL_ID else None
        if reference is None:
            return Cut(piece, text=f"{len(message)} bytes of COTP data that are no S7 PDU")
        unit = self.unit if self.unit is not None else DEFAULT_UNIT
        return Cut(piece, unit, reference, message)

    def flush(self) -> list[Cut]:
        rest = bytes(self._fragments) + bytes(self._buffer)
        self._fragments.clear()
        self._data.clear()
        self._buffer.clear()
        return [Cut(rest, text=f"{len(rest)} bytes of an unfinished TPKT packet")] if rest else []


# --- the learned image ------------------------------------------------------------------------------------

_Area = tuple[int, int, int]  # (unit, area, db)


class S7Image:
    """The bytes (and single bits) of each CPU's DB, M, I and Q areas that the capture showed."""

    def __init__(self) -> None:
        self._bytes: dict[_Area, dict[int, int]] = {}
        self._bits: dict[_Area, dict[tuple[int, int], int]] = {}

    def _where(self, unit: int, spec: VarSpec) -> _Area:
        return (unit, int(spec.area), spec.db if spec.area is Area.DB else 0)

    def bytes_of(self, unit: int, area: Area, db: int = 0) -> dict[int, int]:
        """A copy of what is known of one area: byte offset -> value."""
        return dict(self._bytes.get((unit, int(area), db if area is Area.DB else 0), {}))

    def _put(self, unit: int, spec: VarSpec, data: bytes) -> None:
        where = self._where(unit, spec)
        if spec.transport is TransportSize.BIT:
            bit = data[0] & 1 if data else 0
            self._bits.setdefault(where, {})[(spec.start, spec.bit)] = bit
            known = self._bytes.get(where)
            if known is not None and spec.start in known:
                known[spec.start] = known[spec.start] & ~(1 << spec.bit) | bit << spec.bit
            return
        table = self._bytes.setdefault(where, {})
        for offset, value in enumerate(data):
            table[spec.start + offset] = value

    def _get(self, unit: int, spec: VarSpec) -> bytes | None:
        where = self._where(unit, spec)
        table = self._bytes.get(where, {})
        if spec.transport is TransportSize.BIT:
            if spec.start in table:
                return bytes((table[spec.start] >> spec.bit & 1,))
            bit = self._bits.get(where, {}).get((spec.start, spec.bit))
            return None if bit is None else bytes((bit,))
        try:
            return bytes(table[spec.start + offset] for offset in range(spec.size))
        except KeyError:
            return None

    @staticmethod
    def _kept(spec: VarSpec) -> bool:
        return spec.area in (Area.DB, Area.FLAGS, Area.INPUTS, Area.OUTPUTS) and spec.transport not in (
            TransportSize.COUNTER,
            TransportSize.TIMER,
        )

    def learn(self, unit: int, request: bytes, response: bytes) -> None:
        asked, answer = _request(request), _response(response, None)
        if asked is None or isinstance(answer, str):
            return
        question, reply = asked[1], answer[1]
        if isinstance(question, pdu.ReadRequest) and isinstance(reply, pdu.ReadResponse):
            for spec, item in zip(question.items, reply.items, strict=False):
                size = 1 if spec.transport is TransportSize.BIT else spec.size
                if item.ok and self._kept(spec) and len(item.data) == size:
                    self._put(unit, spec, item.data)
        elif isinstance(question, pdu.WriteRequest) and isinstance(reply, pdu.WriteResponse):
            for spec, data, code in zip(question.items, question.data, reply.return_codes, strict=False):
                if code == ReturnCode.SUCCESS and self._kept(spec):
                    self._put(unit, spec, data.data)

    def answer(self, unit: int, request: bytes) -> bytes | None:
        asked = _request(request)
        if asked is None:
            return None
        reference, question = asked
        if isinstance(question, pdu.ReadRequest):
            items = []
            for spec in question.items:
                data = self._get(unit, spec) if self._kept(spec) else None
                if data is None:
                    return None
                items.append(
                    ItemData(ReturnCode.SUCCESS, _DATA_TRANSPORT.get(spec.transport, DataTransport.BYTE), data)
                )
            return pdu.encode_response(reference, pdu.ReadResponse(tuple(items)))
        if isinstance(question, pdu.WriteRequest):
            # A write to what the capture never showed is refused, as one to an address no tag maps.
            if not all(self._kept(spec) and self._get(unit, spec) is not None for spec in question.items):
                return None
            for spec, item in zip(question.items, question.data, strict=False):
                self._put(unit, spec, item.data)
            return pdu.encode_response(reference, pdu.WriteResponse(tuple(ReturnCode.SUCCESS for _ in question.items)))
        return None


register_codec(S7Codec())

__all__ = ["DEFAULT_UNIT", "S7Codec", "S7Cutter", "S7Image", "address", "rack_slot", "refusal", "unit_of"]
