"""bifrost_host, bifrost_plant and bifrost_modbus_server on the sim target, through pytester projects
whose tests talk to the simulated devices over real sockets with bifrost.connect."""

from __future__ import annotations

from pathlib import Path

import pytest

# Sync helpers the inner tests share: a plain test is not a coroutine, so each call runs its own loop.
HELPERS = """
import asyncio

import bifrost


def read(device, *names):
    async def go():
        async with bifrost.connect(device.url, tags=device.tags) as plc:
            points = await plc.read_many(names)
            return [points[name].value for name in names]

    values = asyncio.run(go())
    return values[0] if len(values) == 1 else values


def write(device, **values):
    async def go():
        async with bifrost.connect(device.url, tags=device.tags) as plc:
            await plc.write_many(values)

    asyncio.run(go())
"""


@pytest.fixture
def project(pytester: pytest.Pytester, plant_file: Path) -> pytest.Pytester:
    pytester.makepyfile(helpers=HELPERS)
    return pytester


def test_plant_devices_values_and_reset(project: pytest.Pytester, run) -> None:
    project.makepyfile(
        test_plant="""
        import pytest
        from helpers import read, write

        pytestmark = pytest.mark.bifrost_scenario("plant.yaml")
        URLS = set()

        def test_device(bifrost_plant):
            plc1 = bifrost_plant.device("plc1")
            assert plc1.name == "plc1" and plc1.protocol == "modbus"
            assert plc1.url.startswith("modbus://127.0.0.1:") and plc1.url.endswith("?unit=1")
            assert not plc1.url.startswith("modbus://127.0.0.1:0?")
            assert plc1.tags["level"].address == "hr:0" and plc1.tags.unit == 1
            assert bifrost_plant.url("plc1") == plc1.url
            assert read(plc1, "level", "setpoint", "running") == [12.5, 50, False]
            URLS.add(plc1.url)

        def test_set_behind_the_devices_back(bifrost_plant):
            plc1 = bifrost_plant.device("plc1")
            bifrost_plant.set("level", 90.0)
            plc1.set("setpoint", 75)
            assert bifrost_plant.get("level") == 90.0 and plc1.get("setpoint") == 75
            assert read(plc1, "level", "setpoint") == [90.0, 75]
            write(plc1, running=True)
            assert bifrost_plant.get("running") is True
            bifrost_plant.clock.advance(3)
            URLS.add(plc1.url)

        def test_reset_before_each_test(bifrost_plant):
            # The previous test changed values, time and traffic: all back to the scenario's start.
            plc1 = bifrost_plant.device("plc1")
            assert bifrost_plant.snapshot() == {"level": 12.5, "setpoint": 50, "running": False, "ramp": 0.0}
            assert bifrost_plant.clock.now() == 0.0
            assert plc1.log.count() == 0
            URLS.add(plc1.url)

        def test_one_host_for_the_session(bifrost_plant, bifrost_host):
            URLS.add(bifrost_plant.device("plc1").url)
            assert len(URLS) == 1, URLS
            assert len(bifrost_host.hosts) == 1
            assert bifrost_host.host("plant.yaml") is bifrost_plant.host

        def test_unknown_device(bifrost_plant):
            bifrost_plant.device("plc9")
        """
    )
    result = run()
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*no device 'plc9' in *plant.yaml; the scenario's devices are: plc1"])


def test_virtual_clock(project: pytest.Pytester, run) -> None:
    project.makepyfile(
        test_clock="""
        import pytest
        from bifrost.errors import TimeoutError
        from helpers import read

        pytestmark = pytest.mark.bifrost_scenario("plant.yaml")

        def test_time_moves_only_when_told(bifrost_plant):
            assert bifrost_plant.clock.now() == 0.0
            assert bifrost_plant.get("ramp") == 0.0
            assert bifrost_plant.clock.advance(2.0) == 2.0
            assert bifrost_plant.get("ramp") == pytest.approx(2.0)
            assert read(bifrost_plant.device("plc1"), "ramp") == pytest.approx(2.0)

        def test_run_until(bifrost_plant):
            assert bifrost_plant.clock.run_until(1.5) == 1.5
            reached = bifrost_plant.clock.run_until(lambda: bifrost_plant.get("ramp") >= 5)
            assert reached == pytest.approx(5.0)
            with pytest.raises(TimeoutError):
                bifrost_plant.clock.run_until(lambda: False, limit=1)
        """
    )
    run().assert_outcomes(passed=2)


def test_system_clock_option(project: pytest.Pytester, run) -> None:
    project.makepyfile(
        test_system="""
        import pytest
        from simulators.clock import SystemClock

        pytestmark = pytest.mark.bifrost_scenario("plant.yaml")

        def test_the_host_runs_on_the_wall_clock(bifrost_plant):
            assert isinstance(bifrost_plant.host.clock, SystemClock)
            assert bifrost_plant.clock.now() >= 0.0

        def test_advance_needs_a_virtual_clock(bifrost_plant):
            bifrost_plant.clock.advance(1)
        """
    )
    result = run("--bifrost-clock=system", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED * bifrost_plant.clock.advance() needs a virtual clock; this run uses --bifrost-clock=system"]
    )


def test_seed_option(project: pytest.Pytester, run) -> None:
    project.makepyfile(
        test_seed="""
        import pytest

        @pytest.mark.bifrost_scenario("plant.yaml")
        def test_seed(bifrost_plant, pytestconfig):
            expected = pytestconfig.getoption("bifrost_seed")
            assert bifrost_plant.scenario.seed == (1 if expected is None else int(expected))
            assert bifrost_plant.host.plant.scenario.seed == bifrost_plant.scenario.seed
        """
    )
    run().assert_outcomes(passed=1)
    run("--bifrost-seed=99").assert_outcomes(passed=1)


def test_traffic_log(project: pytest.Pytester, run) -> None:
    project.makepyfile(
        test_log="""
        import asyncio

        import pytest
        import bifrost
        from helpers import read, write

        pytestmark = pytest.mark.bifrost_scenario("plant.yaml")

        def test_what_the_device_saw(bifrost_plant):
            plc1 = bifrost_plant.device("plc1")
            write(plc1, setpoint=70, running=True)
            assert read(plc1, "level") == 12.5
            assert plc1.log.writes("setpoint") == [70]
            assert plc1.log.writes("running") == [True]
            assert plc1.log.count(function=3) >= 1
            assert plc1.log.count(unit=1) == len(plc1.log.requests())
            plc1.log.assert_no_errors()
            plc1.log.clear()
            assert plc1.log.count() == 0

        def test_failures_show_the_traffic(bifrost_plant):
            plc1 = bifrost_plant.device("plc1")

            async def unmapped():
                async with bifrost.connect(plc1.url) as plc:
                    with pytest.raises(bifrost.errors.DeviceError):
                        await plc.read("hr:100")

            asyncio.run(unmapped())
            assert plc1.log.errors()
            plc1.log.assert_no_errors()
        """
    )
    result = run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError*", "*100*"])


def test_modbus_server_factory(pytester: pytest.Pytester, run) -> None:
    pytester.makepyfile(helpers=HELPERS)
    pytester.makepyfile(
        test_adhoc="""
        import pytest
        from bifrost.errors import ConfigError
        from helpers import read, write

        TAGS = {
            "level": {"type": "float32", "address": "hr:0", "init": 12.5, "writable": True},
            "mode": {"type": "uint16", "address": "hr:2", "init": 3},
            "temp": {"type": "float32", "address": "ir:0", "init": 21.5, "byte_order": "CDAB"},
            "run": {"type": "bool", "address": "coil:0", "writable": True},
        }
        SEEN = []

        def test_a_started_device(bifrost_modbus_server):
            plc = bifrost_modbus_server(TAGS, unit=3)
            assert plc.url.startswith("modbus://127.0.0.1:") and plc.url.endswith("?unit=3")
            assert plc.tags["temp"].byte_order.value == "CDAB"
            assert read(plc, "level", "mode", "temp", "run") == [12.5, 3, 21.5, False]
            write(plc, level=40.0, run=True)
            assert plc.get("level") == 40.0 and plc.log.writes("level") == [40.0]
            plc.set("mode", 4)
            assert read(plc, "mode") == 4
            plc.plant.clock.advance(1)
            SEEN.append(plc.url)

        def test_reused_and_reset(bifrost_modbus_server):
            plc = bifrost_modbus_server(TAGS, unit=3)
            assert plc.url == SEEN[0]
            assert plc.get("level") == 12.5 and plc.plant.clock.now() == 0.0 and plc.log.count() == 0

        def test_two_equal_devices_are_two_simulators(bifrost_modbus_server):
            one = bifrost_modbus_server(TAGS, unit=3)
            two = bifrost_modbus_server(TAGS, unit=3)
            assert one.url != two.url
            one.set("level", 1.0)
            assert two.get("level") == 12.5

        def test_name_and_byte_order(bifrost_modbus_server):
            tags = {"x": {"type": "int32", "address": "hr:10", "init": -5}}
            plc = bifrost_modbus_server(tags, name="rack", byte_order="DCBA")
            assert plc.name == "rack" and plc.tags["x"].byte_order.value == "DCBA"
            assert read(plc, "x") == -5

        def test_mistakes(bifrost_modbus_server):
            with pytest.raises(ConfigError, match="tags.level: expected a table with an address"):
                bifrost_modbus_server({"level": {"type": "float32"}})
            with pytest.raises(ConfigError, match="bifrost_modbus_server: tags.level.type: .*float33"):
                bifrost_modbus_server({"level": {"type": "float33", "address": "hr:0"}})
        """
    )
    run().assert_outcomes(passed=5)


def test_faults_in_a_with_block(project: pytest.Pytester, run) -> None:
    """`with bifrost_plant.fault(...)` switches a fault on in the served device, on both engines."""
    project.makepyfile(
        test_fault="""
        import asyncio

        import pytest

        import bifrost

        pytestmark = pytest.mark.bifrost_scenario("plant.yaml")

        @pytest.fixture(params=["python", "native"])
        def engine(request):
            return request.param

        async def level(device, engine, timeout=3.0):
            async with bifrost.connect(device.url, tags=device.tags, engine=engine, timeout=timeout) as plc:
                return (await asyncio.wait_for(plc.read("level"), 10)).value

        def test_exception(bifrost_plant, engine):
            plc1 = bifrost_plant.device("plc1")
            with bifrost_plant.fault("plc1", "exception", code=6, match={"function": 3}) as fault:
                with pytest.raises(bifrost.DeviceError) as caught:
                    asyncio.run(level(plc1, engine))
                assert caught.value.code == 6
                assert fault.hits == 1
            assert asyncio.run(level(plc1, engine)) == 12.5  # cleared with the block
            assert plc1.log.count(function=3) == 2

        def test_stall_is_a_timeout_then_recovers(bifrost_plant, engine):
            plc1 = bifrost_plant.device("plc1")
            with plc1.fault("stall"):
                with pytest.raises(bifrost.TimeoutError):
                    asyncio.run(level(plc1, engine, timeout=0.2))
            assert asyncio.run(level(plc1, engine)) == 12.5

        def test_unknown_device_and_bad_keys(bifrost_plant):
            with pytest.raises(pytest.fail.Exception, match="no device 'plc7'"):
                bifrost_plant.fault("plc7", "stall")
            with pytest.raises(bifrost.ConfigError, match="delay"):
                bifrost_plant.fault("plc1", "latency", delay="fast")
        """
    )
    run().assert_outcomes(passed=5)
