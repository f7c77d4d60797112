"""A seeded fuzz of the S7 simulator: random bytes and mutated valid frames from several clients at
once, while a well-behaved client keeps reading correct values."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from bifrost.s7 import framing, pdu
from bifrost.s7.pdu import Area, DataTransport, ItemData, TransportSize, VarSpec
from simulators.host import SimHost
from simulators.scenario import load_scenario

PLANT = """
scenario: s7-fuzz
tags:
  fixed: {type: uint16, init: 7}
  level: {type: float32, init: 1.5, writable: true}
devices:
  cpu1:
    protocol: s7
    listen: 127.0.0.1:0
    map: {fixed: {address: DB1.DBW0, writable: false}, level: DB1.DBD2}
"""

_CR = framing.ClientConnection().connect_request()
_SETUP = framing.encode_tpkt(framing.encode_cotp_data(pdu.encode_request(1, pdu.SetupRequest(480))))
_JOBS = [
    pdu.ReadRequest((VarSpec(Area.DB, 0, 2, db=1), VarSpec(Area.FLAGS, 0, 4))),
    pdu.WriteRequest((VarSpec(Area.DB, 2, 4, db=1),), (ItemData(0, DataTransport.BYTE, b"\x3f\x80\x00\x00"),)),
    pdu.WriteRequest((VarSpec(Area.DB, 0, 1, TransportSize.BIT, 1, 3),), (ItemData(0, DataTransport.BIT, b"\x01"),)),
    pdu.SzlRequest(0x001C),
    pdu.PlcStopRequest(),
    pdu.PlcControlRequest(),
]
VALID = [_CR, _SETUP] + [framing.encode_tpkt(framing.encode_cotp_data(pdu.encode_request(2, job))) for job in _JOBS]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(VALID)))
    for position, value in draw(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=3)):
        frame[position % len(frame)] = value
    cut = draw(st.integers(1, len(frame)))
    return bytes(frame[:cut]) + draw(st.binary(max_size=8))


CHUNKS = st.one_of(st.binary(min_size=1, max_size=300), mutated(), st.sampled_from(VALID))
# Each attack starts as a client would (CR, setup) so that mutated jobs reach the S7 layer.
ATTACKS = st.lists(st.lists(CHUNKS, min_size=1, max_size=6).map(lambda c: [_CR, _SETUP, *c]), min_size=2, max_size=4)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[SimHost]:
    with SimHost(load_scenario(Path("s7-fuzz.yaml"), text=PLANT), clock="virtual") as host:
        yield host


def _port(host: SimHost) -> int:
    return int(host.url("cpu1").split("//")[1].split("?")[0].rsplit(":", 1)[1])


def _good_read(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        conn = framing.ClientConnection()
        sock.sendall(conn.connect_request())

        def event() -> framing.ClientEvent:
            while (found := conn.next_event()) is None:
                conn.receive_data(sock.recv(4096))
            return found

        assert isinstance(event(), framing.Connected)
        sock.sendall(conn.setup())
        assert isinstance(event(), framing.Ready)
        sock.sendall(conn.send(pdu.ReadRequest((VarSpec(Area.DB, 0, 2, db=1),))))
        answer = event()
        assert isinstance(answer, framing.Response)
        assert isinstance(answer.response, pdu.ReadResponse)
        return answer.response.items[0].data


@seed(20261202)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attacks=ATTACKS)
def test_malformed_traffic_from_several_clients_harms_no_one(
    fuzzed: SimHost, attacks: list[list[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="simulators")
    port = _port(fuzzed)
    sockets = []
    try:
        for chunks in attacks:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sockets.append(sock)
            for chunk in chunks:
                try:
                    sock.sendall(chunk)
                except OSError:
                    break
            assert _good_read(port) == b"\x00\x07"  # a tag no client may write, served right throughout
    finally:
        for sock in sockets:
            sock.close()
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert fuzzed.running
