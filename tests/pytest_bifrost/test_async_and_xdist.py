"""The plugin under pytest-asyncio (strict and auto mode) and under pytest-xdist (-n 2).

SimHost runs its devices on a loop thread of its own, so a test's event loop (pytest-asyncio's) and
the simulator's never meet; under xdist each worker starts its own hosts on ports the OS picks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ASYNC_TESTS = """
import pytest
import pytest_asyncio

import bifrost

pytestmark = pytest.mark.bifrost_scenario("plant.yaml")


@pytest_asyncio.fixture
async def plc(bifrost_plant):
    device = bifrost_plant.device("plc1")
    async with bifrost.connect(device.url, tags=device.tags) as connection:
        yield connection


{mark}
async def test_read_and_write(plc, bifrost_plant):
    assert (await plc.read("level")).value == 12.5
    await plc.write("setpoint", 64)
    assert bifrost_plant.get("setpoint") == 64
    assert bifrost_plant.device("plc1").log.writes("setpoint") == [64]


{mark}
async def test_time_and_values_from_an_async_test(plc, bifrost_plant):
    assert (await plc.read("setpoint")).value == 50  # reset since the last test
    bifrost_plant.clock.advance(4)
    bifrost_plant.set("level", 33.0)
    points = await plc.read_many(["ramp", "level"])
    assert points["ramp"].value == pytest.approx(4.0) and points["level"].value == 33.0


def test_sync_beside_async(bifrost_plant):
    assert bifrost_plant.get("setpoint") == 50
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_pytest_asyncio_modes(pytester: pytest.Pytester, run, plant_file: Path, mode: str) -> None:
    mark = "@pytest.mark.asyncio" if mode == "strict" else ""
    pytester.makepyfile(ASYNC_TESTS.replace("{mark}", mark))
    run(f"--asyncio-mode={mode}").assert_outcomes(passed=3)


XDIST_TESTS = """
import asyncio
import os

import pytest

import bifrost


def exchange(device, value):
    async def go():
        async with bifrost.connect(device.url, tags=device.tags) as plc:
            await plc.write("setpoint", value)
            return (await plc.read("setpoint")).value

    return asyncio.run(go())


@pytest.mark.bifrost_scenario("plant.yaml")
@pytest.mark.parametrize("n", range(8))
def test_each_worker_has_its_own_plant(bifrost_plant, n):
    device = bifrost_plant.device("plc1")
    assert bifrost_plant.get("setpoint") == 50
    assert exchange(device, 100 + n) == 100 + n
    bifrost_plant.clock.advance(n)
    print("WORKER", os.environ.get("PYTEST_XDIST_WORKER"), device.url)


@pytest.mark.bifrost_scenario("water_tank")
@pytest.mark.parametrize("n", range(4))
def test_shipped_scenario_too(bifrost_plant, n):
    bifrost_plant.set("pump.run", True)
    bifrost_plant.clock.advance(10)
    assert bifrost_plant.get("tank.level") > 40.0
"""


def test_xdist_two_workers(pytester: pytest.Pytester, run, plant_file: Path) -> None:
    pytester.makepyfile(XDIST_TESTS)
    result = run.subprocess("-n", "2", "-rP")  # -rP: the workers' captured prints, in the summary
    result.assert_outcomes(passed=12)
    # Each worker served its tests from a simulator of its own, on a port of its own.
    seen: dict[str, set[str]] = {}
    for line in result.outlines:
        if "WORKER " in line:
            worker, url = line.split("WORKER ", 1)[1].split()[:2]
            seen.setdefault(worker, set()).add(url)
    assert sorted(seen) == ["gw0", "gw1"], result.outlines
    assert all(len(urls) == 1 for urls in seen.values())
    assert seen["gw0"] != seen["gw1"]
