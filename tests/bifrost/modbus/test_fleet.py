"""`bifrost.poll`: several devices polled in one Rust loop, one batch per cycle, against the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import bifrost
from bifrost.modbus.fleet import Columns
from simulators import SimHost, load_scenario

pytestmark = pytest.mark.asyncio

PLANT = """
scenario: fleet
tags:
  a: {type: uint16, init: 1}
  b: {type: float32, init: 2.5}
  c: {type: bool, init: true}
  d: {type: int16, init: -4}
devices:
  one:
    protocol: modbus
    listen: 127.0.0.1:0
    unit: 1
    map: {a: hr:0, b: hr:1, c: coil:0}
  two:
    protocol: modbus
    listen: 127.0.0.1:0
    unit: 2
    map: {d: hr:0}
"""
TAGS = {"one": ["a", "b", "c"], "two": ["d", "hr:50"]}  # hr:50 is not served by `two`: exception 2


@pytest.fixture
def host() -> Iterator[SimHost]:
    with SimHost(load_scenario(Path("fleet.yaml"), text=PLANT), any_port=True) as started:
        yield started


@asynccontextmanager
async def fleet(host: SimHost, engine: str = "native") -> AsyncIterator[dict[str, bifrost.Connection]]:
    connections = {}
    for name in ("one", "two"):
        device = host.devices[name]
        connections[name] = await bifrost.connect(device.url, tags=device.tags, engine=engine, timeout=5)
    try:
        yield connections
    finally:
        for connection in connections.values():
            await connection.close()


async def test_the_first_batch_holds_every_tag_then_only_changes(host: SimHost) -> None:
    async with fleet(host) as connections, bifrost.poll(connections, TAGS, interval=0.01, deadband=0.5) as batches:
        first = await asyncio.wait_for(batches.__anext__(), 10)
        assert isinstance(first, dict)
        assert {name: {tag: p.value for tag, p in points.items()} for name, points in first.items()} == {
            "one": {"a": 1, "b": 2.5, "c": True},
            "two": {"d": -4, "hr:50": None},
        }
        assert first["two"]["hr:50"].quality is bifrost.Quality.BAD
        assert isinstance(batches.errors["two"], bifrost.DeviceError) and batches.errors["two"].code == 2
        host.plant.set("b", 2.75)  # within the deadband: not a change
        host.plant.set("a", 9)
        changed: dict[str, dict[str, bifrost.DataPoint]] = {}
        for _ in range(500):  # a bound, not a wait: each cycle is one batch
            batch = await asyncio.wait_for(batches.__anext__(), 10)
            assert isinstance(batch, dict)
            if batch:
                changed = batch
                break
        assert {name: {tag: p.value for tag, p in points.items()} for name, points in changed.items()} == {
            "one": {"a": 9}
        }


async def test_columnar_batches_hold_every_value_without_objects(host: SimHost) -> None:
    async with fleet(host) as connections, bifrost.poll(connections, TAGS, interval=0.01, columnar=True) as batches:
        batch = await asyncio.wait_for(batches.__anext__(), 10)
        assert isinstance(batch, Columns)
        assert batch.columns == (("one", "a"), ("one", "b"), ("one", "c"), ("two", "d"), ("two", "hr:50"))
        values = batch.values.tolist()
        assert values[:4] == [1.0, 2.5, 1.0, -4.0] and values[4] != values[4]  # NaN where it failed
        assert batch.good.tolist() == [True, True, True, True, False]
        assert batch.values.format == "d" and batch.good.format == "?"


async def test_closing_ends_the_iteration(host: SimHost) -> None:
    async with fleet(host) as connections:
        batches = bifrost.poll(connections, TAGS, interval=0.01)
        assert await asyncio.wait_for(batches.__anext__(), 10)
        batches.close()
        assert [batch async for batch in batches] == []


async def test_it_runs_on_native_tcp_connections_only(host: SimHost) -> None:
    async with fleet(host, engine="python") as connections:
        with pytest.raises(bifrost.ConfigError, match="native-engine Modbus TCP"):
            bifrost.poll(connections, TAGS, interval=0.01)


HOLES = (
    """
scenario: holes
tags:
"""
    + "".join(f"  t{i}: {{type: uint16, init: {10 + i}}}\n" for i in range(10) if i != 4)
    + """
devices:
  gappy:
    protocol: modbus
    listen: 127.0.0.1:0
    unit: 1
    map: {"""
    + ", ".join(f"t{i}: hr:{i}" for i in range(10) if i != 4)
    + """}
"""
)
GAPPY = [f"t{i}" for i in range(10) if i != 4]  # hr:4 is a hole: a block over 0..9 draws exception 2


@pytest.mark.parametrize("columnar", [False, True])
async def test_a_block_over_a_hole_is_split_and_the_split_kept(columnar: bool) -> None:
    with SimHost(load_scenario(Path("holes.yaml"), text=HOLES), any_port=True) as host:
        device = host.devices["gappy"]
        plc = await bifrost.connect(device.url, tags=device.tags, engine="native", timeout=5)
        async with plc, bifrost.poll({"gappy": plc}, GAPPY, interval=0.001, columnar=columnar) as batches:
            first = await asyncio.wait_for(batches.__anext__(), 10)
            if isinstance(first, Columns):
                assert first.values.tolist() == [10.0 + i for i in range(10) if i != 4]
                assert all(first.good.tolist())
            else:
                assert {tag: p.value for tag, p in first["gappy"].items()} == {
                    f"t{i}": 10 + i for i in range(10) if i != 4
                }
            assert batches.errors == {}  # the split read every tag
            for _ in range(3):  # the split plan is in use from the next cycle on
                await asyncio.wait_for(batches.__anext__(), 10)
            session = plc.engine._session  # type: ignore[attr-defined]
            before = session.stats()["requests"]
            for _ in range(10):
                batch = await asyncio.wait_for(batches.__anext__(), 10)
                assert batches.errors == {}
                if isinstance(batch, Columns):
                    assert all(batch.good.tolist())
            # Two requests a cycle (0..3 and 5..9), give or take the cycle under way at either end;
            # a poll that forgot the split would send three (the refused block, then its halves).
            assert session.stats()["requests"] - before <= 2 * 10 + 3
            host.plant.set("t9", 99)
            for _ in range(500):  # a bound, not a wait: each cycle is one batch
                batch = await asyncio.wait_for(batches.__anext__(), 10)
                if isinstance(batch, Columns):
                    seen: object = batch.values.tolist()[-1]
                else:
                    point = batch.get("gappy", {}).get("t9")
                    seen = point.value if point is not None else None
                if seen == 99:
                    break
            else:
                raise AssertionError("the split blocks never read t9's new value")
