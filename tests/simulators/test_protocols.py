"""The protocol front-end registry: a protocol added by registering alone, and a core that names none.

The toy protocol below is a line protocol (`GET tag` / `SET tag value`) served by a front-end written
in this file: it is validated by the scenario loader, served by SimHost, faulted by the same hooks and
logged in the same traffic log as Modbus, with no edit to the core.
"""

from __future__ import annotations

import ast
import asyncio
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from bifrost.errors import ConfigError
from simulators import SimHost, load_scenario, protocols
from simulators.hooks import Described, FaultHooks, ListenerInfo
from simulators.protocols import DeviceAbout, DeviceSetup, ListenerGate, Sleep
from simulators.scenario import DeviceModel, Scenario
from simulators.traffic import Exchange

ROOT = Path(__file__).resolve().parents[2]
CORE = ["scenario.py", "plant.py", "host.py", "hooks.py", "traffic.py", "protocols.py", "clock.py", "behaviours.py"]


class ToyDevice(DeviceModel):
    protocol: Literal["toy"]
    greeting: str = "hello"


class ToyCodec:
    def function(self, request: Any) -> int:
        return 1 if str(request).startswith("GET") else 2

    def refused(self, response: Any) -> bool:
        return str(response).startswith("ERR")

    def describe_request(self, request: Any) -> str:
        return str(request)

    def describe_response(self, response: Any) -> str:
        return str(response)


TOY = ToyCodec()


class ToyServer:
    def __init__(self, setups: Sequence[DeviceSetup], hooks: FaultHooks) -> None:
        self.setups = {setup.name: setup for setup in setups}
        self.hooks = hooks
        self._sockets: dict[str, socket.socket] = {}
        self._servers: list[asyncio.Server] = []
        self._writers: dict[str, set[asyncio.StreamWriter]] = {name: set() for name in self.setups}

    def about(self, device: str) -> DeviceAbout:
        return DeviceAbout(transport="tcp")

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        for name, setup in self.setups.items():
            sock = socket.create_server((setup.host, setup.port))
            self._sockets[name] = sock
            started = loop.create_task(asyncio.start_server(self._client(name), sock=sock))
            started.add_done_callback(lambda task: self._servers.append(task.result()))

    def _client(self, name: str) -> Any:
        setup = self.setups[name]

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers[name].add(writer)
            writer.write(f"{setup.spec.greeting}\n".encode())
            try:
                while line := (await reader.readline()).decode().strip():
                    verb, tag, *rest = line.split()
                    action = self.hooks.on_request(name, Described(function=1 if verb == "GET" else 2, nodes=(tag,)))
                    if action is not None and action.exception is not None:
                        answer = f"ERR {action.exception}"
                    elif verb == "GET":
                        answer = str(setup.plant.get(tag))
                    else:
                        setup.plant.set(tag, float(rest[0]))
                        answer = "OK"
                    now = setup.plant.clock.now()
                    setup.log.record(Exchange(now, time.time(), name, "toy", None, None, line, answer, codec=TOY))
                    writer.write(f"{answer}\n".encode())
            finally:
                self._writers[name].discard(writer)
                writer.close()

        return serve

    def url(self, device: str) -> str:
        host, port = self._sockets[device].getsockname()[:2]
        return f"toy://{host}:{port}"

    @property
    def listeners(self) -> Sequence[ListenerInfo]:
        return [ListenerInfo("toy", "tcp", self.url(name)[6:], (name,)) for name in self._sockets]

    def disconnect(self, device: str) -> int:
        writers = list(self._writers[device])
        for writer in writers:
            writer.close()
        return len(writers)

    def close(self) -> list[asyncio.Task[None]]:
        for server in self._servers:
            server.close()
        for sock in self._sockets.values():
            sock.close()
        return []

    def changed(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def gates(self, loop: asyncio.AbstractEventLoop) -> Sequence[ListenerGate]:
        return []


class ToyFrontend:
    name = "toy"
    device_model = ToyDevice

    def create(self, devices: Sequence[DeviceSetup], *, hooks: FaultHooks, sleep: Sleep) -> ToyServer:
        return ToyServer(devices, hooks)

    def default_listen(self) -> str:
        return "127.0.0.1:0"


SCENARIO = """\
scenario: toy-plant
tags:
  level: {type: float64, init: 4.5, writable: true}
devices:
  t1:
    protocol: toy
    greeting: hi there
    map: {level: anything}
"""


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(protocols._registered, "toy", ToyFrontend())


def _toy_scenario(text: str = SCENARIO) -> Scenario:
    return load_scenario(Path("toy.yaml"), text=text)


def test_a_registered_protocol_is_validated_by_its_own_model(toy: None) -> None:
    scenario = _toy_scenario()
    device = scenario.devices["t1"]
    assert isinstance(device, ToyDevice) and device.greeting == "hi there"
    with pytest.raises(ConfigError) as caught:
        _toy_scenario(SCENARIO.replace("greeting:", "greting:"))
    assert caught.value.problems == [
        "toy.yaml:7:5: devices.t1.greting: unknown key; did you mean 'greeting'? expected one of: protocol, listen, "
        "map, greeting (got 'greting')"
    ]


def test_an_unknown_protocol_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        _toy_scenario(SCENARIO.replace("protocol: toy", "protocol: modbis"))
    assert "toy.yaml:6:5: devices.t1.protocol: unknown protocol 'modbis'; did you mean 'modbus'?" in str(caught.value)


def test_a_registered_protocol_is_served_faulted_and_logged_by_the_host(toy: None) -> None:
    with SimHost(_toy_scenario(), clock="virtual", any_port=True) as host:
        device = host.devices["t1"]
        assert device.protocol == "toy" and device.url.startswith("toy://127.0.0.1:")
        host_name, port = device.url[6:].rsplit(":", 1)
        with socket.create_connection((host_name, int(port)), timeout=5) as sock, sock.makefile("rw") as wire:
            assert wire.readline() == "hi there\n"
            wire.write("GET level\n")
            wire.flush()
            assert wire.readline() == "4.5\n"
            wire.write("SET level 7.25\n")
            wire.flush()
            assert wire.readline() == "OK\n"
            assert host.plant.get("level") == 7.25
            with host.inject_fault("t1", "exception", code=3, match={"node": "level"}) as fault:
                wire.write("GET level\n")
                wire.flush()
                assert wire.readline() == "ERR 3\n"
                assert fault.hits == 1
        assert device.log.count(function=2) == 1
        assert [exchange.refused for exchange in device.log] == [False, False, True]
        assert "GET level -> ERR 3" in device.log.format()


def test_frame_faults_are_refused_where_the_front_end_gives_no_framer(toy: None) -> None:
    # The toy's listeners carry no framer: its bytes are plain chunks, so faults on whole frames cannot act.
    text = SCENARIO + "events:\n  - at: 1s\n    fault: {device: t1, kind: drop}\n"
    with pytest.raises(ConfigError, match=r"events\[0\]: fault drop on device t1: drop acts on whole frames"):
        SimHost(_toy_scenario(text), clock="virtual", any_port=True).start()
    with SimHost(_toy_scenario(), clock="virtual", any_port=True) as host:
        with pytest.raises(ConfigError, match="fault corrupt on device t1: corrupt acts on whole frames"):
            host.inject_fault("t1", "corrupt")
        with pytest.raises(ConfigError, match="latency with a match acts on whole frames"):
            host.inject_fault("t1", "latency", delay="1s", match={"function": 1})
        host.inject_fault("t1", "latency", delay="1s").clear()  # a fault on the byte stream needs no frames


def test_a_protocol_without_a_front_end_here_is_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    # A built-in protocol whose package is not installed (as a front-end not written yet).
    monkeypatch.setitem(protocols.BUILTIN, "ghost", "simulators.ghost")
    text = SCENARIO.replace("protocol: toy\n    greeting: hi there\n", "protocol: ghost\n    any: key\n")
    with SimHost(_toy_scenario(text), clock="virtual", any_port=True) as host:
        assert host.skipped == {"t1": "no ghost simulator yet"}
        assert host.devices == {}


FAULTS = sorted(f"faults/{path.name}" for path in (ROOT / "simulators" / "faults").glob("*.py"))


def test_the_fault_core_is_checked_whole() -> None:
    assert "faults/frames.py" in FAULTS and "faults/lanes.py" in FAULTS and len(FAULTS) >= 9


@pytest.mark.parametrize("module", CORE + FAULTS)
def test_the_core_imports_no_protocol(module: str) -> None:
    tree = ast.parse((ROOT / "simulators" / module).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)] + [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ]
    protocol_modules = [name for name in imported if any(p in name.split(".") for p in ("modbus", "opcua", "s7"))]
    assert protocol_modules == [], f"simulators/{module} imports {protocol_modules}"
