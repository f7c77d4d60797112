"""The native Modbus engine under ModbusConnection: Rust, in two shapes.

* Modbus TCP: `bifrost._native.TcpSession`, driven by the running asyncio loop. Its socket is
  watched by the loop; the Rust codec and state machine run inline in the loop's callbacks, and
  timeouts are the loop's timers, so no call crosses a thread (the h11 shape: Rust the engine,
  asyncio the driver). `?max_in_flight=N` pipelines requests on the connection.
* RTU on a serial port and RTU over TCP: `bifrost._native.ModbusClient`, a tokio task per
  connection that frames every request itself (RTU: unit, PDU, CRC; a reply's end found from its
  function code and byte count) on a tokio byte stream, reached through `bridge.rs`; it also serves
  Rust without asyncio.

A read plan is compiled once into a `NativePlan` and then runs in Rust in one call: the requests go
out, every value is decoded in Rust, and the values come back in bulk. A request the device refuses
with exception 2 (a hole in its map) is handed to the planner's ReadJob, so the hole is split and
remembered exactly as by the Python engine; the rest of the plan is not read again. Subscriptions
poll in Rust and yield only what changed.

`read_points` and `subscribe_points` are the bulk path of `read_many` and `subscribe`: the native
plan knows its keys, so Rust hands back a ready dict of `DataPoint`s (one timestamp per read) and
Python only looks at the requests that failed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import cast

from bifrost import _native
from bifrost.errors import BifrostError, ConnectError, DeviceError, ProtocolError
from bifrost.modbus import pdu
from bifrost.modbus.engine import TRANSPORT_ERRORS, Decoded, Engine
from bifrost.modbus.planner import Plan, Planner, ReadJob, ReadRequest, Slice, hole_error
from bifrost.tags import DataPoint, Quality, Value
from bifrost.urls import Endpoint
from bifrost.values import WireFormat

log = logging.getLogger("bifrost.modbus.native")

# Compiled plans kept per engine (ModbusConnection reuses its Plan objects, so a poll hits the cache).
_PLAN_CACHE = 256
_HOLE = pdu.ExceptionCode.ILLEGAL_DATA_ADDRESS
# Requests that only read (identity): queued with the reads; every other one goes with the writes.
_READS_ONLY = (pdu.ReadDeviceIdentificationRequest, pdu.ReportServerIdRequest)


def transport_of(endpoint: Endpoint) -> tuple[str, str]:
    """The native transport and address of a modbus://, modbus+rtu+tcp:// or modbus+rtu:// endpoint."""
    if endpoint.scheme == "modbus+rtu":
        return "serial", endpoint.path
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    kind = "rtu_over_tcp" if endpoint.scheme == "modbus+rtu+tcp" else "tcp"
    return kind, f"{host}:{endpoint.port}"


class _Compiled:
    """A Plan compiled for Rust: the native plan, and the keys in the order of its tags."""

    __slots__ = ("holes", "keys", "native", "plan")

    def __init__(self, plan: Plan, native: _native.NativePlan, keys: tuple[str, ...], holes: bool) -> None:
        self.plan = plan
        self.native = native
        self.keys = keys
        # Whether the planner knew of holes when this plan was made: only then can a successful read
        # narrow one. (A hole found later is found by this engine, and the connection plans anew.)
        self.holes = holes


class NativeEngine(Engine):
    """The Rust engine: a loop-driven session (TCP) or a tokio task (RTU); every call is awaitable."""

    name = "native"
    client: _native.TcpSession | _native.ModbusClient

    @property
    def loop_driven(self) -> bool:
        """Whether the connection is a loop-driven TcpSession (which `bifrost.poll` can run)."""
        return self._session is not None

    def __init__(self, endpoint: Endpoint, *, timeout: float) -> None:
        super().__init__(endpoint, timeout=timeout)
        self._compiled: dict[int, _Compiled] = {}
        kind, address = transport_of(endpoint)
        self._session: _native.TcpSession | None = None
        if kind == "tcp":
            return  # the session is made by open(), once the host is resolved
        params = endpoint.params
        serial = (
            {
                "baud": params["baud"],
                "parity": params["parity"],
                "data_bits": params["bytesize"],
                "stop_bits": params["stopbits"],
            }
            if kind == "serial"
            else {}
        )
        self.client = _native.ModbusClient(kind, address, name=self.device, timeout=timeout, **serial)

    async def open(self) -> None:
        if isinstance(getattr(self, "client", None), _native.ModbusClient):
            await self.client.connect()
            return
        if self._session is None:
            address = await self._resolve()
            self._session = self.client = _native.TcpSession(
                address,
                name=self.device,
                timeout=self.timeout,
                max_in_flight=self.endpoint.params.get("max_in_flight", 1),
                warn=log.warning,
            )
        await self._session.connect()

    async def _resolve(self) -> str:
        """The host's first address as `ip:port` (the session connects to an address, not a name)."""
        host, port = self.endpoint.host, self.endpoint.port or 502
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConnectError(f"{self.device}: cannot connect: {exc.strerror or exc}") from exc
        ip = str(infos[0][4][0])
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    async def close(self) -> None:
        if self._session is not None:
            self._session.close()
        elif isinstance(self.client, _native.ModbusClient):
            await self.client.close()

    async def read(self, request: ReadRequest) -> Sequence[int] | Sequence[bool]:
        return await self.client.read(request.unit, request.area.value, request.start, request.count)

    async def write_registers(self, unit: int, start: int, words: Sequence[int]) -> None:
        await self.client.write_registers(unit, start, list(words))

    async def write_coils(self, unit: int, start: int, bits: Sequence[bool]) -> None:
        await self.client.write_coils(unit, start, list(bits))

    async def transact(self, unit: int, request: pdu.RequestPdu) -> pdu.ResponsePdu:
        raw = await self.client.transact(unit, pdu.encode_request(request), not isinstance(request, _READS_ONLY))
        # The same checks as the Python engine's, in the same words (framing.ClientConnection).
        try:
            response = pdu.decode_response(raw, request)
        except pdu.MalformedFrame as exc:
            raise ProtocolError(f"{self.device}: protocol error: {exc}") from None
        reason = pdu.response_mismatch(request, response)
        if reason is not None:
            raise ProtocolError(f"{self.device}: protocol error: {reason}")
        return response

    def compile(self, plan: Plan, formats: Mapping[str, WireFormat], planner: Planner | None = None) -> _Compiled:
        """The native plan of `plan`, built once per Plan object."""
        cached = self._compiled.get(id(plan))
        if cached is not None and cached.plan is plan:
            return cached
        # The keys in the order of `formats` (the order the caller asked for), so that the points of
        # `read_points` come out in that order.
        keys = tuple(key for key in formats if key in plan.slices)
        if len(keys) != len(plan.slices):
            keys = tuple(plan.slices)
        requests = [(r.unit, r.area.value, r.start, r.count) for r in plan.requests]
        tags = []
        for key in keys:
            where = plan.slices[key]
            fmt = formats[key]
            tags.append(
                (
                    where.request,
                    where.offset,
                    fmt.type.value,
                    fmt.byte_order.value,
                    fmt.length,
                    fmt.scale,
                    fmt.offset,
                    fmt.bit,
                )
            )
        holes = planner is None or len(planner.holes) > 0
        compiled = _Compiled(plan, _native.NativePlan(requests, tags, list(keys)), keys, holes)
        if len(self._compiled) >= _PLAN_CACHE:
            del self._compiled[next(iter(self._compiled))]
        self._compiled[id(plan)] = compiled
        return compiled

    async def execute(self, planner: Planner, plan: Plan, formats: Mapping[str, WireFormat]) -> Decoded:
        compiled = self.compile(plan, formats, planner)
        values_list, request_errors = await self.client.execute(compiled.native)
        values = cast("dict[str, Value]", dict(zip(compiled.keys, values_list, strict=True)))
        holes_known = compiled.holes
        if request_errors.count(None) == len(request_errors) and not plan.failed:
            if holes_known:
                for index in range(len(plan.requests)):
                    planner.succeeded(plan, index)
            return values, {}
        errors: dict[str, BaseException] = {item.key: hole_error(item) for item in plan.failed}
        holes: list[tuple[int, DeviceError]] = []
        for index, error in enumerate(request_errors):
            if error is None:
                if holes_known:
                    planner.succeeded(plan, index)
                continue
            members = plan.members[index]
            for key in members:
                del values[key]
            if isinstance(error, DeviceError) and error.code == _HOLE:
                holes.append((index, error))
            else:
                for key in members:
                    errors[key] = error
        for index, error in holes:
            hole_values, hole_errors = await self._split(planner, plan, index, error, formats)
            values.update(hole_values)
            errors.update(hole_errors)
        return values, errors

    async def read_points(
        self, planner: Planner, plan: Plan, formats: Mapping[str, WireFormat]
    ) -> dict[str, DataPoint]:
        compiled = self.compile(plan, formats, planner)
        points, failures = await self.client.read_points(compiled.native)
        if not failures and not plan.failed:
            if compiled.holes:
                for index in range(len(plan.requests)):
                    planner.succeeded(plan, index)
            return points
        return await self._amend(planner, plan, formats, compiled, points, failures)

    async def _amend(
        self,
        planner: Planner,
        plan: Plan,
        formats: Mapping[str, WireFormat],
        compiled: _Compiled,
        points: dict[str, DataPoint],
        failures: Sequence[tuple[int, BifrostError]],
    ) -> dict[str, DataPoint]:
        """`read_points` when a request failed or the plan leaves known holes out: as `execute` and
        `read_many` do, split the holes, then raise a transport error or mark what failed BAD."""
        failed = {index for index, _ in failures}
        if compiled.holes:
            for index in range(len(plan.requests)):
                if index not in failed:
                    planner.succeeded(plan, index)
        errors: dict[str, BaseException] = {item.key: hole_error(item) for item in plan.failed}
        holes: list[tuple[int, DeviceError]] = []
        for index, error in failures:
            if isinstance(error, DeviceError) and error.code == _HOLE:
                holes.append((index, error))
            else:
                for key in plan.members[index]:
                    errors[key] = error
        timestamp = _timestamp(points)
        for index, error in holes:
            hole_values, hole_errors = await self._split(planner, plan, index, error, formats)
            for key, value in hole_values.items():
                points[key] = DataPoint(value, Quality.GOOD, timestamp)
            errors.update(hole_errors)
        for key, exc in errors.items():
            if isinstance(exc, TRANSPORT_ERRORS):
                raise exc
            if key not in points:  # a failed request's tags are BAD points already
                points[key] = DataPoint(None, Quality.BAD, timestamp)
        if plan.failed:  # known holes are not in the native plan: put them where they were asked for
            points = {key: points[key] for key in formats}
        return points

    async def _split(
        self, planner: Planner, plan: Plan, index: int, error: DeviceError, formats: Mapping[str, WireFormat]
    ) -> Decoded:
        """Request `index` of `plan` drew exception 2: let the planner split it, and read the parts."""
        members = plan.members[index]
        slices = {key: Slice(0, plan.slices[key].offset, plan.slices[key].width) for key in members}
        job = ReadJob(planner, Plan((plan.requests[index],), slices, (members,)))
        job.next_request()
        job.fail(error)  # the answer it already had: split without sending it again
        while (request := job.next_request()) is not None:
            try:
                job.answer(await self.read(request))
            except BifrostError as exc:
                job.fail(exc)
        values: dict[str, Value] = {}
        for key, raw in job.values.items():
            values[key] = bool(raw[0]) if isinstance(raw[0], bool) else formats[key].decode(raw)
        return values, dict(job.errors)

    def subscribe_points(
        self, planner: Planner, plan: Plan, formats: Mapping[str, WireFormat], interval: float, deadband: float
    ) -> AsyncIterator[dict[str, DataPoint]] | None:
        if self._session is not None:
            return None  # the connection's poll loop over read_many (Rust does the reads inline)
        return self._poll_points(planner, plan, formats, interval, deadband)

    async def _poll_points(
        self, planner: Planner, plan: Plan, formats: Mapping[str, WireFormat], interval: float, deadband: float
    ) -> AsyncIterator[dict[str, DataPoint]]:
        """A native poll loop with ready points: Rust builds each batch's dict, Python only looks at failures.

        A batch where a request drew exception 2 has the hole split (its tags' points replaced by
        what the parts read), is yielded, and then the plan is made again around the hole: the new
        poll loop's first batch (which holds every tag) is held against what was last yielded, so
        that only changes are yielded still. A transport error is raised; other failures are BAD.
        """
        # What was last yielded per key (a point, or the error of a BAD one). The Rust subscription
        # keeps this record while it runs; it is gathered here only when the plan is made again.
        last: dict[str, DataPoint | BaseException] = {}
        fresh = False
        while True:
            compiled = self.compile(plan, formats, planner)
            known: dict[str, BaseException] = {}
            for item in plan.failed:
                error = hole_error(item)
                if not _same_error(last.get(item.key), error):
                    known[item.key] = error
            if known:
                last.update(known)
                now = time.time()
                yield {key: DataPoint(None, Quality.BAD, now) for key in known}
            replanned: Plan | None = None
            assert isinstance(self.client, _native.ModbusClient)
            subscription = self.client.subscribe_points(compiled.native, interval, deadband)
            try:
                async for points, failures in subscription:
                    if not failures and not fresh:
                        yield points  # the hot path: nothing to look at
                        continue
                    errors: dict[str, BaseException] = {}
                    amended: dict[str, DataPoint | BaseException] = {}
                    holes: dict[int, DeviceError] = {}
                    slices = plan.slices
                    for key, failure in failures:
                        if isinstance(failure, DeviceError) and failure.code == _HOLE:
                            holes.setdefault(slices[key].request, failure)
                        else:
                            errors[key] = failure
                    if holes:
                        timestamp = _timestamp(points)
                        for index, hole in sorted(holes.items()):
                            hole_values, hole_errors = await self._split(planner, plan, index, hole, formats)
                            for key, value in hole_values.items():
                                point = DataPoint(value, Quality.GOOD, timestamp)
                                points[key] = amended[key] = point
                            for key, exc in hole_errors.items():
                                points.setdefault(key, DataPoint(None, Quality.BAD, timestamp))
                                errors[key] = amended[key] = exc
                        # Plan again around what the planner learnt, and poll that plan instead.
                        replanned = planner.plan([plan.item(key) for key in compiled.keys] + list(plan.failed))
                    if fresh:
                        points, errors = _changes(points, errors, last, deadband)
                        fresh = False
                    for exc in errors.values():
                        if isinstance(exc, TRANSPORT_ERRORS):
                            raise exc
                    if points:
                        yield points
                    if replanned is not None:
                        last.update(subscription.last())
                        last.update(amended)
                        break
            finally:
                subscription.close()
            if replanned is None:
                return  # the poll loop ended: the client was closed
            plan, fresh = replanned, True


def _timestamp(points: Mapping[str, DataPoint]) -> float:
    """The timestamp of a read's points (they share one), or now if it has none."""
    for point in points.values():
        return point.timestamp
    return time.time()


def _changes(
    points: dict[str, DataPoint],
    errors: dict[str, BaseException],
    last: Mapping[str, DataPoint | BaseException],
    deadband: float,
) -> tuple[dict[str, DataPoint], dict[str, BaseException]]:
    """The points (and errors) of a first batch that differ from what was last yielded."""
    kept: dict[str, DataPoint] = {}
    for key, point in points.items():
        old = last.get(key)
        error = errors.get(key)
        if error is None:
            if _moved(old.value if isinstance(old, DataPoint) else old, cast("Value", point.value), deadband):
                kept[key] = point
        elif not _same_error(old, error):
            kept[key] = point
    return kept, {key: error for key, error in errors.items() if key in kept}


def _moved(old: Value | BaseException | None, new: Value, deadband: float) -> bool:
    if old is None or isinstance(old, BaseException):
        return True
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        return abs(new - old) > deadband
    return old != new


def _same_error(old: object, new: BaseException) -> bool:
    return isinstance(old, BaseException) and type(old) is type(new) and str(old) == str(new)


__all__ = ["NativeEngine", "transport_of"]
