"""An hour of plant time on a VirtualClock, for each shipped scenario.

Prints the wall-clock seconds each hour took (target: well under 1 s) and how many times faster
than real time that is. It has no peer to compare with, so the ratio is against the wall clock.
Prints, never asserts: `python bench/bench_plant.py [--hours N] [--repeat N]`.
"""

from __future__ import annotations

import argparse
import time

from simulators import load_scenario, shipped_scenarios
from simulators.plant import Plant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="plant hours per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario; the best is shown")
    args = parser.parse_args()
    plant_seconds = args.hours * 3600
    print(f"{'scenario':<16}{'ticks':>8}{'best s':>9}{'per tick':>11}{'x real time':>13}")
    for stem, path in shipped_scenarios().items():
        scenario = load_scenario(path)
        plant = Plant(scenario)
        best = float("inf")
        for _ in range(args.repeat):
            plant.reset()
            started = time.perf_counter()
            plant.clock.advance(plant_seconds)
            best = min(best, time.perf_counter() - started)
        ticks = round(plant_seconds / scenario.clock.tick)
        print(f"{stem:<16}{ticks:>8}{best:>9.3f}{best / ticks * 1e6:>9.1f}us{plant_seconds / best:>12.0f}x")


if __name__ == "__main__":
    main()
