"""The durable queue's cost and what it buys, against aiomqtt publishing QoS 1 directly, in one run on one
mosquitto (Debian's, started here on a free port).

1. Throughput: messages/s published with QoS 1 by aiomqtt directly (pipelined, 200 in flight, as our
   forwarder does) vs through bifrost's DurableBuffer (each message committed to SQLite before `publish`
   returns, then forwarded and acknowledged) - one message per put, and a poll's 100 changes per put.
2. Loss and duplicates: a producer process publishes a numbered stream through the queue while the broker
   is stopped for a while and the producer is killed with SIGKILL once; a persistent QoS 1 subscriber counts
   what arrived. Target: 0 lost.

python bench/bench_cloud.py [--messages N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

from bifrost import DataPoint
from bifrost.cloud.buffer import DurableBuffer
from bifrost.cloud.mqtt import MqttPublisher, MqttSettings
from pytest_bifrost.mqtt import MqttBroker

PAYLOAD = b'{"device":"plc1","tag":"tank.level","value":41.25,"quality":"good","timestamp":1700000000.0}'


async def direct(broker: MqttBroker, n: int, window: int = 200) -> float:
    async with aiomqtt.Client(broker.host, broker.port, max_inflight_messages=1000) as client:
        client.pending_calls_threshold = 10_000
        start = time.perf_counter()
        for first in range(0, n, window):
            await asyncio.gather(
                *(client.publish("bench/direct", PAYLOAD, qos=1) for _ in range(min(window, n - first)))
            )
        return n / (time.perf_counter() - start)


async def durable(broker: MqttBroker, n: int, folder: Path, per_put: int) -> float:
    with DurableBuffer(folder / f"bench-{per_put}.db") as buf:
        pub = MqttPublisher(MqttSettings(broker.host, broker.port), buf, topic="bench/{device}/{tag_path}")
        async with pub:
            await pub.link.up.wait()
            point = DataPoint(41.25, timestamp=1700000000.0)
            batch = {f"tag{i}": point for i in range(per_put)}
            start = time.perf_counter()
            for i in range(0, n, per_put):
                if per_put == 1:
                    pub.publish("plc1", "tank.level", point)
                else:
                    pub.publish_many("plc1", batch)
                if i % 200 == 0:
                    await asyncio.sleep(0)  # let the forwarder run beside the producer, as in a bridge
            await pub.forwarder.drained()
            return n / (time.perf_counter() - start)


PRODUCER = r"""
import asyncio, sys
from bifrost import DataPoint
from bifrost.cloud.buffer import DurableBuffer
from bifrost.cloud.mqtt import MqttPublisher, MqttSettings
async def main(url, path, start, stop):
    pub = MqttPublisher(MqttSettings.from_url(url, client_id="producer", backoff_initial=0.05, backoff_max=0.5),
                        DurableBuffer(path), topic="loss/{tag}")
    async with pub:
        for i in range(start, stop):
            pub.publish("plc1", "seq", DataPoint(i))
            print(i, flush=True)
            await asyncio.sleep(0.002)
        await pub.forwarder.drained()
        print("drained", flush=True)
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


async def loss_run(broker: MqttBroker, folder: Path, total: int) -> dict[str, int]:
    received: list[int] = []
    ids: list[str] = []
    stop = asyncio.Event()

    async def subscriber() -> None:
        while not stop.is_set():
            try:
                async with aiomqtt.Client(broker.host, broker.port, identifier="loss-sub", clean_session=False) as c:
                    await c.subscribe("loss/#", qos=1)
                    async for message in c.messages:
                        body = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                        received.append(body["value"])
                        ids.append(body["id"])
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)  # reconnect after the outage

    sub = asyncio.ensure_future(subscriber())
    await asyncio.sleep(0.3)  # the subscriber's session exists before the stream starts
    path = str(folder / "loss.db")
    printed: set[int] = set()

    def start(first: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", PRODUCER, broker.url, path, str(first), str(total)],
            stdout=subprocess.PIPE,
            text=True,
        )

    async def read_until(proc: subprocess.Popen[str], count: int | None) -> bool:
        assert proc.stdout is not None
        while True:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line:
                return False
            if line.strip() == "drained":
                return True
            printed.add(int(line))
            if count is not None and len(printed) >= count:
                return False

    proc = start(0)
    await read_until(proc, total // 4)
    broker.stop()  # an outage
    await read_until(proc, total // 2)
    os.kill(proc.pid, signal.SIGKILL)  # and a kill -9 while messages wait on disk
    proc.wait()
    proc = start(max(printed) + 1)
    await read_until(proc, 3 * total // 4)
    broker.start()
    await read_until(proc, None)
    proc.wait()
    for _ in range(100):
        if set(received) >= printed:
            break
        await asyncio.sleep(0.1)
    stop.set()
    sub.cancel()
    await asyncio.gather(sub, return_exceptions=True)
    return {
        "published": len(printed),
        "lost": len(printed - set(received)),
        "duplicates": len(ids) - len(set(ids)),
        "received": len(received),
    }


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, MqttBroker(kind="mosquitto") as broker:
        folder = Path(tmp)
        rates: dict[str, list[float]] = {"direct": [], "durable 1/put": [], "durable 100/put": []}
        for _ in range(3):  # interleaved rounds: every row meets the same machine
            rates["direct"].append(await direct(broker, n))
            rates["durable 1/put"].append(await durable(broker, n, folder, 1))
            rates["durable 100/put"].append(await durable(broker, n, folder, 100))
        best = {name: max(values) for name, values in rates.items()}
        print(f"QoS 1 publish, {n} messages, best of 3 (mosquitto {broker.port}):")
        for name, rate in best.items():
            print(f"  {name:<18} {rate:>10,.0f} msg/s   {rate / best['direct']:6.0%} of aiomqtt direct")
        result = await loss_run(broker, folder, total=2000)
        print(
            "outage + kill -9: published {published}, received {received}, lost {lost}, "
            "duplicates {duplicates} (at-least-once; de-duplicated on the message id)".format(**result)
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().messages))
