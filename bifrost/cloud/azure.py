"""Azure IoT Hub over MQTT, on our MQTT layer and durable queue (azure-iot-device needs paho-mqtt < 2,
which conflicts with aiomqtt, and is in maintenance mode).

The device side of IoT Hub's MQTT support:

- client id `<device id>`; username `<hub host>/<device id>/?api-version=2021-04-12`; password a SAS token
  for `<hub host>/devices/<device id>`, signed with the device key and made fresh for every connect;
- device-to-cloud messages on `devices/<device id>/messages/events/<property bag>`;
- twin reported properties: a JSON patch on `$iothub/twin/PATCH/properties/reported/?$rid=<n>`, answered
  on `$iothub/twin/res/<status>/?$rid=<n>&$version=<v>`;
- cloud-to-device messages arrive on `devices/<device id>/messages/devicebound/<property bag>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

from bifrost.cloud.buffer import DurableBuffer, Message
from bifrost.cloud.mqtt import MqttPublisher, MqttSettings, MqttTls, stamp
from bifrost.errors import ConfigError
from bifrost.tags import DataPoint

API_VERSION = "2021-04-12"
TWIN_PATCH = "$iothub/twin/PATCH/properties/reported/?$rid="


def sas_token(resource: str, key: str, expiry: int, *, policy: str | None = None) -> str:
    """`SharedAccessSignature sr=...&sig=...&se=...[&skn=...]`: HMAC-SHA256 with the base64 `key` over the
    URL-encoded resource URI, a newline, and the expiry (seconds since the epoch)."""
    try:
        secret = base64.b64decode(key, validate=True)
    except binascii.Error:
        raise ConfigError("the SAS key is not base64 (copy the device's primary key as IoT Hub shows it)") from None
    to_sign = f"{quote_plus(resource)}\n{expiry}".encode()
    signature = base64.b64encode(hmac.new(secret, to_sign, hashlib.sha256).digest()).decode()
    fields = {"sr": resource, "sig": signature, "se": str(expiry)}
    if policy:
        fields["skn"] = policy
    return "SharedAccessSignature " + urlencode(fields)


def property_bag(properties: Mapping[str, str]) -> str:
    """Message properties as IoT Hub reads them from a topic: URL-encoded `key=value&...`."""
    return "&".join(f"{quote(k, safe='$.')}={quote(str(v), safe='')}" for k, v in properties.items())


def parse_property_bag(text: str) -> dict[str, str]:
    return dict(parse_qsl(text, keep_blank_values=True))


@dataclass(frozen=True)
class C2DMessage:
    """A cloud-to-device message: its body and the properties of its topic ($.mid, $.to, your own)."""

    body: bytes
    properties: dict[str, str]


@dataclass(frozen=True)
class AzureIotSettings:
    """One device of one hub. `from_connection_string("HostName=...;DeviceId=...;SharedAccessKey=...")`."""

    host: str  # <hub>.azure-devices.net
    device_id: str
    key: str  # the device's symmetric key (base64)
    port: int = 8883
    token_ttl: int = 3600
    ca: str | None = None  # None: the system's trust store
    clock: Callable[[], float] = time.time

    @classmethod
    def from_connection_string(cls, text: str, **kwargs: Any) -> AzureIotSettings:
        parts = dict(item.split("=", 1) for item in text.split(";") if "=" in item)
        missing = [k for k in ("HostName", "DeviceId", "SharedAccessKey") if k not in parts]
        if missing:
            raise ConfigError(f"the connection string has no {', '.join(missing)}")
        return cls(parts["HostName"], parts["DeviceId"], parts["SharedAccessKey"], **kwargs)

    @property
    def username(self) -> str:
        return f"{self.host}/{self.device_id}/?api-version={API_VERSION}"

    @property
    def resource(self) -> str:
        return f"{self.host}/devices/{self.device_id}"

    def token(self) -> str:
        """A fresh SAS token for this device, valid `token_ttl` seconds."""
        return sas_token(self.resource, self.key, int(self.clock() + self.token_ttl))

    def mqtt(self, **kwargs: Any) -> MqttSettings:
        from pathlib import Path

        tls = MqttTls(ca=Path(self.ca) if self.ca else None)
        return MqttSettings(
            host=self.host, port=self.port, client_id=self.device_id, username=self.username, tls=tls, **kwargs
        )


def _encode(message: Message, historical: bool) -> tuple[str, bytes]:
    if message.topic == TWIN_PATCH:
        return f"{TWIN_PATCH}{message.seq}", message.payload  # the patch as is; $rid ties the answer to it
    return message.topic, stamp(message, historical)


class AzureIotPublisher(MqttPublisher):
    """Device-to-cloud telemetry and twin reported properties through a DurableBuffer; C2D messages and
    twin answers are handed to `on_c2d` and kept in `twin_responses`."""

    def __init__(
        self,
        settings: AzureIotSettings,
        buffer: DurableBuffer,
        *,
        on_c2d: Callable[[C2DMessage], None] | None = None,
        **kwargs: Any,
    ) -> None:
        self.azure = settings
        self.on_c2d = on_c2d
        self.twin_responses: list[tuple[int, dict[str, str]]] = []  # (status, properties incl. $rid)
        device = settings.device_id
        # Content type and encoding let IoT Hub route on the JSON body; device and tag are properties too.
        topic = f"devices/{device}/messages/events/$.ct=application%2Fjson&$.ce=utf-8&device={{device}}&tag={{tag}}"
        subscriptions = [f"devices/{device}/messages/devicebound/#", "$iothub/twin/res/#"]
        super().__init__(
            settings.mqtt(**kwargs.pop("mqtt", {})),
            buffer,
            topic=topic,
            encode=_encode,
            subscriptions=subscriptions,
            on_message=self._received,
            password=settings.token,
            **kwargs,
        )

    def report_properties(self, properties: Mapping[str, Any]) -> Message:
        """Queue a twin reported-properties patch (a JSON object)."""
        return self.put(TWIN_PATCH, json.dumps(dict(properties), separators=(",", ":")).encode(), qos=1)

    def report(self, device: str, points: Mapping[str, DataPoint]) -> Message:
        """Report the latest values of a device in the twin: `{device: {tag: value}}`."""
        return self.report_properties({device: {name: point.value for name, point in points.items()}})

    def _received(self, topic: str, payload: bytes) -> None:
        c2d = f"devices/{self.azure.device_id}/messages/devicebound/"
        if topic.startswith(c2d):
            if self.on_c2d is not None:
                self.on_c2d(C2DMessage(payload, parse_property_bag(topic[len(c2d) :])))
        elif topic.startswith("$iothub/twin/res/"):
            status, _, query = topic[len("$iothub/twin/res/") :].partition("/?")
            if status.isdigit():
                self.twin_responses.append((int(status), parse_property_bag(query)))
