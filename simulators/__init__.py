"""Virtual PLCs that speak the real protocols on real sockets, driven by scenario files."""

from __future__ import annotations

from simulators.scenario import load_scenario
from simulators.shipped import DEFAULT_SCENARIO, shipped_scenario, shipped_scenarios

__all__ = ["DEFAULT_SCENARIO", "load_scenario", "shipped_scenario", "shipped_scenarios"]
