"""--bifrost-target=real: URLs from the devices file, nothing started, simulator-only operations skipped.

The "hardware" is a SimHost this test starts itself, outside the plugin, as a stand-in for a rig.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators import SimHost

BOTH_TARGETS = """
import asyncio

import pytest

import bifrost

pytestmark = pytest.mark.bifrost_scenario("plant.yaml")


def test_talks_to_the_device(bifrost_plant):
    plc1 = bifrost_plant.device("plc1")

    async def go():
        async with bifrost.connect(plc1.url, tags=plc1.tags) as plc:
            await plc.write("setpoint", 61)
            points = await plc.read_many(["level", "setpoint"])
            return [points["level"].value, points["setpoint"].value]

    assert asyncio.run(go()) == [12.5, 61]


@pytest.mark.bifrost_sim_only
def test_drives_the_plant(bifrost_plant):
    bifrost_plant.set("level", 99.0)
    bifrost_plant.clock.advance(1)
    assert bifrost_plant.device("plc1").log.count() == 0


def test_uses_the_clock(bifrost_plant):
    bifrost_plant.clock.advance(2)
    assert bifrost_plant.get("ramp") == pytest.approx(2.0)
"""

# What only a simulator can do, each as the one line of a test, and the reason its skip gives.
SIM_ONLY = {
    "set": ('bifrost_plant.set("level", 1.0)', "bifrost_plant.set needs a simulated plant"),
    "get": ('bifrost_plant.get("level")', "bifrost_plant.get needs a simulated plant"),
    "device_set": ('bifrost_plant.device("plc1").set("level", 1.0)', "bifrost_plant.set needs a simulated plant"),
    "snapshot": ("bifrost_plant.snapshot()", "bifrost_plant.snapshot needs a simulated plant"),
    "reset": ("bifrost_plant.reset()", "bifrost_plant.reset needs a simulated plant"),
    "host": ("bifrost_plant.host", "bifrost_plant.host needs a simulated plant"),
    "advance": ("bifrost_plant.clock.advance(1)", "bifrost_plant.clock.advance() needs a simulated plant"),
    "run_until": ("bifrost_plant.clock.run_until(5)", "bifrost_plant.clock.run_until() needs a simulated plant"),
    "now": ("bifrost_plant.clock.now()", "bifrost_plant.clock.now() needs a simulated plant"),
    "log": ('bifrost_plant.device("plc1").log', "plc1.log (the traffic log) needs a simulated plant"),
    "fault": ('bifrost_plant.fault("plc1", "stall")', "bifrost_plant.fault('stall') needs a simulated plant"),
    "adhoc": (
        'bifrost_modbus_server({"x": {"type": "uint16", "address": "hr:0"}})',
        "bifrost_modbus_server starts a simulator",
    ),
    "registry": ('bifrost_host.host("plant.yaml")', "starting a simulator for 'mini-plant' needs the sim target"),
}


@pytest.fixture
def rig(pytester: pytest.Pytester, plant_file: Path) -> Iterator[SimHost]:
    """The stand-in hardware, and a devices file naming it."""
    with SimHost(plant_file, any_port=True) as host:
        (pytester.path / "rig.yaml").write_text(f"plc1: {host.url('plc1')}\n")
        yield host


REAL = ("--bifrost-target=real", "--bifrost-devices=rig.yaml", "-rs")


def test_one_test_file_for_both_targets(pytester: pytest.Pytester, run, rig: SimHost) -> None:
    pytester.makepyfile(BOTH_TARGETS)
    run().assert_outcomes(passed=3)
    rig.devices["plc1"].log.clear()

    result = run(*REAL)
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines_random(
        [
            "SKIPPED * sim-only (it needs a simulated plant); --bifrost-target=real talks to hardware",
            "SKIPPED * bifrost_plant.clock.advance() needs a simulated plant; --bifrost-target=real talks to hardware",
        ]
    )
    # The test's write reached the stand-in hardware, which the plugin neither started nor reset.
    assert rig.plant.get("setpoint") == 61
    assert rig.devices["plc1"].log.writes("setpoint") == [61]


def test_urls_and_tags_and_nothing_started(pytester: pytest.Pytester, run, rig: SimHost) -> None:
    pytester.makepyfile(
        f"""
        import pytest
        from bifrost.tags import TagMap

        @pytest.mark.bifrost_scenario("plant.yaml")
        def test_real(bifrost_plant, bifrost_host):
            plc1 = bifrost_plant.device("plc1")
            assert plc1.url == {rig.url("plc1")!r}
            assert plc1.tags == TagMap.from_scenario("plant.yaml", device="plc1")
            assert plc1.protocol == "modbus"
            assert bifrost_plant.target == "real" and not bifrost_plant.is_simulated
            assert bifrost_host.hosts == {{}}
        """
    )
    run(*REAL).assert_outcomes(passed=1)


def test_simulator_only_operations_skip_saying_why(pytester: pytest.Pytester, run, rig: SimHost) -> None:
    body = "\n".join(
        f"""
@pytest.mark.bifrost_scenario("plant.yaml")
def test_{name}(bifrost_plant, bifrost_modbus_server, bifrost_host):
    {code}
"""
        for name, (code, _) in SIM_ONLY.items()
    )
    pytester.makepyfile("import pytest\n" + body)
    result = run(*REAL)
    result.assert_outcomes(skipped=len(SIM_ONLY))
    result.stdout.fnmatch_lines_random(
        [f"SKIPPED * {why}; --bifrost-target=real talks to hardware" for _, why in SIM_ONLY.values()]
    )
    # On the sim target they work (fault injection is tested in test_fixtures.py, against a stand-in).
    run("-k", "not test_fault").assert_outcomes(passed=len(SIM_ONLY) - 1)


def test_a_device_missing_from_the_devices_file(pytester: pytest.Pytester, run, rig: SimHost) -> None:
    (pytester.path / "two.yaml").write_text(
        (pytester.path / "plant.yaml").read_text().replace("devices:\n", "devices:\n  plc2: {protocol: modbus}\n")
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.bifrost_scenario("two.yaml")
        def test_plc1_is_there(bifrost_plant):
            assert bifrost_plant.device("plc1").url.startswith("modbus://")

        @pytest.mark.bifrost_scenario("two.yaml")
        def test_plc2_is_not(bifrost_plant):
            bifrost_plant.device("plc2")
        """
    )
    result = run(*REAL)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*device 'plc2' of scenario 'mini-plant' is not in the devices file *rig.yaml (it names: plc1)*"]
    )


SECOND_RUN = """
import asyncio

import pytest

import bifrost

pytestmark = pytest.mark.bifrost_scenario("plant.yaml")


async def swap_setpoint(plc1, value):
    async with bifrost.connect(plc1.url, tags=plc1.tags) as plc:
        before = (await plc.read("setpoint")).value
        await plc.write("setpoint", value)
        return before


def test_starts_from_the_scenarios_setpoint(bifrost_plant):
    assert asyncio.run(swap_setpoint(bifrost_plant.device("plc1"), 61)) == 50
"""


def test_before_each_puts_the_real_device_back_for_every_test(pytester: pytest.Pytester, run, rig: SimHost) -> None:
    # A new user's suite passed once on the rig and failed the second time: the first run's write stayed.
    pytester.makepyfile(SECOND_RUN)
    run(*REAL).assert_outcomes(passed=1)
    run(*REAL).assert_outcomes(failed=1)  # nothing resets hardware by itself
    (pytester.path / "rig.yaml").write_text(
        f"plc1:\n  url: {rig.url('plc1')}\n  before_each: {{setpoint: 50, running: false}}\n"
    )
    run(*REAL).assert_outcomes(passed=1)
    run(*REAL).assert_outcomes(passed=1)
    assert rig.devices["plc1"].log.writes("setpoint")[-4:] == [50, 61, 50, 61]


def test_before_each_mistakes_name_the_devices_file(pytester: pytest.Pytester, run, rig: SimHost) -> None:
    pytester.makepyfile(SECOND_RUN)
    (pytester.path / "rig.yaml").write_text(
        f"plc1:\n  url: {rig.url('plc1')}\n  before_each: {{setpiont: 50, running: false}}\n"
    )
    result = run(*REAL)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*rig.yaml: plc1.before_each: no tag 'setpiont'; did you mean 'setpoint'?*"])
    (pytester.path / "rig.yaml").write_text(f"plc1:\n  url: {rig.url('plc1')}\n  befor_each: {{setpoint: 50}}\n")
    result = run(*REAL)
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*rig.yaml:3:3: plc1.befor_each: unknown key; did you mean 'before_each'?*"])
