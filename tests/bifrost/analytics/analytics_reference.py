"""Plain-Python references of every bifrost.analytics operator, written for clarity, not speed.

Each takes the points of one tag as (t, v, good) and returns the (t, v) the operator releases, flushed
at the end. `accepted` applies the rules every operator shares: a timestamp not after the last accepted
one is rejected; a point not good, or NaN/infinite, is skipped. Where the Rust code's result depends on
its rounding (running sums, Welford's updates, the LTTB area), the tests compare within a stated
tolerance; where the arithmetic is the same, they compare exactly.

Used by tests/bifrost/analytics and by bench/bench_analytics.py.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections.abc import Iterable, Sequence

Point = tuple[float, float, bool]
Out = list[tuple[float, float]]


def accepted(points: Iterable[Point]) -> list[Point]:
    out: list[Point] = []
    last = -math.inf
    for t, v, good in points:
        if not t > last:  # also a NaN timestamp
            continue
        last = t
        out.append((t, v, good and math.isfinite(v)))
    return out


def good_only(points: Iterable[Point]) -> list[tuple[float, float]]:
    return [(t, v) for t, v, good in accepted(points) if good]


def deadband(points: Iterable[Point], width: float, max_silence: float | None = None) -> Out:
    out: Out = []
    for t, v in good_only(points):
        if not out or abs(v - out[-1][1]) > width or (max_silence is not None and t - out[-1][0] >= max_silence):
            out.append((t, v))
    return out


def swinging_door(points: Iterable[Point], deviation: float, max_interval: float | None = None) -> Out:
    out: Out = []
    anchor = held = None
    low = high = 0.0
    for t, v in good_only(points):
        if anchor is None:
            anchor = (t, v)
            out.append(anchor)
            continue
        if held is not None:
            dt = t - anchor[0]
            slope = (v - anchor[1]) / dt
            if low <= slope <= high and not (max_interval is not None and dt > max_interval):
                low = max(low, (v - deviation - anchor[1]) / dt)
                high = min(high, (v + deviation - anchor[1]) / dt)
                held = (t, v)
                continue
            out.append(held)
            anchor = held
        dt = t - anchor[0]
        low = (v - deviation - anchor[1]) / dt
        high = (v + deviation - anchor[1]) / dt
        held = (t, v)
    if held is not None:
        out.append(held)
    return out


def boxcar_backslope(points: Iterable[Point], deviation: float) -> Out:
    out: Out = []
    held = None

    def leaves(t: float, v: float) -> bool:
        last = out[-1]
        boxcar = abs(v - last[1]) > deviation
        if len(out) < 2:
            return boxcar
        before = out[-2]
        slope = (last[1] - before[1]) / (last[0] - before[0])
        return boxcar and abs(v - (last[1] + slope * (t - last[0]))) > deviation

    for t, v in good_only(points):
        if not out:
            out.append((t, v))
        elif not leaves(t, v):
            held = (t, v)
        elif held is not None:
            out.append(held)
            held = None
            if leaves(t, v):
                out.append((t, v))
            else:
                held = (t, v)
        else:
            out.append((t, v))
    if held is not None:
        out.append(held)
    return out


def _stat(values: Sequence[float], stat: str) -> float:
    if stat == "mean":
        return math.fsum(values) / len(values)
    if stat == "sum":
        return math.fsum(values)
    if stat == "min":
        return min(values)
    if stat == "max":
        return max(values)
    if stat == "count":
        return float(len(values))
    if stat == "std":
        return statistics.stdev(values) if len(values) >= 2 else math.nan
    raise ValueError(stat)


def rolling_count(points: Iterable[Point], count: int, stat: str) -> Out:
    good = good_only(points)
    return [(good[i][0], _stat([v for _, v in good[i + 1 - count : i + 1]], stat)) for i in range(count - 1, len(good))]


def rolling_duration(points: Iterable[Point], duration: float, stat: str) -> Out:
    good = good_only(points)
    times = [t for t, _ in good]
    out: Out = []
    for i, (t, _) in enumerate(good):
        start = bisect.bisect_right(times, t - duration, 0, i)
        out.append((t, _stat([v for _, v in good[start : i + 1]], stat)))
    return out


def aggregate(points: Iterable[Point], interval: float, stat: str) -> Out:
    bins: dict[int, list[float]] = {}
    for t, v in good_only(points):
        bins.setdefault(math.floor(t / interval), []).append(v)
    return [(k * interval, _stat(values, stat)) for k, values in sorted(bins.items())]


def twa(points: Iterable[Point], interval: float) -> Out:
    """Each good value holds from its time to the next accepted point's; a Bad point holds nothing. One
    value per interval that some value covered, up to the last point: each hold is split over the intervals
    it overlaps."""
    pts = accepted(points)
    area: dict[int, float] = {}
    covered: dict[int, float] = {}
    for (start, v, good), (end, _, _) in itertools.pairwise(pts):
        if not good:
            continue
        for k in range(math.floor(start / interval), math.floor(end / interval) + 1):
            overlap = min(end, (k + 1) * interval) - max(start, k * interval)
            if overlap > 0:
                area[k] = area.get(k, 0.0) + v * overlap
                covered[k] = covered.get(k, 0.0) + overlap
    return [(k * interval, area[k] / covered[k]) for k in sorted(area)]


def rate_of_change(points: Iterable[Point], per: float = 1.0) -> Out:
    good = good_only(points)
    return [(t, (v - pv) / (t - pt) * per) for (pt, pv), (t, v) in itertools.pairwise(good)]


def counter_delta(readings: Iterable[int], bits: int, max_delta: int | None = None) -> list[int]:
    modulus = 1 << bits
    out: list[int] = []
    last = None
    for reading in readings:
        if reading < 0 or reading >= modulus:
            continue
        if last is not None:
            delta = reading - last if reading >= last else reading + modulus - last
            out.append(reading if max_delta is not None and delta > max_delta else delta)
        last = reading
    return out


def ewma(points: Iterable[Point], alpha: float | None = None, tau: float | None = None) -> Out:
    out: Out = []
    for t, v in good_only(points):
        if not out:
            out.append((t, v))
            continue
        lt, lv = out[-1]
        a = alpha if alpha is not None else -math.expm1(-(t - lt) / (tau or 1.0))
        out.append((t, lv + a * (v - lv)))
    return out


def _score(distance: float, spread: float) -> float:
    if spread > 0:
        return distance / spread
    return 0.0 if distance == 0 else math.copysign(math.inf, distance)


def zscore(points: Iterable[Point], window: int, threshold: float | None = None) -> Out:
    good = good_only(points)
    out: Out = []
    for i in range(window, len(good)):
        past = [v for _, v in good[i - window : i]]
        score = _score(good[i][1] - statistics.fmean(past), statistics.stdev(past))
        if threshold is None or abs(score) > threshold:
            out.append((good[i][0], score))
    return out


def mad(points: Iterable[Point], window: int, threshold: float | None = None) -> Out:
    good = good_only(points)
    out: Out = []
    for i in range(window, len(good)):
        past = [v for _, v in good[i - window : i]]
        centre = statistics.median(past)
        spread = statistics.median([abs(x - centre) for x in past])
        score = _score(0.6745 * (good[i][1] - centre), spread)
        if threshold is None or abs(score) > threshold:
            out.append((good[i][0], score))
    return out


def rolling_values(values: Sequence[float], window: int, stat: str) -> list[float]:
    """The batch rolling statistic: over the last `window` non-NaN values; NaN at NaN or before full."""
    out: list[float] = []
    seen: list[float] = []
    for v in values:
        if math.isnan(v):
            out.append(math.nan)
            continue
        seen.append(v)
        out.append(_stat(seen[-window:], stat) if len(seen) >= window else math.nan)
    return out


def lttb_bounds(n: int, n_out: int) -> list[tuple[int, int]]:
    """The LTTB buckets [start, end) of the n - 2 inner points."""
    every = (n - 2) / (n_out - 2)

    def bound(i: int) -> int:
        return min(int(i * every) + 1, n - 1)

    return [(bound(i), bound(i + 1)) for i in range(n_out - 2)]


def triangle(a: tuple[float, float], p: tuple[float, float], c: tuple[float, float]) -> float:
    """Twice the area of the triangle a, p, c."""
    return abs((a[0] - c[0]) * (p[1] - a[1]) - (a[0] - p[0]) * (c[1] - a[1]))


def lttb_areas(x: Sequence[float], y: Sequence[float], n_out: int, kept: Sequence[int]) -> list[tuple[float, float]]:
    """Per bucket, (area of the point kept, best area), each with the previous point as `kept` has it."""
    n = len(y)
    buckets = lttb_bounds(n, n_out)
    result = []
    for i, (start, end) in enumerate(buckets):
        if i == len(buckets) - 1:
            c = (x[n - 1], y[n - 1])
        else:
            ns, ne = buckets[i + 1][0], max(buckets[i + 1][1], buckets[i + 1][0] + 1)
            ne = min(ne, n)
            ys = [v for v in y[ns:ne] if not math.isnan(v)]
            c = (math.fsum(x[ns:ne]) / (ne - ns), math.fsum(ys) / len(ys) if ys else math.nan)
        a = (x[kept[i]], y[kept[i]])
        areas = [triangle(a, (x[j], y[j]), c) for j in range(start, end)]
        best = max((area for area in areas if not math.isnan(area)), default=math.nan)
        result.append((triangle(a, (x[kept[i + 1]], y[kept[i + 1]]), c), best))
    return result


def minmax_candidates(y: Sequence[float], n_out: int, ratio: int) -> set[int]:
    """The points MinMaxLTTB's preselection keeps: the first min and the first max of each bin, and the ends."""
    n = len(y)
    bins = n_out * ratio // 2
    every = (n - 2) / bins
    chosen = {0, n - 1}
    for b in range(bins):
        start, end = int(b * every) + 1, min(int((b + 1) * every) + 1, n - 1)
        if start >= end:
            continue
        values = [(v, j) for j, v in enumerate(y[start:end], start) if not math.isnan(v)]
        if not values:
            chosen.add(start)
            continue
        low, high = min(v for v, _ in values), max(v for v, _ in values)
        chosen.add(next(j for v, j in values if v == low))
        chosen.add(next(j for v, j in values if v == high))
    return chosen
