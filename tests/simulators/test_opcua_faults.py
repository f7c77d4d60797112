"""OPC UA devices in a SimHost: faults in the one vocabulary (exception with an OPC UA status,
bad_quality, freeze, reboot, match: {node}), and the traffic log naming services, nodes and statuses.
asyncua is the client; the host runs on its own thread, on a virtual clock."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("asyncua")
from asyncua import Client, ua

from simulators import SimHost

SCENARIO = textwrap.dedent(
    """
    scenario: ua-faults
    tags:
      tank.level: {type: float32, init: 40.0}
      pump.run: {type: bool, writable: true}
    devices:
      hmi: {protocol: opcua, listen: 127.0.0.1:0, map: all}
    """
)
LEVEL, PUMP = "ns=2;s=tank.level", "ns=2;s=pump.run"


@pytest.fixture
def host(tmp_path: Path) -> Iterator[SimHost]:
    path = tmp_path / "ua.yaml"
    path.write_text(SCENARIO)
    with SimHost(str(path), clock="virtual", any_port=True) as sim:
        yield sim


async def _status(client: Client, node: str) -> int:
    value = await client.get_node(node).read_data_value(raise_on_bad_status=False)
    return int(value.StatusCode.value)


def test_exception_answers_the_status_on_the_matched_node(host: SimHost) -> None:
    async def run() -> None:
        async with Client(host.url("hmi")) as client:
            with host.inject_fault("hmi", "exception", code="BadCommunicationError", match={"node": LEVEL}):
                assert await _status(client, LEVEL) == ua.StatusCodes.BadCommunicationError
                assert await _status(client, PUMP) == ua.StatusCodes.Good
            assert await _status(client, LEVEL) == ua.StatusCodes.Good

    asyncio.run(run())


def test_bad_quality_freeze_and_reboot(host: SimHost) -> None:
    async def run() -> None:
        async with Client(host.url("hmi")) as client:
            level = client.get_node(LEVEL)
            with host.inject_fault("hmi", "bad_quality", code="UncertainLastUsableValue"):
                value = await level.read_data_value(raise_on_bad_status=False)
                assert value.StatusCode.value == ua.StatusCodes.UncertainLastUsableValue
                assert value.Value.Value == pytest.approx(40.0)
            assert await _status(client, LEVEL) == ua.StatusCodes.Good
            with host.inject_fault("hmi", "freeze"):
                host.plant.set("tank.level", 55.0)
                assert await level.read_value() == pytest.approx(40.0)
            assert await level.read_value() == pytest.approx(55.0)
            host.inject_fault("hmi", "reboot", for_="1s")
            with pytest.raises((ua.UaError, ConnectionError, asyncio.TimeoutError)):
                await level.read_value()
        host.clock.advance(2.0)
        async with Client(host.url("hmi")) as client:
            assert await client.get_node(LEVEL).read_value() == pytest.approx(40.0)  # back to init

    asyncio.run(run())


def test_traffic_log_shows_services_nodes_and_statuses(host: SimHost) -> None:
    async def run() -> None:
        async with Client(host.url("hmi")) as client:
            await client.get_node(LEVEL).read_value()
            await client.get_node(PUMP).write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
            with host.inject_fault("hmi", "exception", code="BadDeviceFailure", match={"node": LEVEL}):
                await client.get_node(LEVEL).read_data_value(raise_on_bad_status=False)

    asyncio.run(run())
    log: Any = host.devices["hmi"].log
    # The last events are drained on the host's loop; a call there lets it finish.
    host.call(lambda: None)
    lines = [exchange.describe() for exchange in log.entries()]
    assert any("Read ns=2;s=tank.level -> Good" in line for line in lines), lines
    assert any("Write ns=2;s=pump.run -> Good" in line and "pump.run=True" in line for line in lines), lines
    assert any("Read ns=2;s=tank.level -> BadDeviceFailure" in line for line in lines), lines
    assert log.count(function=ua.ObjectIds.ReadRequest) >= 2
    assert log.writes("pump.run") == [True]
    assert host.plant.get("pump.run") is True


def test_transport_faults_act_in_front_of_the_server(host: SimHost) -> None:
    async def run() -> None:
        with host.inject_fault("hmi", "refuse"), pytest.raises((OSError, ua.UaError, asyncio.TimeoutError)):
            async with Client(host.url("hmi"), timeout=2):
                pass
        async with Client(host.url("hmi")) as client:
            assert await client.get_node(LEVEL).read_value() == pytest.approx(40.0)
            broken = pytest.raises((OSError, ua.UaError, asyncio.TimeoutError, ConnectionError))
            with host.inject_fault("hmi", "reset"), broken:
                await client.get_node(LEVEL).read_value()
        async with Client(host.url("hmi")) as client:  # a new connection after the fault is served
            assert await client.get_node(LEVEL).read_value() == pytest.approx(40.0)

    asyncio.run(run())


def test_without_fault_hooks_the_server_listens_on_the_device_port(tmp_path: Path) -> None:
    from simulators.hooks import NoFaults

    path = tmp_path / "ua.yaml"
    path.write_text(SCENARIO)
    with SimHost(str(path), clock="virtual", any_port=True, hooks=NoFaults()) as sim:

        async def run() -> None:
            async with Client(sim.url("hmi")) as client:
                assert await client.get_node(LEVEL).read_value() == pytest.approx(40.0)

        asyncio.run(run())


def test_reset_between_tests_puts_written_values_back(host: SimHost) -> None:
    async def write_then_read() -> tuple[bool, bool]:
        async with Client(host.url("hmi")) as client:
            pump = client.get_node(PUMP)
            await pump.write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
            written = await pump.read_value()
            host.reset()
            return written, await pump.read_value()

    assert asyncio.run(write_then_read()) == (True, False)


def _exception_draws(tmp_path: Path, seed: int, reads: int = 24) -> list[bool]:
    """Which of `reads` reads a probable exception hit, on a fresh host whose scenario has `seed`."""
    path = tmp_path / f"ua-{seed}.yaml"
    path.write_text(SCENARIO.replace("scenario: ua-faults", f"scenario: ua-faults\nseed: {seed}"))

    async def run(sim: SimHost) -> list[bool]:
        async with Client(sim.url("hmi")) as client:
            with sim.inject_fault("hmi", "exception", code="BadCommunicationError", probability=0.5):
                return [await _status(client, LEVEL) != ua.StatusCodes.Good for _ in range(reads)]

    with SimHost(str(path), clock="virtual", any_port=True) as sim:
        return asyncio.run(run(sim))


def test_a_probable_exception_draws_from_the_scenario_seed(tmp_path: Path) -> None:
    first = _exception_draws(tmp_path, 1)
    assert _exception_draws(tmp_path, 1) == first  # the same seed: the same answers, run after run
    assert _exception_draws(tmp_path, 2) != first  # another seed: another sequence
    assert 0 < sum(first) < len(first)  # a draw each read, not all or nothing


def test_an_exception_without_an_opcua_status_answers_bad_communication_error(host: SimHost) -> None:
    async def run() -> None:
        async with Client(host.url("hmi")) as client:
            with host.inject_fault("hmi", "exception"):  # the vocabulary's default code is a device failure
                assert await _status(client, LEVEL) == ua.StatusCodes.BadCommunicationError

    asyncio.run(run())
