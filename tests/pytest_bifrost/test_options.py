"""Options, ini keys and markers: declared once, shown in --help, checked at configure time."""

from __future__ import annotations

import pytest

from pytest_bifrost.options import MARKERS, OPTIONS

SHOW_SETTINGS = """
from pytest_bifrost.fixtures import settings_of

def test_show(pytestconfig):
    settings = settings_of(pytestconfig)
    print("SETTINGS", settings.target, settings.clock, settings.seed, settings.scenarios_dir, settings.devices_file)
"""


def test_every_option_and_ini_key_is_in_help(pytester: pytest.Pytester, run) -> None:
    result = run("--help")
    for option in OPTIONS:
        result.stdout.fnmatch_lines([f"*{option.flag}*"])
        result.stdout.fnmatch_lines([f"*{option.ini} (string)*"])
    result.stdout.fnmatch_lines(["*Bifrost virtual plants and real devices*"])


def test_markers_are_registered_for_strict_markers(pytester: pytest.Pytester, run) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.bifrost_sim_only
        @pytest.mark.bifrost_scenario("water_tank")
        def test_marked():
            pass
        """
    )
    run("--strict-markers").assert_outcomes(passed=1)
    listed = run("--markers")
    for marker in MARKERS:
        listed.stdout.fnmatch_lines([f"@pytest.mark.{marker}:*"])


def test_defaults(pytester: pytest.Pytester, run) -> None:
    pytester.makepyfile(SHOW_SETTINGS)
    result = run("-s")
    result.stdout.fnmatch_lines(["*SETTINGS sim virtual None None None"])
    result.stdout.fnmatch_lines(["bifrost *: target sim, clock virtual"])


def test_ini_keys_are_read_and_paths_are_relative_to_the_ini_file(
    pytester: pytest.Pytester, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pytester.path / "plants").mkdir()
    pytester.makeini(
        """
        [pytest]
        bifrost_scenarios = plants
        bifrost_seed = 7
        bifrost_clock = system
        """
    )
    pytester.makepyfile(SHOW_SETTINGS)
    monkeypatch.chdir(pytester.mkdir("elsewhere"))  # started from another folder: the ini's folder counts
    result = run("-s", str(pytester.path))
    result.stdout.fnmatch_lines([f"*SETTINGS sim system 7 {pytester.path / 'plants'} None"])
    result.stdout.fnmatch_lines(["bifrost *: target sim, clock system, seed 7"])


def test_command_line_wins_over_ini(pytester: pytest.Pytester, run) -> None:
    (pytester.path / "plants").mkdir()
    (pytester.path / "other").mkdir()
    pytester.makeini("[pytest]\nbifrost_scenarios = plants\nbifrost_seed = 7\nbifrost_clock = system\n")
    pytester.makepyfile(SHOW_SETTINGS)
    result = run("-s", "--bifrost-scenarios=other", "--bifrost-seed=9", "--bifrost-clock=virtual")
    result.stdout.fnmatch_lines([f"*SETTINGS sim virtual 9 {pytester.path / 'other'} None"])


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (("--bifrost-target=hardware",), "", "*--bifrost-target: invalid choice: 'hardware'*"),
        ((), "bifrost_target = hardware", "*bifrost_target in *='hardware': expected one of sim, real*"),
        ((), "bifrost_clock = wall", "*bifrost_clock in *='wall': expected one of virtual, system*"),
        (("--bifrost-seed=abc",), "", "*--bifrost-seed='abc': expected a whole number*"),
        (("--bifrost-scenarios=nowhere",), "", "*--bifrost-scenarios: *nowhere is not a folder of scenario files*"),
    ],
    ids=["target-cli", "target-ini", "clock-ini", "seed", "scenarios-dir"],
)
def test_bad_values_are_usage_errors(pytester: pytest.Pytester, run, args: tuple[str, ...], ini: str, message: str):
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_never(): pass")
    result = run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
