"""An independent MQTT subscriber for the cloud tests: mosquitto_sub (libmosquitto, not paho), printing
each message's topic and hex payload; a persistent session at QoS 1 so that it misses nothing across a
broker restart."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pytest_bifrost.mqtt import MqttBroker


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


class Subscriber:
    def __init__(self, broker: MqttBroker, topic: str, *, extra: tuple[str, ...] = ()) -> None:
        binary = shutil.which("mosquitto_sub")
        if binary is None:
            pytest.skip("mosquitto_sub (package mosquitto-clients) is not installed")
        self.messages: list[Received] = []
        self._queue: queue.Queue[Received] = queue.Queue()
        self._ready = threading.Event()
        # stdbuf: line-buffered output through the pipe, so each message arrives as it is printed.
        args = [
            *(["stdbuf", "-oL"] if shutil.which("stdbuf") else []),
            binary,
            "-h",
            broker.host,
            "-p",
            str(broker.port),
            "-t",
            topic,
            "-q",
            "1",
            "-c",
        ]
        args += ["-i", f"sub-{uuid.uuid4().hex[:8]}", "-d", "-F", "MSG %q %r %t %x", *extra]
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(10):
            self.close()
            raise RuntimeError("mosquitto_sub did not subscribe within 10 s")

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if "SUBACK" in line:
                self._ready.set()
            elif line.startswith("MSG "):
                _, qos, retain, topic, *hexed = line.rstrip("\n").split(" ", 4)
                payload = bytes.fromhex(hexed[0] if hexed else "")
                self._queue.put(Received(topic, payload, int(qos), retain == "1"))

    def wait_for(self, done: Callable[[list[Received]], bool], timeout: float = 20.0) -> list[Received]:
        """Collect messages until `done(messages)` holds; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not done(self.messages):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; received {len(self.messages)}: {self.messages[-5:]}")
            try:
                self.messages.append(self._queue.get(timeout=min(left, 0.5)))
            except queue.Empty:
                continue
        return self.messages

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(5)


@pytest.fixture
def subscribe(bifrost_mqtt_broker: MqttBroker) -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def start(topic: str = "#", broker: MqttBroker | None = None, extra: tuple[str, ...] = ()) -> Subscriber:
        sub = Subscriber(broker or bifrost_mqtt_broker, topic, extra=extra)
        made.append(sub)
        return sub

    yield start
    for sub in made:
        sub.close()


@pytest.fixture(scope="session")
def spb(tmp_path_factory: pytest.TempPathFactory) -> type:
    """The independent Sparkplug decoder: sparkplug_b.proto (typed from the spec) compiled by protoc from
    grpcio-tools, its messages built by Google's protobuf runtime."""
    import importlib.resources
    from pathlib import Path

    protoc = pytest.importorskip("grpc_tools.protoc")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    out = tmp_path_factory.mktemp("spb") / "sparkplug_b.desc"
    here = Path(__file__).parent
    include = str(importlib.resources.files("grpc_tools") / "_proto")
    args = ["protoc", f"-I{here}", f"-I{include}", f"--descriptor_set_out={out}", "sparkplug_b.proto"]
    assert protoc.main(args) == 0, "protoc failed on sparkplug_b.proto"
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    payload: type = message_factory.GetMessageClass(pool.FindMessageTypeByName("test.sparkplug_b.Payload"))
    return payload
