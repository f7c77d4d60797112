"""Pipelines over DataPoints: per-tag state, quality, subscribe() batches from a simulated PLC, async iterators."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import analytics_reference as ref
import numpy as np
import pytest

import bifrost
from bifrost import DataPoint, Quality
from bifrost.analytics import Aggregate, Deadband, Ewma, Pipeline, RateOfChange, Rolling, SwingingDoor
from simulators import SimHost


def test_each_tag_has_its_own_state() -> None:
    pipeline = Pipeline(Rolling(count=2, stat="sum"))
    assert pipeline.apply({"a": DataPoint(1.0, timestamp=1.0), "b": DataPoint(100, timestamp=1.0)}) == {}
    out = pipeline.apply({"a": DataPoint(2.0, timestamp=2.0), "b": DataPoint(200, timestamp=2.0)})
    assert {tag: [p.value for p in points] for tag, points in out.items()} == {"a": [3.0], "b": [300.0]}
    assert all(p.good and p.timestamp == 2.0 for points in out.values() for p in points)


def test_a_bad_point_does_not_poison_a_window() -> None:
    pipeline = Pipeline(Rolling(count=3, stat="mean"))
    values = [
        (1.0, Quality.GOOD),
        (1e12, Quality.BAD),
        (math.nan, Quality.GOOD),
        (None, Quality.GOOD),
        ("x", Quality.GOOD),
    ]
    values += [(2.0, Quality.UNCERTAIN), (3.0, Quality.GOOD), (5.0, Quality.GOOD)]
    released = [
        p for i, (value, quality) in enumerate(values) for p in pipeline.push("t", DataPoint(value, quality, float(i)))
    ]
    assert [(p.timestamp, p.value) for p in released] == [(7.0, 3.0)]
    assert pipeline.stats() == {"t": (0, 5)}


def test_stages_compose_and_flush() -> None:
    pipeline = SwingingDoor(0.01) | RateOfChange()
    assert isinstance(pipeline, Pipeline) and len((pipeline | Ewma(alpha=1.0)).stages) == 3
    points = [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (3.0, 0.0)]
    released = [p for t, v in points for p in pipeline.push("x", DataPoint(v, timestamp=t))]
    assert [(p.timestamp, p.value) for p in released] == [(2.0, 1.0)]
    assert [(p.timestamp, p.value) for p in pipeline.flush()["x"]] == [(3.0, -2.0)]


def test_streaming_in_chunks_equals_one_batch() -> None:
    rng = np.random.default_rng(7)
    t = np.cumsum(rng.uniform(0.1, 2.0, 5000))
    v = np.cumsum(rng.normal(0.0, 1.0, 5000))
    whole = SwingingDoor(0.5).process(t, v)
    pipeline = Pipeline(SwingingDoor(0.5))
    parts = [pipeline.process(t[i : i + 333], v[i : i + 333], tag="x") for i in range(0, 5000, 333)]
    held = pipeline.flush()["x"]
    chunked_t = np.concatenate([p[0] for p in parts] + [np.array([p.timestamp for p in held])])
    assert np.array_equal(chunked_t, whole[0])
    want = ref.swinging_door([(a, b, True) for a, b in zip(t.tolist(), v.tolist(), strict=False)], 0.5)
    assert whole[0].tolist() == [a for a, _ in want]


def test_async_iterator_of_points() -> None:
    async def source() -> AsyncIterator[DataPoint]:
        for i, v in enumerate([0.0, 0.2, 1.5, 1.6, 3.0]):
            yield DataPoint(v, timestamp=float(i))

    async def collect() -> list[DataPoint]:
        return [p async for p in Pipeline(Deadband(absolute=1.0)).points(source(), tag="level")]

    assert [p.value for p in asyncio.run(collect())] == [0.0, 1.5, 3.0]


def test_subscribe_batches_from_a_simulated_plc() -> None:
    """subscribe() batches from a real Modbus server; plant time moves half a second per batch. The pump is
    off and the drain open, so the tank level falls (and changes) at every batch."""
    with SimHost("water_tank", clock="virtual", any_port=True) as host:
        plc1 = host.devices["plc1"]
        # A narrower drain: the level stays above 20% (where the tank's controller starts the pump) for the
        # whole 15 s, so it falls at every batch.
        host.plant.set("valve.open", 20)

        async def run() -> tuple[list[dict[str, list[DataPoint]]], list[float]]:
            async with bifrost.connect(plc1.url, tags=plc1.tags) as plc:
                levels: list[float] = []

                async def batches() -> AsyncIterator[dict[str, DataPoint]]:
                    async for batch in plc.subscribe(["tank.level"], interval=0.005):
                        point = batch["tank.level"]
                        assert isinstance(point.value, float)
                        levels.append(point.value)
                        # Re-stamped with plant time, which moves only when the test says.
                        yield {"tank.level": DataPoint(point.value, point.quality, host.clock.now())}
                        if len(levels) == 30:
                            return
                        host.clock.advance(0.5)

                pipeline = Pipeline(Aggregate(5.0, stat="max"))
                return [out async for out in pipeline.batches(batches())], levels

        out, levels = asyncio.run(asyncio.wait_for(run(), timeout=60))
        maxima = [p.value for batch in out for p in batch["tank.level"]]
        # Three intervals of five seconds (ten batches each); the tank drains, so each maximum is the first
        # level of its interval.
        assert maxima == pytest.approx([levels[0], levels[10], levels[20]])
        assert maxima == sorted(maxima, reverse=True) and levels[-1] < levels[0]
