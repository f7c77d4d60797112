"""The `bifrost` command as a user pipes it."""

from __future__ import annotations

import os
import subprocess
import sys

import bifrost


def _cells(output: str, column: int) -> list[str]:
    """Each row's text in one column of a rich table, its folded lines joined back together."""
    rows: list[str] = []
    for line in output.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if cells[0]:  # a row starts where its first column has text
            rows.append("")
        rows[-1] += cells[column]
    return rows


def test_schemes_piped_at_80_columns_shows_every_example_whole() -> None:
    # Before, rich cut the example column with an ellipsis: `modbus+rtu:///dev/ttyUSB0…`.
    env = {**os.environ, "COLUMNS": "80"}
    result = subprocess.run(
        [sys.executable, "-c", "from bifrost.cli import main; main()", "schemes"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "…" not in result.stdout
    examples = _cells(result.stdout, 1)
    assert examples == [scheme.example for _, scheme in sorted(bifrost.known_schemes().items())]
