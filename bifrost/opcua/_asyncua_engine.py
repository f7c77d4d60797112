"""The asyncua engine (extra `opcua`): asyncua's low-level session services under OpcuaConnection.

It uses `Client.uaclient` (one Read, Write, Browse or CreateMonitoredItems request per call, results
kept raw) rather than asyncua's Node helpers, which raise on the first Bad status and lose the
per-node StatusCodes and timestamps the connection turns into quality. asyncua's own reconnect is
off: the connection re-creates the session and its subscriptions, the same for every engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from bifrost._extras import require
from bifrost.errors import ConnectError, DeviceError, ProtocolError
from bifrost.errors import TimeoutError as BifrostTimeout
from bifrost.opcua import certs
from bifrost.opcua.engine import (
    NODE_CLASSES,
    AttributeId,
    Engine,
    EngineSubscription,
    MonitorRequest,
    ReadResult,
    Reference,
    SessionOptions,
    WriteItem,
)
from bifrost.opcua.nodes import NodeId, QualifiedName
from bifrost.urls import Endpoint

asyncua: Any = require("asyncua", "opcua")
ua: Any = asyncua.ua
_security_policies: Any = require("asyncua.crypto.security_policies", "opcua")

log = logging.getLogger("bifrost.opcua.asyncua")

# Statuses that say the session (or the channel under it) is gone, not that one request failed.
_SESSION_LOST = frozenset(
    {
        "BadSessionIdInvalid",
        "BadSessionClosed",
        "BadSessionNotActivated",
        "BadSecureChannelIdInvalid",
        "BadSecureChannelClosed",
        "BadConnectionClosed",
        "BadServerHalted",
        "BadShutdown",
        "BadNotConnected",
        "BadCommunicationError",
    }
)
_POLICY_CLASSES = {
    "Basic256Sha256": "SecurityPolicyBasic256Sha256",
    "Aes128_Sha256_RsaOaep": "SecurityPolicyAes128Sha256RsaOaep",
    "Aes256_Sha256_RsaPss": "SecurityPolicyAes256Sha256RsaPss",
}
_HIERARCHICAL_REFERENCES = 33
_KEEPALIVE_COUNT = 10
_LOST = object()


def status_name(code: int) -> str:
    name: str = ua.status_codes.get_name_and_doc(code)[0]
    return name if not name.startswith("Unknown") else f"0x{code:08X}"


def to_ua_node(node: NodeId) -> Any:
    ident = node.identifier
    if isinstance(ident, int):
        return ua.NodeId(ident, node.namespace)
    if isinstance(ident, str):
        return ua.NodeId(ident, node.namespace, ua.NodeIdType.String)
    if isinstance(ident, uuid.UUID):
        return ua.NodeId(ident, node.namespace, ua.NodeIdType.Guid)
    return ua.NodeId(ident, node.namespace, ua.NodeIdType.ByteString)


def from_ua_node(node: Any) -> NodeId:
    ident = node.Identifier
    if isinstance(ident, (int, str, bytes, uuid.UUID)):
        return NodeId(ident, int(node.NamespaceIndex))
    return NodeId(str(ident), int(node.NamespaceIndex))


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, datetime.datetime):
        return None
    if value.tzinfo is None:  # asyncua's datetimes are UTC
        value = value.replace(tzinfo=datetime.timezone.utc)
    if value.year < 1602:  # the OPC UA null DateTime
        return None
    stamp: float = value.timestamp()
    return stamp


def _python(value: Any) -> object:
    """An asyncua value as the engine contract gives it: plain Python, NodeIds as ours."""
    if isinstance(value, list):
        return [_python(item) for item in value]
    if isinstance(value, (ua.NodeId, ua.ExpandedNodeId)):
        return from_ua_node(value)
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, ua.QualifiedName):
        return QualifiedName(value.Name, int(value.NamespaceIndex))
    if isinstance(value, ua.StatusCode):
        return int(value.value)
    return value


def to_result(data: Any) -> ReadResult:
    variant = data.Value
    status = data.StatusCode.value if data.StatusCode is not None else 0
    if variant is None or variant.VariantType == ua.VariantType.Null:
        value, vtype = None, None
    else:
        value, vtype = _python(variant.Value), int(variant.VariantType.value)
    return ReadResult(value, vtype, int(status), _timestamp(data.SourceTimestamp), _timestamp(data.ServerTimestamp))


class AsyncuaEngine(Engine):
    name = "asyncua"

    def __init__(self, endpoint: Endpoint, *, timeout: float, options: SessionOptions) -> None:
        super().__init__(endpoint, timeout=timeout, options=options)
        self._client: Any = None
        self._subscriptions: list[_Subscription] = []

    def status_name(self, code: int) -> str:
        return status_name(code)

    # -- session ------------------------------------------------------------------------------

    async def open(self) -> None:
        # asyncua's watchdog would probe the server every second and drop a session whose probe is slow;
        # the connection detects losses itself (on a call, or by a subscription's keep-alives), the
        # same for every engine. A closed socket is still seen at once.
        client = asyncua.Client(self._url(), timeout=self.timeout, watchdog_intervall=3600)
        client.connection_lost_callback = self._on_lost
        client.session_timeout = 60_000  # ms; what servers commonly grant (asyncua caps at 600 s)
        options = self.options
        if options.user is not None:
            client.set_user(options.user)
            client.set_password(options.password or "")
        try:
            if options.policy != "None":
                await self._set_security(client)
            await asyncio.wait_for(client.connect(), self.timeout * 2)
        except (OSError, asyncio.TimeoutError) as exc:
            await self._discard(client)
            reason = str(exc) or type(exc).__name__
            raise ConnectError(f"{self.device}: cannot connect: {reason}") from exc
        except ua.UaStatusCodeError as exc:
            await self._discard(client)
            raise ConnectError(f"{self.device}: the server refused the session: {status_name(exc.code)}") from exc
        except ua.UaError as exc:
            await self._discard(client)
            raise ConnectError(f"{self.device}: cannot open a session: {exc}") from exc
        self._client = client

    async def _set_security(self, client: Any) -> None:
        options = self.options
        if options.certificate is not None and options.private_key is not None:
            cert: bytes = options.certificate.read_bytes()
            key: bytes = options.private_key.read_bytes()
            client.application_uri = certs.application_uri_of(cert) or certs.CLIENT_URI
        else:
            cert, key = certs.generate_certificate(certs.CLIENT_URI)
            client.application_uri = certs.CLIENT_URI
        policy = getattr(_security_policies, _POLICY_CLASSES[options.policy])
        mode = getattr(ua.MessageSecurityMode, options.mode)
        try:
            await asyncio.wait_for(client.set_security(policy, cert, key, mode=mode), self.timeout * 2)
        except ua.UaError as exc:
            # asyncua says "No matching endpoints" when the server offers no such policy and mode.
            raise ConnectError(
                f"{self.device}: the server offers no endpoint with security {options.policy} and mode "
                f"{options.mode}: {exc}"
            ) from exc

    async def _discard(self, client: Any) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), self.timeout)

    async def _on_lost(self, exc: Exception) -> None:
        log.info("%s: connection lost: %r", self.device, exc)
        for sub in self._subscriptions:
            sub.lost()

    async def close(self) -> None:
        client, self._client = self._client, None
        for sub in self._subscriptions:
            sub.lost()
        self._subscriptions.clear()
        if client is not None:
            # Quietly: after a loss, asyncua logs every failed goodbye (CloseSession, CloseSecureChannel).
            logger = logging.getLogger("asyncua.client.client")
            level = logger.level
            logger.setLevel(logging.CRITICAL)
            try:
                await self._discard(client)
            finally:
                logger.setLevel(level)

    def _session(self) -> Any:
        if self._client is None:
            raise ConnectError(f"{self.device}: not connected")
        return self._client.uaclient

    async def _call(self, service: str, request: Any) -> Any:
        try:
            return await request
        except asyncio.TimeoutError:
            raise BifrostTimeout(f"{self.device}: no answer to {service} in {self.timeout:g} s") from None
        except ua.UaStatusCodeError as exc:
            name = status_name(exc.code)
            if name == "BadTimeout":
                raise BifrostTimeout(f"{self.device}: {service} timed out on the server (BadTimeout)") from None
            if name in _SESSION_LOST:
                raise ConnectError(f"{self.device}: {service}: the session is gone ({name})") from None
            raise DeviceError(f"{self.device}: {service} failed: {name}", exc.code) from None
        except (ConnectionError, OSError) as exc:
            raise ConnectError(f"{self.device}: {service}: connection lost ({exc or type(exc).__name__})") from None
        except ua.UaError as exc:
            raise ProtocolError(f"{self.device}: {service}: {exc}") from None

    # -- services -----------------------------------------------------------------------------

    async def read(self, nodes: Sequence[NodeId], attribute: AttributeId = AttributeId.VALUE) -> list[ReadResult]:
        params = ua.ReadParameters()
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        params.NodesToRead = [ua.ReadValueId(NodeId=to_ua_node(node), AttributeId=int(attribute)) for node in nodes]
        results = await self._call("Read", self._session().read(params))
        if len(results) != len(nodes):
            raise ProtocolError(f"{self.device}: Read of {len(nodes)} nodes answered {len(results)} results")
        return [to_result(data) for data in results]

    async def write(self, items: Sequence[WriteItem]) -> list[int]:
        params = ua.WriteParameters()
        for item in items:
            variant = ua.Variant(item.value, ua.VariantType(int(item.variant)))
            # No status or timestamps in the DataValue: many servers refuse to have those written.
            value = ua.DataValue(variant, StatusCode=None)
            params.NodesToWrite.append(
                ua.WriteValue(NodeId=to_ua_node(item.node), AttributeId=ua.AttributeIds.Value, Value=value)
            )
        results = await self._call("Write", self._session().write(params))
        if len(results) != len(items):
            raise ProtocolError(f"{self.device}: Write of {len(items)} nodes answered {len(results)} results")
        return [int(status.value) for status in results]

    async def browse(self, node: NodeId) -> list[Reference]:
        description = ua.BrowseDescription()
        description.NodeId = to_ua_node(node)
        description.BrowseDirection = ua.BrowseDirection.Forward
        description.ReferenceTypeId = ua.NodeId(_HIERARCHICAL_REFERENCES)
        description.IncludeSubtypes = True
        description.NodeClassMask = 0
        description.ResultMask = 63
        params = ua.BrowseParameters()
        params.NodesToBrowse = [description]
        session = self._session()
        result = (await self._call("Browse", session.browse(params)))[0]
        references: list[Reference] = []
        while True:
            status = int(result.StatusCode.value)
            if status & 0x8000_0000:
                raise DeviceError(f"{self.device}: Browse of {node} failed: {status_name(status)}", status)
            references.extend(self._reference(ref) for ref in result.References)
            if not result.ContinuationPoint:
                return references
            more = ua.BrowseNextParameters()
            more.ContinuationPoints = [result.ContinuationPoint]
            result = (await self._call("BrowseNext", session.browse_next(more)))[0]

    @staticmethod
    def _reference(ref: Any) -> Reference:
        return Reference(
            node=from_ua_node(ref.NodeId),
            browse_name=QualifiedName(ref.BrowseName.Name, int(ref.BrowseName.NamespaceIndex)),
            display_name=ref.DisplayName.Text or ref.BrowseName.Name,
            node_class=NODE_CLASSES.get(int(ref.NodeClass), str(int(ref.NodeClass))),
        )

    async def subscribe(self, interval: float, items: Sequence[MonitorRequest]) -> EngineSubscription:
        session = self._session()
        sub = _Subscription(self, interval)
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = interval * 1000
        params.RequestedLifetimeCount = _KEEPALIVE_COUNT * 3
        params.RequestedMaxKeepAliveCount = _KEEPALIVE_COUNT
        params.MaxNotificationsPerPublish = 0
        params.PublishingEnabled = True
        params.Priority = 0
        created = await self._call("CreateSubscription", session.create_subscription(params, sub.publish_callback))
        sub.created(created)
        self._subscriptions.append(sub)
        create = ua.CreateMonitoredItemsParameters()
        create.SubscriptionId = sub.subscription_id
        create.TimestampsToReturn = ua.TimestampsToReturn.Both
        for item in items:
            request = ua.MonitoredItemCreateRequest()
            request.ItemToMonitor = ua.ReadValueId(NodeId=to_ua_node(item.node), AttributeId=ua.AttributeIds.Value)
            request.MonitoringMode = ua.MonitoringMode.Reporting
            parameters = ua.MonitoringParameters()
            parameters.ClientHandle = item.handle
            parameters.SamplingInterval = interval * 1000
            parameters.QueueSize = 1
            parameters.DiscardOldest = True
            if item.deadband > 0:
                mfilter = ua.DataChangeFilter()
                mfilter.Trigger = ua.DataChangeTrigger.StatusValue
                mfilter.DeadbandType = ua.DeadbandType.Absolute
                mfilter.DeadbandValue = float(item.deadband)
                parameters.Filter = mfilter
            request.RequestedParameters = parameters
            create.ItemsToCreate.append(request)
        try:
            results = await self._call("CreateMonitoredItems", session.create_monitored_items(create))
        except BaseException:
            await sub.close()
            raise
        sub.statuses = [int(result.StatusCode.value) for result in results]
        return sub

    def _forget(self, sub: _Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(sub)


class _Subscription(EngineSubscription):
    def __init__(self, engine: AsyncuaEngine, interval: float) -> None:
        self.engine = engine
        self.interval = interval
        self.keepalive_count = _KEEPALIVE_COUNT
        self.subscription_id = 0
        self.statuses: Sequence[int] = []
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._closed = False

    def created(self, result: Any) -> None:
        self.subscription_id = int(result.SubscriptionId)
        self.interval = float(result.RevisedPublishingInterval) / 1000 or self.interval
        self.keepalive_count = int(result.RevisedMaxKeepAliveCount) or self.keepalive_count

    def lost(self) -> None:
        self._queue.put_nowait(_LOST)

    def publish_callback(self, result: Any) -> None:
        batch: list[tuple[int, ReadResult]] = []
        for data in result.NotificationMessage.NotificationData:
            if isinstance(data, ua.DataChangeNotification):
                batch.extend((int(item.ClientHandle), to_result(item.Value)) for item in data.MonitoredItems)
            elif isinstance(data, ua.StatusChangeNotification) and int(data.Status.value) & 0x8000_0000:
                self._queue.put_nowait(_LOST)  # the server ended the subscription (or asyncua saw the loss)
                return
        self._queue.put_nowait(batch)  # an empty batch is a keep-alive

    async def next_batch(self) -> list[tuple[int, ReadResult]]:
        deadline = self.interval * self.keepalive_count + self.engine.timeout
        while True:
            if self._closed:
                raise ConnectError(f"{self.engine.device}: the subscription is closed")
            try:
                item = await asyncio.wait_for(self._queue.get(), deadline)
            except asyncio.TimeoutError:
                raise ConnectError(
                    f"{self.engine.device}: no publish response nor keep-alive in {deadline:g} s"
                ) from None
            if item is _LOST:
                raise ConnectError(f"{self.engine.device}: the subscription was lost with the session")
            assert isinstance(item, list)
            if item:
                return item

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.engine._forget(self)
        client = self.engine._client
        if client is None or not self.subscription_id:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.uaclient.delete_subscriptions([self.subscription_id]), self.engine.timeout)
