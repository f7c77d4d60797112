"""OPC UA binary (security None) in record and replay: the codec, chunk framing, pcap import, recording
through the proxy and from a SimHost device, the replay served as a virtual server, and diff.

The peers are independent: asyncua's server stands in as the real device, asyncua's client asks.
"""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("asyncua")
from asyncua import Client, Server, ua

from bifrost.errors import ConfigError
from simulators import SimHost
from simulators.proxy import Proxy
from simulators.recording import Entry, load_cassette, save_cassette
from simulators.recording.diff import diff_cassettes
from simulators.recording.importer import import_capture
from simulators.recording.opcua import OpcuaCodec, decode, encode
from simulators.recording.opcua_chunks import Broken, ChunkFramer, OpcuaCutter
from simulators.recording.opcua_headers import answered, request_key
from simulators.recording.opcua_replay import OpcuaReplay
from simulators.recording.record import ProxyRecorder, save_traffic
from simulators.recording.serve import misses, replay_scenario

CAPTURE = Path(__file__).resolve().parents[2] / "data" / "opcua_asyncua.pcap"
CODEC = OpcuaCodec()


def read_request(*nodes: str, handle: int = 1) -> bytes:
    request = ua.ReadRequest()
    request.RequestHeader.RequestHandle = handle
    request.Parameters.NodesToRead = [ua.ReadValueId(NodeId=ua.NodeId.from_string(n), AttributeId=13) for n in nodes]
    return encode(request)


def read_response(*values: Any, handle: int = 1) -> bytes:
    response = ua.ReadResponse()
    response.ResponseHeader.RequestHandle = handle
    response.Results = [ua.DataValue(ua.Variant(value, ua.VariantType.Double)) for value in values]
    return encode(response)


def chunks(kind: bytes, body: bytes, request_id: int, *, size: int) -> bytes:
    """A message cut into chunks of at most `size` body bytes (C ... F), security None."""
    out = b""
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    for index, part in enumerate(parts):
        chunk = b"F" if index == len(parts) - 1 else b"C"
        payload = struct.pack("<II", 7, 1) + struct.pack("<II", index + 1, request_id) + part
        out += kind + chunk + struct.pack("<I", 8 + len(payload)) + payload
    return out


# --- the codec --------------------------------------------------------------------------------------


def test_a_read_reads_like_the_traffic_log() -> None:
    line = CODEC.describe(read_request("ns=2;s=tank.level"), read_response(42.0))
    assert line == "Read ns=2;s=tank.level -> Good 42.0"
    fields = CODEC.decode_request(read_request("ns=2;s=tank.level"))
    assert fields["service"] == "Read" and fields["NodesToRead"][0]["NodeId"] == "ns=2;s=tank.level"


def test_match_keys_ignore_what_changes_per_run_and_see_what_does_not() -> None:
    first, second = read_request("ns=2;s=a", handle=1), read_request("ns=2;s=a", handle=99)
    assert first != second  # handles and timestamps differ on the wire
    assert CODEC.match_key(0, first) == CODEC.match_key(0, second)
    assert CODEC.match_key(0, first) != CODEC.match_key(0, read_request("ns=2;s=b"))


def test_the_raw_key_leaves_out_what_the_header_changes_per_run_as_the_match_key_does() -> None:
    first = ua.ReadRequest()
    first.RequestHeader.RequestHandle = 1
    first.RequestHeader.AuthenticationToken = ua.NodeId(b"session-one", 0, ua.NodeIdType.ByteString)
    first.RequestHeader.AuditEntryId = "audit"
    first.Parameters.NodesToRead = [ua.ReadValueId(NodeId=ua.NodeId.from_string("ns=2;s=a"), AttributeId=13)]
    second = decode(encode(first))
    second.RequestHeader.RequestHandle = 77
    second.RequestHeader.AuthenticationToken = ua.NodeId(1234, 1)
    second.RequestHeader.AuditEntryId = None
    second.RequestHeader.TimeoutHint = 9000
    asked, again = encode(first), encode(second)
    (key, handle), (other, handle_again) = request_key(asked), request_key(again)
    assert key == other and (handle, handle_again) == (1, 77)
    assert CODEC.match_key(0, asked) == CODEC.match_key(0, again)
    assert request_key(read_request("ns=2;s=b"))[0] != key
    assert request_key(b"\x01\x00\x77\x02\x03") is None  # cut short: no key, no exception
    response = answered(read_response(1.5, handle=1), 99)
    assert response is not None and decode(response).ResponseHeader.RequestHandle == 99
    assert CODEC.describe(read_request("ns=2;s=a"), response).endswith("Good 1.5")
    assert answered(b"\x05", 1) is None


def test_malformed_messages_are_said_so_and_never_raise() -> None:
    assert CODEC.decode_request(b"\x01\x00\x77")["service"] == "malformed"
    assert "malformed" in CODEC.describe(b"\xff\xff", None)
    assert CODEC.is_error(b"garbage")


def test_a_refusal_is_a_service_fault_for_the_request_handle() -> None:
    fault = CODEC.error_response(read_request("ns=2;s=a", handle=5), 2)
    assert CODEC.is_error(fault)
    decoded = decode(fault)
    assert decoded.ResponseHeader.RequestHandle == 5
    assert CODEC.describe(read_request("ns=2;s=a"), fault).endswith("ServiceFault BadNodeIdUnknown")


def test_the_image_answers_reads_of_what_it_saw_and_takes_writes() -> None:
    image = CODEC.new_image()
    image.learn(0, read_request("ns=2;s=a", "ns=2;s=b"), read_response(1.5, 2.5))
    answer = image.answer(0, read_request("ns=2;s=b", handle=8))
    assert answer is not None and CODEC.describe(read_request("ns=2;s=b"), answer).endswith("Good 2.5")
    assert image.answer(0, read_request("ns=2;s=never")) is None


# --- chunks -----------------------------------------------------------------------------------------


def test_the_chunks_of_one_message_are_passed_on_unchanged_with_the_service_they_carry() -> None:
    request = read_request("ns=2;s=a")
    hello = b"HELF" + struct.pack("<I", 8 + 4) + b"\x00" * 4
    wire = hello + chunks(b"MSG", request, 41, size=10)
    assert len(wire) > len(hello) + len(request) + 24  # more than one chunk
    cutter = OpcuaCutter()
    cuts = [cut for at in range(0, len(wire), 7) for cut in cutter.feed(wire[at : at + 7])]
    assert [(cut.pdu, cut.ident, cut.text) for cut in cuts] == [(None, None, "Hello"), (request, 41, "")]
    assert b"".join(cut.piece for cut in cuts) == wire and cutter.pending == 0


def test_a_stream_that_is_not_opc_ua_is_said_so() -> None:
    (item,) = ChunkFramer().feed(b"GET / HTTP/1.1\r\n\r\n")
    assert isinstance(item, Broken) and "not an OPC UA message header" in item.reason


# --- pcap import, replayed --------------------------------------------------------------------------


def _reads(cassette_entries: list[Entry]) -> list[tuple[list[str], list[Any]]]:
    out = []
    for entry in cassette_entries:
        asked = decode(entry.request)
        if type(asked).__name__ != "ReadRequest" or entry.response is None:
            continue
        nodes = [n.NodeId.to_string() for n in asked.Parameters.NodesToRead]
        out.append((nodes, [r.Value.Value for r in decode(entry.response).Results]))
    return out


def test_a_capture_of_asyncua_is_imported_and_each_read_gets_its_captured_values(tmp_path: Path) -> None:
    cassette, report = import_capture(CAPTURE)
    services = [CODEC.describe(e.request, e.response).split(" ", 1)[0] for e in cassette]
    assert services[:3] == ["OpenSecureChannel", "CreateSession", "ActivateSession"]
    assert {"Browse", "Read", "Write", "CloseSession", "CloseSecureChannel"} <= set(services)
    assert report.unmatched == 0 and report.connections[0].protocol == "opcua"
    reads = [r for r in _reads(cassette.entries) if not r[0][0].startswith("i=")]  # the tank's, not the server's
    assert [values for nodes, values in reads if nodes == ["ns=2;s=tank.level"]] == [[42.0], [42.5], [43.25]]
    path = cassette.save(tmp_path / "tank.jsonl")

    async def ask(url: str) -> list[list[Any]]:
        async with Client(url) as client:
            return [await client.read_values([client.get_node(n) for n in nodes]) for nodes, _ in reads]

    with OpcuaReplay(path) as replay:
        assert asyncio.run(ask(replay.url)) == [values for _, values in reads]
        assert replay.misses == []


# --- recording through the proxy, replayed ----------------------------------------------------------


async def _tank_server() -> tuple[Server, int, Any]:
    server = Server()
    await server.init()
    server.set_endpoint("opc.tcp://127.0.0.1:0/tank")
    ns = await server.register_namespace("urn:example:tank")
    tank = await server.nodes.objects.add_object(ua.NodeId("tank", ns), "tank")
    level = await tank.add_variable(ua.NodeId("tank.level", ns), "level", 4.25)
    await tank.add_variable(ua.NodeId("pump.speed", ns), "speed", ua.Variant(1450, ua.VariantType.UInt16))
    setpoint = await tank.add_variable(ua.NodeId("tank.setpoint", ns), "setpoint", 50.0)
    await setpoint.set_writable()
    await server.start()
    port = server.bserver._server.sockets[0].getsockname()[1]
    return server, port, level


async def _poll(url: str) -> dict[str, Any]:
    async with Client(url) as client:
        level = client.get_node("ns=2;s=tank.level")
        seen = {"level": [await level.read_value(), await level.read_value()]}
        seen["speed"] = await client.get_node("ns=2;s=pump.speed").read_value()
        setpoint = client.get_node("ns=2;s=tank.setpoint")
        await setpoint.write_value(ua.DataValue(ua.Variant(55.5, ua.VariantType.Double)))
        seen["setpoint"] = await setpoint.read_value()
        return seen


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """A cassette recorded through the proxy in front of asyncua's server, whose level moves."""
    path = tmp_path / "cassettes" / "tank.jsonl"

    async def record() -> None:
        server, port, level = await _tank_server()
        try:
            with ProxyRecorder(path, device="tank", protocol="opcua") as recorder:
                async with Proxy(("127.0.0.1", port), log=recorder, protocol="opcua") as proxy:
                    async with Client(f"opc.tcp://127.0.0.1:{proxy.address[1]}/tank") as client:
                        node = client.get_node("ns=2;s=tank.level")
                        await node.read_value()
                        await level.write_value(4.5)  # the device's level moves between the reads
                        await node.read_value()
                    await _poll(f"opc.tcp://127.0.0.1:{proxy.address[1]}/tank")
        finally:
            await server.stop()

    asyncio.run(record())
    return path


def test_the_proxy_records_an_asyncua_server(recorded: Path) -> None:
    lines = [json.loads(line) for line in recorded.read_text().splitlines()[1:]]
    texts = [f"{line['request']['text']} -> {line['response']['text'] if line['response'] else ''}" for line in lines]
    assert "Read ns=2;s=tank.level -> Good 4.25" in texts
    assert "Read ns=2;s=tank.level -> Good 4.5" in texts
    assert "Write ns=2;s=tank.setpoint = 55.5 -> Good" in texts
    assert {line["protocol"] for line in lines} == {"opcua"} and {line["connection"] for line in lines} == {1, 2}


def test_the_replay_answers_an_asyncua_client_with_the_recorded_values_in_order(recorded: Path) -> None:
    with SimHost(replay_scenario(recorded)) as host:
        assert asyncio.run(_poll(host.url("tank"))) == {"level": [4.25, 4.5], "speed": 1450, "setpoint": 55.5}
        assert misses(host) == []


def test_image_mode_serves_the_last_values_and_keeps_writes(recorded: Path) -> None:
    async def check(url: str) -> tuple[float, float]:
        async with Client(url) as client:
            setpoint = client.get_node("ns=2;s=tank.setpoint")
            await setpoint.write_value(ua.DataValue(ua.Variant(60.0, ua.VariantType.Double)))
            return await client.get_node("ns=2;s=tank.level").read_value(), await setpoint.read_value()

    with OpcuaReplay(recorded, mode="image") as replay:
        assert asyncio.run(check(replay.url)) == (4.5, 60.0)


def test_a_node_never_recorded_is_bad_node_id_unknown_and_a_miss(recorded: Path) -> None:
    async def check(url: str) -> None:
        async with Client(url) as client:
            with pytest.raises(ua.UaStatusCodeError, match="BadNodeIdUnknown"):
                await client.get_node("ns=2;s=tank.temperature").read_value()

    with OpcuaReplay(recorded) as replay:
        asyncio.run(check(replay.url))
        (miss,) = replay.misses
        assert "Read ns=2;s=tank.temperature" in miss.describe() and "never read in the capture" in miss.describe()


async def _level_twice(url: str) -> list[float]:
    async with Client(url) as client:
        node = client.get_node("ns=2;s=tank.level")
        return [await node.read_value(), await node.read_value()]


def test_strict_mode_answers_the_recorded_reads_and_writes_in_their_order(recorded: Path) -> None:
    with OpcuaReplay(recorded, mode="strict") as replay:
        assert asyncio.run(_level_twice(replay.url)) == [4.25, 4.5]
        assert asyncio.run(_poll(replay.url)) == {"level": [4.5, 4.5], "speed": 1450, "setpoint": 55.5}
        assert replay.misses == []
        replay.reset()  # and again from the start
        assert asyncio.run(_level_twice(replay.url)) == [4.25, 4.5]


def test_strict_mode_refuses_a_read_out_of_order_naming_what_the_cassette_expected(recorded: Path) -> None:
    async def skip(url: str) -> float:
        async with Client(url) as client:
            with pytest.raises(ua.UaStatusCodeError, match="BadUnexpectedError"):
                await client.get_node("ns=2;s=pump.speed").read_value()
            return float(await client.get_node("ns=2;s=tank.level").read_value())  # the order holds on

    with OpcuaReplay(recorded, mode="strict") as replay:
        assert asyncio.run(skip(replay.url)) == 4.25
        (miss,) = replay.misses
        assert "Read ns=2;s=pump.speed" in miss.describe()
        assert "out of order: Read/Write 1 of the cassette is Read ns=2;s=tank.level" in miss.describe()


def test_strict_mode_refuses_what_comes_after_the_last_with_the_status_asked_for(recorded: Path) -> None:
    async def beyond(url: str) -> None:
        await _level_twice(url)
        await _poll(url)
        async with Client(url) as client:
            with pytest.raises(ua.UaStatusCodeError, match="BadOutOfService"):
                await client.get_node("ns=2;s=tank.level").read_value()

    with OpcuaReplay(recorded, mode="strict", unknown="BadOutOfService") as replay:
        asyncio.run(beyond(replay.url))
        (miss,) = replay.misses
        assert "all 7 recorded Reads and Writes were replayed" in miss.describe()
    with pytest.raises(ConfigError, match="no OPC UA status name"):
        OpcuaReplay(recorded, unknown="BadNoSuchThing")
    with pytest.raises(ConfigError, match="cannot be null for OPC UA"):
        OpcuaReplay(recorded, unknown=None)
    with pytest.raises(ConfigError, match="is no Bad status"):
        OpcuaReplay(recorded, unknown=2)


def test_a_scenario_replay_key_takes_strict_mode_and_a_status_name(recorded: Path) -> None:
    scenario = replay_scenario(recorded, mode="strict", unknown="BadResourceUnavailable")
    with SimHost(scenario) as host:
        assert asyncio.run(_level_twice(host.url("tank"))) == [4.25, 4.5]

        async def wrong(url: str) -> None:
            async with Client(url) as client:
                with pytest.raises(ua.UaStatusCodeError, match="BadResourceUnavailable"):
                    await client.get_node("ns=2;s=tank.setpoint").read_value()

        asyncio.run(wrong(host.url("tank")))
        assert len(misses(host)) == 1


def test_bifrost_sim_replay_serves_an_opcua_cassette(recorded: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.cli", "replay", str(recorded), "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = json.loads(process.stdout.readline())["devices"]["tank"]["url"]
        assert url.startswith("opc.tcp://127.0.0.1:")
        assert asyncio.run(_poll(url))["level"] == [4.25, 4.5]
    finally:
        process.terminate()
        process.wait(10)


# --- from a SimHost device, and diff ----------------------------------------------------------------

PLANT = """\
scenario: tank
tags:
  tank.level: {type: float64, init: 42.5}
  pump.run: {type: bool, writable: true}
devices:
  ua1: {protocol: opcua, listen: 127.0.0.1:0, map: {tank.level: "ns=2;s=tank.level", pump.run: "ns=2;s=pump.run"}}
"""


async def _run_pump(url: str) -> tuple[float, bool]:
    async with Client(url) as client:
        level = await client.get_node("ns=2;s=tank.level").read_value()
        pump = client.get_node("ns=2;s=pump.run")
        await pump.write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
        return level, await pump.read_value()


def _traffic(tmp_path: Path, level: float, name: str) -> Path:
    (tmp_path / "tank.yaml").write_text(PLANT)
    with SimHost(tmp_path / "tank.yaml", any_port=True) as host:
        host.plant.set("tank.level", level)
        assert asyncio.run(_run_pump(host.url("ua1"))) == (level, True)
        return save_traffic(host.devices["ua1"], tmp_path / name)


def test_a_simulated_devices_traffic_is_a_cassette_that_replays(tmp_path: Path) -> None:
    path = _traffic(tmp_path, 42.5, "traffic.jsonl")
    texts = [entry.describe().split(": ", 1)[1] for entry in load_cassette(path)]
    assert texts == [
        "Read ns=2;s=tank.level -> Good 42.5",
        "Write ns=2;s=pump.run = True -> Good",
        "Read ns=2;s=pump.run -> Good True",
    ]
    with OpcuaReplay(path) as replay:
        assert asyncio.run(_run_pump(replay.url)) == (42.5, True)


def test_diff_lists_the_reads_whose_values_changed(tmp_path: Path) -> None:
    first, second = _traffic(tmp_path, 42.5, "a.jsonl"), _traffic(tmp_path, 40.0, "b.jsonl")
    (difference,) = diff_cassettes(load_cassette(first), load_cassette(second))
    assert difference.kind == "response" and "42.5" in difference.detail and "40.0" in difference.detail
    result = subprocess.run(
        [sys.executable, "-m", "simulators.cli", "diff", str(first), str(second)], capture_output=True, text=True
    )
    assert result.returncode == 1 and "ns=2;s=tank.level" in result.stdout
    save_cassette(tmp_path / "same.jsonl", load_cassette(first).entries)
    assert diff_cassettes(load_cassette(first), load_cassette(tmp_path / "same.jsonl")) == []


def test_subscriptions_read_as_lines_too(tmp_path: Path) -> None:
    path = tmp_path / "subscribed.jsonl"

    class Changes:
        def __init__(self) -> None:
            self.seen: asyncio.Queue[Any] = asyncio.Queue()

        def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
            self.seen.put_nowait(value)

    async def record() -> None:
        server, port, _ = await _tank_server()
        try:
            with ProxyRecorder(path, device="tank", protocol="opcua") as recorder:
                async with (
                    Proxy(("127.0.0.1", port), log=recorder, protocol="opcua") as proxy,
                    Client(f"opc.tcp://127.0.0.1:{proxy.address[1]}/tank") as client,
                ):
                    changes = Changes()
                    subscription = await client.create_subscription(50, changes)
                    await subscription.subscribe_data_change(client.get_node("ns=2;s=tank.level"))
                    assert await asyncio.wait_for(changes.seen.get(), 10) == 4.25
                    await subscription.delete()
        finally:
            await server.stop()

    asyncio.run(record())
    texts = [entry.describe().split(": ", 1)[1] for entry in load_cassette(path)]
    (created,) = [t for t in texts if t.startswith("CreateSubscription every 50ms -> Good subscription ")]
    subscription = created.rsplit(" ", 1)[1]  # the server numbers it
    assert f"CreateMonitoredItems subscription {subscription}: ns=2;s=tank.level -> Good" in texts
    assert any(t.startswith(f"Publish -> subscription {subscription}, 1 change(s): #") for t in texts)
    assert any(t.startswith("Publish -> ") and t.endswith("Good 4.25") for t in texts)


def test_the_replay_survives_bytes_that_are_not_opc_ua(recorded: Path) -> None:
    async def garbage(url: str) -> bytes:
        host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"MSGF\xff\xff\xff\xff" + b"\x00" * 64 + b"GET / HTTP/1.1\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # the server refuses, then closes
        writer.close()
        return answer

    with OpcuaReplay(recorded) as replay:
        asyncio.run(garbage(replay.url))
        assert asyncio.run(_poll(replay.url))["level"] == [4.25, 4.5]


def test_answers_of_the_relays_own_keep_the_sequence_numbers_in_step(recorded: Path) -> None:
    """asyncua's client drops a channel whose sequence numbers skip or repeat (Part 6, 6.7.2): answers the
    relay gives, and requests the server never sees, must not show in them."""

    async def ask(url: str) -> tuple[list[Any], Any]:
        async with Client(url) as client:
            level = client.get_node("ns=2;s=tank.level")
            values = [await level.read_value() for _ in range(3)]  # answered by the relay
            state = await client.nodes.server_state.read_value()  # the server's own, after the relay's answers
            setpoint = ua.DataValue(ua.Variant(55.5, ua.VariantType.Double))
            await client.get_node("ns=2;s=tank.setpoint").write_value(setpoint)  # recorded: the relay's too
            return values, state

    with OpcuaReplay(recorded) as replay:
        values, state = asyncio.run(ask(replay.url))
        assert values == [4.25, 4.5, 4.5] and state == ua.ServerState.Running
        assert replay.misses == []


def test_arrays_are_served_and_other_values_answered_as_recorded_and_said_so(tmp_path: Path) -> None:
    path = tmp_path / "arrays.jsonl"

    async def read(url: str, node: str) -> Any:
        async with Client(url) as client:
            return await client.get_node(node).read_value()

    async def record() -> None:
        server, port, _ = await _tank_server()
        tank = server.get_node("ns=2;s=tank")
        profile = ua.Variant([1.5, 2.5, 3.5], ua.VariantType.Double)
        await tank.add_variable(ua.NodeId("tank.profile", 2), "profile", profile)
        await tank.add_variable(ua.NodeId("tank.blob", 2), "blob", ua.Variant(b"\x01\x02", ua.VariantType.ByteString))
        try:
            with ProxyRecorder(path, device="tank", protocol="opcua") as recorder:
                async with Proxy(("127.0.0.1", port), log=recorder, protocol="opcua") as proxy:
                    url = f"opc.tcp://127.0.0.1:{proxy.address[1]}/tank"
                    assert await read(url, "ns=2;s=tank.profile") == [1.5, 2.5, 3.5]
                    assert await read(url, "ns=2;s=tank.blob") == b"\x01\x02"
        finally:
            await server.stop()

    async def rewrite(url: str) -> tuple[Any, str]:
        async with Client(url) as client:
            node = client.get_node("ns=2;s=tank.profile")
            await node.write_value(ua.DataValue(ua.Variant([4.0, 5.0], ua.VariantType.Double)))
            part = ua.ReadParameters()
            part.NodesToRead = [ua.ReadValueId(NodeId=node.nodeid, AttributeId=13, IndexRange="1")]
            (answer,) = await client.uaclient.read(part)
            return await node.read_value(), answer.StatusCode.name

    asyncio.run(record())
    for mode in ("request", "strict"):
        with OpcuaReplay(path, mode=mode) as replay:
            assert asyncio.run(read(replay.url, "ns=2;s=tank.profile")) == [1.5, 2.5, 3.5]
            assert asyncio.run(read(replay.url, "ns=2;s=tank.blob")) == b"\x01\x02"  # answered as recorded
            (note,) = replay.server.notes
            assert note.startswith("ns=2;s=tank.blob: ByteString: not in the server's address space")
    with OpcuaReplay(path, mode="image") as replay:  # the server alone answers: an array it holds
        assert asyncio.run(read(replay.url, "ns=2;s=tank.profile")) == [1.5, 2.5, 3.5]
        assert asyncio.run(rewrite(replay.url)) == ([4.0, 5.0], "BadIndexRangeInvalid")  # whole arrays only
        with pytest.raises(ua.UaStatusCodeError, match="BadNodeIdUnknown"):
            asyncio.run(read(replay.url, "ns=2;s=tank.blob"))
        (miss,) = replay.misses
        assert "ns=2;s=tank.blob (ByteString, answered only as recorded)" in miss.describe()
