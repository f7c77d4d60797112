"""Virtual PLCs that speak the real protocols on real sockets, driven by scenario files."""

from __future__ import annotations

from simulators.shipped import DEFAULT_SCENARIO, shipped_scenario, shipped_scenarios

__all__ = ["DEFAULT_SCENARIO", "shipped_scenario", "shipped_scenarios"]
