"""AWS IoT Core: provisioned with moto (the control plane, in-process), then connected with the device
certificate to mosquitto configured as the data plane (TLS, client certificates required)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bifrost import DataPoint
from bifrost.cloud.aws import (
    AwsIotPublisher,
    AwsIotSettings,
    check_topic,
    policy_document,
    provision_thing,
    shadow_topic,
)
from bifrost.cloud.buffer import DurableBuffer
from bifrost.errors import ConfigError
from pytest_bifrost.mqtt import BrokerTls, MqttBroker, mosquitto_path

from .certs import TestCA
from .conftest import Subscriber

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")
REGION, ACCOUNT, THING = "us-east-1", "123456789012", "pump-station-7"


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


@pytest.fixture
def tls_broker(ca: TestCA) -> Iterator[MqttBroker]:
    server = ca.issue("broker", server=True)
    with MqttBroker(kind="mosquitto", tls=BrokerTls(ca.path, server.cert, server.key)) as broker:
        yield broker


def test_topics() -> None:
    assert shadow_topic(THING) == f"$aws/things/{THING}/shadow/update"
    assert shadow_topic(THING, "get/accepted", shadow="cfg") == f"$aws/things/{THING}/shadow/name/cfg/get/accepted"
    check_topic("dt/bifrost/t/plc1/tank/level")
    check_topic("$aws/rules/ingest/a/b/c/d/e/f/g/h")  # the Basic Ingest prefix does not count
    with pytest.raises(ConfigError, match="at most 7"):
        check_topic("a/b/c/d/e/f/g/h/i")
    with pytest.raises(ConfigError, match="reserved"):
        check_topic("$SYS/broker")
    with pytest.raises(ConfigError, match="256 bytes"):
        check_topic("x" * 257)


def test_policy_is_least_privilege() -> None:
    doc = policy_document(THING, region=REGION, account=ACCOUNT)
    connect = next(s for s in doc["Statement"] if s["Action"] == "iot:Connect")
    assert connect["Resource"] == f"arn:aws:iot:{REGION}:{ACCOUNT}:client/{THING}"
    assert all("*" not in s["Action"] for s in doc["Statement"])


def test_provisioning_with_moto(ca: TestCA) -> None:
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    device = ca.issue(THING)
    with moto.mock_aws():
        iot = boto3.client("iot", region_name=REGION)
        done = provision_thing(iot, THING, device.pem, ca_pem=ca.pem, region=REGION, account=ACCOUNT)
        assert done.endpoint.endswith(f"-ats.iot.{REGION}.amazonaws.com")
        assert iot.list_thing_principals(thingName=THING)["principals"] == [done.certificate_arn]
        assert [p["policyName"] for p in iot.list_attached_policies(target=done.certificate_arn)["policies"]] == [
            done.policy_name
        ]
        described = iot.describe_certificate(certificateId=done.certificate_id)["certificateDescription"]
        assert described["status"] == "ACTIVE" and described["certificatePem"].strip() == device.pem.strip()


@pytest.mark.asyncio
async def test_device_certificate_connects_publishes_telemetry_and_shadow(
    tls_broker: MqttBroker, ca: TestCA, tmp_path: Path
) -> None:
    device = ca.issue(THING)
    watcher = ca.issue("watcher")
    # "#" does not match topics that start with $ (MQTT 4.7.2), so the shadow topics are asked for too.
    tls_args = ("-t", "$aws/#", "--cafile", str(ca.path), "--cert", str(watcher.cert), "--key", str(watcher.key))
    sub = Subscriber(tls_broker, "#", extra=tls_args)
    try:
        settings = AwsIotSettings(
            endpoint="127.0.0.1", thing=THING, cert=device.cert, key=device.key, ca=ca.path, port=tls_broker.port
        )
        with DurableBuffer(tmp_path / "q.db") as buf:
            async with AwsIotPublisher(settings, buf, mqtt={"backoff_initial": 0.05}) as pub:
                await asyncio.wait_for(pub.link.up.wait(), 20)
                pub.publish("plc1", "tank.level", DataPoint(42.0))
                pub.report("plc1", {"tank.level": DataPoint(42.0), "pump.run": DataPoint(True)})
                await asyncio.wait_for(pub.forwarder.drained(), 20)
        got = await asyncio.to_thread(sub.wait_for, lambda m: len(m) >= 2)
    finally:
        sub.close()
    telemetry, update = got[0], got[1]
    assert telemetry.topic == f"dt/bifrost/{THING}/plc1/tank/level"
    assert json.loads(telemetry.payload)["value"] == 42.0
    assert update.topic == f"$aws/things/{THING}/shadow/update"
    doc = json.loads(update.payload)
    assert doc["state"] == {"reported": {"plc1": {"tank.level": 42.0, "pump.run": True}}}
    assert doc["clientToken"].endswith(":2")
    assert f"as {THING}" in tls_broker.log(), "the client id is the thing name"


@pytest.mark.asyncio
async def test_without_a_client_certificate_the_broker_refuses(
    tls_broker: MqttBroker, ca: TestCA, tmp_path: Path
) -> None:
    from bifrost.cloud.mqtt import MqttLink, MqttSettings, MqttTls

    link = MqttLink(
        MqttSettings("127.0.0.1", tls_broker.port, tls=MqttTls(ca=ca.path), backoff_initial=0.05, timeout=1.0)
    )

    async def never(_: object) -> None:
        raise AssertionError("connected without a certificate")

    task = asyncio.ensure_future(link.run(never))
    try:
        for _ in range(2000):
            if link.state.last_error:
                break
            await asyncio.sleep(0.01)  # a bounded poll for the first failed attempt
        assert link.state.last_error and not link.state.connected
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
