"""How S7 requests read to the fault hooks (RequestInfo) and in the traffic log (ExchangeCodec)."""

from __future__ import annotations

from typing import Any

from bifrost.s7 import pdu
from bifrost.s7.pdu import ErrorResponse, RequestPdu, ReturnCode, TransportSize, VarSpec
from simulators.s7.model import area_key

SZL_FUNCTION = 0x4401
"""The function an SZL read counts as (user data, CPU functions group 4, subfunction 1)."""


def function_of(request: Any) -> int:
    if isinstance(request, pdu.SzlRequest):
        return SZL_FUNCTION
    if isinstance(request, bytes):
        return request[10] if len(request) > 10 and request[1] == pdu.Rosctr.JOB else 0
    return int(getattr(request, "function", 0))


def _span(spec: VarSpec) -> tuple[str, int, int]:
    return (
        area_key(spec.area, spec.db),
        spec.start,
        spec.start + (1 if spec.transport is TransportSize.BIT else spec.size),
    )


class S7RequestInfo:
    """A decoded job as fault matches see it: its function and the (area, start, end) byte ranges
    it touches, areas named DB1, M, I, Q."""

    __slots__ = ("_spans", "request")

    unit: int | None = None
    nodes: tuple[str, ...] = ()

    def __init__(self, request: RequestPdu) -> None:
        self.request = request
        self._spans: tuple[tuple[str, int, int], ...] | None = None

    @property
    def function(self) -> int:
        return function_of(self.request)

    @property
    def spans(self) -> tuple[tuple[str, int, int], ...]:
        if self._spans is None:
            items = getattr(self.request, "items", ())
            self._spans = tuple(_span(spec) for spec in items)
        return self._spans


def _where(spec: VarSpec) -> str:
    where = area_key(spec.area, spec.db)
    if spec.transport is TransportSize.BIT:
        return f"{where} {spec.start}.{spec.bit}"
    return f"{where} {spec.start}" if spec.size == 1 else f"{where} {spec.start}..{spec.start + spec.size - 1}"


def _hex(data: bytes, limit: int = 8) -> str:
    return data[:limit].hex(" ").upper() + (f" ...(+{len(data) - limit})" if len(data) > limit else "")


def describe_request(request: Any) -> str:
    """`read DB1 0..3, M 20.3`, `write DB1 6..7 = 04 D2`, `SZL 0x0424 index 0`, `PLC stop`..."""
    if isinstance(request, bytes):
        return f"undecodable PDU {_hex(request, 16)}"
    if isinstance(request, pdu.ReadRequest):
        return "read " + ", ".join(_where(spec) for spec in request.items)
    if isinstance(request, pdu.WriteRequest):
        parts = (f"{_where(spec)} = {_hex(data.data)}" for spec, data in zip(request.items, request.data, strict=False))
        return "write " + ", ".join(parts)
    if isinstance(request, pdu.SzlRequest):
        return f"SZL 0x{request.szl_id:04X} index {request.index}"
    if isinstance(request, pdu.SetupRequest):
        return f"setup communication (PDU {request.pdu_size}, AmQ {request.max_amq_calling})"
    if isinstance(request, pdu.PlcStopRequest):
        return "PLC stop"
    if isinstance(request, pdu.PlcControlRequest):
        return f"PLC start ({'cold' if request.cold else 'warm'}, {request.service.decode('latin-1')})"
    return str(request)


def _code(code: int) -> str:
    return "ok" if code == ReturnCode.SUCCESS else f"0x{code:02X}"


def describe_response(response: Any) -> str:
    if response is None:
        return "no answer"
    if isinstance(response, ErrorResponse):
        return response.message
    if isinstance(response, pdu.ReadResponse):
        return ", ".join(
            _hex(item.data) if item.ok else pdu.return_code_text(item.return_code) for item in response.items
        )
    if isinstance(response, pdu.WriteResponse):
        return ", ".join(
            _code(code) if code == ReturnCode.SUCCESS else pdu.return_code_text(code) for code in response.return_codes
        )
    if isinstance(response, pdu.SzlResponse):
        return f"{len(response.records())} record(s)" if response.ok else pdu.error_text(response.error)
    if isinstance(response, pdu.SetupResponse):
        return f"PDU {response.pdu_size}, AmQ {response.max_amq_calling}"
    return "ok"


def refused(response: Any) -> bool:
    if isinstance(response, ErrorResponse):
        return True
    if isinstance(response, pdu.ReadResponse):
        return any(not item.ok for item in response.items)
    if isinstance(response, pdu.WriteResponse):
        return any(code != ReturnCode.SUCCESS for code in response.return_codes)
    if isinstance(response, pdu.SzlResponse):
        return not response.ok
    return False


class S7Codec:
    """The ExchangeCodec of every S7 exchange: a refusal is an error answer or any item's return code."""

    def function(self, request: Any) -> int:
        return function_of(request)

    def refused(self, response: Any) -> bool:
        return refused(response)

    def describe_request(self, request: Any) -> str:
        return describe_request(request)

    def describe_response(self, response: Any) -> str:
        return describe_response(response)


S7 = S7Codec()

__all__ = ["S7", "SZL_FUNCTION", "S7Codec", "S7RequestInfo", "describe_request", "describe_response"]
