"""How Modbus exchanges read in the traffic log (simulators.traffic.ExchangeCodec)."""

from __future__ import annotations

from typing import Any

from bifrost.modbus import pdu
from bifrost.modbus.pdu import ExceptionResponse, RequestPdu, ResponsePdu, function_name


def _span(area: str, address: int, count: int) -> str:
    return f"{area}:{address}" if count == 1 else f"{area}:{address}-{address + count - 1}"


def _values(values: tuple[int, ...] | tuple[bool, ...], limit: int = 8) -> str:
    shown = " ".join(("1" if value else "0") if isinstance(value, bool) else f"{value:04X}" for value in values[:limit])
    return shown + (f" ...(+{len(values) - limit})" if len(values) > limit else "")


def describe_request(request: RequestPdu | bytes) -> str:
    """`read hr:0-1`, `write coil:0 = 1`, `mask hr:3 and 00F2 or 0025`, ..."""
    if isinstance(request, bytes):
        return f"undecodable PDU {request[:16].hex(' ')}{' ...' if len(request) > 16 else ''}"
    if isinstance(request, pdu.ReadCoilsRequest):
        return f"read {_span('coil', request.address, request.count)}"
    if isinstance(request, pdu.ReadDiscreteInputsRequest):
        return f"read {_span('di', request.address, request.count)}"
    if isinstance(request, pdu.ReadHoldingRegistersRequest):
        return f"read {_span('hr', request.address, request.count)}"
    if isinstance(request, pdu.ReadInputRegistersRequest):
        return f"read {_span('ir', request.address, request.count)}"
    if isinstance(request, pdu.WriteSingleCoilRequest):
        return f"write coil:{request.address} = {int(request.value)}"
    if isinstance(request, pdu.WriteSingleRegisterRequest):
        return f"write hr:{request.address} = {request.value:04X}"
    if isinstance(request, pdu.WriteMultipleCoilsRequest):
        return f"write {_span('coil', request.address, len(request.values))} = {_values(request.values)}"
    if isinstance(request, pdu.WriteMultipleRegistersRequest):
        return f"write {_span('hr', request.address, len(request.values))} = {_values(request.values)}"
    if isinstance(request, pdu.MaskWriteRegisterRequest):
        return f"mask hr:{request.address} and {request.and_mask:04X} or {request.or_mask:04X}"
    if isinstance(request, pdu.ReadWriteMultipleRegistersRequest):
        written = _span("hr", request.write_address, len(request.values))
        read = _span("hr", request.read_address, request.read_count)
        return f"write {written} = {_values(request.values)}, read {read}"
    if isinstance(request, pdu.ReadDeviceIdentificationRequest):
        return f"read device identification (code {request.read_code}, from object {request.object_id})"
    if isinstance(request, pdu.ReportServerIdRequest):
        return "report server id"
    return f"{function_name(request.function)} {request.data[:16].hex(' ')}"


def describe_response(response: ResponsePdu | None) -> str:
    if response is None:
        return "no answer"
    if isinstance(response, ExceptionResponse):
        return response.message
    if isinstance(response, (pdu.ReadCoilsResponse, pdu.ReadDiscreteInputsResponse)):
        return _values(response.values)
    if isinstance(
        response,
        (pdu.ReadHoldingRegistersResponse, pdu.ReadInputRegistersResponse, pdu.ReadWriteMultipleRegistersResponse),
    ):
        return _values(response.values)
    if isinstance(response, pdu.ReadDeviceIdentificationResponse):
        return ", ".join(f"{object_id}={value.decode('latin-1')!r}" for object_id, value in response.objects)
    if isinstance(response, pdu.ReportServerIdResponse):
        return f"id {response.server_id.decode('latin-1')!r}, {'running' if response.running else 'stopped'}"
    return "ok"


class ModbusCodec:
    """The ExchangeCodec of every Modbus exchange."""

    def function(self, request: Any) -> int:
        if isinstance(request, bytes):
            return request[0] & 0x7F if request else 0
        return int(request.function)

    def refused(self, response: Any) -> bool:
        return isinstance(response, ExceptionResponse)

    def describe_request(self, request: Any) -> str:
        return describe_request(request)

    def describe_response(self, response: Any) -> str:
        return describe_response(response)


MODBUS = ModbusCodec()

__all__ = ["MODBUS", "ModbusCodec", "describe_request", "describe_response"]
