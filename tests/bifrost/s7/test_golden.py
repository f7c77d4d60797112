"""Our codec held to the bytes of python-snap7's client and server, captured with tcpdump on loopback.

The captures (tests/data/s7/*.pcap, recorded by tests/data/s7/capture.py) are read here without
tcpdump: classic pcap, Ethernet, IPv4, TCP.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

import pytest

from bifrost.s7 import framing, pdu
from bifrost.s7.pdu import Area, TransportSize, VarSpec

DATA = Path(__file__).parents[2] / "data" / "s7"


class Segment(NamedTuple):
    from_client: bool
    payload: bytes


def segments(name: str) -> list[Segment]:
    """The TCP payloads of one capture in order; the client is the side that sent the first SYN."""
    raw = (DATA / f"{name}.pcap").read_bytes()
    magic = struct.unpack_from("<I", raw)[0]
    assert magic == 0xA1B2C3D4, f"{name}.pcap: not a little-endian microsecond pcap"
    position = 24
    client_port: int | None = None
    out: list[Segment] = []
    while position + 16 <= len(raw):
        included = struct.unpack_from("<IIII", raw, position)[2]
        packet = raw[position + 16 : position + 16 + included]
        position += 16 + included
        ip = packet[14:]
        header = (ip[0] & 0x0F) * 4
        total = struct.unpack_from(">H", ip, 2)[0]
        tcp = ip[header:total]
        source, _destination = struct.unpack_from(">HH", tcp)
        flags = tcp[13]
        if client_port is None and flags & 0x02 and not flags & 0x10:  # SYN without ACK
            client_port = source
        payload = tcp[(tcp[12] >> 4) * 4 :]
        if payload:
            out.append(Segment(source == client_port, bytes(payload)))
    return out


def names() -> list[str]:
    return sorted(path.stem for path in DATA.glob("*.pcap"))


def pdus(name: str) -> list[tuple[bool, bytes]]:
    """The S7 PDUs of a capture in order (from_client, pdu); COTP connect and disconnect TPDUs too,
    marked by their code in place of a PDU."""
    framers = {True: framing.TpktFramer(), False: framing.TpktFramer()}
    out = []
    for segment in segments(name):
        for tpdu in framers[segment.from_client].feed(segment.payload):
            assert isinstance(tpdu, bytes)
            out.append((segment.from_client, tpdu))
    return out


@pytest.mark.parametrize("name", names())
def test_every_captured_pdu_decodes_and_encodes_back_to_the_same_bytes(name: str) -> None:
    seen = 0
    for from_client, tpdu in pdus(name):
        cotp = framing.decode_cotp(tpdu)
        if cotp.code != framing.DT:
            continue
        seen += 1
        if from_client:
            reference, request = pdu.decode_request(cotp.data)
            assert pdu.encode_request(reference, request) == cotp.data, request
        else:
            reference, response = pdu.decode_response(cotp.data)
            assert pdu.encode_response(reference, response) == cotp.data, response
    assert seen >= 2


DB, MK = Area.DB, Area.FLAGS
# What python-snap7's client asked for in each capture, as our requests.
ASKED: dict[str, list[pdu.RequestPdu]] = {
    "setup_communication": [],
    "db_read": [pdu.ReadRequest((VarSpec(DB, 2, 6, db=1),))],
    "db_write": [
        pdu.WriteRequest((VarSpec(DB, 4, 3, db=1),), (pdu.ItemData(0, pdu.DataTransport.BYTE, b"\x12\x34\x56"),))
    ],
    "write_bit": [
        pdu.WriteRequest(
            (VarSpec(DB, 1, 1, TransportSize.BIT, db=2, bit=3),), (pdu.ItemData(0, pdu.DataTransport.BIT, b"\x01"),)
        )
    ],
    "read_multi_vars": [
        pdu.ReadRequest((VarSpec(MK, 2, 2), VarSpec(DB, 0, 3, db=1), VarSpec(DB, 4, 4, db=2))),
    ],
    "read_szl": [pdu.SzlRequest(0x0011), pdu.SzlRequest(0x001C)],
    "plc_stop_start": [pdu.PlcStopRequest(), pdu.PlcControlRequest(), pdu.PlcControlRequest(argument=b"C ")],
    "errors": [
        pdu.ReadRequest((VarSpec(DB, 0, 4, db=9),)),
        pdu.ReadRequest((VarSpec(DB, 30, 8, db=1),)),
        pdu.WriteRequest((VarSpec(DB, 30, 4, db=1),), (pdu.ItemData(0, pdu.DataTransport.BYTE, bytes(4)),)),
        pdu.SzlRequest(0x0424),
    ],
}


@pytest.mark.parametrize("name", sorted(ASKED))
def test_our_client_sends_what_snap7s_client_sent_and_takes_its_servers_answers(name: str) -> None:
    """Our ClientConnection, asked the same things, writes python-snap7's bytes exactly, and takes
    each of its server's answers (fed one byte at a time) as the answer to the right request."""
    captured = pdus(name)
    client_side = [tpdu for from_client, tpdu in captured if from_client]
    server_side = [tpdu for from_client, tpdu in captured if not from_client]
    reference_offset = {"read_multi_vars": 1}.get(name, 0)  # snap7 used a PDU reference on its own before
    conn = framing.ClientConnection(rack=0, slot=1, first_reference=1)
    sent = [conn.connect_request()]
    answers: list[framing.ClientEvent] = []

    def take(tpdu: bytes) -> None:
        for byte in framing.encode_tpkt(tpdu):
            conn.receive_data(bytes((byte,)))
        while (event := conn.next_event()) is not None:
            answers.append(event)

    take(server_side[0])
    assert isinstance(answers[-1], framing.Connected)
    sent.append(conn.setup(480, 1))
    take(server_side[1])
    assert answers[-1] == framing.Ready(480, 1, 1)
    for index, request in enumerate(ASKED[name]):
        if reference_offset:
            conn._next += reference_offset
        sent.append(conn.send(request))
        take(server_side[2 + index])
        event = answers[-1]
        assert isinstance(event, framing.Response), event
        assert event.request == request
    sent.append(conn.disconnect_request())
    expected = [framing.encode_tpkt(tpdu) for tpdu in client_side]
    # snap7 pads its disconnect request with a byte; the TPDUs before it must match exactly.
    assert sent[:-1] == expected[:-1]
    assert framing.decode_cotp(client_side[-1]).code == framing.DR
