"""The function codes beyond reads and writes — mask write (22), read/write multiple (23), device
identification (43/14), report server id (17) — on both engines and every transport: Modbus TCP,
RTU over TCP and RTU on a pseudo-terminal, against the simulator. Each engine must give the same
results, and refuse with the same error in the same words."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

import bifrost
from bifrost.modbus import pdu
from bifrost.modbus.client import ModbusConnection
from simulators import SimHost, load_scenario

pytestmark = pytest.mark.asyncio

PLANT = """
scenario: functions
tags:
  r0: {{type: uint16, init: 5, writable: true}}
  r1: {{type: uint16, init: 6, writable: true}}
devices:
  plc1:
    protocol: modbus
    transport: {transport}{listen}
    unit: 1
    map: {{r0: hr:40, r1: hr:41}}
"""

TRANSPORTS = [
    "tcp",
    "rtu+tcp",
    pytest.param("rtu", marks=pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")),
]


@pytest.fixture(scope="module", params=TRANSPORTS)
def host(request: pytest.FixtureRequest) -> Iterator[SimHost]:
    transport = str(request.param)
    listen = "" if transport == "rtu" else "\n    listen: 127.0.0.1:0"  # rtu: served on a pty
    text = PLANT.format(transport=transport, listen=listen)
    with SimHost(load_scenario(Path("functions.yaml"), text=text), any_port=True) as started:
        yield started


async def _both(host: SimHost, steps: Callable[[ModbusConnection], Awaitable[object]]) -> dict[str, object]:
    results = {}
    for engine in ("python", "native"):
        host.reset()
        connection = bifrost.connect(host.devices["plc1"].url, engine=engine, timeout=5)
        assert isinstance(connection, ModbusConnection)
        async with connection as plc:
            try:
                results[engine] = await steps(plc)
            except bifrost.BifrostError as exc:
                results[engine] = (type(exc).__name__, str(exc), getattr(exc, "code", None))
    return results


async def test_mask_write_and_read_write(host: SimHost) -> None:
    async def steps(plc: ModbusConnection) -> object:
        await plc.write("hr:40", 0x1234)
        await plc.mask_write("hr:40", 0xF0F2, 0x0025)  # the spec's example: 0x12 -> 0x17 in the low byte
        masked = (await plc.read("hr:40")).value
        point = await plc.read_write("hr:40", "hr:41", 77)
        return masked, point.value, (await plc.read("hr:41")).value

    results = await _both(host, steps)
    expected = 0x1234 & 0xF0F2 | 0x0025 & ~0xF0F2 & 0xFFFF
    assert results["python"] == results["native"] == (expected, expected, 77)


async def test_device_identification(host: SimHost) -> None:
    async def steps(plc: ModbusConnection) -> object:
        return await plc.device_identification()

    results = await _both(host, steps)
    assert results["python"] == results["native"]
    assert results["python"] == {0: b"Bifrost", 1: b"functions", 2: bifrost.__version__.encode()}, results


async def test_report_server_id(host: SimHost) -> None:
    async def steps(plc: ModbusConnection) -> object:
        return await plc.report_server_id()

    results = await _both(host, steps)
    assert results["python"] == results["native"] == pdu.ReportServerIdResponse(b"plc1", True)


async def test_refusals_read_alike(host: SimHost) -> None:
    async def steps(plc: ModbusConnection) -> object:
        return await plc.mask_write("hr:9999", 0, 0)

    results = await _both(host, steps)
    url = host.devices["plc1"].url
    device = url.split("?")[0] if url.startswith("modbus+rtu://") else url  # a serial line: its port
    assert (
        results["python"]
        == results["native"]
        == ("DeviceError", f"{device}: unit 1: exception 2 (ILLEGAL_DATA_ADDRESS) to mask write register (22)", 2)
    )


async def test_a_refusal_keeps_the_connection(host: SimHost) -> None:
    async def steps(plc: ModbusConnection) -> object:
        with pytest.raises(bifrost.DeviceError):
            await plc.read_write("hr:40", "hr:9999", 1)
        return (await plc.read_write("hr:41", "hr:40", 9)).value

    results = await _both(host, steps)
    assert results["python"] == results["native"] == 6


@pytest.mark.parametrize("engine", ["python", "native"])
async def test_a_serial_line_is_named_by_its_port_on_both_engines(engine: str) -> None:
    # The native engine keeps one bus per port, shared by its units; the Python engine named the
    # device by its whole URL, query and all, so the same failure read two ways.
    url = "modbus+rtu:///dev/bifrost-no-such-port?unit=3&baud=9600"
    with pytest.raises(bifrost.ConnectError) as failed:
        async with bifrost.connect(url, engine=engine, timeout=0.5) as plc:
            await plc.read("hr:0")
    assert str(failed.value).startswith("modbus+rtu:///dev/bifrost-no-such-port: cannot connect: ")
