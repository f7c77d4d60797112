"""`bifrost.poll(connections, tags, ...)`: a fleet of Modbus TCP devices polled in one loop, in Rust.

Each cycle sends every device's read plan at once, each on its own connection; Rust decodes the
replies as they come (inline, on the loop's thread: `bifrost._native.FleetPoll` over the devices'
`TcpSession`s) and hands Python one batch when the last device has answered: only what changed by
more than the deadband, or, with `columnar=True`, every value in flat buffers (no object per value;
`numpy.asarray(batch.values)` wraps them without a copy, and numpy stays optional).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import cast

from bifrost import _native
from bifrost.connection import Connection
from bifrost.errors import BifrostError, ConfigError, DeviceError
from bifrost.modbus.client import ModbusConnection
from bifrost.modbus.pdu import ExceptionCode
from bifrost.tags import DataPoint

_HOLE = ExceptionCode.ILLEGAL_DATA_ADDRESS

Changes = dict[str, dict[str, DataPoint]]


@dataclass(frozen=True, slots=True)
class Columns:
    """A columnar batch: every tag of every device, at the cycle's end.

    `values` holds float64s (a bool as 0/1, a string as NaN, NaN where the read failed) and `good`
    a bool per column, both `memoryview`s in the order of `columns` (device, key).
    """

    timestamp: float
    values: memoryview[float]
    good: memoryview[bool]
    columns: tuple[tuple[str, str], ...]
    errors: dict[str, BifrostError]


@dataclass(frozen=True, slots=True)
class _Device:
    index: int
    connection: ModbusConnection
    names: tuple[str, ...]
    #: The device's column keys, as first planned; and where its columns start.
    keys: tuple[str, ...]
    first: int


class Poll:
    """The batches of `bifrost.poll`: `async for batch in poll` (or `async with`, to close it)."""

    def __init__(
        self,
        native: _native.FleetPoll,
        columns: tuple[tuple[str, str], ...],
        columnar: bool,
        devices: Mapping[str, _Device] | None = None,
    ) -> None:
        self._native = native
        self.columns = columns
        self._columnar = columnar
        self._devices = dict(devices or {})
        #: The devices whose reads failed in the last cycle, with the error (theirs tags are BAD).
        self.errors: dict[str, BifrostError] = {}

    def __aiter__(self) -> AsyncIterator[Changes | Columns]:
        return self

    async def __anext__(self) -> Changes | Columns:
        batch = await self._native.next()
        if batch is None:
            raise StopAsyncIteration
        if self._columnar:
            timestamp, values, good, errors = cast(
                "tuple[float, bytes | bytearray, bytes | bytearray, dict[str, BifrostError]]", batch
            )
            holes = await self._split(errors)
            if holes:
                values, good = bytearray(values), bytearray(good)
                patched_values, patched_good = memoryview(values).cast("d"), memoryview(good).cast("?")
                for name, points in holes.items():
                    device = self._devices[name]
                    for at, key in enumerate(device.keys, start=device.first):
                        point = points[key]
                        patched_values[at] = _as_float(point.value)
                        patched_good[at] = point.good
            self.errors = errors
            return Columns(timestamp, memoryview(values).cast("d"), memoryview(good).cast("?"), self.columns, errors)
        changes, errors = cast("tuple[Changes, dict[str, BifrostError]]", batch)
        for name, points in (await self._split(errors)).items():
            # Only the points this batch holds (what changed) are amended: the BAD ones of the
            # refused block get the values of the split reads.
            for key, point in list(changes.get(name, {}).items()):
                if not point.good and key in points:
                    changes[name][key] = points[key]
        self.errors = errors
        return changes

    async def _split(self, errors: dict[str, BifrostError]) -> dict[str, dict[str, DataPoint]]:
        """The devices whose block drew exception 2 (a hole in the map) this cycle, read again with
        the planner splitting the block (as `read_many` does); the poll uses the split plan from the
        next cycle on. Their points, every tag; `errors` keeps them only where a tag is in a hole."""
        found: dict[str, dict[str, DataPoint]] = {}
        for name, error in list(errors.items()):
            device = self._devices.get(name)
            if device is None or not isinstance(error, DeviceError) or error.code != _HOLE:
                continue
            connection = device.connection
            points = await connection.read_many(list(device.names))
            plan, formats = connection._plan(device.names)
            compiled = connection.engine.compile(plan, formats, connection.planner)  # type: ignore[attr-defined]
            positions = [device.keys.index(key) for key in compiled.keys]
            # The change filter takes what the split reads handed out as reported (so that a value
            # within the deadband of it is not a change), for the batches of changes.
            seen = [
                (column, point.value)
                for column, key in enumerate(device.keys)
                if (point := points.get(key)) is not None and point.good and point.value is not None
            ]
            self._native.replace(device.index, compiled.native, positions, seen)
            found[name] = points
            if all(point.good for point in points.values()):
                del errors[name]
        return found

    def close(self) -> None:
        """Stop polling (the connections stay open). Safe to call twice."""
        self._native.close()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Poll:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def poll(
    connections: Sequence[Connection] | Mapping[str, Connection],
    tags: Iterable[str] | Mapping[str, Iterable[str]],
    *,
    interval: float = 1.0,
    deadband: float = 0.0,
    columnar: bool = False,
    coalesce: float | None = None,
) -> Poll:
    """Poll `tags` on every connection every `interval` seconds; call it in the running loop.

    `connections`: open native-engine Modbus TCP connections, named by their URL, or a mapping of
    name to connection. `tags`: the tag names (or raw addresses) read on every device, or a mapping
    of device name to its own. A batch is `{device: {tag: DataPoint}}` of what changed by more than
    `deadband` (the first holds every tag; a failed read is a BAD point, its error in `Poll.errors`),
    or with `columnar=True` a `Columns` of every value.

    While a cycle waits for replies, the poll takes them in bulk: after a wake-up it rests
    `coalesce` seconds before it listens again (by default an eighth of the last cycle, 50 µs to
    2 ms), so that fifty replies cost a few wake-ups, not fifty. A batch comes at most that much
    later; `coalesce=0` takes every reply the moment it comes.
    """
    from bifrost.modbus._native_engine import NativeEngine

    named = dict(connections) if isinstance(connections, Mapping) else {c.url: c for c in connections}
    sessions: list[_native.TcpSession] = []
    plans: list[_native.NativePlan] = []
    columns: list[tuple[str, str]] = []
    devices: dict[str, _Device] = {}
    for index, (name, connection) in enumerate(named.items()):
        engine = connection.engine if isinstance(connection, ModbusConnection) else None
        session = getattr(engine, "_session", None) if isinstance(engine, NativeEngine) else None
        if not isinstance(connection, ModbusConnection) or session is None:
            raise ConfigError(
                f"bifrost.poll runs on open native-engine Modbus TCP connections (modbus://, engine='native'); "
                f"{name!r} is not one (open it first, with engine='native')"
            )
        names = tags[name] if isinstance(tags, Mapping) else tags
        plan, formats = connection._plan(tuple(names))
        compiled = connection.engine.compile(plan, formats, connection.planner)  # type: ignore[attr-defined]
        sessions.append(session)
        plans.append(compiled.native)
        devices[name] = _Device(index, connection, tuple(names), tuple(compiled.keys), len(columns))
        columns += [(name, key) for key in compiled.keys]
    native = _native.FleetPoll(
        sessions, plans, list(named), interval=interval, deadband=deadband, columnar=columnar, coalesce=coalesce
    )
    return Poll(native, tuple(columns), columnar, devices)


def _as_float(value: object) -> float:
    """A value as the columns hold it: a bool as 0/1, a number as a float, anything else NaN."""
    if isinstance(value, bool | int | float):
        return float(value)
    return math.nan


__all__ = ["Columns", "Poll", "poll"]
