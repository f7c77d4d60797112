"""DataPoint is on the hot path: what one costs to make, against a tuple and a pydantic model.

python bench/bench_datapoint.py
"""

from __future__ import annotations

import timeit

from pydantic import BaseModel

from bifrost import DataPoint, Quality


class PydanticPoint(BaseModel):
    value: float
    quality: Quality
    timestamp: float


def per_call(stmt: object, number: int = 200_000) -> float:
    best = min(timeit.repeat(stmt, number=number, repeat=5))  # type: ignore[arg-type]
    return best / number * 1e9


def main() -> None:
    good = Quality.GOOD
    rows = {
        "tuple (floor)": per_call(lambda: (1.5, good, 0.0)),
        "DataPoint": per_call(lambda: DataPoint(1.5, good, 0.0)),
        "pydantic model": per_call(lambda: PydanticPoint(value=1.5, quality=good, timestamp=0.0)),
    }
    ours = rows["DataPoint"]
    print("DataPoint creation, ns per object (best of 5 x 200,000)")
    for name, ns in rows.items():
        print(f"  {name:16} {ns:8.1f} ns   DataPoint / this = {ours / ns:5.2f}x")
    print(f"  => {1e9 / ours / 1e6:.1f} million DataPoints per second on one core")


if __name__ == "__main__":
    main()
