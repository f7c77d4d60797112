"""How a new user meets Bifrost: a folder with one scenario file and one test file.

It passes `pytest -p pytest_bifrost` on the simulated plant; the same test file passes with
`--bifrost-target=real` against a separately started `bifrost-sim serve`, named in a devices file,
with its sim-only tests skipped saying why.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SCENARIO = """\
scenario: my-tank
description: A tank level, an alarm on it, and a setpoint the controller writes.
tags:
  level:    {type: float32, unit: "%", init: 40.0}
  alarm:    {type: bool}
  setpoint: {type: uint16, writable: true, init: 50}
devices:
  plc1:
    protocol: modbus
    listen: 127.0.0.1:0
    unit: 1
    map:
      level: hr:0
      setpoint: hr:2
      alarm: di:0
events:
  - when: "level > 90"
    set: {alarm: true}
"""

TESTS = """\
import asyncio

import pytest

import bifrost

pytestmark = pytest.mark.bifrost_scenario("my_tank.yaml")


async def exchange(device, setpoint):
    async with bifrost.connect(device.url, tags=device.tags) as plc:
        await plc.write("setpoint", setpoint)
        points = await plc.read_many(["level", "setpoint", "alarm"])
        return {name: point.value for name, point in points.items()}


def test_controller_writes_its_setpoint(bifrost_plant):
    values = asyncio.run(exchange(bifrost_plant.device("plc1"), 72))
    assert values == {"level": 40.0, "setpoint": 72, "alarm": False}


@pytest.mark.bifrost_sim_only(reason="fills the tank behind the PLC's back")
def test_alarm_when_the_tank_is_nearly_full(bifrost_plant):
    plc1 = bifrost_plant.device("plc1")
    bifrost_plant.set("level", 95.0)
    bifrost_plant.clock.advance(1)
    assert asyncio.run(exchange(plc1, 10))["alarm"] is True
    assert plc1.log.writes("setpoint") == [10]
    plc1.log.assert_no_errors()
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "my_tank.yaml").write_text(SCENARIO)
    (pytester.path / "test_my_tank.py").write_text(TESTS)
    return pytester


def _pytest(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    """`pytest -p pytest_bifrost ...` in the project folder, exactly as the user types it."""
    return project.run(sys.executable, "-m", "pytest", "-p", "pytest_bifrost", "-rs", *args, timeout=120)


def test_passes_on_the_simulated_plant(project: pytest.Pytester) -> None:
    _pytest(project).assert_outcomes(passed=2)


def _device_urls(announcement: dict[str, Any]) -> dict[str, str]:
    """Device name -> URL from `bifrost-sim serve --json`'s line: {"devices": {name: {"url": ...}}}."""
    return {name: device["url"] for name, device in announcement["devices"].items()}


@pytest.fixture
def served(project: pytest.Pytester) -> Iterator[dict[str, str]]:
    """`bifrost-sim serve --json --any-port my_tank.yaml` in its own process, as a stand-in rig."""
    # The console script beside this interpreter first (a virtualenv need not be on PATH).
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    executable = shutil.which("bifrost-sim", path=search)
    assert executable is not None, "the bifrost-sim command is not installed"
    process = subprocess.Popen(
        [executable, "serve", "--json", "--any-port", str(project.path / "my_tank.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:  # wait for the line, not forever
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=30)
        line = process.stdout.readline() if ready else ""
        if not line:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"bifrost-sim serve announced nothing (exit {process.returncode}):\n{err}")
        yield _device_urls(json.loads(line))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_same_file_passes_against_a_served_plant(project: pytest.Pytester, served: dict[str, str]) -> None:
    devices = project.path / "devices.yaml"
    devices.write_text("".join(f"{name}: {url}\n" for name, url in served.items()))
    result = _pytest(project, "--bifrost-target=real", f"--bifrost-devices={devices}")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED * sim-only (fills the tank behind the PLC's back); --bifrost-target=real talks to hardware"]
    )
