"""`bifrost.connect("s7://host:102?rack=0&slot=1")`: an S7 connection, in Python over asyncio.

One engine is enough here: an S7 poll is one or two PDUs, so the Python cost per cycle is small next
to the CPU's cycle time (see bench/bench_s7.py). The connection resolves tags to S7 addresses, plans
`read_many` into the fewest PDUs the negotiated size allows (bifrost.s7.planner), and converts values.

Every call has a timeout (the connection's). After a timeout the connection is dropped, so a late
answer can never be taken for the next job's (python-snap7 #70); the next call reconnects, with
exponential backoff and jitter between failed attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bifrost.connection import Connection
from bifrost.errors import BifrostError, ConfigError, ConnectError, DeviceError, ProtocolError
from bifrost.errors import TimeoutError as BifrostTimeout
from bifrost.modbus._python_engine import Backoff
from bifrost.s7 import framing
from bifrost.s7.address import Address, S7Format, S7Value, parse_address, raw_format, resolve_tag
from bifrost.s7.pdu import (
    ErrorResponse,
    ItemData,
    PlcControlRequest,
    PlcStopRequest,
    ReadResponse,
    RequestPdu,
    ResponsePdu,
    ReturnCode,
    SzlRequest,
    SzlResponse,
    VarSpec,
    WriteRequest,
    WriteResponse,
    encode_request,
    error_text,
    write_request_size,
)
from bifrost.s7.planner import Plan, Planner, ReadItem, ReadJob, item_error, max_payload
from bifrost.tags import DataPoint, DataType, Quality, Tag, TagMap, Value
from bifrost.urls import Endpoint

log = logging.getLogger("bifrost.s7")

TRANSPORT_ERRORS = (BifrostTimeout, ConnectError, ProtocolError)
# S7 types with no Bifrost DataType, described as the nearest one (for the `bifrost` command).
_NEAREST: dict[str, tuple[DataType, int | None]] = {
    "BYTE": (DataType.UINT16, None),
    "USINT": (DataType.UINT16, None),
    "SINT": (DataType.INT16, None),
    "TIME": (DataType.INT32, None),
    "CHAR": (DataType.STRING, 1),
}
CPU_STATES = {0x08: "RUN", 0x04: "STOP", 0x03: "STARTUP", 0x00: "UNKNOWN"}


def open_connection(endpoint: Endpoint, *, tags: TagMap | None, timeout: float) -> Connection:
    return S7Connection(endpoint, tags=tags, timeout=timeout)


@dataclass(frozen=True, slots=True)
class Resolved:
    key: str
    address: Address
    fmt: S7Format
    writable: bool

    @property
    def item(self) -> ReadItem:
        return ReadItem(self.key, self.address.area, self.address.db, self.address.start, self.fmt.size)


class _Line:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: framing.ClientConnection):
        self.reader, self.writer, self.conn = reader, writer, conn

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class S7Connection(Connection):
    """An S7 CPU. Calls on one connection are serialised: one job is on the wire at a time."""

    def __init__(
        self, endpoint: Endpoint, *, tags: TagMap | None, timeout: float, backoff: Backoff | None = None
    ) -> None:
        super().__init__(endpoint.url, tags=tags, timeout=timeout)
        self.endpoint = endpoint
        self.device = endpoint.url
        params = endpoint.params
        self.rack: int = params["rack"]
        self.slot: int = params["slot"]
        self.requested_pdu: int = params["pdu"]
        self.connection_type: int = params["type"]
        self.planner = Planner()
        self.backoff = backoff or Backoff()
        self.round_trips = 0
        """Jobs sent (reads, writes, SZL, control) since the connection was made: for benchmarks."""
        self._line: _Line | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._next_attempt = 0.0
        self._last_failure: str | None = None
        self._resolved: dict[str, Resolved] = {}
        self._plans: dict[tuple[str, ...], tuple[int, Plan, list[ReadItem]]] = {}

    engine_name = "python"

    @property
    def pdu_size(self) -> int:
        """The PDU size the CPU granted (before connecting: the planner's default)."""
        return self.planner.pdu_size

    # -- connection ---------------------------------------------------------------------------

    async def open(self) -> None:
        self._closed = False
        async with self._lock:
            await self._connect()

    async def close(self) -> None:
        self._closed = True
        self._drop()

    def _drop(self) -> None:
        if self._line is not None:
            self._line.close()
        self._line = None

    async def _connect(self) -> None:
        try:
            line = await asyncio.wait_for(self._handshake(), self.timeout)
        except (OSError, asyncio.TimeoutError, ConnectError) as exc:
            self._last_failure = str(exc) or type(exc).__name__
            self._next_attempt = time.monotonic() + self.backoff.next_delay()
            if isinstance(exc, ConnectError):
                raise
            raise ConnectError(f"{self.device}: cannot connect: {self._last_failure}") from exc
        self.backoff.reset()
        self._line = line
        if self.planner.pdu_size != line.conn.pdu_size:
            self.planner.pdu_size = line.conn.pdu_size
            self._plans.clear()
        self.planner.forget()

    async def _handshake(self) -> _Line:
        reader, writer = await asyncio.open_connection(self.endpoint.host, self.endpoint.port or 102)
        conn = framing.ClientConnection(
            remote=framing.remote_tsap(self.rack, self.slot, self.connection_type), local=0x0100
        )
        line = _Line(reader, writer, conn)
        try:
            writer.write(conn.connect_request())
            event = await self._event(line)
            if not isinstance(event, framing.Connected):
                raise ConnectError(f"{self.device}: {_why(event)}")
            writer.write(conn.setup(self.requested_pdu, 1))
            event = await self._event(line)
            if not isinstance(event, framing.Ready):
                raise ConnectError(f"{self.device}: {_why(event)}")
        except BaseException:
            line.close()
            raise
        return line

    async def _event(self, line: _Line) -> framing.ClientEvent:
        while True:
            event = line.conn.next_event()
            if event is not None:
                return event
            data = await line.reader.read(4096)
            if not data:
                raise ConnectError(f"{self.device}: connection lost: the device closed it")
            line.conn.receive_data(data)

    async def _ensure_open(self) -> _Line:
        if self._closed:
            raise ConnectError(f"{self.device}: the connection is closed")
        if self._line is None:
            wait = self._next_attempt - time.monotonic()
            if wait > self.timeout:
                raise ConnectError(
                    f"{self.device}: not connected ({self._last_failure}); next attempt in {wait * 1000:.0f} ms"
                )
            if wait > 0:
                await asyncio.sleep(wait)  # the backoff itself, not a wait for an event
            await self._connect()
        assert self._line is not None
        return self._line

    # -- jobs ---------------------------------------------------------------------------------

    async def call(self, request: RequestPdu) -> ResponsePdu:
        """Send one job and return its answer; a job refused as a whole raises DeviceError."""
        async with self._lock:
            line = await self._ensure_open()
            try:
                data = line.conn.send(request)
            except framing.StateError as exc:
                raise ConfigError(f"{self.device}: {exc}") from None
            reference = line.conn.last_reference
            self.round_trips += 1
            try:
                line.writer.write(data)
                response = await _within(self._reply(line, reference), self.timeout)
            except asyncio.TimeoutError:
                # The answer may still come; on a fresh connection it cannot be mistaken for another.
                self._drop()
                raise BifrostTimeout(
                    f"{self.device}: no answer to {type(request).__name__} within {self.timeout:g} s"
                ) from None
            except (ConnectError, ProtocolError):
                self._drop()
                raise
            except OSError as exc:
                self._drop()
                raise ConnectError(f"{self.device}: connection lost: {exc}") from exc
        if isinstance(response, ErrorResponse):
            raise DeviceError(f"{self.device}: {type(request).__name__} refused: {response.message}", response.error)
        return response

    async def _reply(self, line: _Line, reference: int | None) -> ResponsePdu:
        while True:
            event = await self._event(line)
            if isinstance(event, framing.Response) and event.reference == reference:
                return event.response
            if isinstance(event, (framing.MismatchedReply, framing.MalformedReply)):
                raise ProtocolError(f"{self.device}: {type(event).__name__}: {event.reason}")
            if isinstance(event, framing.BrokenStream):
                raise ProtocolError(f"{self.device}: the reply stream is broken: {event.reason}")
            if isinstance(event, framing.Disconnected):
                raise ConnectError(f"{self.device}: the CPU disconnected (COTP reason {event.reason})")
            log.debug("%s: ignored %s", self.device, event)

    # -- tags ---------------------------------------------------------------------------------

    def resolve(self, name: str) -> Resolved:
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
                fmt = raw_format(address)
            except ConfigError as exc:
                known = ", ".join(sorted(self.tags)) or "none"
                raise ConfigError(
                    f"{name!r} is not a tag of this connection (tags: {known}) nor a typed S7 address: {exc}"
                ) from None
            found = Resolved(name, address, fmt, True)
        self._resolved[name] = found
        return found

    def describe(self, tag: str) -> Tag:
        """The Tag a name or raw address stands for (S7 types without a Bifrost one: the nearest)."""
        resolved = self.resolve(tag)
        found = self.tags.get(tag)
        if found is not None:
            return found
        fmt = resolved.fmt
        dtype, length = fmt.type.dtype, fmt.length or None
        if dtype is None:
            dtype, length = _NEAREST.get(fmt.type.name, (DataType.STRING, 32))
        return Tag(name=tag, address=str(resolved.address), type=dtype, length=length, writable=resolved.writable)

    def preview_write(self, tag: str, value: Value) -> list[str]:
        """The write-var PDUs `write(tag, value)` would send, without sending them."""
        resolved = self.resolve(tag)
        if not resolved.writable:
            raise ConfigError(f"tag {tag!r} is not writable (writable: false in its tag map)")
        lines = []
        for batch in _write_batches(self._write_parts(resolved, value), self.pdu_size):
            request = WriteRequest(tuple(spec for _n, spec, _d in batch), tuple(data for _n, _s, data in batch))
            where = ", ".join(str(spec) for spec in request.items)
            lines.append(f"write var {where}: PDU {encode_request(0, request).hex(' ')}")
        return lines

    def plan(self, names: tuple[str, ...]) -> tuple[Plan, list[ReadItem]]:
        """The plan that reads `names` (each once), for the PDU size granted."""
        cached = self._plans.get(names)
        marks = len(self.planner.alone)
        if cached is not None and cached[0] == marks:
            return cached[1], cached[2]
        items = [self.resolve(name).item for name in dict.fromkeys(names)]
        plan = self.planner.plan(items)
        if len(self._plans) < 256:
            self._plans[names] = (marks, plan, items)
        return plan, items

    async def _execute(self, names: tuple[str, ...]) -> tuple[dict[str, S7Value], dict[str, BaseException]]:
        if self._line is None:
            async with self._lock:
                await self._ensure_open()  # the plan depends on the PDU size the CPU grants
        plan, items = self.plan(names)
        job = ReadJob(self.planner, plan, items, self.device)
        while (batch := job.next_batch()) is not None:
            try:
                response = await self.call(batch.request)
            except DeviceError as exc:
                job.fail(exc)
                continue
            if not isinstance(response, ReadResponse):
                raise ProtocolError(f"{self.device}: a {type(response).__name__} answered a read")
            job.answer(response.items)
        values: dict[str, S7Value] = {}
        for key, raw in job.values.items():
            values[key] = self.resolve(key).fmt.decode(raw)
        return values, job.errors

    async def read(self, tag: str) -> DataPoint:
        """Read one tag; any error is raised (DeviceError carries the item return code)."""
        values, errors = await self._execute((tag,))
        if tag in errors:
            raise errors[tag]
        value: Any = values[tag]  # an array is a tuple of values
        return DataPoint(value, Quality.GOOD, time.time())

    async def read_many(self, tags: Iterable[str]) -> dict[str, DataPoint]:
        """Read tags in the fewest PDUs. A tag the CPU refuses is Quality.BAD with value None;
        a timeout or a lost connection is raised."""
        names = tuple(dict.fromkeys(tags))
        values, errors = await self._execute(names)
        now = time.time()
        points: dict[str, DataPoint] = {}
        for name in names:
            error = errors.get(name)
            if error is None:
                value: Any = values[name]
                points[name] = DataPoint(value, Quality.GOOD, now)
            elif isinstance(error, TRANSPORT_ERRORS):
                raise error
            else:
                points[name] = DataPoint(None, Quality.BAD, now)
        return points

    async def write(self, tag: str, value: Value | tuple[Value, ...] | list[Value]) -> None:
        await self.write_many({tag: value})

    async def write_many(self, values: Mapping[str, Any]) -> None:
        """Write tags in as few PDUs as fit; every tag is tried, then the first refusal is raised."""
        parts: list[tuple[str, VarSpec, ItemData]] = []
        for name, value in values.items():
            resolved = self.resolve(name)
            if not resolved.writable:
                raise ConfigError(f"tag {name!r} is not writable (writable: false in its tag map)")
            parts.extend(self._write_parts(resolved, value))
        if self._line is None:
            async with self._lock:
                await self._ensure_open()
        errors: list[BifrostError] = []
        for batch in _write_batches(parts, self.pdu_size):
            request = WriteRequest(tuple(spec for _n, spec, _d in batch), tuple(data for _n, _s, data in batch))
            response = await self.call(request)
            if not isinstance(response, WriteResponse):
                raise ProtocolError(f"{self.device}: a {type(response).__name__} answered a write")
            for (name, _spec, _data), code in zip(batch, response.return_codes, strict=False):
                if code != ReturnCode.SUCCESS:
                    errors.append(item_error(f"write of {name!r}", code, self.device))
        if errors:
            raise errors[0]

    def _write_parts(self, resolved: Resolved, value: Any) -> list[tuple[str, VarSpec, ItemData]]:
        fmt, address = resolved.fmt, resolved.address
        data = fmt.item_data(value)
        if data.transport == 0x03:  # a BOOL: a bit write, which needs no read-modify-write
            return [(resolved.key, address.spec(fmt), data)]
        payload = max_payload(self.pdu_size) - 12  # the write item's spec rides in the same PDU
        out = []
        for at in range(0, len(data.data), payload):
            chunk = data.data[at : at + payload]
            spec = VarSpec(address.area, address.start + at, len(chunk), db=address.db)
            out.append((resolved.key, spec, ItemData(0, data.transport, chunk)))
        return out

    # -- CPU services -------------------------------------------------------------------------

    async def read_szl(self, szl_id: int, index: int = 0) -> SzlResponse:
        """One SZL (system status list); DeviceError when the CPU has no such list."""
        response = await self.call(SzlRequest(szl_id, index))
        if not isinstance(response, SzlResponse):
            raise ProtocolError(f"{self.device}: a {type(response).__name__} answered an SZL read")
        if not response.ok:
            raise DeviceError(
                f"{self.device}: SZL 0x{szl_id:04X} index {index}: {error_text(response.error)}"
                f", {response.return_code:#04x}",
                response.error or response.return_code,
            )
        return response

    async def cpu_state(self) -> str:
        """RUN, STOP or STARTUP, from SZL 0x0424."""
        records = (await self.read_szl(0x0424, 0)).records()
        if not records or len(records[0]) < 4:
            raise ProtocolError(f"{self.device}: SZL 0x0424 holds no state record")
        return CPU_STATES.get(records[0][3] & 0x0F, f"0x{records[0][3]:02X}")

    async def identity(self) -> dict[str, str]:
        """Order number and names, from SZL 0x0011 and 0x001C."""
        out: dict[str, str] = {}
        for record in (await self.read_szl(0x0011, 0)).records():
            if len(record) >= 22 and int.from_bytes(record[:2], "big") == 1:
                out["order_code"] = record[2:22].rstrip(b"\x00 ").decode("latin-1")
        names = {1: "as_name", 2: "module_name", 3: "plant", 4: "copyright", 5: "serial_number", 7: "module_type"}
        for record in (await self.read_szl(0x001C, 0)).records():
            key = names.get(int.from_bytes(record[:2], "big"))
            if key is not None:
                out[key] = record[2:].rstrip(b"\x00 ").decode("latin-1")
        return out

    async def stop(self) -> None:
        """Put the CPU in STOP."""
        await self.call(PlcStopRequest())

    async def start(self, *, cold: bool = False) -> None:
        """Start the CPU (warm restart; `cold=True` for a cold restart)."""
        await self.call(PlcControlRequest(argument=b"C " if cold else b""))


async def _within(reply: Coroutine[Any, Any, ResponsePdu], timeout: float) -> ResponsePdu:
    """`reply` within `timeout` seconds, else asyncio.TimeoutError. asyncio.timeout (3.11+) runs it in
    this task; wait_for, on older Pythons, makes a task per call, which costs more than the reply."""
    if _timeout is None:
        return await asyncio.wait_for(reply, timeout)
    async with _timeout(timeout):
        return await reply


_timeout: Any = getattr(asyncio, "timeout", None)


def _write_batches(
    parts: list[tuple[str, VarSpec, ItemData]], pdu_size: int
) -> list[list[tuple[str, VarSpec, ItemData]]]:
    """Write items in order, as many per PDU as fit (request and answer)."""
    batches: list[list[tuple[str, VarSpec, ItemData]]] = []
    current: list[tuple[str, VarSpec, ItemData]] = []
    for part in parts:
        sizes = [len(data.data) for _n, _s, data in [*current, part]]
        if current and (write_request_size(sizes) > pdu_size or 14 + len(sizes) > pdu_size):
            batches.append(current)
            current = []
        current.append(part)
    if current:
        batches.append(current)
    return batches


def _why(event: framing.ClientEvent) -> str:
    if isinstance(event, framing.Refused):
        return event.reason
    if isinstance(event, framing.BrokenStream):
        return f"not an S7 device: {event.reason}"
    return f"unexpected answer while connecting: {type(event).__name__}"


__all__ = ["CPU_STATES", "S7Connection", "open_connection"]
