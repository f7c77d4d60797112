"""Replay as a virtual PLC: recorded through the proxy from pymodbus's server, imported from captures,
saved from a simulator's traffic log; served on real sockets and read by pymodbus's client."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer

from bifrost.modbus import pdu
from simulators.host import SimHost
from simulators.proxy import Proxy
from simulators.recording import Cassette, Entry, load_cassette, save_cassette
from simulators.recording.importer import import_capture
from simulators.recording.record import ProxyRecorder, save_traffic
from simulators.recording.replay import Replayer
from simulators.recording.serve import misses, replay_scenario

PATIENT = 10.0
CLI = [sys.executable, "-c", "from simulators.cli import main; main()"]


def _port(url: str) -> int:
    return int(url.split("//")[1].split("?")[0].rsplit(":", 1)[1])


@asynccontextmanager
async def pymodbus_server() -> AsyncIterator[int]:
    """pymodbus's server: hr 0..9 hold 100+address, coils 0..3 alternate (a block at 1 serves wire 0)."""
    device = ModbusDeviceContext(
        hr=ModbusSequentialDataBlock(1, [100 + i for i in range(10)]),
        co=ModbusSequentialDataBlock(1, [True, False, True, False]),
    )
    server = ModbusTcpServer(ModbusServerContext(devices=device, single=True), address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    try:
        yield int(server.transport.sockets[0].getsockname()[1])
    finally:
        await server.shutdown()


def client(port: int, timeout: float = PATIENT, framer: FramerType = FramerType.SOCKET) -> AsyncModbusTcpClient:
    return AsyncModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0, reconnect_delay=0, framer=framer)


class Replaying:
    """`bifrost-sim replay FILE --json` in a subprocess, as a user runs it."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*CLI, "replay", *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )

    def urls(self) -> dict[str, str]:
        assert self.process.stdout is not None
        fd, buffer = self.process.stdout.fileno(), b""
        deadline = time.monotonic() + 20
        while b"\n" not in buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, "replay printed nothing in time"
            chunk = os.read(fd, 4096)
            assert chunk, f"replay ended: {self.process.stderr.read().decode() if self.process.stderr else ''}"
            buffer += chunk
        devices = json.loads(buffer.partition(b"\n")[0])["devices"]
        return {name: device["url"] for name, device in devices.items()}

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=20)
        return self.process.returncode


@contextmanager
def replaying(*args: str) -> Iterator[Replaying]:
    process = Replaying(*args)
    try:
        yield process
    finally:
        if process.process.poll() is None:
            process.process.kill()
            process.process.communicate()


# --- the judged path: a pymodbus server recorded through the proxy, replayed to a pymodbus client -----


@pytest.mark.asyncio
async def test_recorded_through_the_proxy_from_pymodbus_then_replayed_by_the_command(tmp_path: Path) -> None:
    cassette = tmp_path / "pump.jsonl"
    async with pymodbus_server() as port:
        with ProxyRecorder(cassette, device="plc1") as recorder:
            async with Proxy(("127.0.0.1", port), log=recorder) as proxy:
                live = client(proxy.address[1])
                assert await live.connect()
                assert (await live.read_holding_registers(0, count=4, device_id=1)).registers == [100, 101, 102, 103]
                assert (await live.read_coils(0, count=4, device_id=1)).bits[:4] == [True, False, True, False]
                assert not (await live.write_register(2, 777, device_id=1)).isError()
                assert (await live.read_holding_registers(0, count=4, device_id=1)).registers == [100, 101, 777, 103]
                live.close()
    recorded = load_cassette(cassette)
    assert [pdu.decode_request(e.request).function for e in recorded] == [3, 1, 6, 3]
    assert all(e.latency is not None for e in recorded)

    with replaying(str(cassette)) as replay:
        url = replay.urls()["plc1"]
        again = client(_port(url))
        assert await again.connect()
        # The same questions get the recorded answers, in turn: the second read shows the write.
        assert (await again.read_holding_registers(0, count=4, device_id=1)).registers == [100, 101, 102, 103]
        assert (await again.read_coils(0, count=4, device_id=1)).bits[:4] == [True, False, True, False]
        assert not (await again.write_register(2, 777, device_id=1)).isError()
        assert (await again.read_holding_registers(0, count=4, device_id=1)).registers == [100, 101, 777, 103]
        refused = await again.read_holding_registers(50, count=1, device_id=1)  # never recorded
        assert refused.isError() and refused.exception_code == 2
        again.close()
        assert replay.stop() == 0


@pytest.mark.parametrize("command", ["proxy", "record"])
def test_the_proxy_and_record_commands_record_a_cassette(tmp_path: Path, command: str) -> None:
    async def scenario() -> None:
        async with pymodbus_server() as port:
            cassette = tmp_path / "cli.jsonl"
            to_file = (
                ["--record", str(cassette), "--record-device"]
                if command == "proxy"
                else ["-o", str(cassette), "--device"]
            )
            proxy = await asyncio.create_subprocess_exec(
                *CLI,
                command,
                "--listen",
                "127.0.0.1:0",
                "--target",
                f"127.0.0.1:{port}",
                *to_file,
                "plc1",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            assert proxy.stdout is not None
            line = (await asyncio.wait_for(proxy.stdout.readline(), 20)).decode()
            listen = int(line.strip().rsplit(":", 1)[1])
            live = client(listen)
            assert await live.connect()
            assert (await live.read_holding_registers(3, count=2, device_id=1)).registers == [103, 104]
            live.close()
            proxy.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proxy.communicate(), 20)
            entries = load_cassette(cassette).entries
            assert len(entries) == 1 and entries[0].device == "plc1"
            assert pdu.decode_response(entries[0].response) == pdu.ReadHoldingRegistersResponse((103, 104))

    asyncio.run(scenario())


# --- captures made by others, and by us --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_public_capture_replayed_strictly_answers_each_request_as_captured(data: Path, tmp_path: Path) -> None:
    cassette, _ = import_capture(data / "zeek_modbus_small.pcap")
    path = cassette.save(tmp_path / "zeek.jsonl")
    with SimHost(replay_scenario(path, mode="strict")) as host:
        port = _port(next(iter(host.devices.values())).url)
        peer = client(port)
        assert await peer.connect()
        for entry in cassette:
            request = pdu.decode_request(entry.request)
            expected = pdu.decode_response(entry.response, request)
            if isinstance(request, pdu.WriteMultipleCoilsRequest):
                answer = await peer.write_coils(request.address, list(request.values), device_id=entry.unit)
                assert (answer.address, answer.count) == (expected.address, expected.count)
            else:
                answer = await peer.read_coils(request.address, count=request.count, device_id=entry.unit)
                assert tuple(answer.bits[: request.count]) == expected.values
        peer.close()
        assert misses(host) == []


@pytest.mark.asyncio
async def test_an_rtu_over_tcp_capture_replays_over_rtu_over_tcp(data: Path, tmp_path: Path) -> None:
    cassette, _ = import_capture(data / "modbus_rtu_over_tcp.pcap")
    path = cassette.save(tmp_path / "rtu.jsonl")
    with SimHost(replay_scenario(path, transport="rtu+tcp")) as host:
        url = next(iter(host.devices.values())).url
        assert url.startswith("modbus+rtu+tcp://")
        peer = client(_port(url), framer=FramerType.RTU)
        assert await peer.connect()
        assert (await peer.read_input_registers(0, count=2, device_id=1)).registers == [120, 0xFFF4]
        peer.close()


# --- modes ---------------------------------------------------------------------------------------------------


def _exchange(request: pdu.RequestPdu, response: pdu.ResponsePdu | None, t: float = 0.0, latency: float = 0.0) -> Entry:
    answer = None if response is None else pdu.encode_response(response)
    return Entry("modbus", "plc1", 1, 1, t, pdu.encode_request(request), answer, latency)


READ_0 = pdu.ReadHoldingRegistersRequest(0, 2)
TAPE = Cassette(
    [
        _exchange(READ_0, pdu.ReadHoldingRegistersResponse((1, 2))),
        _exchange(pdu.ReadCoilsRequest(0, 3), pdu.ReadCoilsResponse((True, False, True))),
        _exchange(READ_0, pdu.ReadHoldingRegistersResponse((3, 4))),
        _exchange(pdu.WriteSingleRegisterRequest(1, 9), pdu.WriteSingleRegisterResponse(1, 9)),
    ]
)


def _ask(replayer: Replayer, request: pdu.RequestPdu) -> pdu.ResponsePdu | None:
    answer = replayer.answer(1, pdu.encode_request(request)).response
    return None if answer is None else pdu.decode_response(answer, request)


def test_strict_mode_wants_the_recorded_order() -> None:
    replayer = Replayer(TAPE, mode="strict")
    assert _ask(replayer, READ_0) == pdu.ReadHoldingRegistersResponse((1, 2))
    assert _ask(replayer, READ_0) == pdu.ExceptionResponse(3, 2)  # the coils were next
    assert "exchange 2 of the cassette is unit 1: read coil:0-2" in replayer.misses[0].reason
    assert _ask(replayer, pdu.ReadCoilsRequest(0, 3)) == pdu.ReadCoilsResponse((True, False, True))
    with pytest.raises(AssertionError, match=r"1 request\(s\) the cassette cannot answer:\n  plc1 unit 1: read hr:0-1"):
        replayer.assert_no_misses()


def test_request_mode_answers_repeats_in_turn_then_the_last_again() -> None:
    replayer = Replayer(TAPE)
    assert _ask(replayer, pdu.ReadCoilsRequest(0, 3)) == pdu.ReadCoilsResponse((True, False, True))
    assert [_ask(replayer, READ_0) for _ in range(3)] == [
        pdu.ReadHoldingRegistersResponse((1, 2)),
        pdu.ReadHoldingRegistersResponse((3, 4)),
        pdu.ReadHoldingRegistersResponse((3, 4)),
    ]
    assert _ask(replayer, pdu.ReadHoldingRegistersRequest(1, 1)) == pdu.ExceptionResponse(3, 2)
    assert replayer.misses[0].reason == "never recorded"
    replayer.reset()
    assert _ask(replayer, READ_0) == pdu.ReadHoldingRegistersResponse((1, 2)) and replayer.misses == []


def test_image_mode_answers_what_was_never_asked_from_what_was_seen() -> None:
    replayer = Replayer(TAPE, mode="image")
    # hr:0 and hr:1 were last seen as 3 and 9 (the write came after the read); coils 0..2 as read.
    assert _ask(replayer, pdu.ReadHoldingRegistersRequest(1, 1)) == pdu.ReadHoldingRegistersResponse((9,))
    assert _ask(replayer, pdu.ReadCoilsRequest(1, 2)) == pdu.ReadCoilsResponse((False, True))
    assert _ask(replayer, pdu.WriteSingleRegisterRequest(0, 55)) == pdu.WriteSingleRegisterResponse(0, 55)
    assert _ask(replayer, pdu.ReadHoldingRegistersRequest(0, 1)) == pdu.ReadHoldingRegistersResponse((55,))
    assert _ask(replayer, pdu.ReadHoldingRegistersRequest(0, 3)) == pdu.ExceptionResponse(3, 2)  # hr:2 never seen
    assert _ask(replayer, pdu.WriteSingleCoilRequest(7, True)) == pdu.ExceptionResponse(5, 2)
    assert len(replayer.misses) == 2


def test_unknown_requests_get_the_configured_error_or_nothing() -> None:
    assert _ask(Replayer(TAPE, unknown=6), pdu.ReadCoilsRequest(9, 1)) == pdu.ExceptionResponse(1, 6)
    assert _ask(Replayer(TAPE, unknown=None), pdu.ReadCoilsRequest(9, 1)) is None


@pytest.mark.asyncio
async def test_image_mode_on_a_socket_and_silence_for_unknown_requests(tmp_path: Path) -> None:
    path = save_cassette(tmp_path / "tape.jsonl", TAPE.entries)
    with SimHost(replay_scenario(path, mode="image", unknown=None)) as host:
        port = _port(host.url("plc1"))
        peer = client(port, timeout=0.5)
        assert await peer.connect()
        assert (await peer.read_holding_registers(0, count=2, device_id=1)).registers == [1, 2]
        # The image follows what the device was seen to answer: the replayed read just showed hr:1 = 2.
        assert (await peer.read_holding_registers(1, count=1, device_id=1)).registers == [2]
        with pytest.raises(Exception):  # noqa: B017, PT011 - pymodbus's timeout: nothing answered
            await peer.read_holding_registers(20, count=1, device_id=1)
        peer.close()
        assert [miss.request for miss in misses(host)] == [pdu.encode_request(pdu.ReadHoldingRegistersRequest(20, 1))]
        log = host.devices["plc1"].log.entries()
        assert "answered from the learned image" in (log[1].error or "")


# --- timing ----------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_recorded_timing_on_a_virtual_clock_answers_after_the_recorded_delay(tmp_path: Path) -> None:
    slow = _exchange(READ_0, pdu.ReadHoldingRegistersResponse((1, 2)), latency=5.0)
    path = save_cassette(tmp_path / "slow.jsonl", [slow])
    with SimHost(replay_scenario(path, timing="recorded"), clock="virtual") as host:
        peer = client(_port(host.url("plc1")))
        assert await peer.connect()
        answer = asyncio.ensure_future(peer.read_holding_registers(0, count=2, device_id=1))
        log = host.devices["plc1"].log
        deadline = time.monotonic() + PATIENT
        while not host._sleepers:  # until the device holds the answer back (a bounded poll)
            assert time.monotonic() < deadline, "the request never reached the replayed device"
            await asyncio.sleep(0.01)
        host.clock.advance(4.999)
        for _ in range(20):
            await asyncio.sleep(0)  # turns of the loop, not a wait: nothing may arrive before 5 s
        assert not answer.done() and len(log) == 0
        host.clock.advance(0.001)
        assert (await asyncio.wait_for(answer, PATIENT)).registers == [1, 2]
        peer.close()


@pytest.mark.asyncio
async def test_fast_timing_ignores_the_recorded_delay(tmp_path: Path) -> None:
    slow = _exchange(READ_0, pdu.ReadHoldingRegistersResponse((1, 2)), latency=3600.0)
    path = save_cassette(tmp_path / "slow.jsonl", [slow])
    with SimHost(replay_scenario(path), clock="virtual") as host:
        peer = client(_port(host.url("plc1")))
        assert await peer.connect()
        assert (await peer.read_holding_registers(0, count=2, device_id=1)).registers == [1, 2]
        peer.close()


# --- a simulator's traffic log as a cassette -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_simulated_devices_traffic_replays_the_same(data: Path, tmp_path: Path) -> None:
    with SimHost(data / "pump_station.yaml", clock="virtual") as host:
        peer = client(_port(host.url("plc1")))
        assert await peer.connect()
        first = (await peer.read_holding_registers(0, count=3, device_id=1)).registers
        await peer.write_coil(1, True, device_id=1)
        bits = (await peer.read_coils(0, count=2, device_id=1)).bits[:2]
        peer.close()
        path = save_traffic(host.devices["plc1"], tmp_path / "sim.jsonl")
    assert len(load_cassette(path)) == 3
    with SimHost(replay_scenario(path, mode="strict")) as replayed:
        peer = client(_port(replayed.url("plc1")))
        assert await peer.connect()
        assert (await peer.read_holding_registers(0, count=3, device_id=1)).registers == first
        assert not (await peer.write_coil(1, True, device_id=1)).isError()
        assert (await peer.read_coils(0, count=2, device_id=1)).bits[:2] == bits
        peer.close()
        assert misses(replayed) == []


def test_replay_errors_name_what_is_wrong(tmp_path: Path) -> None:
    path = save_cassette(
        tmp_path / "two.jsonl", [TAPE.entries[0], Entry("modbus", "plc2", 1, 1, 0, b"\x01\x00\x00\x00\x01", None)]
    )
    with pytest.raises(ValueError, match=r"it records 2 devices \(plc1, plc2\): name one"):
        replay_scenario(path)
    with pytest.raises(ValueError, match="records no device 'plc9'"):
        replay_scenario(path, device="plc9")
    result = subprocess.run([*CLI, "replay", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "name one" in result.stderr
