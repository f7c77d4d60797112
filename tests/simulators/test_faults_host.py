"""PlantFaults as a SimHost's hooks: the simulated device commits each fault, seen by a pymodbus client.

The host runs on its own loop thread with a VirtualClock; the test waits on the FaultSet's hits (a
threading.Event), never on time. Then the host's own fault API: PlantFaults as the default hooks,
`inject_fault` and `clear_faults`, and whole-device faults (reboot, refuse) carried out at their time.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from bifrost.errors import ConfigError
from bifrost.modbus import framing, pdu
from simulators.faults import ActiveFault, FaultSpec, PlantFaults
from simulators.hooks import NoFaults
from simulators.host import SimHost
from simulators.scenario import load_scenario

from .conftest import Wire

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
async def test_a_certain_refuse_closes_the_listener_until_cleared(host: SimHost) -> None:
    async with client_of(host) as served:
        assert (await read(served)).registers == [5, 9]  # accepted (not still in the listen backlog)
        with hooks_of(host).add("plc1", "refuse"):
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", port_of(host))
            assert (await read(served)).registers == [5, 9]  # a connection made before is still served
    async with client_of(host) as client:  # listening again, on the same port
        assert (await read(client)).registers == [5, 9]


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["refuse,count=1", "refuse,probability=0.999"])
async def test_a_refuse_with_a_count_or_a_chance_closes_connections_as_they_arrive(host: SimHost, fault: str) -> None:
    handle = hooks_of(host).add("plc1", fault)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(host))
    with suppress(ConnectionResetError):  # closed at once: a FIN, or an RST if the request was unread
        assert await asyncio.wait_for(reader.read(100), PATIENT) == b""
    writer.close()
    assert handle.hits == 1
    handle.clear()
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


# --- the host's own fault API: PlantFaults by default, inject_fault, clear_faults ------------------------

READ_HR = pdu.ReadHoldingRegistersRequest(0, 2)


def wire(host: SimHost) -> Wire:
    return Wire(host.url("plc1"), timeout=PATIENT)


def registers(answer: pdu.ResponsePdu) -> tuple[int, ...]:
    assert isinstance(answer, pdu.ReadHoldingRegistersResponse), answer
    return tuple(answer.values)


def exception_code(answer: pdu.ResponsePdu) -> int:
    assert isinstance(answer, pdu.ExceptionResponse), answer
    return int(answer.code)


def refused(host: SimHost) -> bool:
    """Whether connecting to plc1 now is refused (its listening socket is closed)."""
    try:
        socket.create_connection(("127.0.0.1", port_of(host)), timeout=PATIENT).close()
    except ConnectionRefusedError:
        return True
    return False


def test_plant_faults_are_the_default_so_scenario_faults_apply_out_of_the_box() -> None:
    with SimHost(load_scenario("faulty.yaml", text=SCENARIO), clock="virtual", any_port=True) as host:
        assert isinstance(host.hooks, PlantFaults)
        with wire(host) as client:
            host.clock.advance(10)
            assert exception_code(client.call(READ_HR)) == 6
            host.clock.advance(5)
            assert registers(client.call(READ_HR)) == (5, 9)


def test_other_hooks_replace_them_and_then_faults_cannot_be_injected() -> None:
    with SimHost(load_scenario("faulty.yaml", text=SCENARIO), clock="virtual", any_port=True, hooks=NoFaults()) as host:
        with wire(host) as client:
            host.clock.advance(10)
            assert registers(client.call(READ_HR)) == (5, 9)  # the scenario's fault has no one to apply it
        with pytest.raises(ConfigError, match=r"inject_fault\(\) needs .*PlantFaults.*hooks=NoFaults"):
            host.inject_fault("plc1", "stall")
        with pytest.raises(ConfigError, match="PlantFaults"):
            host.clear_faults()


def test_inject_fault_gives_a_handle_to_clear_or_use_as_a_context_manager(host: SimHost) -> None:
    with wire(host) as client:
        with host.inject_fault("plc1", "exception", code=6, match={"function": 3}) as handle:
            assert handle.active and handle.hits == 0
            assert exception_code(client.call(READ_HR)) == 6
            assert exception_code(client.call(READ_HR)) == 6
            assert handle.hits == 2
            assert handle.spec == FaultSpec.of("exception", code=6, function=3)
        assert not handle.active
        assert registers(client.call(READ_HR)) == (5, 9)
        handle = host.inject_fault("plc1", kind="bad_quality", count=1)
        assert exception_code(client.call(READ_HR)) == 4
        assert not handle.active and handle.hits == 1  # its count is spent
        assert registers(client.call(READ_HR)) == (5, 9)
        handle.clear()  # clearing an ended fault is harmless


def test_an_injected_fault_lasts_its_for_in_plant_time(host: SimHost) -> None:
    with wire(host) as client:
        handle = host.inject_fault("plc1", "exception", code=5, for_="2s")
        host.clock.advance(1.999)
        assert exception_code(client.call(READ_HR)) == 5
        host.clock.advance(0.001)
        assert not handle.active
        assert registers(client.call(READ_HR)) == (5, 9)


def test_inject_fault_checks_the_device_and_the_keys(host: SimHost) -> None:
    with pytest.raises(ConfigError, match="no device 'plc9' is served; served: plc1"):
        host.inject_fault("plc9", "stall")
    with pytest.raises(ConfigError, match=r"dely: latency takes no such key.*did you mean 'delay'"):
        host.inject_fault("plc1", "latency", dely="2s")
    with pytest.raises(ConfigError, match="is not a fault kind"):
        host.inject_fault("plc1", "lag")
    with pytest.raises(ConfigError, match="no device 'plc9'"):
        host.clear_faults("plc9")


def test_a_fault_injected_before_start_applies_once_started() -> None:
    host = SimHost(load_scenario("faulty.yaml", text=SCENARIO), clock="virtual", any_port=True)
    handle = host.inject_fault("plc1", "exception", code=6, for_="2s")
    host.clock.advance(5)  # no server yet: the fault's time starts with the host
    with host, wire(host) as client:
        assert handle.active
        assert exception_code(client.call(READ_HR)) == 6
        assert handle.hits == 1
        handle.clear()  # the handle still holds the fault
        assert registers(client.call(READ_HR)) == (5, 9)


def test_clear_faults_ends_injected_and_scenario_faults(host: SimHost) -> None:
    with wire(host) as client:
        host.clock.advance(10)  # the scenario's exception 6 on FC3, for 5 s
        handle = host.inject_fault("plc1", "exception", code=5, match={"function": 6})
        assert exception_code(client.call(READ_HR)) == 6
        host.clear_faults()
        assert not handle.active
        assert registers(client.call(READ_HR)) == (5, 9)
        host.inject_fault("plc1", "exception", code=5)
        host.clear_faults("plc1")
        assert registers(client.call(READ_HR)) == (5, 9)


def test_reset_clears_injected_faults(host: SimHost) -> None:
    with wire(host) as client:
        handle = host.inject_fault("plc1", "exception", code=6)
        assert exception_code(client.call(READ_HR)) == 6
        host.reset()
        assert not handle.active
        assert registers(client.call(READ_HR)) == (5, 9)


# --- whole-device faults at their time: reboots and closed listeners ---------------------------------------

TIMELINE = """\
scenario: a plc with a timeline
seed: 3
clock: {tick: 100ms}
tags:
  level: {type: uint16, init: 5, writable: true}
  other: {type: uint16, init: 9, writable: true}
  trip: {type: bool, writable: true}
devices:
  plc1:
    protocol: modbus
    listen: 127.0.0.1:0
    map: {level: hr:0, other: hr:1, trip: coil:0}
events:
  - at: 10.05s
    fault: {device: plc1, kind: reboot, for: 2s}
  - at: 20s
    fault: {device: plc1, kind: refuse, for: 3s}
  - when: "trip"
    fault: {device: plc1, kind: reboot}
  - every: 1h
    fault: {device: plc1, kind: reboot, for: 1s}
"""


@pytest.fixture
def timeline() -> Iterator[SimHost]:
    with SimHost(load_scenario("timeline.yaml", text=TIMELINE), clock="virtual", any_port=True) as host:
        yield host


def test_a_scheduled_reboot_happens_at_its_time(timeline: SimHost) -> None:
    host = timeline
    with wire(host) as client:
        client.call(pdu.WriteSingleRegisterRequest(0, 77))
        host.clock.advance(10.049)
        assert host.plant.get("level") == 77
        assert registers(client.call(READ_HR)) == (77, 9)
        host.clock.advance(0.001)  # 10.05 s, between two ticks: done when advance() returns
        assert host.plant.get("level") == 5
        assert client.closed_by_peer()
    assert refused(host)  # booting for 2 s: nothing listens
    host.clock.advance(1.999)
    assert refused(host)
    host.clock.advance(0.001)
    with wire(host) as client:  # the same port again
        assert registers(client.call(READ_HR)) == (5, 9)


def test_a_refuse_for_a_while_closes_the_listener_then_reopens_it_on_time(timeline: SimHost) -> None:
    host = timeline
    host.clock.advance(13)
    with wire(host) as client:
        assert registers(client.call(READ_HR)) == (5, 9)
        host.clock.advance(7)  # 20 s
        assert refused(host)
        assert registers(client.call(READ_HR)) == (5, 9)  # an open connection is still served
        host.clock.advance(2.999)
        assert refused(host)
        host.clock.advance(0.001)
        assert not refused(host)


def test_a_reboot_on_a_condition_happens_at_the_tick_that_sees_it(timeline: SimHost) -> None:
    host = timeline
    host.clock.advance(30)
    with wire(host) as client:
        client.call(pdu.WriteSingleRegisterRequest(1, 42))
        client.call(pdu.WriteSingleCoilRequest(0, True))
        host.clock.advance(0.05)
        assert host.plant.get("other") == 42  # no tick yet
        host.clock.advance(0.05)  # the tick at 30.1 s sees `trip` and reboots
        assert host.plant.get("other") == 9
        assert host.plant.get("trip") is False
        assert client.closed_by_peer()
    assert not refused(host)  # no `for`: no boot time


def test_a_periodic_reboot_happens_every_time(timeline: SimHost) -> None:
    host = timeline
    reboots: list[float] = []
    hooks_of(host).device("plc1").on_reboot(lambda: reboots.append(host.clock.now()))
    host.clock.advance(3 * 3600 + 0.5)
    assert reboots == [10.05, 3600.0, 7200.0, 10800.0]
    assert refused(host)
    host.clock.advance(0.5)
    assert not refused(host)


def test_reset_reopens_the_listener_and_arms_the_timeline_again(timeline: SimHost) -> None:
    host = timeline
    host.clock.advance(20)
    assert refused(host)
    host.reset()
    assert not refused(host)
    with wire(host) as client:
        client.call(pdu.WriteSingleRegisterRequest(0, 77))
        host.clock.advance(10.05)
        assert host.plant.get("level") == 5
        assert client.closed_by_peer()


def test_an_injected_reboot_is_done_when_inject_fault_returns(host: SimHost) -> None:
    with wire(host) as client:
        client.call(pdu.WriteSingleRegisterRequest(0, 77))
        handle = host.inject_fault("plc1", "reboot", for_="1s")
        assert host.plant.get("level") == 5
        assert client.closed_by_peer()
        assert refused(host)
        assert handle.hits == 1
        handle.clear()
        assert not refused(host)


def test_stopping_leaves_no_timers_acting(timeline: SimHost) -> None:
    host = timeline
    host.stop()
    host.clock.advance(13)  # the reboot and its boot time pass with no server: nothing to do, nothing raised
    host.start()
    with wire(host) as client:
        assert registers(client.call(READ_HR)) == (5, 9)


def test_a_freeze_keeps_the_values_of_its_start(host: SimHost) -> None:
    with wire(host) as client:
        with host.inject_fault("plc1", "freeze"):
            host.plant.set("other", 42)  # before any read: the snapshot was taken when the freeze began
            client.call(pdu.WriteSingleRegisterRequest(0, 77))  # a write is done, but reads stay frozen
            assert registers(client.call(READ_HR)) == (5, 9)
            assert host.plant.get("level") == 77
        assert registers(client.call(READ_HR)) == (77, 42)


def test_a_scheduled_freeze_starts_and_ends_on_time() -> None:
    text = TIMELINE.replace("events:\n", "events:\n  - at: 40s\n    fault: {device: plc1, kind: freeze, for: 5s}\n")
    with SimHost(load_scenario("timeline.yaml", text=text), clock="virtual", any_port=True) as host:
        host.clock.advance(40)
        with wire(host) as client:
            client.call(pdu.WriteSingleRegisterRequest(1, 42))
            assert registers(client.call(READ_HR)) == (5, 9)
            host.clock.advance(5)
            assert registers(client.call(READ_HR)) == (5, 42)


def test_on_the_system_clock_whole_device_faults_come_and_go_on_the_loop() -> None:
    text = TIMELINE.replace(
        "events:\n", "events:\n  - at: 100ms\n    fault: {device: plc1, kind: refuse, for: 200ms}\n"
    )
    with SimHost(load_scenario("timeline.yaml", text=text), any_port=True) as host:
        seen: dict[float, bool] = {}
        done = threading.Event()

        def look(at: float) -> None:  # on the loop thread, at plant time `at`, after the host's own timers
            seen[at] = refused(host)
            if len(seen) == 2:
                done.set()

        host.clock.call_at(0.15, lambda: look(0.15))
        host.clock.call_at(0.35, lambda: look(0.35))
        assert done.wait(PATIENT)
        assert seen == {0.15: True, 0.35: False}


PIPELINED = """\
scenario: big-replies
tags:
  text: {type: "string[240]", init: hello}
devices:
  plc1: {protocol: modbus, listen: "127.0.0.1:0", map: {text: hr:0}}
"""


def test_a_client_that_pipelines_under_latency_and_never_reads_is_held_at_the_bound() -> None:
    # Before, the replies a long latency held back piled up without end (~20 MiB in 12 s): the server
    # read on. Now it stops reading that connection once its lane holds HIGH_WATER bytes of replies.
    from simulators.faults.lanes import HIGH_WATER

    sent = 3000  # 36 kB of requests, which the kernel takes at once; 750 kB of replies, three lanes' worth
    requests = b"".join(framing.encode_mbap(tid, 1, bytes.fromhex("03 0000 0078")) for tid in range(1, sent + 1))
    with SimHost(load_scenario("big.yaml", text=PIPELINED), clock="virtual", any_port=True) as host:
        log = host.devices["plc1"].log
        with wire(host) as client:
            with host.inject_fault("plc1", "latency", delay="1h"):
                client.send_raw(requests)
                deadline = time.monotonic() + PATIENT
                while log.count() * 249 < HIGH_WATER:  # until the lane is full (a bounded wait, not a sleep)
                    assert time.monotonic() < deadline, log.count()
                    host.call(asyncio.sleep, 0)

                async def spin(turns: int) -> None:  # loop turns in which a server that read on would read on
                    for _ in range(turns):
                        await asyncio.sleep(0)

                host.call(spin, 5000)
                held = log.count()
                assert held < sent, "the server read every request while holding every reply"
                assert held * 249 <= HIGH_WATER + 4096 // 12 * 249  # the bound, plus what one read brought
                with wire(host) as other:  # other connections are served meanwhile (with the latency)
                    other.send_raw(framing.encode_mbap(7, 1, bytes.fromhex("03 0000 0001")))
                    while log.count() == held:  # until it is served, its reply held back an hour
                        assert time.monotonic() < deadline + PATIENT
                        host.call(asyncio.sleep, 0)
                    host.clock.advance(3600)
                    assert other.sock.recv(100)[:2] == b"\x00\x07"
            host.clock.advance(7200)  # every held reply is due: nothing was lost at the bound
            replies = b""
            while len(replies) < sent * 249:
                chunk = client.sock.recv(1 << 16)
                assert chunk, "the simulator closed the connection"
                replies += chunk
        ids = [int.from_bytes(replies[at : at + 2], "big") for at in range(0, len(replies), 249)]
        assert ids == list(range(1, sent + 1))
