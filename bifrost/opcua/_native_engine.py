"""The native engine: C open62541's client (through `bifrost._native.OpcuaClient`) under
OpcuaConnection, the default where it is built.

Each service call is one awaitable of the Rust binding, completed by the C client's own thread
through the loop (no thread per call). The C client would reconnect on its own after a loss; the
engine instead reports the loss as ConnectError and the connection re-creates the session and its
subscriptions, the same for every engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import uuid
from collections.abc import Awaitable, Sequence

from bifrost import _native
from bifrost.errors import ConnectError
from bifrost.opcua import certs
from bifrost.opcua.engine import (
    NODE_CLASSES,
    AttributeId,
    Engine,
    EngineSubscription,
    MonitorRequest,
    PlannedPoint,
    ReadResult,
    Reference,
    SessionOptions,
    WriteItem,
)
from bifrost.opcua.nodes import NodeId, QualifiedName
from bifrost.tags import DataPoint
from bifrost.urls import Endpoint

# How often a subscription waiting for notifications looks at the session: a closed socket is seen
# within this, as asyncua's client sees it at once.
_HEALTH_CHECK = 0.25


def utc_datetime(seconds: float) -> datetime.datetime:
    """A DateTime value (Unix seconds) as the engine contract gives it; called by the binding."""
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


def status_name(code: int) -> str:
    name = _native.opcua_status_name(code)
    return name if name and not name.startswith("Unknown") else f"0x{code:08X}"


def _node(node: NodeId) -> tuple[int, int | str | bytes | uuid.UUID]:
    return (node.namespace, node.identifier)


class NativeEngine(Engine):
    name = "native"

    def __init__(self, endpoint: Endpoint, *, timeout: float, options: SessionOptions) -> None:
        super().__init__(endpoint, timeout=timeout, options=options)
        self._client: _native.OpcuaClient | None = None
        self._subscriptions: list[_Subscription] = []

    def status_name(self, code: int) -> str:
        return status_name(code)

    async def open(self) -> None:
        options = self.options
        certificate = private_key = application_uri = None
        if options.policy != "None":
            if options.certificate is not None and options.private_key is not None:
                certificate = options.certificate.read_bytes()
                private_key = options.private_key.read_bytes()
                application_uri = certs.application_uri_of(certificate) or certs.CLIENT_URI
            else:
                certificate, private_key = certs.generate_certificate(certs.CLIENT_URI)
                application_uri = certs.CLIENT_URI
        try:
            self._client = await _native.OpcuaClient.connect(
                self._url(),
                timeout=self.timeout,
                policy=options.policy,
                mode=options.mode,
                certificate=certificate,
                private_key=private_key,
                application_uri=application_uri,
                user=options.user,
                password=options.password if options.user is not None else None,
            )
        except ConnectError as exc:
            raise ConnectError(f"{self.device}: {_reason(exc, self._url())}") from None

    async def close(self) -> None:
        client, self._client = self._client, None
        for sub in list(self._subscriptions):
            sub.lost()
        self._subscriptions.clear()
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), self.timeout * 2)

    def _session(self) -> _native.OpcuaClient:
        if self._client is None:
            raise ConnectError(f"{self.device}: not connected")
        return self._client

    async def read(self, nodes: Sequence[NodeId], attribute: AttributeId = AttributeId.VALUE) -> list[ReadResult]:
        return await self._session().read([_node(node) for node in nodes], int(attribute))

    def prepare_read(self, nodes: Sequence[NodeId], points: Sequence[PlannedPoint]) -> object | None:
        # The NodeIds are converted and the request built once, in Rust; each read then only sends
        # it, and makes the DataPoints there in one pass.
        return self._session().prepare_read([_node(node) for node in nodes], int(AttributeId.VALUE), points)

    def read_points(self, plan: object, timeout: float, message: str) -> Awaitable[dict[str, DataPoint]]:
        # The binding's awaitable itself, not a coroutine around it: no task of its own to make.
        assert isinstance(plan, _native.OpcuaReadPlan)
        return self._session().read_points(plan, timeout, message)

    async def write(self, items: Sequence[WriteItem]) -> list[int]:
        return await self._session().write([(_node(item.node), item.value, int(item.variant)) for item in items])

    async def browse(self, node: NodeId) -> list[Reference]:
        found = await self._session().browse(_node(node))
        return [
            Reference(
                node=child,
                browse_name=QualifiedName(name, namespace),
                display_name=display,
                node_class=NODE_CLASSES.get(node_class, str(node_class)),
            )
            for child, (namespace, name), display, node_class in found
        ]

    async def subscribe(self, interval: float, items: Sequence[MonitorRequest]) -> EngineSubscription:
        native = await self._session().subscribe(
            interval, [(item.handle, _node(item.node), float(item.deadband)) for item in items]
        )
        sub = _Subscription(self, native)
        self._subscriptions.append(sub)
        return sub

    def _forget(self, sub: _Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(sub)


def _reason(exc: ConnectError, url: str) -> str:
    """The binding's message without its own URL prefix (the engine names the device)."""
    text = str(exc)
    return text[len(url) + 2 :] if text.startswith(f"{url}: ") else text


class _Subscription(EngineSubscription):
    def __init__(self, engine: NativeEngine, native: _native.OpcuaSubscription) -> None:
        self.engine = engine
        self.native = native
        self.statuses: Sequence[int] = native.statuses
        self._lost = False
        self._closed = False

    def lost(self) -> None:
        self._lost = True

    async def next_batch(self) -> list[tuple[int, ReadResult]]:
        """The C client gives no keep-alives to its user, so silence is judged by the session:
        it is looked at every quarter second (a closed socket is seen then), and when nothing came
        within the keep-alive time plus the timeout, a Read of the server's state decides."""
        native = self.native
        engine = self.engine
        deadline = native.interval * native.keepalive + engine.timeout
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while True:
            if self._closed:
                raise ConnectError(f"{engine.device}: the subscription is closed")
            if self._lost or not native.healthy():
                raise ConnectError(f"{engine.device}: the subscription was lost with the session")
            batch = native.take()
            if batch:
                return batch
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(native.ready(), _HEALTH_CHECK)
                continue
            if loop.time() - quiet_since >= deadline:
                await self._probe(deadline)
                quiet_since = loop.time()

    async def _probe(self, silent: float) -> None:
        engine = self.engine
        try:
            await asyncio.wait_for(engine.read([NodeId(2259)]), engine.timeout)  # Server_ServerStatus_State
        except Exception as exc:
            raise ConnectError(
                f"{engine.device}: no publish response in {silent:g} s, and the server does not answer ({exc})"
            ) from None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.engine._forget(self)
        self.native.close()
