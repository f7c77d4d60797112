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
from typing import Any, NamedTuple, Protocol

from bifrost.tags import Value

NOTHING_WRITTEN: Mapping[str, Value] = MappingProxyType({})
DEFAULT_MAXLEN = 10_000


class ExchangeCodec(Protocol):
    """How one protocol's exchanges read: its front-end gives one, shared by all its exchanges."""

    def function(self, request: Any) -> int:
        """The request's function or service code (what `log.count(function=...)` counts)."""
        ...

    def refused(self, response: Any) -> bool:
        """Whether the answer was the protocol's refusal (an exception response, a Bad status)."""
        ...

    def describe_request(self, request: Any) -> str: ...

    def describe_response(self, response: Any) -> str: ...


class PlainCodec:
    """Exchanges of a front-end that gives no codec: requests and answers shown as they are."""

    def function(self, request: Any) -> int:
        return int(getattr(request, "function", 0))

    def refused(self, response: Any) -> bool:
        return False

    def describe_request(self, request: Any) -> str:
        return request[:16].hex(" ") if isinstance(request, bytes) else str(request)

    def describe_response(self, response: Any) -> str:
        return "no answer" if response is None else str(response)


PLAIN = PlainCodec()


class Exchange(NamedTuple):
    """One request and its answer.

    `request` is the decoded request, or the raw bytes of one that did not decode. `response` is
    what was sent (for Modbus an ExceptionResponse for a refusal), None when nothing was (a broadcast,
    a fault that dropped it). `error` says why the request was not served as asked (a decode error, a
    fault's action, a value that does not fit its wire type), else None. `written` holds the tag values
    the request set. `codec` is the protocol's reading of them (its front-end's ExchangeCodec).
    `unit` and `transaction_id` are the protocol's own (None where it has none).
    """

    plant_time: float
    wall_time: float
    device: str
    client: str
    unit: int | None
    transaction_id: int | None
    request: Any
    response: Any
    error: str | None = None
    written: Mapping[str, Value] = NOTHING_WRITTEN
    codec: ExchangeCodec = PLAIN

    @property
    def function(self) -> int:
        return self.codec.function(self.request)

    @property
    def refused(self) -> bool:
        """Whether the answer was the protocol's refusal (Modbus: an exception response)."""
        return self.codec.refused(self.response)

    def describe(self) -> str:
        """One line: time, client, unit, transaction, request and answer."""
        tid = "-" if self.transaction_id is None else str(self.transaction_id)
        unit = "-" if self.unit is None else str(self.unit)
        codec = self.codec
        line = (
            f"{self.plant_time:10.3f}s  {self.client:<21} unit {unit:<3} tid {tid:<5} "
            f"{codec.describe_request(self.request)} -> {codec.describe_response(self.response)}"
        )
        if self.written:
            line += "  [" + ", ".join(f"{name}={value!r}" for name, value in self.written.items()) + "]"
        if self.error:
            line += f"  ({self.error})"
        return line


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


__all__ = ["DEFAULT_MAXLEN", "NOTHING_WRITTEN", "PLAIN", "Exchange", "ExchangeCodec", "PlainCodec", "TrafficLog"]
