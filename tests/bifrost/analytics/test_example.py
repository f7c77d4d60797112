"""The swinging-door example writes its PNG when matplotlib is there (tests/test_docs.py runs it as well)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "analytics_swinging_door.py"


def test_example_writes_the_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "trend.png"
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), str(png)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "tank.level: 1200 points ->" in result.stdout and f"wrote {png}" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
