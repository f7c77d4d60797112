"""The scenario files shipped with Bifrost.

In the wheel they sit in `scenarios/` beside the `simulators` package (site-packages/scenarios);
in a source checkout, in the repository's `scenarios/`, which is also beside it. The code owns this
lookup rather than importing `scenarios` as a package, which a user's own `scenarios/` could shadow.
"""

from __future__ import annotations

from pathlib import Path

from bifrost.errors import ConfigError

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "scenarios"
DEFAULT_SCENARIO = "water_tank"


def shipped_scenarios() -> dict[str, Path]:
    """Shipped scenario files by stem, e.g. {"water_tank": Path(...)}."""
    return {path.stem: path for path in sorted(SHIPPED_DIR.glob("*.yaml"))}


def shipped_scenario(stem: str) -> Path:
    found = shipped_scenarios().get(stem)
    if found is None:
        known = ", ".join(shipped_scenarios()) or "(none found in " + str(SHIPPED_DIR) + ")"
        raise ConfigError(f"no shipped scenario {stem!r}; shipped: {known}")
    return found
