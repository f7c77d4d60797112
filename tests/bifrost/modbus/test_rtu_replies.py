"""RTU replies as a line delivers them — cut at any byte, behind noise, with a damaged CRC, from the
wrong unit — held to both engines over RTU over TCP against a raw server on 127.0.0.1:0.

RTU has no length field, so each engine cuts replies by function code and byte count. The reference
is `framing.RtuFramer`, the codec the Python engine uses (the native engine's splitter is its Rust
twin): the first frame it finds in the bytes sent decides what a caller sees. Both engines must see
the same, and keep the connection only after a whole reply (value or exception), dropping it after a
timeout or a reply that cannot be the answer (so a late or stray frame is never read as the next one).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import bifrost
from bifrost.modbus import framing

from .conftest import Handler, RawPeer

VALUES = (0x1234, 0xBEEF)
REPLY_PDU = bytes((3, 4)) + struct.pack(">2H", *VALUES)
TIMEOUT = 0.3


def _first_frame(pieces: list[bytes]) -> framing.Frame | None:
    framer = framing.RtuFramer("responses")
    for piece in pieces:
        for item in framer.feed(piece):
            if isinstance(item, framing.Frame):
                return item
    return None


@st.composite
def deliveries(draw: st.DrawFn) -> list[bytes]:
    """The bytes of one reply as pieces: noise in front, perhaps a flipped bit or another unit."""
    unit = draw(st.sampled_from([1, 1, 1, 2]))
    frame = bytearray(framing.encode_rtu(unit, REPLY_PDU))
    if draw(st.booleans()) and draw(st.booleans()):
        at = draw(st.integers(0, len(frame) - 1))
        frame[at] ^= 1 << draw(st.integers(0, 7))
    data = draw(st.binary(max_size=6)) + bytes(frame)
    cuts = sorted(set(draw(st.lists(st.integers(1, len(data) - 1), max_size=4))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


async def _request(reader: asyncio.StreamReader) -> bytes:
    request = await reader.readexactly(8)  # FC3: unit, function, start, count, CRC
    assert framing.crc16(request[:-2]) == int.from_bytes(request[-2:], "little")
    return request


def _server(raw_server: Callable[[Handler], RawPeer], pieces: list[bytes]) -> RawPeer:
    """Answers the first request with `pieces`, each written on its own; every later one whole."""
    scripted = [pieces]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            await _request(reader)
            for piece in scripted.pop() if scripted else [framing.encode_rtu(1, REPLY_PDU)]:
                writer.write(piece)
                await writer.drain()

    return raw_server(serve)


async def _outcome(url: str, engine: str) -> tuple[Any, Any]:
    """What the first read gave (a value or an error's class and words), and whether the second read,
    answered whole, came on the same connection."""
    async with bifrost.connect(url, engine=engine, timeout=TIMEOUT) as plc:
        try:
            first: Any = (await plc.read("hr:0:uint32")).value
        except bifrost.BifrostError as exc:
            first = (type(exc).__name__, str(exc).split(": ", 1)[1])
        second = (await plc.read("hr:0:uint32")).value
    return first, second


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=deliveries())
def test_both_engines_cut_replies_as_the_reference_does(
    raw_server: Callable[[Handler], RawPeer], pieces: list[bytes]
) -> None:
    expected = _first_frame(pieces)
    # The bytes may reach the client in other pieces than they were written in; both extremes (each
    # byte alone, all at once) must find the same first frame for the outcome to be the bytes' own.
    assume(_first_frame([bytes((b,)) for b in b"".join(pieces)]) == _first_frame([b"".join(pieces)]) == expected)
    value = VALUES[0] << 16 | VALUES[1]
    seen = {}
    for engine in ("python", "native"):
        peer = _server(raw_server, pieces)
        url = f"modbus+rtu+tcp://127.0.0.1:{peer.port}?unit=1"
        first, second = asyncio.run(asyncio.wait_for(_outcome(url, engine), 10))
        seen[engine] = (first, second, peer.connections)
    assert seen["python"] == seen["native"], (pieces, expected, seen)
    first, second, connections = seen["native"]
    assert second == value
    if expected is None:  # no whole frame with a good CRC: no answer
        assert first == ("TimeoutError", f"no answer from unit 1 to read holding registers (3) within {TIMEOUT:g} s")
        assert connections == 2
    elif expected.unit != 1:
        assert first == ("ProtocolError", "protocol error: asked unit 1, answered by unit 2")
        assert connections == 2
    elif expected.pdu == REPLY_PDU:
        assert first == value
        assert connections == 1
