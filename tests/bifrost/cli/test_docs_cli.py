"""docs/cli.md runs as written: each `$ bifrost ...` line of its console blocks is run against the demo
plant (reset before each), and must print what the page shows and exit as it says (`# exit N`, else 0).
Timestamps and durations are compared by shape, not by value."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from simulators import SimHost, shipped_scenario

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "cli.md"
CONSOLE = re.compile(r"^```console\n(.*?)^```", re.S | re.M)
_TIMESTAMP = re.compile(r"\b1\d{9}\.\d+\b")
_SECONDS = re.compile(r'"seconds": [\d.]+')


def _examples() -> list[tuple[str, list[str], int]]:
    examples = []
    for block in CONSOLE.findall(PAGE.read_text()):
        command: str | None = None
        expected: list[str] = []
        code = 0
        for line in [*block.splitlines(), "$ "]:
            if line.startswith("$ "):
                if command:
                    examples.append((command, expected, code))
                command, expected, code = line[2:], [], 0
            elif line.startswith("# exit "):
                code = int(line.removeprefix("# exit "))
            else:
                expected.append(line)
    return examples


EXAMPLES = _examples()


def _shape(line: str) -> str:
    return _SECONDS.sub('"seconds": S', _TIMESTAMP.sub("TIME", line.rstrip()))


def test_the_page_has_examples_of_every_command() -> None:
    commands = {shlex.split(command)[1] for command, _, _ in EXAMPLES}
    assert commands >= {"read", "write", "monitor", "scan", "probe", "discover"}


@pytest.fixture(scope="module")
def demo() -> SimHost:
    host = SimHost("water_tank", clock="virtual", any_port=True).start()
    yield host  # type: ignore[misc]
    host.stop()


@pytest.mark.parametrize(("command", "expected", "code"), EXAMPLES, ids=[command for command, _, _ in EXAMPLES])
def test_the_example_runs_as_shown(demo: SimHost, tmp_path: Path, command: str, expected: list[str], code: int) -> None:
    demo.reset()
    url = demo.url("plc1")
    port = url.split(":")[2].split("?")[0]
    text = command.replace("$URL", url).replace("$PORT", port)
    text = text.replace("$HMI", demo.url("hmi")).replace("$CPU", f"'{demo.url('cpu1')}'")
    text = text.replace("scenarios/water_tank.yaml", str(shipped_scenario("water_tank")))
    args = shlex.split(text)
    assert args[0] == "bifrost"
    result = subprocess.run(
        [sys.executable, "-m", "bifrost.cli", *args[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == code, result.stdout + result.stderr
    shown = [_shape(line) for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert shown == [_shape(line.replace("$PORT", port)) for line in expected if line.strip()]
