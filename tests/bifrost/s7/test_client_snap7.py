"""Our S7 client against python-snap7's server (an independent implementation), and against raw peers
that misbehave: timeouts, late answers, refused connections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import bifrost
from bifrost import ConnectError, DataType, DeviceError, Quality, Tag, TagMap
from bifrost.s7 import framing, pdu

snap7 = pytest.importorskip("snap7")


@dataclass
class Snap7Peer:
    server: object
    port: int
    db1: bytearray
    db2: bytearray
    flags: bytearray

    @property
    def url(self) -> str:
        return f"s7://127.0.0.1:{self.port}?rack=0&slot=1"


@pytest.fixture
def peer() -> Iterator[Snap7Peer]:
    from snap7.type import SrvArea

    logging.getLogger("snap7").setLevel(logging.CRITICAL)
    server = snap7.Server(log=False)
    db1, db2, flags = bytearray(64), bytearray(16), bytearray(32)
    struct.pack_into(">f", db1, 0, 42.5)
    db1[4] = 0b0000_0101
    struct.pack_into(">hi", db1, 6, -7, 100_000)
    db1[12:18] = b"\x04\x03abc\x00"
    struct.pack_into(">H", flags, 20, 0xBEEF)
    server.register_area(SrvArea.DB, 1, db1)
    server.register_area(SrvArea.DB, 2, db2)
    server.register_area(SrvArea.MK, 0, flags)
    server.start(tcp_port=0)  # any free port: safe under pytest -n 2
    port = server.server_socket.getsockname()[1]
    try:
        yield Snap7Peer(server, port, db1, db2, flags)
    finally:
        server.stop()


TAGS = TagMap.of(
    Tag(name="level", address="DB1.DBD0", type=DataType.FLOAT32),
    Tag(name="run", address="DB1.DBX4.0", type=DataType.BOOL),
    Tag(name="valve", address="DB1.DBX4.1", type=DataType.BOOL),
    Tag(name="delta", address="DB1.DBW6", type=DataType.INT16, scale=0.5),
    Tag(name="count", address="DB1:8", type=DataType.INT32),
    Tag(name="name", address="DB1.DBX12", type=DataType.STRING, length=4),
    Tag(name="word", address="MW20", type=DataType.UINT16),
)


@pytest.mark.asyncio
async def test_typed_tags_of_db_and_m_in_one_round_trip(peer: Snap7Peer) -> None:
    async with bifrost.connect(peer.url, tags=TAGS) as plc:
        before = plc.round_trips  # type: ignore[attr-defined]
        points = await plc.read_many(list(TAGS))
        assert plc.round_trips - before == 1  # type: ignore[attr-defined]
    assert {name: point.value for name, point in points.items()} == {
        "level": 42.5,
        "run": True,
        "valve": False,
        "delta": -3.5,
        "count": 100_000,
        "name": "abc",
        "word": 0xBEEF,
    }
    assert all(point.quality is Quality.GOOD for point in points.values())


@pytest.mark.asyncio
async def test_raw_addresses_and_writes_land_in_the_servers_memory(peer: Snap7Peer) -> None:
    async with bifrost.connect(peer.url) as plc:
        assert (await plc.read("%DB1:0:REAL")).value == 42.5
        await plc.write("DB2.DBW0:INT", -1234)
        await plc.write("DB2.DBD4:REAL", 1.5)
        # python-snap7's server answers only the first item of a multi-item write, so one at a time here
        # (our simulator takes write_many in one PDU: tests/simulators/s7).
        await plc.write("DB2:8:STRING[4]", "hey")
        await plc.write("MD0:DINT", -5)
        assert (await plc.read("DB2.DBW0:INT")).value == -1234
    assert struct.unpack_from(">hxxf", peer.db2) == (-1234, 1.5)
    assert peer.db2[8:14] == b"\x04\x03hey\x00"
    assert struct.unpack_from(">i", peer.flags) == (-5,)


@pytest.mark.asyncio
async def test_its_error_codes_reach_the_one_item_at_fault(peer: Snap7Peer) -> None:
    async with bifrost.connect(peer.url, tags=TAGS) as plc:
        with pytest.raises(DeviceError) as unknown:
            await plc.read("DB9.DBW0:INT")
        assert unknown.value.code == 0x0A
        assert "object does not exist" in str(unknown.value)
        with pytest.raises(DeviceError) as past:
            await plc.read("DB1.DBD62:DINT")
        assert past.value.code == 0x05
        points = await plc.read_many(["level", "DB9.DBW0:INT", "DB1.DBD62:DINT", "word"])
        assert [points[k].quality for k in points] == [Quality.GOOD, Quality.BAD, Quality.BAD, Quality.GOOD]
        assert points["level"].value == 42.5
        with pytest.raises(DeviceError) as refused:
            await plc.write("DB1.DBD62:DINT", 1)  # snap7 refuses the PDU as a whole: 0x8404
        assert refused.value.code == 0x8404


@pytest.mark.asyncio
async def test_the_negotiated_pdu_size_drives_the_plan(peer: Snap7Peer) -> None:
    names = [f"DB1:{i * 2}:INT" for i in range(30)] + [f"MW{i * 2}:WORD" for i in range(16)]
    async with bifrost.connect(peer.url + "&pdu=960") as plc:
        before = plc.round_trips  # type: ignore[attr-defined]
        await plc.read_many(names)
        assert plc.pdu_size == 480  # type: ignore[attr-defined]  # snap7's server grants at most 480
        assert plc.round_trips - before == 1  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_subscribe_yields_changes_past_the_deadband(peer: Snap7Peer) -> None:
    async with bifrost.connect(peer.url, tags=TAGS) as plc:
        batches = plc.subscribe(["level", "word"], interval=0.01, deadband=1.0)
        first = await anext(batches)
        assert set(first) == {"level", "word"}
        struct.pack_into(">f", peer.db1, 0, 42.9)  # within the deadband: not reported
        struct.pack_into(">H", peer.flags, 20, 7)
        second = await anext(batches)
        assert set(second) == {"word"}
        await batches.aclose()


@pytest.mark.asyncio
async def test_identity_from_the_szl(peer: Snap7Peer) -> None:
    async with bifrost.connect(peer.url) as plc:
        identity = await plc.identity()  # type: ignore[attr-defined]
    assert identity["order_code"] == "6ES7 315-2EH14-0AB0"


# ---------------------------------------------------------------------------- misbehaving peers


class RawCpu:
    """A CPU on a plain socket thread that holds its first read answer until told to send it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.release = threading.Event()
        self.late_sent = threading.Event()
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._session, args=(sock, self.connections), daemon=True).start()

    def _session(self, sock: socket.socket, number: int) -> None:
        server = framing.ServerConnection()
        with sock:
            while True:
                try:
                    data = sock.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                server.receive_data(data)
                while (event := server.next_event()) is not None:
                    if isinstance(event, framing.ConnectRequest):
                        sock.sendall(server.accept())
                    elif isinstance(event, framing.Request):
                        request = event.request
                        if isinstance(request, pdu.SetupRequest):
                            sock.sendall(server.send(event.reference, server.negotiate(request)))
                            continue
                        value = b"LATE" if number == 1 else b"GOOD"
                        answer = server.send(event.reference, pdu.ReadResponse((pdu.ItemData(data=value),)))
                        if number == 1:
                            self.release.wait(10)
                            with contextlib.suppress(OSError):
                                sock.sendall(answer)
                            self.late_sent.set()
                        else:
                            sock.sendall(answer)

    def close(self) -> None:
        self.release.set()
        self.listener.close()


@pytest.mark.asyncio
async def test_after_a_timeout_the_late_answer_is_never_taken() -> None:
    cpu = RawCpu()
    try:
        async with bifrost.connect(f"s7://127.0.0.1:{cpu.port}", timeout=0.2) as plc:
            with pytest.raises(bifrost.TimeoutError, match="no answer"):
                await plc.read("DB1:0:DWORD")
            cpu.release.set()
            await asyncio.get_running_loop().run_in_executor(None, cpu.late_sent.wait, 10)
            point = await plc.read("DB1:0:DWORD")  # on a new connection: the late answer is gone with the old
            assert point.value == int.from_bytes(b"GOOD", "big")
            assert cpu.connections == 2
    finally:
        cpu.close()


@pytest.mark.asyncio
async def test_nothing_listening_is_a_connect_error_naming_the_device() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    plc = bifrost.connect(f"s7://127.0.0.1:{port}?rack=0&slot=2", timeout=1)
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
        await plc.open()


def test_the_scheme_and_its_parameters() -> None:
    scheme = bifrost.known_schemes()["s7"]
    endpoint = scheme.parse("s7://plc.example:1102?rack=1&slot=3")
    assert (endpoint.host, endpoint.port, endpoint.params["rack"], endpoint.params["slot"]) == (
        "plc.example",
        1102,
        1,
        3,
    )
    assert scheme.parse("s7://plc").port == 102
    with pytest.raises(bifrost.ConfigError, match="slot"):
        scheme.parse("s7://plc?slot=40")


@pytest.mark.asyncio
async def test_describe_and_preview_write_for_the_bifrost_command(peer: Snap7Peer) -> None:
    async with bifrost.connect(peer.url, tags=TAGS) as plc:
        assert plc.describe("level") == TAGS["level"]
        raw = plc.describe("DB2:0:INT")
        assert (raw.type, raw.address) == (DataType.INT16, "DB2:0:INT")
        assert plc.describe("DB2:0:BYTE").type is DataType.UINT16
        (line,) = plc.preview_write("DB2:0:INT", -2)
        assert line.startswith("write var DB2 0 x2 BYTE: PDU 32 01")
        assert line.endswith("ff fe")
    assert peer.db2[:2] == b"\x00\x00"  # nothing was sent
