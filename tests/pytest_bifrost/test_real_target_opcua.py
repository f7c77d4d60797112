"""--bifrost-target=real for OPC UA devices: the devices file maps a scenario's OPC UA device to an
opc.tcp:// URL with its security, user and password (from the environment) and client certificate, and
one test file runs against the simulator and against "real hardware": an asyncua server, the
independent peer, Basic256Sha256 SignAndEncrypt with users only, on its own event-loop thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

asyncua = pytest.importorskip("asyncua")
ua = asyncua.ua

NAMESPACE = "urn:bifrost:ua-plant"  # the scenario's default namespace: nsu= NodeIds resolve on either server

SCENARIO = """\
scenario: ua-plant
tags:
  tank.level: {type: float64, init: 40.0}
  setpoint: {type: uint16, init: 50, writable: true}
devices:
  hmi:
    protocol: opcua
    listen: 127.0.0.1:0
    map: all
    security: [Basic256Sha256]
    users: {operator: secret}
"""

BOTH_TARGETS = """
import asyncio

import pytest

pytestmark = pytest.mark.bifrost_scenario("ua.yaml")


def _read_write(device, value):
    async def go():
        async with device.connect() as plc:
            before = (await plc.read("setpoint")).value
            await plc.write("setpoint", value)
            points = await plc.read_many(["tank.level", "setpoint"])
            return [before, points["tank.level"].value, points["setpoint"].value]

    return asyncio.run(go())


def test_first(bifrost_plant):
    assert _read_write(bifrost_plant.device("hmi"), 61) == [50, 40.0, 61]


def test_second_finds_the_device_put_back(bifrost_plant):
    assert _read_write(bifrost_plant.device("hmi"), 62) == [50, 40.0, 62]
"""


class _Users:
    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if username == "operator" and password == "secret":
            return User(role=UserRole.User, name=username)
        return None


class Rig:
    """The stand-in hardware: an asyncua server on a loop of its own thread."""

    def __init__(self, pki: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.pki = pki
        self.server: Any = None
        self.port = 0
        self.nodes: dict[str, Any] = {}

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(60)

    async def start(self) -> None:
        from bifrost.opcua import certs

        server = asyncua.Server(user_manager=_Users())
        await server.init()
        server.set_endpoint("opc.tcp://127.0.0.1:0/rig")
        cert, key = certs.write_certificate(self.pki, "urn:bifrost:rig", name="rig")
        await server.set_application_uri("urn:bifrost:rig")
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        server.set_identity_tokens([ua.UserNameIdentityToken])
        index = await server.register_namespace(NAMESPACE)
        objects = server.nodes.objects
        level = await objects.add_variable(ua.NodeId("tank.level", index), ua.QualifiedName("level", index), 40.0)
        setpoint = await objects.add_variable(
            ua.NodeId("setpoint", index), ua.QualifiedName("setpoint", index), ua.Variant(7, ua.VariantType.UInt16)
        )
        await setpoint.set_writable()
        self.nodes = {"tank.level": level, "setpoint": setpoint}
        await server.start()
        self.server = server
        self.port = int(server.bserver.port)

    def get(self, name: str) -> Any:
        return self.run(self.nodes[name].read_value())

    def stop(self) -> None:
        async def halt() -> None:
            await self.server.stop()
            rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        if self.server is not None:
            self.run(halt())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One rig for the module (an asyncua server takes seconds to start); before_each puts it back."""
    found = Rig(tmp_path_factory.mktemp("rig-pki"))
    try:
        found.run(found.start())
        yield found
    finally:
        found.stop()


@pytest.fixture
def project(pytester: pytest.Pytester, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    from bifrost.opcua import certs

    (pytester.path / "ua.yaml").write_text(SCENARIO)
    (pytester.path / "pki").mkdir()
    certs.write_certificate(pytester.path / "pki", "urn:bifrost:test-client", name="client")
    monkeypatch.setenv("RIG_UA_PASSWORD", "secret")
    (pytester.path / "rig.yaml").write_text(
        f"""\
hmi:
  url: opc.tcp://127.0.0.1:{rig.port}/rig
  security: Basic256Sha256
  mode: SignAndEncrypt
  user: operator
  password_env: RIG_UA_PASSWORD
  certificate: pki/client.der
  private_key: pki/client.key.der
  before_each: {{setpoint: 50}}
"""
    )
    pytester.makepyfile(BOTH_TARGETS)
    return pytester


REAL = ("--bifrost-target=real", "--bifrost-devices=rig.yaml")


def test_one_opcua_test_file_runs_on_the_simulator_and_on_the_real_device(
    project: pytest.Pytester, run, rig: Rig
) -> None:
    untouched = rig.get("setpoint")
    run().assert_outcomes(passed=2)  # the simulator: the scenario's user and policy, reset between tests
    assert rig.get("setpoint") == untouched  # the rig was not touched

    run(*REAL).assert_outcomes(passed=2)  # the rig: before_each put it back to 50 before each test
    assert rig.get("setpoint") == 62  # the last test's write reached the stand-in hardware


def test_the_devices_file_options_reach_the_connection(project: pytest.Pytester, run, rig: Rig) -> None:
    project.makepyfile(
        test_options="""
        import pytest

        @pytest.mark.bifrost_scenario("ua.yaml")
        def test_options(bifrost_plant):
            hmi = bifrost_plant.device("hmi")
            assert hmi.protocol == "opcua" and hmi.url.startswith("opc.tcp://127.0.0.1:")
            assert hmi.options["user"] == "operator" and hmi.options["password"] == "secret"
            assert hmi.options["security"] == "Basic256Sha256" and hmi.options["mode"] == "SignAndEncrypt"
            assert hmi.options["certificate"].endswith("/pki/client.der")
        """
    )
    run(*REAL, "test_options.py").assert_outcomes(passed=1)


def test_a_wrong_password_fails_the_test_at_the_put_back(
    project: pytest.Pytester, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RIG_UA_PASSWORD", "wrong")
    result = run(*REAL, "-k", "first")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*rig.yaml: hmi.before_each: writing hmi failed:*"])


def test_devices_file_mistakes_name_the_key(pytester: pytest.Pytester, run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIG_UA_PASSWORD", raising=False)
    (pytester.path / "ua.yaml").write_text(SCENARIO)
    pytester.makepyfile(BOTH_TARGETS)
    (pytester.path / "bad.yaml").write_text(
        "hmi:\n  url: opc.tcp://127.0.0.1:4840/x\n  password_env: RIG_UA_PASSWORD\n"
        "plc1:\n  url: modbus://127.0.0.1:502\n  user: operator\n"
    )
    result = run("--bifrost-target=real", "--bifrost-devices=bad.yaml")
    result.stderr.fnmatch_lines(
        [
            "*bad.yaml:3:3: hmi.password_env: the environment variable RIG_UA_PASSWORD is not set*",
            "*bad.yaml:6:3: plc1.user: modbus:// takes no connection argument 'user' (its own: none)*",
        ]
    )
