"""`bifrost.connect("opc.tcp://...")`: the OPC UA connection over either engine.

The connection turns tag names and addresses (NodeIds, `nsu=` URIs, browse paths) into NodeIds by
namespace index, splits reads and writes by the server's operation limits, types writes, turns each
DataValue into a DataPoint (quality from the StatusCode, the server's source timestamp), bounds every
call by the timeout, and after a connection loss opens a new session on the next call, restoring
live subscriptions. The engine only moves service calls, so both engines behave the same above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bifrost.connection import Connection
from bifrost.errors import ConfigError, ConnectError, DeviceError, EncodeError
from bifrost.errors import TimeoutError as BifrostTimeout
from bifrost.opcua import variants
from bifrost.opcua.engine import (
    SECURITY_MODES,
    SECURITY_POLICIES,
    AttributeId,
    Engine,
    EngineSubscription,
    MonitorRequest,
    ReadResult,
    SessionOptions,
    VariantType,
    WriteItem,
)
from bifrost.opcua.nodes import Address, BrowsePath, NodeId, QualifiedName, parse_address
from bifrost.tags import DataPoint, Quality, Tag, TagMap, Value
from bifrost.urls import Endpoint

log = logging.getLogger("bifrost.opcua")

T = TypeVar("T")

ENGINES = ("native", "asyncua")
OPTIONS = ("security", "mode", "user", "password", "certificate", "private_key")

_NAMESPACE_ARRAY = NodeId(2255)
_MAX_NODES_PER_READ = NodeId(11705)
_MAX_NODES_PER_WRITE = NodeId(11707)
_BAD_NO_MATCH = 0x806F0000
_PLAIN = frozenset({bool, int, float, str})
_BAD_NODE_ID_UNKNOWN = 0x80340000
# Statuses that say a read asked for something wrong (the node, the attribute, the right to read),
# rather than describing the quality of a value: `read` raises them; `read_many` gives a BAD point.
REQUEST_ERRORS = frozenset(
    {
        "BadNodeIdUnknown",
        "BadNodeIdInvalid",
        "BadAttributeIdInvalid",
        "BadNotReadable",
        "BadUserAccessDenied",
        "BadIndexRangeInvalid",
        "BadIndexRangeNoData",
        "BadDataEncodingInvalid",
        "BadDataEncodingUnsupported",
        "BadSecurityModeInsufficient",
        "BadNotSupported",
        "BadNoMatch",
        "BadTooManyOperations",
    }
)


def native_available() -> bool:
    return importlib.util.find_spec("bifrost.opcua._native_engine") is not None


def default_engine() -> str:
    """BIFROST_OPCUA_ENGINE, else the native engine where it is built, else asyncua."""
    return os.environ.get("BIFROST_OPCUA_ENGINE") or ("native" if native_available() else "asyncua")


def session_options(endpoint: Endpoint, options: Mapping[str, Any]) -> SessionOptions:
    """The session's security and identity, from the URL's `security`/`mode` and connect()'s
    arguments; a ConfigError names a contradiction or a missing file."""
    url = endpoint.url
    policy = options.get("security")
    if policy is not None and endpoint.params["security"] != "None" and policy != endpoint.params["security"]:
        raise ConfigError(f"{url}: security={policy!r} contradicts the URL's security={endpoint.params['security']}")
    policy = policy or endpoint.params["security"]
    if policy not in SECURITY_POLICIES:
        raise ConfigError(f"{url}: security={policy!r} is not one of {', '.join(SECURITY_POLICIES)}")
    mode = options.get("mode") or endpoint.params["mode"] or ("SignAndEncrypt" if policy != "None" else "None")
    if mode not in SECURITY_MODES:
        raise ConfigError(f"{url}: mode={mode!r} is not one of {', '.join(SECURITY_MODES)}")
    if (policy == "None") != (mode == "None"):
        raise ConfigError(
            f"{url}: security {policy} with mode {mode}: policy None goes with mode None, and a policy with "
            "Sign or SignAndEncrypt"
        )
    user, password = options.get("user"), options.get("password")
    if password is not None and user is None:
        raise ConfigError(f"{url}: a password was given without a user")
    certificate, private_key = options.get("certificate"), options.get("private_key")
    if (certificate is None) != (private_key is None):
        raise ConfigError(f"{url}: give both certificate= and private_key= (or neither, for a generated pair)")
    paths: list[Path | None] = []
    for label, raw in (("certificate", certificate), ("private_key", private_key)):
        if raw is None:
            paths.append(None)
            continue
        path = Path(raw)
        if not path.is_file():
            raise ConfigError(f"{url}: {label}={str(path)!r} is not a file")
        paths.append(path)
    return SessionOptions(policy, mode, paths[0], paths[1], user, password)


def make_engine(name: str, endpoint: Endpoint, timeout: float, options: SessionOptions) -> Engine:
    if name == "asyncua":
        from bifrost.opcua._asyncua_engine import AsyncuaEngine

        return AsyncuaEngine(endpoint, timeout=timeout, options=options)
    if name == "native":
        if not native_available():
            raise ConfigError(
                "the native OPC UA engine (open62541) is not built into this bifrost; use engine='asyncua' "
                '(pip install "bifrost[opcua]")'
            )
        from bifrost.opcua._native_engine import NativeEngine  # type: ignore[import-not-found, unused-ignore]

        engine: Engine = NativeEngine(endpoint, timeout=timeout, options=options)
        return engine
    raise ConfigError(f"unknown OPC UA engine {name!r} (from BIFROST_OPCUA_ENGINE?); engines: {', '.join(ENGINES)}")


def open_connection(
    endpoint: Endpoint, *, tags: TagMap | None, timeout: float, engine: str | None, **options: Any
) -> Connection:
    settings = session_options(endpoint, options)
    return OpcuaConnection(endpoint, make_engine(engine or default_engine(), endpoint, timeout, settings), tags=tags)


@dataclass(frozen=True, slots=True)
class BrowseEntry:
    """A child found by `browse`: its name, an address for it (its browse path when browsed by path),
    its NodeId in the standard string form, and its NodeClass."""

    name: str
    path: str | None
    node_id: str
    node_class: str
    display_name: str


@dataclass(frozen=True, slots=True)
class Resolved:
    key: str
    address: Address
    tag: Tag | None


_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+
_READ_PLANS = 256  # read_many plans a session keeps


@dataclass(slots=True)
class _ReadPlan:
    """A read_many's tag list planned: the distinct nodes to read, per node the tags reading it, and
    the engine's own plan of the read (None: read and make the points here)."""

    nodes: list[NodeId]
    readers: list[list[Resolved]]
    prepared: object | None = None


class _Session:
    """What a connection learnt from one session; forgotten when the session is re-created."""

    def __init__(self) -> None:
        self.namespaces: list[str] | None = None
        self.nodes: dict[Address, NodeId] = {}
        self.variants: dict[NodeId, VariantType] = {}
        self.max_read: int | None = None
        self.max_write: int | None = None
        # read_many's plans by the tags asked: the distinct nodes to read and, per node, the tags
        # reading it. Only plans whose every tag resolved are kept: a refused one is tried again.
        self.read_plans: dict[tuple[str, ...], _ReadPlan] = {}


class OpcuaConnection(Connection):
    """An OPC UA server. Calls may run concurrently (OPC UA matches answers to requests by handle)."""

    def __init__(self, endpoint: Endpoint, engine: Engine, *, tags: TagMap | None) -> None:
        super().__init__(endpoint.url, tags=tags, timeout=engine.timeout)
        self.endpoint = endpoint
        self.engine = engine
        self.device = endpoint.url
        self._resolved: dict[str, Resolved] = {}
        self._session = _Session()
        self._open = False
        self._closed = False
        self._opening = asyncio.Lock()

    @property
    def engine_name(self) -> str:
        return self.engine.name

    # -- session ------------------------------------------------------------------------------

    async def open(self) -> None:
        self._closed = False
        await self._ensure()

    async def close(self) -> None:
        self._closed = True
        if self._open:
            self._open = False
            await self.engine.close()

    async def _ensure(self) -> None:
        if self._open:
            return
        if self._closed:
            raise ConnectError(f"{self.device}: the connection is closed")
        async with self._opening:
            if self._open:
                return
            try:
                await asyncio.wait_for(self.engine.open(), self.timeout * 3)
            except asyncio.TimeoutError:
                with contextlib.suppress(Exception):
                    await self.engine.close()
                raise ConnectError(f"{self.device}: cannot connect: no session in {self.timeout * 3:g} s") from None
            self._session = _Session()
            self._open = True

    async def _lost(self) -> None:
        """The session is gone: drop it; the next call opens a new one."""
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):
                await self.engine.close()

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        """One engine call, bounded by the timeout; a lost session is dropped (and re-made next call)."""
        try:
            if _timeout is None:
                return await asyncio.wait_for(call, self.timeout)
            # asyncio.timeout (3.11) bounds the await itself: wait_for would wrap a coroutine in a
            # task of its own and settle through a second future, a loop round more per call.
            async with _timeout(self.timeout):
                return await call
        except asyncio.TimeoutError:
            raise BifrostTimeout(f"{self.device}: no answer to {what} in {self.timeout:g} s") from None
        except ConnectError:
            await self._lost()
            raise

    # -- addresses ----------------------------------------------------------------------------

    def resolve(self, name: str) -> Resolved:
        """A tag of the tag map by name, else a raw address; a ConfigError says which it is neither."""
        found = self._resolved.get(name)
        if found is not None:
            return found
        tag = self.tags.get(name)
        try:
            address = parse_address(tag.address if tag is not None else name)
        except ConfigError as exc:
            if tag is not None:
                raise ConfigError(f"tag {name!r}: its address is not an OPC UA address: {exc}") from None
            known = ", ".join(sorted(self.tags)) or "none"
            raise ConfigError(
                f"{name!r} is not a tag of this connection (tags: {known}) nor an address: {exc}"
            ) from None
        found = Resolved(name, address, tag)
        self._resolved[name] = found
        return found

    async def _node(self, address: Address) -> NodeId:
        """The NodeId by namespace index of an address, looked up on the server once per session."""
        session = self._session
        known = session.nodes.get(address)
        if known is not None:
            return known
        if isinstance(address, BrowsePath):
            node = await self._walk(address)
        elif address.namespace_uri is not None:
            node = address.with_namespace(await self._namespace_index(address.namespace_uri, address))
        else:
            return address
        session.nodes[address] = node
        return node

    async def _namespace_index(self, uri: str, address: NodeId) -> int:
        session = self._session
        if session.namespaces is None:
            result = (await self._call("Read NamespaceArray", self.engine.read([_NAMESPACE_ARRAY])))[0]
            value = result.value
            session.namespaces = [str(item) for item in value] if isinstance(value, list) else []
        try:
            return session.namespaces.index(uri)
        except ValueError:
            listed = ", ".join(session.namespaces) or "none"
            raise DeviceError(
                f"{self.device}: {address}: the server has no namespace {uri!r} (its namespaces: {listed})",
                _BAD_NODE_ID_UNKNOWN,
            ) from None

    async def _walk(self, path: BrowsePath) -> NodeId:
        node = path.start
        walked = path.root
        for segment in path.segments:
            children = await self._call(f"Browse {walked}", self.engine.browse(node))
            matches = [
                ref
                for ref in children
                if ref.browse_name.name == segment.name
                and (segment.namespace is None or ref.browse_name.namespace == segment.namespace)
            ]
            if not matches:
                names = ", ".join(str(ref.browse_name.name) for ref in children) or "none"
                raise DeviceError(
                    f"{self.device}: {path}: {walked} has no child {segment} (its children: {names})", _BAD_NO_MATCH
                )
            namespaces = {ref.browse_name.namespace for ref in matches}
            if len(namespaces) > 1:
                pinned = ", ".join(f"{ns}:{segment.name}" for ns in sorted(ns for ns in namespaces if ns is not None))
                raise ConfigError(
                    f"{path}: {walked} has several children named {segment.name!r}; write one of {pinned}"
                )
            node = matches[0].node
            walked = f"{walked}/{segment}"
        return node

    # -- reading ------------------------------------------------------------------------------

    def _status_error(self, key: str, node: NodeId, status: int, service: str = "read") -> DeviceError:
        name = self.engine.status_name(status)
        return DeviceError(f"{self.device}: {service} {key} ({node}): {name}", status)

    def _point(self, resolved: Resolved, result: ReadResult) -> DataPoint:
        value = result.value
        if resolved.tag is None and result.status == 0 and type(value) in _PLAIN:
            assert isinstance(value, (bool, int, float, str))
            # The common case, without the decode and quality look-ups: a Good scalar of a raw address.
            return DataPoint(value, Quality.GOOD, result.source_timestamp or result.server_timestamp or time.time())
        value = variants.decode(result.value, resolved.tag)
        stamp = result.source_timestamp or result.server_timestamp or time.time()
        return DataPoint(value, variants.quality_of(result.status), stamp)

    async def read(self, tag: str) -> DataPoint:
        """Read one tag. A Bad status that says the read itself was wrong (BadNodeIdUnknown,
        BadNotReadable, BadUserAccessDenied...) raises DeviceError naming it; any other status is the
        point's quality."""
        resolved = self.resolve(tag)
        await self._ensure()
        node = await self._node(resolved.address)
        result = (await self._call(f"Read {tag}", self.engine.read([node])))[0]
        if self.engine.status_name(result.status) in REQUEST_ERRORS:
            raise self._status_error(tag, node, result.status)
        try:
            return self._point(resolved, result)
        except variants.NotScalar as exc:
            raise EncodeError(f"{self.device}: read {tag} ({node}): {exc}") from None

    async def _limit(self, write: bool) -> int:
        """The server's MaxNodesPerRead (or Write); 0 when it sets none."""
        session = self._session
        known = session.max_write if write else session.max_read
        if known is not None:
            return known
        node = _MAX_NODES_PER_WRITE if write else _MAX_NODES_PER_READ
        try:
            result = (await self._call("Read OperationLimits", self.engine.read([node])))[0]
            limit = result.value if isinstance(result.value, int) and result.status == 0 else 0
        except DeviceError:
            limit = 0
        if write:
            session.max_write = limit
        else:
            session.max_read = limit
        return limit

    async def read_many(self, tags: Iterable[str]) -> dict[str, DataPoint]:
        """Read tags in one Read call (one per MaxNodesPerRead nodes, when the server sets it). A tag
        the server refuses, or whose address does not resolve, is a point of Quality.BAD and value
        None; a timeout or a lost connection is raised."""
        names = tuple(dict.fromkeys(tags))
        plan = self._session.read_plans.get(names)
        resolved = [self.resolve(name) for name in names] if plan is None else []  # a wrong name before I/O
        await self._ensure()
        session = self._session  # a new one when _ensure re-created it
        plan = session.read_plans.get(names)
        points: dict[str, DataPoint] = {}
        if plan is None:
            plan = await self._plan_read(resolved or [self.resolve(name) for name in names], points)
            if not points:
                if len(session.read_plans) >= _READ_PLANS:
                    session.read_plans.clear()  # tag lists that keep changing must not grow memory
                plan.prepared = self._prepare(names, plan)
                session.read_plans[names] = plan
        if plan.prepared is not None:
            try:
                # Bounded by the engine (one loop timer), with _call's words.
                message = f"{self.device}: no answer to Read of {len(plan.nodes)} nodes in {self.timeout:g} s"
                try:
                    return await self.engine.read_points(plan.prepared, self.timeout, message)
                except ConnectError:
                    await self._lost()
                    raise
            except DeviceError as exc:
                # More nodes than the server takes in one call, though it published no lower limit:
                # read it in parts from now on (the split read halves the limit until it passes).
                if self.engine.status_name(exc.code) != "BadTooManyOperations" or len(plan.nodes) == 1:
                    raise
                plan.prepared = None
                session.max_read = max(1, len(plan.nodes) // 2)
        results = await self._read_split(plan.nodes)
        point = self._point
        for items, result in zip(plan.readers, results, strict=True):
            for item in items:
                try:
                    points[item.key] = point(item, result)
                except variants.NotScalar:
                    points[item.key] = DataPoint(None, Quality.BAD, time.time())
        return {name: points[name] for name in names}

    def _prepare(self, names: Sequence[str], plan: _ReadPlan) -> object | None:
        """The engine's own plan of a read of one call (within MaxNodesPerRead), if it makes them."""
        limit = self._session.max_read
        if limit is None or (limit and len(plan.nodes) > limit):
            return None
        index: dict[str, tuple[int, Resolved]] = {}
        for at, items in enumerate(plan.readers):
            for item in items:
                index[item.key] = (at, item)
        points = []
        for name in names:
            at, item = index[name]
            tag = item.tag
            scaling = (tag.scale, tag.offset) if tag is not None and (tag.scale != 1.0 or tag.offset != 0.0) else None
            points.append((name, at, scaling))
        return self.engine.prepare_read(plan.nodes, points)

    async def _plan_read(self, resolved: Sequence[Resolved], points: dict[str, DataPoint]) -> _ReadPlan:
        """The distinct nodes of `resolved`, with the tags reading each; a tag whose node does not
        resolve gets its Bad point in `points` instead."""
        nodes: dict[NodeId, list[Resolved]] = {}
        known = self._session.nodes
        for item in resolved:
            try:
                # The session's cache first: no coroutine per tag.
                node = known.get(item.address) or await self._node(item.address)
            except (DeviceError, ConfigError) as exc:
                log.debug("%s: %s", item.key, exc)
                points[item.key] = DataPoint(None, Quality.BAD, time.time())
                continue
            nodes.setdefault(node, []).append(item)
        await self._limit(write=False)  # for the engine's plan, which must fit one call
        return _ReadPlan(list(nodes), list(nodes.values()))

    async def _read_split(self, nodes: Sequence[NodeId]) -> list[ReadResult]:
        limit = await self._limit(write=False)
        results: list[ReadResult] = []
        start = 0
        while start < len(nodes):
            size = limit or len(nodes)
            chunk = nodes[start : start + size]
            try:
                results.extend(await self._call(f"Read of {len(chunk)} nodes", self.engine.read(chunk)))
            except DeviceError as exc:
                # A server that enforces a lower limit than it publishes: halve and go on.
                if self.engine.status_name(exc.code) != "BadTooManyOperations" or len(chunk) == 1:
                    raise
                self._session.max_read = limit = max(1, len(chunk) // 2)
                continue
            start += len(chunk)
        return results

    # -- writing ------------------------------------------------------------------------------

    async def _write_item(self, resolved: Resolved, value: Value) -> WriteItem:
        tag = resolved.tag
        if tag is not None and not tag.writable:
            raise ConfigError(f"tag {resolved.key!r} is not writable (writable: false in its tag map)")
        node = await self._node(resolved.address)
        variant = variants.variant_of_tag(tag) if tag is not None else await self._node_variant(resolved.key, node)
        try:
            raw = variants.encode(value, variant, tag)
        except EncodeError as exc:
            raise EncodeError(f"{resolved.key}: {exc}") from None
        return WriteItem(node, raw, variant)

    async def _node_variant(self, key: str, node: NodeId) -> VariantType:
        """The Variant type to write a raw node with: its DataType when built-in, else the type of the
        value it holds (a DataType such as Duration is a subtype of Double)."""
        session = self._session
        known = session.variants.get(node)
        if known is not None:
            return known
        dtype = (await self._call(f"Read DataType of {key}", self.engine.read([node], AttributeId.DATA_TYPE)))[0]
        if self.engine.status_name(dtype.status) in REQUEST_ERRORS:
            raise self._status_error(key, node, dtype.status, "write")
        found: VariantType | None = None
        if isinstance(dtype.value, NodeId) and dtype.value.namespace == 0 and isinstance(dtype.value.identifier, int):
            with contextlib.suppress(ValueError):
                found = VariantType(dtype.value.identifier)
        if found not in variants.WRITABLE_VARIANTS:
            current = (await self._call(f"Read {key}", self.engine.read([node])))[0]
            found = None
            if current.variant is not None:
                with contextlib.suppress(ValueError):
                    found = VariantType(current.variant)
        if found is None or found not in variants.WRITABLE_VARIANTS:
            raise ConfigError(
                f"{key}: the node's DataType is {dtype.value}, which Bifrost cannot write untyped; give it a "
                "tag with a type"
            )
        session.variants[node] = found
        return found

    async def write(self, tag: str, value: Value) -> None:
        """Write one tag, typed by the tag, or by the node's DataType for a raw address. A Bad status
        raises DeviceError naming it (BadNotWritable, BadTypeMismatch, BadUserAccessDenied...)."""
        resolved = self.resolve(tag)
        await self._ensure()
        item = await self._write_item(resolved, value)
        status = (await self._call(f"Write {tag}", self.engine.write([item])))[0]
        if status & 0x8000_0000:
            raise self._status_error(tag, item.node, status, "write")

    async def write_many(self, values: Mapping[str, Value]) -> None:
        """Write several tags in one Write call (split by MaxNodesPerWrite). The server applies each
        on its own: when some fail, the rest are written and DeviceError lists the failures."""
        resolved = [(self.resolve(name), value) for name, value in values.items()]
        await self._ensure()
        items = [await self._write_item(entry, value) for entry, value in resolved]
        limit = await self._limit(write=True) or len(items) or 1
        statuses: list[int] = []
        for start in range(0, len(items), limit):
            chunk = items[start : start + limit]
            statuses.extend(await self._call(f"Write of {len(chunk)} nodes", self.engine.write(chunk)))
        failed = [
            (entry.key, item.node, status)
            for (entry, _), item, status in zip(resolved, items, statuses, strict=True)
            if status & 0x8000_0000
        ]
        if failed:
            detail = "; ".join(f"{key} ({node}): {self.engine.status_name(status)}" for key, node, status in failed)
            raise DeviceError(
                f"{self.device}: write of {len(failed)} of {len(items)} tags failed: {detail}", failed[0][2]
            )

    # -- browsing -----------------------------------------------------------------------------

    async def browse(self, path: str = "Objects") -> list[BrowseEntry]:
        """The children of a node, by browse path (`Objects/plc1`) or NodeId (`ns=1;s=plc1`)."""
        address = parse_address(path)
        await self._ensure()
        node = await self._node(address)
        children = await self._call(f"Browse {path}", self.engine.browse(node))
        base = str(address) if isinstance(address, BrowsePath) else None
        return [
            BrowseEntry(
                name=ref.browse_name.name,
                path=None if base is None else f"{base}/{QualifiedName(ref.browse_name.name)}",
                node_id=str(ref.node),
                node_class=ref.node_class,
                display_name=ref.display_name,
            )
            for ref in children
        ]

    # -- subscribing --------------------------------------------------------------------------

    async def subscribe(
        self, tags: Iterable[str], *, interval: float = 1.0, deadband: float = 0.0
    ) -> AsyncIterator[dict[str, DataPoint]]:
        """A real OPC UA subscription: the server publishes every `interval` seconds what changed by more
        than `deadband` (an absolute DataChangeFilter). The first batch holds every tag. When the
        connection is lost, one batch gives every tag as BAD; the session and the subscription are
        then re-created (with backoff) and the next batch holds every tag again."""
        names = tuple(dict.fromkeys(tags))
        resolved = {name: self.resolve(name) for name in names}
        if interval <= 0:
            raise ConfigError(f"interval must be positive seconds, got {interval!r}")
        if deadband < 0:
            raise ConfigError(f"deadband must not be negative, got {deadband!r}")
        backoff = 0.0
        outage = False
        while True:
            try:
                await self._ensure()
                first, sub, handles = await self._create_subscription(resolved, interval, deadband)
            except (ConnectError, BifrostTimeout) as exc:
                if self._closed:
                    raise
                await self._lost()
                if not outage:
                    outage = True
                    log.warning("%s: subscription lost, re-creating it: %s", self.device, exc)
                    yield {name: DataPoint(None, Quality.BAD, time.time()) for name in names}
                backoff = min(5.0, max(0.05, backoff * 2)) * (0.8 + 0.4 * random.random())
                await asyncio.sleep(backoff)
                continue
            try:
                batch = await self._first_batch(sub, first, handles, interval)
                outage, backoff = False, 0.0
                yield {name: batch[name] for name in names if name in batch}
                while True:
                    changes = await sub.next_batch()
                    out: dict[str, DataPoint] = {}
                    for handle, result in changes:
                        name = handles.get(handle)
                        if name is not None:
                            out[name] = self._safe_point(resolved[name], result)
                    if out:
                        yield out
            except ConnectError as exc:
                if self._closed:
                    raise
                await self._lost()
                outage = True
                log.warning("%s: subscription lost, re-creating it: %s", self.device, exc)
                yield {name: DataPoint(None, Quality.BAD, time.time()) for name in names}
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sub.close(), self.timeout)

    def _safe_point(self, resolved: Resolved, result: ReadResult) -> DataPoint:
        try:
            return self._point(resolved, result)
        except variants.NotScalar:
            return DataPoint(None, Quality.BAD, time.time())

    async def _create_subscription(
        self, resolved: Mapping[str, Resolved], interval: float, deadband: float
    ) -> tuple[dict[str, DataPoint], EngineSubscription, dict[int, str]]:
        first: dict[str, DataPoint] = {}
        requests: list[MonitorRequest] = []
        handles: dict[int, str] = {}
        for handle, (name, item) in enumerate(resolved.items(), 1):
            try:
                node = await self._node(item.address)
            except (DeviceError, ConfigError):
                first[name] = DataPoint(None, Quality.BAD, time.time())
                continue
            requests.append(MonitorRequest(handle, node, deadband))
            handles[handle] = name
        sub = await self._call("CreateSubscription", self.engine.subscribe(interval, requests))
        for request, status in zip(requests, sub.statuses, strict=True):
            if status & 0x8000_0000:
                first[handles.pop(request.handle)] = DataPoint(None, Quality.BAD, time.time())
        return first, sub, handles

    async def _first_batch(
        self, sub: EngineSubscription, first: dict[str, DataPoint], handles: Mapping[int, str], interval: float
    ) -> dict[str, DataPoint]:
        """Collect the initial value of every monitored item, which the server sends first; bounded, so
        a server that skips one cannot hold the subscription back."""
        pending = set(handles)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + interval * 2 + self.timeout
        while pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                changes = await asyncio.wait_for(sub.next_batch(), remaining)
            except asyncio.TimeoutError:
                break
            for handle, result in changes:
                name = handles.get(handle)
                if name is not None:
                    pending.discard(handle)
                    resolved = self.resolve(name)
                    first[name] = self._safe_point(resolved, result)
        return first
