"""docs/pytest.md is held to the code: its examples are the files of one project, which passes on the
simulated plant and, against a stand-in for hardware, on the real target; its options table is the
plugin's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pytest_bifrost.devices import load_devices, read_devices_file
from pytest_bifrost.options import MARKERS, OPTIONS
from simulators import SimHost

DOC = Path(__file__).resolve().parents[2] / "docs" / "pytest.md"
TEXT = DOC.read_text()
# A fenced block whose first line is a comment naming a file is that file of the example project.
NAMED = re.compile(r"^```(\w+)\n# (\S+)\n(.*?)^```", re.S | re.M)
FILES = {name: f"# {name}\n{body}" for _, name, body in NAMED.findall(TEXT)}
DEVICES = "devices.yaml"


def test_every_python_example_is_a_file_of_the_project() -> None:
    python_blocks = re.findall(r"^```python\n", TEXT, re.M)
    named_python = [name for language, name, _ in NAMED.findall(TEXT) if language == "python"]
    assert len(named_python) == len(python_blocks)
    assert len(set(FILES)) == len(NAMED.findall(TEXT)), "two blocks name the same file"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    for name, text in FILES.items():
        if name != DEVICES:
            path = pytester.path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return pytester


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_project_passes_on_the_simulated_plant(project: pytest.Pytester, run, mode: str) -> None:
    run(f"--asyncio-mode={mode}", "--strict-markers").assert_outcomes(passed=12)


@pytest.fixture
def rig(project: pytest.Pytester) -> Iterator[SimHost]:
    """Stand-in hardware for the page's devices file: the tank scenario, served outside the plugin."""
    with SimHost(project.path / "plants" / "tank.yaml", any_port=True) as host:
        devices = yaml.safe_load(FILES[DEVICES])
        for entry in devices.values():
            entry["url"] = host.url("plc1")  # the page's devices, at the stand-in's address
        (project.path / DEVICES).write_text(yaml.safe_dump(devices))
        yield host


def test_the_same_project_passes_on_the_real_target(project: pytest.Pytester, run, rig: SimHost) -> None:
    result = run("--bifrost-target=real", f"--bifrost-devices={DEVICES}", "-rs")
    result.assert_outcomes(passed=6, skipped=6)
    result.stdout.fnmatch_lines_random(
        [
            "SKIPPED * sim-only (runs the pump for a minute of plant time); --bifrost-target=real talks to hardware",
            "SKIPPED * bifrost_plant.set needs a simulated plant; --bifrost-target=real talks to hardware",
            "SKIPPED * bifrost_modbus_server starts a simulator; --bifrost-target=real talks to hardware",
        ]
    )
    # The examples' writes reached the "hardware", which the plugin did not start; before_each put the
    # setpoint back to 80 before each test of the tank that asked for the plant (skipped ones too).
    writes = rig.devices["plc1"].log.writes("setpoint")
    assert sorted(value for value in writes if value != 80) == [70, 85]
    assert all(writes[index - 1] == 80 for index, value in enumerate(writes) if value != 80)
    assert writes[0] == 80


def test_the_devices_file_example_is_valid(tmp_path: Path) -> None:
    path = tmp_path / DEVICES
    path.write_text(FILES[DEVICES])
    assert load_devices(path) == {"plc1": "modbus://10.0.0.5:502?unit=1"}
    assert read_devices_file(path).before_each == {"plc1": {"setpoint": 80, "pump": False}}


def test_the_options_table_is_the_plugins() -> None:
    rows = re.findall(r"^\| `(--bifrost-[\w-]+)[^`]*` \| `(\w+)` \| ([^|]+) \|", TEXT, re.M)
    assert [(flag, ini) for flag, ini, _ in rows] == [(option.flag, option.ini) for option in OPTIONS]
    for (_, _, default), option in zip(rows, OPTIONS, strict=True):
        if option.default is not None:
            assert default.strip() == f"`{option.default}`"


def test_the_marks_and_the_hook_are_documented() -> None:
    for marker in MARKERS:
        assert f"@pytest.mark.{marker.split('(')[0]}" in TEXT
    assert "pytest_bifrost_plant_started(host, scenario)" in TEXT
