"""Modbus framing and connection state machines, byte by byte, with no sockets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bifrost.errors import ConfigError
from bifrost.modbus.framing import (
    AWAITING_REPLY,
    DRAINING,
    IDLE,
    BadRequest,
    BrokenStream,
    ClientConnection,
    DamagedFrame,
    Frame,
    MalformedReply,
    MbapFramer,
    MismatchedReply,
    Request,
    Response,
    RtuFramer,
    ServerConnection,
    StaleReply,
    StateError,
    UnexpectedReply,
    crc16,
    encode_mbap,
    encode_rtu,
)
from bifrost.modbus.pdu import (
    ExceptionCode,
    ExceptionResponse,
    LimitError,
    MaskWriteRegisterRequest,
    MaskWriteRegisterResponse,
    ReadCoilsRequest,
    ReadCoilsResponse,
    ReadDeviceIdentificationRequest,
    ReadDeviceIdentificationResponse,
    ReadDiscreteInputsRequest,
    ReadDiscreteInputsResponse,
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    ReadWriteMultipleRegistersRequest,
    ReadWriteMultipleRegistersResponse,
    RequestPdu,
    ResponsePdu,
    UnsupportedRequest,
    UnsupportedResponse,
    WriteMultipleCoilsRequest,
    WriteMultipleCoilsResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleCoilRequest,
    WriteSingleCoilResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
    encode_request,
    encode_response,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def one_at_a_time(feed: Any, data: bytes) -> list[Any]:
    """Every event of a framer fed `data` one byte per call."""
    events: list[Any] = []
    for index in range(len(data)):
        events += feed(data[index : index + 1])
    return events


def trickle(receive: Any, data: bytes) -> None:
    """A connection's receive_data, one byte per call."""
    for index in range(len(data)):
        receive(data[index : index + 1])


def answer(request: RequestPdu) -> ResponsePdu:
    """A valid answer to any request, as a well-behaved device would give."""
    if isinstance(request, ReadCoilsRequest):
        return ReadCoilsResponse(tuple(i % 3 == 0 for i in range(request.count)))
    if isinstance(request, ReadDiscreteInputsRequest):
        return ReadDiscreteInputsResponse(tuple(i % 2 == 0 for i in range(request.count)))
    if isinstance(request, ReadHoldingRegistersRequest):
        return ReadHoldingRegistersResponse(tuple(range(request.address, request.address + request.count)))
    if isinstance(request, ReadInputRegistersRequest):
        return ReadInputRegistersResponse(tuple(range(request.count)))
    if isinstance(request, WriteSingleCoilRequest):
        return WriteSingleCoilResponse(request.address, request.value)
    if isinstance(request, WriteSingleRegisterRequest):
        return WriteSingleRegisterResponse(request.address, request.value)
    if isinstance(request, WriteMultipleCoilsRequest):
        return WriteMultipleCoilsResponse(request.address, len(request.values))
    if isinstance(request, WriteMultipleRegistersRequest):
        return WriteMultipleRegistersResponse(request.address, len(request.values))
    if isinstance(request, MaskWriteRegisterRequest):
        return MaskWriteRegisterResponse(request.address, request.and_mask, request.or_mask)
    if isinstance(request, ReadWriteMultipleRegistersRequest):
        return ReadWriteMultipleRegistersResponse((7,) * request.read_count)
    if isinstance(request, ReadDeviceIdentificationRequest):
        return ReadDeviceIdentificationResponse(request.read_code, 0x81, False, 0, ((0, b"Bifrost"), (1, b"SIM")))
    return ExceptionResponse(request.function, ExceptionCode.ILLEGAL_FUNCTION)


SAMPLE_REQUESTS: list[RequestPdu] = [
    ReadCoilsRequest(19, 19),
    ReadDiscreteInputsRequest(196, 22),
    ReadHoldingRegistersRequest(107, 3),
    ReadInputRegistersRequest(8, 1),
    WriteSingleCoilRequest(172, True),
    WriteSingleRegisterRequest(1, 3),
    WriteMultipleCoilsRequest(19, (True, False) * 5),
    WriteMultipleRegistersRequest(1, (0x000A, 0x0102)),
    MaskWriteRegisterRequest(4, 0x00F2, 0x0025),
    ReadWriteMultipleRegistersRequest(3, 6, 14, (0x00FF, 0x00FF, 0x00FF)),
    ReadDeviceIdentificationRequest(1, 0),
    UnsupportedRequest(0x41, b"\x01\x02"),
    UnsupportedRequest(8, h("0000 A537")),  # diagnostics: public, so RTU knows its length
]


# ----------------------------------------------------------------------------------------------- CRC


@pytest.mark.parametrize(
    ("data", "crc"),
    [
        ("01 03 0000 000A", "C5 CD"),  # a read of 10 registers from unit 1
        ("11 03 006B 0003", "76 87"),  # the serial line guide's example (unit 17)
        ("01 03 006B 0003", "74 17"),
        (b"123456789".hex(), "37 4B"),  # CRC-16/MODBUS's check value 0x4B37, low byte first
    ],
)
def test_crc_golden_vectors(data: str, crc: str) -> None:
    assert crc16(h(data)).to_bytes(2, "little") == h(crc)
    assert encode_rtu(h(data)[0], h(data)[1:]) == h(data) + h(crc)


def test_crc_of_nothing_is_the_initial_value() -> None:
    assert crc16(b"") == 0xFFFF


def test_mbap_encoding() -> None:
    # Transaction 1, protocol 0, length 6 (unit + 5-byte PDU), unit 0x11.
    assert encode_mbap(1, 0x11, h("03 006B 0003")) == h("0001 0000 0006 11 03 006B 0003")
    assert encode_mbap(0xFFFF, 0, h("83 02")) == h("FFFF 0000 0003 00 83 02")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: encode_mbap(65536, 1, b"\x03"), "transaction_id"),
        (lambda: encode_mbap(-1, 1, b"\x03"), "transaction_id"),
        (lambda: encode_mbap(1, 256, b"\x03"), "unit"),
        (lambda: encode_rtu(-1, b"\x03"), "unit"),
        (lambda: encode_rtu(1, b""), "pdu"),
        (lambda: encode_rtu(1, bytes(254)), "pdu"),
    ],
)
def test_frame_encoding_limits(call: Any, field: str) -> None:
    with pytest.raises(LimitError) as caught:
        call()
    assert caught.value.field == field


# ---------------------------------------------------------------------------------------------- MBAP


def test_mbap_one_byte_at_a_time() -> None:
    stream = encode_mbap(1, 17, h("03 006B 0003")) + encode_mbap(2, 1, h("83 02")) + encode_mbap(3, 255, b"\x11")
    framer = MbapFramer()
    assert one_at_a_time(framer.feed, stream) == [
        Frame(17, h("03 006B 0003"), 1),
        Frame(1, h("83 02"), 2),
        Frame(255, b"\x11", 3),
    ]


def test_mbap_whole_stream_at_once() -> None:
    frames = [encode_mbap(i, 1, encode_request(r)) for i, r in enumerate(SAMPLE_REQUESTS)]
    assert MbapFramer().feed(b"".join(frames)) == [
        Frame(1, encode_request(r), i) for i, r in enumerate(SAMPLE_REQUESTS)
    ]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("0001 0001 0006", "protocol id 1 (Modbus is 0)"),
        ("0001 0000 0001", "length 1 (unit + PDU is 2..254)"),
        ("0001 0000 0000", "length 0"),
        ("0001 0000 00FF", "length 255"),
        ("4745 5420 2F20", "protocol id 21536"),  # "GET / " : someone speaks HTTP to us
    ],
)
def test_mbap_bad_header_breaks_the_stream(header: str, reason: str) -> None:
    framer = MbapFramer()
    good = encode_mbap(7, 1, h("03 0000 0001"))
    events = one_at_a_time(framer.feed, good + h(header) + b"\x01\x03")
    assert events[0] == Frame(1, h("03 0000 0001"), 7)
    assert len(events) == 2
    broken = events[1]
    assert isinstance(broken, BrokenStream)
    assert reason in broken.reason
    assert framer.broken is broken
    assert framer.feed(good) == []  # reported once; nothing after it is trusted


# ----------------------------------------------------------------------------------------------- RTU

SAMPLE_RESPONSES: list[ResponsePdu] = [answer(r) for r in SAMPLE_REQUESTS] + [
    ExceptionResponse(3, ExceptionCode.ILLEGAL_DATA_ADDRESS),
    UnsupportedResponse(8, h("0000 A537")),  # diagnostics echo
    UnsupportedResponse(7, h("6D")),  # read exception status
    UnsupportedResponse(11, h("FFFF 0108")),  # comm event counter
    UnsupportedResponse(17, h("02 01 FF")),  # report server id
    UnsupportedResponse(24, h("0006 0002 01B8 1284")),  # FIFO queue: a 2-byte byte count
    UnsupportedResponse(0x41, h("0102 0304")),  # a vendor's: found by its CRC
    UnsupportedResponse(43, h("0D 00 01")),  # MEI 13: found by its CRC
]


def test_rtu_requests_one_byte_at_a_time() -> None:
    stream = b"".join(encode_rtu(unit, encode_request(r)) for unit, r in enumerate(SAMPLE_REQUESTS, start=1))
    framer = RtuFramer("requests")
    assert one_at_a_time(framer.feed, stream) == [
        Frame(unit, encode_request(r)) for unit, r in enumerate(SAMPLE_REQUESTS, start=1)
    ]
    assert framer.discarded == 0


def test_rtu_responses_one_byte_at_a_time() -> None:
    stream = b"".join(encode_rtu(9, encode_response(r)) for r in SAMPLE_RESPONSES)
    framer = RtuFramer("responses")
    assert one_at_a_time(framer.feed, stream) == [Frame(9, encode_response(r)) for r in SAMPLE_RESPONSES]


def test_rtu_spec_frame() -> None:
    framer = RtuFramer("requests")
    assert framer.feed(h("11 03 006B 0003 7687")) == [Frame(0x11, h("03 006B 0003"))]


def test_rtu_damaged_frame_is_reported_and_skipped() -> None:
    good = encode_rtu(1, h("03 006B 0003"))
    bad = bytearray(encode_rtu(1, h("03 006B 0004")))
    bad[-1] ^= 0x55  # a CRC that does not match
    framer = RtuFramer("requests")
    events = one_at_a_time(framer.feed, good + bytes(bad) + good + good)
    assert events == [
        Frame(1, h("03 006B 0003")),
        DamagedFrame(bytes(bad), "CRC mismatch in a 8-byte frame"),
        Frame(1, h("03 006B 0003")),
        Frame(1, h("03 006B 0003")),
    ]
    assert framer.discarded == len(bad)


def test_rtu_noise_before_a_frame() -> None:
    good = encode_rtu(1, h("04 0000 0002"))
    for noise in (h("00"), h("FF FF"), h("01 00 00"), h("07 90 90 90 90")):
        framer = RtuFramer("requests")
        events = framer.feed(noise + good)
        assert isinstance(events[0], DamagedFrame)
        assert events[1:] == [Frame(1, h("04 0000 0002"))]
        assert framer.discarded == len(noise)


def test_rtu_resync_does_not_wait_for_a_long_false_frame() -> None:
    # After damage, "01 10 .. .. .. .. F0" looks like a 249-byte write; the real frame behind it is
    # already whole, so the framer takes it instead of waiting for 249 bytes.
    good = encode_rtu(1, h("03 0000 0001"))
    framer = RtuFramer("requests")
    events = framer.feed(h("00") + h("01 10 0000 0078 F0") + good)
    assert isinstance(events[0], DamagedFrame)
    assert events[1:] == [Frame(1, h("03 0000 0001"))]


def test_rtu_unknown_function_is_found_by_crc_or_given_up() -> None:
    custom = encode_rtu(1, h("41 0102 0304"))
    framer = RtuFramer("requests")
    assert one_at_a_time(framer.feed, custom) == [Frame(1, h("41 0102 0304"))]
    # Noise with an unknown function code in front of a known frame: the frame is taken.
    good = encode_rtu(1, h("06 0001 0003"))
    events = framer.feed(h("01 41 99 98") + good)
    assert isinstance(events[0], DamagedFrame)
    assert events[0].reason == "bytes before a valid frame"
    assert events[1:] == [Frame(1, h("06 0001 0003"))]
    # No CRC ever matches: given up at the longest frame RTU allows, then resynchronised.
    framer = RtuFramer("requests")
    junk = bytes([1, 0x41]) + bytes([0x41]) * 300
    events = framer.feed(junk)
    assert len(events) == 1
    assert isinstance(events[0], DamagedFrame)
    assert "no CRC matches within 256 bytes" in events[0].reason
    assert framer.feed(good) == [Frame(1, h("06 0001 0003"))]


@pytest.mark.parametrize(
    ("expect", "noise", "reason"),
    [
        ("requests", "01 00", "function code 0 cannot start a request frame"),
        ("requests", "01 83", "function code 131 cannot start a request frame"),
        ("responses", "01 80", "function code 128 cannot start a response frame"),
        ("requests", "01 10 0000 007F FE", "function code 16 cannot start a request frame of at most 256"),
        ("responses", "01 2B 0E 01 01 00 00 02 00 FF" + "00" * 255 + "01 02", "function code 43"),
    ],
)
def test_rtu_impossible_starts(expect: Any, noise: str, reason: str) -> None:
    framer = RtuFramer(expect)
    events = framer.feed(h(noise))
    assert isinstance(events[0], DamagedFrame)
    assert reason in events[0].reason


def test_rtu_silence_ends_an_unfinished_frame() -> None:
    framer = RtuFramer("responses")
    assert framer.feed(h("01 03 04 00 01")) == []
    assert framer.silence() == [DamagedFrame(h("01 03 04 00 01"), "unfinished frame of 5 bytes at a silence")]
    assert framer.silence() == []
    assert framer.feed(encode_rtu(1, h("03 02 0001"))) == [Frame(1, h("03 02 0001"))]
    # The tail of a run of damage is not reported twice.
    assert len(framer.feed(h("01 00 01 03 04 00"))) == 1
    assert framer.silence() == []
    assert framer.feed(encode_rtu(1, h("83 02"))) == [Frame(1, h("83 02"))]


def test_rtu_unknown_function_while_resyncing_is_skipped() -> None:
    framer = RtuFramer("responses")
    good = encode_rtu(1, h("83 02"))
    events = framer.feed(h("01 00") + encode_rtu(1, h("41 01")) + good)
    # The vendor frame right after damage is not trusted: only known shapes end a resync.
    assert isinstance(events[0], DamagedFrame)
    assert events[-1] == Frame(1, h("83 02"))
    assert Frame(1, h("41 01")) not in events


def test_rtu_framer_arguments() -> None:
    with pytest.raises(ConfigError, match="'requests' or 'responses'"):
        RtuFramer("both")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'mbap' or 'rtu'"):
        ClientConnection("ascii")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- framers under fuzz

_chunk_sizes = st.lists(st.integers(1, 40), min_size=1, max_size=50)


def chunks(data: bytes, sizes: Sequence[int]) -> Iterable[bytes]:
    start, index = 0, 0
    while start < len(data):
        size = sizes[index % len(sizes)]
        yield data[start : start + size]
        start += size
        index += 1


@settings(max_examples=150)
@given(st.binary(max_size=600), _chunk_sizes)
def test_random_streams_give_only_events(data: bytes, sizes: list[int]) -> None:
    mbap = MbapFramer()
    rtu_requests = RtuFramer("requests")
    rtu_responses = RtuFramer("responses")
    for chunk in chunks(data, sizes):
        for tcp_event in mbap.feed(chunk):
            assert isinstance(tcp_event, (Frame, BrokenStream))
        for framer in (rtu_requests, rtu_responses):
            for event in framer.feed(chunk):
                assert isinstance(event, (Frame, DamagedFrame))
                if isinstance(event, Frame):
                    assert 1 <= len(event.pdu) <= 253
    # After a silence, whatever came before, a good frame is read.
    for framer, pdu in ((rtu_requests, h("03 0000 0001")), (rtu_responses, h("83 02"))):
        for event in framer.silence():
            assert isinstance(event, (Frame, DamagedFrame))
        assert framer.feed(encode_rtu(1, pdu)) == [Frame(1, pdu)]


@settings(max_examples=100)
@given(st.lists(st.sampled_from(range(len(SAMPLE_REQUESTS))), min_size=1, max_size=12), _chunk_sizes)
def test_frames_survive_any_split(picks: list[int], sizes: list[int]) -> None:
    pdus = [encode_request(SAMPLE_REQUESTS[i]) for i in picks]
    mbap, rtu = MbapFramer(), RtuFramer("requests")
    tcp_stream = b"".join(encode_mbap(n, 1, pdu) for n, pdu in enumerate(pdus))
    tcp_events = [event for chunk in chunks(tcp_stream, sizes) for event in mbap.feed(chunk)]
    assert tcp_events == [Frame(1, pdu, n) for n, pdu in enumerate(pdus)]
    rtu_stream = b"".join(encode_rtu(1, pdu) for pdu in pdus)
    rtu_events = [event for chunk in chunks(rtu_stream, sizes) for event in rtu.feed(chunk)]
    assert rtu_events == [Frame(1, pdu) for pdu in pdus]


# After damage only frames of a known shape end the resync (a vendor's function code cannot).
def has_shape(pdu: bytes) -> bool:
    return pdu[0] != 0x41 and not (pdu[0] == 43 and pdu[1] != 0x0E)


SHAPED = [i for i, r in enumerate(SAMPLE_RESPONSES) if has_shape(encode_response(r))]


@settings(max_examples=100)
@given(
    st.lists(st.sampled_from(SHAPED), min_size=2, max_size=8),
    st.data(),
    _chunk_sizes,
)
def test_rtu_resyncs_after_a_corrupted_byte(picks: list[int], data: st.DataObject, sizes: list[int]) -> None:
    frames = [encode_rtu(1, encode_response(SAMPLE_RESPONSES[i])) for i in picks]
    victim = data.draw(st.integers(0, len(frames) - 1))
    position = data.draw(st.integers(0, len(frames[victim]) - 1))
    flip = data.draw(st.integers(1, 255))
    damaged = bytearray(frames[victim])
    damaged[position] ^= flip
    stream = b"".join(bytes(damaged) if i == victim else frame for i, frame in enumerate(frames))
    framer = RtuFramer("responses")
    events = [event for chunk in chunks(stream, sizes) for event in framer.feed(chunk)]
    events += framer.silence()
    assert any(isinstance(event, DamagedFrame) for event in events)
    got = iter([event.pdu for event in events if isinstance(event, Frame)])
    # Every undamaged frame after the damage still arrives, in order (a spurious one may slip in).
    for i, frame in enumerate(frames):
        if i > victim:
            assert frame[1:-2] in got


# -------------------------------------------------------------------------------- client and server


def exchange(client: ClientConnection, server: ServerConnection, request: RequestPdu, **send: Any) -> Any:
    server.receive_data(client.send(request, **send))
    event = server.next_event()
    assert isinstance(event, Request)
    client.receive_data(server.send(answer(event.request)))
    return client.next_event()


@pytest.mark.parametrize("framing", ["mbap", "rtu"])
def test_pair_every_function(framing: Any) -> None:
    client, server = ClientConnection(framing, unit=17), ServerConnection(framing)
    for request in SAMPLE_REQUESTS:
        event = exchange(client, server, request)
        assert event == Response(client.last_transaction_id or 0, 17, request, answer(request))
    assert client.next_event() is None
    assert server.next_event() is None
    assert client.pending == {}
    assert client.line_state == IDLE


def test_pair_one_byte_at_a_time() -> None:
    for framing in ("mbap", "rtu"):
        client, server = ClientConnection(framing), ServerConnection(framing)
        request = ReadWriteMultipleRegistersRequest(3, 6, 14, (1, 2, 3))
        trickle(server.receive_data, client.send(request))
        event = server.next_event()
        assert isinstance(event, Request)
        assert event.request == request
        trickle(client.receive_data, server.send(answer(request)))
        assert client.next_event() == Response(client.last_transaction_id or 0, 1, request, answer(request))


def test_mbap_pipelined_requests_answered_out_of_order() -> None:
    client, server = ClientConnection(), ServerConnection()
    sent = [ReadHoldingRegistersRequest(i, 1) for i in range(5)]
    server.receive_data(b"".join(client.send(request) for request in sent))
    assert list(client.pending) == [1, 2, 3, 4, 5]
    received = [server.next_event() for _ in sent]
    assert [event.transaction_id for event in received if isinstance(event, Request)] == [1, 2, 3, 4, 5]
    replies = b"".join(
        server.send(answer(event.request), to=event) for event in reversed(received) if isinstance(event, Request)
    )
    client.receive_data(replies)
    for transaction_id in (5, 4, 3, 2, 1):
        event = client.next_event()
        assert isinstance(event, Response)
        assert event.transaction_id == transaction_id
        assert event.request == sent[transaction_id - 1]
        assert event.response == ReadHoldingRegistersResponse((transaction_id - 1,))


def test_transaction_ids_wrap_at_16_bits() -> None:
    client = ClientConnection(first_transaction_id=0xFFFE)
    ids = []
    for _ in range(4):
        frame = client.send(ReadCoilsRequest(0, 1))
        ids.append(int.from_bytes(frame[:2], "big"))
        assert ids[-1] == client.last_transaction_id
    assert ids == [0xFFFE, 0xFFFF, 0, 1]


def test_transaction_ids_skip_outstanding_and_abandoned() -> None:
    client = ClientConnection(first_transaction_id=0xFFFE, remember_abandoned=0x10000)
    request = ReadCoilsRequest(0, 1)
    client.send(request)  # 65534 stays outstanding
    client.send(request)  # 65535 is abandoned
    client.abandon(0xFFFF)
    given_out = []
    for _ in range(0x10000 - 2):
        client.send(request)
        assert client.last_transaction_id is not None
        given_out.append(client.last_transaction_id)
        client.abandon(client.last_transaction_id)
    assert given_out == list(range(0xFFFE))  # wrapped, and never reused an id in play
    with pytest.raises(StateError, match="65536 transaction ids"):
        client.send(request)


def test_timed_out_request_late_reply_is_stale_and_never_matched() -> None:
    client, server = ClientConnection(), ServerConnection()
    first = ReadHoldingRegistersRequest(0, 2)
    server.receive_data(client.send(first))
    first_id = client.last_transaction_id
    assert first_id is not None
    assert client.abandon(first_id)  # the caller's timeout fired
    assert client.abandon(first_id) is False
    second = ReadHoldingRegistersRequest(0, 2)  # the same question, so a mix-up would look right
    server.receive_data(client.send(second))
    late = server.next_event()
    fresh = server.next_event()
    assert isinstance(late, Request)
    assert isinstance(fresh, Request)
    client.receive_data(server.send(ReadHoldingRegistersResponse((1, 1)), to=late))
    client.receive_data(server.send(ReadHoldingRegistersResponse((2, 2)), to=fresh))
    stale = client.next_event()
    assert stale == StaleReply(first_id, 1, first, h("03 04 0001 0001"))
    assert client.next_event() == Response(first_id + 1, 1, second, ReadHoldingRegistersResponse((2, 2)))
    # A duplicate of the late reply is still stale.
    client.receive_data(encode_mbap(first_id, 1, h("03 04 0001 0001")))
    assert isinstance(client.next_event(), StaleReply)


def test_abandon_turns_a_received_but_untaken_reply_stale() -> None:
    client, server = ClientConnection(), ServerConnection()
    request = ReadCoilsRequest(0, 3)
    server.receive_data(client.send(request))
    client.receive_data(server.send(answer(request)))
    other = client.send(WriteSingleRegisterRequest(0, 1))
    assert client.abandon(1)  # the timeout won the race against next_event
    assert client.next_event() == StaleReply(1, 1, request, h("01 01 01"))
    assert client.pending == {2: WriteSingleRegisterRequest(0, 1)}
    assert other
    assert client.abandon() is True  # everything
    assert client.pending == {}
    assert client.abandon() is False


def test_abandon_leaves_other_events_alone() -> None:
    client, server = ClientConnection(), ServerConnection()
    kept = ReadCoilsRequest(0, 1)
    server.receive_data(client.send(kept) + client.send(ReadCoilsRequest(1, 1)))
    client.receive_data(server.send(answer(kept)) + h("0009 0000 0003 01 83 02"))
    assert client.abandon(2)
    assert client.next_event() == Response(1, 1, kept, answer(kept))
    assert client.next_event() == UnexpectedReply(9, 1, h("83 02"))


def test_abandoned_transactions_are_remembered_for_a_while() -> None:
    client = ClientConnection(remember_abandoned=2)
    for _ in range(3):
        client.send(ReadCoilsRequest(0, 1))
    client.abandon()
    client.receive_data(b"".join(encode_mbap(tid, 1, h("01 01 01")) for tid in (1, 2, 3)))
    # The oldest is forgotten: its reply no longer tells stale from unexpected.
    assert isinstance(client.next_event(), UnexpectedReply)
    assert isinstance(client.next_event(), StaleReply)
    assert isinstance(client.next_event(), StaleReply)


def test_unexpected_replies() -> None:
    client = ClientConnection()
    client.receive_data(encode_mbap(99, 1, h("03 02 0001")))
    assert client.next_event() == UnexpectedReply(99, 1, h("03 02 0001"))
    rtu = ClientConnection("rtu")
    rtu.receive_data(encode_rtu(1, h("03 02 0001")))
    assert rtu.next_event() == UnexpectedReply(None, 1, h("03 02 0001"))


@pytest.mark.parametrize("framing", ["mbap", "rtu"])
@pytest.mark.parametrize(
    ("unit", "pdu", "reason"),
    [
        (2, "03 02 0001", "asked unit 1, answered by unit 2"),
        (1, "04 02 0001", "asked read holding registers (3), answered read input registers (4)"),
        (1, "03 04 0001 0002", "asked for 1 registers, got 2"),
    ],
)
def test_mismatched_replies_end_the_transaction(framing: Any, unit: int, pdu: str, reason: str) -> None:
    client = ClientConnection(framing)
    request = ReadHoldingRegistersRequest(0, 1)
    client.send(request)
    tid = client.last_transaction_id
    assert tid is not None
    client.receive_data(encode_mbap(tid, unit, h(pdu)) if framing == "mbap" else encode_rtu(unit, h(pdu)))
    event = client.next_event()
    assert isinstance(event, MismatchedReply)
    assert (event.transaction_id, event.unit, event.request, event.reason) == (tid, unit, request, reason)
    assert client.pending == {}
    if framing == "rtu":
        # The real answer may still come: the line drains until quiet.
        assert client.line_state == DRAINING


@pytest.mark.parametrize("framing", ["mbap", "rtu"])
def test_malformed_reply_ends_the_transaction(framing: Any) -> None:
    client = ClientConnection(framing)
    request = ReadHoldingRegistersRequest(0, 1)
    client.send(request)
    tid = client.last_transaction_id
    assert tid is not None
    pdu = h("03 03 0001 02")  # an odd byte count
    client.receive_data(encode_mbap(tid, 1, pdu) if framing == "mbap" else encode_rtu(1, pdu))
    event = client.next_event()
    assert isinstance(event, MalformedReply)
    assert (event.transaction_id, event.request, event.pdu) == (tid, request, pdu)
    assert "odd byte count" in event.reason
    assert client.pending == {}


def test_rtu_one_request_at_a_time_and_draining_after_a_timeout() -> None:
    client, server = ClientConnection("rtu", unit=5), ServerConnection("rtu")
    first = ReadHoldingRegistersRequest(0, 1)
    server.receive_data(client.send(first))
    first_id = client.last_transaction_id
    assert client.line_state == AWAITING_REPLY
    with pytest.raises(StateError, match="RTU allows one at a time"):
        client.send(first)
    assert client.abandon()  # timed out
    assert client.line_state == DRAINING
    with pytest.raises(StateError, match="call quiet"):
        client.send(first)
    late = server.next_event()
    assert isinstance(late, Request)
    assert late.transaction_id is None
    client.receive_data(server.send(ReadHoldingRegistersResponse((1,))))
    assert client.next_event() == StaleReply(first_id or 0, 5, first, h("03 02 0001"))
    client.quiet()  # the line has been silent long enough
    assert client.line_state == IDLE
    # The next request's answer is its own, never the late one.
    second = ReadHoldingRegistersRequest(0, 1)
    assert exchange(client, server, second) == Response(client.last_transaction_id or 0, 5, second, answer(second))


def test_rtu_quiet_while_awaiting_ends_an_unfinished_frame() -> None:
    client = ClientConnection("rtu")
    request = ReadHoldingRegistersRequest(0, 1)
    client.send(request)
    client.receive_data(encode_rtu(1, h("03 02 0001"))[:4])
    client.quiet()
    event = client.next_event()
    assert isinstance(event, DamagedFrame)
    assert client.line_state == AWAITING_REPLY  # the caller decides whether to wait on
    client.receive_data(encode_rtu(1, h("03 02 0001")))
    assert client.next_event() == Response(
        client.last_transaction_id or 0, 1, request, ReadHoldingRegistersResponse((1,))
    )


def test_rtu_damaged_reply_is_reported_and_the_request_stays_outstanding() -> None:
    client = ClientConnection("rtu")
    client.send(ReadHoldingRegistersRequest(0, 1))
    reply = bytearray(encode_rtu(1, h("03 02 0001")))
    reply[3] ^= 0xFF
    client.receive_data(bytes(reply))
    assert isinstance(client.next_event(), DamagedFrame)
    assert client.line_state == AWAITING_REPLY
    client.abandon()
    client.quiet()
    assert client.line_state == IDLE


def test_rtu_broadcast_expects_no_reply() -> None:
    client, server = ClientConnection("rtu"), ServerConnection("rtu")
    server.receive_data(client.send(WriteSingleRegisterRequest(0, 1), unit=0))
    assert client.line_state == IDLE
    assert client.pending == {}
    event = server.next_event()
    assert event == Request(None, 0, WriteSingleRegisterRequest(0, 1), broadcast=True)
    assert isinstance(event, Request)
    assert server.waiting == ()
    with pytest.raises(StateError, match="not waiting"):
        server.send(WriteSingleRegisterResponse(0, 1), to=event)
    with pytest.raises(StateError, match="no request is waiting"):
        server.send(WriteSingleRegisterResponse(0, 1))
    # A broadcast that does not decode gets no exception either.
    server.receive_data(encode_rtu(0, h("03 0000 0000")))
    bad = server.next_event()
    assert isinstance(bad, BadRequest)
    assert bad.broadcast
    assert bad.answer() is None


def test_quiet_does_nothing_on_tcp() -> None:
    client, server = ClientConnection(), ServerConnection()
    client.send(ReadCoilsRequest(0, 1))
    client.quiet()
    server.quiet()
    assert client.next_event() is None
    assert server.next_event() is None
    assert client.line_state == IDLE


def test_server_quiet_on_rtu_reports_an_unfinished_request() -> None:
    server = ServerConnection("rtu")
    server.receive_data(h("01 03 00"))
    server.quiet()
    assert isinstance(server.next_event(), DamagedFrame)


def test_client_unit_is_checked_before_anything_changes() -> None:
    client = ClientConnection()
    with pytest.raises(LimitError, match="unit"):
        client.send(ReadCoilsRequest(0, 1), unit=300)
    assert client.pending == {}
    assert client.last_transaction_id is None


def test_broken_stream_closes_the_client() -> None:
    client = ClientConnection()
    client.send(ReadCoilsRequest(0, 1))
    client.receive_data(h("0001 0001 0006 01 01 01 00"))
    event = client.next_event()
    assert isinstance(event, BrokenStream)
    assert client.broken is event
    with pytest.raises(StateError, match="broken"):
        client.send(ReadCoilsRequest(0, 1))
    assert ClientConnection("rtu").broken is None


def test_broken_stream_on_the_server() -> None:
    server = ServerConnection()
    server.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    assert isinstance(server.next_event(), BrokenStream)
    assert server.broken is not None
    assert ServerConnection("rtu").broken is None


def test_server_answers_a_request_it_cannot_decode() -> None:
    client, server = ClientConnection(), ServerConnection()
    server.receive_data(encode_mbap(9, 1, h("03 0000 0000")))  # a read of 0 registers
    bad = server.next_event()
    assert isinstance(bad, BadRequest)
    assert (bad.transaction_id, bad.unit, bad.function, bad.exception_code) == (9, 1, 3, 3)
    assert "1..125" in bad.reason
    reply = bad.answer()
    assert reply == ExceptionResponse(3, ExceptionCode.ILLEGAL_DATA_VALUE)
    assert server.send(reply) == encode_mbap(9, 1, h("83 03"))
    # An unsupported function code is a Request the server refuses with exception 1.
    request = UnsupportedRequest(0x41, b"\x00")
    event = exchange(client, server, request)
    assert event == Response(1, 1, request, ExceptionResponse(0x41, ExceptionCode.ILLEGAL_FUNCTION))
    # A code no request has (0, 0x80..0xFF) is refused with exception 1 too, as 0x80 | code.
    for function in (0x00, 0x81):
        server.receive_data(encode_mbap(10, 1, bytes((function,))))
        odd = server.next_event()
        assert isinstance(odd, BadRequest)
        assert (odd.function, odd.exception_code) == (function, ExceptionCode.ILLEGAL_FUNCTION)
        answer = odd.answer()
        assert answer == ExceptionResponse(function, ExceptionCode.ILLEGAL_FUNCTION)
        assert server.send(answer) == encode_mbap(10, 1, bytes((0x80 | function, 1)))
    assert server.waiting == ()


def test_server_refuses_an_answer_to_another_function() -> None:
    server = ServerConnection()
    server.receive_data(encode_mbap(1, 1, h("03 0000 0001")))
    with pytest.raises(StateError, match="cannot answer read holding registers"):
        server.send(ReadInputRegistersResponse((1,)))
    assert server.send(ExceptionResponse(3, 2)) == encode_mbap(1, 1, h("83 02"))


def test_server_discard_keeps_oldest_first_right() -> None:
    server = ServerConnection()
    server.receive_data(encode_mbap(1, 1, h("03 0000 0001")) + encode_mbap(2, 1, h("03 0001 0001")))
    dropped = server.next_event()
    kept = server.next_event()
    assert isinstance(dropped, Request)
    assert isinstance(kept, Request)
    server.discard(dropped)  # a fault drops this response
    server.discard(dropped)  # twice is harmless
    assert server.waiting == (kept,)
    assert server.send(ReadHoldingRegistersResponse((5,))) == encode_mbap(2, 1, h("03 02 0005"))


def test_rtu_server_new_request_replaces_an_unanswered_one() -> None:
    server = ServerConnection("rtu")
    server.receive_data(encode_rtu(1, h("03 0000 0001")) + encode_rtu(2, h("03 0001 0001")))
    server.next_event()
    newest = server.next_event()
    assert server.waiting == (newest,)
    assert server.send(ReadHoldingRegistersResponse((5,))) == encode_rtu(2, h("03 02 0005"))


# ---------------------------------------------------------------------------------- pairs under fuzz

_sample = st.sampled_from(SAMPLE_REQUESTS)


@settings(max_examples=60)
@given(st.lists(_sample, min_size=1, max_size=10), _chunk_sizes, st.randoms(use_true_random=False))
def test_mbap_pair_matches_every_answer(requests: list[RequestPdu], sizes: list[int], rng: Any) -> None:
    client, server = ClientConnection(unit=3), ServerConnection()
    wire = b"".join(client.send(request) for request in requests)
    for chunk in chunks(wire, sizes):
        server.receive_data(chunk)
    received = []
    while (event := server.next_event()) is not None:
        assert isinstance(event, Request)
        received.append(event)
    rng.shuffle(received)
    back = b"".join(server.send(answer(event.request), to=event) for event in received)
    for chunk in chunks(back, sizes):
        client.receive_data(chunk)
    answered = []
    while (reply := client.next_event()) is not None:
        assert isinstance(reply, Response)
        assert reply.response == answer(reply.request)
        answered.append(reply.transaction_id)
    assert sorted(answered) == list(range(1, len(requests) + 1))


@settings(max_examples=60)
@given(st.lists(st.tuples(_sample, st.booleans()), min_size=1, max_size=8), _chunk_sizes)
def test_rtu_pair_never_takes_a_late_reply(script: list[tuple[RequestPdu, bool]], sizes: list[int]) -> None:
    """Each request either times out (its reply comes late) or is answered; answers are always right."""
    client, server = ClientConnection("rtu"), ServerConnection("rtu")
    for request, times_out in script:
        for chunk in chunks(client.send(request), sizes):
            server.receive_data(chunk)
        event = server.next_event()
        assert isinstance(event, Request)
        reply = server.send(answer(event.request))
        if times_out:
            client.abandon(client.last_transaction_id)
        for chunk in chunks(reply, sizes):
            client.receive_data(chunk)
        got = client.next_event()
        if times_out:
            assert isinstance(got, StaleReply)
            client.quiet()
        else:
            assert got == Response(client.last_transaction_id or 0, 1, request, answer(request))
        assert client.next_event() is None


@settings(max_examples=100)
@given(st.binary(max_size=400), _chunk_sizes)
def test_connections_take_random_bytes_as_events(data: bytes, sizes: list[int]) -> None:
    for framing in ("mbap", "rtu"):
        client, server = ClientConnection(framing), ServerConnection(framing)
        client.send(ReadHoldingRegistersRequest(0, 1))
        for chunk in chunks(data, sizes):
            client.receive_data(chunk)
            server.receive_data(chunk)
        client.quiet()
        server.quiet()
        while (client_event := client.next_event()) is not None:
            assert isinstance(
                client_event,
                (Response, StaleReply, UnexpectedReply, MismatchedReply, MalformedReply, DamagedFrame, BrokenStream),
            )
        while (server_event := server.next_event()) is not None:
            assert isinstance(server_event, (Request, BadRequest, DamagedFrame, BrokenStream))


@pytest.mark.parametrize("framing", ["mbap", "rtu"])
def test_a_reply_cut_short_is_seen_as_unfinished(framing: Literal["mbap", "rtu"]) -> None:
    client = ClientConnection(framing)
    client.send(ReadHoldingRegistersRequest(0, 1))
    assert client.unfinished == 0
    head = b"\x00\x01\x00" if framing == "mbap" else b"\x01\x03"
    client.receive_data(head)
    assert client.next_event() is None
    assert client.unfinished == len(head)
