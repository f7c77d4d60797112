"""The edge gateway job behind `bifrost bridge CONFIG`: poll devices, publish what changed to one or more
sinks, each through its own durable queue.

```yaml
buffer: {dir: ./bridge-queue, max_bytes: 64MB, when_full: drop_oldest, ttl: 1d}
devices:
  plc1:
    url: modbus://127.0.0.1:5020?unit=1
    tags: scenarios/water_tank.yaml      # a scenario or tag file; its device of the same name (or `device:`)
    interval: 500ms
    deadband: 0.05                       # a numeric change smaller than this is not a change
sinks:
  cloud: {kind: mqtt, url: "mqtt://broker:1883", topic: "plant/{device}/{tag_path}", qos: 1}
  scada: {kind: sparkplug, url: "mqtt://broker:1883", group: plant, node: edge1}
  aws: {kind: aws, endpoint: xxxx-ats.iot.eu-west-1.amazonaws.com, thing: edge1, cert: edge1.pem, key: edge1.key}
  azure: {kind: azure, connection_string: "HostName=hub.azure-devices.net;DeviceId=edge1;SharedAccessKey=..."}
```

Relative paths are relative to the config file. Every mistake is reported with its file:line:col.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bifrost._yaml import load_yaml
from bifrost.cloud.buffer import DurableBuffer
from bifrost.errors import BifrostError, ConfigError
from bifrost.tagfile import load_tag_file, validate_located
from bifrost.tags import DataPoint, TagMap

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)\s*$", re.I)
_SIZES = {"b": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30}


def parse_duration(value: object) -> float:
    """`250ms`, `2s`, `1.5min`, `1h`, `1d`, or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration (250ms, 2s, 1.5min, 1h, 1d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size (bytes, or 512KB, 64MB, 1GB)")
    return int(float(match.group(1)) * _SIZES[match.group(2).lower()])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BufferConfig(_Strict):
    dir: str = "bridge-queue"
    max_bytes: int = 256 * 2**20
    when_full: Literal["reject_new", "drop_oldest"] = "drop_oldest"
    ttl: float | None = None

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _max_bytes(cls, value: object) -> int:
        return _size(value)

    @field_validator("ttl", mode="before")
    @classmethod
    def _ttl(cls, value: object) -> float | None:
        return None if value is None else parse_duration(value)


class DeviceConfig(_Strict):
    url: str
    tags: str = Field(description="a scenario or tag file")
    device: str | None = Field(default=None, description="the device's name in the tag file (default: this key)")
    interval: float = 1.0
    deadband: float = 0.0
    only: list[str] | None = None

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: object) -> float:
        return parse_duration(value)


class MqttSinkConfig(_Strict):
    kind: Literal["mqtt"]
    url: str
    topic: str = "bifrost/{device}/{tag_path}"
    qos: Literal[0, 1] = 1
    retain: bool = False
    client_id: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


class SparkplugSinkConfig(_Strict):
    kind: Literal["sparkplug"]
    url: str
    group: str
    node: str
    client_id: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


class AwsSinkConfig(_Strict):
    kind: Literal["aws"]
    endpoint: str
    thing: str
    cert: str
    key: str
    ca: str | None = None
    port: int = 8883
    topic: str = "dt/bifrost/{thing}/{device}/{tag_path}"
    shadow: bool = False  # also report the latest values to the device shadow


class AzureSinkConfig(_Strict):
    kind: Literal["azure"]
    connection_string: str
    ca: str | None = None
    twin: bool = False  # also report the latest values as twin reported properties


SinkConfig = MqttSinkConfig | SparkplugSinkConfig | AwsSinkConfig | AzureSinkConfig


class BridgeConfig(_Strict):
    buffer: BufferConfig = BufferConfig()
    devices: dict[str, DeviceConfig]
    sinks: dict[str, Annotated[SinkConfig, Field(discriminator="kind")]]
    health_interval: float = 1.0

    @field_validator("health_interval", mode="before")
    @classmethod
    def _health(cls, value: object) -> float:
        return parse_duration(value)


def load_bridge_config(path: str | Path) -> tuple[BridgeConfig, Path]:
    """The checked config and the folder its relative paths are relative to."""
    config: BridgeConfig = validate_located(BridgeConfig, load_yaml(path))
    if not config.devices:
        raise ConfigError(f"{path}: devices: no device to poll")
    if not config.sinks:
        raise ConfigError(f"{path}: sinks: nowhere to publish")
    return config, Path(path).resolve().parent


@dataclass
class DeviceState:
    connected: bool = False
    polls: int = 0
    changes: int = 0
    last_error: str | None = None


@dataclass
class Bridge:
    """The running job: `await bridge.run()` until cancelled; `health()` for the status line."""

    config: BridgeConfig
    base: Path
    devices: dict[str, DeviceState] = field(default_factory=dict)
    sinks: dict[str, Any] = field(default_factory=dict)
    tagmaps: dict[str, TagMap] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        for name, device in self.config.devices.items():
            try:
                tags = load_tag_file(self._path(device.tags)).tag_map(device.device or name)
            except ConfigError as exc:
                raise ConfigError(f"devices.{name}.tags: {exc}") from None
            if device.only:
                unknown = [t for t in device.only if t not in tags]
                if unknown:
                    raise ConfigError(f"devices.{name}.only: no such tags: {', '.join(unknown)}")
                tags = TagMap.of(*(tags[t] for t in device.only), unit=tags.unit)
            self.tagmaps[name] = tags
            self.devices[name] = DeviceState()
        queue_dir = self._path(self.config.buffer.dir)
        queue_dir.mkdir(parents=True, exist_ok=True)
        for name, sink in self.config.sinks.items():
            buffer = DurableBuffer(
                queue_dir / f"{name}.db",
                max_bytes=self.config.buffer.max_bytes,
                when_full=self.config.buffer.when_full,
                ttl=self.config.buffer.ttl,
            )
            self.sinks[name] = self._sink(name, sink, buffer)

    def _path(self, raw: str) -> Path:
        path = Path(raw)
        return path if path.is_absolute() else self.base / path

    def _sink(self, name: str, sink: SinkConfig, buffer: DurableBuffer) -> Any:
        from bifrost.cloud.mqtt import MqttPublisher, MqttSettings, MqttTls

        if isinstance(sink, AwsSinkConfig):
            from bifrost.cloud.aws import AwsIotPublisher, AwsIotSettings

            aws = AwsIotSettings(
                sink.endpoint,
                sink.thing,
                self._path(sink.cert),
                self._path(sink.key),
                self._path(sink.ca) if sink.ca else None,
                sink.port,
            )
            return AwsIotPublisher(aws, buffer, topic=sink.topic)
        if isinstance(sink, AzureSinkConfig):
            from bifrost.cloud.azure import AzureIotPublisher, AzureIotSettings

            ca = str(self._path(sink.ca)) if sink.ca else None
            return AzureIotPublisher(AzureIotSettings.from_connection_string(sink.connection_string, ca=ca), buffer)

        tls = None
        if sink.ca or sink.cert:
            tls = MqttTls(
                ca=self._path(sink.ca) if sink.ca else None,
                cert=self._path(sink.cert) if sink.cert else None,
                key=self._path(sink.key) if sink.key else None,
            )
        settings = MqttSettings.from_url(sink.url, client_id=sink.client_id or f"bifrost-bridge-{name}", tls=tls)
        if isinstance(sink, MqttSinkConfig):
            return MqttPublisher(settings, buffer, topic=sink.topic, qos=sink.qos, retain=sink.retain)
        from bifrost.cloud.sparkplug import SparkplugNode

        return SparkplugNode(settings, buffer, group=sink.group, node=sink.node, devices=self.tagmaps)

    def _publish(self, device: str, points: Mapping[str, DataPoint]) -> None:
        from bifrost.cloud.mqtt import MqttPublisher

        for name, sink in self.sinks.items():
            if isinstance(sink, MqttPublisher):
                sink.publish_many(device, points)
                config = self.config.sinks[name]
                if getattr(config, "shadow", False) or getattr(config, "twin", False):
                    sink.report(device, points)  # type: ignore[attr-defined]
            else:
                sink.publish(device, points)

    def _sparkplug_nodes(self) -> list[Any]:
        from bifrost.cloud.sparkplug import SparkplugNode

        return [sink for sink in self.sinks.values() if isinstance(sink, SparkplugNode)]

    async def _poll(self, name: str) -> None:
        import bifrost

        device = self.config.devices[name]
        state = self.devices[name]
        tags = self.tagmaps[name]
        nodes = self._sparkplug_nodes()
        delay = 0.2
        alive = True  # as the Sparkplug node's births say: each device is born with the node
        while True:
            try:
                async with bifrost.connect(device.url, tags=tags) as plc:
                    state.connected = True
                    for node in nodes:
                        node.connections[name] = plc  # DCMD writes go through the live connection
                    async for changed in plc.subscribe(list(tags), interval=device.interval, deadband=device.deadband):
                        delay = 0.2
                        if not alive:  # it answers again: a fresh DBIRTH before its data
                            for node in nodes:
                                await node.device_birth(name)
                            alive = True
                        state.polls += 1
                        state.changes += len(changed)
                        self._publish(name, changed)
            except (BifrostError, OSError) as exc:
                state.last_error = f"{device.url}: {exc}"
            finally:
                state.connected = False
                for node in nodes:
                    node.connections.pop(name, None)
            if alive:  # lost: one DDEATH (tck-id-operational-behavior-device-ddeath), not one per retry
                for node in nodes:
                    await node.device_death(name)
                alive = False
            await asyncio.sleep(delay)  # the reconnect delay
            delay = min(delay * 2, 10.0)

    async def run(self, on_health: Callable[[dict[str, Any]], None] | None = None) -> None:
        for sink in self.sinks.values():
            sink.start()
        tasks = [asyncio.ensure_future(self._poll(name)) for name in self.devices]
        try:
            while True:
                if on_health is not None:
                    on_health(self.health())
                await asyncio.sleep(self.config.health_interval)  # the status line's period
        finally:
            for task in tasks:
                task.cancel()
            # Bounded: a device that hangs on close must not keep the bridge from stopping.
            await asyncio.wait(tasks, timeout=10)
            for sink in self.sinks.values():
                try:
                    await asyncio.wait_for(sink.stop(), 15)
                finally:
                    sink.buffer.close()

    def health(self) -> dict[str, Any]:
        return {
            "time": time.time(),
            "uptime": round(time.time() - self.started, 3),
            "devices": {name: vars(state).copy() for name, state in self.devices.items()},
            "sinks": {name: sink.health() for name, sink in self.sinks.items()},
        }
