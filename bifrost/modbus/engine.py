"""What a Modbus client engine does. `ModbusConnection` (client.py) does the rest: tag names,
addresses, planning and value conversion, the same for every engine.

An engine raises bifrost's errors: DeviceError (with the exception code), TimeoutError,
ConnectError (both naming the device) and ProtocolError.

An engine may also hand back ready `DataPoint`s in bulk (`read_points`, `subscribe_points`), so that
`read_many` and `subscribe` need no Python work per tag; one that does not (returns None) gets its
values turned into points by the connection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence

import bifrost.errors as bifrost_errors
from bifrost.errors import BifrostError, ConnectError, ProtocolError
from bifrost.modbus import pdu
from bifrost.modbus.planner import Plan, Planner, ReadJob, ReadRequest
from bifrost.tags import DataPoint, Value
from bifrost.urls import Endpoint
from bifrost.values import WireFormat

Decoded = tuple[dict[str, Value], dict[str, BaseException]]

# Errors that say the device (or the way to it) failed as a whole, rather than one tag: raised by
# read_many and subscribe, where a tag the device refuses is a BAD point.
TRANSPORT_ERRORS = (bifrost_errors.TimeoutError, ConnectError, ProtocolError)


class Engine(ABC):
    """One connection to one Modbus device (or one serial bus), owned by one ModbusConnection."""

    name: str

    def __init__(self, endpoint: Endpoint, *, timeout: float) -> None:
        self.endpoint = endpoint
        # A serial line is named by its port, on both engines: the devices on it share it (the
        # native engine keeps one bus per port), and the unit is in every message that needs it.
        self.device = f"modbus+rtu://{endpoint.path}" if endpoint.scheme == "modbus+rtu" else endpoint.url
        self.timeout = timeout

    @abstractmethod
    async def open(self) -> None:
        """Connect, or raise ConnectError naming the device."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect; safe to call twice."""

    @abstractmethod
    async def read(self, request: ReadRequest) -> Sequence[int] | Sequence[bool]:
        """The registers or bits of one read request."""

    @abstractmethod
    async def write_registers(self, unit: int, start: int, words: Sequence[int]) -> None:
        """Write holding registers: FC6 for one word, FC16 for several."""

    @abstractmethod
    async def write_coils(self, unit: int, start: int, bits: Sequence[bool]) -> None:
        """Write coils: FC5 for one, FC15 for several."""

    @abstractmethod
    async def transact(self, unit: int, request: pdu.RequestPdu) -> pdu.ResponsePdu:
        """One request of any function code (mask write, read/write multiple, device identification,
        report server id ...) and its answer, checked against the request; an exception answer
        raises DeviceError, an answer that does not fit the request ProtocolError."""

    async def execute(self, planner: Planner, plan: Plan, formats: Mapping[str, WireFormat]) -> Decoded:
        """Run a read plan and decode every value: per key, the value or the error.

        A request that draws exception 2 is split by the planner (a hole in the device's map), so only
        the tags really in the hole fail. Engines may override this to run the plan natively.
        """
        job = ReadJob(planner, plan)
        while (request := job.next_request()) is not None:
            try:
                job.answer(await self.read(request))
            except BifrostError as exc:
                job.fail(exc)
        values: dict[str, Value] = {}
        errors = dict(job.errors)
        for key, raw in job.values.items():
            fmt = formats[key]
            values[key] = fmt.decode(raw) if not _bits(raw) else bool(raw[0])
        return values, errors

    async def read_points(
        self, planner: Planner, plan: Plan, formats: Mapping[str, WireFormat]
    ) -> dict[str, DataPoint] | None:
        """Run a read plan into ready points, or None to let the connection make them from `execute`.

        The points are keyed and ordered as `formats`, all of one timestamp: `DataPoint(None,
        Quality.BAD)` where the device refused the tag; a transport error (TimeoutError,
        ConnectError, ProtocolError) is raised. Holes are split as by `execute`.
        """
        return None

    def subscribe_points(
        self, planner: Planner, plan: Plan, formats: Mapping[str, WireFormat], interval: float, deadband: float
    ) -> AsyncIterator[dict[str, DataPoint]] | None:
        """A native poll loop yielding ready points of what changed (as `subscribe`, with the rules of
        `read_points`), or None to let the connection use `subscribe`."""
        return None


def _bits(raw: Sequence[object]) -> bool:
    return bool(raw) and isinstance(raw[0], bool)
