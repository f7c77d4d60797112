"""Helpers for the plugin's pytester tests."""

from __future__ import annotations

from pathlib import Path

import pytest

# A small plant whose values hold still on any clock (no behaviours), so that tests against a
# separately running simulator (the "real" target) can read exact values.
PLANT_YAML = """\
scenario: mini-plant
seed: 1
tags:
  level:    {type: float32, init: 12.5, writable: true}
  setpoint: {type: uint16, init: 50, writable: true}
  running:  {type: bool, writable: true}
  ramp:     {type: float32, behaviour: {integrate: "1.0"}}
devices:
  plc1:
    protocol: modbus
    listen: 127.0.0.1:0
    unit: 1
    map:
      level: hr:0
      setpoint: hr:2
      running: coil:0
      ramp: hr:4
"""


@pytest.fixture
def plant_file(pytester: pytest.Pytester) -> Path:
    """`plant.yaml` beside the pytester project's test files."""
    path = pytester.path / "plant.yaml"
    path.write_text(PLANT_YAML)
    return path


# pytest-asyncio warns in every project that leaves this unset; the inner projects are no exception.
QUIET = ("-o", "asyncio_default_fixture_loop_scope=function")


class Runner:
    """Runs the pytester project with the plugin named, as a user would: in-process by default (fast),
    in a subprocess where the outer process must not be shared (xdist, environment variables)."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester

    def __call__(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest_inprocess("-p", "pytest_bifrost", *QUIET, *args)

    def subprocess(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess("-p", "pytest_bifrost", *QUIET, *args, timeout=120)


@pytest.fixture
def run(pytester: pytest.Pytester) -> Runner:
    return Runner(pytester)
