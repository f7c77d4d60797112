"""A seeded fuzz of the Modbus simulator: random bytes and mutated valid frames from several clients at
once, on Modbus TCP and RTU over TCP, while a well-behaved client keeps reading correct values."""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from bifrost.modbus import framing, pdu
from simulators.host import SimHost

from .conftest import RIG, Wire, port_of, rig_scenario

# plc1 over Modbus TCP, and a copy of it (plc3, unit 3) over RTU over TCP
FUZZ = RIG + (
    "  plc3:\n    protocol: modbus\n    transport: rtu+tcp\n    listen: 127.0.0.1:0\n    unit: 3\n"
    "    map: {fixed: hr:5, temp: {address: ir:0, type: int16, scale: 0.1}, ready: di:0, speed: hr:4}\n"
)

VALID_PDUS = [
    pdu.encode_request(request)
    for request in (
        pdu.ReadCoilsRequest(0, 1),
        pdu.ReadDiscreteInputsRequest(0, 1),
        pdu.ReadHoldingRegistersRequest(0, 16),
        pdu.ReadInputRegistersRequest(0, 3),
        pdu.WriteSingleCoilRequest(0, True),
        pdu.WriteSingleRegisterRequest(4, 17),
        pdu.WriteMultipleCoilsRequest(0, (True,)),
        pdu.WriteMultipleRegistersRequest(0, (0x4148, 0)),
        pdu.MaskWriteRegisterRequest(10, 0xFFFE, 1),
        pdu.ReadWriteMultipleRegistersRequest(4, 2, 4, (9,)),
        pdu.ReadDeviceIdentificationRequest(1, 0),
        pdu.UnsupportedRequest(8, b"\x00\x00\x12\x34"),
    )
]
VALID_FRAMES = [framing.encode_mbap(7, unit, body) for body in VALID_PDUS for unit in (1, 2)] + [
    framing.encode_rtu(unit, body) for body in VALID_PDUS for unit in (0, 3)
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid frame with some bytes changed, then cut or extended."""
    frame = bytearray(draw(st.sampled_from(VALID_FRAMES)))
    for position, value in draw(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=3)):
        frame[position % len(frame)] = value
    cut = draw(st.integers(1, len(frame)))
    return bytes(frame[:cut]) + draw(st.binary(max_size=8))


CHUNKS = st.one_of(st.binary(min_size=1, max_size=260), mutated(), st.sampled_from(VALID_FRAMES))
ATTACKS = st.lists(st.lists(CHUNKS, min_size=1, max_size=6), min_size=2, max_size=4)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[SimHost]:
    with SimHost(rig_scenario(FUZZ), clock="virtual") as host:
        yield host


def _attack(port: int, chunks: list[bytes]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    for chunk in chunks:
        try:
            sock.sendall(chunk)
        except OSError:  # the simulator closed a stream it could no longer cut into frames
            break
    return sock


def _check_read_only_values(wire: Wire, unit: int) -> None:
    """Tags no client can write (the fuzz tries): their values must come back exactly."""
    assert wire.call(pdu.ReadHoldingRegistersRequest(5, 1), unit) == pdu.ReadHoldingRegistersResponse((7,))
    assert wire.call(pdu.ReadInputRegistersRequest(0, 1), unit) == pdu.ReadInputRegistersResponse((215,))
    assert wire.call(pdu.ReadDiscreteInputsRequest(0, 1), unit) == pdu.ReadDiscreteInputsResponse((True,))


@seed(20261122)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attacks=ATTACKS)
def test_malformed_traffic_from_several_clients_harms_no_one(
    fuzzed: SimHost, attacks: list[list[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="simulators")
    tcp, rtu = port_of(fuzzed.url("plc1")), port_of(fuzzed.url("plc3"))
    with Wire(fuzzed.url("plc1")) as good_tcp, Wire(fuzzed.url("plc3"), "rtu") as good_rtu:
        sockets = []
        try:
            for index, chunks in enumerate(attacks):
                sockets.append(_attack(tcp if index % 2 == 0 else rtu, chunks))
                # interleaved with the attacks: the well-behaved clients are served correctly throughout
                _check_read_only_values(good_tcp, 1)
                _check_read_only_values(good_rtu, 3)
        finally:
            for sock in sockets:
                sock.close()
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_the_simulator_survives_a_flood_of_noise(fuzzed: SimHost) -> None:
    noise = bytes(range(256)) * 8
    with Wire(fuzzed.url("plc3"), "rtu") as good:
        bad = _attack(port_of(fuzzed.url("plc3")), [noise, struct.pack(">H", 0xFFFF) * 300])
        _check_read_only_values(good, 3)
        bad.close()
    assert fuzzed.running
