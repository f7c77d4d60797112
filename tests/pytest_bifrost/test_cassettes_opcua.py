"""@pytest.mark.bifrost_cassette with an OPC UA device: asyncua's server recorded through the proxy,
replayed to asyncua's client, a node never recorded failing the test, strict mode's order, `all`
re-recording, and `new_episodes` asking the server what the cassette lacks and appending it.

The inner project's "real device" is asyncua's server, started by its conftest with the level the
outer test wrote (so a recorded answer can be told from a live one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("asyncua")
# Imported here, so the in-process runs below share them: pytester drops the modules an inner run
# imported, and the codec registry (kept) would then hold an OPC UA codec of classes no longer in use.
import asyncua  # noqa: F401

import simulators.opcua.frontend
import simulators.recording.opcua_replay  # noqa: F401

CONFTEST = """
import asyncio
import threading
from pathlib import Path

import pytest
from asyncua import Server, ua

HERE = Path(__file__).parent


@pytest.fixture
def bifrost_record_target():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start():
        server = Server()
        await server.init()
        server.set_endpoint("opc.tcp://127.0.0.1:0/tank")
        ns = await server.register_namespace("urn:example:tank")
        tank = await server.nodes.objects.add_object(ua.NodeId("tank", ns), "tank")
        await tank.add_variable(ua.NodeId("tank.level", ns), "level", float((HERE / "level.txt").read_text()))
        temperature = HERE / "temperature.txt"
        await tank.add_variable(
            ua.NodeId("tank.temperature", ns),
            "temperature",
            float(temperature.read_text()) if temperature.exists() else 18.5,
        )
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    port = server.bserver._server.sockets[0].getsockname()[1]
    try:
        yield f"opc.tcp://127.0.0.1:{port}/tank"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
"""

TESTS = """
import asyncio
import json
from pathlib import Path

import pytest
from asyncua import Client

HERE = Path(__file__).parent


async def read(url, *nodes):
    async with Client(url) as client:
        out = []
        for node in nodes:
            try:
                out.append(await client.get_node(node).read_value())
            except Exception as exc:
                out.append(type(exc).__name__)
        return out


@pytest.mark.bifrost_cassette("cassettes/tank.jsonl", record_mode=MODE, device="tank"EXTRA)
def test_level(bifrost_cassette):
    nodes = ["ns=2;s=tank.level"]
    if (HERE / "ask_temperature.txt").exists():
        nodes.append("ns=2;s=tank.temperature")
    seen = {"values": asyncio.run(read(bifrost_cassette.url, *nodes)), "recording": bifrost_cassette.recording}
    (HERE / "seen.json").write_text(json.dumps(seen))
"""


@pytest.fixture
def project(pytester: pytest.Pytester):
    pytester.makeconftest(CONFTEST)

    def make(mode: str, *, level: float = 4.25, temperature: float = 18.5, extra: str = "") -> Path:
        pytester.makepyfile(test_tank=TESTS.replace("MODE", repr(mode)).replace("EXTRA", extra))
        (pytester.path / "level.txt").write_text(str(level))
        (pytester.path / "temperature.txt").write_text(str(temperature))
        return pytester.path / "cassettes" / "tank.jsonl"

    return make


def _seen(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "seen.json").read_text())


def _texts(path: Path) -> list[str]:
    return [json.loads(line)["request"]["text"] for line in path.read_text().splitlines()[1:]]


def test_once_records_an_opcua_server_then_replays_it_without_the_server(pytester, run, project) -> None:
    cassette = project("once")
    run().assert_outcomes(passed=1)
    assert _seen(pytester) == {"values": [4.25], "recording": True}
    assert "Read ns=2;s=tank.level" in _texts(cassette)
    project("none", level=9.5)  # the device changed; the cassette did not
    run().assert_outcomes(passed=1)
    assert _seen(pytester) == {"values": [4.25], "recording": False}


def test_a_node_the_opcua_cassette_never_saw_fails_the_test_naming_it(pytester, run, project) -> None:
    project("once")
    run().assert_outcomes(passed=1)
    project("none")
    (pytester.path / "ask_temperature.txt").write_text("yes")
    result = run()
    result.assert_outcomes(failed=1)  # the test tolerated BadNodeIdUnknown; the cassette did not
    result.stdout.fnmatch_lines(["*cannot answer 1 request(s)*", "*tank unit 0: Read ns=2;s=tank.temperature*"])
    assert _seen(pytester)["values"] == [4.25, "BadNodeIdUnknown"]


def test_all_records_the_opcua_server_again(pytester, run, project) -> None:
    cassette = project("once")
    run().assert_outcomes(passed=1)
    project("all", level=9.5)
    run().assert_outcomes(passed=1)
    assert _seen(pytester) == {"values": [9.5], "recording": True}
    assert cassette.read_text().count("Good 9.5") == 1 and "Good 4.25" not in cassette.read_text()


def test_strict_mode_fails_a_test_whose_reads_leave_the_recorded_order(pytester, run, project) -> None:
    project("once")
    run().assert_outcomes(passed=1)
    project("none", extra=", mode='strict'")
    run().assert_outcomes(passed=1)  # the recorded Read, in its order
    (pytester.path / "ask_temperature.txt").write_text("yes")
    result = run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*tank unit 0: Read ns=2;s=tank.temperature*: all 1 recorded Reads and Writes were replayed*"]
    )
    assert _seen(pytester)["values"] == [4.25, "BadUnexpectedError"]


def test_new_episodes_asks_the_opcua_server_what_the_cassette_lacks_and_appends_it(pytester, run, project) -> None:
    cassette = project("once")
    run().assert_outcomes(passed=1)
    project("new_episodes", level=9.5, temperature=21.0)  # the device moved on
    (pytester.path / "ask_temperature.txt").write_text("yes")
    run().assert_outcomes(passed=1)
    assert _seen(pytester) == {"values": [4.25, 21.0], "recording": True}  # the level from the cassette
    texts = _texts(cassette)
    assert texts.count("Read ns=2;s=tank.level") == 1 and texts.count("Read ns=2;s=tank.temperature") == 1
    project("none", level=1.0, temperature=1.0)  # and now the cassette answers both
    run().assert_outcomes(passed=1)
    assert _seen(pytester) == {"values": [4.25, 21.0], "recording": False}
