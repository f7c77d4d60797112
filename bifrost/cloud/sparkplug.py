"""A Sparkplug B edge node (Sparkplug 3.0) on our MQTT link and durable queue.

- On every connect: the Will is an NDEATH carrying this connection's bdSeq (QoS 1, not retained); then
  NBIRTH (seq 0, bdSeq, `Node Control/Rebirth` = false) and a DBIRTH per device with every metric, its
  name, alias, datatype (from the tag) and current value; then the queued DDATA, in order.
- seq counts every message of the session 0..255 and wraps; bdSeq counts connects 0..255, kept in the
  queue's file so that it survives restarts.
- DDATA goes through the DurableBuffer: data queued while the link was down (or before a restart) is
  sent after the births with `is_historical` set, so a host does not take it for live values.
- NCMD `Node Control/Rebirth` = true: DATA stops, a fresh NBIRTH (seq 0, same bdSeq) and DBIRTHs follow.
- DCMD: each metric names (or aliases) a tag; it is written to the PLC through its Connection when the tag
  is writable, and refused (counted, with the reason in `last_error`) when it is not.

Sparkplug sends DATA with QoS 0 (tck-id-payloads-ddata-qos): the queue is acknowledged once the message
is handed to the connection, so data queued during an outage is kept, but what was on the wire when the
broker died is not re-sent. Use the JSON publisher (QoS 1) where every value must arrive.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bifrost.cloud.buffer import DurableBuffer, Message
from bifrost.cloud.forward import Forwarder
from bifrost.cloud.mqtt import MqttLink, MqttSettings, WillMessage
from bifrost.cloud.sparkplug_payload import (
    NAMESPACE,
    QUALITY_BAD,
    QUALITY_GOOD,
    QUALITY_STALE,
    DataType,
    Metric,
    Payload,
    PropertySet,
    PropertyValue,
    decode_payload,
    encode_payload,
)
from bifrost.connection import Connection
from bifrost.errors import BifrostError, ConfigError, ProtocolError
from bifrost.tags import DataPoint, Quality, Tag, TagMap
from bifrost.tags import DataType as TagType

if TYPE_CHECKING:
    import aiomqtt

REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"

_TYPES = {
    TagType.BOOL: DataType.Boolean,
    TagType.INT16: DataType.Int16,
    TagType.UINT16: DataType.UInt16,
    TagType.INT32: DataType.Int32,
    TagType.UINT32: DataType.UInt32,
    TagType.INT64: DataType.Int64,
    TagType.UINT64: DataType.UInt64,
    TagType.FLOAT32: DataType.Float,
    TagType.FLOAT64: DataType.Double,
    TagType.STRING: DataType.String,
}
_QUALITY = {Quality.GOOD: QUALITY_GOOD, Quality.BAD: QUALITY_BAD, Quality.UNCERTAIN: QUALITY_STALE}


def metric_type(tag: Tag) -> DataType:
    """The Sparkplug type of a tag's values: its own, or Double when a scale or offset makes it fractional."""
    if (tag.scale != 1.0 or tag.offset != 0.0) and tag.type.is_integer:
        return DataType.Double
    return _TYPES[tag.type]


def _check_id(kind: str, value: str) -> str:
    # tck-id-topic-structure-namespace-valid-group-id / -edge-node-id / -device-id
    if not value or any(c in value for c in "+/#"):
        raise ConfigError(f"Sparkplug {kind} {value!r}: must be a non-empty UTF-8 string without + / #")
    return value


def topic(group: str, verb: str, node: str, device: str | None = None) -> str:
    return "/".join([NAMESPACE, group, verb, node, *([device] if device else [])])


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass
class NodeStats:
    births: int = 0
    rebirths: int = 0
    writes: int = 0
    refused_writes: int = 0
    bad_commands: int = 0
    last_error: str | None = None


class SparkplugNode:
    """An edge node: `async with SparkplugNode(settings, buffer, group="plant", node="edge1",
    devices={"plc1": tagmap}, connections={"plc1": plc}) as node: node.publish("plc1", points)`."""

    def __init__(
        self,
        settings: MqttSettings,
        buffer: DurableBuffer,
        *,
        group: str,
        node: str,
        devices: Mapping[str, TagMap],
        connections: Mapping[str, Connection] | None = None,
        batch: int = 200,
    ) -> None:
        self.group = _check_id("group_id", group)
        self.node = _check_id("edge_node_id", node)
        self.devices = {_check_id("device_id", d): tags for d, tags in devices.items()}
        self.connections = dict(connections or {})
        self.settings = settings
        self.buffer = buffer
        self.link = MqttLink(settings)
        self.forwarder = Forwarder(buffer, batch=batch)
        self.stats = NodeStats()
        # Aliases are unique across the node's metrics (tck-id-payloads-alias-uniqueness): 1, 2, 3...
        self.aliases: dict[tuple[str, str], int] = {}
        self._by_alias: dict[int, tuple[str, str]] = {}
        self._types: dict[int, int] = {}
        for device, tags in self.devices.items():
            for name in tags:
                alias = len(self.aliases) + 1
                self.aliases[(device, name)] = alias
                self._by_alias[alias] = (device, name)
                self._types[alias] = int(metric_type(tags[name]))
        self.last: dict[tuple[str, str], DataPoint] = {}
        self.bdseq = self._next_bdseq(peek=True)
        self._seq = 0
        self._lock = asyncio.Lock()
        self.changed = asyncio.Event()  # set after each birth sequence and each command handled
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    # -- numbering --------------------------------------------------------------------------------

    def _next_bdseq(self, *, peek: bool = False) -> int:
        """bdSeq of the next connect, persisted beside the queue (0..255, wrapping)."""
        current = self.buffer.meta_get("sparkplug.bdseq")
        value = int(current) if current is not None else 0
        if not peek:
            self.buffer.meta_set("sparkplug.bdseq", str((value + 1) % 256))
        return value

    def _take_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % 256
        return seq

    # -- data in ----------------------------------------------------------------------------------

    def publish(self, device: str, points: Mapping[str, DataPoint]) -> Message | None:
        """Queue one DDATA of `points` (tag -> DataPoint) for `device`; durable when it returns."""
        if device not in self.devices:
            raise ConfigError(f"Sparkplug node {self.node}: no device {device!r} (known: {', '.join(self.devices)})")
        rows = []
        for name, point in points.items():
            if (device, name) not in self.aliases:
                raise ConfigError(f"device {device!r} has no tag {name!r} in its birth certificate")
            self.last[(device, name)] = point
            rows.append([name, point.value, point.quality.value, point.timestamp])
        if not rows:
            return None
        message = self.buffer.put(device, json.dumps(rows).encode(), qos=0)
        self.forwarder.notify()
        return message

    # -- payloads ---------------------------------------------------------------------------------

    def _metric(self, device: str, name: str, point: DataPoint | None, *, birth: bool, historical: bool) -> Metric:
        alias = self.aliases[(device, name)]
        metric = Metric(alias=alias, timestamp=_ms(point.timestamp if point else time.time()))
        if birth:
            metric.name = name  # births carry name and alias (tck-id-payloads-alias-birth-requirement)
            metric.datatype = self._types[alias]
        if historical:
            metric.is_historical = True
        if point is None or point.value is None:
            metric.is_null = True
        else:
            metric.value = point.value
        if point is not None and point.quality is not Quality.GOOD:
            metric.properties = PropertySet(["Quality"], [PropertyValue(int(DataType.Int32), _QUALITY[point.quality])])
        return metric

    def nbirth(self) -> bytes:
        now = _ms(time.time())
        metrics = [
            Metric(name=BDSEQ, timestamp=now, datatype=int(DataType.UInt64), value=self.bdseq),
            # No alias for the Rebirth metric (tck-id-operational-behavior-data-commands-rebirth-name-aliases).
            Metric(name=REBIRTH, timestamp=now, datatype=int(DataType.Boolean), value=False),
        ]
        return encode_payload(Payload(timestamp=now, metrics=metrics, seq=0))

    def ndeath(self, bdseq: int | None = None) -> bytes:
        metric = Metric(name=BDSEQ, timestamp=_ms(time.time()), datatype=int(DataType.UInt64))
        metric.value = self.bdseq if bdseq is None else bdseq
        return encode_payload(Payload(timestamp=_ms(time.time()), metrics=[metric]))  # no seq

    def dbirth(self, device: str, seq: int) -> bytes:
        metrics = [
            self._metric(device, name, self.last.get((device, name)), birth=True, historical=False)
            for name in self.devices[device]
        ]
        return encode_payload(Payload(timestamp=_ms(time.time()), metrics=metrics, seq=seq))

    def ddata(self, message: Message, seq: int, historical: bool) -> bytes:
        device = message.topic
        metrics = []
        for name, value, quality, stamp in json.loads(message.payload):
            point = DataPoint(value, Quality(quality), stamp)
            metrics.append(self._metric(device, name, point, birth=False, historical=historical))
        return encode_payload(Payload(timestamp=_ms(time.time()), metrics=metrics, seq=seq), datatypes=self._types)

    # -- the session ------------------------------------------------------------------------------

    def _will(self) -> WillMessage:
        self.bdseq = self._next_bdseq()
        return WillMessage(topic(self.group, "NDEATH", self.node), self.ndeath(), qos=1, retain=False)

    async def _births(self, client: aiomqtt.Client) -> None:
        # NBIRTH is seq 0 (tck-id-topics-nbirth-seq-num); every later message counts on from 1.
        self._seq = 1
        await client.publish(topic(self.group, "NBIRTH", self.node), self.nbirth(), qos=0, retain=False)
        for device in self.devices:
            await client.publish(
                topic(self.group, "DBIRTH", self.node, device), self.dbirth(device, self._take_seq()), qos=0
            )
        self.stats.births += 1
        self.changed.set()

    async def _session(self, client: aiomqtt.Client) -> None:
        self._client = client
        try:
            await client.subscribe(topic(self.group, "NCMD", self.node), qos=1)
            await client.subscribe(topic(self.group, "DCMD", self.node, "+"), qos=1)
            async with self._lock:
                await self._births(client)

            async def send(message: Message, historical: bool) -> None:
                async with self._lock:
                    payload = self.ddata(message, self._take_seq(), historical)
                    await client.publish(topic(self.group, "DDATA", self.node, message.topic), payload, qos=0)

            forward = asyncio.ensure_future(self.forwarder.run(send))
            commands = asyncio.ensure_future(self._commands(client))
            try:
                done, _ = await asyncio.wait({forward, commands}, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
            finally:
                for task in (forward, commands):
                    task.cancel()
                await asyncio.gather(forward, commands, return_exceptions=True)
        finally:
            self._client = None

    async def _commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                raw = message.payload if isinstance(message.payload, (bytes, bytearray)) else b""
                payload = decode_payload(bytes(raw), datatypes=self._types)
                parts = str(message.topic).split("/")
                if parts[2] == "NCMD":
                    await self._ncmd(client, payload)
                elif parts[2] == "DCMD" and len(parts) == 5:
                    await self._dcmd(parts[4], payload)
            except (ProtocolError, BifrostError, ValueError, KeyError, IndexError) as exc:
                # A bad command never stops the node.
                self.stats.bad_commands += 1
                self.stats.last_error = f"{message.topic}: {exc}"
            self.changed.set()

    async def _ncmd(self, client: aiomqtt.Client, payload: Payload) -> None:
        for metric in payload.metrics:
            if metric.name == REBIRTH and metric.value is True:
                async with self._lock:  # DATA stops while the births go out (rebirth-action-1, -2)
                    await self._births(client)
                self.stats.rebirths += 1

    async def _dcmd(self, device: str, payload: Payload) -> None:
        tags = self.devices.get(device)
        if tags is None:
            raise ConfigError(f"DCMD for unknown device {device!r}")
        for metric in payload.metrics:
            if metric.name is not None:
                name = metric.name
            elif metric.alias is not None and metric.alias in self._by_alias:
                owner, name = self._by_alias[metric.alias]
                if owner != device:
                    raise ConfigError(f"DCMD for {device!r}: alias {metric.alias} belongs to {owner!r}")
            else:
                raise ConfigError(f"DCMD for {device!r}: a metric with neither a known name nor alias")
            tag = tags.get(name)
            if tag is None:
                raise ConfigError(f"DCMD for {device!r}: no tag {name!r}")
            if not tag.writable:
                self.stats.refused_writes += 1
                self.stats.last_error = f"DCMD {device}/{name}: the tag is not writable; not written"
                continue
            connection = self.connections.get(device)
            if connection is None:
                raise ConfigError(f"DCMD for {device!r}: no connection to write through")
            await connection.write(name, metric.value)
            self.stats.writes += 1

    async def device_death(self, device: str) -> None:
        """Publish DDEATH for a device whose PLC was lost (when the link is up)."""
        client = self._client
        if client is not None:
            try:
                async with self._lock:
                    payload = encode_payload(Payload(timestamp=_ms(time.time()), seq=self._take_seq()))
                    await client.publish(topic(self.group, "DDEATH", self.node, device), payload, qos=0)
            except Exception as exc:  # the link went too: the next births restate every device
                self.stats.last_error = f"DDEATH {device}: {exc}"

    async def device_birth(self, device: str) -> None:
        """Publish a fresh DBIRTH for a device that came back (when the link is up)."""
        client = self._client
        if client is not None:
            try:
                async with self._lock:
                    payload = self.dbirth(device, self._take_seq())
                    await client.publish(topic(self.group, "DBIRTH", self.node, device), payload, qos=0)
            except Exception as exc:  # the link went too: the next births restate every device
                self.stats.last_error = f"DBIRTH {device}: {exc}"

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.link.run(self._session, will=self._will))

    async def stop(self) -> None:
        """Publish NDEATH, then disconnect (tck-id-payloads-ndeath-will-message-publisher)."""
        client = self._client
        if client is not None:
            try:
                await client.publish(topic(self.group, "NDEATH", self.node), self.ndeath(), qos=1, timeout=5)
            except Exception as exc:  # the link may already be gone; the Will covers that case
                self.stats.last_error = f"NDEATH on stop: {exc}"
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def __aenter__(self) -> SparkplugNode:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds, checked after each birth sequence and each command."""
        while not condition():
            self.changed.clear()
            await self.changed.wait()

    def health(self) -> dict[str, Any]:
        return {
            "connected": self.link.state.connected,
            "queued": len(self.buffer),
            "sent": self.forwarder.stats.sent,
            "bdseq": self.bdseq,
            "rebirths": self.stats.rebirths,
            "last_error": self.stats.last_error or self.forwarder.stats.last_error or self.link.state.last_error,
        }
