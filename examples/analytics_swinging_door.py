"""Poll a simulated plant, compress what it reads with the swinging door, and plot original vs compressed.

    python examples/analytics_swinging_door.py [OUTPUT.png]

The water tank runs on a virtual clock: every poll moves plant time a quarter of a second, a little
controller in the loop starts the pump below 30 % and stops it above 70 %, and each poll's batch goes
through one Pipeline, which keeps a swinging door per tag (in Rust). The PNG needs matplotlib; without it
the plot is skipped with a message.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np

import bifrost
from bifrost import DataPoint
from bifrost.analytics import Pipeline, SwingingDoor
from simulators import SimHost, shipped_scenario

TAGS = ["tank.level", "temp"]
DEVIATION = 0.5  # percent of level and degrees: the error the compressed trend may have
POLLS, STEP = 1200, 0.25  # five minutes of plant time


async def poll(host: SimHost) -> tuple[dict[str, list[DataPoint]], dict[str, list[DataPoint]]]:
    plc1 = host.devices["plc1"]
    pipeline = Pipeline(SwingingDoor(DEVIATION))
    original: dict[str, list[DataPoint]] = {tag: [] for tag in TAGS}
    kept: dict[str, list[DataPoint]] = {tag: [] for tag in TAGS}
    async with bifrost.connect(plc1.url, tags=plc1.tags) as plc:
        pump = False
        for _ in range(POLLS):
            read = await plc.read_many(TAGS)
            # Stamped with plant time, so that the trend's axis is the plant's.
            batch = {tag: DataPoint(point.value, point.quality, host.clock.now()) for tag, point in read.items()}
            for tag, point in batch.items():
                original[tag].append(point)
            for tag, points in pipeline.apply(batch).items():
                kept[tag].extend(points)
            level = read["tank.level"].value
            assert isinstance(level, float)
            if pump != (level < 30 or (pump and level < 70)):
                pump = not pump
                await plc.write("pump.run", pump)
            host.clock.advance(STEP)
    for tag, points in pipeline.flush().items():
        kept[tag].extend(points)
    return original, kept


def arrays(points: list[DataPoint]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([p.timestamp for p in points]), np.array([float(p.value or 0.0) for p in points])


def plot(original: dict[str, list[DataPoint]], kept: dict[str, list[DataPoint]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plot (pip install matplotlib)")
        return
    figure, axes = plt.subplots(len(TAGS), 1, figsize=(10, 6), sharex=True)
    for ax, tag in zip(axes, TAGS, strict=True):
        (t, v), (kt, kv) = arrays(original[tag]), arrays(kept[tag])
        ax.plot(t, v, color="0.6", linewidth=2.5, label=f"original ({len(t)} points)")
        ax.plot(kt, kv, "o-", color="tab:red", markersize=3, linewidth=1, label=f"swinging door ({len(kt)} points)")
        ax.set_ylabel(tag)
        ax.legend(loc="best", framealpha=0.9)
    axes[-1].set_xlabel("plant time (s)")
    figure.suptitle(f"water tank, swinging door compression (deviation {DEVIATION})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"wrote {path}")


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "analytics_swinging_door.png"
    with SimHost(shipped_scenario("water_tank"), clock="virtual", any_port=True) as host:
        original, kept = asyncio.run(poll(host))
        host.devices["plc1"].log.assert_no_errors()
    for tag in TAGS:
        (t, v), (kt, kv) = arrays(original[tag]), arrays(kept[tag])
        error = np.max(np.abs(np.interp(t, kt, kv) - v))
        print(f"{tag}: {len(t)} points -> {len(kt)} kept ({len(t) / len(kt):.1f}:1), largest error {error:.3f}")
        assert error <= DEVIATION + 1e-9, "the swinging door's bound"
    plot(original, kept, path)


if __name__ == "__main__":
    main()
