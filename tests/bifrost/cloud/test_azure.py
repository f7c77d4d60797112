"""Azure IoT Hub: SAS tokens against fixed vectors (and openssl), the MQTT conventions against mosquitto
configured with the device's username and token as its only account, over TLS."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bifrost import DataPoint
from bifrost.cloud.azure import (
    AzureIotPublisher,
    AzureIotSettings,
    C2DMessage,
    parse_property_bag,
    property_bag,
    sas_token,
)
from bifrost.cloud.buffer import DurableBuffer
from bifrost.errors import ConfigError
from pytest_bifrost.mqtt import BrokerTls, MqttBroker, mosquitto_path

from .certs import TestCA
from .conftest import Subscriber

KEY = "Ymlmcm9zdC10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm"  # base64 of b"bifrost-test-key-0123456789abcdef"
EXPIRY = 1700000000


def test_sas_token_fixed_vectors() -> None:
    assert sas_token("myhub.azure-devices.net/devices/dev1", KEY, EXPIRY) == (
        "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1"
        "&sig=tqcWEpiCBdu6e1biZpHuqYwaeJqMnzZDlREkRijp38U%3D&se=1700000000"
    )
    assert sas_token("myhub.azure-devices.net", KEY, EXPIRY, policy="iothubowner") == (
        "SharedAccessSignature sr=myhub.azure-devices.net"
        "&sig=EyzhSghBRVb3CuqRUR%2FgCAlJBGD%2FeBtLtLk5VNceQN8%3D&se=1700000000&skn=iothubowner"
    )
    with pytest.raises(ConfigError, match="not base64"):
        sas_token("h", "not base64!", EXPIRY)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_sas_signature_matches_openssl() -> None:
    import base64
    from urllib.parse import quote_plus, unquote

    resource = "other-hub.azure-devices.net/devices/pump 7"
    token = sas_token(resource, KEY, 1234567890)
    key_hex = base64.b64decode(KEY).hex()
    mac = subprocess.run(
        ["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{key_hex}", "-binary"],
        input=f"{quote_plus(resource)}\n1234567890".encode(),
        capture_output=True,
        check=True,
    ).stdout
    fields = dict(part.split("=", 1) for part in token.removeprefix("SharedAccessSignature ").split("&"))
    assert unquote(fields["sig"]) == base64.b64encode(mac).decode()


def test_connection_string_and_conventions() -> None:
    s = AzureIotSettings.from_connection_string(f"HostName=myhub.azure-devices.net;DeviceId=dev1;SharedAccessKey={KEY}")
    assert s.username == "myhub.azure-devices.net/dev1/?api-version=2021-04-12"
    assert s.mqtt().client_id == "dev1" and s.mqtt().port == 8883 and s.mqtt().tls is not None
    with pytest.raises(ConfigError, match="no SharedAccessKey"):
        AzureIotSettings.from_connection_string("HostName=h;DeviceId=d")
    bag = property_bag({"$.mid": "7", "to": "/devices/dev1", "color": "blue green"})
    assert bag == "$.mid=7&to=%2Fdevices%2Fdev1&color=blue%20green"
    assert parse_property_bag(bag) == {"$.mid": "7", "to": "/devices/dev1", "color": "blue green"}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[MqttBroker, AzureIotSettings, TestCA]]:
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed")
    ca = TestCA(tmp_path)
    server = ca.issue("hub", server=True)
    settings = AzureIotSettings("127.0.0.1", "dev1", KEY, ca=str(ca.path), clock=lambda: EXPIRY - 3600)
    users = {settings.username: settings.token(), "watcher": "watcher-secret"}
    tls = BrokerTls(ca.path, server.cert, server.key, require_certificate=False)
    with MqttBroker(kind="mosquitto", tls=tls, users=users) as broker:
        yield (
            broker,
            AzureIotSettings("127.0.0.1", "dev1", KEY, port=broker.port, ca=str(ca.path), clock=lambda: EXPIRY - 3600),
            ca,
        )


def _pub(broker: MqttBroker, ca: TestCA, topic: str, payload: bytes) -> None:
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "--cafile", str(ca.path)]
    args += ["-u", "watcher", "-P", "watcher-secret", "-t", topic, "-q", "1", "-s" if payload else "-n"]
    subprocess.run(args, input=payload or None, check=True)


@pytest.mark.asyncio
async def test_d2c_twin_and_c2d_against_the_broker(
    hub: tuple[MqttBroker, AzureIotSettings, TestCA], tmp_path: Path
) -> None:
    broker, settings, ca = hub
    watch = ("-t", "$iothub/#", "--cafile", str(ca.path), "-u", "watcher", "-P", "watcher-secret")
    sub = Subscriber(broker, "devices/#", extra=watch)
    received: list[C2DMessage] = []
    try:
        with DurableBuffer(tmp_path / "q.db") as buf:
            pub = AzureIotPublisher(settings, buf, on_c2d=received.append, mqtt={"backoff_initial": 0.05})
            async with pub:
                await asyncio.wait_for(pub.link.up.wait(), 20)
                pub.publish("plc1", "tank.level", DataPoint(12.5))
                twin = pub.report("plc1", {"tank.level": DataPoint(12.5)})
                await asyncio.wait_for(pub.forwarder.drained(), 20)
                got = await asyncio.to_thread(sub.wait_for, lambda m: len(m) >= 2)
                await asyncio.to_thread(_pub, broker, ca, f"$iothub/twin/res/204/?$rid={twin.seq}&$version=3", b"")
                bag = "%24.mid=m1&%24.to=%2Fdevices%2Fdev1%2Fmessages%2Fdevicebound&color=blue"
                c2d = f"devices/dev1/messages/devicebound/{bag}"
                await asyncio.to_thread(_pub, broker, ca, c2d, b"open the valve")
                for _ in range(2000):
                    if received and pub.twin_responses:
                        break
                    await asyncio.sleep(0.01)  # a bounded poll for the two deliveries
    finally:
        sub.close()
    d2c = next(m for m in got if m.topic.startswith("devices/dev1/messages/events/"))
    assert parse_property_bag(d2c.topic.split("/events/", 1)[1]) == {
        "$.ct": "application/json",
        "$.ce": "utf-8",
        "device": "plc1",
        "tag": "tank.level",
    }
    assert json.loads(d2c.payload)["value"] == 12.5
    patch = next(m for m in got if m.topic.startswith("$iothub/twin/PATCH/properties/reported/"))
    assert patch.topic == f"$iothub/twin/PATCH/properties/reported/?$rid={twin.seq}"
    assert json.loads(patch.payload) == {"plc1": {"tank.level": 12.5}}, "the patch goes as is, without our stamps"
    assert pub.twin_responses == [(204, {"$rid": str(twin.seq), "$version": "3"})]
    assert received == [
        C2DMessage(b"open the valve", {"$.mid": "m1", "$.to": "/devices/dev1/messages/devicebound", "color": "blue"})
    ]


@pytest.mark.asyncio
async def test_a_wrong_key_is_refused(hub: tuple[MqttBroker, AzureIotSettings, TestCA], tmp_path: Path) -> None:
    _, settings, _ = hub
    import dataclasses

    wrong = dataclasses.replace(settings, key="d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktISE=")
    with DurableBuffer(tmp_path / "q.db") as buf:
        async with AzureIotPublisher(wrong, buf, mqtt={"backoff_initial": 0.05, "timeout": 2.0}) as pub:
            for _ in range(2000):
                if pub.link.state.last_error:
                    break
                await asyncio.sleep(0.01)  # a bounded poll for the refusal
            assert pub.link.state.connects == 0
            assert (
                "authoriz" in (pub.link.state.last_error or "").lower()
                or "not auth" in (pub.link.state.last_error or "").lower()
            )
