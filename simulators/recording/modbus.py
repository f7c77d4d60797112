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
from collections.abc import Hashable
from typing import Any

from bifrost.modbus import pdu
from bifrost.modbus.pdu import ExceptionResponse, MalformedFrame
from simulators.modbus.traffic import describe_request, describe_response
from simulators.recording.codec import register_codec

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


register_codec(ModbusCodec())

__all__ = ["ModbusCodec", "ModbusImage"]
