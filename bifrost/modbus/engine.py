"""What a Modbus client engine does. `ModbusConnection` (client.py) does the rest: tag names,
addresses, planning and value conversion, the same for every engine.

An engine raises bifrost's errors: DeviceError (with the exception code), TimeoutError,
ConnectError (both naming the device) and ProtocolError.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence

from bifrost.errors import BifrostError
from bifrost.modbus.planner import Plan, Planner, ReadJob, ReadRequest
from bifrost.tags import Value
from bifrost.urls import Endpoint
from bifrost.values import WireFormat

Decoded = tuple[dict[str, Value], dict[str, BaseException]]


class Engine(ABC):
    """One connection to one Modbus device (or one serial bus), owned by one ModbusConnection."""

    name: str

    def __init__(self, endpoint: Endpoint, *, timeout: float) -> None:
        self.endpoint = endpoint
        self.device = endpoint.url
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

    def subscribe(
        self, planner: Planner, plan: Plan, formats: Mapping[str, WireFormat], interval: float, deadband: float
    ) -> AsyncIterator[Decoded] | None:
        """A native poll loop yielding only changes, or None to let the connection poll."""
        return None


def _bits(raw: Sequence[object]) -> bool:
    return bool(raw) and isinstance(raw[0], bool)
