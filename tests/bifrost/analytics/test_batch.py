"""Batch functions against the references: LTTB and MinMaxLTTB, rolling statistics; arrays without copies.

LTTB: each bucket's kept point must have the largest triangle (with the previous kept point and the next
bucket's mean), within 1e-9 relative plus 1e-12 * (1 + max |x|) * (1 + max |y|) absolute: the Rust inner
loop computes the same area in an expanded form, whose rounding is of that size, so near-ties may break
differently, and nothing else. Rolling: within
1e-9 * (1 + max |v|) * window (1e-6 for std).
"""

from __future__ import annotations

import math
import sys

import analytics_reference as ref
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bifrost import _native
from bifrost.analytics import Pipeline, SwingingDoor, lttb, minmax_lttb, rolling
from bifrost.analytics._arrays import floats
from bifrost.errors import ConfigError

FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
SERIES = hnp.arrays(np.float64, st.integers(3, 400), elements=st.one_of(FINITE, st.just(math.nan)) | FINITE)


def assert_lttb_optimal(x: list[float], y: list[float], n_out: int, kept: list[int]) -> None:
    assert kept[0] == 0 and kept[-1] == len(y) - 1 and len(kept) == n_out
    assert kept == sorted(set(kept))
    finite = [abs(v) for v in y if not math.isnan(v)]
    rounding = 1e-12 * (1 + max(map(abs, x))) * (1 + max(finite, default=0.0))
    for area, best in ref.lttb_areas(x, y, n_out, kept):
        if not math.isnan(best):
            assert area >= best * (1 - 1e-9) - rounding, (area, best)


@given(SERIES, st.integers(3, 50), st.booleans())
def test_lttb_keeps_the_largest_triangles(y: np.ndarray, n_out: int, with_x: bool) -> None:
    x = np.cumsum(np.linspace(0.5, 2.0, len(y))) if with_x else None
    kept = lttb(y, n_out, x).tolist()
    if len(y) <= n_out:
        assert kept == list(range(len(y)))
        return
    xs = x.tolist() if x is not None else [float(i) for i in range(len(y))]
    assert_lttb_optimal(xs, y.tolist(), n_out, kept)


@given(SERIES, st.integers(3, 20), st.sampled_from([2, 4, 8]))
def test_minmax_lttb_is_lttb_over_the_minmax_preselection(y: np.ndarray, n_out: int, ratio: int) -> None:
    kept = minmax_lttb(y, n_out, ratio=ratio).tolist()
    n = len(y)
    if n <= n_out or n - 2 <= n_out * ratio // 2 * 2:
        assert kept == lttb(y, n_out).tolist()
        return
    candidates = sorted(ref.minmax_candidates(y.tolist(), n_out, ratio))
    assert set(kept) <= set(candidates)
    sub = [candidates.index(i) for i in kept]
    assert_lttb_optimal([float(i) for i in candidates], [y[i] for i in candidates], n_out, sub)


def test_lttb_keeps_a_spike_and_checks_its_arguments() -> None:
    y = np.zeros(100_000)
    y[31_337] = -5.0
    assert 31_337 in lttb(y, 100).tolist() and 31_337 in minmax_lttb(y, 100).tolist()
    with pytest.raises(ConfigError, match="n_out must be >= 3"):
        lttb(y, 2)
    with pytest.raises(ConfigError, match="x and y differ in length"):
        lttb(y, 10, x=np.arange(5.0))


@pytest.mark.parametrize("stat", ["mean", "sum", "min", "max", "std", "count"])
@given(values=SERIES, window=st.integers(1, 12))
def test_rolling(stat: str, values: np.ndarray, window: int) -> None:
    got = rolling(values, window, stat)  # type: ignore[arg-type]
    want = ref.rolling_values(values.tolist(), window, stat)
    finite = values[~np.isnan(values)]
    tolerance = (1e-6 if stat == "std" else 1e-9) * (1 + (np.abs(finite).max() if finite.size else 0)) * window
    assert len(got) == len(want)
    for a, b in zip(got.tolist(), want, strict=False):
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tolerance, (a, b)


def test_rolling_mean_drifts_no_further_than_a_window() -> None:
    """The running sum is recomputed at every window: a huge value that has left leaves no residue."""
    values = np.concatenate([np.full(10, 1e15), np.full(1000, 1.0)])
    assert rolling(values, 10)[-1] == 1.0


def test_arrays_are_read_in_place_and_returned_without_a_copy() -> None:
    values = np.linspace(0.0, 1.0, 1000)
    assert floats(values, "v") is values  # contiguous float64: the same buffer goes to Rust
    strided = np.linspace(0.0, 1.0, 2000)[::2]
    assert floats(strided, "v") is not strided and np.array_equal(floats(strided, "v"), strided)
    out = rolling(values, 10)
    assert out.flags.owndata is False and out.base is not None  # numpy holds Rust's Vec as is
    with pytest.raises(ConfigError, match="t must be a contiguous 1-d array"):
        _native.NativeChain([]).process(strided, strided)


def test_a_missing_numpy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(ImportError, match=r"bifrost\[analytics\]"):
        Pipeline(SwingingDoor(1.0)).process([0.0, 1.0], [0.0, 1.0])
