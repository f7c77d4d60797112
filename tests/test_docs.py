"""Every example in examples/ and every Python block of the user docs runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Pages whose blocks another test already runs in a richer harness (a pytester project, ...).
OWN_HARNESS = {"pytest.md", "scenarios.md", "simulator.md", "faults.md", "cli.md"}
PAGES = sorted(page for page in (ROOT / "docs").glob("*.md") if page.name not in OWN_HARNESS)
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _run(code: str, where: str, tmp_path: Path) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{where} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_doc_python_blocks_run(page: Path, tmp_path: Path) -> None:
    blocks = BLOCK.findall(page.read_text())
    assert blocks, f"{page.name} has no python example"
    for index, block in enumerate(blocks, 1):
        _run(block, f"{page.name} block {index}", tmp_path)


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.name for example in EXAMPLES])
def test_examples_run(example: Path, tmp_path: Path) -> None:
    out = _run(example.read_text(), example.name, tmp_path)
    assert out.strip(), f"{example.name} printed nothing"


def test_readme_tour_parses() -> None:
    readme = (ROOT / "README.md").read_text()
    for block in BLOCK.findall(readme):
        compile(block, "README.md", "exec")


def test_readme_tour_reads_a_live_level_from_the_demo_plant(capsys: pytest.CaptureFixture[str]) -> None:
    # Before, the demo tank drained empty ~30 s after `serve` started, so the tour's first read said 0.0.
    from simulators import SimHost

    readme = (ROOT / "README.md").read_text()
    tour = next(block for block in BLOCK.findall(readme) if "bifrost.connect" in block)
    assert "modbus://127.0.0.1:5020?unit=1" in tour
    with SimHost("water_tank", clock="virtual", any_port=True) as host:
        plant = host.plant
        levels = []
        for _ in range(3600):  # an hour of plant time, a second at a time
            host.clock.advance(1.0)
            levels.append(plant.get("tank.level"))
        assert min(levels) > 15 and max(levels) < 100, (min(levels), max(levels))
        assert max(levels[-60:]) - min(levels[-60:]) > 20  # still cycling at the end of the hour
        exec(compile(tour.replace("modbus://127.0.0.1:5020?unit=1", host.url("plc1")), "README.md", "exec"), {})
    value, quality = capsys.readouterr().out.split()
    assert 15 < float(value) < 100 and quality == "Quality.GOOD"
