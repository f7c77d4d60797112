"""The bulk path of read_many and subscribe: ready DataPoints, in the order asked for, one timestamp per
read, BAD for what the device refuses, transport errors raised. Through the connection on both engines
(the native one builds the points in Rust: Engine.read_points / subscribe_points), and the native
calls themselves (ModbusClient.read_points, subscribe_points).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

import bifrost
from bifrost import ConfigError, DataPoint, DeviceError, Quality, _native

from .conftest import Handler, PymodbusPeer, RawPeer

pytestmark = pytest.mark.asyncio


def tag(request: int, offset: int) -> tuple[int, int, str, str, int, float, float, int | None]:
    return (request, offset, "uint16", "ABCD", 0, 1.0, 0.0, None)


async def next_batch(batches: AsyncIterator[dict[str, DataPoint]]) -> dict[str, DataPoint]:
    return await asyncio.wait_for(batches.__anext__(), 5)


# --- through the connection, on both engines ------------------------------------------------------


async def test_read_many_keeps_the_order_asked_for_with_one_timestamp(
    pymodbus_server: PymodbusPeer, engine: str
) -> None:
    names = ["hr:42", "coil:0", "hr:7", "ir:3:int16", "hr:42", "hr:8", "di:3"]
    async with bifrost.connect(pymodbus_server.url(), engine=engine) as plc:
        for _ in range(2):  # planned, then from the plan cache
            points = await plc.read_many(names)
            assert list(points) == ["hr:42", "coil:0", "hr:7", "ir:3:int16", "hr:8", "di:3"]
            assert {name: point.value for name, point in points.items()} == {
                "hr:42": 42,
                "coil:0": True,
                "hr:7": 7,
                "ir:3:int16": 1003,
                "hr:8": 8,
                "di:3": True,
            }
            assert all(point.quality is Quality.GOOD for point in points.values())
            assert len({point.timestamp for point in points.values()}) == 1
        assert list(await plc.read_many(iter(["hr:8", "hr:7"]))) == ["hr:8", "hr:7"]  # any iterable


async def test_read_many_marks_what_the_device_refuses_bad_in_place(pymodbus_server: PymodbusPeer, engine: str) -> None:
    # pymodbus serves hr 0..199: hr:203 sits in a request merged with hr:199 (a hole found by splitting),
    # hr:250 in a request of its own.
    names = ["hr:250", "hr:199", "hr:5", "hr:203", "hr:198"]
    async with bifrost.connect(pymodbus_server.url(), engine=engine) as plc:
        for _ in range(2):  # holes found, then known (planned around, not sent)
            points = await plc.read_many(names)
            assert list(points) == names
            assert [(point.value, point.quality) for point in points.values()] == [
                (None, Quality.BAD),
                (199, Quality.GOOD),
                (5, Quality.GOOD),
                (None, Quality.BAD),
                (198, Quality.GOOD),
            ]
            assert len({point.timestamp for point in points.values()}) == 1
        with pytest.raises(DeviceError, match="exception 2"):
            await plc.read("hr:203")  # a single read raises what read_many marks BAD


async def test_read_many_raises_a_transport_error(raw_server: Callable[[Handler], RawPeer], engine: str) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    peer = raw_server(silent)
    async with bifrost.connect(peer.url, engine=engine, timeout=0.2) as plc:
        with pytest.raises(bifrost.TimeoutError):
            await asyncio.wait_for(plc.read_many(["hr:0", "hr:1", "coil:0"]), 5)


async def test_subscribe_yields_only_changes_around_holes(pymodbus_server: PymodbusPeer, engine: str) -> None:
    # hr:199 and hr:203 share a request that draws exception 2; the native engine splits it, yields the
    # part that reads, plans again around the hole and holds the new plan's first batch against what it
    # yielded: only changes come after the first batch.
    names = ["hr:60", "hr:199", "hr:203", "hr:250", "hr:61"]
    async with (
        bifrost.connect(pymodbus_server.url(), engine=engine) as plc,
        bifrost.connect(pymodbus_server.url(), engine=engine) as writer,
    ):
        batches = plc.subscribe(names, interval=0.02)
        first = await next_batch(batches)
        assert list(first) == ["hr:60", "hr:199", "hr:203", "hr:250", "hr:61"]
        assert {name: (point.value, point.quality) for name, point in first.items()} == {
            "hr:60": (60, Quality.GOOD),
            "hr:199": (199, Quality.GOOD),
            "hr:203": (None, Quality.BAD),
            "hr:250": (None, Quality.BAD),
            "hr:61": (61, Quality.GOOD),
        }
        await writer.write("hr:199", 1999)
        changed = await next_batch(batches)
        assert {name: point.value for name, point in changed.items()} == {"hr:199": 1999}
        await writer.write("hr:61", 6)
        assert {name: point.value for name, point in (await next_batch(batches)).items()} == {"hr:61": 6}
        await batches.aclose()  # type: ignore[attr-defined]


async def test_subscribe_raises_a_transport_error(raw_server: Callable[[Handler], RawPeer], engine: str) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    peer = raw_server(silent)
    async with bifrost.connect(peer.url, engine=engine, timeout=0.2) as plc:
        batches = plc.subscribe(["hr:0", "hr:1"], interval=0.02)
        with pytest.raises(bifrost.TimeoutError):
            await next_batch(batches)


# --- the native calls -----------------------------------------------------------------------------


async def native_client(peer: PymodbusPeer) -> _native.ModbusClient:
    client = _native.ModbusClient("tcp", f"127.0.0.1:{peer.port}", timeout=2.0)
    await client.connect()
    return client


async def test_read_points_hands_back_ready_points_in_plan_order(pymodbus_server: PymodbusPeer) -> None:
    client = await native_client(pymodbus_server)
    requests = [(1, "hr", 10, 4), (1, "hr", 195, 10), (1, "coil", 0, 2)]
    plan = _native.NativePlan(
        requests,
        [tag(0, 3), tag(1, 0), (2, 1, "bool", "ABCD", 0, 1.0, 0.0, None), tag(0, 0), tag(1, 2)],
        ["d", "beyond", "run", "a", "also beyond"],
    )
    try:
        points, failures = await client.read_points(plan)
    finally:
        await client.close()
    assert list(points) == ["d", "beyond", "run", "a", "also beyond"]
    assert [(point.value, point.quality) for point in points.values()] == [
        (13, Quality.GOOD),
        (None, Quality.BAD),
        (False, Quality.GOOD),
        (10, Quality.GOOD),
        (None, Quality.BAD),
    ]
    assert len({point.timestamp for point in points.values()}) == 1
    assert [index for index, _ in failures] == [1]
    assert isinstance(failures[0][1], DeviceError) and failures[0][1].code == 2


async def test_points_need_a_key_per_tag(pymodbus_server: PymodbusPeer) -> None:
    with pytest.raises(ConfigError, match="1 keys for 2 tags"):
        _native.NativePlan([(1, "hr", 0, 2)], [tag(0, 0), tag(0, 1)], ["a"])
    client = await native_client(pymodbus_server)
    try:
        plan = _native.NativePlan([(1, "hr", 0, 2)], [tag(0, 0)])
        with pytest.raises(ConfigError, match="no keys"):
            client.read_points(plan)
        with pytest.raises(ConfigError, match="no keys"):
            client.subscribe_points(plan, 0.01)
    finally:
        await client.close()


async def test_a_result_is_made_once_and_a_cancelled_read_costs_nothing(pymodbus_server: PymodbusPeer) -> None:
    client = await native_client(pymodbus_server)
    plan = _native.NativePlan([(1, "hr", 0, 2)], [tag(0, 0), tag(0, 1)], ["a", "b"])
    try:
        pending = client.read_points(plan)
        points, _ = await pending
        assert [point.value for point in points.values()] == [0, 1]
        with pytest.raises(RuntimeError, match="awaited already"):
            await pending
        task = asyncio.ensure_future(client.read_points(plan))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        points, failures = await asyncio.wait_for(client.read_points(plan), 5)
        assert ([point.value for point in points.values()], failures) == ([0, 1], [])
    finally:
        await client.close()


async def test_subscribe_points_yields_ready_batches_and_keeps_what_it_handed_out(
    pymodbus_server: PymodbusPeer,
) -> None:
    client = await native_client(pymodbus_server)
    plan = _native.NativePlan([(1, "hr", 80, 2), (1, "hr", 250, 1)], [tag(0, 1), tag(1, 0), tag(0, 0)], ["b", "x", "a"])
    subscription = client.subscribe_points(plan, 0.01)
    try:
        points, failures = await asyncio.wait_for(subscription.__anext__(), 5)
        assert {key: point.value for key, point in points.items()} == {"b": 81, "x": None, "a": 80}
        assert list(points) == ["b", "x", "a"] and points["x"].quality is Quality.BAD
        assert [key for key, _ in failures] == ["x"] and isinstance(failures[0][1], DeviceError)
        await client.write_registers(1, 80, [800])
        points, failures = await asyncio.wait_for(subscription.__anext__(), 5)
        assert ({key: point.value for key, point in points.items()}, failures) == ({"a": 800}, [])
        last = subscription.last()
        assert last["a"] is points["a"] and last["b"].value == 81  # type: ignore[union-attr]
        assert isinstance(last["x"], DeviceError)
    finally:
        subscription.close()
        await client.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(subscription.__anext__(), 5)
