"""PlantFaults as a SimHost's hooks: the simulated device commits each fault, seen by a pymodbus client.

The host runs on its own loop thread with a VirtualClock; the test waits on the FaultSet's hits (a
threading.Event), never on time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest

from simulators.faults import ActiveFault, PlantFaults
from simulators.host import SimHost
from simulators.scenario import load_scenario

pymodbus = pytest.importorskip("pymodbus")

from pymodbus.client import AsyncModbusTcpClient  # noqa: E402
from pymodbus.exceptions import ModbusException  # noqa: E402

GIVE_UP = 0.3
PATIENT = 10.0

SCENARIO = """\
scenario: faulty plc
seed: 3
tags:
  level: {type: uint16, init: 5, writable: true}
  other: {type: uint16, init: 9}
devices:
  plc1:
    protocol: modbus
    listen: 127.0.0.1:0
    map: {level: hr:0, other: hr:1}
events:
  - at: 10s
    fault: {device: plc1, kind: exception, code: 6, match: {function: 3}, for: 5s}
"""


@pytest.fixture
def host() -> Iterator[SimHost]:
    scenario = load_scenario("faulty.yaml", text=SCENARIO)
    with SimHost(scenario, clock="virtual", any_port=True, hooks=PlantFaults()) as host:
        yield host


def hooks_of(host: SimHost) -> PlantFaults:
    assert isinstance(host.hooks, PlantFaults)
    return host.hooks


def port_of(host: SimHost) -> int:
    return int(host.url("plc1").split(":")[2].split("?")[0])


@asynccontextmanager
async def client_of(host: SimHost, timeout: float = PATIENT) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port_of(host), timeout=timeout, retries=0, reconnect_delay=0)
    try:
        assert await client.connect()
        yield client
    finally:
        client.close()


async def read(client: AsyncModbusTcpClient) -> Any:
    return await client.read_holding_registers(0, count=2, device_id=1)


def hit_event(host: SimHost) -> threading.Event:
    """Set when a fault of plc1 acts (on the host's thread)."""
    event = threading.Event()

    def heard(fault: ActiveFault) -> None:
        event.set()

    hooks_of(host).device("plc1").on_hit(heard)
    return event


async def until_set(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, PATIENT)


@pytest.mark.asyncio
async def test_a_run_time_exception(host: SimHost) -> None:
    async with client_of(host) as client:
        assert (await read(client)).registers == [5, 9]
        with hooks_of(host).add("plc1", "exception,code=6,function=3"):
            answer = await read(client)
            assert answer.isError() and answer.exception_code == 6
        assert (await read(client)).registers == [5, 9]


@pytest.mark.asyncio
async def test_a_scenario_exception_comes_and_goes_with_plant_time(host: SimHost) -> None:
    async with client_of(host) as client:
        host.clock.advance(10)
        assert (await read(client)).exception_code == 6
        host.clock.advance(5)
        assert (await read(client)).registers == [5, 9]


@pytest.mark.asyncio
async def test_latency_on_the_host_clock_is_exact(host: SimHost) -> None:
    hit = hit_event(host)
    async with client_of(host) as client:
        with hooks_of(host).add("plc1", "latency,delay=2s"):
            answer = asyncio.ensure_future(read(client))
            await until_set(hit)  # the reply is in the lane, due at now + 2s
            start = host.clock.now()
            host.clock.advance(1.999)
            for _ in range(20):
                await asyncio.sleep(0)  # turns of this loop: the reply cannot come before 2s
            assert not answer.done()
            host.clock.advance(0.001)
            assert (await asyncio.wait_for(answer, PATIENT)).registers == [5, 9]
            assert host.clock.now() - start == pytest.approx(2.0)


@pytest.mark.asyncio
async def test_a_reset_between_tests_lets_a_delayed_reply_go_and_clears_faults(host: SimHost) -> None:
    hit = hit_event(host)
    async with client_of(host) as client:
        hooks_of(host).add("plc1", "latency,delay=1h")
        answer = asyncio.ensure_future(read(client))
        await until_set(hit)
        host.reset()
        assert (await asyncio.wait_for(answer, PATIENT)).registers == [5, 9]
        assert hooks_of(host).device("plc1").active() == []
        assert (await read(client)).registers == [5, 9]


@pytest.mark.asyncio
async def test_stall_and_drop_are_timeouts(host: SimHost) -> None:
    async with client_of(host, GIVE_UP) as client:
        with hooks_of(host).add("plc1", "drop,count=1"), pytest.raises(ModbusException):
            await read(client)
        assert (await read(client)).registers == [5, 9]
        hooks_of(host).add("plc1", "stall")
        with pytest.raises(ModbusException):
            await read(client)


@pytest.mark.asyncio
async def test_reset_resets_the_connection(host: SimHost) -> None:
    hooks_of(host).add("plc1", "reset")
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(host))
    writer.write(bytes.fromhex("000100000006010300000002"))
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(100), PATIENT)
    writer.close()


@pytest.mark.asyncio
async def test_refuse_closes_connections_as_they_arrive(host: SimHost) -> None:
    with hooks_of(host).add("plc1", "refuse"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(host))
        with suppress(ConnectionResetError):  # closed at once: a FIN, or an RST if the request was unread
            assert await asyncio.wait_for(reader.read(100), PATIENT) == b""
        writer.close()
    async with client_of(host) as client:
        assert (await read(client)).registers == [5, 9]


@pytest.mark.asyncio
async def test_corrupt_slicer_and_bandwidth(host: SimHost) -> None:
    async with client_of(host, GIVE_UP) as client:
        with hooks_of(host).add("plc1", "slicer,size=3,gap=0s"):
            assert (await read(client)).registers == [5, 9]
        with hooks_of(host).add("plc1", "corrupt,bits=2,count=1"):
            try:
                answer = await read(client)
            except ModbusException:
                pass
            else:
                assert answer.isError() or answer.registers != [5, 9]


@pytest.mark.asyncio
async def test_freeze_serves_values_as_they_were(host: SimHost) -> None:
    async with client_of(host) as client:
        with hooks_of(host).add("plc1", "freeze"):
            assert (await read(client)).registers == [5, 9]
            host.plant.set("other", 42)
            assert (await read(client)).registers == [5, 9]
        assert (await read(client)).registers == [5, 42]


@pytest.mark.asyncio
async def test_reboot_drops_connections_and_sets_tags_back(host: SimHost) -> None:
    async with client_of(host, GIVE_UP) as client:
        assert not (await client.write_register(0, 77, device_id=1)).isError()
        assert host.plant.get("level") == 77
        hooks_of(host).add("plc1", "reboot")
        with pytest.raises(ModbusException):
            await read(client)
    assert host.plant.get("level") == 5
    async with client_of(host) as client:
        assert (await read(client)).registers == [5, 9]


@pytest.mark.asyncio
async def test_wrong_transaction_and_truncate_through_the_server(host: SimHost) -> None:
    async with client_of(host, GIVE_UP) as client:
        for fault in ("wrong_transaction,count=1", "truncate,count=1"):
            hooks_of(host).add("plc1", fault)
            with pytest.raises(ModbusException):
                await read(client)
