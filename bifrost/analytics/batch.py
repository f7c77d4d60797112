"""Batch functions over numpy arrays: downsampling for display, rolling statistics, counter deltas.

Inputs that are contiguous float64 (uint64 for counters) arrays are read in place; outputs are numpy
arrays that take over Rust's buffers, so neither way copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bifrost import _native
from bifrost.analytics._arrays import floats, numpy

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray

    from bifrost.analytics.operators import StatName


def lttb(y: ArrayLike, n_out: int, x: ArrayLike | None = None) -> NDArray[np.uint64]:
    """The indices of the `n_out` points Largest-Triangle-Three-Buckets keeps (x None: the index is x)."""
    return _native.lttb(None if x is None else floats(x, "x"), floats(y, "y"), n_out)


def minmax_lttb(y: ArrayLike, n_out: int, x: ArrayLike | None = None, *, ratio: int = 4) -> NDArray[np.uint64]:
    """The indices MinMaxLTTB keeps: min and max of `n_out * ratio / 2` bins, then LTTB to `n_out`."""
    return _native.minmax_lttb(None if x is None else floats(x, "x"), floats(y, "y"), n_out, ratio)


def rolling(values: ArrayLike, window: int, stat: StatName = "mean") -> NDArray[np.float64]:
    """`stat` over the last `window` non-NaN values, one per value; NaN where the value is NaN or the window
    is not yet full (as polars' `rolling_*` with `min_periods = window`)."""
    return _native.rolling(floats(values, "values"), window, stat)


def counter_delta(
    values: ArrayLike, bits: int = 64, *, max_delta: int | None = None
) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """Exact counter deltas of unsigned readings through `bits`-bit rollover: (index of the reading each delta
    ends at, deltas). Readings beyond the counter's width are skipped."""
    readings = numpy().ascontiguousarray(values, dtype="uint64")
    return _native.counter_delta(readings, bits, max_delta)
