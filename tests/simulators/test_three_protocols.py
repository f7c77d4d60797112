"""One plant served over Modbus, OPC UA and S7 at once (the shipped water tank: plc1, hmi, cpu1): the
same tags read the same through all three clients, and a write through any one is read through the others."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import bifrost
from bifrost.tags import Value
from simulators import SimHost

DEVICES = ("plc1", "hmi", "cpu1")
SHARED = ("tank.level", "pump.run", "valve.open")  # what every one of the three devices maps


@pytest.fixture(scope="module")
def plant() -> Iterator[SimHost]:
    with SimHost("water_tank", clock="virtual", any_port=True) as host:
        yield host


async def _read(host: SimHost, device: str) -> dict[str, Value | None]:
    served = host.devices[device]
    async with bifrost.connect(served.url, tags=served.tags) as plc:
        points = await plc.read_many(list(SHARED))
    return {name: point.value for name, point in points.items()}


async def _write(host: SimHost, device: str, tag: str, value: Value) -> None:
    served = host.devices[device]
    async with bifrost.connect(served.url, tags=served.tags) as plc:
        await plc.write(tag, value)


def test_the_three_protocols_read_the_same_values(plant: SimHost) -> None:
    plant.reset()
    plant.clock.advance(12.3)  # a level that is no round number
    readings = {device: asyncio.run(_read(plant, device)) for device in DEVICES}
    assert readings["hmi"] == pytest.approx(readings["plc1"])
    assert readings["cpu1"] == pytest.approx(readings["plc1"])
    assert readings["plc1"]["tank.level"] == pytest.approx(plant.plant.get("tank.level"), rel=1e-6)


@pytest.mark.parametrize(("writer", "value"), [("plc1", 61), ("hmi", 62), ("cpu1", 63)])
def test_a_write_through_one_is_read_through_the_others(plant: SimHost, writer: str, value: int) -> None:
    plant.reset()
    asyncio.run(_write(plant, writer, "valve.open", value))
    for device in DEVICES:
        assert asyncio.run(_read(plant, device))["valve.open"] == value, device
