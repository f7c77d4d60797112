"""The OPC UA client, on every engine, against a real asyncua server: every type, reads split by
MaxNodesPerRead, typed writes, status codes, quality and source timestamps, browse, subscriptions with
a deadband, timeouts, and a session re-made (with its subscriptions) after the server restarts."""

from __future__ import annotations

import asyncio
import datetime
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import bifrost
from bifrost import ConfigError, ConnectError, DataPoint, DeviceError, EncodeError, Quality, Tag, TagMap

from .conftest import EXTRAS, MANY, MAX_NODES_PER_READ, NAMESPACE, TYPES, AsyncuaPeer, LoopThread

pytestmark = pytest.mark.asyncio

BAD_NODE_ID_UNKNOWN = 0x80340000
BAD_NOT_WRITABLE = 0x803B0000

# A value of each type that is not the one the server starts with.
WRITES: dict[str, Any] = {
    "Boolean": False,
    "SByte": 127,
    "Byte": 0,
    "Int16": -32768,
    "UInt16": 1,
    "Int32": 2**31 - 1,
    "UInt32": 0,
    "Int64": 2**63 - 1,
    "UInt64": 12345678901234,
    "Float": -0.5,
    "Double": math.pi,
    "String": "grüße",
}


def _source_timestamp(peer: AsyncuaPeer, name: str) -> float:
    async def read() -> Any:
        return await peer.nodes[name].read_data_value()

    assert peer._runner is not None
    data = peer._runner.run(read())
    stamp = data.SourceTimestamp
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return float(stamp.timestamp())


@pytest.mark.parametrize("name", list(TYPES))
async def test_every_type_reads_as_the_server_serves_it(opcua_server: AsyncuaPeer, engine: str, name: str) -> None:
    async with bifrost.connect(opcua_server.url, engine=engine) as plc:
        point = await plc.read(opcua_server.node_id(f"types.{name}"))
    assert point.value == TYPES[name][1]
    assert type(point.value) is type(TYPES[name][1])
    assert point.quality is Quality.GOOD
    # The server's source timestamp, not the time we read it.
    assert point.timestamp == pytest.approx(_source_timestamp(opcua_server, f"types.{name}"), abs=1e-3)


@pytest.mark.parametrize("name", list(TYPES))
async def test_raw_writes_take_the_node_data_type(opcua_server: AsyncuaPeer, engine: str, name: str) -> None:
    node = opcua_server.node_id(f"types.{name}")
    async with bifrost.connect(opcua_server.url, engine=engine) as plc:
        try:
            await plc.write(node, WRITES[name])
            # Checked on the server's side: it holds the value with its own type.
            served = opcua_server.get(f"types.{name}")
            if name == "Float":
                assert served == pytest.approx(WRITES[name])
            else:
                assert served == WRITES[name]
            assert (await plc.read(node)).value == served
        finally:
            opcua_server.set(f"types.{name}", TYPES[name][1], TYPES[name][0])


async def test_tag_typed_writes_scale_and_range(opcua_server: AsyncuaPeer, engine: str) -> None:
    tags = TagMap.of(
        Tag(name="small", address=opcua_server.node_id("types.Int16"), type="int16"),
        Tag(name="tenths", address=opcua_server.node_id("types.Int32"), type="int32", scale=0.1),
        Tag(name="level", address=f"nsu={NAMESPACE};s=tank.level", type="float64", unit="%"),
        Tag(name="fixed", address=opcua_server.node_id("readonly"), type="float64", writable=False),
    )
    async with bifrost.connect(opcua_server.url, tags=tags, engine=engine) as plc:
        try:
            await plc.write_many({"small": -7, "tenths": 12.3, "level": 55.5})
            assert opcua_server.get("types.Int16") == -7
            assert opcua_server.get("types.Int32") == 123  # 12.3 / 0.1, on the wire
            points = await plc.read_many(["small", "tenths", "level"])
            assert points["tenths"].value == pytest.approx(12.3)
            assert points["level"].value == 55.5
            with pytest.raises(EncodeError, match=r"small: 40000 is out of range for Int16"):
                await plc.write("small", 40000)
            with pytest.raises(ConfigError, match="'fixed' is not writable"):
                await plc.write("fixed", 1.0)
        finally:
            opcua_server.set("types.Int16", TYPES["Int16"][1], "Int16")
            opcua_server.set("types.Int32", TYPES["Int32"][1], "Int32")
            opcua_server.set("tank.level", 40.0, "Double")


async def test_read_many_is_one_read_per_max_nodes_per_read(opcua_server: AsyncuaPeer, engine: str) -> None:
    nodes = [opcua_server.node_id(f"many.{i}") for i in range(MANY)]
    async with bifrost.connect(opcua_server.url, engine=engine) as plc:
        few = await plc.read_many(nodes[:MAX_NODES_PER_READ])
        before = len(opcua_server.reads)
        points = await plc.read_many(nodes)
    assert [point.value for point in few.values()] == list(range(MAX_NODES_PER_READ))
    assert list(points) == nodes
    assert [point.value for point in points.values()] == list(range(MANY))
    ours = [read for read in opcua_server.reads[before:] if any("many." in node for node in read)]
    assert [len(read) for read in ours] == [7, 7, 7, 4]
    assert [node for read in ours for node in read] == nodes


async def test_read_many_gives_bad_points_for_what_the_server_refuses(opcua_server: AsyncuaPeer, engine: str) -> None:
    good = opcua_server.node_id("tank.level")
    async with bifrost.connect(opcua_server.url, engine=engine) as plc:
        points = await plc.read_many(
            [good, "ns=2;s=no.such.node", "Objects/plc1/tank/nope", "nsu=urn:not:here;s=x", good]
        )
    assert list(points) == [good, "ns=2;s=no.such.node", "Objects/plc1/tank/nope", "nsu=urn:not:here;s=x"]
    assert points[good].value == 40.0
    for name in list(points)[1:]:
        assert points[name].quality is Quality.BAD
        assert points[name].value is None


async def test_read_many_asked_again_reads_again(opcua_server: AsyncuaPeer, engine: str) -> None:
    # read_many keeps its plan per tag list; the values must still be read afresh each time.
    tags = [f"nsu={NAMESPACE};s=sub", "Objects/plc1/tank/level"]
    async with bifrost.connect(opcua_server.url, engine=engine) as plc:
        opcua_server.set("sub", 5.0)
        assert [p.value for p in (await plc.read_many(tags)).values()] == [5.0, 40.0]
        opcua_server.set("sub", 6.0)
        assert [p.value for p in (await plc.read_many(tags)).values()] == [6.0, 40.0]
        with pytest.raises(ConfigError, match="nor an address"):
            await plc.read_many([*tags, "not an address"])
    opcua_server.set("sub", 0.0)


async def test_a_read_many_plan_does_not_outlive_its_session(restartable_server: AsyncuaPeer, engine: str) -> None:
    peer = restartable_server
    tags = [f"nsu={NAMESPACE};s=tank.level", "Objects/plc1/tank/level"]
    async with bifrost.connect(peer.url, engine=engine, timeout=1) as plc:
        assert [p.value for p in (await plc.read_many(tags)).values()] == [40.0, 40.0]
        peer.stop()
        with pytest.raises(ConnectError):
            await plc.read_many(tags)
        peer.start()
        assert [p.value for p in (await plc.read_many(tags)).values()] == [40.0, 40.0]


async def test_addresses_by_uri_browse_path_and_number_agree(opcua_server: AsyncuaPeer, engine: str) -> None:
    async with bifrost.connect(opcua_server.url, engine=engine) as plc:
        by_index = await plc.read(opcua_server.node_id("tank.level"))
        by_uri = await plc.read(f"nsu={NAMESPACE};s=tank.level")
        by_path = await plc.read("Objects/plc1/tank/level")
        pinned = await plc.read(f"Objects/{opcua_server.index}:plc1/tank/level")
        numeric = await plc.read(f"ns={opcua_server.index};i=1001")
    assert by_index == by_uri == by_path == pinned
    assert numeric.value == 1001


async def test_status_errors_name_the_status(opcua_server: AsyncuaPeer, engine: str) -> None:
    async with bifrost.connect(opcua_server.url, engine=engine) as plc:
        with pytest.raises(DeviceError, match=r"read ns=2;s=nope \(ns=2;s=nope\): BadNodeIdUnknown") as unknown:
            await plc.read("ns=2;s=nope")
        assert unknown.value.code == BAD_NODE_ID_UNKNOWN
        with pytest.raises(DeviceError, match="BadNotWritable") as readonly:
            await plc.write(opcua_server.node_id("readonly"), 1.0)
        assert readonly.value.code == BAD_NOT_WRITABLE
        with pytest.raises(DeviceError, match="BadNodeIdUnknown"):
            await plc.write("ns=2;s=nope", 1)
        with pytest.raises(DeviceError, match=r"no namespace 'urn:nope'.*urn:bifrost:test"):
            await plc.read("nsu=urn:nope;s=x")
        with pytest.raises(DeviceError, match=r"Objects/plc1 has no child tonk \(its children: tank, types"):
            await plc.read("Objects/plc1/tonk/level")
        # write_many writes what it can and names what failed.
        with pytest.raises(DeviceError, match=r"write of 1 of 2 tags failed: .*readonly.*BadNotWritable"):
            await plc.write_many({opcua_server.node_id("readonly"): 2.0, opcua_server.node_id("sub"): 9.0})
        assert opcua_server.get("sub") == 9.0
        opcua_server.set("sub", 0.0)
        # The session survives all of it.
        assert (await plc.read(opcua_server.node_id("tank.level"))).value == 40.0


@pytest.mark.parametrize(
    ("status", "quality"),
    [("UncertainLastUsableValue", Quality.UNCERTAIN), ("BadSensorFailure", Quality.BAD), ("Good", Quality.GOOD)],
)
async def test_a_status_becomes_the_quality(
    opcua_server: AsyncuaPeer, engine: str, status: str, quality: Quality
) -> None:
    opcua_server.set_status("quality", 3.25, status)
    try:
        async with bifrost.connect(opcua_server.url, engine=engine) as plc:
            point = await plc.read(opcua_server.node_id("quality"))
            many = await plc.read_many([opcua_server.node_id("quality")])
    finally:
        opcua_server.set_status("quality", 0.0, "Good")
    assert point.quality is quality
    # A server may leave the value out of a Bad DataValue (asyncua does); otherwise it is served as is.
    assert point.value == (None if quality is Quality.BAD else 3.25)
    assert list(many.values()) == [point]


async def test_read_many_makes_the_points_read_makes(opcua_server: AsyncuaPeer, engine: str) -> None:
    # read_many's points are made in one pass (in Rust for the native engine); read's by the
    # connection from each value. Every kind of value, a scaled tag, Bad and Uncertain qualities.
    tags = TagMap.of(
        Tag(name="tenths", address=opcua_server.node_id("types.Int32"), type="int32", scale=0.1, offset=2.0),
        Tag(name="big", address=opcua_server.node_id("types.UInt64"), type="uint64", scale=2.0),
        Tag(name="flag", address=opcua_server.node_id("types.Boolean"), type="bool", scale=3.0),
    )
    names = [
        *tags,
        *(opcua_server.node_id(f"types.{name}") for name in TYPES),
        *(opcua_server.node_id(f"extras.{name}") for name in EXTRAS),
        opcua_server.node_id("quality"),
        "i=2255",  # NamespaceArray: an array of strings
        "i=2256",  # ServerStatus: a structure
    ]
    for status in ("UncertainLastUsableValue", "BadSensorFailure"):
        opcua_server.set_status("quality", 3.25, status)
        try:
            async with bifrost.connect(opcua_server.url, tags=tags, engine=engine) as plc:
                many: dict[str, DataPoint] = {}
                again: dict[str, DataPoint] = {}
                for start in range(0, len(names), MAX_NODES_PER_READ):  # each one Read call
                    chunk = names[start : start + MAX_NODES_PER_READ]
                    many |= await plc.read_many(chunk)
                    again |= await plc.read_many(chunk)  # the planned read
                    if engine == "native":  # which plans its reads itself
                        assert plc._session.read_plans[tuple(chunk)].prepared is not None  # type: ignore[attr-defined]
                singles = {}
                for name in names:
                    try:
                        singles[name] = await plc.read(name)
                    except EncodeError:  # an array or a structure: read refuses, read_many gives BAD
                        singles[name] = DataPoint(None, Quality.BAD, many[name].timestamp)
        finally:
            opcua_server.set_status("quality", 0.0, "Good")
        assert list(many) == list(again) == names
        for name in names:
            assert again[name].quality is singles[name].quality, name
            assert again[name].value == singles[name].value, name
            assert type(again[name].value) is type(singles[name].value), name
            if singles[name].value is not None:
                assert again[name].timestamp == singles[name].timestamp, name
        assert again["tenths"].value == pytest.approx(TYPES["Int32"][1] * 0.1 + 2.0)
        assert again["big"].value == float(2**64 - 1) * 2.0
        assert again["flag"].value is True
        assert again[opcua_server.node_id("extras.Guid")].value == "72962b91-fa75-4ae6-8d28-b404dc7daf63"
        assert again[opcua_server.node_id("extras.ByteString")].value == b"\x00\xffbifrost".hex()
        assert again[opcua_server.node_id("extras.LocalizedText")].value == "Tank 1"
        assert again[opcua_server.node_id("extras.Array")].quality is Quality.BAD
        assert again["i=2256"].quality is Quality.BAD
        assert again[opcua_server.node_id("quality")].quality is (
            Quality.UNCERTAIN if status.startswith("Uncertain") else Quality.BAD
        )


async def test_browse_lists_children_with_usable_addresses(opcua_server: AsyncuaPeer, engine: str) -> None:
    async with bifrost.connect(opcua_server.url, engine=engine) as plc:
        top = {entry.name: entry for entry in await plc.browse()}
        children = {entry.name: entry for entry in await plc.browse("Objects/plc1")}
        by_node = await plc.browse(opcua_server.node_id("tank"))
        level = children["tank"]
        assert level.path is not None
        inner = await plc.browse(level.path)
        value = await plc.read(inner[0].path or "")
        with pytest.raises(DeviceError, match="has no child"):
            await plc.browse("Objects/nothing")
    assert "plc1" in top and "Server" in top
    assert {"tank", "types", "readonly", "numeric", "many", "sub"} <= set(children)
    assert children["readonly"].node_class == "Variable"
    assert children["tank"].node_class == "Object"
    assert children["numeric"].node_id == f"ns={opcua_server.index};i=1001"
    assert [(e.name, e.node_id, e.path) for e in by_node] == [("level", opcua_server.node_id("tank.level"), None)]
    assert [(e.name, e.path) for e in inner] == [("level", "Objects/plc1/tank/level")]
    assert value.value == 40.0


async def _next(stream: AsyncIterator[dict[str, DataPoint]], timeout: float = 10) -> dict[str, DataPoint]:
    return await asyncio.wait_for(stream.__anext__(), timeout)


async def _until(stream: AsyncIterator[dict[str, DataPoint]], name: str, value: object) -> list[object]:
    """The values of `name` the stream yields up to and including `value` (bounded by _next's timeout)."""
    seen: list[object] = []
    while True:
        batch = await _next(stream)
        if name in batch:
            seen.append(batch[name].value)
            if batch[name].value == value:
                return seen


async def test_subscribe_is_a_subscription_with_a_deadband(opcua_server: AsyncuaPeer, engine: str) -> None:
    node = opcua_server.node_id("deadband")
    level = opcua_server.node_id("tank.level")
    async with bifrost.connect(opcua_server.url, engine=engine) as plc:
        filtered = plc.subscribe([node, level, "ns=2;s=gone"], interval=0.05, deadband=1.0)
        every = plc.subscribe([node], interval=0.05)
        try:
            first = await _next(filtered)
            assert list(first) == [node, level, "ns=2;s=gone"]  # the first batch holds every tag
            assert (first[node].value, first[level].value) == (0.0, 40.0)
            assert first["ns=2;s=gone"].quality is Quality.BAD
            assert (await _next(every))[node].value == 0.0
            for value in (0.3, 0.6, 0.9, 2.5):  # each within 1.0 of the last one reported, 0.0
                opcua_server.set("deadband", value)
                # `every` has no deadband: once it has seen a value, the server has sampled it.
                await _until(every, node, value)
            assert await _until(filtered, node, 2.5) == [2.5]  # nothing within 1.0 of 0.0 came through
        finally:
            await filtered.aclose()  # type: ignore[attr-defined]
            await every.aclose()  # type: ignore[attr-defined]
            opcua_server.set("deadband", 0.0)


class StallProxy:
    """A TCP relay in front of a server that can stop relaying answers: a server that hangs."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.stalled = False
        self.port = 0
        self._runner = LoopThread()
        self._server: asyncio.AbstractServer | None = None
        self.port = self._runner.run(self._listen())

    async def _listen(self) -> int:
        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answers: bool) -> None:
            try:
                while data := await reader.read(65536):
                    if not (answers and self.stalled):
                        writer.write(data)
                        await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(relay(reader, up_writer, False), relay(up_reader, writer, True))

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()

        self._runner.run(stop())
        self._runner.stop()  # cancels the relays still running


@pytest.fixture
def stall_proxy(opcua_server: AsyncuaPeer) -> Iterator[StallProxy]:
    proxy = StallProxy(opcua_server.port)
    yield proxy
    proxy.close()


async def test_every_call_has_a_timeout(stall_proxy: StallProxy, opcua_server: AsyncuaPeer, engine: str) -> None:
    url = f"opc.tcp://127.0.0.1:{stall_proxy.port}/bifrost"
    node = opcua_server.node_id("tank.level")
    async with bifrost.connect(url, engine=engine, timeout=0.5) as plc:
        assert (await plc.read(node)).value == 40.0
        assert (await plc.read_many([node]))[node].value == 40.0  # planned: the next one is sent as is
        stall_proxy.stalled = True
        with pytest.raises(bifrost.TimeoutError, match="no answer to Read"):
            await plc.read(node)
        with pytest.raises(TimeoutError, match="no answer to Read of 1 nodes"):  # the builtin catches it too
            await plc.read_many([node])
        with pytest.raises(bifrost.TimeoutError):
            await plc.write(node, 1.0)
        with pytest.raises(bifrost.TimeoutError):
            await plc.browse("Objects")
    stall_proxy.stalled = True
    with pytest.raises(ConnectError, match="cannot connect"):
        await bifrost.connect(url, engine=engine, timeout=0.3)


async def test_connect_errors_name_the_server(engine: str, closed_port: int) -> None:
    url = f"opc.tcp://127.0.0.1:{closed_port}/x"
    with pytest.raises(ConnectError, match=rf"{url}: cannot connect"):
        await bifrost.connect(url, engine=engine, timeout=1)


@pytest.fixture
def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def restartable_server() -> Iterator[AsyncuaPeer]:
    """A server of each test's own, which the test stops and starts again (a stop that went wrong
    must not leave the next test a stopped server)."""
    peer = AsyncuaPeer().start()
    try:
        yield peer
    finally:
        peer.close()


async def test_session_and_subscription_come_back_after_a_server_restart(
    restartable_server: AsyncuaPeer, engine: str
) -> None:
    peer = restartable_server
    node = peer.node_id("sub")
    async with bifrost.connect(peer.url, engine=engine, timeout=1) as plc:
        stream = plc.subscribe([node], interval=0.05)
        try:
            assert (await _next(stream))[node].value == 0.0
            peer.set("sub", 1.0)
            assert await _until(stream, node, 1.0) == [1.0]
            peer.stop()
            lost = await _next(stream)
            assert lost[node].quality is Quality.BAD
            peer.start()  # a new server on the same port: new session, new subscription, values from init
            restored = await _next(stream, timeout=20)
            assert (restored[node].value, restored[node].quality) == (0.0, Quality.GOOD)
            peer.set("sub", 2.0)
            assert await _until(stream, node, 2.0) == [2.0]
            # Plain calls use the new session as well.
            assert (await plc.read(node)).value == 2.0
        finally:
            await stream.aclose()  # type: ignore[attr-defined]


async def test_a_read_after_a_restart_gets_a_new_session(restartable_server: AsyncuaPeer, engine: str) -> None:
    peer = restartable_server
    node = peer.node_id("tank.level")
    async with bifrost.connect(peer.url, engine=engine, timeout=1) as plc:
        assert (await plc.read(node)).value == 40.0
        peer.stop()
        with pytest.raises(ConnectError):
            await plc.read(node)
        peer.start()
        assert (await plc.read(node)).value == 40.0


async def test_basic256sha256_sign_and_encrypt_with_a_user(
    secure_server: AsyncuaPeer, engine: str, tmp_path: Path
) -> None:
    from bifrost.opcua import certs

    cert, key = certs.write_certificate(tmp_path, "urn:bifrost:test-client")
    node = secure_server.node_id("tank.level")
    async with bifrost.connect(
        secure_server.url,
        engine=engine,
        security="Basic256Sha256",
        mode="SignAndEncrypt",
        user="operator",
        password="secret",
        certificate=cert,
        private_key=key,
    ) as plc:
        assert (await plc.read(node)).value == 40.0
        await plc.write(secure_server.node_id("sub"), 4.0)
    assert secure_server.get("sub") == 4.0
    secure_server.set("sub", 0.0)
    # The URL's query parameters say the same; without a certificate a throw-away one is made.
    secured = f"{secure_server.url}?security=Basic256Sha256&mode=SignAndEncrypt"
    async with bifrost.connect(secured, engine=engine, user="operator", password="secret") as plc:
        assert (await plc.read(node)).value == 40.0


async def test_a_secure_server_refuses_what_it_must(secure_server: AsyncuaPeer, engine: str) -> None:
    secured = f"{secure_server.url}?security=Basic256Sha256"
    with pytest.raises(ConnectError, match="refused the session"):
        await bifrost.connect(secured, engine=engine, user="operator", password="wrong")
    with pytest.raises(ConnectError, match="refused the session"):
        await bifrost.connect(secured, engine=engine)  # anonymous
    with pytest.raises(ConnectError, match="no endpoint with security Basic256Sha256 and mode Sign"):
        await bifrost.connect(secured + "&mode=Sign", engine=engine, user="operator", password="secret")
    with pytest.raises(ConnectError):
        await bifrost.connect(secure_server.url, engine=engine, user="operator", password="secret")


async def test_a_subscription_carries_status_as_quality(opcua_server: AsyncuaPeer, engine: str) -> None:
    node = opcua_server.node_id("quality")
    async with bifrost.connect(opcua_server.url, engine=engine) as plc:
        stream = plc.subscribe([node], interval=0.05)
        try:
            assert (await _next(stream))[node].quality is Quality.GOOD
            opcua_server.set_status("quality", 1.5, "UncertainLastUsableValue")
            while (point := (await _next(stream))[node]).quality is Quality.GOOD:
                pass
            assert (point.value, point.quality) == (1.5, Quality.UNCERTAIN)
            opcua_server.set_status("quality", 2.5, "BadSensorFailure")
            while (point := (await _next(stream))[node]).quality is Quality.UNCERTAIN:
                pass
            assert point.quality is Quality.BAD
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
            opcua_server.set_status("quality", 0.0, "Good")
