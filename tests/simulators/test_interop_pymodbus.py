"""Independent clients against the simulator: pymodbus (sync and async) and bifrost's Python engine read
and write every mapped tag of every shipped scenario. The expected words come from the scenario's tag
map and the value codec, the plant's values from the plant itself (on a virtual clock, so they hold still).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

import bifrost
from bifrost.modbus.address import Address, Area, resolve_tag
from bifrost.tags import DataType, Tag, Value
from bifrost.values import WireFormat
from simulators import SimHost, shipped_scenarios
from simulators.scenario import checked_value

SHIPPED = sorted(shipped_scenarios())


@pytest.fixture(params=SHIPPED)
def shipped(request: pytest.FixtureRequest) -> Iterator[SimHost]:
    with SimHost(str(request.param), clock="virtual", any_port=True) as host:
        yield host


def _mapped(host: SimHost) -> Iterator[tuple[str, Tag, Address, WireFormat]]:
    for name, device in host.devices.items():
        if device.protocol != "modbus":
            continue  # OPC UA and S7 devices have interop tests of their own (test_opcua_server.py, test_s7_*)
        for tag in device.tags.tags.values():
            address, fmt = resolve_tag(tag)
            yield name, tag, address, fmt


def _new_value(fmt: WireFormat, current: Value) -> Value:
    """A value to write that differs from `current` and survives the wire exactly."""
    if fmt.type is DataType.BOOL:
        return not current
    if fmt.type is DataType.STRING:
        return "OK" if current != "OK" else "KO"
    raw = 12.25 if fmt.type.is_float else 3
    if raw == current:
        raw += 1
    return fmt.decode(fmt.encode(raw * fmt.scale + fmt.offset))


def _plant_value(host: SimHost, name: str, fmt: WireFormat, words: list[int]) -> Value:
    """What the plant should hold after `words` were written for the tag."""
    return checked_value(host.scenario.tags[name].type, fmt.decode(words))


def _port(url: str) -> int:
    return int(url.split("://", 1)[1].split("?")[0].rsplit(":", 1)[1])


# --- pymodbus, sync and async, through one adapter ---------------------------------------------------


class _Client:
    """pymodbus calls, awaited alike whether the client is sync or async."""

    def __init__(self, client: Any, is_async: bool) -> None:
        self.client, self.is_async = client, is_async

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        response = getattr(self.client, method)(*args, **kwargs)
        if self.is_async:
            response = await response
        assert not response.isError(), f"{method}{args}: {response}"
        return response


@asynccontextmanager
async def _pymodbus(port: int, is_async: bool) -> AsyncIterator[_Client]:
    from pymodbus.client import AsyncModbusTcpClient, ModbusTcpClient

    if is_async:
        client: Any = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5)
        assert await client.connect()
    else:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=5)
        assert client.connect()
    try:
        yield _Client(client, is_async)
    finally:
        client.close()


async def _read(client: _Client, address: Address, fmt: WireFormat, unit: int) -> Value:
    if address.area is Area.COIL:
        return bool((await client.call("read_coils", address.offset, count=1, device_id=unit)).bits[0])
    if address.area is Area.DISCRETE_INPUT:
        return bool((await client.call("read_discrete_inputs", address.offset, count=1, device_id=unit)).bits[0])
    method = "read_holding_registers" if address.area is Area.HOLDING_REGISTER else "read_input_registers"
    response = await client.call(method, address.offset, count=fmt.words, device_id=unit)
    return fmt.decode(response.registers)


async def _write(client: _Client, address: Address, fmt: WireFormat, value: Value, unit: int) -> list[int]:
    """Write the tag's new value; the words written (for a coil, [0] or [1])."""
    if address.area is Area.COIL:
        await client.call("write_coil", address.offset, bool(value), device_id=unit)
        return [int(bool(value))]
    if fmt.bit is not None:  # a bit of a register: read, change, write back
        current = await client.call("read_holding_registers", address.offset, count=1, device_id=unit)
        words = fmt.encode(value, current.registers)
    else:
        words = fmt.encode(value)
    if len(words) == 1:
        await client.call("write_register", address.offset, words[0], device_id=unit)
    else:
        await client.call("write_registers", address.offset, words, device_id=unit)
    return words


async def _exercise(host: SimHost, is_async: bool) -> int:
    """Read every mapped tag and write every writable one; how many tags were written."""
    written = 0
    for device, tag, address, fmt in _mapped(host):
        unit = host.devices[device].unit
        async with _pymodbus(_port(host.url(device)), is_async) as client:
            plant_value = host.plant.get(tag.name)
            assert await _read(client, address, fmt, unit) == fmt.decode(fmt.encode(plant_value, [0])), tag.name
            if not (tag.writable and address.area.writable):
                continue
            new = _new_value(fmt, await _read(client, address, fmt, unit))
            words = await _write(client, address, fmt, new, unit)
            assert host.plant.get(tag.name) == _plant_value(host, tag.name, fmt, words), tag.name
            assert await _read(client, address, fmt, unit) == new, tag.name
            written += 1
    return written


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_pymodbus_client_reads_and_writes_every_tag(shipped: SimHost, is_async: bool) -> None:
    assert asyncio.run(_exercise(shipped, is_async)) > 0
    for device in shipped.devices.values():
        device.log.assert_no_errors()


def test_bifrost_python_engine_reads_and_writes_every_tag(shipped: SimHost) -> None:
    async def run() -> None:
        for name, device in shipped.devices.items():
            if device.protocol != "modbus":
                continue
            async with bifrost.connect(device.url, tags=device.tags, engine="python") as plc:
                points = await plc.read_many(list(device.tags))
                for tag, _, fmt in ((tag, address, fmt) for dev, tag, address, fmt in _mapped(shipped) if dev == name):
                    expected = fmt.decode(fmt.encode(shipped.plant.get(tag.name), [0]))
                    assert points[tag.name].value == expected, tag.name
                    assert points[tag.name].good
                for dev, tag, address, fmt in _mapped(shipped):
                    if dev != name or not (tag.writable and address.area.writable):
                        continue
                    new = _new_value(fmt, points[tag.name].value)  # type: ignore[arg-type]
                    await plc.write(tag.name, new)
                    assert shipped.plant.get(tag.name) == checked_value(shipped.scenario.tags[tag.name].type, new), (
                        tag.name
                    )
                    assert (await plc.read(tag.name)).value == new
            # bifrost's planner merges reads across small holes and splits them when refused (exception
            # 2): those probes are the only refusals expected.
            probes = [exchange for exchange in device.log.errors() if exchange.function in (1, 2, 3, 4)]
            assert device.log.errors() == probes

    asyncio.run(run())


@pytest.mark.parametrize("function", [0x81, 0xC3, 0xFF])
def test_pymodbus_gets_exception_1_for_a_function_code_no_request_has(function: int) -> None:
    # pymodbus's client cannot decode an answer to function 0 (0x80 01), so 0 is checked on a raw
    # socket in test_modbus_server; codes 0x81..0xFF come back as 0x80|code, which pymodbus decodes.
    from pymodbus.client import ModbusTcpClient
    from pymodbus.pdu import ExceptionResponse, ModbusPDU

    class Odd(ModbusPDU):  # a request with no data, of the code under test
        function_code = function
        rtu_frame_size = 4

        def encode(self) -> bytes:
            return b""

        def decode(self, data: bytes) -> None:
            pass

    with SimHost("water_tank", clock="virtual", any_port=True) as host:
        port = int(host.url("plc1").split("://")[1].split("?")[0].rsplit(":", 1)[1])
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=10, retries=0)
        assert client.connect()
        try:
            client.register(Odd)
            answer = client.execute(False, Odd(dev_id=1))
            assert isinstance(answer, ExceptionResponse)
            assert (answer.function_code, answer.exception_code) == (function, 1)
            assert client.read_holding_registers(6, count=1, device_id=1).registers == [50]  # serves on
        finally:
            client.close()
