"""docs/simulator.md is held to the code: its Python runs as written, its options are the CLI's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulators.cli import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "simulator.md"
TEXT = DOC.read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", TEXT, flags=re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i + 1}" for i in range(len(BLOCKS))])
def test_the_python_examples_run(index: int, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"block {index + 1} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip()


def test_the_documented_serve_options_are_the_clis() -> None:
    documented = set(re.findall(r"^\| `(--[a-z-]+)", TEXT, flags=re.MULTILINE))
    help_text = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    offered = set(re.findall(r"(--[a-z][a-z-]+)", help_text)) - {"--help"}
    assert documented == offered
