"""Edge analytics: stateful per-tag streaming operators and batch functions, backed by bifrost._native.

Streaming: stages compose into a `Pipeline` applied to `subscribe()` batches, to any async iterator of
DataPoints, or to arrays chunk by chunk; each tag's state lives in Rust. Batch: numpy arrays in, numpy
arrays out (`lttb`, `minmax_lttb`, `rolling`, `counter_delta`, and `stage.process(t, v)` for any stage).
Arrays need numpy: `pip install "bifrost[analytics]"`. See docs/analytics.md.
"""

from __future__ import annotations

from bifrost.analytics.batch import counter_delta, lttb, minmax_lttb, rolling
from bifrost.analytics.operators import (
    Aggregate,
    BoxcarBackslope,
    CounterDelta,
    Deadband,
    Ewma,
    Mad,
    RateOfChange,
    Rolling,
    Stage,
    SwingingDoor,
    ZScore,
)
from bifrost.analytics.pipeline import Pipeline

__all__ = [
    "Aggregate",
    "BoxcarBackslope",
    "CounterDelta",
    "Deadband",
    "Ewma",
    "Mad",
    "Pipeline",
    "RateOfChange",
    "Rolling",
    "Stage",
    "SwingingDoor",
    "ZScore",
    "counter_delta",
    "lttb",
    "minmax_lttb",
    "rolling",
]
