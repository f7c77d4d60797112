"""AWS IoT Core: MQTT over TLS with an X.509 device certificate, on our MQTT layer and durable queue.

Data plane (what the device does): connect to the account's ATS endpoint on 8883 (or 443 with the ALPN
protocol `x-amzn-mqtt-ca`), the client id being the thing name; publish telemetry on a topic of AWS's
recommended shape `dt/<app>/<thing>/...`; report state to the device shadow
(`$aws/things/<thing>/shadow[/name/<shadow>]/update`, a `{"state": {"reported": ...}}` document whose
`clientToken` is the queue's message id). AWS's device SDK queues offline messages in memory only; here
they wait on disk.

Control plane (provisioning, with a boto3 `iot` client; boto3 is in the `cloud` extra): register a
device certificate issued by your own CA, create the thing and a least-privilege policy, attach them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bifrost.cloud.buffer import DurableBuffer, Message
from bifrost.cloud.mqtt import MqttPublisher, MqttSettings, MqttTls, stamp
from bifrost.errors import ConfigError
from bifrost.tags import DataPoint

ALPN = "x-amzn-mqtt-ca"
MAX_TOPIC_BYTES = 256
MAX_TOPIC_SLASHES = 7  # AWS IoT's limit on levels, not counting a Basic Ingest `$aws/rules/<rule>/` prefix


def check_topic(topic: str) -> str:
    """A topic AWS IoT Core accepts for publishing: at most 256 bytes and 7 slashes; `$` only for the
    reserved topics a device may publish to (shadows, Basic Ingest)."""
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        raise ConfigError(f"topic {topic[:40]!r}...: AWS IoT topics are at most {MAX_TOPIC_BYTES} bytes")
    body = topic
    if topic.startswith("$aws/rules/"):
        body = topic.split("/", 3)[3] if topic.count("/") >= 3 else ""
    elif topic.startswith("$") and not topic.startswith("$aws/things/"):
        raise ConfigError(f"topic {topic!r}: topics starting with $ are reserved by AWS IoT")
    if not topic.startswith("$aws/things/") and body.count("/") > MAX_TOPIC_SLASHES:
        raise ConfigError(f"topic {topic!r}: AWS IoT allows at most {MAX_TOPIC_SLASHES} '/' in a topic")
    return topic


def shadow_topic(thing: str, action: str = "update", *, shadow: str | None = None) -> str:
    """`$aws/things/<thing>/shadow/update` (classic) or `.../shadow/name/<shadow>/update` (named);
    `action` may also be `get`, `delete`, or a response such as `update/accepted`, `update/delta`."""
    base = f"$aws/things/{thing}/shadow" + (f"/name/{shadow}" if shadow else "")
    return f"{base}/{action}"


@dataclass(frozen=True)
class AwsIotSettings:
    """Where the thing connects: `endpoint` from `describe_endpoint(endpointType="iot:Data-ATS")`."""

    endpoint: str
    thing: str
    cert: Path
    key: Path
    ca: Path | None = None  # the Amazon Root CA (None: the system's trust store)
    port: int = 8883

    def mqtt(self, **kwargs: Any) -> MqttSettings:
        tls = MqttTls(ca=self.ca, cert=self.cert, key=self.key, alpn=(ALPN,) if self.port == 443 else ())
        # clean_session: AWS IoT keeps persistent sessions for an hour; our queue is the persistence.
        return MqttSettings(host=self.endpoint, port=self.port, client_id=self.thing, tls=tls, **kwargs)


def _shadow_encode(message: Message, historical: bool) -> tuple[str, bytes]:
    if "/shadow/" in message.topic:
        document = json.loads(message.payload)
        document["clientToken"] = message.id  # AWS echoes it in update/accepted: de-duplicate on it
        return message.topic, json.dumps(document, separators=(",", ":")).encode()
    return message.topic, stamp(message, historical)


class AwsIotPublisher(MqttPublisher):
    """Telemetry and device shadow updates for one thing, through a DurableBuffer."""

    def __init__(
        self,
        settings: AwsIotSettings,
        buffer: DurableBuffer,
        *,
        topic: str = "dt/bifrost/{thing}/{device}/{tag_path}",
        shadow: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.aws = settings
        self.shadow = shadow
        template = topic.replace("{thing}", settings.thing)
        check_topic(template.format(device="d", tag="t", tag_path="t"))
        mqtt = settings.mqtt(**kwargs.pop("mqtt", {}))
        super().__init__(mqtt, buffer, topic=template, encode=_shadow_encode, **kwargs)

    def report(self, device: str, points: Mapping[str, DataPoint]) -> Message:
        """Queue a shadow update reporting these values: `{"state": {"reported": {device: {tag: value}}}}`."""
        reported = {device: {name: point.value for name, point in points.items()}}
        document = {"state": {"reported": reported}}
        topic = shadow_topic(self.aws.thing, "update", shadow=self.shadow)
        return self.put(topic, json.dumps(document, separators=(",", ":")).encode(), qos=1)


# -- control plane (boto3 `iot` client) ------------------------------------------------------------


def policy_document(thing: str, *, region: str, account: str, topic_prefix: str = "dt/bifrost") -> dict[str, Any]:
    """A least-privilege policy: connect as the thing, publish its telemetry, use its own shadows."""
    arn = f"arn:aws:iot:{region}:{account}"
    shadow = f"$aws/things/{thing}/shadow"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/{thing}"},
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": [f"{arn}:topic/{topic_prefix}/{thing}/*", f"{arn}:topic/{shadow}/*"],
            },
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{arn}:topicfilter/{shadow}/*"},
            {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{arn}:topic/{shadow}/*"},
        ],
    }


@dataclass(frozen=True)
class Provisioned:
    thing_arn: str
    certificate_arn: str
    certificate_id: str
    policy_name: str
    endpoint: str


def provision_thing(
    iot: Any, thing: str, certificate_pem: str, *, ca_pem: str | None = None, region: str, account: str
) -> Provisioned:
    """Register a device certificate (issued by your CA, registered too when `ca_pem` is given), create the
    thing and its policy, attach both to the certificate, and look up the ATS data endpoint."""
    if ca_pem is not None:
        iot.register_ca_certificate(caCertificate=ca_pem, setAsActive=True, allowAutoRegistration=False)
    cert = iot.register_certificate(certificatePem=certificate_pem, caCertificatePem=ca_pem, setAsActive=True)
    made = iot.create_thing(thingName=thing)
    policy_name = f"{thing}-policy"
    document = policy_document(thing, region=region, account=account)
    iot.create_policy(policyName=policy_name, policyDocument=json.dumps(document))
    iot.attach_policy(policyName=policy_name, target=cert["certificateArn"])
    iot.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
    endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    return Provisioned(made["thingArn"], cert["certificateArn"], cert["certificateId"], policy_name, endpoint)
