"""The bifrost_scenario mark (stems, paths, levels, closest wins) and bifrost_sim_only.

Both targets resolve marks the same way; these tests run each project on the sim target and on the
real target (with a devices file whose URLs are never dialled: nothing here connects).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_bifrost.scenarios import ScenarioNotFound, resolve_scenario
from simulators import shipped_scenario, shipped_scenarios

TARGETS = ["sim", "real"]


@pytest.fixture(params=TARGETS)
def target_args(request: pytest.FixtureRequest, pytester: pytest.Pytester) -> tuple[str, ...]:
    if request.param == "sim":
        return ()
    (pytester.path / "rig.yaml").write_text("plc1: modbus://192.0.2.1:502?unit=1\n")
    return ("--bifrost-target=real", "--bifrost-devices=rig.yaml")


def test_levels_closest_wins(pytester: pytest.Pytester, run, target_args: tuple[str, ...]) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.bifrost_scenario("boiler")

        def test_module_level(bifrost_plant):
            assert bifrost_plant.scenario.scenario == "boiler"

        @pytest.mark.bifrost_scenario("water_tank")
        class TestClassLevel:
            def test_class_level(self, bifrost_plant):
                assert bifrost_plant.scenario.scenario == "water-tank"

            @pytest.mark.bifrost_scenario("packaging_line")
            def test_function_level(self, bifrost_plant):
                assert bifrost_plant.scenario.scenario == "packaging-line"
        """
    )
    run(*target_args).assert_outcomes(passed=3)


def test_scenarios_dir_before_shipped_then_shipped(
    pytester: pytest.Pytester, run, plant_file: Path, target_args: tuple[str, ...]
) -> None:
    plants = pytester.mkdir("plants")
    # A project's own water_tank shadows the shipped one; boiler still comes from the shipped files.
    (plants / "water_tank.yaml").write_text(plant_file.read_text())
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.bifrost_scenario("water_tank")
        def test_own(bifrost_plant):
            assert bifrost_plant.scenario.scenario == "mini-plant"

        @pytest.mark.bifrost_scenario("boiler")
        def test_shipped(bifrost_plant):
            assert bifrost_plant.scenario.scenario == "boiler"
        """
    )
    run("--bifrost-scenarios=plants", *target_args).assert_outcomes(passed=2)


def test_paths_are_relative_to_the_test_file(
    pytester: pytest.Pytester, run, plant_file: Path, target_args: tuple[str, ...]
) -> None:
    tests = pytester.mkdir("tests")
    (tests / "plants").mkdir()
    (tests / "plants" / "mine.yml").write_text(plant_file.read_text())
    (tests / "test_paths.py").write_text(
        f"""
import pytest

@pytest.mark.bifrost_scenario("plants/mine.yml")
def test_relative(bifrost_plant):
    assert bifrost_plant.path.name == "mine.yml"

@pytest.mark.bifrost_scenario("../plant.yaml")
def test_up(bifrost_plant):
    assert bifrost_plant.scenario.scenario == "mini-plant"

@pytest.mark.bifrost_scenario({str(plant_file)!r})
def test_absolute(bifrost_plant):
    assert bifrost_plant.path.name == "plant.yaml"
"""
    )
    run(*target_args).assert_outcomes(passed=3)


def test_mistakes_fail_the_test_saying_why(pytester: pytest.Pytester, run, target_args: tuple[str, ...]) -> None:
    (pytester.path / "broken.yaml").write_text("scenario: broken\ntags:\n  x: {type: float33}\n")
    pytester.makepyfile(
        """
        import pytest

        def test_unmarked(bifrost_plant):
            pass

        @pytest.mark.bifrost_scenario("no_such_plant")
        def test_unknown_stem(bifrost_plant):
            pass

        @pytest.mark.bifrost_scenario("missing.yaml")
        def test_missing_path(bifrost_plant):
            pass

        @pytest.mark.bifrost_scenario("broken.yaml")
        def test_broken_file(bifrost_plant):
            pass

        @pytest.mark.bifrost_scenario("water_tank", "boiler")
        def test_two(bifrost_plant):
            pass
        """
    )
    result = run(*target_args)
    result.assert_outcomes(errors=5)
    result.stdout.fnmatch_lines_random(
        [
            "*bifrost_plant needs a scenario: mark the test, its class or its module with*",
            "*bifrost_scenario('no_such_plant'): no scenario of that name. no --bifrost-scenarios; shipped: boiler,*",
            "*bifrost_scenario('missing.yaml'): no scenario file at *missing.yaml",
            "*scenario *broken.yaml has problems:",
            "*broken.yaml:3:*: tags.x.type: *float33*",
            "*bifrost_scenario takes one scenario (a stem or a path), got args=('water_tank', 'boiler')*",
        ]
    )
    # Each message once: not chained to the lookup error it replaces ("During handling of ...").
    # Counted above the short summary, which repeats each message (whole, not cut to the width, when CI is set).
    output = result.stdout.str().split("short test summary info")[0]
    assert "During handling of the above exception" not in output
    assert output.count("bifrost_scenario('no_such_plant'): no scenario of that name") == 1
    assert output.count("has problems:") == 1


def test_sim_only_runs_on_sim_and_skips_on_real_with_a_reason(
    pytester: pytest.Pytester, run, target_args: tuple[str, ...]
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.bifrost_sim_only
        def test_plain():
            pass

        @pytest.mark.bifrost_sim_only(reason="drives the clock")
        def test_with_reason():
            pass

        @pytest.mark.bifrost_sim_only
        class TestWhole:
            def test_in_class(self):
                pass

        def test_everywhere():
            pass
        """
    )
    result = run("-rs", *target_args)
    if not target_args:
        result.assert_outcomes(passed=4)
        return
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines_random(
        [
            "SKIPPED * sim-only (it needs a simulated plant); --bifrost-target=real talks to hardware",
            "SKIPPED * sim-only (drives the clock); --bifrost-target=real talks to hardware",
        ]
    )


# --- the lookup itself ---------------------------------------------------------------------------------


def test_lookup_order(tmp_path: Path) -> None:
    (tmp_path / "boiler.yml").write_text("scenario: mine\n")
    assert resolve_scenario("boiler", scenarios_dir=tmp_path, base=tmp_path) == tmp_path / "boiler.yml"
    assert resolve_scenario("water_tank", scenarios_dir=tmp_path, base=tmp_path) == shipped_scenario("water_tank")
    assert resolve_scenario("boiler", scenarios_dir=None, base=tmp_path) == shipped_scenario("boiler")
    assert resolve_scenario(Path("boiler.yml"), scenarios_dir=None, base=tmp_path) == tmp_path / "boiler.yml"


def test_unknown_stem_lists_what_there_is(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("scenario: mine\n")
    shipped = ", ".join(sorted(shipped_scenarios()))
    with pytest.raises(ScenarioNotFound, match=rf"{tmp_path} has: mine; shipped: {shipped}"):
        resolve_scenario("nope", scenarios_dir=tmp_path, base=tmp_path)
