"""docs/scenarios.md is held to the code: its scenario runs, its Python runs, its tables match the files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulators import load_scenario, shipped_scenarios

DOC = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"
TEXT = DOC.read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TEXT, flags=re.DOTALL)


def test_the_format_example_is_a_valid_scenario() -> None:
    (example,) = [block for block in _blocks("yaml") if block.startswith("scenario:")]
    scenario = load_scenario(DOC, text=example)
    assert scenario.tag_map("plc1")["temp"].scale == 0.1


@pytest.mark.parametrize("code", _blocks("python"))
def test_the_python_examples_run(code: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(code, str(DOC), "exec"), {})
    assert "alarm came on" in capsys.readouterr().out


@pytest.mark.parametrize("stem", sorted(shipped_scenarios()))
def test_each_shipped_plant_is_described_with_its_register_map(stem: str) -> None:
    section = TEXT.split(f"### {stem}", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| ([\w.]+) \| [^|]+ \| ((?:coil|di|ir|hr):\d+(?:\.\d+)?)", section, flags=re.MULTILINE)
    scenario = load_scenario(shipped_scenarios()[stem])
    listen = scenario.devices["plc1"].listen
    assert listen is not None and listen in section.splitlines()[0]
    documented = dict(rows)
    served = {name: tag.address for name, tag in scenario.tag_map("plc1").tags.items()}
    assert documented == served
