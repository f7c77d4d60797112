"""Both client engines against a real pymodbus server, and against servers that misbehave."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import pytest

import bifrost
from bifrost import ByteOrder, ConnectError, DeviceError, Quality, Tag, TagMap

from .conftest import Handler, PymodbusPeer, RawPeer

pytestmark = pytest.mark.asyncio

TYPED_CASES = [
    ("hr:10", 12345, [12345]),
    ("hr:10:int16", -2, [0xFFFE]),
    ("hr:10:int32", -100_000, list(struct.unpack(">HH", struct.pack(">i", -100_000)))),
    ("hr:10:uint32:CDAB", 0x01020304, [0x0304, 0x0102]),
    ("hr:10:int64:DCBA", -(2**40), None),
    ("hr:10:uint64", 2**64 - 1, [0xFFFF] * 4),
    ("hr:10:float32", 123.5, [0x42F7, 0x0000]),
    ("hr:10:float32:BADC", -1.25, None),
    ("hr:10:float64", 1e-3, None),
    ("hr:10:string[7]", "bifrost", [0x6269, 0x6672, 0x6F73, 0x7400]),
]


@pytest.mark.parametrize(("address", "value", "words"), TYPED_CASES)
async def test_every_type_writes_and_reads_back(
    pymodbus_server: PymodbusPeer, engine: str, address: str, value: object, words: list[int] | None
) -> None:
    async with bifrost.connect(pymodbus_server.url(), engine=engine) as plc:
        await plc.write(address, value)  # type: ignore[arg-type]
        point = await plc.read(address)
    assert point.value == value
    assert point.quality is Quality.GOOD
    if words is not None:
        # Checked on the server's side too: the bytes are where another implementation expects them.
        assert pymodbus_server.registers(3, 10, len(words)) == words


async def test_every_area_reads_as_pymodbus_serves_it(pymodbus_server: PymodbusPeer, engine: str) -> None:
    async with bifrost.connect(pymodbus_server.url(), engine=engine) as plc:
        assert (await plc.read("coil:0")).value is True
        assert (await plc.read("coil:1")).value is False
        assert (await plc.read("di:3")).value is True
        assert (await plc.read("di:4")).value is False
        assert (await plc.read("ir:7")).value == 1007
        assert (await plc.read("hr:42")).value == 42


async def test_coils_and_bits_write(pymodbus_server: PymodbusPeer, engine: str) -> None:
    async with bifrost.connect(pymodbus_server.url(), engine=engine) as plc:
        await plc.write("coil:1", True)
        assert (await plc.read("coil:1")).value is True
        await plc.write("hr:20.3", True)  # read-modify-write of one bit; hr:20 starts as 20 = 0b10100
        assert pymodbus_server.registers(3, 20, 1) == [0b11100]
        await plc.write("hr:20.2", False)
        assert pymodbus_server.registers(3, 20, 1) == [0b11000]
        assert (await plc.read("hr:20.3")).value is True


async def test_read_many_through_a_tag_map_with_a_hole(pymodbus_server: PymodbusPeer, engine: str) -> None:
    tags = TagMap.of(
        Tag(name="level", address="hr:0", type="float32"),  # type: ignore[arg-type]
        Tag(name="count", address="hr:2", type="uint32", byte_order=ByteOrder.CDAB),  # type: ignore[arg-type]
        Tag(name="temp", address="ir:5", type="int16", scale=0.1),  # type: ignore[arg-type]
        Tag(name="last", address="hr:199"),
        Tag(name="beyond", address="hr:203"),  # pymodbus serves 0..199: a hole the planner merged across
        Tag(name="run", address="coil:2", type="bool"),  # type: ignore[arg-type]
    )
    async with bifrost.connect(pymodbus_server.url(), tags=tags, engine=engine) as plc:
        await plc.write_many({"level": 42.5, "count": 7})
        points = await plc.read_many(["level", "count", "temp", "last", "beyond", "run"])
    assert points["level"].value == 42.5
    assert points["count"].value == 7
    assert points["temp"].value == pytest.approx(100.5)
    assert points["last"].value == 199
    assert points["run"].value is True
    assert (points["beyond"].value, points["beyond"].quality) == (None, Quality.BAD)


async def test_an_exception_is_a_device_error_with_its_code(pymodbus_server: PymodbusPeer, engine: str) -> None:
    async with bifrost.connect(pymodbus_server.url(), engine=engine) as plc:
        with pytest.raises(DeviceError, match="exception 2") as caught:
            await plc.read("hr:500")
        assert caught.value.code == 2
        assert (await plc.read("hr:1")).value == 1  # the connection is still good


async def test_several_callers_share_one_connection(pymodbus_server: PymodbusPeer, engine: str) -> None:
    async with bifrost.connect(pymodbus_server.url(), engine=engine) as plc:
        points = await asyncio.gather(*(plc.read(f"hr:{i}") for i in range(50)))
    assert [point.value for point in points] == list(range(50))


async def test_silence_is_a_timeout_in_bounded_time(raw_server: Callable[[Handler], RawPeer], engine: str) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads until the client goes away, never answers

    peer = raw_server(silent)
    async with bifrost.connect(peer.url, engine=engine, timeout=0.2) as plc:
        with pytest.raises(bifrost.TimeoutError, match=r"127\.0\.0\.1"):
            await asyncio.wait_for(plc.read("hr:0"), 5)  # the 5 s guard only keeps a bug from hanging CI


async def test_a_late_reply_is_never_taken_for_the_next_request(
    raw_server: Callable[[Handler], RawPeer], engine: str
) -> None:
    """The device holds its answer to the first request until the client's next request arrives, on
    whatever connection, then sends the late answer (111) before answering the new request (222).
    """
    held: list[tuple[asyncio.StreamWriter, bytes]] = []
    requests = 0

    def answer(request: bytes, value: int) -> bytes:
        return request[:4] + struct.pack(">HBBBH", 5, request[6], 3, 2, value)

    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        while True:
            request = await reader.readexactly(12)  # MBAP (7) + FC3 request (5)
            requests += 1
            if requests == 1:
                held.append((writer, request))
                continue
            while held:
                first_writer, first_request = held.pop()
                if not first_writer.is_closing():
                    first_writer.write(answer(first_request, 111))
            writer.write(answer(request, 222))
            await writer.drain()

    peer = raw_server(late)
    async with bifrost.connect(peer.url, engine=engine, timeout=0.3) as plc:
        with pytest.raises(bifrost.TimeoutError):
            await plc.read("hr:0")
        second = await plc.read("hr:1")
    # The Python engine drops the late reply by its transaction id; the native one reconnects.
    assert second.value == 222


async def test_a_closed_port_is_a_connect_error(closed_port: int, engine: str) -> None:
    with pytest.raises(ConnectError, match=str(closed_port)):
        async with bifrost.connect(f"modbus://127.0.0.1:{closed_port}", engine=engine, timeout=1):
            pass


async def test_a_device_that_hangs_up_mid_frame_is_a_connect_error_then_recovers(
    raw_server: Callable[[Handler], RawPeer], engine: str
) -> None:
    calls = 0

    async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        while True:
            request = await reader.readexactly(12)
            calls += 1
            if calls == 1:
                writer.write(request[:4] + b"\x00\x05\x01\x03")  # half an answer, then hang up
                await writer.drain()
                return
            writer.write(request[:4] + struct.pack(">HBBBH", 5, request[6], 3, 2, 77))
            await writer.drain()

    peer = raw_server(flaky)
    async with bifrost.connect(peer.url, engine=engine, timeout=1) as plc:
        with pytest.raises(ConnectError, match=r"connection lost|closed"):
            await plc.read("hr:0")
        assert (await plc.read("hr:0")).value == 77
    assert peer.connections == 2


async def test_writes_that_cannot_be_are_refused_before_the_wire(pymodbus_server: PymodbusPeer, engine: str) -> None:
    tags = TagMap.of(Tag(name="ro", address="hr:0", writable=False))
    async with bifrost.connect(pymodbus_server.url(), tags=tags, engine=engine) as plc:
        with pytest.raises(bifrost.ConfigError, match="not writable"):
            await plc.write("ro", 1)
        with pytest.raises(bifrost.ConfigError, match="read-only"):
            await plc.write("ir:0", 1)
        with pytest.raises(bifrost.EncodeError, match="out of range for uint16"):
            await plc.write("hr:0", 70000)
        with pytest.raises(bifrost.ConfigError, match=r"is not a tag of this connection .* nor an address"):
            await plc.read("nonsense")
        with pytest.raises(bifrost.ConfigError, match=r"'row' is not a tag of this connection \(did you mean 'ro'\?"):
            await plc.read("row")


async def test_a_device_that_hangs_up_is_named_as_such(raw_server: Callable[[Handler], RawPeer], engine: str) -> None:
    """A clean close reads the same on both engines (once told by tokio-modbus as a stale errno)."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(12)

    peer = raw_server(hang_up)
    async with bifrost.connect(peer.url, engine=engine, timeout=1) as plc:
        with pytest.raises(ConnectError, match=r"connection lost: the device closed it$"):
            await plc.read("hr:0")
