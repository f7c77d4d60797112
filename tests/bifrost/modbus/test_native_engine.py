"""The native (Rust) Modbus engine against a real peer: pymodbus's TCP server, and raw servers that
misbehave, on 127.0.0.1 port 0 (peers from conftest.py). Both engines' shared behaviour is held by
test_client_interop.py; these tests cover what is the native engine's own: it is the default, plans
run whole in Rust, holes found natively are split by the planner, subscriptions poll in Rust, one
hub per event loop, and a serial bus shared per path.
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import bifrost
from bifrost import ConfigError, ConnectError, DataPoint, DeviceError, Quality, _native
from bifrost.modbus.client import ModbusConnection, default_engine
from bifrost.values import encode

from .conftest import Handler, PymodbusPeer, RawPeer

pytestmark = pytest.mark.asyncio

# Every type, with its byte orders, scale and bits, each at its own place in hr 0..199.
TYPED = {
    "hr:100": 4660,
    "hr:101:int16": -2,
    "hr:102:int32:CDAB": -100_000,
    "hr:104:uint32:BADC": 0x01020304,
    "hr:106:int64:DCBA": -(2**40),
    "hr:110:uint64": 2**64 - 1,
    "hr:114:float32": 123.5,
    "hr:116:float32:CDAB": -1.25,
    "hr:118:float64:DCBA": 1e-3,
    "hr:122:string[7]": "bifrost",
    "hr:126:bool": True,
}


def connect(peer: PymodbusPeer, **kw: Any) -> ModbusConnection:
    plc = bifrost.connect(peer.url(), engine="native", **kw)
    assert isinstance(plc, ModbusConnection)
    return plc


def client_of(plc: bifrost.Connection) -> _native.ModbusClient | _native.TcpSession:
    assert isinstance(plc, ModbusConnection)
    client = plc.engine.client  # type: ignore[attr-defined]
    assert isinstance(client, (_native.ModbusClient, _native.TcpSession))
    return client


async def test_native_is_the_default_engine(pymodbus_server: PymodbusPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BIFROST_MODBUS_ENGINE", raising=False)
    assert default_engine() == "native"
    async with bifrost.connect(pymodbus_server.url()) as plc:
        assert isinstance(plc, ModbusConnection)
        assert plc.engine_name == "native"
        assert (await plc.read("hr:3")).value == 3
    monkeypatch.setenv("BIFROST_MODBUS_ENGINE", "python")
    assert default_engine() == "python"


async def test_every_area_and_type_in_one_read_many(pymodbus_server: PymodbusPeer) -> None:
    async with connect(pymodbus_server) as plc:
        await plc.write_many(TYPED)  # type: ignore[arg-type]
        await plc.write("coil:5", True)
        await plc.write("hr:127.9", True)
        before = client_of(plc).stats()["requests"]
        points = await plc.read_many([*TYPED, "coil:4", "coil:5", "di:3", "di:4", "ir:7", "hr:127.9", "hr:127.8"])
        sent = client_of(plc).stats()["requests"] - before
    assert {name: points[name].value for name in TYPED} == TYPED
    assert [points[name].value for name in ("coil:4", "coil:5", "di:3", "di:4", "ir:7")] == [
        True,
        True,
        True,
        False,
        1007,
    ]
    assert (points["hr:127.9"].value, points["hr:127.8"].value) == (True, False)
    assert all(point.quality is Quality.GOOD for point in points.values())
    assert sent == 4  # one request per area: the plan ran whole
    # The bytes are where another implementation puts them.
    assert pymodbus_server.registers(3, 102, 2) == encode(-100_000, "int32", "CDAB")
    assert pymodbus_server.registers(3, 118, 4) == encode(1e-3, "float64", "DCBA")


async def test_raw_reads_and_writes_of_the_client(pymodbus_server: PymodbusPeer) -> None:
    client = _native.ModbusClient("tcp", f"127.0.0.1:{pymodbus_server.port}", name="plc", timeout=2.0)
    with pytest.raises(ConnectError, match=r"^plc: not connected"):
        client.read(1, "hr", 0, 1)
    await client.connect()
    try:
        assert await client.read(1, "hr", 0, 4) == [0, 1, 2, 3]
        assert await client.read(1, "ir", 10, 2) == [1010, 1011]
        assert await client.read(1, "coil", 0, 3) == [True, False, True]
        assert await client.read(1, "di", 0, 4) == [True, False, False, True]
        await client.write_registers(1, 150, [7, 8, 9])  # FC16
        await client.write_registers(1, 153, [10])  # FC6
        await client.write_coils(1, 10, [True, True, False])  # FC15
        await client.write_coils(1, 13, [True])  # FC5
        assert await client.read(1, "hr", 150, 4) == [7, 8, 9, 10]
        assert await client.read(1, "coil", 10, 4) == [True, True, False, True]
        with pytest.raises(
            DeviceError, match=r"^plc: unit 1: exception 2 \(ILLEGAL_DATA_ADDRESS\) to read holding registers \(3\)$"
        ) as caught:
            await client.read(1, "hr", 198, 5)
        assert caught.value.code == 2
        with pytest.raises(ConfigError, match="area"):
            client.read(1, "xx", 0, 1)
        with pytest.raises(ConfigError, match="count 126"):
            await client.read(1, "hr", 0, 126)
        assert client.stats()["connects"] == 1
    finally:
        await client.close()
    await client.close()  # twice is harmless
    assert not client.connected


async def test_an_unmapped_address_is_a_device_error_and_a_hole_is_split_once(pymodbus_server: PymodbusPeer) -> None:
    async with connect(pymodbus_server) as plc:
        with pytest.raises(DeviceError) as caught:
            await plc.read("hr:300")
        assert caught.value.code == 2
        names = ["hr:190", "hr:199", "hr:203", "hr:205"]  # one request across the end of the map
        first = await plc.read_many(names)
        assert [first[name].value for name in names] == [190, 199, None, None]
        assert [first[name].quality for name in names] == [Quality.GOOD, Quality.GOOD, Quality.BAD, Quality.BAD]
        # The planner remembers the hole: the next read plans around it and sends only what works.
        before = client_of(plc).stats()["requests"]
        second = await plc.read_many(names)
        assert client_of(plc).stats()["requests"] - before == 1
        assert [second[name].quality for name in names] == [Quality.GOOD, Quality.GOOD, Quality.BAD, Quality.BAD]


async def test_many_tags_in_one_call(pymodbus_server: PymodbusPeer) -> None:
    names = [f"hr:{i}" for i in range(0, 200, 2)] + [f"ir:{i}:uint32" for i in range(0, 198, 3)]
    names += [f"coil:{i}" for i in range(200)] + [f"di:{i}" for i in range(0, 200, 5)]
    async with connect(pymodbus_server) as plc:
        before = client_of(plc).stats()["requests"]
        points = await plc.read_many(names)
        sent = client_of(plc).stats()["requests"] - before
    assert len(points) == len(names) == 406
    assert points["hr:198"].value == 198
    assert points["ir:3:uint32"].value == (1003 << 16) | 1004
    assert points["coil:7"].value is False
    assert points["di:195"].value is True
    assert sent == 6  # hr and ir in two each (125 registers at most), coils and discrete inputs in one each


async def test_silence_is_a_timeout_in_bounded_time(raw_server: Callable[[Handler], RawPeer]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers

    peer = raw_server(silent)
    async with bifrost.connect(peer.url, engine="native", timeout=0.2) as plc:
        started = time.monotonic()
        with pytest.raises(
            bifrost.TimeoutError, match=r"no answer from unit 1 to read holding registers \(3\) within 0.2 s$"
        ) as caught:
            await asyncio.wait_for(plc.read("hr:0"), 5)  # the guard only keeps a bug from hanging CI
        assert time.monotonic() - started < 2
        assert isinstance(caught.value, TimeoutError)  # the builtin too
        with pytest.raises(bifrost.TimeoutError):
            await asyncio.wait_for(plc.read_many(["hr:0", "ir:0", "coil:0"]), 5)


async def test_a_closed_port_is_a_connect_error(closed_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectError, match=rf"127\.0\.0\.1:{closed_port}.*cannot connect"):
        async with bifrost.connect(f"modbus://127.0.0.1:{closed_port}", engine="native", timeout=1):
            pass
    assert time.monotonic() - started < 2


async def test_cancelling_a_read_leaves_the_connection_usable(pymodbus_server: PymodbusPeer) -> None:
    async with connect(pymodbus_server) as plc:
        pending = asyncio.ensure_future(plc.read("hr:1"))
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        points = await asyncio.gather(*(plc.read(f"hr:{i}") for i in range(100)))
        assert [point.value for point in points] == list(range(100))


async def next_batch(batches: AsyncIterator[dict[str, DataPoint]]) -> dict[str, DataPoint]:
    return await asyncio.wait_for(batches.__anext__(), 5)


async def test_subscribe_polls_in_rust_and_yields_only_changes(pymodbus_server: PymodbusPeer) -> None:
    tags = ["hr:60", "hr:61:int16", "hr:62:float32", "coil:8", "hr:250"]  # hr:250 is not served
    async with connect(pymodbus_server) as plc, connect(pymodbus_server) as writer:
        await writer.write_many({"hr:61:int16": -5, "hr:62:float32": 10.0})
        batches = plc.subscribe(tags, interval=0.02, deadband=0.5)
        first = await next_batch(batches)
        assert {name: point.value for name, point in first.items()} == {
            "hr:60": 60,
            "hr:61:int16": -5,
            "hr:62:float32": 10.0,
            "coil:8": True,
            "hr:250": None,
        }
        assert first["hr:250"].quality is Quality.BAD
        await writer.write("hr:62:float32", 10.25)  # within the deadband: not reported
        await writer.write("hr:60", 61)
        assert {name: point.value for name, point in (await next_batch(batches)).items()} == {"hr:60": 61}
        await writer.write("coil:8", False)
        assert {name: point.value for name, point in (await next_batch(batches)).items()} == {"coil:8": False}
        await batches.aclose()  # type: ignore[attr-defined]


async def test_a_cancelled_wait_for_a_batch_loses_nothing(pymodbus_server: PymodbusPeer) -> None:
    client = _native.ModbusClient("tcp", f"127.0.0.1:{pymodbus_server.port}", timeout=2.0)
    await client.connect()
    plan = _native.NativePlan([(1, "hr", 70, 2)], [(0, 0, "uint16", "ABCD", 0, 1.0, 0.0, None)])
    subscription = client.subscribe(plan, 0.01)
    try:
        assert await asyncio.wait_for(subscription.__anext__(), 5) == ([0], [70], [None])
        for _ in range(3):  # give up waiting, again and again; each wait is cancelled
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(subscription.__anext__(), 0.001)
        await client.write_registers(1, 70, [71])
        assert await asyncio.wait_for(subscription.__anext__(), 5) == ([0], [71], [None])
    finally:
        subscription.close()
        await client.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(subscription.__anext__(), 5)


async def test_plans_are_checked_when_built() -> None:
    with pytest.raises(ConfigError, match="unknown area"):
        _native.NativePlan([(1, "xx", 0, 1)], [])
    with pytest.raises(ConfigError, match="request 0"):
        _native.NativePlan([(1, "hr", 0, 0)], [])
    with pytest.raises(ConfigError, match="tag 0"):
        _native.NativePlan([(1, "hr", 0, 1)], [(0, 0, "float32", "ABCD", 0, 1.0, 0.0, None)])
    with pytest.raises(ConfigError, match="tag 0"):
        _native.NativePlan([(1, "coil", 0, 1)], [(0, 0, "int16", "ABCD", 0, 1.0, 0.0, None)])
    plan = _native.NativePlan([(1, "hr", 0, 4)], [(0, 0, "float64", "DCBA", 0, 2.0, 1.0, None)])
    assert (plan.request_count, plan.tag_count) == (1, 1)


async def test_execute_returns_values_and_errors_in_bulk(pymodbus_server: PymodbusPeer) -> None:
    client = _native.ModbusClient("tcp", f"127.0.0.1:{pymodbus_server.port}", timeout=2.0)
    await client.connect()
    requests = [(1, "hr", 0, 10), (1, "hr", 195, 10), (1, "coil", 0, 4)]
    tags: list[tuple[int, int, str, str, int, float, float, int | None]]
    tags = [(0, i, "uint16", "ABCD", 0, 1.0, 0.0, None) for i in range(10)]
    tags += [(1, 0, "uint16", "ABCD", 0, 1.0, 0.0, None), (2, 3, "bool", "ABCD", 0, 1.0, 0.0, None)]
    tags += [(0, 2, "int16", "ABCD", 0, 0.5, 1.0, None), (0, 3, "bool", "ABCD", 0, 1.0, 0.0, 1)]
    try:
        values, errors = await client.execute(_native.NativePlan(requests, tags))
    finally:
        await client.close()
    assert values == [*range(10), None, False, 2.0, True]
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], DeviceError) and errors[1].code == 2


async def test_each_event_loop_gets_its_own_hub(pymodbus_server: PymodbusPeer) -> None:
    """Clients on another thread's loop work at the same time as this loop's."""
    results: list[list[int]] = []

    async def elsewhere() -> None:
        async with connect(pymodbus_server) as plc:
            for _ in range(20):
                results.append([(await plc.read("hr:9")).value])  # type: ignore[list-item]

    thread = threading.Thread(target=asyncio.run, args=(elsewhere(),))
    thread.start()
    async with connect(pymodbus_server) as plc:
        points = await asyncio.gather(*(plc.read(f"hr:{i}") for i in range(40)))
    await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
    assert [point.value for point in points] == list(range(40))
    assert results == [[9]] * 20


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
async def test_units_of_one_serial_bus_share_its_connection() -> None:
    controller, line = os.openpty()
    path = os.ttyname(line)
    first = _native.ModbusClient("serial", path, baud=19200, parity="E", timeout=0.5)
    second = _native.ModbusClient("serial", path, baud=19200, parity="E", timeout=0.5)
    other = _native.ModbusClient("serial", path, baud=9600, parity="E", timeout=0.5)
    try:
        await first.connect()
        await second.connect()
        assert first.device == second.device == f"modbus+rtu://{path}"
        assert first.stats()["connects"] == second.stats()["connects"] == 1  # one port, opened once
        with pytest.raises(ConfigError, match="other line settings"):
            await other.connect()
        await first.close()
        assert second.connected  # the bus stays open for its other user
        await second.close()
        assert not second.connected
    finally:
        os.close(controller)
        os.close(line)


async def test_a_bad_transport_or_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="transport"):
        _native.ModbusClient("udp", "127.0.0.1:502")
    with pytest.raises(ConfigError, match="timeout"):
        _native.ModbusClient("tcp", "127.0.0.1:502", timeout=0)
    with pytest.raises(ConfigError, match="parity"):
        _native.ModbusClient("serial", "/dev/null", parity="X")


def frame(request: bytes, value: int) -> bytes:
    return request[:4] + struct.pack(">HBBBH", 5, request[6], 3, 2, value)


async def test_a_late_reply_is_never_taken_for_the_next_request(raw_server: Callable[[Handler], RawPeer]) -> None:
    """The first connection answers only after the client gave up; the native engine reconnects."""
    answered = 0

    async def late_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        request = await reader.readexactly(12)
        if answered == 0:
            answered += 1
            await reader.read()  # the client drops this connection on its timeout
            writer.write(frame(request, 111))  # far too late, on a dead connection
            return
        while True:
            writer.write(frame(request, 222))
            await writer.drain()
            request = await reader.readexactly(12)

    peer = raw_server(late_once)
    async with bifrost.connect(peer.url, engine="native", timeout=0.3) as plc:
        with pytest.raises(bifrost.TimeoutError):
            await plc.read("hr:0")
        assert (await plc.read("hr:1")).value == 222
    assert peer.connections == 2
