"""The plugin's fixtures: `bifrost_host` (session) -> `bifrost_plant` (function, reset per test), and
`bifrost_modbus_server` for ad-hoc devices with no scenario file."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import pytest

from bifrost.tags import TagMap, Value
from pytest_bifrost.adhoc import build_scenario, identity, modbus_scenario_data
from pytest_bifrost.mqtt import MqttBroker
from pytest_bifrost.options import Settings
from pytest_bifrost.plant import REAL, BifrostPlant, PlantDevice
from pytest_bifrost.registry import HostRegistry

SETTINGS = pytest.StashKey[Settings]()


def settings_of(config: pytest.Config) -> Settings:
    return config.stash.get(SETTINGS, None) or Settings()


@pytest.fixture(scope="session")
def bifrost_host(pytestconfig: pytest.Config) -> Iterator[HostRegistry]:
    """The session's simulators: each scenario (with its seed and clock) started once, on ports the
    OS picks, and stopped when the session ends. `bifrost_host.host("water_tank")` gives a SimHost."""
    registry = HostRegistry(pytestconfig, settings_of(pytestconfig))
    try:
        yield registry
    finally:
        registry.stop_all()


@pytest.fixture
def bifrost_plant(request: pytest.FixtureRequest, bifrost_host: HostRegistry) -> BifrostPlant:
    """The plant of the test's `@pytest.mark.bifrost_scenario(...)`, reset to its start (tag values,
    clock, faults, traffic logs) before the test; on the real target, the devices file's URLs."""
    marker = request.node.get_closest_marker("bifrost_scenario")
    if marker is None:
        pytest.fail(
            "bifrost_plant needs a scenario: mark the test, its class or its module with "
            "@pytest.mark.bifrost_scenario('water_tank') (a stem or a path to a scenario file)",
            pytrace=False,
        )
    if len(marker.args) != 1 or marker.kwargs:
        pytest.fail(
            f"bifrost_scenario takes one scenario (a stem or a path), got args={marker.args!r} "
            f"kwargs={marker.kwargs!r}",
            pytrace=False,
        )
    path = bifrost_host.resolve(marker.args[0], base=request.node.path.parent)
    scenario = bifrost_host.scenario(path)
    settings = bifrost_host.settings
    if settings.real:
        plant = BifrostPlant(
            scenario,
            path=path,
            real_urls=settings.devices,
            real_options=settings.connect_options,
            devices_file=settings.devices_file,
        )
        put_back(plant, settings.before_each, settings.devices_file)
        return plant
    host = bifrost_host.host_for(scenario, str(path))
    bifrost_host.reset(host, str(path))
    return BifrostPlant(scenario, path=path, host=host)


class ModbusServerFactory(Protocol):
    def __call__(
        self, tags: Mapping[str, Mapping[str, Any]], *, unit: int = 1, name: str = "plc1", byte_order: str = "ABCD"
    ) -> PlantDevice: ...


@pytest.fixture
def bifrost_modbus_server(bifrost_host: HostRegistry) -> ModbusServerFactory:
    """A factory of ad-hoc Modbus devices, tags given inline:

        plc = bifrost_modbus_server({"level": {"type": "float32", "address": "hr:0", "init": 12.5}}, unit=1)

    Each returns a started device (url, tags, log, set/get; `plc.plant.clock` for time), reset for
    this test. Equal specs reuse one simulator across the session; a second equal call in one test
    gets a second simulator.
    """
    calls: dict[str, int] = {}

    def start(
        tags: Mapping[str, Mapping[str, Any]], *, unit: int = 1, name: str = "plc1", byte_order: str = "ABCD"
    ) -> PlantDevice:
        if bifrost_host.settings.real:
            pytest.skip(f"bifrost_modbus_server starts a simulator; {REAL}")
        data = modbus_scenario_data(tags, name=name, unit=unit, byte_order=byte_order)
        key = identity(data)
        nth = calls[key] = calls.get(key, -1) + 1
        key = f"{key}#{nth}"
        scenario = bifrost_host.seeded(build_scenario(data))
        host = bifrost_host.host_for(scenario, key)
        bifrost_host.reset(host, key)
        return BifrostPlant(scenario, path=None, host=host).device(name)

    return start


def put_back(plant: BifrostPlant, before_each: Mapping[str, Mapping[str, Value]], devices_file: object) -> None:
    """Write the devices file's `before_each` values to the real devices of this plant's scenario.

    Hardware keeps what the last test wrote; this is the only reset the real target has. A tag the
    scenario's tag map for that device does not have fails the test, naming the devices file; when the
    map has none of them, the device of that name in this scenario is another plant's, left alone.
    """
    for name, values in before_each.items():
        if name not in plant.scenario.devices or not values:
            continue  # a device of another scenario: its tests put it back
        device = plant.device(name)
        unknown = [tag for tag in values if tag not in device.tags]
        if len(unknown) == len(values):
            continue  # another plant's device of the same name (a project may mix scenarios)
        if unknown:
            pytest.fail(f"{devices_file}: {name}.before_each: {device.tags.unknown(unknown[0])}", pytrace=False)
        problem = _write_all(device.url, device.tags, values, device.options)
        if problem:
            pytest.fail(f"{devices_file}: {name}.before_each: writing {name} failed: {problem}", pytrace=False)


def _write_all(url: str, tags: TagMap, values: Mapping[str, Value], options: Mapping[str, Any]) -> str:
    import bifrost

    async def write() -> None:
        async with bifrost.connect(url, tags=tags, **options) as plc:
            await plc.write_many(dict(values))

    # On a thread of its own: the test's event loop (pytest-asyncio) may already be running here.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(asyncio.run, write()).result()
        except bifrost.BifrostError as exc:
            return str(exc)
    return ""


@pytest.fixture
def bifrost_mqtt_broker(pytestconfig: pytest.Config) -> Iterator[MqttBroker]:
    """A started MQTT broker on a free port of 127.0.0.1, for this test alone (mosquitto starts in ~12 ms):
    `bifrost_mqtt_broker.url`, `.host`, `.port`; `.stop()` and `.start()` again (same port) for an outage.
    --bifrost-mqtt-broker picks mosquitto or amqtt (default: mosquitto when installed)."""
    broker = MqttBroker(kind=settings_of(pytestconfig).mqtt_broker)
    try:
        yield broker.start()
    finally:
        broker.close()
