"""Each transport fault of the vocabulary against an OPC UA device: the relay in front of the C server
carries the host's fault lanes, which cut the stream into OPC UA message chunks.

The byte-level effects are observed on a plain socket speaking OPC UA's Hello/Acknowledge (Part 6,
7.1.2), the ACK being the server's reply chunk; a fault matched to a service is observed with asyncua.
The host runs on a VirtualClock: a delay lets bytes go exactly when the test advances the clock, and
"nothing arrived yet" is checked after the host's loop has run what is due (never by sleeping).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators import SimHost
from simulators.faults import TRANSPORT_KINDS, ActiveFault, PlantFaults

GUARD = 10.0  # the most any wait may take before the test fails (nothing hangs CI)
ACK_SIZE = 28

SCENARIO = textwrap.dedent(
    """
    scenario: ua-transport
    seed: 3
    tags:
      tank.level: {type: float32, init: 40.0}
    devices:
      hmi: {protocol: opcua, listen: 127.0.0.1:0, map: all}
    """
)
LEVEL = "ns=2;s=tank.level"


@pytest.fixture
def host(tmp_path: Path) -> Iterator[SimHost]:
    path = tmp_path / "ua.yaml"
    path.write_text(SCENARIO)
    with SimHost(str(path), clock="virtual", any_port=True) as sim:
        yield sim


def _hello(url: str) -> bytes:
    endpoint = url.encode()
    body = struct.pack("<IIIII", 0, 65536, 65536, 0, 0) + struct.pack("<i", len(endpoint)) + endpoint
    return b"HELF" + struct.pack("<I", 8 + len(body)) + body


class Wire:
    """A plain TCP connection to the device that says Hello."""

    def __init__(self, host: SimHost) -> None:
        self.url = host.url("hmi")
        address = self.url.split("//", 1)[1].split("/", 1)[0]
        name, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((name, int(port)), timeout=GUARD)

    def hello(self) -> None:
        self.sock.sendall(_hello(self.url))

    def receive(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def waiting(self) -> bytes | None:
        """What has arrived and not been read (b"": the end of the stream), or None when nothing has."""
        self.sock.setblocking(False)
        try:
            return self.sock.recv(65536)
        except BlockingIOError:
            return None
        finally:
            self.sock.settimeout(GUARD)

    def close(self) -> None:
        self.sock.close()


class Rig:
    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.hit = threading.Event()
        hooks = host.hooks
        assert isinstance(hooks, PlantFaults)
        hooks.device("hmi").on_hit(self._heard)

    def _heard(self, fault: ActiveFault) -> None:
        self.hit.set()

    def wait_hit(self) -> None:
        assert self.hit.wait(GUARD), "the fault never acted"
        self.hit.clear()

    def settle(self) -> None:
        """Let the host's loop run what is due now (bytes a lane let go when the clock moved)."""

        async def turns() -> None:
            for _ in range(10):
                await asyncio.sleep(0)

        self.host.call(turns)

    def advance(self, seconds: float) -> None:
        self.host.clock.advance(seconds)
        self.settle()

    def inject(self, kind: str, **params: Any) -> Any:
        self.hit.clear()
        return self.host.inject_fault("hmi", kind, **params)


@pytest.fixture
def rig(host: SimHost) -> Rig:
    return Rig(host)


@pytest.fixture
def clean_ack(host: SimHost) -> bytes:
    wire = Wire(host)
    wire.hello()
    ack = wire.receive(ACK_SIZE)
    wire.close()
    assert ack[:4] == b"ACKF" and len(ack) == ACK_SIZE
    return ack


def test_every_transport_kind_has_a_test_here() -> None:
    tested = {name.removeprefix("test_").split("_", 1)[0] for name in globals() if name.startswith("test_")}
    assert tested >= TRANSPORT_KINDS


def test_latency_holds_the_reply_until_the_plant_clock_has_moved_by_the_delay(rig: Rig, clean_ack: bytes) -> None:
    wire = Wire(rig.host)
    with rig.inject("latency", delay="2s"):
        wire.hello()
        rig.wait_hit()
        rig.advance(1.9)
        assert wire.waiting() is None
        rig.advance(0.1)
        assert wire.receive(ACK_SIZE) == clean_ack


def test_bandwidth_paces_the_reply_at_the_rate(rig: Rig, clean_ack: bytes) -> None:
    wire = Wire(rig.host)
    with rig.inject("bandwidth", rate=10):  # 10 bytes a plant second, one byte at a time
        wire.hello()
        rig.wait_hit()
        rig.advance(1.45)
        assert wire.receive(14) == clean_ack[:14]
        assert wire.waiting() is None
        rig.advance(1.4)
        assert wire.receive(ACK_SIZE - 14) == clean_ack[14:]


def test_slicer_sends_the_reply_in_pieces_with_gaps(rig: Rig, clean_ack: bytes) -> None:
    wire = Wire(rig.host)
    with rig.inject("slicer", size=10, gap="1s"):
        wire.hello()
        rig.wait_hit()
        rig.settle()
        assert wire.receive(10) == clean_ack[:10]
        assert wire.waiting() is None
        rig.advance(1.0)
        assert wire.receive(10) == clean_ack[10:20]
        rig.advance(1.0)
        assert wire.receive(8) == clean_ack[20:]


def test_stall_accepts_and_never_answers(rig: Rig) -> None:
    wire = Wire(rig.host)
    with rig.inject("stall") as fault:
        wire.hello()
        rig.wait_hit()
        rig.advance(60.0)
        assert wire.waiting() is None  # no answer, and the connection is still open
        assert fault.hits >= 1


def test_reset_ends_the_connection_with_a_tcp_reset(rig: Rig) -> None:
    wire = Wire(rig.host)
    with rig.inject("reset"):
        wire.hello()
        with pytest.raises(ConnectionResetError):
            wire.receive(ACK_SIZE)


def test_close_ends_the_connection_gracefully_instead_of_the_reply(rig: Rig) -> None:
    wire = Wire(rig.host)
    with rig.inject("close"):
        wire.hello()
        assert wire.receive(ACK_SIZE) == b""  # the end of the stream, no ACK


def test_refuse_closes_new_connections_and_the_server_never_sees_them(rig: Rig, clean_ack: bytes) -> None:
    log = rig.host.devices["hmi"].log
    with rig.inject("refuse", count=1) as fault:
        wire = Wire(rig.host)
        rig.wait_hit()
        try:
            wire.hello()
            assert wire.receive(ACK_SIZE) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed before the Hello went, as the OS has it
        assert fault.hits == 1
    again = Wire(rig.host)  # the count is spent: served
    again.hello()
    assert again.receive(ACK_SIZE) == clean_ack
    assert log.count() == 0  # no service reached the server


def test_corrupt_flips_bits_of_the_reply(rig: Rig, clean_ack: bytes) -> None:
    wire = Wire(rig.host)
    with rig.inject("corrupt", bits=5):
        wire.hello()
        damaged = wire.receive(ACK_SIZE)
    assert sum(bin(a ^ b).count("1") for a, b in zip(clean_ack, damaged, strict=True)) == 5


def test_drop_loses_a_whole_reply_chunk(rig: Rig, clean_ack: bytes) -> None:
    wire = Wire(rig.host)
    with rig.inject("drop", count=1) as fault:
        wire.hello()
        rig.wait_hit()
        rig.settle()
        assert wire.waiting() is None  # lost, and nothing of it arrived
        assert fault.hits == 1
    again = Wire(rig.host)
    again.hello()
    assert again.receive(ACK_SIZE) == clean_ack


def test_latency_matched_to_a_service_delays_only_its_replies(rig: Rig) -> None:
    pytest.importorskip("asyncua")
    from asyncua import Client

    async def run() -> None:
        async with Client(rig.host.url("hmi"), timeout=GUARD) as client:
            level = client.get_node(LEVEL)
            with rig.inject("latency", delay="5s", match={"function": 629}):  # ReadRequest
                browsed = await client.nodes.objects.get_children()  # Browse: not delayed
                assert browsed
                read = asyncio.ensure_future(level.read_value())
                await asyncio.to_thread(rig.wait_hit)
                await asyncio.to_thread(rig.advance, 4.9)
                await asyncio.sleep(0)
                assert not read.done()
                await asyncio.to_thread(rig.advance, 0.1)
                assert await asyncio.wait_for(read, GUARD) == pytest.approx(40.0)

    asyncio.run(run())
