"""Virtual PLCs that speak the real protocols on real sockets, driven by scenario files."""

from __future__ import annotations

from simulators.host import SimDevice, SimHost
from simulators.scenario import load_scenario
from simulators.shipped import DEFAULT_SCENARIO, shipped_scenario, shipped_scenarios
from simulators.traffic import Exchange, TrafficLog

__all__ = [
    "DEFAULT_SCENARIO",
    "Exchange",
    "SimDevice",
    "SimHost",
    "TrafficLog",
    "load_scenario",
    "shipped_scenario",
    "shipped_scenarios",
]
