"""Durations as files and command lines write them: `250ms`, `2s`, `1.5min`, `1h`, or bare seconds."""

from __future__ import annotations

import math
import re

DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|h)\s*$")
UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}
HELP = "a duration such as 250ms, 2s, 1.5min, 1h, or a number of seconds"


def parse_duration(value: object, *, bare_text: bool = False) -> float:
    """Float seconds, never negative or infinite; a ValueError says what is expected.

    `bare_text`: also take a number written as text ("0.25", as a command line gives it)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := DURATION.match(value)):
        seconds = float(match.group(1)) * UNITS[match.group(2)]
    else:
        try:
            if not (bare_text and isinstance(value, str)):
                raise ValueError
            seconds = float(value)
        except ValueError:
            raise ValueError(f"expected {HELP}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected {HELP}, not negative or infinite")
    return seconds


__all__ = ["DURATION", "HELP", "UNITS", "parse_duration"]
