"""Start the demo plant on a virtual clock, run the pump for a minute of plant time, watch the tank fill.

    python examples/water_tank_pump.py

The same client code would run against a real PLC: only the URL changes.
"""

from __future__ import annotations

import asyncio

import bifrost
from bifrost import TagMap
from simulators import SimHost, shipped_scenario

SCENARIO = shipped_scenario("water_tank")


async def fill(url: str, host: SimHost) -> tuple[float, float]:
    tags = TagMap.from_scenario(SCENARIO, device="plc1")
    async with bifrost.connect(url, tags=tags) as plc:
        before = (await plc.read("tank.level")).value
        await plc.write("pump.run", True)
        host.clock.advance(60.0)  # a minute of plant time, at once: tests own the clock
        after = (await plc.read("tank.level")).value
        await plc.write("pump.run", False)
    assert isinstance(before, float) and isinstance(after, float)
    return before, after


def main() -> None:
    with SimHost(SCENARIO, clock="virtual", any_port=True) as host:
        url = host.devices["plc1"].url
        before, after = asyncio.run(fill(url, host))
        print(f"{url}: tank level {before:.1f} % -> {after:.1f} % after a minute of pumping")
        host.devices["plc1"].log.assert_no_errors()


if __name__ == "__main__":
    main()
