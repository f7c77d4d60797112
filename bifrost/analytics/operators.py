"""The stages of a pipeline: each one names a Rust operator of bifrost-analytics and its parameters.

Every stage is immutable and holds no state: the state is made, per tag, by the Pipeline that runs it.
`stage.process(t, v)` runs one fresh operator over arrays and flushes it (the batch form); `a | b` is
`Pipeline(a, b)`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray

    from bifrost.analytics.pipeline import Pipeline

StatName = Literal["mean", "min", "max", "std", "sum", "count", "twa"]
Params = dict[str, float | int | str | None]


@dataclass(frozen=True)
class Stage:
    """Base of the stages: `kind` names the Rust operator, the fields are its parameters."""

    kind: ClassVar[str] = ""

    def params(self) -> Params:
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def spec(self) -> tuple[str, Params]:
        return self.kind, self.params()

    def __or__(self, other: Stage | Pipeline) -> Pipeline:
        from bifrost.analytics.pipeline import Pipeline

        return Pipeline(self, *(other.stages if isinstance(other, Pipeline) else (other,)))

    def process(
        self, t: ArrayLike, v: ArrayLike, good: ArrayLike | None = None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """This stage over whole arrays, flushed at the end: (timestamps, values) of what it releases."""
        from bifrost.analytics.pipeline import Pipeline

        return Pipeline(self).process(t, v, good, flush=True)


@dataclass(frozen=True)
class Deadband(Stage):
    """Report a value when it moves more than `absolute`, or `percent` of `span` (low, high), from the last
    reported one; and the next point after `max_silence` seconds without a report (a heartbeat)."""

    absolute: float | None = None
    percent: float | None = None
    span: tuple[float, float] | None = None
    max_silence: float | None = None
    kind: ClassVar[str] = "deadband"

    def params(self) -> Params:
        low, high = self.span if self.span is not None else (None, None)
        return {
            "absolute": self.absolute,
            "percent": self.percent,
            "low": low,
            "high": high,
            "max_silence": self.max_silence,
        }


@dataclass(frozen=True)
class SwingingDoor(Stage):
    """Swinging door compression: the points kept are such that every point dropped is within `deviation`
    of the straight line between the kept points around it (proved in the Rust docs, held by tests).
    `max_interval`: the longest time between two kept points."""

    deviation: float
    max_interval: float | None = None
    kind: ClassVar[str] = "swinging_door"


@dataclass(frozen=True)
class BoxcarBackslope(Stage):
    """Boxcar/backslope compression: a point is kept when it leaves both the boxcar (`deviation` around the
    last kept value) and the backslope (`deviation` around the line through the last two kept points)."""

    deviation: float
    kind: ClassVar[str] = "boxcar_backslope"


@dataclass(frozen=True)
class Rolling(Stage):
    """A sliding window over the last `count` good points (released once full) or the last `duration`
    seconds, releasing `stat` (mean, min, max, std, sum, count) after every good point."""

    count: int | None = None
    duration: float | None = None
    stat: StatName = "mean"
    kind: ClassVar[str] = "rolling"


@dataclass(frozen=True)
class Aggregate(Stage):
    """Tumbling intervals of `interval` seconds on the epoch, one value each, stamped with the interval's
    start: `stat` of the interval's good points, or `twa`, the time-weighted average (each value weighted
    by how long it held)."""

    interval: float
    stat: StatName = "mean"
    kind: ClassVar[str] = "aggregate"


@dataclass(frozen=True)
class RateOfChange(Stage):
    """The slope between consecutive good points, per `per` seconds (60: per minute)."""

    per: float = 1.0
    kind: ClassVar[str] = "rate_of_change"


@dataclass(frozen=True)
class CounterDelta(Stage):
    """The increase of an unsigned `bits`-bit counter (16, 32, 64) between readings, through rollover;
    a wrapped increase above `max_delta` is read as a counter reset."""

    bits: Literal[16, 32, 64] = 32
    max_delta: int | None = None
    kind: ClassVar[str] = "counter_delta"


@dataclass(frozen=True)
class Ewma(Stage):
    """Exponentially weighted moving average: a weight `alpha` per point, or a time constant `tau` seconds."""

    alpha: float | None = None
    tau: float | None = None
    kind: ClassVar[str] = "ewma"


@dataclass(frozen=True)
class ZScore(Stage):
    """The z-score of each point against the `window` good points before it; with `threshold`, only the
    events (|score| > threshold)."""

    window: int
    threshold: float | None = None
    kind: ClassVar[str] = "zscore"


@dataclass(frozen=True)
class Mad(Stage):
    """The MAD score (modified z-score, 0.6745 (v - median) / MAD) against the `window` good points before
    each point; with `threshold`, only the events."""

    window: int
    threshold: float | None = None
    kind: ClassVar[str] = "mad"
