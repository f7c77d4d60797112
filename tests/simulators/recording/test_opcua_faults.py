"""Protocol faults on a replayed OPC UA device (exception, bad_quality, freeze, reboot, match: {node}),
as an asyncua client of a simulated device sees them (tests/simulators/test_opcua_faults.py).

The cassette is a simulated device's traffic, the level read twice as it moves; the replay is a SimHost
device with a `replay:` key, on a virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("asyncua")
from asyncua import Client, ua

from simulators import SimHost
from simulators.recording.record import save_traffic
from simulators.recording.serve import misses, replay_scenario

PLANT = """\
scenario: tank
tags:
  tank.level: {type: float64, init: 42.5}
  pump.run: {type: bool, writable: true}
devices:
  ua1: {protocol: opcua, listen: 127.0.0.1:0, map: {tank.level: "ns=2;s=tank.level", pump.run: "ns=2;s=pump.run"}}
"""
LEVEL, PUMP = "ns=2;s=tank.level", "ns=2;s=pump.run"


async def _record(url: str, host: SimHost) -> None:
    async with Client(url) as client:
        level = client.get_node(LEVEL)
        assert await level.read_value() == 42.5
        host.plant.set("tank.level", 43.0)
        assert await level.read_value() == 43.0
        await client.get_node(PUMP).write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
        assert await client.get_node(PUMP).read_value() is True


@pytest.fixture(scope="module")
def cassette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ua-faults")
    (folder / "tank.yaml").write_text(PLANT)
    with SimHost(folder / "tank.yaml", any_port=True) as host:
        asyncio.run(_record(host.url("ua1"), host))
        return save_traffic(host.devices["ua1"], folder / "tank.jsonl")


@pytest.fixture
def host(cassette: Path) -> Iterator[SimHost]:
    with SimHost(replay_scenario(cassette), clock="virtual") as sim:
        yield sim


async def _read(client: Client, node: str) -> ua.DataValue:
    return await client.get_node(node).read_data_value(raise_on_bad_status=False)


async def _status(client: Client, node: str) -> int:
    return int((await _read(client, node)).StatusCode.value)


def test_an_exception_answers_its_status_on_the_matched_node_only(host: SimHost) -> None:
    async def run() -> None:
        async with Client(host.url("ua1")) as client:
            with host.inject_fault("ua1", "exception", code="BadDeviceFailure", match={"node": LEVEL}):
                assert await _status(client, LEVEL) == ua.StatusCodes.BadDeviceFailure
                pump = await _read(client, PUMP)
                assert pump.StatusCode.value == ua.StatusCodes.Good and pump.Value.Value is True
            with host.inject_fault("ua1", "exception", code="BadDeviceFailure", match={"node": PUMP}):
                with pytest.raises(ua.UaStatusCodeError, match="BadDeviceFailure"):  # the recorded Write, refused
                    await client.get_node(PUMP).write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
                assert await _status(client, LEVEL) == ua.StatusCodes.Good
            level = await _read(client, LEVEL)
            assert level.StatusCode.value == ua.StatusCodes.Good and level.Value.Value in (42.5, 43.0)

    asyncio.run(run())
    assert misses(host) == []


def test_an_exception_without_an_opcua_status_answers_bad_communication_error(host: SimHost) -> None:
    async def run() -> None:
        async with Client(host.url("ua1")) as client:
            with host.inject_fault("ua1", "exception"):  # the vocabulary's default code: the device failed
                assert await _status(client, LEVEL) == ua.StatusCodes.BadCommunicationError
                assert await _status(client, PUMP) == ua.StatusCodes.BadCommunicationError

    asyncio.run(run())


def test_bad_quality_keeps_the_recorded_values_coming_with_its_status(host: SimHost) -> None:
    async def run() -> None:
        async with Client(host.url("ua1")) as client:
            with host.inject_fault("ua1", "bad_quality", code="UncertainLastUsableValue", match={"node": LEVEL}):
                first, second = await _read(client, LEVEL), await _read(client, LEVEL)
                assert [first.Value.Value, second.Value.Value] == [42.5, 43.0]  # the cassette steps on
                assert {first.StatusCode.value, second.StatusCode.value} == {ua.StatusCodes.UncertainLastUsableValue}
                assert await _status(client, PUMP) == ua.StatusCodes.Good
            level = await _read(client, LEVEL)
            assert level.StatusCode.value == ua.StatusCodes.Good and level.Value.Value == 43.0
            with host.inject_fault("ua1", "bad_quality"):  # BadSensorFailure, on every node
                assert await _status(client, PUMP) == ua.StatusCodes.BadSensorFailure

    asyncio.run(run())


def test_freeze_holds_the_values_and_takes_no_turn_of_the_cassette(host: SimHost) -> None:
    async def run() -> None:
        async with Client(host.url("ua1")) as client:
            level = client.get_node(LEVEL)
            assert await level.read_value() == 42.5
            with host.inject_fault("ua1", "freeze"):
                assert [await level.read_value(), await level.read_value()] == [42.5, 42.5]
            assert await level.read_value() == 43.0  # the cassette's next Read, where the freeze held it

    asyncio.run(run())


def test_a_reboot_drops_the_session_and_starts_the_cassette_again(host: SimHost) -> None:
    async def run() -> None:
        async with Client(host.url("ua1")) as client:
            level = client.get_node(LEVEL)
            assert [await level.read_value(), await level.read_value()] == [42.5, 43.0]
            host.inject_fault("ua1", "reboot", for_="1s")
            with pytest.raises((ua.UaError, ConnectionError, asyncio.TimeoutError)):
                await level.read_value()
        host.clock.advance(2.0)
        async with Client(host.url("ua1")) as client:
            assert await client.get_node(LEVEL).read_value() == 42.5  # back at the cassette's start

    asyncio.run(run())


def test_in_strict_mode_a_faulted_read_takes_its_place_in_the_order(cassette: Path) -> None:
    async def run(sim: SimHost) -> None:
        async with Client(sim.url("ua1")) as client:
            uri = (await client.get_namespace_array())[2]  # the match names the node by its namespace's URI
            with sim.inject_fault(
                "ua1", "exception", code="BadOutOfService", match={"node": f"nsu={uri};s=tank.level"}
            ):
                assert await _status(client, LEVEL) == ua.StatusCodes.BadOutOfService
            assert await client.get_node(LEVEL).read_value() == 43.0  # the second recorded Read

    with SimHost(replay_scenario(cassette, mode="strict"), clock="virtual") as sim:
        asyncio.run(run(sim))
        assert misses(sim) == []
