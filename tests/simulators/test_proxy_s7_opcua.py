"""The proxy's protocol faults on S7 and OPC UA streams, in front of independent devices: python-snap7's
server (read by python-snap7's client) and asyncua's server (read by asyncua's client).

Each test asserts what the client sees of the fault: the protocol's own refusal, answered by the proxy
(the device never sees the request), a lost answer, a value status. Faults that make a client give up
are seen through the client's own timeout, kept short; nothing waits by sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest

from simulators.proxy import Proxy, TrafficRecord

pytestmark = pytest.mark.asyncio

GIVE_UP = 0.3  # the client's timeout where a fault means no usable answer comes
PATIENT = 10.0


class Traffic:
    def __init__(self) -> None:
        self.records: list[TrafficRecord] = []

    def __call__(self, record: TrafficRecord) -> None:
        self.records.append(record)

    def of(self, event: str) -> list[TrafficRecord]:
        return [record for record in self.records if record.event == event and record.transaction_id is not None]


# --- malformed streams -----------------------------------------------------------------------------------


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A target that sends back what it first reads, then closes: the proxy then ends the connection."""
    writer.write(await reader.read(65536))
    await writer.drain()
    writer.close()


def _garbage(protocol: str, rng: random.Random) -> bytes:
    """Frames whose headers are right and whose bodies are random (or cut short), then one that no
    protocol fault answers (an OPC UA Hello, an S7 COTP connect), so the target always gets something."""
    frames = []
    for _ in range(rng.randrange(1, 4)):
        body = rng.randbytes(rng.randrange(0, 60))
        if protocol == "opcua":
            kind = rng.choice([b"MSGF", b"OPNF", b"CLOF", b"MSGC", b"HELF"])
            frames.append(kind + struct.pack("<I", 8 + len(body)) + body)
        else:
            body = (b"\x02\xf0\x80\x32" + bytes([rng.choice([1, 3, 7])]) + body) if rng.random() < 0.8 else body
            frames.append(struct.pack(">BBH", 3, 0, 4 + len(body)) + body)
    if protocol == "opcua":
        frames.append(b"HELF" + struct.pack("<I", 12) + bytes(4))
    else:
        frames.append(struct.pack(">BBH", 3, 0, 11) + bytes((6, 0xE0, 0, 0, 0, 1, 0)))
    return b"".join(frames)


@pytest.mark.parametrize("protocol", ["s7", "opcua"])
async def test_malformed_streams_both_ways_never_break_the_proxy(protocol: str) -> None:
    """A seeded fuzz, with every protocol fault in force: the target echoes, so the proxy reads the same
    garbage as requests and as answers; each connection ends cleanly and the proxy goes on serving."""
    rng = random.Random(7)
    traffic = Traffic()
    faults = ["exception,code=BadCommunicationError" if protocol == "opcua" else "exception,code=0x85,count=40"]
    faults += ["bad_quality,probability=0.3", "freeze", "wrong_transaction,probability=0.5", "drop,probability=0.2"]
    target = await asyncio.start_server(_echo, "127.0.0.1", 0)
    try:
        port = target.sockets[0].getsockname()[1]
        async with Proxy(("127.0.0.1", port), faults=faults, log=traffic, protocol=protocol) as proxy:
            for _ in range(120):
                reader, writer = await asyncio.open_connection(*proxy.address)
                writer.write(_garbage(protocol, rng))
                while await asyncio.wait_for(reader.read(65536), PATIENT):
                    pass  # until the proxy closes the connection
                writer.close()
    finally:
        target.close()
    assert not [record for record in traffic.records if "internal error" in record.summary]
    assert len([record for record in traffic.records if record.event == "connect"]) == 120
    assert len([record for record in traffic.records if record.event == "response"]) > 100


# --- S7: python-snap7's server and client -----------------------------------------------------------------

snap7 = pytest.importorskip("snap7")
from snap7.error import S7Error  # noqa: E402
from snap7.type import SrvArea  # noqa: E402


@pytest.fixture(autouse=True)
def _quiet_snap7() -> None:
    logging.getLogger("snap7").setLevel(logging.CRITICAL)


@contextmanager
def snap7_device() -> Iterator[tuple[int, bytearray]]:
    """python-snap7's server: DB1 holds 0..15."""
    server = snap7.server.Server(log=False)
    db1 = bytearray(range(16))
    server.register_area(SrvArea.DB, 1, db1)
    server.start(tcp_port=0)
    try:
        yield int(server.server_socket.getsockname()[1]), db1
    finally:
        server.stop()


@asynccontextmanager
async def s7_relay(*faults: str, timeout: float = PATIENT) -> AsyncIterator[tuple[Proxy, Any, bytearray, Traffic]]:
    traffic = Traffic()
    with snap7_device() as (port, db1):
        async with Proxy(("127.0.0.1", port), faults=faults, log=traffic, protocol="s7") as proxy:
            client = snap7.Client()
            await asyncio.to_thread(client.connect, "127.0.0.1", 0, 1, proxy.address[1])
            client.connection.timeout = timeout  # python-snap7's receive timeout, once connected
            client.connection.socket.settimeout(timeout)
            try:
                yield proxy, client, db1, traffic
            finally:
                await asyncio.to_thread(client.disconnect)


async def test_s7_exception_with_an_item_code_answers_the_matched_reads_from_the_proxy() -> None:
    async with s7_relay("exception,code=0x0A,function=4") as (_, client, db1, traffic):
        with pytest.raises(S7Error, match=r"Object does not exist \(0x0a\)"):
            await asyncio.to_thread(client.db_read, 1, 0, 4)
        await asyncio.to_thread(client.db_write, 1, 2, bytearray(b"\xbe\xef"))  # a write is not matched
        assert db1[2:4] == b"\xbe\xef"
    refused = [record for record in traffic.of("response") if "from the proxy" in record.summary]
    assert len(refused) == 1 and refused[0].faults == ("exception",)
    assert "0x0A" in refused[0].summary


async def test_s7_exception_with_an_error_class_refuses_the_whole_job() -> None:
    async with s7_relay("exception,code=0x85") as (_, client, _, traffic):
        with pytest.raises(S7Error):
            await asyncio.to_thread(client.db_read, 1, 0, 4)
    (refused,) = [record for record in traffic.of("response") if "from the proxy" in record.summary]
    assert "0x85" in refused.summary


async def test_s7_bad_quality_is_a_hardware_fault_per_item_as_the_simulated_cpu_answers() -> None:
    async with s7_relay("bad_quality") as (_, client, _, traffic):
        with pytest.raises(S7Error):
            await asyncio.to_thread(client.db_read, 1, 0, 4)
    (refused,) = [record for record in traffic.of("response") if "from the proxy" in record.summary]
    assert "0x01" in refused.summary


async def test_s7_drop_matched_to_writes_loses_their_answers_and_reads_are_served() -> None:
    async with s7_relay("drop,function=5,count=1", timeout=GIVE_UP) as (proxy, client, db1, _):
        assert bytes(await asyncio.to_thread(client.db_read, 1, 0, 4)) == bytes(range(4))
        with pytest.raises(S7Error):
            await asyncio.to_thread(client.db_write, 1, 0, bytearray(b"\x01"))
        assert db1[0] == 1  # the device took the write: only its answer was lost
        assert not proxy.faults.active()  # its count is spent


async def test_s7_corrupt_matched_to_reads_damages_their_answers() -> None:
    async with s7_relay("corrupt,bits=64,function=4", timeout=GIVE_UP) as (_, client, _, traffic):
        try:
            data: bytes | None = bytes(await asyncio.to_thread(client.db_read, 1, 0, 8))
        except S7Error:
            data = None
        assert data != bytes(range(8))
    assert [record.faults for record in traffic.of("response")][-1] == ("corrupt",)


async def test_s7_wrong_transaction_answers_on_another_pdu_reference() -> None:
    async with s7_relay("wrong_transaction,count=1", timeout=GIVE_UP) as (_, client, _, traffic):
        with pytest.raises(S7Error):
            await asyncio.to_thread(client.db_read, 1, 0, 4)
    (request,) = [record for record in traffic.of("request") if record.faults == ("wrong_transaction",)]
    (answer,) = [record for record in traffic.of("response") if record.faults == ("wrong_transaction",)]
    assert answer.data[11:13] != request.data[11:13]  # the S7 header's PDU reference


async def test_s7_freeze_answers_reads_as_before_it_and_thaws_when_cleared() -> None:
    async with s7_relay() as (proxy, client, db1, traffic):
        assert bytes(await asyncio.to_thread(client.db_read, 1, 0, 4)) == bytes(range(4))
        with proxy.faults.add("freeze"):
            db1[0] = 99  # the device's value moves; a client reading through the freeze does not see it
            assert bytes(await asyncio.to_thread(client.db_read, 1, 0, 4)) == bytes(range(4))
        assert bytes(await asyncio.to_thread(client.db_read, 1, 0, 4)) == bytes((99, 1, 2, 3))
    assert [record.faults for record in traffic.of("response") if record.function == 4] == [(), ("freeze",), ()]


# --- OPC UA: asyncua's server and client ------------------------------------------------------------------

asyncua = pytest.importorskip("asyncua")
from asyncua import Client, Server, ua  # noqa: E402

LEVEL, SPEED = "ns=2;s=tank.level", "ns=2;s=pump.speed"


async def _tank() -> tuple[Server, int]:
    server = Server()
    await server.init()
    server.set_endpoint("opc.tcp://127.0.0.1:0/tank")
    ns = await server.register_namespace("urn:example:tank")
    tank = await server.nodes.objects.add_object(ua.NodeId("tank", ns), "tank")
    await tank.add_variable(ua.NodeId("tank.level", ns), "level", 4.25)
    await tank.add_variable(ua.NodeId("pump.speed", ns), "speed", ua.Variant(1450, ua.VariantType.UInt16))
    setpoint = await tank.add_variable(ua.NodeId("tank.setpoint", ns), "setpoint", 50.0)
    await setpoint.set_writable()
    await server.start()
    return server, int(server.bserver._server.sockets[0].getsockname()[1])


@pytest.fixture(scope="module")
def opcua_device() -> Iterator[int]:
    """asyncua's server on a loop of its own, for the module (it takes seconds to build its address
    space); only the freeze test writes, to its own node."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server, port = asyncio.run_coroutine_threadsafe(_tank(), loop).result(60)
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(60)
        loop.close()


@asynccontextmanager
async def ua_relay(port: int, *faults: str, timeout: float = PATIENT) -> AsyncIterator[tuple[Proxy, Client, Traffic]]:
    traffic = Traffic()
    async with Proxy(("127.0.0.1", port), faults=faults, log=traffic, protocol="opcua") as proxy:
        client = Client(f"opc.tcp://127.0.0.1:{proxy.address[1]}/tank", timeout=timeout)
        async with client:
            yield proxy, client, traffic


async def test_opcua_exception_is_a_service_fault_and_the_channel_goes_on(opcua_device: int) -> None:
    async with ua_relay(opcua_device) as (proxy, client, _):
        level = client.get_node(LEVEL)
        with proxy.faults.add("exception,code=BadCommunicationError,function=Read"):
            with pytest.raises(ua.UaStatusCodeError) as raised:
                await level.read_value()
            assert raised.value.code == ua.StatusCodes.BadCommunicationError
            assert await client.nodes.objects.get_children()  # Browse is not matched
            with pytest.raises(ua.UaStatusCodeError):
                await level.read_value()
        # The proxy's answers were numbered into the channel: the device and the client go on.
        assert await level.read_value() == pytest.approx(4.25)


async def test_opcua_exception_matched_to_a_node_refuses_only_requests_naming_it(opcua_device: int) -> None:
    async with ua_relay(opcua_device, f"exception,code=BadDeviceFailure,node={LEVEL}") as (_, client, _):
        with pytest.raises(ua.UaStatusCodeError) as raised:
            await client.get_node(LEVEL).read_value()
        assert raised.value.code == ua.StatusCodes.BadDeviceFailure
        assert await client.get_node(SPEED).read_value() == 1450


async def test_opcua_drop_loses_one_answer_and_the_next_request_is_answered(opcua_device: int) -> None:
    async with ua_relay(opcua_device, timeout=GIVE_UP) as (proxy, client, _):
        level = client.get_node(LEVEL)
        with proxy.faults.add("drop,function=629,count=1") as fault:
            with pytest.raises((asyncio.TimeoutError, TimeoutError)):
                await level.read_value()
            assert fault.hits == 1
        assert await level.read_value() == pytest.approx(4.25)


async def test_opcua_bad_quality_sets_the_status_of_read_values(opcua_device: int) -> None:
    async with ua_relay(opcua_device) as (proxy, client, _):
        level = client.get_node(LEVEL)
        with proxy.faults.add("bad_quality,code=UncertainLastUsableValue"):
            value = await level.read_data_value(raise_on_bad_status=False)
            assert value.StatusCode.value == ua.StatusCodes.UncertainLastUsableValue
            assert value.Value.Value == pytest.approx(4.25)
        with proxy.faults.add("bad_quality"):
            value = await level.read_data_value(raise_on_bad_status=False)
            assert value.StatusCode.value == ua.StatusCodes.BadSensorFailure
        assert (await level.read_data_value()).StatusCode.is_good()


async def test_opcua_wrong_transaction_is_an_answer_the_client_refuses(opcua_device: int) -> None:
    # asyncua closes the connection on an answer whose RequestId names no request it sent.
    async with ua_relay(opcua_device, timeout=GIVE_UP) as (proxy, client, traffic):
        refused = pytest.raises((asyncio.TimeoutError, TimeoutError, ua.UaError, ConnectionError))
        with proxy.faults.add("wrong_transaction,function=Read,count=1"), refused:
            await client.get_node(LEVEL).read_value()
    (answer,) = [record for record in traffic.of("response") if "wrong_transaction" in record.faults]
    assert int.from_bytes(answer.data[20:24], "little") == (answer.transaction_id or 0) + 0x80000000


async def test_opcua_truncate_cuts_the_answer_short(opcua_device: int) -> None:
    async with ua_relay(opcua_device, timeout=GIVE_UP) as (proxy, client, traffic):
        broken = pytest.raises((asyncio.TimeoutError, TimeoutError, ua.UaError, ConnectionError))
        with proxy.faults.add("truncate,keep=12,function=Read,count=1"), broken:
            await client.get_node(LEVEL).read_value()
    (answer,) = [record for record in traffic.of("response") if "truncate" in record.faults]
    assert len(answer.data) == 12


async def test_opcua_freeze_answers_reads_as_first_seen_while_writes_go_through(opcua_device: int) -> None:
    # A quiet proxy keeps no OPC UA answers (a Read's key costs a decode): a freeze keeps the first it sees.
    async with ua_relay(opcua_device) as (proxy, client, traffic):
        setpoint = client.get_node("ns=2;s=tank.setpoint")
        await setpoint.write_value(ua.DataValue(ua.Variant(50.0, ua.VariantType.Double)))
        with proxy.faults.add("freeze"):
            assert await setpoint.read_value() == pytest.approx(50.0)
            await setpoint.write_value(ua.DataValue(ua.Variant(60.0, ua.VariantType.Double)))
            assert await setpoint.read_value() == pytest.approx(50.0)
        assert await setpoint.read_value() == pytest.approx(60.0)
    reads = [record.faults for record in traffic.of("response") if record.function == 629]
    assert reads[-3:] == [(), ("freeze",), ()]
