"""bifrost.analytics against pure Python and against the libraries of the field, in one run.

    python3 bench/bench_analytics.py [--points 200000] [--big 10000000] [--repeat 3]

1. Each streaming operator (Rust, fed arrays chunk by chunk through a Pipeline, state kept) against its
   plain-Python reference (tests/bifrost/analytics/analytics_reference.py) on the same points: points/s.
   Also the DataPoint path (Pipeline.apply over subscribe()-style batches) against a Python deadband.
2. LTTB and MinMaxLTTB of --big float64 points to 1,000 against tsdownsample (single-threaded, as ours).
3. rolling mean (window 100) over --big points against polars' Series.rolling_mean.

Targets: streaming >= 50x its reference; downsampling and rolling mean at least as fast as the peer
(ratio >= 1). A benchmark prints; it never asserts. Peers: `pip install -e ".[dev,bench]"`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "bifrost" / "analytics"))

import analytics_reference as ref

from bifrost import DataPoint, Quality
from bifrost.analytics import (
    Aggregate,
    BoxcarBackslope,
    CounterDelta,
    Deadband,
    Ewma,
    Mad,
    Pipeline,
    RateOfChange,
    Rolling,
    Stage,
    SwingingDoor,
    ZScore,
    lttb,
    minmax_lttb,
    rolling,
)


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def signal(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = 1.7e9 + np.arange(n, dtype=np.float64)
    v = np.cumsum(rng.normal(0.0, 0.3, n)) + 5.0 * np.sin(np.arange(n) / 500.0)
    good = rng.random(n) > 0.01  # one Bad point in a hundred
    return t, v, good


STREAMING: list[tuple[str, Stage, Callable[[list[ref.Point]], object]]] = [
    ("deadband", Deadband(absolute=0.5, max_silence=60.0), lambda p: ref.deadband(p, 0.5, 60.0)),
    ("swinging door", SwingingDoor(0.5), lambda p: ref.swinging_door(p, 0.5)),
    ("boxcar/backslope", BoxcarBackslope(0.5), lambda p: ref.boxcar_backslope(p, 0.5)),
    ("rolling mean, 60 points", Rolling(count=60), lambda p: ref.rolling_count(p, 60, "mean")),
    ("rolling std, 60 s", Rolling(duration=60.0, stat="std"), lambda p: ref.rolling_duration(p, 60.0, "std")),
    ("aggregate max, 1 min", Aggregate(60.0, stat="max"), lambda p: ref.aggregate(p, 60.0, "max")),
    ("time-weighted avg, 1 min", Aggregate(60.0, stat="twa"), lambda p: ref.twa(p, 60.0)),
    ("rate of change", RateOfChange(), lambda p: ref.rate_of_change(p)),
    # The same work as the Rust side: the shared rules (order, quality), then the integer deltas.
    ("counter delta, 16-bit", CounterDelta(16), lambda p: ref.counter_delta([int(v) for _, v in ref.good_only(p)], 16)),
    ("ewma, tau 30 s", Ewma(tau=30.0), lambda p: ref.ewma(p, tau=30.0)),
    ("z-score, 60 points", ZScore(60, threshold=3.0), lambda p: ref.zscore(p, 60, 3.0)),
    ("MAD score, 60 points", Mad(60, threshold=3.5), lambda p: ref.mad(p, 60, 3.5)),
]


def bench_streaming(n: int, repeat: int) -> list[float]:
    t, v, good = signal(n)
    counter = np.mod(np.cumsum(np.random.default_rng(3).integers(0, 500, n)), 65536).astype(np.float64)
    print(f"\n1. streaming operators, {n:,} points (1 % Bad), Rust in chunks of 10,000 vs the Python reference")
    print(f"{'operator':<28}{'Rust pts/s':>14}{'Python pts/s':>14}{'ratio':>9}")
    ratios = []
    for name, stage, reference in STREAMING:
        values = counter if isinstance(stage, CounterDelta) else v
        points = list(zip(t.tolist(), values.tolist(), good.tolist(), strict=True))

        def rust(stage: Stage = stage, values: np.ndarray = values) -> None:
            pipeline = Pipeline(stage)
            for i in range(0, n, 10_000):
                pipeline.process(t[i : i + 10_000], values[i : i + 10_000], good[i : i + 10_000])
            pipeline.flush()

        rust_time = best(rust, repeat)
        python_time = best(lambda points=points, reference=reference: reference(points), repeat)
        ratio = python_time / rust_time
        ratios.append(ratio)
        print(f"{name:<28}{n / rust_time:>14,.0f}{n / python_time:>14,.0f}{ratio:>8.0f}x")
    print(f"{'geometric mean':<56}{math.exp(sum(map(math.log, ratios)) / len(ratios)):>8.0f}x  (target >= 50x)")
    return ratios


def bench_datapoints(repeat: int) -> None:
    """Python objects in and out: the cost is mostly building and reading DataPoints."""
    tags, rounds = 100, 200
    rng = np.random.default_rng(5)
    batches = [
        {f"tag{j}": DataPoint(float(x), Quality.GOOD, float(i)) for j, x in enumerate(rng.normal(0, 1, tags))}
        for i in range(rounds)
    ]

    def rust() -> None:
        pipeline = Pipeline(Deadband(absolute=0.5))
        for batch in batches:
            pipeline.apply(batch)

    def python() -> None:
        last: dict[str, float] = {}
        for batch in batches:
            out = {}
            for tag, point in batch.items():
                value = point.value
                if point.good and isinstance(value, float) and (tag not in last or abs(value - last[tag]) > 0.5):
                    last[tag] = value
                    out[tag] = [point]

    n = tags * rounds
    rust_time, python_time = best(rust, repeat), best(python, repeat)
    print(
        f"\n   DataPoint batches ({tags} tags x {rounds}), deadband: Rust {n / rust_time:,.0f} pts/s, "
        f"an inline Python deadband {n / python_time:,.0f} pts/s, ratio {python_time / rust_time:.1f}x"
    )


def bench_downsampling(n: int, repeat: int) -> None:
    from tsdownsample import LTTBDownsampler, MinMaxLTTBDownsampler

    _, y, _ = signal(n, seed=11)
    x = np.arange(n, dtype=np.float64) * 0.1
    print(f"\n2. downsampling {n:,} float64 points to 1,000 (ratio >= 1: at least as fast as tsdownsample)")
    print(f"{'':<24}{'bifrost ms':>12}{'tsdownsample ms':>17}{'ratio':>9}")
    cases = [
        ("LTTB, y only", lambda: lttb(y, 1000), lambda: LTTBDownsampler().downsample(y, n_out=1000)),
        ("LTTB, x and y", lambda: lttb(y, 1000, x), lambda: LTTBDownsampler().downsample(x, y, n_out=1000)),
        ("MinMaxLTTB, y only", lambda: minmax_lttb(y, 1000), lambda: MinMaxLTTBDownsampler().downsample(y, n_out=1000)),
        (
            "MinMaxLTTB, x and y",
            lambda: minmax_lttb(y, 1000, x),
            lambda: MinMaxLTTBDownsampler().downsample(x, y, n_out=1000),
        ),
    ]
    for name, ours, theirs in cases:
        ours_time, their_time = best(ours, repeat), best(theirs, repeat)
        print(f"{name:<24}{ours_time * 1e3:>12.1f}{their_time * 1e3:>17.1f}{their_time / ours_time:>8.2f}x")


def bench_rolling(n: int, repeat: int) -> None:
    import polars as pl

    _, y, _ = signal(n, seed=13)
    series = pl.Series(y)
    ours_time = best(lambda: rolling(y, 100), repeat)
    their_time = best(lambda: series.rolling_mean(100), repeat)
    same = np.allclose(rolling(y, 100)[99:], series.rolling_mean(100).to_numpy()[99:], rtol=1e-9, atol=1e-9)
    print(f"\n3. rolling mean, window 100, {n:,} points (ratio >= 1: at least as fast as polars); equal: {same}")
    print(f"{'bifrost':<24}{ours_time * 1e3:>12.1f} ms\n{'polars':<24}{their_time * 1e3:>12.1f} ms")
    print(f"{'ratio':<24}{their_time / ours_time:>11.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--big", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bench_streaming(args.points, args.repeat)
    bench_datapoints(args.repeat)
    bench_downsampling(args.big, max(args.repeat, 5))
    bench_rolling(args.big, max(args.repeat, 5))


if __name__ == "__main__":
    main()
