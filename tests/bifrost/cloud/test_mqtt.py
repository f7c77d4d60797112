"""The MQTT publisher against a real broker (mosquitto), read back by an independent subscriber."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from bifrost import DataPoint, Quality
from bifrost.cloud.buffer import DurableBuffer
from bifrost.cloud.mqtt import (
    MqttPublisher,
    MqttSettings,
    check_topic_template,
    point_json,
    render_topic,
)
from bifrost.errors import ConfigError
from pytest_bifrost.mqtt import MqttBroker

from .conftest import Subscriber


def _settings(broker: MqttBroker, **kwargs: object) -> MqttSettings:
    return MqttSettings.from_url(broker.url, backoff_initial=0.05, backoff_max=0.2, **kwargs)  # type: ignore[arg-type]


def _bodies(sub: Subscriber) -> list[dict[str, object]]:
    return [json.loads(m.payload) for m in sub.messages]


def test_topic_templates() -> None:
    assert render_topic("plant/{device}/{tag_path}", "plc1", "tank.level") == "plant/plc1/tank/level"
    assert render_topic("{device}.{tag}", "plc1", "tank.level") == "plc1.tank.level"
    with pytest.raises(ConfigError, match=r"unknown field \{site\}"):
        check_topic_template("{site}/{tag}")
    with pytest.raises(ConfigError, match="wildcards"):
        check_topic_template("plant/#")


def test_point_json_carries_value_quality_and_timestamps() -> None:
    body = json.loads(point_json("plc1", "t", DataPoint(1.5, Quality.UNCERTAIN, 1700000000.25)))
    assert body == {
        "device": "plc1",
        "tag": "t",
        "value": 1.5,
        "quality": "uncertain",
        "timestamp": 1700000000.25,
        "time": "2023-11-14T22:13:20.250000+00:00",
    }


def test_settings_from_url() -> None:
    s = MqttSettings.from_url("mqtts://user:p%40ss@broker.example:8884")
    assert (s.host, s.port, s.username, s.password, s.tls is not None) == ("broker.example", 8884, "user", "p@ss", True)
    assert MqttSettings.from_url("mqtt://h").port == 1883
    with pytest.raises(ConfigError, match="mqtt://"):
        MqttSettings.from_url("http://h")


def test_backoff_grows_is_capped_and_jittered() -> None:
    s = MqttSettings("h", backoff_initial=1, backoff_max=8, jitter=0.5)
    rng = random.Random(1)
    delays = [s.backoff(n, rng) for n in range(8)]
    assert all(0.5 * min(8, 2**n) <= d <= min(8, 2**n) for n, d in enumerate(delays))
    assert len({round(d, 6) for d in delays[4:]}) > 1, "jitter spreads the capped delays"


@pytest.mark.asyncio
async def test_publishes_in_order_with_ids_and_retains_last(
    bifrost_mqtt_broker: MqttBroker, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscribe("plant/#")
    with DurableBuffer(tmp_path / "q.db") as buf:
        async with MqttPublisher(
            _settings(bifrost_mqtt_broker), buf, topic="plant/{device}/{tag_path}", retain=True
        ) as pub:
            await asyncio.wait_for(pub.link.up.wait(), 20)
            for i in range(50):
                pub.publish("plc1", "tank.level", DataPoint(float(i), Quality.GOOD, 1700000000.0 + i))
            await asyncio.wait_for(pub.forwarder.drained(), 20)
            assert len(buf) == 0 and pub.health()["sent"] == 50
    got = await asyncio.to_thread(sub.wait_for, lambda m: len(m) >= 50)
    assert {m.topic for m in got} == {"plant/plc1/tank/level"}
    bodies = _bodies(sub)
    assert [b["value"] for b in bodies] == [float(i) for i in range(50)]
    assert len({b["id"] for b in bodies}) == 50 and not any(b["historical"] for b in bodies)
    # A late subscriber gets the retained last value.
    late = subscribe("plant/#")
    first = await asyncio.to_thread(late.wait_for, lambda m: len(m) >= 1)
    assert json.loads(first[0].payload)["value"] == 49.0


@pytest.mark.asyncio
async def test_qos0_publishing(
    bifrost_mqtt_broker: MqttBroker, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscribe("q0/#")
    with DurableBuffer(tmp_path / "q.db") as buf:
        async with MqttPublisher(_settings(bifrost_mqtt_broker), buf, topic="q0/{tag}", qos=0) as pub:
            pub.publish_many("plc1", {"a": DataPoint(1), "b": DataPoint(2)})
            await asyncio.wait_for(pub.forwarder.drained(), 20)
    got = await asyncio.to_thread(sub.wait_for, lambda m: len(m) >= 2)
    assert [m.topic for m in got] == ["q0/a", "q0/b"]


@pytest.mark.asyncio
async def test_outage_queues_then_replays_marked_historical(
    bifrost_mqtt_broker: MqttBroker, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscribe("o/#")
    with DurableBuffer(tmp_path / "q.db") as buf:
        async with MqttPublisher(_settings(bifrost_mqtt_broker), buf, topic="o/{tag}") as pub:
            await asyncio.wait_for(pub.link.up.wait(), 20)
            pub.publish("plc1", "x", DataPoint(0))
            await asyncio.wait_for(pub.forwarder.drained(), 20)
            bifrost_mqtt_broker.stop()
            for i in range(1, 21):
                pub.publish("plc1", "x", DataPoint(i))
            await asyncio.wait_for(pub.link.down.wait(), 20)
            assert len(buf) == 20  # on disk while the broker is down
            assert pub.health()["last_error"]
            bifrost_mqtt_broker.start()
            await asyncio.wait_for(pub.forwarder.drained(), 30)
            assert pub.link.state.connects >= 2
    await asyncio.to_thread(sub.wait_for, lambda m: {json.loads(x.payload)["value"] for x in m} >= set(range(21)))
    bodies = _bodies(sub)
    seen = {}
    for b in bodies:
        seen.setdefault(b["id"], b)  # de-duplicate on the message id
    values = [b["value"] for b in seen.values()]
    assert values == list(range(21)), "nothing lost, order kept"
    assert all(b["historical"] for b in seen.values() if b["value"] >= 1)
    assert not seen[next(iter(seen))]["historical"]


def test_heavy_dependencies_load_only_when_used_and_a_missing_extra_is_named() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import bifrost.cloud.aws, bifrost.cloud.azure, bifrost.cloud.bridge\n"
        "import bifrost.cloud.mqtt, bifrost.cloud.sparkplug\n"
        "assert 'aiomqtt' not in sys.modules and 'boto3' not in sys.modules, sorted(sys.modules)\n"
        "sys.modules['aiomqtt'] = None  # as if the extra were not installed\n"
        "from bifrost.cloud.mqtt import MqttLink, MqttSettings\n"
        "try:\n"
        "    MqttLink(MqttSettings('127.0.0.1')).client()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "bifrost[cloud]"' in out
