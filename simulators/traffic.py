"""The traffic log: every request a simulated device sees and what it answered, decoded.

Always on, so it is cheap: the server appends one tuple per exchange to a bounded deque (the newest
10,000 by default; older ones are dropped and counted). Reading it is for tests and debugging:

    log = host.devices["plc1"].log
    assert log.count(function=5) == 1          # one coil write
    assert log.writes("pump.run") == [True]    # values written to a tag, decoded through the device map
    log.assert_no_errors()                     # no exception was answered, or the traffic is shown

The server appends on its event-loop thread while a test reads from its own; a deque's append and a
copy of it are each atomic, so readers work on a snapshot and never see a half-written entry.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import NamedTuple

from bifrost.modbus import pdu
from bifrost.modbus.pdu import ExceptionResponse, RequestPdu, ResponsePdu, function_name
from bifrost.tags import Value

NOTHING_WRITTEN: Mapping[str, Value] = MappingProxyType({})
DEFAULT_MAXLEN = 10_000


class Exchange(NamedTuple):
    """One request and its answer.

    `request` is the decoded request, or the raw PDU bytes of one that did not decode. `response` is
    what was sent (an ExceptionResponse for a refusal), None when nothing was (a broadcast, a fault
    that dropped it). `error` says why the request was not served as asked (a decode error, a fault's
    action, a value that does not fit its wire type), else None. `written` holds the tag values the
    request set.
    """

    plant_time: float
    wall_time: float
    device: str
    client: str
    unit: int
    transaction_id: int | None
    request: RequestPdu | bytes
    response: ResponsePdu | None
    error: str | None = None
    written: Mapping[str, Value] = NOTHING_WRITTEN

    @property
    def function(self) -> int:
        request = self.request
        if isinstance(request, bytes):
            return request[0] & 0x7F if request else 0
        return request.function

    @property
    def refused(self) -> bool:
        """Whether the answer was an exception response."""
        return isinstance(self.response, ExceptionResponse)

    def describe(self) -> str:
        """One line: time, client, unit, transaction, request and answer."""
        tid = "-" if self.transaction_id is None else str(self.transaction_id)
        line = (
            f"{self.plant_time:10.3f}s  {self.client:<21} unit {self.unit:<3} tid {tid:<5} "
            f"{describe_request(self.request)} -> {describe_response(self.response)}"
        )
        if self.written:
            line += "  [" + ", ".join(f"{name}={value!r}" for name, value in self.written.items()) + "]"
        if self.error:
            line += f"  ({self.error})"
        return line


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
    return "ok"


class TrafficLog:
    """The exchanges of one device, oldest first, bounded at `maxlen` (the oldest are dropped and counted)."""

    def __init__(self, device: str, maxlen: int = DEFAULT_MAXLEN) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, not {maxlen}")
        self.device = device
        self._entries: deque[Exchange] = deque(maxlen=maxlen)
        self.dropped = 0
        """Exchanges dropped from the front since the last clear(), to keep the newest `maxlen`."""

    @property
    def maxlen(self) -> int:
        return self._entries.maxlen or 0

    def record(self, exchange: Exchange) -> None:
        """Append one exchange (the server does this)."""
        entries = self._entries
        if len(entries) == entries.maxlen:
            self.dropped += 1
        entries.append(exchange)

    def clear(self) -> None:
        self._entries.clear()
        self.dropped = 0

    def entries(self) -> list[Exchange]:
        """Every exchange kept, oldest first (a snapshot)."""
        return list(self._entries)

    def __iter__(self) -> Iterator[Exchange]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self._entries)

    def requests(self, function: int | None = None, unit: int | None = None) -> list[Exchange]:
        """The exchanges, optionally only those of one function code and/or one unit."""
        return [
            exchange
            for exchange in self.entries()
            if (function is None or exchange.function == function) and (unit is None or exchange.unit == unit)
        ]

    def count(self, function: int | None = None, unit: int | None = None) -> int:
        if function is None and unit is None:
            return len(self._entries)
        return len(self.requests(function, unit))

    def writes(self, tag: str) -> list[Value]:
        """The values clients wrote to `tag`, oldest first, as the tag holds them (decoded through the
        device's map and the value codec)."""
        return [exchange.written[tag] for exchange in self.entries() if tag in exchange.written]

    def errors(self) -> list[Exchange]:
        """The exchanges answered with an exception response."""
        return [exchange for exchange in self.entries() if exchange.refused]

    def assert_no_errors(self) -> None:
        """Raise AssertionError, showing the refused requests and the latest traffic, if any was refused."""
        errors = self.errors()
        if errors:
            shown = "\n".join("  " + exchange.describe() for exchange in errors[-20:])
            more = " (the last 20 shown)" if len(errors) > 20 else ""
            raise AssertionError(
                f"{self.device}: {len(errors)} request(s) answered with an exception{more}:\n{shown}\n"
                f"latest traffic:\n{self.format()}"
            )

    def format(self, last: int = 20) -> str:
        """The last `last` exchanges, one per line, saying how many are not shown and how many were dropped."""
        entries = self.entries()
        shown = entries[-last:] if last > 0 else []
        lines = []
        if self.dropped:
            lines.append(f"  ({self.dropped} earlier exchange(s) dropped: the log keeps the newest {self.maxlen})")
        if len(entries) > len(shown):
            lines.append(f"  ... {len(entries) - len(shown)} earlier exchange(s) not shown")
        lines.extend("  " + exchange.describe() for exchange in shown)
        if not entries:
            lines.append("  (no traffic)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"TrafficLog({self.device!r}, {len(self._entries)} exchange(s), {self.dropped} dropped)"


__all__ = ["DEFAULT_MAXLEN", "Exchange", "TrafficLog", "describe_request", "describe_response"]
