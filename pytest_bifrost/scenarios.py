"""Which scenario file a `bifrost_scenario` mark names."""

from __future__ import annotations

import os
from pathlib import Path

SUFFIXES = (".yaml", ".yml")


class ScenarioNotFound(LookupError):
    """A mark names no scenario file; the message says where it looked and what is there."""


def looks_like_path(ref: str | os.PathLike[str]) -> bool:
    text = os.fspath(ref)
    return not isinstance(ref, str) or "/" in text or os.sep in text or text.endswith(SUFFIXES)


def resolve_scenario(ref: str | os.PathLike[str], *, scenarios_dir: Path | None, base: Path) -> Path:
    """A stem is looked up in `scenarios_dir`, then among the shipped scenarios; a path is taken
    relative to `base` (the folder of the test file that carries the mark)."""
    from simulators.shipped import shipped_scenarios

    if looks_like_path(ref):
        path = (base / os.fspath(ref)).resolve()
        if not path.is_file():
            raise ScenarioNotFound(f"bifrost_scenario({os.fspath(ref)!r}): no scenario file at {path}")
        return path
    stem = str(ref)
    if scenarios_dir is not None:
        for suffix in SUFFIXES:
            candidate = scenarios_dir / (stem + suffix)
            if candidate.is_file():
                return candidate
    shipped = shipped_scenarios()
    if stem in shipped:
        return shipped[stem]
    mine = sorted({p.stem for suffix in SUFFIXES for p in scenarios_dir.glob("*" + suffix)}) if scenarios_dir else []
    looked = f"{scenarios_dir} has: {', '.join(mine) or '(none)'}; " if scenarios_dir else "no --bifrost-scenarios; "
    raise ScenarioNotFound(
        f"bifrost_scenario({stem!r}): no scenario of that name. {looked}shipped: {', '.join(shipped) or '(none)'}. "
        "A path to a file (e.g. 'plant.yaml', relative to the test file) works too."
    )
