"""The loop-driven Modbus TCP path: pipelining (and its fallback), a device restarted between calls,
and both engines' words, against raw servers on 127.0.0.1:0. (The function codes beyond reads and
writes are held to both engines on every transport in test_functions.py.)"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from collections.abc import Awaitable, Callable

import pytest

import bifrost

from .conftest import Handler, RawPeer

pytestmark = pytest.mark.asyncio


async def _frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """One MBAP request: (transaction id, unit, PDU)."""
    head = await reader.readexactly(7)
    transaction, _, length, unit = struct.unpack(">HHHB", head)
    return transaction, unit, await reader.readexactly(length - 1)


def _answer(transaction: int, unit: int, request: bytes) -> bytes:
    """FC3: each register holds its own address."""
    start, count = struct.unpack(">HH", request[1:5])
    body = bytes((3, 2 * count)) + struct.pack(f">{count}H", *range(start, start + count))
    return struct.pack(">HHHB", transaction, 0, len(body) + 1, unit) + body


NAMES = [f"hr:{200 * i}" for i in range(16)]  # 16 requests: no two tags share one


def _values(points: dict[str, bifrost.DataPoint]) -> dict[str, object]:
    return {name: point.value for name, point in points.items()}


EXPECTED = {name: int(name.split(":")[1]) for name in NAMES}


async def test_requests_are_pipelined_when_asked(raw_server: Callable[[Handler], RawPeer]) -> None:
    """With max_in_flight=8 the device sees 8 requests before it answers any; with 1, one at a time."""
    seen: list[int] = []

    async def batched(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            waiting = [await _frame(reader)]
            # Take whatever else is already on the wire before answering.
            while True:
                try:
                    waiting.append(await asyncio.wait_for(_frame(reader), 0.05))
                except asyncio.TimeoutError:
                    break
            seen.append(len(waiting))
            writer.write(b"".join(_answer(*frame) for frame in waiting))

    peer = raw_server(batched)
    async with bifrost.connect(f"{peer.url}&max_in_flight=8", engine="native", timeout=5) as plc:
        assert _values(await plc.read_many(NAMES)) == EXPECTED
    assert max(seen) == 8, seen
    seen.clear()
    async with bifrost.connect(peer.url, engine="native", timeout=5) as plc:
        assert _values(await plc.read_many(NAMES)) == EXPECTED
    assert set(seen) == {1}, seen


async def test_a_device_that_answers_out_of_order_is_served_one_at_a_time(
    raw_server: Callable[[Handler], RawPeer], caplog: pytest.LogCaptureFixture
) -> None:
    async def reversed_pairs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            first = await _frame(reader)
            try:
                second = await asyncio.wait_for(_frame(reader), 0.2)
            except asyncio.TimeoutError:
                writer.write(_answer(*first))
                continue
            writer.write(_answer(*second) + _answer(*first))

    peer = raw_server(reversed_pairs)
    with caplog.at_level(logging.WARNING, logger="bifrost.modbus.native"):
        async with bifrost.connect(f"{peer.url}&max_in_flight=4", engine="native", timeout=5) as plc:
            # Matched by transaction id, the answers are right even out of order ...
            assert _values(await plc.read_many(NAMES)) == EXPECTED
            # ... and the device is served one request at a time from then on.
            assert plc.engine.client.max_in_flight == 1  # type: ignore[attr-defined]
            assert _values(await plc.read_many(NAMES)) == EXPECTED
    assert any("answered out of order" in record.getMessage() for record in caplog.records), caplog.text


async def test_a_device_that_drops_pipelined_requests_falls_back(
    raw_server: Callable[[Handler], RawPeer], caplog: pytest.LogCaptureFixture
) -> None:
    """A device that answers only the first of the requests it finds waiting: the rest time out once,
    then it is served one at a time, and every read works."""

    async def first_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            frame = await _frame(reader)
            await asyncio.sleep(0.02)  # let the pipelined requests arrive behind it
            while True:  # drop whatever came meanwhile
                try:
                    await asyncio.wait_for(_frame(reader), 0.01)
                except asyncio.TimeoutError:
                    break
            writer.write(_answer(*frame))

    peer = raw_server(first_only)
    with caplog.at_level(logging.WARNING, logger="bifrost.modbus.native"):
        async with bifrost.connect(f"{peer.url}&max_in_flight=4", engine="native", timeout=0.5) as plc:
            with pytest.raises(bifrost.TimeoutError):
                await plc.read_many(NAMES)
            assert plc.engine.client.max_in_flight == 1  # type: ignore[attr-defined]
            assert _values(await plc.read_many(NAMES)) == EXPECTED
    # Told by what came first: the later requests answered before the dropped ones, or the timeout.
    assert any("cannot take pipelined requests" in r.getMessage() for r in caplog.records), caplog.text


async def test_the_first_call_after_a_device_restarted_goes_on(
    raw_server: Callable[[Handler], RawPeer], engine: str
) -> None:
    """The device closes the connection after each answer (as a restart does, between calls): the next
    call finds it closed before anything was sent, opens a new one, and is answered."""
    closed = threading.Event()

    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_answer(*await _frame(reader)))
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    peer = raw_server(one_answer)
    async with bifrost.connect(peer.url, engine=engine, timeout=5) as plc:
        assert (await plc.read("hr:7")).value == 7
        for _ in range(3):
            assert await asyncio.to_thread(closed.wait, 10)
            closed.clear()
            assert (await plc.read("hr:9")).value == 9
    assert peer.connections == 4


async def _said(url: str, engine: str, call: Callable[[bifrost.Connection], Awaitable[object]]) -> tuple[str, str]:
    """The class and message of the error `call` raises on a connection to `url`."""
    plc = bifrost.connect(url, engine=engine, timeout=0.3)
    try:
        await plc.open()
        await call(plc)
    except bifrost.BifrostError as exc:
        return type(exc).__name__, str(exc)
    finally:
        await plc.close()
    raise AssertionError("no error")


async def _read(plc: bifrost.Connection) -> object:
    return await plc.read("hr:3")


async def test_both_engines_say_the_same_words(raw_server: Callable[[Handler], RawPeer], closed_port: int) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def wrong_id(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            transaction, unit, request = await _frame(reader)
            writer.write(_answer((transaction + 100) & 0xFFFF, unit, request))

    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            transaction, unit, _ = await _frame(reader)
            writer.write(struct.pack(">HHHBBB", transaction, 0, 3, unit, 0x83, 4))

    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _frame(reader)

    async def closed(plc: bifrost.Connection) -> object:
        await plc.close()
        return await plc.read("hr:3")

    cases = {
        "timeout": (raw_server(silent).url, _read),
        "wrong transaction id": (raw_server(wrong_id).url, _read),
        "exception": (raw_server(refusing).url, _read),
        "closed by the device": (raw_server(closing).url, _read),
        "closed by the caller": (raw_server(silent).url, closed),
        "refused": (f"modbus://127.0.0.1:{closed_port}?unit=1", _read),
    }
    said = {}
    for event, (url, call) in cases.items():
        said[event] = {engine: await _said(url, engine, call) for engine in ("python", "native")}
        assert said[event]["python"] == said[event]["native"], (event, said[event])
    assert said["timeout"]["native"][1].endswith("no answer from unit 1 to read holding registers (3) within 0.3 s")
    assert said["wrong transaction id"]["native"][0] == "ProtocolError"
    assert "transaction id" in said["wrong transaction id"]["native"][1]
    assert said["exception"]["native"][1].endswith(
        "unit 1: exception 4 (SERVER_DEVICE_FAILURE) to read holding registers (3)"
    )
    assert said["closed by the device"]["native"][1].endswith("connection lost: the device closed it")
    assert said["refused"]["native"][1].endswith("cannot connect: Connection refused")
