"""Hooks a conftest.py (or another plugin) may implement; added through `pytest_addhooks`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from simulators import SimHost
    from simulators.scenario import Scenario

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_bifrost_plant_started(host: SimHost, scenario: Scenario) -> None:
    """A scenario's simulator has started (once per host per session, per xdist worker), before any
    test uses it.

    Adjust the plant here: tag values written to `host.plant` become where every test starts, since
    the per-test reset puts them back after setting the scenario's initial values. Listeners and
    other state of the host stay as they are for the whole session.
    """
