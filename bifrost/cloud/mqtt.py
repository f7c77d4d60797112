"""MQTT on aiomqtt (extra `cloud`): a supervised link that reconnects with backoff and jitter (aiomqtt has
no reconnect of its own), TLS with client certificates, and a publisher of DataPoints as JSON through the
durable queue.

    settings = MqttSettings.from_url("mqtt://127.0.0.1:1883", client_id="edge-1")
    async with MqttPublisher(settings, DurableBuffer("queue.db"), topic="plant/{device}/{tag_path}") as pub:
        pub.publish("plc1", "tank.level", point)      # on disk when it returns; sent when the link is up
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import ssl
import string
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from bifrost._extras import require
from bifrost.cloud.buffer import DurableBuffer, Message
from bifrost.cloud.forward import Forwarder
from bifrost.errors import ConfigError
from bifrost.tags import DataPoint

if TYPE_CHECKING:
    import aiomqtt


def _aiomqtt() -> Any:
    return require("aiomqtt", "cloud")


@dataclass(frozen=True)
class MqttTls:
    """TLS for the link: `ca` to trust (None: the system's), `cert`/`key` for a client certificate."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    check_hostname: bool = True
    alpn: tuple[str, ...] = ()  # AWS IoT on port 443 wants "x-amzn-mqtt-ca"

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        context.check_hostname = self.check_hostname
        if self.alpn:
            context.set_alpn_protocols(list(self.alpn))
        if self.cert is not None:
            context.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
        elif self.key is not None:
            raise ConfigError("a TLS key without its certificate: give cert= as well")
        return context


@dataclass(frozen=True)
class WillMessage:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True)
class MqttSettings:
    """Where and how to connect. Reconnects wait `backoff_initial * 2**n` seconds (at most `backoff_max`),
    less a random part of up to `jitter` of it, so that a fleet does not come back all at once."""

    host: str
    port: int = 1883
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    tls: MqttTls | None = None
    keepalive: int = 30
    clean_session: bool = True
    will: WillMessage | None = None
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.5
    timeout: float = 10.0
    max_inflight: int = 1000

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> MqttSettings:
        """`mqtt://[user[:password]@]host[:port]` or `mqtts://...` (TLS, port 8883 by default)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ConfigError(f"{url}: expected an mqtt:// or mqtts:// URL")
        if not parts.hostname:
            raise ConfigError(f"{url}: no host")
        tls = kwargs.pop("tls", None)
        if parts.scheme == "mqtts" and tls is None:
            tls = MqttTls()
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if parts.scheme == "mqtts" else 1883),
            username=unquote(parts.username) if parts.username else kwargs.pop("username", None),
            password=unquote(parts.password) if parts.password else kwargs.pop("password", None),
            tls=tls,
            **kwargs,
        )

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before reconnect `attempt` (0 for the first retry)."""
        base = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt, 30))
        return float(base * (1.0 - self.jitter * (rng or random).random()))


@dataclass
class LinkState:
    connected: bool = False
    connects: int = 0
    last_error: str | None = None
    since: float = field(default_factory=time.time)


Session = Callable[["aiomqtt.Client"], Awaitable[None]]
Encode = Callable[[Message, bool], tuple[str, bytes]]


class MqttLink:
    """One supervised connection: `await link.run(session)` connects, runs `session(client)` until the
    link drops, waits out a backoff and connects again, until cancelled."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        rng: random.Random | None = None,
        password: Callable[[], str] | None = None,
    ) -> None:
        self.settings = settings
        self.password = password  # called before each connect (a SAS token that expires, ...)
        self.state = LinkState()
        self.up = asyncio.Event()
        self.down = asyncio.Event()  # set when a connection that was up dropped; cleared on connect
        self._rng = rng or random.Random()

    def client(self, will: WillMessage | None = None) -> aiomqtt.Client:
        lib = _aiomqtt()
        s = self.settings
        will = will or s.will
        client: aiomqtt.Client = lib.Client(
            s.host,
            s.port,
            username=s.username,
            password=self.password() if self.password else s.password,
            identifier=s.client_id,
            clean_session=s.clean_session,
            keepalive=s.keepalive,
            timeout=s.timeout,
            tls_context=s.tls.context() if s.tls else None,
            will=lib.Will(will.topic, will.payload, will.qos, will.retain) if will else None,
            max_inflight_messages=s.max_inflight,
        )
        client.pending_calls_threshold = 10 * s.max_inflight  # we pipeline on purpose; no warnings
        return client

    async def run(self, session: Session, *, will: Callable[[], WillMessage | None] | None = None) -> None:
        lib = _aiomqtt()
        attempt = 0
        while True:
            try:
                async with self.client(will() if will else None) as client:
                    attempt = 0
                    self.state.connected = True
                    self.state.connects += 1
                    self.state.since = time.time()
                    self.up.set()
                    self.down.clear()
                    await session(client)
            except (lib.MqttError, OSError, ssl.SSLError) as exc:
                self.state.last_error = f"{self.settings.host}:{self.settings.port}: {exc}"
            finally:
                if self.state.connected:
                    self.down.set()
                self.state.connected = False
                self.up.clear()
            await asyncio.sleep(self.settings.backoff(attempt, self._rng))  # the reconnect delay itself
            attempt += 1


# -- topics and payloads ----------------------------------------------------------------------------

TOPIC_FIELDS = ("device", "tag", "tag_path")


def check_topic_template(template: str) -> str:
    """A topic template may use {device}, {tag} and {tag_path} (the tag with dots as levels)."""
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None and name not in TOPIC_FIELDS:
            raise ConfigError(f"topic {template!r}: unknown field {{{name}}}; the fields are {', '.join(TOPIC_FIELDS)}")
    if "+" in template or "#" in template:
        raise ConfigError(f"topic {template!r}: wildcards + and # cannot be published to")
    return template


def render_topic(template: str, device: str, tag: str) -> str:
    return template.format(device=device, tag=tag, tag_path=tag.replace(".", "/"))


def point_json(device: str, tag: str, point: DataPoint, extra: Mapping[str, Any] | None = None) -> bytes:
    """A DataPoint as JSON: value, quality, timestamp (seconds since the epoch) and time (ISO 8601)."""
    body: dict[str, Any] = {
        "device": device,
        "tag": tag,
        "value": point.value,
        "quality": point.quality.value,
        "timestamp": point.timestamp,
        "time": dt.datetime.fromtimestamp(point.timestamp, dt.timezone.utc).isoformat(),
    }
    if extra:
        body.update(extra)
    return json.dumps(body, separators=(",", ":")).encode()


def stamp(message: Message, historical: bool) -> bytes:
    """The stored JSON object with the message id (to de-duplicate on) and the historical flag put first."""
    head = b'{"id":"%s","historical":%s,' % (message.id.encode(), b"true" if historical else b"false")
    return head + message.payload[1:]


# -- the publisher ------------------------------------------------------------------------------------


class MqttPublisher:
    """Publishes DataPoints as JSON through a DurableBuffer over a supervised MQTT link.

    `publish()` is synchronous and durable: the message is committed when it returns. A background task
    (started by `async with`, or `start()`) forwards the queue in order whenever the link is up, with QoS 1
    acknowledgements (or QoS 0), and retained if asked.
    """

    def __init__(
        self,
        settings: MqttSettings,
        buffer: DurableBuffer,
        *,
        topic: str = "bifrost/{device}/{tag_path}",
        qos: int = 1,
        retain: bool = False,
        batch: int = 200,
        encode: Encode | None = None,
        subscriptions: Sequence[str] = (),
        on_message: Callable[[str, bytes], None] | None = None,
        password: Callable[[], str] | None = None,
    ) -> None:
        if qos not in (0, 1):
            raise ConfigError(f"qos={qos}: expected 0 or 1")
        self.settings = settings
        self.buffer = buffer
        self.topic = check_topic_template(topic)
        self.qos = qos
        self.retain = retain
        self.link = MqttLink(settings, password=password)
        self.forwarder = Forwarder(buffer, batch=batch)
        # How a queued message goes on the wire: (topic, payload). By default the JSON gets its id and the
        # historical flag; a cloud service with a fixed document shape (a device shadow) passes its own.
        self.encode: Encode = encode or (lambda m, historical: (m.topic, stamp(m, historical)))
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self._task: asyncio.Task[None] | None = None

    def publish(self, device: str, tag: str, point: DataPoint) -> Message:
        message = self.buffer.put(
            render_topic(self.topic, device, tag), point_json(device, tag, point), qos=self.qos, retain=self.retain
        )
        self.forwarder.notify()
        return message

    def publish_many(self, device: str, points: Mapping[str, DataPoint]) -> list[Message]:
        messages = self.buffer.put_many(
            ((render_topic(self.topic, device, tag), point_json(device, tag, p)) for tag, p in points.items()),
            qos=self.qos,
            retain=self.retain,
        )
        self.forwarder.notify()
        return messages

    def put(self, topic: str, payload: bytes, *, qos: int | None = None, retain: bool = False) -> Message:
        """Queue a message of any shape (a shadow update, a twin patch); durable when it returns."""
        message = self.buffer.put(topic, payload, qos=self.qos if qos is None else qos, retain=retain)
        self.forwarder.notify()
        return message

    async def _session(self, client: aiomqtt.Client) -> None:
        async def send(message: Message, historical: bool) -> None:
            topic, payload = self.encode(message, historical)
            await client.publish(topic, payload, message.qos, message.retain)

        for topic in self.subscriptions:
            await client.subscribe(topic, qos=1)
        tasks = [asyncio.ensure_future(self.forwarder.run(send))]
        if self.subscriptions:
            tasks.append(asyncio.ensure_future(self._receive(client)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, (bytes, bytearray)) else b""
            if self.on_message is not None:
                self.on_message(str(message.topic), bytes(payload))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.link.run(self._session))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def __aenter__(self) -> MqttPublisher:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def health(self) -> dict[str, Any]:
        """What a status line shows: queued, sent, connected, last error."""
        return {
            "connected": self.link.state.connected,
            "queued": len(self.buffer),
            "sent": self.forwarder.stats.sent,
            "connects": self.link.state.connects,
            "last_error": self.forwarder.stats.last_error or self.link.state.last_error,
        }
