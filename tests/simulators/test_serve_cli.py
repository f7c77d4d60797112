"""`bifrost-sim serve` as a user runs it: a subprocess, its one JSON line, a real client, SIGTERM."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bifrost.tags import DataType
from bifrost.values import WireFormat

SERVE = [sys.executable, "-c", "from simulators.cli import main; main()", "serve"]
DEADLINE = 20.0


class Served:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([*SERVE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self._buffer = b""

    def line(self) -> str:
        """The next line of output, within the deadline (read unbuffered, so select() sees all of it)."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + DEADLINE
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, "serve printed nothing in time"
            chunk = os.read(fd, 4096)
            assert chunk, "serve ended before printing a line"
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode() + "\n"

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str, str]:
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=DEADLINE)
        return self.process.returncode, (self._buffer + out).decode(), err.decode()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for process in started:
        process.kill()


def test_serve_json_a_pymodbus_client_sees_the_plant_react(served: list[Served]) -> None:
    from pymodbus.client import ModbusTcpClient

    server = Served("--json", "--any-port", "--clock-speed", "100")
    served.append(server)
    announced = json.loads(server.line())
    assert set(announced["devices"]) == {"plc1", "hmi", "cpu1"}  # one plant over Modbus, OPC UA and S7
    assert announced["devices"]["cpu1"]["protocol"] == "s7"
    device = announced["devices"]["plc1"]
    assert device["protocol"] == "modbus"
    url = device["url"]
    assert url.startswith("modbus://127.0.0.1:") and url.endswith("?unit=1")
    port = int(url.split(":")[2].split("?")[0])
    level = WireFormat(DataType.FLOAT32)

    with ModbusTcpClient("127.0.0.1", port=port) as client:

        def tank_level() -> float:
            response = client.read_holding_registers(0, count=2, device_id=1)
            assert not response.isError(), response
            value = level.decode(response.registers)
            assert isinstance(value, float)
            return value

        start = tank_level()
        assert 0.0 <= start <= 100.0
        assert not client.write_coil(0, True, device_id=1).isError()
        # The plant reacts on its own time: read until the level rises, within a deadline.
        deadline = time.monotonic() + DEADLINE
        rising = start
        while rising <= start and time.monotonic() < deadline:
            rising = tank_level()
        assert rising > start, f"the tank level stayed at {start} with the pump on"
        assert client.read_coils(0, count=1, device_id=1).bits[0] is True
    code, out, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert out == "", "--json prints exactly one line"
    assert "Traceback" not in err


def test_serve_prints_a_table_and_stops_on_ctrl_c(served: list[Served]) -> None:
    server = Served("water_tank", "--any-port", "--host", "127.0.0.1")
    served.append(server)
    lines = ""
    while "modbus://127.0.0.1:" not in lines:
        lines += server.line()
    assert "plc1" in lines
    code, _, err = server.stop(signal.SIGINT)
    assert code == 0, err
    assert "Traceback" not in err


def test_serve_a_scenario_file(served: list[Served], tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(
        "scenario: tiny\ntags:\n  a: {type: uint16, init: 5}\n"
        "devices:\n  d1: {protocol: modbus, listen: '127.0.0.1:0', unit: 4, map: {a: hr:0}}\n"
    )
    server = Served(str(scenario), "--json")
    served.append(server)
    url = json.loads(server.line())["devices"]["d1"]["url"]
    assert url.endswith("?unit=4")
    assert server.stop()[0] == 0


def test_serve_problems_exit_1_or_2_without_a_traceback(tmp_path: Path) -> None:
    missing = subprocess.run([*SERVE, "no_such_plant"], capture_output=True, text=True, timeout=DEADLINE)
    assert missing.returncode == 2
    assert "no such file, nor a shipped scenario" in missing.stderr and "water_tank" in missing.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text("scenario: bad\ntags:\n  a: {type: uint17}\ndevices:\n  d1: {protocol: modbus, map: {b: hr:0}}\n")
    invalid = subprocess.run([*SERVE, str(bad)], capture_output=True, text=True, timeout=DEADLINE)
    assert invalid.returncode == 1
    assert f"{bad}:3:" in invalid.stderr and f"{bad}:5:" in invalid.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = tmp_path / "busy.yaml"
        busy.write_text(
            f"scenario: busy\ntags:\n  a: {{type: uint16}}\n"
            f"devices:\n  d1: {{protocol: modbus, listen: '127.0.0.1:{port}', map: {{a: hr:0}}}}\n"
        )
        in_use = subprocess.run([*SERVE, str(busy), "--json"], capture_output=True, text=True, timeout=DEADLINE)
    assert in_use.returncode == 1
    assert f"d1: cannot listen on 127.0.0.1:{port}: the address is already in use" in in_use.stderr
    assert in_use.stdout == ""
    too_fast = subprocess.run([*SERVE, "--clock-speed", "1e12"], capture_output=True, text=True, timeout=DEADLINE)
    assert too_fast.returncode == 2
    assert "--clock-speed: clock speed 1e+12 is too fast" in too_fast.stderr and "at most 100" in too_fast.stderr
    for result in (missing, invalid, in_use, too_fast):
        assert "Traceback" not in result.stderr
