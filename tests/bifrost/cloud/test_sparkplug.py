"""Sparkplug B edge node conformance, keyed to the Sparkplug 3.0 assertion ids (tck-id-...).

One session runs against mosquitto with an independent host: mosquitto_sub records every message, and
Google's protobuf runtime (on the spec's schema, see sparkplug_b.proto) decodes it. Commands (NCMD Rebirth,
DCMD) are encoded by that same runtime and sent with mosquitto_pub.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import bifrost
from bifrost import DataPoint, Quality, Tag, TagMap
from bifrost.cloud.buffer import DurableBuffer
from bifrost.cloud.mqtt import MqttSettings
from bifrost.cloud.sparkplug import REBIRTH, SparkplugNode, metric_type
from bifrost.cloud.sparkplug_payload import DataType
from bifrost.tags import DataType as T
from pytest_bifrost.mqtt import MqttBroker

from .conftest import Received, Subscriber

GROUP, NODE, DEVICE = "plant", "edge1", "plc1"
TAGS = TagMap.of(
    Tag(name="level", address="hr:0", type=T.FLOAT32),
    Tag(name="count", address="hr:2", type=T.INT16),
    Tag(name="total", address="hr:4", type=T.UINT64, writable=False),
    Tag(name="run", address="coil:0", type=T.BOOL),
    Tag(name="temp", address="ir:0", type=T.INT16, scale=0.1),
    Tag(name="label", address="hr:10", type=T.STRING, length=8),
)
DATA_COUNT = 300  # more than 256 messages: seq wraps


def _pub(broker: MqttBroker, topic: str, payload: bytes) -> None:
    binary = shutil.which("mosquitto_pub")
    if binary is None:
        pytest.skip("mosquitto_pub is not installed")
    subprocess.run(
        [binary, "-h", broker.host, "-p", str(broker.port), "-t", topic, "-q", "1", "-s"], input=payload, check=True
    )


def _rebirth_request(spb: type) -> bytes:
    cmd = spb(timestamp=int(time.time() * 1000))
    cmd.metrics.add(name=REBIRTH, datatype=int(DataType.Boolean), boolean_value=True)
    return bytes(cmd.SerializeToString())


@dataclass
class Session:
    messages: list[Received]
    decoded: list[Any]  # protobuf Payload per message
    node: SparkplugNode

    def of(self, verb: str) -> list[tuple[Received, Any]]:
        return [(r, d) for r, d in zip(self.messages, self.decoded, strict=True) if r.topic.split("/")[2] == verb]


@pytest.fixture(scope="module")
def session(spb: type, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    broker = MqttBroker(kind="mosquitto").start()
    sub = Subscriber(broker, "spBv1.0/#")
    buf = DurableBuffer(tmp_path_factory.mktemp("sp") / "q.db")
    settings = MqttSettings.from_url(broker.url, client_id="edge1", backoff_initial=0.05, backoff_max=0.2)
    node = SparkplugNode(settings, buf, group=GROUP, node=NODE, devices={DEVICE: TAGS})

    def births(n: int) -> Callable[[list[Received]], bool]:
        return lambda got: sum("/NBIRTH/" in m.topic for m in got) >= n and sum("/DBIRTH/" in m.topic for m in got) >= n

    def count(verb: str, n: int) -> Callable[[list[Received]], bool]:
        return lambda got: sum(f"/{verb}/" in m.topic for m in got) >= n

    async def run() -> None:
        # Two batches queued before the first connect: they go out after the births, as history.
        node.publish(
            DEVICE, {"level": DataPoint(1.0, Quality.GOOD, 1000.0), "count": DataPoint(-5, Quality.GOOD, 1000.0)}
        )
        node.publish(DEVICE, {"label": DataPoint("hello"), "temp": DataPoint(21.5, Quality.UNCERTAIN)})
        async with node:
            await asyncio.to_thread(sub.wait_for, lambda g: births(1)(g) and count("DDATA", 2)(g))
            for i in range(DATA_COUNT):
                node.publish(DEVICE, {"level": DataPoint(float(i)), "run": DataPoint(i % 2 == 0)})
            await asyncio.to_thread(sub.wait_for, count("DDATA", DATA_COUNT + 2))
            _pub(broker, f"spBv1.0/{GROUP}/NCMD/{NODE}", _rebirth_request(spb))
            _pub(broker, f"spBv1.0/{GROUP}/NCMD/{NODE}", b"\xff\xff not a payload")  # ignored, counted
            await asyncio.to_thread(sub.wait_for, births(2))
            node.publish(DEVICE, {"total": DataPoint(2**64 - 1)})
            await asyncio.to_thread(sub.wait_for, count("DDATA", DATA_COUNT + 3))
        await asyncio.to_thread(sub.wait_for, count("NDEATH", 1))

    try:
        asyncio.run(run())
        sent = [m for m in sub.messages if m.topic.split("/")[2] not in ("NCMD", "DCMD")]  # the edge node's own
        yield Session(sent, [spb.FromString(m.payload) for m in sent], node)  # type: ignore[attr-defined]
    finally:
        sub.close()
        buf.close()
        broker.close()


def _edge_sequence(s: Session) -> list[tuple[str, int]]:
    """(verb, seq) of every message the edge node sent, NDEATH excepted, in order."""
    return [
        (r.topic.split("/")[2], d.seq)
        for r, d in zip(s.messages, s.decoded, strict=True)
        if r.topic.split("/")[2] in ("NBIRTH", "DBIRTH", "NDATA", "DDATA", "DDEATH")
    ]


def _metric(payload: Any, name: str) -> Any:
    return next(m for m in payload.metrics if m.name == name)


# Each check is one assertion of the spec, under its id.
def check_nbirth_seq(s: Session) -> None:
    for _, nbirth in s.of("NBIRTH"):
        assert nbirth.HasField("seq") and nbirth.seq == 0


def check_nbirth_bdseq(s: Session) -> None:
    for _, nbirth in s.of("NBIRTH"):
        bd = _metric(nbirth, "bdSeq")
        assert bd.datatype == DataType.UInt64 and bd.HasField("long_value")


def check_nbirth_bdseq_repeat(s: Session) -> None:
    # Both NBIRTHs (the first and the one after Rebirth) carry the bdSeq of this connection's Will,
    # which is the NDEATH published on stop.
    (_, death), *_ = s.of("NDEATH")
    assert {_metric(b, "bdSeq").long_value for _, b in s.of("NBIRTH")} == {_metric(death, "bdSeq").long_value}


def check_nbirth_rebirth_req(s: Session) -> None:
    for _, nbirth in s.of("NBIRTH"):
        rebirth = _metric(nbirth, REBIRTH)
        assert rebirth.datatype == DataType.Boolean and rebirth.boolean_value is False
        assert not rebirth.HasField("alias")  # rebirth-name-aliases


def check_qos_retain(s: Session) -> None:
    for r, _ in s.of("NBIRTH") + s.of("DBIRTH") + s.of("DDATA"):
        assert (r.qos, r.retain) == (0, False), r.topic


def check_timestamps(s: Session) -> None:
    for _, p in s.of("NBIRTH") + s.of("DBIRTH") + s.of("DDATA") + s.of("NDEATH"):
        assert p.timestamp > 1_600_000_000_000
        for m in p.metrics:
            assert m.HasField("timestamp")  # payloads-name-birth-data-requirement


def check_sequence_increments_and_wraps(s: Session) -> None:
    seqs = _edge_sequence(s)
    for (verb, prev), (verb_next, seq) in itertools.pairwise(seqs):
        expected = 0 if verb_next == "NBIRTH" else (prev + 1) % 256
        assert seq == expected, f"{verb}({prev}) then {verb_next}({seq})"
    assert any(prev == 255 and seq == 0 for (_, prev), (_, seq) in itertools.pairwise(seqs))


def check_ndeath_seq(s: Session) -> None:
    for _, death in s.of("NDEATH"):
        assert not death.HasField("seq")
        assert [m.name for m in death.metrics] == ["bdSeq"]  # topics-ndeath-payload


def check_dbirth_order(s: Session) -> None:
    verbs = [v for v, _ in _edge_sequence(s)]
    for i, verb in enumerate(verbs):
        if verb == "NBIRTH":
            assert verbs[i + 1] == "DBIRTH"


def check_alias_uniqueness(s: Session) -> None:
    _, dbirth = s.of("DBIRTH")[0]
    aliases = [m.alias for m in dbirth.metrics]
    assert len(set(aliases)) == len(aliases) == len(TAGS)


def check_alias_birth_requirement(s: Session) -> None:
    for _, dbirth in s.of("DBIRTH"):
        assert all(m.name and m.HasField("alias") for m in dbirth.metrics)


def check_alias_data_requirement(s: Session) -> None:
    for _, ddata in s.of("DDATA"):
        assert all(m.HasField("alias") and not m.HasField("name") for m in ddata.metrics)


def check_metric_datatype_req(s: Session) -> None:
    _, dbirth = s.of("DBIRTH")[0]
    types = {m.name: m.datatype for m in dbirth.metrics}
    assert types == {name: int(metric_type(TAGS[name])) for name in TAGS}
    assert types["temp"] == DataType.Double and types["total"] == DataType.UInt64 and types["count"] == DataType.Int16


def check_metric_datatype_not_req(s: Session) -> None:
    for _, ddata in s.of("DDATA"):
        assert not any(m.HasField("datatype") for m in ddata.metrics)


def check_dbirth_values(s: Session) -> None:
    # Current value, or is_null with no value (operational-behavior-data-publish-dbirth-values).
    _, first = s.of("DBIRTH")[0]
    by_name = {m.name: m for m in first.metrics}
    assert by_name["total"].is_null and by_name["total"].WhichOneof("value") is None
    assert by_name["label"].string_value == "hello"
    _, second = s.of("DBIRTH")[1]
    assert {m.name: m for m in second.metrics}["level"].float_value == float(DATA_COUNT - 1)


def check_historical(s: Session) -> None:
    ddata = s.of("DDATA")
    assert all(m.is_historical for _, d in ddata[:2] for m in d.metrics), "queued before connect: history"
    assert not any(m.is_historical for _, d in ddata[2:] for m in d.metrics)
    first = ddata[0][1].metrics
    assert [m.int_value for m in first if m.WhichOneof("value") == "int_value"] == [(-5) & 0xFFFFFFFF]


def check_quality_property(s: Session) -> None:
    _, second = s.of("DDATA")[1]
    temp = next(m for m in second.metrics if m.WhichOneof("value") == "double_value")
    keys = list(temp.properties.keys)
    assert keys == ["Quality"] and temp.properties.values[0].int_value == 500  # uncertain -> stale


def check_rebirth(s: Session) -> None:
    assert len(s.of("NBIRTH")) == 2 and s.node.stats.rebirths == 1
    assert s.node.stats.bad_commands == 1, "a malformed NCMD is counted, and the node keeps going"


def check_topics(s: Session) -> None:
    for r in s.messages:
        parts = r.topic.split("/")
        assert parts[:2] == ["spBv1.0", GROUP] and parts[3] == NODE
        assert len(parts) == (5 if parts[2].startswith("D") else 4)


CHECKS: dict[str, Callable[[Session], None]] = {
    "payloads-nbirth-seq": check_nbirth_seq,
    "topics-nbirth-seq-num": check_nbirth_seq,
    "payloads-nbirth-bdseq": check_nbirth_bdseq,
    "payloads-nbirth-bdseq-repeat": check_nbirth_bdseq_repeat,
    "operational-behavior-data-commands-rebirth-action-3": check_nbirth_bdseq_repeat,
    "payloads-nbirth-rebirth-req": check_nbirth_rebirth_req,
    "operational-behavior-data-commands-rebirth-name-aliases": check_nbirth_rebirth_req,
    "payloads-nbirth-qos": check_qos_retain,
    "payloads-nbirth-retain": check_qos_retain,
    "payloads-dbirth-qos": check_qos_retain,
    "payloads-ddata-qos": check_qos_retain,
    "payloads-ddata-retain": check_qos_retain,
    "payloads-nbirth-timestamp": check_timestamps,
    "payloads-ddata-timestamp": check_timestamps,
    "payloads-name-birth-data-requirement": check_timestamps,
    "payloads-sequence-num-incrementing": check_sequence_increments_and_wraps,
    "payloads-ddata-seq-inc": check_sequence_increments_and_wraps,
    "payloads-dbirth-seq-inc": check_sequence_increments_and_wraps,
    "payloads-ndeath-seq": check_ndeath_seq,
    "topics-ndeath-payload": check_ndeath_seq,
    "payloads-dbirth-order": check_dbirth_order,
    "payloads-ddata-order": check_dbirth_order,
    "payloads-alias-uniqueness": check_alias_uniqueness,
    "payloads-alias-birth-requirement": check_alias_birth_requirement,
    "payloads-alias-data-cmd-requirement": check_alias_data_requirement,
    "payloads-metric-datatype-req": check_metric_datatype_req,
    "payloads-metric-datatype-not-req": check_metric_datatype_not_req,
    "operational-behavior-data-publish-dbirth-values": check_dbirth_values,
    "payloads-propertyset-quality-value-value": check_quality_property,
    "operational-behavior-data-commands-rebirth-action-2": check_rebirth,
    "topic-structure-namespace-device-id-associated-message-types": check_topics,
    "topic-structure-namespace-device-id-non-associated-message-types": check_topics,
}


@pytest.mark.parametrize("tck_id", sorted(CHECKS), ids=[f"tck-id-{i}" for i in sorted(CHECKS)])
def test_conformance(session: Session, tck_id: str) -> None:
    CHECKS[tck_id](session)


def test_replayed_data_is_marked_historical(session: Session) -> None:
    check_historical(session)


# -- the Will: a node killed with SIGKILL -----------------------------------------------------------

CHILD = r"""
import asyncio, sys
from bifrost import DataPoint, Tag, TagMap
from bifrost.cloud.buffer import DurableBuffer
from bifrost.cloud.mqtt import MqttSettings
from bifrost.cloud.sparkplug import SparkplugNode
async def main():
    node = SparkplugNode(MqttSettings.from_url(sys.argv[1], client_id="edge-k"), DurableBuffer(sys.argv[2]),
                         group="plant", node="edgek", devices={"d": TagMap.of(Tag(name="x", address="hr:0"))})
    node.publish("d", {"x": DataPoint(1)})
    node.start()
    await asyncio.Event().wait()
asyncio.run(main())
"""


def test_a_killed_node_leaves_its_will_ndeath_with_the_births_bdseq(
    bifrost_mqtt_broker: MqttBroker, subscribe: Callable[..., Subscriber], spb: type, tmp_path: Path
) -> None:
    sub = subscribe("spBv1.0/#")
    args = [sys.executable, "-c", CHILD, bifrost_mqtt_broker.url, str(tmp_path / "q.db")]
    bdseqs = []
    for run in (1, 2):
        child = subprocess.Popen(args)
        try:
            sub.wait_for(lambda got, n=run: sum("/NBIRTH/" in m.topic for m in got) >= n)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        got = sub.wait_for(lambda got, n=run: sum("/NDEATH/" in m.topic for m in got) >= n)
        births = [spb.FromString(m.payload) for m in got if "/NBIRTH/" in m.topic]  # type: ignore[attr-defined]
        deaths = [m for m in got if "/NDEATH/" in m.topic]
        death = spb.FromString(deaths[-1].payload)  # type: ignore[attr-defined]
        assert (deaths[-1].qos, deaths[-1].retain) == (1, False)  # payloads-ndeath-will-message-qos/-retain
        assert _metric(death, "bdSeq").long_value == _metric(births[-1], "bdSeq").long_value  # payloads-ndeath-bdseq
        bdseqs.append(_metric(death, "bdSeq").long_value)
    assert bdseqs == [0, 1], "bdSeq starts at 0 and counts connects across restarts (topics-nbirth-bdseq-increment)"


# -- DCMD: writes go to the PLC, only to writable tags ---------------------------------------------


@pytest.mark.asyncio
async def test_dcmd_writes_writable_tags_through_the_connection(
    bifrost_mqtt_broker: MqttBroker, bifrost_modbus_server: Any, spb: type, tmp_path: Path
) -> None:
    plc = bifrost_modbus_server(
        {
            "setpoint": {"type": "float32", "address": "hr:0", "init": 10.0, "writable": True},
            "locked": {"type": "uint16", "address": "hr:2", "init": 7, "writable": False},
        }
    )
    settings = MqttSettings.from_url(bifrost_mqtt_broker.url, backoff_initial=0.05)
    async with bifrost.connect(plc.url, tags=plc.tags) as conn:
        with DurableBuffer(tmp_path / "q.db") as buf:
            node = SparkplugNode(
                settings, buf, group=GROUP, node=NODE, devices={DEVICE: plc.tags}, connections={DEVICE: conn}
            )
            async with node:
                await asyncio.wait_for(node.link.up.wait(), 20)
                # The subscriptions are made before the births.
                await asyncio.wait_for(node.wait_until(lambda: node.stats.births >= 1), 20)
                cmd = spb()
                cmd.timestamp = int(time.time() * 1000)
                cmd.metrics.add(name="setpoint", datatype=int(DataType.Float), float_value=42.5)
                cmd.metrics.add(alias=node.aliases[(DEVICE, "locked")], int_value=99)
                await asyncio.to_thread(
                    _pub, bifrost_mqtt_broker, f"spBv1.0/{GROUP}/DCMD/{NODE}/{DEVICE}", cmd.SerializeToString()
                )
                await asyncio.wait_for(node.wait_until(lambda: node.stats.writes + node.stats.refused_writes >= 2), 20)
                assert (node.stats.writes, node.stats.refused_writes) == (1, 1)
                assert "not writable" in (node.stats.last_error or "")
        assert (await conn.read("setpoint")).value == 42.5
        assert (await conn.read("locked")).value == 7
