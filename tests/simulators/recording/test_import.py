"""pcap/pcapng import: real loopback captures (tcpdump, tests/data/) and small ones built here."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bifrost.modbus import pdu
from bifrost.modbus.framing import encode_mbap, encode_rtu
from simulators.cli import app
from simulators.recording import load_cassette
from simulators.recording.importer import import_capture
from simulators.recording.pcap import CaptureError, read_capture

from .conftest import Conversation, write_pcap


def _decoded(entries: list, index: int) -> tuple[pdu.RequestPdu, pdu.ResponsePdu]:
    entry = entries[index]
    request = pdu.decode_request(entry.request)
    return request, pdu.decode_response(entry.response, request)


@pytest.mark.parametrize("name", ["modbus_tcp_sim.pcap", "modbus_tcp_sim.pcapng"])
def test_pymodbus_client_against_our_simulator(data: Path, name: str) -> None:
    cassette, report = import_capture(data / name)
    assert report.unanswered == report.unmatched == 0
    assert len(cassette) == 17
    assert {entry.unit for entry in cassette} == {1}
    assert [entry.transaction_id for entry in cassette] == sorted(entry.transaction_id for entry in cassette)
    request, response = _decoded(cassette.entries, 0)
    assert request == pdu.ReadHoldingRegistersRequest(0, 3)
    assert response == pdu.ReadHoldingRegistersResponse((0x4088, 0x0000, 1450))  # 4.25 as float32, 1450
    assert _decoded(cassette.entries, 1)[1] == pdu.ReadInputRegistersResponse((120, 0xFFF4))  # 120, -12
    request, response = _decoded(cassette.entries, 16)
    assert request == pdu.ReadHoldingRegistersRequest(40, 1)
    assert response == pdu.ExceptionResponse(3, pdu.ExceptionCode.ILLEGAL_DATA_ADDRESS)
    assert _decoded(cassette.entries, 14)[1] == pdu.ReadHoldingRegistersResponse((0x4088, 0, 1500))
    assert all(entry.latency is not None and entry.latency >= 0 for entry in cassette)
    assert cassette.entries[0].t == 0.0
    assert all(b.t >= a.t for a, b in zip(cassette.entries, cassette.entries[1:], strict=False))


def test_pcap_and_pcapng_read_the_same_packets(data: Path) -> None:
    pcap = read_capture(data / "modbus_tcp_sim.pcap")
    pcapng = read_capture(data / "modbus_tcp_sim.pcapng")
    assert (pcap.format, pcapng.format) == ("pcap", "pcapng")
    assert [p[2] for p in pcap.packets] == [p[2] for p in pcapng.packets]
    assert [p[0] for p in pcap.packets] == pytest.approx([p[0] for p in pcapng.packets], abs=1e-6)


def test_pymodbus_client_and_server_on_another_port(data: Path) -> None:
    cassette, report = import_capture(data / "modbus_tcp_pymodbus.pcap")
    assert len(cassette) == 17 and report.unanswered == 0
    assert cassette.devices() == ["127.0.0.1:15020"]
    assert _decoded(cassette.entries, 0)[1] == pdu.ReadHoldingRegistersResponse((425, 0, 1450))
    assert _decoded(cassette.entries, 16)[1].function == 3  # pymodbus refuses hr:40 too
    assert isinstance(_decoded(cassette.entries, 16)[1], pdu.ExceptionResponse)


def test_rtu_over_tcp_is_recognised(data: Path) -> None:
    cassette, report = import_capture(data / "modbus_rtu_over_tcp.pcap")
    assert [c.framing for c in report.connections] == ["rtu"]
    assert len(cassette) == 17 and report.unanswered == 0
    assert all(entry.transaction_id is None for entry in cassette)
    assert _decoded(cassette.entries, 0)[1] == pdu.ReadHoldingRegistersResponse((0x4088, 0x0000, 1450))


def test_a_capture_that_lost_packets_says_so_and_keeps_the_rest(data: Path) -> None:
    # Made on a busy machine: tcpdump lost two segments each way. Framing restarts after each gap.
    cassette, report = import_capture(data / "modbus_rtu_over_tcp_lossy.pcap")
    text = "\n".join(report.lines())
    assert "bytes missing from the capture" in text
    assert len(cassette) >= 13
    assert report.unanswered == report.unmatched  # each lost answer leaves one request and one answer alone
    for entry in cassette:
        request = pdu.decode_request(entry.request)
        if entry.response is None:
            continue
        assert pdu.response_mismatch(request, pdu.decode_response(entry.response, request)) is None


def test_a_public_capture_no_one_here_made(data: Path) -> None:
    # Zeek's test trace (BSD licence, tests/data/README.md): 16 connections, a write then a read each.
    cassette, report = import_capture(data / "zeek_modbus_small.pcap")
    assert len(report.connections) == 16 and len(cassette) == 16
    assert report.unanswered == report.unmatched == 0
    pattern = None
    for index in range(len(cassette)):
        request, response = _decoded(cassette.entries, index)
        if isinstance(request, pdu.WriteMultipleCoilsRequest):
            pattern = request.values
            assert response == pdu.WriteMultipleCoilsResponse(0, 3)
        else:
            assert request == pdu.ReadCoilsRequest(0, 3)
            assert response == pdu.ReadCoilsResponse(pattern)  # the device holds what was written


def test_pipelined_requests_pair_by_transaction_id(tmp_path: Path) -> None:
    talk = Conversation(("10.0.0.9", 40000), ("10.0.0.5", 1502))
    read_a = pdu.encode_request(pdu.ReadHoldingRegistersRequest(0, 1))
    read_b = pdu.encode_request(pdu.ReadHoldingRegistersRequest(10, 1))
    # Two requests in one segment; the answers come back in the other order, then a stray answer.
    talk.send("client", encode_mbap(7, 1, read_a) + encode_mbap(8, 1, read_b))
    talk.send("server", encode_mbap(8, 1, pdu.encode_response(pdu.ReadHoldingRegistersResponse((222,)))))
    talk.send("server", encode_mbap(7, 1, pdu.encode_response(pdu.ReadHoldingRegistersResponse((111,)))))
    talk.send("server", encode_mbap(99, 1, pdu.encode_response(pdu.ReadHoldingRegistersResponse((5,)))))
    talk.send("client", encode_mbap(9, 1, read_a))  # never answered
    cassette, report = import_capture(write_pcap(tmp_path / "pipelined.pcap", talk.packets))
    answers = {entry.transaction_id: entry.response for entry in cassette}
    assert answers[7] == pdu.encode_response(pdu.ReadHoldingRegistersResponse((111,)))
    assert answers[8] == pdu.encode_response(pdu.ReadHoldingRegistersResponse((222,)))
    assert answers[9] is None
    assert report.unanswered == 1 and report.unmatched == 1
    assert "transaction 99" in "\n".join(report.lines())
    assert cassette.devices() == ["10.0.0.5:1502"]


def test_retransmissions_and_reordering_are_undone(tmp_path: Path) -> None:
    talk = Conversation(("10.0.0.9", 40001), ("10.0.0.5", 502))
    frame = encode_mbap(1, 1, pdu.encode_request(pdu.ReadCoilsRequest(0, 8)))
    seq = talk.seq["client"]
    talk.send("client", frame[6:])  # the second part first ...
    talk.seq["client"] = seq
    talk.packets[-1] = (talk.time, talk.packets[-1][1])
    from .conftest import tcp_packet

    client, server = talk.ends["client"], talk.ends["server"]
    talk.packets[-1] = (talk.time, tcp_packet(client, server, seq + 6, frame[6:]))
    talk.packets.append((talk.time + 0.001, tcp_packet(client, server, seq, frame[:6])))  # ... then the first
    talk.packets.append((talk.time + 0.002, tcp_packet(client, server, seq, frame)))  # and all of it again
    talk.seq["client"] = seq + len(frame)
    talk.send("server", encode_mbap(1, 1, bytes((1, 1, 0b101))), at=talk.time + 0.01)
    cassette, report = import_capture(write_pcap(tmp_path / "reordered.pcap", talk.packets))
    assert len(cassette) == 1 and report.unanswered == 0
    assert pdu.decode_response(cassette.entries[0].response, pdu.ReadCoilsRequest(0, 8)) == pdu.ReadCoilsResponse(
        (True, False, True, False, False, False, False, False)
    )


def test_other_traffic_is_skipped_and_named(tmp_path: Path) -> None:
    web = Conversation(("10.0.0.9", 40002), ("10.0.0.7", 80))
    web.send("client", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    modbus = Conversation(("10.0.0.9", 40003), ("10.0.0.5", 5020), start=1000.5)
    modbus.send("client", encode_rtu(3, pdu.encode_request(pdu.WriteSingleRegisterRequest(4, 9))))
    modbus.send("server", encode_rtu(3, pdu.encode_response(pdu.WriteSingleRegisterResponse(4, 9))))
    path = write_pcap(tmp_path / "mixed.pcap", sorted(web.packets + modbus.packets), nanoseconds=True)
    cassette, report = import_capture(path)
    assert [c.framing for c in report.connections] == ["skipped", "rtu"]
    # Not any protocol known, which the report lists in a fixed order.
    assert "not Modbus, S7 or OPC UA: the client's first bytes are 47 45 54" in report.lines()[1]
    assert [(e.unit, e.device) for e in cassette] == [(3, "10.0.0.5:5020")]
    assert import_capture(path, ports=[80])[0].entries == []


def test_unreadable_captures_name_the_file_and_offset(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\x00" * 40)
    with pytest.raises(CaptureError, match=r"bad.pcap: offset 0: magic"):
        read_capture(bad)
    cut = tmp_path / "cut.pcap"
    whole = write_pcap(tmp_path / "whole.pcap", [(1.0, b"x" * 60), (2.0, b"y" * 60)]).read_bytes()
    cut.write_bytes(whole[:-10])
    capture = read_capture(cut)
    assert len(capture.packets) == 1 and "truncated" in capture.notes[0]


def test_pcapng_of_other_byte_order_and_resolution(tmp_path: Path) -> None:
    frame = b"z" * 64

    def block(kind: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        return struct.pack(">II", kind, 12 + len(body)) + body + struct.pack(">I", 12 + len(body))

    shb = block(0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack(">HHI", 1, 0, 65535) + struct.pack(">HHB", 9, 1, 9) + b"\x00" * 3 + b"\x00" * 4)
    stamp = 1_500_000_000_123_456_789  # nanoseconds (if_tsresol 9)
    epb = block(6, struct.pack(">IIIII", 0, stamp >> 32, stamp & 0xFFFFFFFF, len(frame), len(frame)) + frame)
    path = tmp_path / "big.pcapng"
    path.write_bytes(shb + idb + epb)
    capture = read_capture(path)
    assert capture.packets == [(pytest.approx(1_500_000_000.123456789), 1, frame)]


def test_import_command(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "zeek.jsonl"
    result = CliRunner().invoke(app, ["import", str(data / "zeek_modbus_small.pcap"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "16 exchange(s)" in result.output
    assert len(load_cassette(out)) == 16
    missing = CliRunner().invoke(app, ["import", str(tmp_path / "nope.pcap"), "-o", str(out)])
    assert missing.exit_code == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 101, 113, 276]), st.binary(max_size=120)), max_size=30))
def test_any_packets_import_without_raising(tmp_path_factory: pytest.TempPathFactory, packets: list) -> None:
    # Noise of every link type: packets are skipped and counted, never a crash.
    path = tmp_path_factory.mktemp("noise") / "noise.pcapng"
    blocks = [struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)]
    kinds = sorted({kind for kind, _ in packets})
    for kind in kinds:
        blocks.append(struct.pack("<IIHHI", 1, 20, kind, 0, 65535) + struct.pack("<I", 20))
    for index, (kind, data) in enumerate(packets):
        padded = data + b"\x00" * (-len(data) % 4)
        length = 32 + len(padded)
        head = struct.pack("<IIIIIII", 6, length, kinds.index(kind), 0, index, len(data), len(data))
        blocks.append(head + padded + struct.pack("<I", length))
    path.write_bytes(b"".join(blocks))
    cassette, report = import_capture(path)
    assert report.packets == len(packets)
    assert all(entry.protocol == "modbus" for entry in cassette)


def _relinked(path: Path, packets: list[tuple[float, bytes]], linktype: int) -> Path:
    """The Ethernet frames of `packets` under another link layer: Linux cooked (SLL, SLL2) or raw IPv4."""
    headers = {
        113: struct.pack(">HHH8sH", 0, 772, 6, b"", 0x0800),  # SLL: type, ARPHRD, address, protocol
        276: struct.pack(">HHIHBB8s", 0x0800, 0, 1, 772, 0, 6, b""),  # SLL2: protocol first
        228: b"",
    }
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for when, frame in packets:
        packet = headers[linktype] + frame[14:]
        seconds = int(when)
        out.append(struct.pack("<IIII", seconds, round((when - seconds) * 1e6), len(packet), len(packet)) + packet)
    path.write_bytes(b"".join(out))
    return path


@pytest.mark.parametrize("linktype", [113, 276, 228])
@pytest.mark.parametrize("split", [False, True])
def test_link_layers_and_segmentation_give_the_same_cassette(tmp_path: Path, linktype: int, split: bool) -> None:
    # Each link layer has its own fast path (or none); segments that are not one frame each are cut
    # as a stream. Every way must give the exchanges the plain Ethernet capture gives.
    talk = Conversation(("10.0.0.9", 40010), ("10.0.0.5", 502))
    for index in range(6):
        request = encode_mbap(index, 1, pdu.encode_request(pdu.ReadHoldingRegistersRequest(index, 2)))
        answer = encode_mbap(index, 1, pdu.encode_response(pdu.ReadHoldingRegistersResponse((index, 7 * index))))
        if split:  # a request in two segments, and an answer sent with its header apart
            talk.send("client", request[:3])
            talk.send("client", request[3:])
            talk.send("server", answer[:7])
            talk.send("server", answer[7:])
        else:
            talk.send("client", request)
            talk.send("server", answer)
    reference, _ = import_capture(write_pcap(tmp_path / "ethernet.pcap", talk.packets))
    cassette, report = import_capture(_relinked(tmp_path / "other.pcap", talk.packets, linktype))
    assert report.skipped_packets == {} and report.unanswered == report.unmatched == 0
    assert len(cassette) == 6
    assert [(e.transaction_id, e.request, e.response) for e in cassette] == [
        (e.transaction_id, e.request, e.response) for e in reference
    ]
    assert _decoded(cassette.entries, 5)[1] == pdu.ReadHoldingRegistersResponse((5, 35))
    assert [e.latency for e in cassette] == pytest.approx([e.latency for e in reference])
