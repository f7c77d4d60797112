"""A Pipeline: stages in series, with one state per tag kept in Rust (bifrost._native.NativePipeline)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import TYPE_CHECKING

from bifrost._native import NativePipeline
from bifrost.analytics._arrays import flags, floats, numpy
from bifrost.analytics.operators import Stage
from bifrost.tags import DataPoint

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray


class Pipeline:
    """Stages in series: each stage's output feeds the next. State is per tag and lives in Rust.

    Rules: timestamps must increase per tag: a point at or before the last one is rejected (dropped and
    counted in `stats()`, never reordered). A point whose quality is not GOOD, or whose value is not a
    number (NaN, None, a string), is skipped: it never enters a window, a door or a band.
    """

    def __init__(self, *stages: Stage) -> None:
        self.stages = stages
        self._native = NativePipeline([stage.spec() for stage in stages])

    def __or__(self, other: Stage | Pipeline) -> Pipeline:
        return Pipeline(*self.stages, *(other.stages if isinstance(other, Pipeline) else (other,)))

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(map(repr, self.stages))})"

    def apply(self, batch: Mapping[str, DataPoint]) -> dict[str, list[DataPoint]]:
        """Feed one `subscribe()` batch; the points released, by tag (tags that released nothing left out)."""
        return self._native.apply(batch if isinstance(batch, dict) else dict(batch))

    def push(self, tag: str, point: DataPoint) -> list[DataPoint]:
        """Feed one point of `tag`; the points it releases."""
        return self._native.push(tag, point)

    def flush(self) -> dict[str, list[DataPoint]]:
        """Release what the stages hold back (the swinging door's last point, an open interval), by tag."""
        return self._native.flush()

    def stats(self) -> dict[str, tuple[int, int]]:
        """Per tag: (points rejected as out of order, points skipped for quality)."""
        return self._native.stats()

    def process(
        self,
        t: ArrayLike,
        v: ArrayLike,
        good: ArrayLike | None = None,
        *,
        tag: str = "",
        flush: bool = False,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Feed arrays of points of `tag` (state kept across calls: chunks of one stream); arrays of the
        (timestamps, values) released. float64 contiguous arrays are read in place."""
        out_t, out_v = self._native.process(tag, floats(t, "t"), floats(v, "v"), flags(good, "good"))
        if not flush:
            return out_t, out_v
        held = self._native.flush().get(tag, [])
        np = numpy()
        return (
            np.concatenate([out_t, np.array([p.timestamp for p in held], dtype="float64")]),
            np.concatenate([out_v, np.array([p.value for p in held], dtype="float64")]),
        )

    async def batches(
        self, source: AsyncIterable[Mapping[str, DataPoint]], *, flush: bool = True
    ) -> AsyncIterator[dict[str, list[DataPoint]]]:
        """Apply the pipeline to each batch of `source` (a `subscribe()`), yielding non-empty results; when
        the source ends, what the stages hold back (if `flush`)."""
        async for batch in source:
            released = self.apply(batch)
            if released:
                yield released
        if flush and (held := self.flush()):
            yield held

    async def points(
        self, source: AsyncIterable[DataPoint], *, tag: str = "", flush: bool = True
    ) -> AsyncIterator[DataPoint]:
        """Apply the pipeline to an async iterator of DataPoints of one tag, yielding what it releases."""
        async for point in source:
            for released in self._native.push(tag, point):
                yield released
        if flush:
            for released in self.flush().get(tag, []):
                yield released
