"""Reading YAML safely: nested aliases within a budget, regular files only, and a size cap, in every loader."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bifrost import _yaml
from bifrost._yaml import ALIAS_BUDGET, load_yaml
from bifrost.errors import ConfigError
from bifrost.tags import TagMap
from pytest_bifrost.devices import DevicesFileError, load_devices
from simulators.cli import app
from simulators.scenario import load_scenario


def _bomb(levels: int) -> str:
    """Each level names the one below nine times: 9**levels leaves in a few hundred bytes."""
    lines = ["scenario: laughs", "tags: {}", "l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


LOADERS: dict[str, Callable[[Path], Any]] = {
    "load_yaml": load_yaml,
    "load_scenario": load_scenario,
    "TagMap.from_scenario": lambda path: TagMap.from_scenario(path, device="plc1"),
}


@pytest.mark.parametrize("loader", LOADERS.values(), ids=list(LOADERS))
def test_nested_aliases_past_the_budget_are_refused_at_the_alias(tmp_path: Path, loader: Callable[[Path], Any]) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(_bomb(5))  # about 66,000 nodes once expanded: enough to cross the budget, quick to build
    with pytest.raises(ConfigError, match=rf"laughs.yaml:\d+:\d+: aliases copy in more than {ALIAS_BUDGET} nodes"):
        loader(path)


def test_a_few_aliases_are_fine_and_a_recursive_one_is_refused(tmp_path: Path) -> None:
    reuse = tmp_path / "reuse.yaml"
    reuse.write_text("scenario: r\ntags:\n  a: &number {type: float32, init: 1.5}\n  b: *number\n")
    assert load_scenario(reuse).tags["b"].init == 1.5
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("scenario: r\ntags: &t\n  a: *t\n")
    with pytest.raises(ConfigError, match=r"recursive.yaml:3:6: alias \*t is inside what it names"):
        load_yaml(recursive)


@pytest.mark.parametrize("loader", LOADERS.values(), ids=list(LOADERS))
def test_only_regular_files_are_read(tmp_path: Path, loader: Callable[[Path], Any]) -> None:
    fifo = tmp_path / "plant.yaml"
    os.mkfifo(fifo)  # opening it to read would wait for a writer that never comes
    with pytest.raises(ConfigError, match=r"plant.yaml: not a regular file \(a FIFO\)"):
        loader(fifo)
    with pytest.raises(ConfigError, match=r"not a regular file \(a directory\)"):
        loader(tmp_path)


def test_dev_zero_is_refused_not_read() -> None:
    with pytest.raises(ConfigError, match=r"/dev/zero: not a regular file \(a device or socket\)"):
        load_yaml("/dev/zero")


def test_a_file_larger_than_the_cap_is_not_read(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as file:
        file.truncate(_yaml.MAX_FILE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ConfigError, match=r"big.yaml: larger than 4 MiB"):
        load_yaml(big)


def test_the_devices_file_and_the_cli_say_so_too(tmp_path: Path) -> None:
    fifo = tmp_path / "devices.yaml"
    os.mkfifo(fifo)
    with pytest.raises(DevicesFileError, match="not a regular file"):
        load_devices(fifo)
    result = CliRunner().invoke(app, ["validate", str(fifo), "/dev/zero"])
    assert result.exit_code == 1
    assert "devices.yaml: not a regular file (a FIFO)" in result.output
    assert "/dev/zero: not a regular file" in result.output
