"""The issue's judged check: an asyncua client told only the URL that `bifrost-sim serve --json` prints
browses to a tag, reads it, writes a writable one, sees a Modbus client read the new value, and receives
subscription changes; then the same with Basic256Sha256 (SignAndEncrypt) and a username."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
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

_spec = importlib.util.spec_from_file_location("_serve_cli", Path(__file__).with_name("test_serve_cli.py"))
assert _spec is not None and _spec.loader is not None
_serve_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_serve_cli)
Served = _serve_cli.Served

SECURE = textwrap.dedent(
    """
    scenario: secure-tank
    clock: {tick: 100ms}
    tags:
      temp: {type: float32, behaviour: {sine: {mean: 20, amplitude: 5, period: 10s}}}
      valve.open: {type: uint16, writable: true, init: 50}
    devices:
      plc1: {protocol: modbus, listen: 127.0.0.1:0, unit: 1, map: {valve.open: hr:6, temp: hr:0}}
      hmi:
        protocol: opcua
        listen: 127.0.0.1:0
        security: [Basic256Sha256]
        users: {operator: secret}
        map: all
    """
)


@pytest.fixture
def served() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for process in started:
        process.kill()


class _Changes:
    def __init__(self) -> None:
        self.values: list[Any] = []
        self.event = asyncio.Event()

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.values.append(value)
        self.event.set()


def _modbus_port(url: str) -> int:
    return int(url.split("://", 1)[1].split("?")[0].rsplit(":", 1)[1])


async def _check(client: Client, namespace: str, modbus_url: str) -> None:
    """Browse, read, write (seen over Modbus), subscribe: everything from the URL alone."""
    ns = await client.get_namespace_index(namespace)
    hmi = await client.nodes.objects.get_child([f"{ns}:hmi"])
    valve = await hmi.get_child([f"{ns}:valve", f"{ns}:open"])
    assert await valve.read_value() == 50
    new = 73
    await valve.write_value(ua.DataValue(ua.Variant(new, ua.VariantType.UInt16)))
    with ModbusTcpClient("127.0.0.1", port=_modbus_port(modbus_url)) as modbus:
        assert modbus.read_holding_registers(6, count=1, device_id=1).registers == [new]
    assert await valve.read_value() == new
    temp = await hmi.get_child([f"{ns}:temp"])
    changes = _Changes()
    subscription = await client.create_subscription(50, changes)
    await subscription.subscribe_data_change(temp)
    for _ in range(3):  # the initial value, then two changes the plant's ticks made
        await asyncio.wait_for(changes.event.wait(), 10)
        changes.event.clear()
    assert len(set(changes.values)) >= 2


def test_asyncua_from_the_url_serve_prints(served: list[Any]) -> None:
    server = Served("--json", "--any-port")
    served.append(server)
    announced = json.loads(server.line())
    hmi = announced["devices"]["hmi"]
    assert hmi["protocol"] == "opcua" and hmi["url"].startswith("opc.tcp://127.0.0.1:")

    async def run() -> None:
        async with Client(hmi["url"]) as client:
            await _check(client, "urn:bifrost:water-tank", announced["devices"]["plc1"]["url"])

    asyncio.run(run())
    code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err


def test_asyncua_with_basic256sha256_and_a_username(served: list[Any], tmp_path: Path) -> None:
    scenario = tmp_path / "secure.yaml"
    scenario.write_text(SECURE)
    server = Served(str(scenario), "--json", "--any-port")
    served.append(server)
    announced = json.loads(server.line())
    url = announced["devices"]["hmi"]["url"]

    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key, cert = tmp_path / "client-key.pem", tmp_path / "client-cert.der"

    async def run() -> None:
        await setup_self_signed_certificate(
            key, cert, "urn:bifrost:test-client", socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH], {}
        )
        client = Client(url)
        client.application_uri = "urn:bifrost:test-client"
        await client.set_security(
            SecurityPolicyBasic256Sha256, str(cert), str(key), mode=ua.MessageSecurityMode.SignAndEncrypt
        )
        client.set_user("operator")
        client.set_password("secret")
        async with client:
            await _check(client, "urn:bifrost:secure-tank", announced["devices"]["plc1"]["url"])
        anonymous = Client(url)
        await anonymous.set_security(
            SecurityPolicyBasic256Sha256, str(cert), str(key), mode=ua.MessageSecurityMode.SignAndEncrypt
        )
        anonymous.application_uri = "urn:bifrost:test-client"
        with pytest.raises(ua.UaError):
            async with anonymous:
                pass

    asyncio.run(run())
    code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err
