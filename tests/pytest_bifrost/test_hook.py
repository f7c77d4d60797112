"""pytest_bifrost_plant_started: once per started host, before any test; what it writes survives resets."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_called_once_per_host_and_its_writes_are_the_baseline(pytester: pytest.Pytester, run, plant_file: Path) -> None:
    pytester.makeconftest(
        """
        STARTED = []

        def pytest_bifrost_plant_started(host, scenario):
            STARTED.append((scenario.scenario, sorted(host.devices)))
            if scenario.scenario == "mini-plant":
                host.plant.set("setpoint", 80)
        """
    )
    pytester.makepyfile(
        """
        import pytest
        from conftest import STARTED

        @pytest.mark.bifrost_scenario("plant.yaml")
        class TestMini:
            def test_starts_from_the_hooks_value(self, bifrost_plant):
                assert bifrost_plant.get("setpoint") == 80
                assert bifrost_plant.get("level") == 12.5
                bifrost_plant.set("setpoint", 5)
                bifrost_plant.set("level", 1.0)
                bifrost_plant.clock.advance(1)

            def test_reset_puts_the_hooks_value_back(self, bifrost_plant):
                assert bifrost_plant.get("setpoint") == 80
                assert bifrost_plant.get("level") == 12.5
                assert bifrost_plant.clock.now() == 0.0

        @pytest.mark.bifrost_scenario("water_tank")
        def test_another_scenario(bifrost_plant):
            assert bifrost_plant.get("valve.open") == 50

        def test_called_once_per_host():
            assert STARTED == [("mini-plant", ["plc1"]), ("water-tank", ["cpu1", "hmi", "plc1"])]
        """
    )
    run().assert_outcomes(passed=4)


def test_a_failing_hook_fails_the_tests_that_need_the_plant(pytester: pytest.Pytester, run, plant_file: Path) -> None:
    pytester.makeconftest(
        """
        def pytest_bifrost_plant_started(host, scenario):
            raise RuntimeError("the hook broke")
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.bifrost_scenario("plant.yaml")
        def test_needs_the_plant(bifrost_plant):
            pass

        def test_does_not():
            pass
        """
    )
    result = run()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*RuntimeError: the hook broke*"])


def test_the_hookspec_is_known(pytester: pytest.Pytester, run) -> None:
    # A misspelt hook name in a conftest is an error pytest reports, since the spec is registered.
    pytester.makeconftest("def pytest_bifrost_plant_startd(host, scenario):\n    pass\n")
    pytester.makepyfile("def test_x(): pass")
    result = run()
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*unknown hook 'pytest_bifrost_plant_startd'*"])


def test_the_baseline_on_the_system_clock(pytester: pytest.Pytester, run, plant_file: Path) -> None:
    # Ticks keep running on a system clock (held while the hook runs); the baseline is what the hook wrote.
    pytester.makeconftest(
        """
        def pytest_bifrost_plant_started(host, scenario):
            host.plant.set("setpoint", 80)
        """
    )
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.bifrost_scenario("plant.yaml")

        @pytest.mark.parametrize("n", range(3))
        def test_each_starts_from_the_baseline(bifrost_plant, bifrost_host, n):
            assert list(bifrost_host._baselines.values()) == [{"setpoint": 80}]
            assert bifrost_plant.get("setpoint") == 80
            assert bifrost_plant.get("level") == 12.5
            bifrost_plant.set("setpoint", n)
        """
    )
    run("--bifrost-clock=system").assert_outcomes(passed=3)
