"""Every streaming operator against its plain-Python reference (analytics_reference.py), under hypothesis.

Points come with gaps, NaN, Bad quality, repeated and out-of-order timestamps. Where the Rust code does the
same arithmetic as the reference (bands, doors, counters, rates, medians, interval min/max) the results are
equal exactly. Where only the rounding differs (Welford's running mean and variance against math.fsum and
statistics, the TWA's running integral against a sum of overlaps, EWMA), the stated tolerance is
|rust - reference| <= 1e-9 * (1 + max |v|) for means, sums, TWA and EWMA, and 1e-6 * (1 + max |v|) for
standard deviations; z-scores are compared where the window's spread is above 1e-3 * (1 + max |v|)
(below it a score is a ratio of rounding errors).
"""

from __future__ import annotations

import math

import analytics_reference as ref
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    counter_delta,
)
from bifrost.errors import ConfigError

VALUES = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.integers(-5, 5).map(float),  # repeats: flat stretches, zero spread
    st.just(math.nan),
)
STEPS = st.lists(
    st.tuples(
        st.one_of(st.floats(0.001, 30.0), st.just(0.0), st.floats(-5.0, 0.0)),  # gaps, repeats, going back
        VALUES,
        st.sampled_from([True, True, True, True, False]),
    ),
    max_size=120,
)


def timeline(steps: list[tuple[float, float, bool]]) -> list[ref.Point]:
    t, points = 1000.0, []
    for dt, v, good in steps:
        t += dt
        points.append((t, v, good))
    return points


def run(stage: Stage, points: list[ref.Point]) -> list[tuple[float, float]]:
    t = np.array([p[0] for p in points], dtype=np.float64)
    v = np.array([p[1] for p in points], dtype=np.float64)
    good = np.array([p[2] for p in points], dtype=np.bool_)
    out_t, out_v = stage.process(t, v, good)
    return list(zip(out_t.tolist(), out_v.tolist(), strict=False))


def scale(points: list[ref.Point]) -> float:
    return 1.0 + max((abs(v) for _, v, _ in points if math.isfinite(v)), default=0.0)


def assert_close(got: list[tuple[float, float]], want: list[tuple[float, float]], tolerance: float) -> None:
    assert [t for t, _ in got] == [t for t, _ in want]
    for (t, a), (_, b) in zip(got, want, strict=False):
        if math.isnan(b) or math.isinf(b):
            assert a == b or (math.isnan(a) and math.isnan(b)), (t, a, b)
        else:
            assert abs(a - b) <= tolerance, (t, a, b, tolerance)


@given(STEPS, st.floats(0.0, 1e5), st.none() | st.floats(0.5, 100.0))
def test_deadband_absolute(steps: list[tuple[float, float, bool]], width: float, silence: float | None) -> None:
    points = timeline(steps)
    assert run(Deadband(absolute=width, max_silence=silence), points) == ref.deadband(points, width, silence)


@given(STEPS, st.floats(0.0, 50.0), st.floats(-1e3, 1e3), st.floats(1.0, 1e4))
def test_deadband_percent_of_span(steps: list[tuple[float, float, bool]], pct: float, low: float, width: float) -> None:
    points = timeline(steps)
    high = low + width
    stage = Deadband(percent=pct, span=(low, high))
    assert run(stage, points) == ref.deadband(points, pct / 100 * (high - low))


@given(STEPS, st.floats(0.0, 1e5), st.none() | st.floats(0.5, 100.0))
def test_swinging_door(steps: list[tuple[float, float, bool]], deviation: float, longest: float | None) -> None:
    points = timeline(steps)
    assert run(SwingingDoor(deviation, longest), points) == ref.swinging_door(points, deviation, longest)


@given(STEPS, st.floats(0.0, 1e5))
def test_swinging_door_error_bound(steps: list[tuple[float, float, bool]], deviation: float) -> None:
    """The bound the Rust docs prove: each good point within E of the line between the kept points around it."""
    points = timeline(steps)
    kept = run(SwingingDoor(deviation), points)
    good = ref.good_only(points)
    if not good:
        assert kept == []
        return
    assert kept[0] == good[0] and kept[-1] == good[-1]
    segment = 0
    for t, v in good:
        while segment + 1 < len(kept) - 1 and kept[segment + 1][0] < t:
            segment += 1
        if len(kept) > 1:
            (ta, va), (tb, vb) = kept[segment], kept[segment + 1]
            line = va + (vb - va) * (t - ta) / (tb - ta)
            assert abs(line - v) <= deviation + 1e-9 * (1 + abs(v)), (t, v, line)


@given(STEPS, st.floats(0.0, 1e5))
def test_boxcar_backslope(steps: list[tuple[float, float, bool]], deviation: float) -> None:
    points = timeline(steps)
    assert run(BoxcarBackslope(deviation), points) == ref.boxcar_backslope(points, deviation)


@pytest.mark.parametrize("stat", ["mean", "sum", "min", "max", "std", "count"])
@given(steps=STEPS, count=st.integers(1, 8))
def test_rolling_count(stat: str, steps: list[tuple[float, float, bool]], count: int) -> None:
    points = timeline(steps)
    tolerance = (1e-6 if stat == "std" else 1e-9) * scale(points) * count
    assert_close(run(Rolling(count=count, stat=stat), points), ref.rolling_count(points, count, stat), tolerance)  # type: ignore[arg-type]


@pytest.mark.parametrize("stat", ["mean", "sum", "min", "max", "std", "count"])
@given(steps=STEPS, duration=st.floats(0.5, 60.0))
def test_rolling_duration(stat: str, steps: list[tuple[float, float, bool]], duration: float) -> None:
    points = timeline(steps)
    tolerance = (1e-6 if stat == "std" else 1e-9) * scale(points) * len(points)
    got = run(Rolling(duration=duration, stat=stat), points)  # type: ignore[arg-type]
    assert_close(got, ref.rolling_duration(points, duration, stat), tolerance)


@pytest.mark.parametrize("stat", ["mean", "sum", "min", "max", "std", "count"])
@given(steps=STEPS, interval=st.sampled_from([1.0, 10.0, 60.0, 0.25]))
def test_aggregate(stat: str, steps: list[tuple[float, float, bool]], interval: float) -> None:
    points = timeline(steps)
    tolerance = (1e-6 if stat == "std" else 1e-9) * scale(points) * len(points)
    got = run(Aggregate(interval, stat=stat), points)  # type: ignore[arg-type]
    assert_close(got, ref.aggregate(points, interval, stat), tolerance)


@given(steps=STEPS, interval=st.sampled_from([1.0, 10.0, 60.0, 0.25]))
def test_time_weighted_average(steps: list[tuple[float, float, bool]], interval: float) -> None:
    points = timeline(steps)
    got = run(Aggregate(interval, stat="twa"), points)
    assert_close(got, ref.twa(points, interval), 1e-9 * scale(points) * (len(points) + 1))


def test_time_weighted_average_example() -> None:
    """One value per minute, weighted by how long each value held (not the mean of the samples)."""
    points = [(0.0, 10.0, True), (50.0, 70.0, True), (60.0, 70.0, True), (90.0, 0.0, False), (120.0, 1.0, True)]
    assert run(Aggregate(60.0, stat="twa"), points) == [(0.0, 20.0), (60.0, 70.0)]


@given(STEPS, st.sampled_from([1.0, 60.0]))
def test_rate_of_change(steps: list[tuple[float, float, bool]], per: float) -> None:
    points = timeline(steps)
    assert run(RateOfChange(per), points) == ref.rate_of_change(points, per)


@pytest.mark.parametrize("bits", [16, 32, 64])
@given(data=st.data())
def test_counter_delta(bits: int, data: st.DataObject) -> None:
    top = (1 << bits) - 1
    near = st.integers(max(0, top - 1000), top)
    readings = data.draw(st.lists(st.one_of(st.integers(0, top), near, st.integers(0, 1000)), max_size=60))
    max_delta = data.draw(st.none() | st.integers(0, top))
    points = [(float(i), float(r), True) for i, r in enumerate(readings)]
    want = ref.counter_delta(readings, bits, max_delta)
    if bits < 64:  # the float path is exact below 2^53
        got = run(CounterDelta(bits, max_delta), points)  # type: ignore[arg-type]
        assert [v for _, v in got] == [float(d) for d in want]
    _, deltas = counter_delta(np.array(readings, dtype=np.uint64), bits, max_delta=max_delta)
    assert deltas.tolist() == want


def test_counter_rollover_edges() -> None:
    points = [(0.0, 65535.0, True), (1.0, 2.0, True), (2.0, 70000.0, True), (3.0, 5.0, True), (4.0, 1.5, True)]
    assert [v for _, v in run(CounterDelta(16), points)] == [3.0, 3.0]
    at, deltas = counter_delta(np.array([2**64 - 2, 1, 1], dtype=np.uint64), 64)
    assert at.tolist() == [1, 2] and deltas.tolist() == [3, 0]
    at, deltas = counter_delta(np.array([4_000_000_000, 10], dtype=np.uint64), 32, max_delta=1_000_000)
    assert deltas.tolist() == [10]  # a reset, not a rollover


@given(
    STEPS, st.one_of(st.floats(0.01, 1.0).map(lambda a: ("alpha", a)), st.floats(0.1, 100.0).map(lambda x: ("tau", x)))
)
def test_ewma(steps: list[tuple[float, float, bool]], smoothing: tuple[str, float]) -> None:
    points = timeline(steps)
    name, value = smoothing
    stage = Ewma(alpha=value) if name == "alpha" else Ewma(tau=value)
    want = ref.ewma(points, alpha=value) if name == "alpha" else ref.ewma(points, tau=value)
    assert_close(run(stage, points), want, 1e-9 * scale(points))


@given(STEPS, st.integers(2, 10))
def test_zscore(steps: list[tuple[float, float, bool]], window: int) -> None:
    points = timeline(steps)
    got, want = run(ZScore(window), points), ref.zscore(points, window)
    assert [t for t, _ in got] == [t for t, _ in want]
    good = ref.good_only(points)
    for i, ((_, a), (_, b)) in enumerate(zip(got, want, strict=False)):
        past = [v for _, v in good[i : i + window]]
        if ref.statistics.stdev(past) > 1e-3 * scale(points):
            assert abs(a - b) <= 1e-6 * (1 + abs(b)), (a, b)


@given(STEPS, st.integers(2, 10), st.none() | st.floats(0.0, 5.0))
def test_mad(steps: list[tuple[float, float, bool]], window: int, threshold: float | None) -> None:
    points = timeline(steps)
    assert run(Mad(window, threshold), points) == ref.mad(points, window, threshold)


def test_zscore_threshold_yields_events_only() -> None:
    values = [10.0, 11.0, 10.0, 11.0, 10.0, 11.0, 10.5, 30.0, 10.0, -20.0]
    points = [(float(i), v, True) for i, v in enumerate(values)]
    events = run(ZScore(6, threshold=3.0), points)
    assert [t for t, _ in events] == [t for t, _ in ref.zscore(points, 6, 3.0)] == [7.0, 9.0]
    assert events[0][1] > 3.0 and events[1][1] < -3.0


def test_out_of_order_points_are_rejected_not_reordered() -> None:
    pipeline = Pipeline(Deadband(absolute=0.0))
    t = np.array([1.0, 2.0, 1.5, 2.0, math.nan, 3.0])
    v = np.array([1.0, 2.0, 9.0, 9.0, 9.0, 3.0])
    out_t, out_v = pipeline.process(t, v, tag="x")
    assert out_t.tolist() == [1.0, 2.0, 3.0] and out_v.tolist() == [1.0, 2.0, 3.0]
    assert pipeline.stats() == {"x": (3, 0)}
    # Chunks of one stream keep their state: a chunk that goes back in time is rejected too.
    out_t, _ = pipeline.process(np.array([2.5, 4.0]), np.array([7.0, 7.0]), tag="x")
    assert out_t.tolist() == [4.0]


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        (Deadband(), "deadband: give exactly one of absolute, percent"),
        (Deadband(percent=1.0, span=(5.0, 5.0)), "span needs low < high"),
        (SwingingDoor(-1.0), "swinging_door: deviation must be a finite number >= 0"),
        (Rolling(count=0), "rolling: count must be >= 1"),
        (Rolling(count=3, stat="twa"), "twa is an interval statistic"),
        (Aggregate(0.0), "aggregate: interval must be > 0"),
        (Aggregate(1.0, stat="median"), "stat must be one of"),  # type: ignore[arg-type]
        (CounterDelta(bits=8), "bits must be 16, 32 or 64"),  # type: ignore[arg-type]
        (Ewma(alpha=0.0), "ewma: alpha must be in (0, 1]"),
        (ZScore(1), "zscore: window must be >= 2"),
    ],
)
def test_bad_parameters_name_the_stage_and_field(stage: Stage, message: str) -> None:
    with pytest.raises(ConfigError, match="stage 1: ") as error:
        Pipeline(Ewma(alpha=0.5), stage)
    assert message in str(error.value)
