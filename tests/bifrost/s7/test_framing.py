"""TPKT/COTP framing and the S7 connection state machines, byte by byte, client paired with server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifrost.s7 import framing, pdu
from bifrost.s7.framing import ClientConnection, ServerConnection
from bifrost.s7.pdu import Area, ItemData, VarSpec

READ = pdu.ReadRequest((VarSpec(Area.DB, 0, 4, db=1),))


def drain(conn: ClientConnection | ServerConnection) -> list[object]:
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


def feed_bytewise(conn: ClientConnection | ServerConnection, data: bytes) -> list[object]:
    for byte in data:
        conn.receive_data(bytes((byte,)))
    return drain(conn)


def pair(*, client_pdu: int = 480, server_pdu: int = 480, amq: int = 1) -> tuple[ClientConnection, ServerConnection]:
    """A client and a server through CR/CC and setup communication, one byte at a time."""
    client, server = ClientConnection(rack=0, slot=2), ServerConnection(pdu_size=server_pdu, max_amq=amq)
    (request,) = feed_bytewise(server, client.connect_request())
    assert isinstance(request, framing.ConnectRequest)
    assert request.rack_slot == (0, 2)
    assert request.calling_tsap == b"\x01\x00"
    (connected,) = feed_bytewise(client, server.accept())
    assert connected == framing.Connected(1024)
    (setup,) = feed_bytewise(server, client.setup(client_pdu, amq))
    assert isinstance(setup, framing.Request) and isinstance(setup.request, pdu.SetupRequest)
    (ready,) = feed_bytewise(client, server.send(setup.reference, server.negotiate(setup.request)))
    assert isinstance(ready, framing.Ready)
    return client, server


def test_tpkt_cuts_a_stream_in_any_split() -> None:
    payloads = [bytes((2, 0xF0, 0x80)) + bytes(range(n)) for n in (0, 1, 7, 200)]
    stream = b"".join(framing.encode_tpkt(p) for p in payloads)
    for step in (1, 2, 3, 5, len(stream)):
        framer = framing.TpktFramer()
        got = []
        for at in range(0, len(stream), step):
            got += framer.feed(stream[at : at + step])
        assert got == payloads
        assert framer.unfinished == 0


@pytest.mark.parametrize(("header", "reason"), [("04000010", "version 4"), ("03000003", "length 3")])
def test_a_bad_tpkt_header_breaks_the_stream_once(header: str, reason: str) -> None:
    framer = framing.TpktFramer()
    (broken,) = framer.feed(bytes.fromhex(header) + b"more")
    assert isinstance(broken, framing.BrokenStream)
    assert reason in broken.reason
    assert framer.feed(framing.encode_tpkt(b"\x02\xf0\x80")) == []


def test_remote_tsap_of_rack_and_slot() -> None:
    assert framing.remote_tsap(0, 1) == 0x0101
    assert framing.remote_tsap(0, 2) == 0x0102
    assert framing.remote_tsap(1, 3, connection_type=3) == 0x0323
    assert framing.rack_slot(0x0323) == (1, 3)
    with pytest.raises(pdu.S7PduError):
        framing.remote_tsap(8, 0)


def test_setup_negotiates_the_smaller_pdu_and_max_amq() -> None:
    client, server = pair(client_pdu=960, server_pdu=480, amq=3)
    assert client.pdu_size == server.pdu_size == 480
    assert client.max_amq == 3
    client, server = pair(client_pdu=240, server_pdu=960)
    assert client.pdu_size == server.pdu_size == 240


def test_a_read_and_a_write_one_byte_at_a_time() -> None:
    client, server = pair()
    (request,) = feed_bytewise(server, client.send(READ))
    assert isinstance(request, framing.Request)
    assert request.request == READ
    answer = pdu.ReadResponse((ItemData(data=b"\x01\x02\x03\x04"),))
    (response,) = feed_bytewise(client, server.send(request.reference, answer))
    assert response == framing.Response(request.reference, READ, answer)
    write = pdu.WriteRequest(READ.items, (ItemData(0, pdu.DataTransport.BYTE, b"abcd"),))
    (request,) = feed_bytewise(server, client.send(write))
    (response,) = feed_bytewise(client, server.send(request.reference, pdu.WriteResponse((0xFF,))))
    assert isinstance(response, framing.Response)


def test_a_pdu_split_over_cotp_fragments_is_joined() -> None:
    _client, server = pair()
    data = pdu.encode_request(9, READ)
    fragments = framing.encode_tpkt(framing.encode_cotp_data(data[:5], eot=False)) + framing.encode_tpkt(
        framing.encode_cotp_data(data[5:])
    )
    (request,) = feed_bytewise(server, fragments)
    assert request == framing.Request(9, READ, len(data))


def test_a_late_answer_after_abandon_is_stale_and_never_taken() -> None:
    client, server = pair(amq=2)
    (first,) = feed_bytewise(server, client.send(READ))
    client.abandon(first.reference)
    (second,) = feed_bytewise(server, client.send(READ))
    assert second.reference != first.reference
    late = server.send(first.reference, pdu.ReadResponse((ItemData(data=b"late"),)))
    on_time = server.send(second.reference, pdu.ReadResponse((ItemData(data=b"good"),)))
    stale, response = feed_bytewise(client, late + on_time)
    assert isinstance(stale, framing.StaleReply)
    assert isinstance(response, framing.Response)
    assert response.response.items[0].data == b"good"  # type: ignore[union-attr]


def test_unexpected_and_mismatched_answers() -> None:
    client, server = pair()
    (request,) = feed_bytewise(server, client.send(READ))
    (unexpected,) = feed_bytewise(
        client, framing.encode_tpkt(framing.encode_cotp_data(pdu.encode_response(777, pdu.PlcStopResponse())))
    )
    assert isinstance(unexpected, framing.UnexpectedReply)
    (mismatch,) = feed_bytewise(client, server.send(request.reference, pdu.ReadResponse((ItemData(data=b"ab"),))))
    assert isinstance(mismatch, framing.MismatchedReply)
    assert "2 bytes answered, 4 asked" in mismatch.reason


def test_the_client_keeps_to_the_negotiated_size_and_amq() -> None:
    client, _server = pair(client_pdu=240, server_pdu=480)
    big = pdu.ReadRequest(tuple(VarSpec(Area.DB, i, 1, db=1) for i in range(20)))  # 12 + 20 * 12 = 252 bytes
    with pytest.raises(framing.StateError, match="negotiated PDU size of 240"):
        client.send(big)
    client.send(READ)
    with pytest.raises(framing.StateError, match="max AmQ 1"):
        client.send(READ)


def test_the_client_refuses_to_send_before_setup() -> None:
    client = ClientConnection()
    with pytest.raises(framing.StateError, match="connect and set up first"):
        client.send(READ)
    client.connect_request()
    with pytest.raises(framing.StateError):
        client.connect_request()


def test_the_server_answers_a_pdu_larger_than_negotiated_with_0x8500() -> None:
    _client, server = pair(client_pdu=480, server_pdu=240)
    big = pdu.encode_request(5, pdu.ReadRequest(tuple(VarSpec(Area.DB, i, 1, db=1) for i in range(20))))
    (bad,) = feed_bytewise(server, framing.encode_tpkt(framing.encode_cotp_data(big)))
    assert isinstance(bad, framing.BadRequest)
    assert bad.answer is not None and bad.answer.error == 0x8500
    assert "exceeds the negotiated 240" in bad.reason


def test_the_server_refuses_answers_larger_than_negotiated() -> None:
    _client, server = pair(server_pdu=240)
    with pytest.raises(framing.StateError, match="negotiated PDU size of 240"):
        server.send(1, pdu.ReadResponse((ItemData(data=bytes(300)),)))


def test_a_job_before_setup_and_an_unknown_function_get_error_answers() -> None:
    client, server = ClientConnection(), ServerConnection()
    feed_bytewise(server, client.connect_request())
    feed_bytewise(client, server.accept())
    (early,) = feed_bytewise(server, framing.encode_tpkt(framing.encode_cotp_data(pdu.encode_request(3, READ))))
    assert isinstance(early, framing.BadRequest) and early.answer is not None
    assert early.answer.error == 0x8101
    unknown = bytes.fromhex("32 01 0000 0004 0001 0000 77")
    (bad,) = feed_bytewise(server, framing.encode_tpkt(framing.encode_cotp_data(unknown)))
    assert isinstance(bad, framing.BadRequest) and bad.answer is not None
    assert (bad.reference, bad.answer.function, bad.answer.error) == (4, 0x77, 0x8104)


def test_refused_connection_and_disconnects() -> None:
    client, server = ClientConnection(rack=0, slot=5), ServerConnection()
    feed_bytewise(server, client.connect_request())
    (refused,) = feed_bytewise(client, server.refuse(0x81))
    assert isinstance(refused, framing.Refused)
    client, server = pair()
    (gone,) = feed_bytewise(server, client.disconnect_request())
    assert isinstance(gone, framing.Disconnected)


@given(st.binary(max_size=300), st.lists(st.integers(1, 17), min_size=1, max_size=20))
def test_random_bytes_give_only_events(data: bytes, sizes: list[int]) -> None:
    for conn in (ServerConnection(), ClientConnection()):
        if isinstance(conn, ClientConnection):
            conn.connect_request()
        at = 0
        for size in sizes * 20:
            if at >= len(data):
                break
            conn.receive_data(data[at : at + size])
            at += size
        drain(conn)


@given(st.binary(min_size=1, max_size=60))
def test_random_pdus_after_setup_are_requests_or_bad_requests(raw: bytes) -> None:
    _client, server = pair()
    (event,) = feed_bytewise(server, framing.encode_tpkt(framing.encode_cotp_data(raw)))
    assert isinstance(event, (framing.Request, framing.BadRequest))
