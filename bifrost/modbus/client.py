"""`bifrost.connect("modbus://...")`: the Modbus connection over either engine.

The connection resolves tag names (or raw addresses such as `hr:10:float32:CDAB`) to addresses and
wire formats, plans `read_many` into the fewest requests, and converts values; the engine moves
registers. Both engines therefore behave the same above the wire.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import cast

from bifrost.connection import Connection
from bifrost.errors import ConfigError
from bifrost.modbus import pdu
from bifrost.modbus.address import Address, Area, check_writable, parse_address, resolve_tag
from bifrost.modbus.engine import TRANSPORT_ERRORS, Decoded, Engine
from bifrost.modbus.planner import Plan, Planner, ReadItem, ReadRequest
from bifrost.tags import DataPoint, Quality, Tag, TagMap, Value
from bifrost.urls import Endpoint
from bifrost.values import WireFormat


def default_engine() -> str:
    """The engine used when `connect` is given none: BIFROST_MODBUS_ENGINE, else the native one."""
    return os.environ.get("BIFROST_MODBUS_ENGINE", "native")


def open_connection(endpoint: Endpoint, *, tags: TagMap | None, timeout: float, engine: str | None) -> Connection:
    name = engine or default_engine()
    engine_impl: Engine
    if name == "python":
        from bifrost.modbus._python_engine import PythonEngine

        engine_impl = PythonEngine(endpoint, timeout=timeout)
    elif name == "native":
        from bifrost.modbus._native_engine import NativeEngine

        engine_impl = NativeEngine(endpoint, timeout=timeout)
    else:
        raise ConfigError(f"unknown Modbus engine {name!r} (from BIFROST_MODBUS_ENGINE?); engines: native, python")
    return ModbusConnection(endpoint, engine_impl, tags=tags, timeout=timeout)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A tag name or raw address, ready for the wire."""

    key: str
    address: Address
    fmt: WireFormat
    writable: bool


class ModbusConnection(Connection):
    """A Modbus device. Calls on one connection are serialised: one request is on the wire at a time."""

    def __init__(self, endpoint: Endpoint, engine: Engine, *, tags: TagMap | None, timeout: float) -> None:
        super().__init__(endpoint.url, tags=tags, timeout=timeout)
        self.endpoint = endpoint
        self.engine = engine
        self.unit: int = endpoint.params["unit"]
        self.planner = Planner()
        self._resolved: dict[str, Resolved] = {}
        # Plans by the names read, valid while the planner knows of as many holes as when planned.
        self._plans: dict[tuple[str, ...], tuple[int, Plan, dict[str, WireFormat]]] = {}

    @property
    def engine_name(self) -> str:
        return self.engine.name

    async def open(self) -> None:
        await self.engine.open()

    async def close(self) -> None:
        await self.engine.close()

    def resolve(self, name: str) -> Resolved:
        """A tag of the tag map by name, else a raw address; a ConfigError says which it is neither."""
        found = self._resolved.get(name)
        if found is not None:
            return found
        tag = self.tags.get(name)
        if tag is not None:
            address, fmt = resolve_tag(tag)
            found = Resolved(name, address, fmt, tag.writable)
        else:
            try:
                address = parse_address(name)
            except ConfigError as exc:
                known = ", ".join(sorted(self.tags)) or "none"
                raise ConfigError(
                    f"{name!r} is not a tag of this connection ({self.tags.suggest(name)}tags: {known}) "
                    f"nor an address: {exc}"
                ) from None
            found = Resolved(name, address, address.wire_format(), True)
        self._resolved[name] = found
        return found

    def _plan(self, names: tuple[str, ...]) -> tuple[Plan, dict[str, WireFormat]]:
        """The plan of `names` (duplicates read once) and the wire format of each name, in the order
        first asked for."""
        cached = self._plans.get(names)
        holes = len(self.planner.holes)
        if cached is not None and cached[0] == holes:
            return cached[1], cached[2]
        formats: dict[str, WireFormat] = {}
        items = []
        for name in names:
            if name in formats:
                continue
            resolved = self.resolve(name)
            formats[name] = resolved.fmt
            items.append(ReadItem.of(name, self.unit, resolved.address, resolved.fmt))
        plan = self.planner.plan(items)
        if len(self._plans) < 256:  # a bound, for callers that read ever-new combinations
            self._plans[names] = (holes, plan, formats)
        return plan, formats

    async def read(self, tag: str) -> DataPoint:
        """Read one tag; any error is raised (DeviceError carries the exception code)."""
        values, errors = await self._execute((tag,))
        if tag in errors:
            raise errors[tag]
        return DataPoint(values[tag], Quality.GOOD, time.time())

    async def read_many(self, tags: Iterable[str]) -> dict[str, DataPoint]:
        """Read tags in the fewest requests. A tag the device refuses (a DeviceError) comes back with
        Quality.BAD and value None; a timeout or a lost connection is raised.
        """
        # Plans are cached by the names as given (a tuple is hashed, not copied), and list each once.
        plan, formats = self._plan(tags if type(tags) is tuple else tuple(tags))
        points = await self.engine.read_points(self.planner, plan, formats)
        if points is not None:
            return points  # ready, in the order asked for
        names = tuple(formats)
        values, errors = await self.engine.execute(self.planner, plan, formats)
        now = time.time()
        points = {name: DataPoint(value, Quality.GOOD, now) for name, value in values.items()}
        for name, error in errors.items():
            if isinstance(error, TRANSPORT_ERRORS):
                raise error
            points[name] = DataPoint(None, Quality.BAD, now)
        return {name: points[name] for name in names}

    async def _execute(self, names: tuple[str, ...]) -> Decoded:
        plan, formats = self._plan(names)
        return await self.engine.execute(self.planner, plan, formats)

    def describe(self, tag: str) -> Tag:
        resolved = self.resolve(tag)
        found = self.tags.get(tag)
        if found is not None:
            return found
        fmt = resolved.fmt
        return Tag(
            name=tag,
            address=str(resolved.address),
            type=fmt.type,
            length=fmt.length or None,
            byte_order=fmt.byte_order,
            writable=resolved.address.area.writable,
        )

    def preview_write(self, tag: str, value: Value) -> list[str]:
        resolved = self._writable(tag)
        address, fmt = resolved.address, resolved.fmt
        request: pdu.RequestPdu
        if address.area is Area.COIL:
            request = pdu.WriteSingleCoilRequest(address.offset, bool(fmt.encode(value)[0]))
        elif fmt.bit is not None:
            words = fmt.encode(value, current=[0])
            return [
                f"read hr:{address.offset} (function 3), then write it back with bit {fmt.bit} "
                f"{'set' if words[0] >> fmt.bit & 1 else 'cleared'} (function 6)"
            ]
        else:
            words = fmt.encode(value)
            request = (
                pdu.WriteSingleRegisterRequest(address.offset, words[0])
                if len(words) == 1
                else pdu.WriteMultipleRegistersRequest(address.offset, tuple(words))
            )
        frame = pdu.encode_request(request)
        return [f"unit {self.unit}: {pdu.function_name(request.function)} {address}: PDU {frame.hex(' ')}"]

    def _writable(self, tag: str) -> Resolved:
        resolved = self.resolve(tag)
        if not resolved.writable:
            raise ConfigError(f"tag {tag!r} is not writable (writable: false in its tag map)")
        check_writable(resolved.address)
        return resolved

    async def write(self, tag: str, value: Value) -> None:
        resolved = self._writable(tag)
        address = resolved.address
        if address.area is Area.COIL:
            words = resolved.fmt.encode(value)
            await self.engine.write_coils(self.unit, address.offset, [bool(words[0])])
            return
        if resolved.fmt.bit is not None:
            # A bit inside a register: read the register, change the bit, write it back (FC3 then FC6).
            current = await self.engine.read(ReadRequest(self.unit, Area.HOLDING_REGISTER, address.offset, 1))
            words = resolved.fmt.encode(value, current=[int(current[0])])
        else:
            words = resolved.fmt.encode(value)
        await self.engine.write_registers(self.unit, address.offset, words)

    # -- the other function codes -------------------------------------------------------------

    def _register(self, tag: str, what: str, *, write: bool) -> Resolved:
        """A tag on holding registers (a whole value, not a bit), for FC22 and FC23."""
        resolved = self.resolve(tag)
        address = resolved.address
        if address.area is not Area.HOLDING_REGISTER or resolved.fmt.bit is not None:
            raise ConfigError(f"{what} works on holding registers (hr:N), not {tag!r} ({address})")
        if write and not resolved.writable:
            raise ConfigError(f"tag {tag!r} is not writable (writable: false in its tag map)")
        return resolved

    async def mask_write(self, tag: str, and_mask: int, or_mask: int) -> None:
        """FC22: the register becomes (register AND and_mask) OR (or_mask AND NOT and_mask), in one
        request on the device (no read-modify-write race with other clients)."""
        resolved = self._register(tag, "mask_write", write=True)
        request = pdu.MaskWriteRegisterRequest(resolved.address.offset, and_mask, or_mask)
        await self.engine.transact(self.unit, request)

    async def read_write(self, read: str, write: str, value: Value) -> DataPoint:
        """FC23: write `value` to the tag `write` and read the tag `read`, in one request (the
        device writes first)."""
        source = self._register(read, "read_write", write=False)
        target = self._register(write, "read_write", write=True)
        words = tuple(target.fmt.encode(value))
        request = pdu.ReadWriteMultipleRegistersRequest(
            source.address.offset, source.fmt.words, target.address.offset, words
        )
        response = await self.engine.transact(self.unit, request)
        assert isinstance(response, pdu.ReadWriteMultipleRegistersResponse)
        return DataPoint(source.fmt.decode(response.values), Quality.GOOD, time.time())

    async def device_identification(self, code: int = pdu.DeviceIdCode.BASIC) -> dict[int, bytes]:
        """FC43/14: the identification objects `code` selects (1 basic: vendor, product code,
        revision), by object id; an answer that says more follows is asked again from there."""
        objects: dict[int, bytes] = {}
        object_id = 0
        for _ in range(256):  # each answer brings at least one object id further, so this ends
            request = pdu.ReadDeviceIdentificationRequest(code, object_id)
            response = await self.engine.transact(self.unit, request)
            assert isinstance(response, pdu.ReadDeviceIdentificationResponse)
            objects.update(response.as_dict())
            if not response.more_follows or response.next_object_id <= object_id:
                break
            object_id = response.next_object_id
        return objects

    async def report_server_id(self) -> pdu.ReportServerIdResponse:
        """FC17: the device's id bytes and whether it says it is running."""
        response = await self.engine.transact(self.unit, pdu.ReportServerIdRequest())
        assert isinstance(response, pdu.ReportServerIdResponse)
        return response

    async def subscribe(
        self, tags: Iterable[str], *, interval: float = 1.0, deadband: float = 0.0
    ) -> AsyncIterator[dict[str, DataPoint]]:
        names = tuple(dict.fromkeys(tags))
        plan, formats = self._plan(names)
        if getattr(self.engine, "loop_driven", False) and not plan.failed:
            async for batch in self._subscribe_in_rust(names, interval, deadband):
                yield batch
            return
        points = self.engine.subscribe_points(self.planner, plan, formats, interval, deadband)
        if points is not None:
            async for batch in points:
                yield batch
            return
        async for batch in super().subscribe(names, interval=interval, deadband=deadband):
            yield batch

    async def _subscribe_in_rust(
        self, names: tuple[str, ...], interval: float, deadband: float
    ) -> AsyncIterator[dict[str, DataPoint]]:
        """The poll loop in Rust (`bifrost.poll` of this one connection), while the device serves every
        request; once it refuses one (perhaps a hole in its map, which the planner splits), the
        loop of `read_many` goes on from what was yielded, so that only changes come still."""
        from bifrost.modbus.fleet import poll

        last: dict[str, DataPoint] = {}
        async with poll({self.url: self}, names, interval=interval, deadband=deadband) as batches:
            async for batch in batches:
                error = batches.errors.get(self.url)
                if isinstance(error, TRANSPORT_ERRORS):
                    raise error
                if error is not None:
                    break  # this batch is read again below, the refusal split by the planner
                points = cast("dict[str, dict[str, DataPoint]]", batch).get(self.url)
                if points:
                    last.update(points)
                    yield points
        values = {name: point.value for name, point in last.items()}
        while True:
            points = await self.read_many(names)
            changed = {
                name: point
                for name, point in points.items()
                if name not in values or _moved(values[name], point.value, deadband)
            }
            for name, point in changed.items():
                values[name] = point.value
            if changed:
                yield changed
            await asyncio.sleep(interval)  # the poll interval itself


def _moved(old: Value | None, new: Value | None, deadband: float) -> bool:
    """The rule of `Connection.subscribe`: numbers by more than the deadband, the rest by equality."""
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        return abs(new - old) > deadband
    return old != new
