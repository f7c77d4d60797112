"""The bridge in-process, on a plant whose clock the test owns: each change reaches every sink (plain MQTT
and Sparkplug B at once), a deadband holds back small changes, and a Sparkplug DCMD reaches the PLC."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bifrost.cloud.bridge import Bridge, load_bridge_config
from bifrost.cloud.sparkplug_payload import DataType
from pytest_bifrost import BifrostPlant
from pytest_bifrost.mqtt import MqttBroker
from simulators.shipped import shipped_scenario

from .conftest import Subscriber


@pytest.mark.asyncio
@pytest.mark.bifrost_scenario("water_tank")
async def test_changes_reach_every_sink_and_dcmd_reaches_the_plc(
    bifrost_plant: BifrostPlant,
    bifrost_mqtt_broker: MqttBroker,
    subscribe: Callable[..., Subscriber],
    spb: type,
    tmp_path: Path,
) -> None:
    plc = bifrost_plant.device("plc1")
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"""
buffer: {{dir: q}}
health_interval: 50ms
devices:
  plc1: {{url: "{plc.url}", tags: "{shipped_scenario("water_tank")}", interval: 50ms, deadband: 0.5,
          only: [valve.open, tank.level, pump.run]}}
sinks:
  json: {{kind: mqtt, url: "{bifrost_mqtt_broker.url}", topic: "j/{{device}}/{{tag}}"}}
  spb: {{kind: sparkplug, url: "{bifrost_mqtt_broker.url}", group: g, node: n}}
"""
    )
    sub = subscribe("j/#")
    spsub = subscribe("spBv1.0/g/DDATA/#")
    bridge = Bridge(*load_bridge_config(config))
    healths: list[dict[str, object]] = []
    task = asyncio.ensure_future(bridge.run(healths.append))
    try:
        node = bridge.sinks["spb"]
        await asyncio.to_thread(sub.wait_for, lambda m: {json.loads(x.payload)["tag"] for x in m} >= {"valve.open"})
        plc.set("valve.open", 51)  # 50 -> 51: a change of 1, beyond the deadband of 0.5
        plc.set("tank.level", 40.2)  # 40.0 -> 40.2: inside the deadband, held back
        await asyncio.to_thread(sub.wait_for, lambda m: any(json.loads(x.payload)["value"] == 51 for x in m))
        await asyncio.to_thread(spsub.wait_for, lambda m: len(m) >= 2)
        await asyncio.wait_for(node.wait_until(lambda: node.stats.births >= 1 and "plc1" in node.connections), 20)
        cmd = spb(timestamp=int(time.time() * 1000))
        cmd.metrics.add(name="valve.open", datatype=int(DataType.UInt16), int_value=77)
        await asyncio.to_thread(
            subprocess.run,
            [
                "mosquitto_pub",
                "-h",
                "127.0.0.1",
                "-p",
                str(bifrost_mqtt_broker.port),
                "-t",
                "spBv1.0/g/DCMD/n/plc1",
                "-s",
            ],
            input=cmd.SerializeToString(),
            check=True,
        )
        await asyncio.wait_for(node.wait_until(lambda: node.stats.writes >= 1), 20)
        await asyncio.to_thread(sub.wait_for, lambda m: any(json.loads(x.payload)["value"] == 77 for x in m))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    values = [(json.loads(x.payload)["tag"], json.loads(x.payload)["value"]) for x in sub.messages]
    assert ("valve.open", 50) in values and ("valve.open", 51) in values and ("valve.open", 77) in values
    assert not any(tag == "tank.level" and value != 40.0 for tag, value in values), "held back by the deadband"
    assert plc.get("valve.open") == 77
    last = healths[-1]
    assert set(last["sinks"]) == {"json", "spb"} and last["devices"]["plc1"]["changes"] >= 4  # type: ignore[index]


@pytest.mark.asyncio
@pytest.mark.bifrost_scenario("water_tank")
async def test_a_lost_device_gets_one_ddeath_and_a_dbirth_when_it_is_back(
    bifrost_plant: BifrostPlant,
    bifrost_mqtt_broker: MqttBroker,
    subscribe: Callable[..., Subscriber],
    spb: type,
    tmp_path: Path,
) -> None:
    plc = bifrost_plant.device("plc1")
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"""
buffer: {{dir: q}}
devices:
  plc1: {{url: "{plc.url}", tags: "{shipped_scenario("water_tank")}", interval: 50ms}}
sinks:
  spb: {{kind: sparkplug, url: "{bifrost_mqtt_broker.url}", group: g, node: n}}
"""
    )
    sub = subscribe("spBv1.0/g/#")
    bridge = Bridge(*load_bridge_config(config))
    task = asyncio.ensure_future(bridge.run())

    def verbs(got: list[object]) -> list[str]:
        return [m.topic.split("/")[2] for m in got]  # type: ignore[attr-defined]

    try:
        await asyncio.to_thread(sub.wait_for, lambda m: "DDATA" in verbs(m))
        # The PLC stops answering: every connection is reset. (Not `refuse`, which closes the listening
        # socket: under pytest -n 2 another worker's free-port probe could take the port meanwhile.)
        with plc.fault("reset"):
            plc.set("valve.open", 60)  # it also changes, so a read after the outage has data
            await asyncio.to_thread(sub.wait_for, lambda m: "DDEATH" in verbs(m))
            for _ in range(1000):  # a bounded poll until a retry has failed too
                if bridge.devices["plc1"].last_error and not bridge.devices["plc1"].connected:
                    break
                await asyncio.sleep(0.02)
        await asyncio.to_thread(sub.wait_for, lambda m: verbs(m).count("DBIRTH") >= 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    seen = verbs(sub.messages)
    assert seen.count("DDEATH") == 1, seen
    death = seen.index("DDEATH")
    assert "DBIRTH" in seen[death:], "born again after the death"
    payloads = [spb.FromString(m.payload) for m in sub.messages if "/DDEATH/" in m.topic or "/DBIRTH/" in m.topic]  # type: ignore[attr-defined]
    assert all(p.HasField("seq") for p in payloads)  # tck-id-payloads-ddeath-seq
