"""DataPoint is on the hot path: what one costs to make, against a tuple, the slotted Python class it
used to be, and a pydantic model. Rounds are interleaved, so every row meets the same machine.

python bench/bench_datapoint.py
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable

from pydantic import BaseModel

from bifrost import DataPoint, Quality
from bifrost.tags import Value


class PydanticPoint(BaseModel):
    value: float
    quality: Quality
    timestamp: float


class SlottedPoint:
    """The Python DataPoint as it was before it moved to Rust (bifrost/tags.py)."""

    __slots__ = ("quality", "timestamp", "value")

    def __init__(self, value: Value | None, quality: Quality = Quality.GOOD, timestamp: float | None = None) -> None:
        self.value = value
        self.quality = quality
        self.timestamp = time.time() if timestamp is None else timestamp


def main(number: int = 200_000, rounds: int = 7) -> None:
    good = Quality.GOOD
    stmts: dict[str, Callable[[], object]] = {
        "tuple (floor)": lambda: (1.5, good, 0.0),
        "DataPoint (Rust)": lambda: DataPoint(1.5, good, 0.0),
        "slotted Python class": lambda: SlottedPoint(1.5, good, 0.0),
        "pydantic model": lambda: PydanticPoint(value=1.5, quality=good, timestamp=0.0),
        "DataPoint(v) (now)": lambda: DataPoint(1.5),
        "slotted(v) (now)": lambda: SlottedPoint(1.5),
    }
    best = dict.fromkeys(stmts, float("inf"))
    for _ in range(rounds):
        for name, stmt in stmts.items():
            best[name] = min(best[name], timeit.timeit(stmt, number=number) / number * 1e9)
    ours = best["DataPoint (Rust)"]
    print(f"DataPoint creation, ns per object (best of {rounds} interleaved rounds x {number:,})")
    for name, ns in best.items():
        print(f"  {name:22} {ns:8.1f} ns   DataPoint / this = {ours / ns:5.2f}x")
    print(f"  => {1e9 / ours / 1e6:.1f} million DataPoints per second on one core")
    print(f"  with no timestamp given: Rust / slotted = {best['DataPoint(v) (now)'] / best['slotted(v) (now)']:.2f}x")


if __name__ == "__main__":
    main()
