"""The proxy between a pymodbus client and a pymodbus server: each fault, as the client sees it.

Everything runs on the test's loop, on 127.0.0.1 port 0. Faults that make a client give up (stall,
drop, truncate, wrong_transaction) are seen through the client's own timeout, kept short; the
successful paths get a generous one, so a busy machine cannot turn them red.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer

from simulators.clock import VirtualClock
from simulators.faults import FaultSet
from simulators.proxy import Proxy, TrafficRecord, parse_address

pytestmark = pytest.mark.asyncio

GIVE_UP = 0.3  # the client's timeout where a fault means no usable answer comes
PATIENT = 10.0  # where one does come
VALUES = list(range(100))


@asynccontextmanager
async def pymodbus_target(framer: FramerType = FramerType.SOCKET) -> AsyncIterator[int]:
    """pymodbus's TCP server: holding registers 0..99 hold their address (a block at 1 serves wire 0)."""
    context = ModbusServerContext(devices=ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, VALUES)), single=True)
    server = ModbusTcpServer(context, framer=framer, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    try:
        yield int(server.transport.sockets[0].getsockname()[1])
    finally:
        await server.shutdown()


class Traffic:
    """The proxy's log, with a way to wait for a record without sleeping."""

    def __init__(self) -> None:
        self.records: list[TrafficRecord] = []
        self._changed = asyncio.Event()

    def __call__(self, record: TrafficRecord) -> None:
        self.records.append(record)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[TrafficRecord], bool]) -> TrafficRecord:
        async def found() -> TrafficRecord:
            while True:
                for record in self.records:
                    if predicate(record):
                        return record
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(found(), PATIENT)


def client_of(proxy: Proxy, timeout: float = PATIENT) -> AsyncModbusTcpClient:
    # No reconnecting behind the test's back: a dropped connection stays dropped.
    return AsyncModbusTcpClient("127.0.0.1", port=proxy.address[1], timeout=timeout, retries=0, reconnect_delay=0)


@asynccontextmanager
async def relay(
    *faults: str, clock: VirtualClock | None = None, seed: int = 0, timeout: float = PATIENT
) -> AsyncIterator[tuple[Proxy, AsyncModbusTcpClient, Traffic]]:
    traffic = Traffic()
    async with pymodbus_target() as port:
        proxy = Proxy(("127.0.0.1", port), faults=faults, clock=clock, seed=seed, log=traffic)
        async with proxy:
            client = client_of(proxy, timeout)
            try:
                assert await client.connect()
                yield proxy, client, traffic
            finally:
                client.close()


async def read(client: AsyncModbusTcpClient, address: int = 0, count: int = 4) -> Any:
    return await client.read_holding_registers(address, count=count, device_id=1)


# --- relaying ----------------------------------------------------------------------------------------------


async def test_without_faults_it_relays_and_logs_each_request_and_reply() -> None:
    async with relay() as (_, client, traffic):
        assert (await read(client)).registers == [0, 1, 2, 3]
        assert not (await client.write_register(5, 555, device_id=1)).isError()
        assert (await read(client, 5, 1)).registers == [555]
    kinds = [(record.event, record.function) for record in traffic.records if record.event in ("request", "response")]
    assert kinds == [("request", 3), ("response", 3), ("request", 6), ("response", 6), ("request", 3), ("response", 3)]
    first = next(record for record in traffic.records if record.event == "request")
    assert "ReadHoldingRegistersRequest(address=0, count=4)" in str(first)
    assert json.loads(json.dumps(first.as_json()))["data"] == first.data.hex()


class EndsSeen:
    """A bare TCP target that answers nothing and notes each connection the far side closes."""

    def __init__(self) -> None:
        self.accepted = 0
        self.ended = 0
        self.writers: list[asyncio.StreamWriter] = []
        self._changed = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        self._changed.set()
        while await reader.read(4096):
            pass
        self.ended += 1  # EOF: the proxy closed its side of this connection
        self._changed.set()
        writer.close()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), PATIENT)


async def test_a_client_that_leaves_frees_its_connection_to_the_device() -> None:
    # PLCs have few connection slots: before, each proxied client that left kept one until the proxy stopped.
    target = EndsSeen()
    server = await asyncio.start_server(target.serve, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        async with Proxy(("127.0.0.1", port)) as proxy:
            for number in range(1, 4):
                reader, writer = await asyncio.open_connection(*proxy.address)
                writer.write(bytes.fromhex("000100000006010300000001"))
                await target.until(lambda number=number: target.accepted == number)
                writer.close()
                await writer.wait_closed()
                await target.until(lambda number=number: target.ended == number)
                assert await reader.read() == b""  # and the proxy closed towards the client
    finally:
        server.close()
        await server.wait_closed()


async def test_a_device_that_closes_closes_the_client_connection() -> None:
    target = EndsSeen()
    server = await asyncio.start_server(target.serve, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        async with Proxy(("127.0.0.1", port)) as proxy:
            reader, writer = await asyncio.open_connection(*proxy.address)
            await target.until(lambda: target.accepted == 1)
            target.writers[0].close()
            assert await asyncio.wait_for(reader.read(), PATIENT) == b""
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


# --- transport faults ----------------------------------------------------------------------------------------


async def test_latency_on_a_virtual_clock_delays_the_reply_exactly() -> None:
    clock = VirtualClock()
    async with relay("latency,delay=200ms", clock=clock) as (_, client, traffic):
        answer = asyncio.ensure_future(read(client))
        await traffic.wait_for(lambda record: record.event == "response" and "latency" in record.faults)
        clock.advance(0.199)
        for _ in range(20):
            await asyncio.sleep(0)  # turns of the loop, not a wait: nothing can arrive before 0.2
        assert not answer.done()
        clock.advance(0.001)
        assert (await answer).registers == [0, 1, 2, 3]
        assert clock.now() == pytest.approx(0.2)


async def test_latency_on_the_system_clock_is_at_least_the_delay() -> None:
    async with relay("latency,delay=100ms") as (_, client, _):
        start = time.monotonic()
        assert (await read(client)).registers == [0, 1, 2, 3]
        assert time.monotonic() - start >= 0.099


async def test_bandwidth_paces_the_reply_and_the_values_stay_right() -> None:
    async with relay("bandwidth,rate=200") as (_, client, _):  # a 17-byte reply: 85ms of line
        start = time.monotonic()
        assert (await read(client)).registers == [0, 1, 2, 3]
        assert time.monotonic() - start >= 0.08


async def test_slicer_cuts_the_reply_in_pieces_the_client_puts_together() -> None:
    async with relay("slicer,size=1,gap=1ms,direction=both") as (_, client, traffic):
        assert (await read(client, 10, 8)).registers == list(range(10, 18))
    assert any("slicer" in record.faults for record in traffic.records if record.event == "response")


async def test_stall_leaves_the_client_to_time_out() -> None:
    async with relay("stall", timeout=GIVE_UP) as (_, client, _):
        with pytest.raises(ModbusException):
            await read(client)


async def test_drop_loses_one_reply_and_the_next_request_is_answered() -> None:
    async with relay("drop,count=1", timeout=GIVE_UP) as (_, client, traffic):
        with pytest.raises(ModbusException):
            await read(client)
        assert (await read(client, 20, 2)).registers == [20, 21]
    assert [record.faults for record in traffic.records if record.event == "response"] == [("drop",), ()]


async def test_reset_is_a_connection_error_and_an_rst_on_the_wire() -> None:
    async with relay("reset", timeout=GIVE_UP) as (proxy, client, _):
        with pytest.raises(ModbusException):
            await read(client)
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(bytes.fromhex("000100000006010300000001"))
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), PATIENT)
        writer.close()


async def test_close_is_a_connection_error_and_a_fin_on_the_wire() -> None:
    async with relay("close", timeout=GIVE_UP) as (proxy, client, _):
        with pytest.raises(ModbusException):
            await read(client)
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(bytes.fromhex("000100000006010300000001"))
        assert await asyncio.wait_for(reader.read(100), PATIENT) == b""
        writer.close()


async def test_refuse_closes_the_listener_until_it_ends() -> None:
    async with relay() as (proxy, client, _):
        handle = proxy.faults.add("refuse")
        assert not proxy.listening
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*proxy.address)
        refused = client_of(proxy)
        assert not await refused.connect()
        refused.close()
        assert (await read(client)).registers == [0, 1, 2, 3]  # a connection made before goes on
        handle.clear()
        await proxy.settle()
        again = client_of(proxy)
        assert await again.connect()
        assert (await read(again)).registers == [0, 1, 2, 3]
        again.close()


async def test_a_probable_refuse_resets_some_connections_as_they_arrive() -> None:
    async with relay(seed=2) as (proxy, _, traffic):
        proxy.faults.add("refuse,probability=0.5")
        assert proxy.listening  # only a certain refuse closes the listener
        outcomes = []
        for _ in range(12):
            reader, writer = await asyncio.open_connection(*proxy.address)
            writer.write(bytes.fromhex("000100000006010300000001"))
            try:
                outcomes.append(len(await asyncio.wait_for(reader.read(100), PATIENT)) > 0)
            except ConnectionResetError:
                outcomes.append(False)
            writer.close()
        assert True in outcomes and False in outcomes
        assert sum(record.event == "refused" for record in traffic.records) == outcomes.count(False)


async def test_a_refuse_with_a_count_refuses_that_many_connections_then_serves() -> None:
    async with relay() as (proxy, _, traffic):
        proxy.faults.add("refuse,count=2")
        assert proxy.listening  # connections must get in to be refused, one by one
        outcomes = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection(*proxy.address)
            writer.write(bytes.fromhex("000100000006010300000001"))
            try:
                outcomes.append(len(await asyncio.wait_for(reader.read(100), PATIENT)) > 0)
            except ConnectionResetError:
                outcomes.append(False)
            writer.close()
        assert outcomes == [False, False, True]
        assert sum(record.event == "refused" for record in traffic.records) == 2


async def test_corrupt_reaches_the_client_as_an_error_or_garbled_values() -> None:
    async with relay("corrupt,bits=4", seed=3, timeout=GIVE_UP) as (_, client, _):
        try:
            answer = await read(client, 0, 8)
        except ModbusException:
            return
        assert answer.isError() or answer.registers != list(range(8))


# --- protocol faults -----------------------------------------------------------------------------------------


async def test_exception_answers_the_matched_requests_without_forwarding_them() -> None:
    async with relay("exception,code=6,function=3,address=hr:0-4") as (_, client, traffic):
        refused = await read(client, 0, 2)
        assert refused.isError() and refused.exception_code == 6
        assert (await read(client, 10, 2)).registers == [10, 11]
    replies = [record for record in traffic.records if record.event == "response"]
    assert "from the proxy" in replies[0].summary and replies[0].faults == ("exception",)


async def test_bad_quality_is_exception_4() -> None:
    async with relay("bad_quality") as (_, client, _):
        answer = await read(client)
        assert answer.isError() and answer.exception_code == 4


async def test_exception_probability_draws_from_the_seed() -> None:
    async def errors(seed: int) -> list[bool]:
        async with relay("exception,code=6,probability=0.5", seed=seed) as (_, client, _):
            return [(await read(client, 0, 1)).isError() for _ in range(16)]

    first = await errors(9)
    assert True in first and False in first
    assert await errors(9) == first


@pytest.mark.parametrize("fault", ["wrong_transaction", "truncate"])
async def test_a_reply_the_client_cannot_take_is_a_timeout(fault: str) -> None:
    async with relay(fault + ",count=1", timeout=GIVE_UP) as (_, client, traffic):
        with pytest.raises(ModbusException):
            await read(client)
    replies = [record for record in traffic.records if record.event == "response"]
    assert replies[0].faults == (fault,)


async def test_freeze_serves_reads_as_they_were_and_thaws_when_cleared() -> None:
    async with relay() as (proxy, client, _):
        assert (await read(client, 30, 1)).registers == [30]
        with proxy.faults.add("freeze"):
            assert not (await client.write_register(30, 7, device_id=1)).isError()  # writes still go through
            assert (await read(client, 30, 1)).registers == [30]
        assert (await read(client, 30, 1)).registers == [7]


async def test_reboot_drops_connections_and_refuses_while_it_boots() -> None:
    clock = VirtualClock()
    async with relay(clock=clock, timeout=GIVE_UP) as (proxy, client, traffic):
        assert (await read(client)).registers == [0, 1, 2, 3]
        proxy.faults.add("reboot,for=10s")
        await traffic.wait_for(lambda record: record.event == "disconnect" and record.summary == "reboot")
        with pytest.raises(ModbusException):
            await read(client)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*proxy.address)
        clock.advance(9.999)
        await proxy.settle()
        assert not proxy.listening
        clock.advance(0.001)
        await proxy.settle()  # the proxy's poller would see it at its next look; settle looks now
        assert proxy.listening
        again = client_of(proxy)
        assert await again.connect()
        assert (await read(again)).registers == [0, 1, 2, 3]
        again.close()


async def test_faults_from_a_scenario_plant() -> None:
    from simulators.plant import Plant
    from simulators.scenario import load_scenario

    scenario = load_scenario("proxy.yaml", text=PROXY_SCENARIO)
    plant = Plant(scenario, VirtualClock())
    async with pymodbus_target() as port, Proxy(("127.0.0.1", port), faults=FaultSet("proxy", plant=plant)) as proxy:
        client = client_of(proxy)
        assert await client.connect()
        assert (await read(client)).registers == [0, 1, 2, 3]
        plant.clock.advance(1)
        answer = await read(client)
        assert answer.isError() and answer.exception_code == 6
        plant.clock.advance(2)
        assert (await read(client)).registers == [0, 1, 2, 3]
        client.close()


PROXY_SCENARIO = """\
scenario: in front of a real PLC
tags: {}
devices:
  proxy: {protocol: modbus}
events:
  - at: 1s
    fault: {device: proxy, kind: exception, code: 6, match: {function: 3}, for: 2s}
"""


@asynccontextmanager
async def rtu_relay(*faults: str, timeout: float = PATIENT) -> AsyncIterator[tuple[AsyncModbusTcpClient, Traffic]]:
    traffic = Traffic()
    async with (
        pymodbus_target(FramerType.RTU) as port,
        Proxy(("127.0.0.1", port), faults=faults, framing="rtu", log=traffic) as proxy,
    ):
        client = AsyncModbusTcpClient(
            "127.0.0.1", port=proxy.address[1], framer=FramerType.RTU, timeout=timeout, retries=0, reconnect_delay=0
        )
        try:
            assert await client.connect()
            yield client, traffic
        finally:
            client.close()


async def test_rtu_over_tcp_relays_and_answers_exceptions_with_a_crc() -> None:
    async with rtu_relay("exception,code=2,address=hr:50-59") as (client, traffic):
        assert (await read(client, 3, 2)).registers == [3, 4]
        answer = await read(client, 50, 1)
        assert answer.isError() and answer.exception_code == 2
    requests = [record for record in traffic.records if record.event == "request"]
    assert requests[0].transaction_id is None and requests[0].unit == 1


async def test_rtu_corrupt_never_yields_a_value() -> None:
    async with rtu_relay("corrupt,count=1", timeout=GIVE_UP) as (client, _):
        with pytest.raises(ModbusException):
            await read(client)  # a flipped bit fails the CRC: the client takes nothing from it


async def test_addresses() -> None:  # async only because the module is marked asyncio
    assert parse_address("127.0.0.1:1502", "--listen") == ("127.0.0.1", 1502)
    assert parse_address("[::1]:0", "--listen") == ("::1", 0)
    with pytest.raises(Exception, match="--target: expected HOST:PORT"):
        parse_address("nowhere", "--target")


# --- the command -----------------------------------------------------------------------------------------------


@asynccontextmanager
async def proxy_command(*args: str) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from simulators.cli import main; main()",
        "proxy",
        "--listen",
        "127.0.0.1:0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert first.startswith("listening on 127.0.0.1:"), first
        yield int(first.rsplit(":", 1)[1]), process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


async def test_the_command_relays_with_latency_and_stops_on_sigterm() -> None:
    async with (
        pymodbus_target() as target,
        proxy_command("--target", f"127.0.0.1:{target}", "--fault", "latency,delay=50ms") as (port, process),
    ):
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=PATIENT, retries=0, reconnect_delay=0)
        assert await client.connect()
        start = time.monotonic()
        assert (await read(client)).registers == [0, 1, 2, 3]
        assert time.monotonic() - start >= 0.049
        client.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert process.stdout is not None
        out = (await process.stdout.read()).decode()
        assert "fault: latency,delay=0.05s" in out
        assert "ReadHoldingRegistersRequest(address=0, count=4)" in out


async def test_the_command_logs_json_lines_and_takes_a_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "proxy.yaml"
    scenario.write_text(PROXY_SCENARIO.replace("at: 1s", "at: 0s"))
    log = tmp_path / "traffic.jsonl"
    async with (
        pymodbus_target() as target,
        proxy_command("--target", f"127.0.0.1:{target}", "--scenario", str(scenario), "--log", str(log)) as (
            port,
            process,
        ),
    ):
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=PATIENT, retries=0, reconnect_delay=0)
        assert await client.connect()
        answer = await read(client)
        assert answer.isError() and answer.exception_code == 6
        client.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    exchanged = [line for line in lines if line["event"] in ("request", "response")]
    assert [line["event"] for line in exchanged] == ["request", "response"]
    assert exchanged[1]["faults"] == ["exception"] and exchanged[1]["data"].endswith("8306")


async def test_the_command_rejects_a_bad_fault_naming_the_key() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from simulators.cli import main; main()",
        "proxy",
        "--target",
        "127.0.0.1:1",
        "--fault",
        "latency,dely=2s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert "dely: latency takes no such key" in err.decode()
