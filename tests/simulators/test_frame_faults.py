"""Frame-level faults beyond Modbus: the lanes cut S7 (TPKT) and OPC UA (message chunk) streams with the
framer their front-end gives, so `drop`, `corrupt` and matched transport faults act on whole frames, and a
reply's match sees the request it answers. Byte-exact cutting is checked on the framers alone."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bifrost.s7 import framing, pdu
from bifrost.s7.pdu import Area, DataTransport, ItemData, VarSpec
from simulators.faults import ActiveFault, PlantFaults
from simulators.host import SimHost
from simulators.opcua.frames import MESSAGES
from simulators.s7.frames import TPKT
from simulators.scenario import load_scenario

GUARD = 10.0  # the most a wait may take before the test fails (nothing hangs CI)

S7_PLANT = """
scenario: s7-frames
tags:
  valve: {type: uint16, init: 50, writable: true}
devices:
  cpu1: {protocol: s7, listen: 127.0.0.1:0, rack: 0, slot: 1, map: {valve: DB1.DBW0}}
"""


def _hello(url: str = "opc.tcp://127.0.0.1:4840/") -> bytes:
    """An OPC UA Hello message (Part 6, 7.1.2.3)."""
    endpoint = url.encode()
    body = struct.pack("<IIIII", 0, 65536, 65536, 0, 0) + struct.pack("<i", len(endpoint)) + endpoint
    return b"HELF" + struct.pack("<I", 8 + len(body)) + body


def _read_request(request_id: int) -> bytes:
    """A symmetric MSG chunk holding a ReadRequest's type id (ns=0;i=631), as a client sends one in None."""
    body = bytes([0x01, 0x00]) + (631).to_bytes(2, "little") + b"\x00" * 20
    header = struct.pack("<III", 7, 1, 5) + struct.pack("<I", request_id)  # channel, token, sequence, request
    return b"MSGF" + struct.pack("<I", 8 + len(header) + len(body)) + header + body


@pytest.mark.parametrize("framer", [TPKT, MESSAGES], ids=["tpkt", "opcua"])
@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_a_length_framer_cuts_whole_frames_and_never_changes_a_byte(framer: object, step: int) -> None:
    if framer is TPKT:
        frames = [framing.encode_tpkt(framing.encode_cotp_data(b"\x32\x01" + bytes(range(n)))) for n in (8, 20, 9)]
    else:
        frames = [_hello(), _read_request(9), _hello("opc.tcp://h/x")]
    stream = b"".join(frames)
    splitter = framer.splitter("requests")  # type: ignore[attr-defined]
    pieces = []
    for at in range(0, len(stream), step):
        pieces += splitter.feed(stream[at : at + step])
    assert b"".join(piece for piece, _ in pieces) == stream
    assert [frame for _, frame in pieces] == frames
    assert splitter.pending == 0


def test_bytes_that_are_no_frame_pass_unchanged_and_match_nothing() -> None:
    splitter = MESSAGES.splitter("requests")
    pieces = splitter.feed(b"GET / HTTP/1.1\r\n\r\n") + splitter.feed(_hello())
    assert b"".join(piece for piece, _ in pieces) == b"GET / HTTP/1.1\r\n\r\n" + _hello()
    assert all(frame is None for _, frame in pieces)  # the stream is broken: nothing is cut from it


def test_the_opcua_framer_names_the_service_and_pairs_by_request_id() -> None:
    request = _read_request(42)
    info = MESSAGES.info(request)
    assert info is not None and info.function == 629  # ReadRequest, as the traffic log counts it
    assert MESSAGES.info(_hello()) is None
    pairing = MESSAGES.pairing()
    pairing.request(request)
    reply = b"MSGF" + struct.pack("<I", 40) + struct.pack("<IIII", 7, 1, 6, 42) + b"\x01\x00" + b"\x00" * 14
    assert pairing.reply(reply) == request
    assert pairing.reply(reply) is None  # forgotten once answered


# --- S7, served -------------------------------------------------------------------------------------------


@pytest.fixture
def s7_host() -> Iterator[SimHost]:
    with SimHost(load_scenario(Path("s7-frames.yaml"), text=S7_PLANT), clock="virtual") as host:
        yield host


def _port(url: str) -> int:
    return int(url.split("//", 1)[1].split("?")[0].rsplit(":", 1)[1])


class S7Wire:
    """Raw S7 jobs on a plain socket, answers read back frame by frame."""

    def __init__(self, url: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", _port(url)), timeout=GUARD)
        self.conn = framing.ClientConnection(rack=0, slot=1)
        self.sock.sendall(self.conn.connect_request())
        assert isinstance(self.next_event(), framing.Connected)
        self.sock.sendall(self.conn.setup(480))
        assert isinstance(self.next_event(), framing.Ready)

    def next_event(self) -> framing.ClientEvent:
        while (event := self.conn.next_event()) is None:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("closed by the simulator")
            self.conn.receive_data(data)
        return event

    def nothing_waiting(self) -> bool:
        """Whether no byte (nor the end of the stream) has arrived."""
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(GUARD)
        return False


def _hits(host: SimHost, device: str) -> threading.Event:
    hit = threading.Event()
    hooks = host.hooks
    assert isinstance(hooks, PlantFaults)

    def heard(fault: ActiveFault) -> None:
        hit.set()

    hooks.device(device).on_hit(heard)
    return hit


def _settle(host: SimHost) -> None:
    async def turns() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    host.call(turns)


READ = pdu.ReadRequest((VarSpec(Area.DB, 0, 2, db=1),))
WRITE = pdu.WriteRequest((VarSpec(Area.DB, 0, 2, db=1),), (ItemData(0, DataTransport.BYTE, b"\x00\x07"),))


def test_an_s7_drop_matched_to_reads_loses_only_the_read_replies(s7_host: SimHost) -> None:
    wire = S7Wire(s7_host.url("cpu1"))
    hit = _hits(s7_host, "cpu1")
    with s7_host.inject_fault("cpu1", "drop", match={"function": 4}) as fault:  # 4: read var
        wire.sock.sendall(wire.conn.send(READ))
        assert hit.wait(GUARD)
        _settle(s7_host)
        assert wire.nothing_waiting()  # the read's reply was lost whole
        other = S7Wire(s7_host.url("cpu1"))  # the first still waits for its answer (max AmQ 1)
        other.sock.sendall(other.conn.send(WRITE))
        event = other.next_event()
        assert isinstance(event, framing.Response) and isinstance(event.response, pdu.WriteResponse)
        assert fault.hits == 1
    assert s7_host.plant.get("valve") == 7


def test_an_s7_corrupt_flips_the_bits_of_one_reply(s7_host: SimHost) -> None:
    wire = S7Wire(s7_host.url("cpu1"))
    job = wire.conn.send(READ)
    wire.sock.sendall(job)
    clean = wire.sock.recv(4096)
    with s7_host.inject_fault("cpu1", "corrupt", bits=3, count=1):
        wire.sock.sendall(job)  # the same reference again: the same answer, but for the fault
        damaged = wire.sock.recv(4096)
    assert len(damaged) == len(clean)
    assert sum(bin(a ^ b).count("1") for a, b in zip(clean, damaged, strict=True)) == 3
