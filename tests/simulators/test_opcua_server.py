"""The OPC UA simulator against asyncua's client (an independent peer), on real sockets, port 0.

One scenario serves the same tags over Modbus (SimHost) and OPC UA (an OpcuaDeviceServer on the
host's plant and loop): a write through one is read through the other. asyncua runs on the test's
own loop, the servers on the host's thread and the C server's (so asyncua #1603 cannot bite).
"""

from __future__ import annotations

import asyncio
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("asyncua")
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from pymodbus.client import ModbusTcpClient

from simulators import SimHost
from simulators.opcua.nodes import resolve
from simulators.opcua.server import OpcuaDeviceServer, OpcuaSettings, status_code

SCENARIO = textwrap.dedent(
    """
    scenario: opcua-test
    clock: {tick: 100ms}
    tags:
      tank.level: {type: float32, unit: "%", init: 40.0}
      pump.run: {type: bool, writable: true}
      valve.open: {type: uint16, writable: true, init: 50}
      count: {type: int32, init: -7}
      big: {type: uint64, init: 12345678901}
      neg: {type: int64, init: -5}
      small: {type: int16, init: -3}
      wide: {type: uint32, init: 70000}
      ratio: {type: float64, init: 0.125}
      label: {type: "string[8]", init: "tank", writable: true}
      ramp: {type: float32, behaviour: {ramp: {from: 0, to: 100, over: 10s}}}
    devices:
      plc1:
        protocol: modbus
        listen: 127.0.0.1:0
        unit: 1
        map:
          valve.open: hr:0
          pump.run: coil:0
    """
)

EXPECTED_TYPES = {
    "tank.level": ua.VariantType.Float,
    "pump.run": ua.VariantType.Boolean,
    "valve.open": ua.VariantType.UInt16,
    "count": ua.VariantType.Int32,
    "big": ua.VariantType.UInt64,
    "neg": ua.VariantType.Int64,
    "ratio": ua.VariantType.Double,
    "label": ua.VariantType.String,
    "ramp": ua.VariantType.Float,
    "tiny": ua.VariantType.SByte,  # tag small, an int16, served as SByte
    "octet": ua.VariantType.Byte,  # tag wide, a uint32, served as Byte
}

NS = "urn:bifrost:opcua-test"


def _serve(
    host: SimHost, security: tuple[str, ...] = ("None",), users: tuple[tuple[str, str, bool], ...] = ()
) -> OpcuaDeviceServer:
    tags = host.scenario.tags
    entries: dict[str, tuple[str | None, bool | None, str | None]] = dict.fromkeys(tags, (None, None, None))
    # Two tags also served as the one-byte types no plant type has.
    entries["small"] = (f"nsu={NS};s=tiny", None, "SByte")
    entries["wide"] = (f"nsu={NS};s=octet", None, "Byte")
    nodes = resolve("hmi", NS, entries, dict(tags))
    settings = OpcuaSettings(
        name="hmi", host="127.0.0.1", port=0, path="/bifrost", namespace=NS, security=security, users=users
    )
    device = OpcuaDeviceServer(settings, nodes, host.plant)
    host.call(lambda: device.start(asyncio.get_running_loop()))
    return device


@pytest.fixture
def host(tmp_path: Path) -> Iterator[SimHost]:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    with SimHost(str(path), clock="virtual", any_port=True) as sim:
        yield sim


@pytest.fixture
def opcua(host: SimHost) -> Iterator[OpcuaDeviceServer]:
    device = _serve(host)
    yield device
    host.call(device.stop)


def _modbus(host: SimHost) -> ModbusTcpClient:
    port = int(host.url("plc1").split("://", 1)[1].split("?")[0].rsplit(":", 1)[1])
    client = ModbusTcpClient("127.0.0.1", port=port)
    assert client.connect()
    return client


async def _node(client: Client, tag: str) -> Any:
    return await client.nodes.objects.get_child(["2:hmi", *(f"2:{part}" for part in tag.split("."))])


def test_browse_and_read_every_type(host: SimHost, opcua: OpcuaDeviceServer) -> None:
    async def run() -> None:
        async with Client(opcua.url) as client:
            assert await client.get_namespace_index(NS) == 2
            hmi = await client.nodes.objects.get_child(["2:hmi"])
            names = {(await child.read_browse_name()).Name for child in await hmi.get_children()}
            assert {"tank", "pump", "count", "label", "small", "wide"} <= names
            for tag, expected in EXPECTED_TYPES.items():
                node = client.get_node(f"ns=2;s={tag}")
                value = await node.read_data_value()
                assert value.Value.VariantType == expected, tag
            assert await (await _node(client, "tank.level")).read_value() == pytest.approx(40.0)
            assert await (await _node(client, "big")).read_value() == 12345678901
            assert await (await _node(client, "label")).read_value() == "tank"
            assert await (await _node(client, "small")).read_value() == -3  # node ns=2;s=tiny
            assert await (await _node(client, "wide")).read_value() == 255  # saturated, as a PLC would
            unit = await (await _node(client, "tank.level")).get_child(["0:EngineeringUnits"])
            assert (await unit.read_value()).DisplayName.Text == "%"
            access = await (await _node(client, "tank.level")).read_attribute(ua.AttributeIds.AccessLevel)
            assert access.Value.Value & ua.AccessLevel.CurrentWrite.mask == 0
            access = await (await _node(client, "pump.run")).read_attribute(ua.AttributeIds.AccessLevel)
            assert access.Value.Value & ua.AccessLevel.CurrentWrite.mask

    asyncio.run(run())


def test_write_reaches_the_plant_and_modbus(host: SimHost, opcua: OpcuaDeviceServer) -> None:
    modbus = _modbus(host)

    async def run() -> None:
        async with Client(opcua.url) as client:
            valve = client.get_node("ns=2;s=valve.open")
            await valve.write_value(ua.DataValue(ua.Variant(77, ua.VariantType.UInt16)))
            assert modbus.read_holding_registers(0, count=1, device_id=1).registers == [77]
            pump = await _node(client, "pump.run")
            await pump.write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
            assert modbus.read_coils(0, count=1, device_id=1).bits[0] is True
            # ...and the other way: a Modbus write is what OPC UA reads next.
            modbus.write_register(0, 12, device_id=1)
            assert await valve.read_value() == 12
            assert host.plant.get("valve.open") == 12

    try:
        asyncio.run(run())
    finally:
        modbus.close()


def test_read_only_and_unknown_nodes(host: SimHost, opcua: OpcuaDeviceServer) -> None:
    async def run() -> None:
        async with Client(opcua.url) as client:
            level = await _node(client, "tank.level")
            with pytest.raises(ua.UaStatusCodeError) as denied:
                await level.write_value(ua.DataValue(ua.Variant(1.0, ua.VariantType.Float)))
            assert denied.value.code == ua.StatusCodes.BadNotWritable
            with pytest.raises(ua.UaStatusCodeError) as unknown:
                await client.get_node("ns=2;s=no.such.tag").read_value()
            assert unknown.value.code == ua.StatusCodes.BadNodeIdUnknown
            assert host.plant.get("tank.level") == pytest.approx(40.0)

    asyncio.run(run())


class _Changes:
    def __init__(self) -> None:
        self.values: list[Any] = []
        self.event = asyncio.Event()

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.values.append(value)
        self.event.set()


async def _next_change(changes: _Changes, timeout: float = 5.0) -> Any:
    await asyncio.wait_for(changes.event.wait(), timeout)
    changes.event.clear()
    return changes.values[-1]


def test_subscription_follows_the_plant_clock(host: SimHost, opcua: OpcuaDeviceServer) -> None:
    async def run() -> None:
        async with Client(opcua.url) as client:
            ramp = await _node(client, "ramp")
            changes = _Changes()
            subscription = await client.create_subscription(20, changes)
            await subscription.subscribe_data_change(ramp)
            assert await _next_change(changes) == pytest.approx(0.0)  # the initial value
            host.clock.advance(1.0)
            assert await _next_change(changes) == pytest.approx(10.0)
            host.clock.advance(1.0)
            assert await _next_change(changes) == pytest.approx(20.0)

    asyncio.run(run())


def _client_certificate(directory: Path) -> tuple[Path, Path]:
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key, cert = directory / "client-key.pem", directory / "client-cert.der"
    asyncio.run(
        setup_self_signed_certificate(
            key, cert, "urn:bifrost:test-client", socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH], {}
        )
    )
    return cert, key


def test_basic256sha256_sign_and_encrypt_with_users(host: SimHost, tmp_path: Path) -> None:
    device = _serve(
        host,
        security=("Basic256Sha256",),
        users=(("operator", "secret", True), ("viewer", "look", False)),
    )
    cert, key = _client_certificate(tmp_path)
    modbus = _modbus(host)

    async def secure(user: str, password: str, mode: Any) -> Client:
        client = Client(device.url)
        client.application_uri = "urn:bifrost:test-client"
        await client.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key), mode=mode)
        client.set_user(user)
        client.set_password(password)
        return client

    async def run() -> None:
        client = await secure("operator", "secret", ua.MessageSecurityMode.SignAndEncrypt)
        async with client:
            valve = await _node(client, "valve.open")
            await valve.write_value(ua.DataValue(ua.Variant(9, ua.VariantType.UInt16)))
            assert modbus.read_holding_registers(0, count=1, device_id=1).registers == [9]
            changes = _Changes()
            subscription = await client.create_subscription(20, changes)
            await subscription.subscribe_data_change(await _node(client, "ramp"))
            await _next_change(changes)
            host.clock.advance(2.0)
            assert await _next_change(changes) == pytest.approx(20.0)
        client = await secure("viewer", "look", ua.MessageSecurityMode.Sign)
        async with client:
            valve = await _node(client, "valve.open")
            assert await valve.read_value() == 9
            with pytest.raises(ua.UaStatusCodeError) as denied:
                await valve.write_value(ua.DataValue(ua.Variant(1, ua.VariantType.UInt16)))
            assert denied.value.code == ua.StatusCodes.BadUserAccessDenied
        anonymous = Client(device.url)
        with pytest.raises(Exception):  # noqa: B017, PT011 - asyncua raises its own error types here
            async with anonymous:
                pass

    try:
        asyncio.run(run())
    finally:
        modbus.close()
        host.call(device.stop)


def test_exception_bad_quality_freeze_and_reboot(host: SimHost, opcua: OpcuaDeviceServer) -> None:
    async def run() -> None:
        async with Client(opcua.url) as client:
            level = await _node(client, "tank.level")
            pump = await _node(client, "pump.run")
            only_level = opcua.indexes("tank.level")
            host.call(opcua.set_exception, status_code("BadCommunicationError"), only_level, 1.0, None, 0)
            value = await level.read_data_value(raise_on_bad_status=False)
            assert value.StatusCode.value == ua.StatusCodes.BadCommunicationError
            assert await pump.read_value() is False  # match: {node: tank.level} spares the others
            host.call(opcua.clear_exception)
            host.call(opcua.set_quality, status_code("UncertainLastUsableValue"), None)
            value = await level.read_data_value(raise_on_bad_status=False)
            assert value.StatusCode.value == ua.StatusCodes.UncertainLastUsableValue
            assert value.Value.Value == pytest.approx(40.0)
            host.call(opcua.set_quality, 0, None)
            host.call(opcua.freeze, True)
            host.plant.set("tank.level", 41.0)
            assert await level.read_value() == pytest.approx(40.0)
            host.call(opcua.freeze, False)
            assert await level.read_value() == pytest.approx(41.0)
        async with Client(opcua.url) as client:
            host.call(opcua.reboot)
            with pytest.raises(Exception):  # noqa: B017, PT011 - the session is gone
                await (await _node(client, "tank.level")).read_value()

    asyncio.run(run())


def test_service_log_names_services_nodes_and_statuses(host: SimHost) -> None:
    events: list[Any] = []
    tags = host.scenario.tags
    nodes = resolve("hmi", NS, {"tank.level": (None, None, None)}, dict(tags))
    settings = OpcuaSettings(name="hmi", host="127.0.0.1", port=0, path="", namespace=NS, security=("None",), users=())
    device = OpcuaDeviceServer(settings, nodes, host.plant, on_service=events.append)
    host.call(lambda: device.start(asyncio.get_running_loop()))

    async def run() -> None:
        async with Client(device.url) as client:
            await client.get_node("ns=2;s=tank.level").read_value()

    try:
        asyncio.run(run())
        host.call(device.drain_events)
    finally:
        host.call(device.stop)
    services = [event[1] for event in events]
    assert "CreateSession" in services and "ActivateSession" in services
    reads = [event for event in events if event[1] == "Read" and event[5]]
    assert reads and reads[0][5] == [(0, 0)]
