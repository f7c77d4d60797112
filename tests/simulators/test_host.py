"""SimHost: start, stop, reset, URLs, ports, threads, and calling into its loop."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from pathlib import Path

import pytest

import bifrost
from bifrost.errors import ConfigError
from bifrost.modbus import pdu
from bifrost.tags import DataType
from bifrost.values import WireFormat
from simulators import SimHost, TrafficLog, protocols, shipped_scenario
from simulators.clock import SystemClock, VirtualClock
from simulators.hooks import Action, HookContext, NoFaults
from simulators.modbus.traffic import MODBUS
from simulators.traffic import Exchange

from .conftest import RIG, Wire, port_of, rig_scenario

F32 = WireFormat(DataType.FLOAT32)


def _free(port: int) -> bool:
    """Whether a server could listen on the port (as servers do, with SO_REUSEADDR: connections the
    simulator closed may linger in TIME_WAIT, which does not stop a new listener)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


def test_start_serves_and_stop_releases_the_ports(record_property: pytest.RecordProperty) -> None:
    threads = threading.active_count()
    host = SimHost(rig_scenario(), clock="virtual").start()
    assert host.running
    port = port_of(host.url("plc1"))
    assert not _free(port)
    with Wire(host.url("plc1")) as wire:  # a client still connected while the host stops
        wire.call(pdu.ReadCoilsRequest(0, 1))
        started = time.perf_counter()
        host.stop()
        took = time.perf_counter() - started
        assert wire.closed_by_peer()
    print(f"SimHost.stop() took {took * 1000:.1f} ms")  # reported, not asserted: machines differ
    record_property("stop_ms", round(took * 1000, 2))
    assert not host.running
    assert _free(port)
    assert threading.active_count() == threads
    host.stop()  # idempotent


def test_a_host_starts_again_after_stop() -> None:
    host = SimHost(rig_scenario(), clock="virtual")
    for _ in range(2):
        with host, Wire(host.url("plc1")) as wire:
            assert wire.call(pdu.ReadCoilsRequest(0, 1)) == pdu.ReadCoilsResponse((False,))
    with pytest.raises(RuntimeError, match="start"):
        host.devices["plc1"].url  # noqa: B018 - the property raises


def test_a_port_in_use_names_the_device_and_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = RIG.replace("listen: 127.0.0.1:0\n    unit: 2", f"listen: 127.0.0.1:{port}\n    unit: 2")
        threads = threading.active_count()
        host = SimHost(rig_scenario(text), clock="virtual")
        with pytest.raises(
            ConfigError, match=rf"plc2: cannot listen on 127.0.0.1:{port}: the address is already in use"
        ):
            host.start()
        assert not host.running
        assert threading.active_count() == threads
        # any_port binds port 0 everywhere instead
        with SimHost(rig_scenario(text), clock="virtual", any_port=True) as anywhere:
            assert port_of(anywhere.url("plc2")) != port


def test_scenario_by_shipped_name_path_or_model(tmp_path: Path) -> None:
    by_name = SimHost("water_tank", clock="virtual")
    by_path = SimHost(shipped_scenario("water_tank"), clock="virtual")
    written = tmp_path / "rig.yaml"
    written.write_text(RIG)
    by_file = SimHost(str(written), clock="virtual")
    assert by_name.scenario == by_path.scenario
    assert by_file.scenario.scenario == "rig"
    with pytest.raises(ConfigError, match="no shipped scenario 'nope'"):
        SimHost("nope")
    with pytest.raises(ConfigError, match="clock must be"):
        SimHost("water_tank", clock="sundial")  # type: ignore[arg-type]


def test_devices_urls_and_tags() -> None:
    with SimHost("water_tank", clock="virtual", any_port=True) as host:
        device = host.devices["plc1"]
        assert (device.name, device.protocol, device.transport, device.unit) == ("plc1", "modbus", "tcp", 1)
        assert device.url.startswith("modbus://127.0.0.1:") and device.url.endswith("?unit=1")
        assert host.url("plc1") == device.url
        assert device.tags["tank.level"].address == "hr:0"
        assert isinstance(device.log, TrafficLog)
        with pytest.raises(ConfigError, match="no device 'plc9'"):
            host.url("plc9")


def test_any_port_gives_each_distinct_listen_address_its_own_free_port() -> None:
    # Before, --any-port put every device on 127.0.0.1:0 alike, so they all shared one listener and
    # two unit-1 devices on different scenario ports clashed ("devices sharing a listener need ...").
    text = """\
scenario: two-plcs
tags:
  a: {type: uint16, init: 7}
  b: {type: uint16, init: 9}
devices:
  d0: {protocol: modbus, listen: "127.0.0.1:5020", unit: 1, map: {a: hr:0}}
  d1: {protocol: modbus, listen: "127.0.0.1:5021", unit: 1, map: {b: hr:0}}
  d2: {protocol: modbus, listen: "127.0.0.1:5021", unit: 2, map: {a: hr:0}}
"""
    with SimHost(rig_scenario(text), clock="virtual", any_port=True) as host:
        ports = {name: port_of(host.url(name)) for name in ("d0", "d1", "d2")}
        assert ports["d0"] != ports["d1"] and ports["d1"] == ports["d2"]  # d1 and d2 share, as in the file
        for name, unit, value in (("d0", 1, 7), ("d1", 1, 9), ("d2", 2, 7)):
            with Wire(host.url(name)) as wire:
                assert wire.call(pdu.ReadHoldingRegistersRequest(0, 1), unit=unit).values == (value,)


@pytest.mark.parametrize(("wildcard", "shown", "here"), [("0.0.0.0", "0.0.0.0", "127.0.0.1"), ("::", "[::]", "[::1]")])
def test_every_interface_is_shown_as_such_and_warned_about_once(
    caplog: pytest.LogCaptureFixture, wildcard: str, shown: str, here: str
) -> None:
    # Before, a 0.0.0.0 listener was shown as 127.0.0.1: nothing said that other machines could write to it.
    host = SimHost("water_tank", clock="virtual", any_port=True, listen_host=wildcard)
    with caplog.at_level(logging.WARNING, logger="simulators.host"):
        for _ in range(2):  # started twice, warned once
            with host:
                url = host.url("plc1")
                assert url.startswith(f"modbus://{shown}:")
                with Wire(url.replace(shown, here)) as wire:
                    assert isinstance(
                        wire.call(pdu.ReadHoldingRegistersRequest(6, 1)), pdu.ReadHoldingRegistersResponse
                    )
    warnings = [record.getMessage() for record in caplog.records if "every interface" in record.getMessage()]
    assert len(warnings) == 1, warnings
    assert "reachable from beyond this machine" in warnings[0] and f"on this machine at {here}" in warnings[0]
    assert host.everywhere == ["plc1", "hmi", "cpu1"]  # the demo plant over Modbus, OPC UA and S7


def test_listen_host_overrides_the_scenarios() -> None:
    with SimHost("water_tank", clock="virtual", any_port=True, listen_host="localhost") as host:
        url = host.url("plc1")
        assert url.startswith("modbus://localhost:")
        with Wire(url) as wire:
            assert isinstance(wire.call(pdu.ReadHoldingRegistersRequest(0, 2)), pdu.ReadHoldingRegistersResponse)


def test_devices_of_other_protocols_are_skipped_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    # A built-in protocol whose front-end is not installed here (every shipped one is, today).
    monkeypatch.setitem(protocols.BUILTIN, "ghost", "simulators.ghost")
    text = RIG + "  cpu:\n    protocol: ghost\n    listen: 127.0.0.1:0\n"
    with SimHost(rig_scenario(text), clock="virtual") as host:
        assert "cpu" not in host.devices
        assert "no ghost simulator yet" in host.skipped["cpu"]


def test_clock_kinds() -> None:
    assert isinstance(SimHost("water_tank", clock="virtual").clock, VirtualClock)
    system = SimHost("water_tank", speed=50.0)
    assert isinstance(system.clock, SystemClock) and system.clock.speed == 50.0
    assert system.clock is system.plant.clock


def test_a_system_clock_faster_than_the_plant_can_tick_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"clock speed 1e\+12 is too fast for water-tank.*at most 100 "):
        SimHost("water_tank", speed=1e12)
    assert SimHost("water_tank", clock="virtual", speed=1e12).clock.now() == 0  # virtual time is not real time


def test_system_clock_runs_the_plant_on_the_hosts_loop() -> None:
    with SimHost("water_tank", speed=100.0, any_port=True) as host:
        ticked = threading.Event()
        unsubscribe = host.plant.on_change(lambda changes: ticked.set())
        try:
            assert ticked.wait(5)
        finally:
            unsubscribe()
        assert host.plant.time > 0


def test_reset_between_tests() -> None:
    class Resettable(NoFaults):
        resets = 0

        def reset(self) -> None:
            self.resets += 1

    hooks = Resettable()
    with SimHost(rig_scenario(), clock="virtual", hooks=hooks) as host, Wire(host.url("plc1")) as wire:
        wire.call(pdu.WriteSingleRegisterRequest(4, 999))
        host.clock.advance(5)
        assert host.devices["plc1"].log.count() == 1
        host.reset()
        assert host.plant.get("speed") == 300
        assert host.clock.now() == 0
        assert host.devices["plc1"].log.count() == 0
        assert hooks.resets == 1
        # the devices are served on, through the same connection
        assert wire.call(pdu.ReadHoldingRegistersRequest(4, 1)) == pdu.ReadHoldingRegistersResponse((300,))


def test_reset_releases_requests_waiting_on_the_virtual_clock() -> None:
    class Delay(NoFaults):
        asked = threading.Event()

        def on_request(self, device: str, event: object) -> Action | None:
            self.asked.set()
            return Action(delay=3600)

    hooks = Delay()
    with SimHost(rig_scenario(), clock="virtual", hooks=hooks) as host, Wire(host.url("plc1")) as wire:
        wire.send_raw(wire.conn.send(pdu.ReadCoilsRequest(0, 1)))
        assert hooks.asked.wait(5)
        host.call(lambda: None)
        host.reset()  # the clock's timers are gone: the waiting answer is let go
        assert wire.next_event() is not None


def test_call_runs_on_the_loop_thread() -> None:
    with SimHost("water_tank", clock="virtual", any_port=True) as host:
        name = host.call(lambda: threading.current_thread().name)
        assert name.startswith("bifrost-sim")

        async def add(a: int, b: int) -> int:
            await asyncio.sleep(0)
            return a + b

        assert host.call(add, 2, 3) == 5
    with pytest.raises(RuntimeError, match="not running"):
        host.call(lambda: None)


def test_hooks_context_sleep_uses_the_virtual_clock() -> None:
    class Keep(NoFaults):
        pass

    hooks = Keep()
    with SimHost("water_tank", clock="virtual", any_port=True, hooks=hooks) as host:
        context = hooks.context
        assert isinstance(context, HookContext)
        assert context.plant is host.plant
        assert context.listeners[0].devices == ("plc1",)
        future = asyncio.run_coroutine_threadsafe(context.sleep(10.0), context.loop)  # type: ignore[arg-type]
        host.call(lambda: None)
        assert not future.done()
        host.clock.advance(10.0)
        future.result(5)


def test_clients_on_their_own_loops_and_threads() -> None:
    with SimHost("water_tank", clock="virtual", any_port=True) as host:
        device = host.devices["plc1"]

        async def level() -> object:
            async with bifrost.connect(device.url, tags=device.tags, engine="python") as plc:
                return (await plc.read("tank.level")).value

        results: list[object] = []
        threads = [threading.Thread(target=lambda: results.append(asyncio.run(level()))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert results == [40.0] * 4
        assert device.log.count(function=3) == 4


def test_traffic_log_reading() -> None:
    log = TrafficLog("plc1", maxlen=3)
    request = pdu.WriteSingleCoilRequest(0, True)
    for index in range(5):
        log.record(
            Exchange(
                float(index),
                0.0,
                "plc1",
                "127.0.0.1:1",
                1,
                index,
                request,
                pdu.WriteSingleCoilResponse(0, True),
                None,
                {"pump.run": True},
                MODBUS,
            )
        )
    refused = Exchange(5.0, 0.0, "plc1", "c", 2, 9, pdu.ReadCoilsRequest(0, 1), pdu.ExceptionResponse(1, 2), "no")
    log.record(refused._replace(codec=MODBUS))
    assert len(log) == 3 and log.dropped == 3
    assert log.count(function=5) == 2 and log.count(unit=2) == 1
    assert log.writes("pump.run") == [True, True]
    assert [exchange.transaction_id for exchange in log.errors()] == [9]
    text = log.format(last=2)
    assert "3 earlier exchange(s) dropped: the log keeps the newest 3" in text
    assert "1 earlier exchange(s) not shown" in text
    with pytest.raises(AssertionError, match=r"plc1: 1 request\(s\) answered with an exception") as caught:
        log.assert_no_errors()
    assert "read coil:0 -> exception 2 (ILLEGAL_DATA_ADDRESS)" in str(caught.value)
    log.clear()
    assert len(log) == 0 and log.dropped == 0
    log.assert_no_errors()
    assert "(no traffic)" in log.format()
