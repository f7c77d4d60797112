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
        args += ["-i", f"sub-{uuid.uuid4().hex[:8]}", "-d", "-F", "MSG %t %x", *extra]
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
                _, topic, hexed = ([*line.rstrip("\n").split(" ", 2), ""])[:3]
                self._queue.put(Received(topic, bytes.fromhex(hexed)))

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
