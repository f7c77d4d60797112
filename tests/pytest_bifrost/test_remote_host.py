"""--bifrost-host=URL: the plugin drives a `bifrost-sim serve --control` in another process through its
control API, exactly as it drives a SimHost of its own: reset before each test, plant values, the
virtual clock, faults with hits, traffic logs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

THROUGH_THE_API = """
import asyncio

import pytest

import bifrost

pytestmark = pytest.mark.bifrost_scenario("plant.yaml")


def read(device, *names):
    async def go():
        async with bifrost.connect(device.url, tags=device.tags) as plc:
            points = await plc.read_many(list(names))
            return [points[name].value for name in names]

    return asyncio.run(go())


def test_a_write_through_the_plant_is_read_by_a_client(bifrost_plant):
    bifrost_plant.set("setpoint", 61)
    assert read(bifrost_plant.device("plc1"), "level", "setpoint") == [12.5, 61]
    assert bifrost_plant.get("setpoint") == 61


def test_each_test_starts_from_the_scenario(bifrost_plant):
    assert bifrost_plant.get("setpoint") == 50
    assert bifrost_plant.clock.now() == 0.0


def test_the_clock_and_the_log(bifrost_plant):
    assert bifrost_plant.clock.advance(3) == pytest.approx(3.0)
    assert bifrost_plant.get("ramp") == pytest.approx(3.0)
    read(bifrost_plant.device("plc1"), "ramp")
    assert bifrost_plant.device("plc1").log.count(function=3) == 1


def test_a_fault_with_its_hits(bifrost_plant):
    with bifrost_plant.fault("plc1", "exception", code=6, match={"function": 3}) as fault:
        with pytest.raises(bifrost.DeviceError) as caught:

            async def go():
                async with bifrost.connect(bifrost_plant.url("plc1")) as plc:
                    await plc.read("hr:2")

            asyncio.run(go())
        assert caught.value.code == 6
        assert fault.hits == 1
    assert not fault.active
"""


@pytest.fixture
def served(plant_file: Path) -> Iterator[str]:
    command = [
        sys.executable, "-m", "simulators.cli", "serve", str(plant_file),
        "--json", "--any-port", "--clock", "virtual", "--control", "127.0.0.1:0",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())["control"]
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_the_plugin_drives_a_serve_in_another_process(pytester: pytest.Pytester, run: Any, served: str) -> None:
    pytester.makepyfile(test_remote=THROUGH_THE_API)
    result = run(f"--bifrost-host={served}")
    result.assert_outcomes(passed=4)


def test_a_serve_of_another_scenario_is_refused(pytester: pytest.Pytester, run: Any, served: str) -> None:
    pytester.makepyfile(
        test_other="""
import pytest

@pytest.mark.bifrost_scenario("water_tank")
def test_it(bifrost_plant):
    pass
"""
    )
    result = run(f"--bifrost-host={served}")
    result.assert_outcomes(errors=1)  # the fixture fails, in setup
    result.stdout.fnmatch_lines(["*serves scenario 'mini-plant'; the test needs 'water-tank'*"])
