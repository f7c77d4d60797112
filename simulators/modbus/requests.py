"""How a Modbus request is described to the fault hooks (simulators.hooks.RequestInfo)."""

from __future__ import annotations

from bifrost.modbus.pdu import (
    MaskWriteRegisterRequest,
    ReadCoilsRequest,
    ReadDiscreteInputsRequest,
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    ReadWriteMultipleRegistersRequest,
    RequestPdu,
    WriteMultipleCoilsRequest,
    WriteMultipleRegistersRequest,
    WriteSingleCoilRequest,
    WriteSingleRegisterRequest,
)


class ModbusRequestInfo:
    """A decoded request as a RequestInfo. Built for every request a server sees, so the spans are
    worked out only when a fault's match asks for them."""

    __slots__ = ("_spans", "request", "unit")

    nodes: tuple[str, ...] = ()

    def __init__(self, unit: int, request: RequestPdu) -> None:
        self.unit = unit
        self.request = request
        self._spans: tuple[tuple[str, int, int], ...] | None = None

    @property
    def function(self) -> int:
        return self.request.function

    @property
    def spans(self) -> tuple[tuple[str, int, int], ...]:
        if self._spans is None:
            self._spans = spans_of(self.request)
        return self._spans

    def __repr__(self) -> str:
        return f"ModbusRequestInfo(unit={self.unit}, function={self.function}, spans={self.spans})"


def spans_of(request: RequestPdu) -> tuple[tuple[str, int, int], ...]:
    """The (area, start, end exclusive) ranges a request touches."""
    if isinstance(request, ReadCoilsRequest):
        return (("coil", request.address, request.address + request.count),)
    if isinstance(request, ReadDiscreteInputsRequest):
        return (("di", request.address, request.address + request.count),)
    if isinstance(request, ReadInputRegistersRequest):
        return (("ir", request.address, request.address + request.count),)
    if isinstance(request, ReadHoldingRegistersRequest):
        return (("hr", request.address, request.address + request.count),)
    if isinstance(request, WriteSingleCoilRequest):
        return (("coil", request.address, request.address + 1),)
    if isinstance(request, WriteMultipleCoilsRequest):
        return (("coil", request.address, request.address + len(request.values)),)
    if isinstance(request, (WriteSingleRegisterRequest, MaskWriteRegisterRequest)):
        return (("hr", request.address, request.address + 1),)
    if isinstance(request, WriteMultipleRegistersRequest):
        return (("hr", request.address, request.address + len(request.values)),)
    if isinstance(request, ReadWriteMultipleRegistersRequest):
        return (
            ("hr", request.read_address, request.read_address + request.read_count),
            ("hr", request.write_address, request.write_address + len(request.values)),
        )
    return ()  # device identification and unsupported functions touch no address


__all__ = ["ModbusRequestInfo", "spans_of"]
