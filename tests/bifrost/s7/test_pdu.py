"""S7 PDUs: round trips of every message, sizes, and malformed bytes that never raise anything else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifrost.s7 import pdu
from bifrost.s7.pdu import Area, DataTransport, ItemData, ReturnCode, TransportSize, VarSpec

areas = st.sampled_from([Area.DB, Area.FLAGS, Area.INPUTS, Area.OUTPUTS])
byte_specs = st.builds(
    VarSpec,
    area=areas,
    start=st.integers(0, 0xFFFF),
    count=st.integers(1, 0xFFFF),
    transport=st.sampled_from([t for t in TransportSize if t is not TransportSize.BIT]),
    db=st.integers(0, 0xFFFF),
)
bit_specs = st.builds(
    VarSpec,
    area=areas,
    start=st.integers(0, 0xFFFF),
    count=st.just(1),
    transport=st.just(TransportSize.BIT),
    db=st.integers(0, 0xFFFF),
    bit=st.integers(0, 7),
)
specs = st.one_of(byte_specs, bit_specs)
good_data = st.builds(
    ItemData,
    return_code=st.just(ReturnCode.SUCCESS),
    transport=st.sampled_from([DataTransport.BYTE, DataTransport.OCTET, DataTransport.REAL, DataTransport.INT]),
    data=st.binary(min_size=0, max_size=40),
)
bad_data = st.builds(
    ItemData,
    return_code=st.sampled_from([c for c in ReturnCode if c is not ReturnCode.SUCCESS]),
    transport=st.just(DataTransport.NULL),
    data=st.just(b""),
)
references = st.integers(0, 0xFFFF)

requests = st.one_of(
    st.builds(pdu.SetupRequest, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.builds(pdu.ReadRequest, st.lists(specs, min_size=1, max_size=30).map(tuple)),
    st.lists(st.tuples(specs, good_data.map(lambda d: ItemData(0, d.transport, d.data))), min_size=1, max_size=20).map(
        lambda pairs: pdu.WriteRequest(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))
    ),
    st.just(pdu.PlcStopRequest()),
    st.builds(pdu.PlcControlRequest, argument=st.sampled_from([b"", b"C "])),
    st.builds(pdu.SzlRequest, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 255)),
)
responses = st.one_of(
    st.builds(pdu.SetupResponse, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.builds(pdu.ReadResponse, st.lists(st.one_of(good_data, bad_data), min_size=1, max_size=30).map(tuple)),
    st.builds(pdu.WriteResponse, st.lists(st.sampled_from(list(ReturnCode)), min_size=1, max_size=30).map(tuple)),
    st.just(pdu.PlcStopResponse()),
    st.just(pdu.PlcControlResponse()),
    st.builds(
        pdu.SzlResponse,
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
        st.binary(max_size=200),
        sequence=st.integers(0, 255),
    ),
    st.builds(
        pdu.ErrorResponse,
        st.sampled_from([0x04, 0x05, 0x28, 0x29]),
        st.sampled_from(list(pdu.ErrorClass)[1:]),
        st.integers(0, 255),
    ),
)


@given(references, requests)
def test_requests_round_trip(reference: int, request: pdu.RequestPdu) -> None:
    data = pdu.encode_request(reference, request)
    assert pdu.decode_request(data) == (reference, request)


@given(references, responses)
def test_responses_round_trip(reference: int, response: pdu.ResponsePdu) -> None:
    data = pdu.encode_response(reference, response)
    decoded_reference, decoded = pdu.decode_response(data)
    assert decoded_reference == reference
    if isinstance(response, pdu.ReadResponse):
        # A length counted in bits comes back as whole bytes, the same bytes.
        assert [(i.return_code, i.data) for i in decoded.items] == [  # type: ignore[union-attr]
            (i.return_code, i.data) for i in response.items
        ]
    else:
        assert decoded == response


@given(st.lists(st.integers(0, 100), min_size=1, max_size=40))
def test_sizes_match_the_encoded_pdus(sizes: list[int]) -> None:
    items = tuple(ItemData(ReturnCode.SUCCESS, DataTransport.BYTE, bytes(n)) for n in sizes)
    specs = tuple(VarSpec(Area.DB, 0, max(n, 1), db=1) for n in sizes)
    assert pdu.read_response_size(sizes) == len(pdu.encode_response(1, pdu.ReadResponse(items)))
    assert pdu.read_request_size(len(sizes)) == len(pdu.encode_request(1, pdu.ReadRequest(specs)))
    write = pdu.WriteRequest(specs, tuple(ItemData(0, DataTransport.BYTE, bytes(n)) for n in sizes))
    assert pdu.write_request_size(sizes) == len(pdu.encode_request(1, write))


@given(st.binary(max_size=120))
def test_random_bytes_are_a_request_or_a_malformed_pdu(data: bytes) -> None:
    with contextlib.suppress(pdu.MalformedPdu):
        pdu.decode_request(data)


@given(st.binary(max_size=120))
def test_random_bytes_are_a_response_or_a_malformed_pdu(data: bytes) -> None:
    with contextlib.suppress(pdu.MalformedPdu):
        pdu.decode_response(data)


@given(references, requests, st.data())
def test_a_damaged_request_never_raises_anything_but_malformed(
    reference: int, request: pdu.RequestPdu, data: st.DataObject
) -> None:
    raw = bytearray(pdu.encode_request(reference, request))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    with contextlib.suppress(pdu.MalformedPdu):
        pdu.decode_request(bytes(raw[:cut]))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("32", "shorter than an S7 header"),
        ("33 01 0000 0001 0000 0000", "not S7comm"),
        ("32 09 0000 0001 0000 0000", "PDU type 0x09"),
        ("32 01 0000 0001 0002 0000 04", "announces 2 parameter"),
        ("32 01 0000 0001 0001 0000 77", "function 0x77 is not supported"),
        ("32 01 0000 0001 0002 0000 04 01", "1 items need 14 parameter bytes"),
        ("32 01 0000 0001 000e 0000 04 01 12 0a 11 02 0001 0001 84 000000", "not an S7ANY address"),
        ("32 01 0000 0001 000e 0000 04 01 12 0a 10 02 0001 0001 99 000000", "area 0x99"),
    ],
)
def test_malformed_requests_say_what_is_wrong(raw: str, reason: str) -> None:
    with pytest.raises(pdu.MalformedPdu, match=reason) as caught:
        pdu.decode_request(bytes.fromhex(raw))
    if "function 0x77" in reason:
        assert caught.value.reference == 1
        assert caught.value.function == 0x77


def test_item_and_header_errors_are_named() -> None:
    assert "0x0A (object does not exist)" in pdu.return_code_text(0x0A)
    assert "0x05 (address out of range)" in pdu.return_code_text(5)
    assert "unknown" in pdu.return_code_text(0x42)
    assert "0x8500" in pdu.ErrorResponse(0x04, 0x85, 0x00).message
    assert pdu.ErrorResponse(0x04, 0x85, 0x00).error == 0x8500


def test_encoding_refuses_what_does_not_fit() -> None:
    with pytest.raises(pdu.S7PduError, match="items: 0 items"):
        pdu.encode_request(1, pdu.ReadRequest(()))
    with pytest.raises(pdu.S7PduError, match=r"items\[0\].bit"):
        pdu.encode_request(1, pdu.ReadRequest((VarSpec(Area.DB, 0, 1, TransportSize.BIT, 1, 9),)))
    with pytest.raises(pdu.S7PduError, match="reference"):
        pdu.encode_request(0x10000, pdu.PlcStopRequest())


def test_response_mismatch() -> None:
    read = pdu.ReadRequest((VarSpec(Area.DB, 0, 4, db=1),))
    assert pdu.response_mismatch(read, pdu.ReadResponse((ItemData(data=bytes(4)),))) is None
    assert "2 bytes answered, 4 asked" in str(pdu.response_mismatch(read, pdu.ReadResponse((ItemData(data=b"ab"),))))
    assert "2 items answered" in str(pdu.response_mismatch(read, pdu.ReadResponse((ItemData(), ItemData()))))
    assert pdu.response_mismatch(read, pdu.WriteResponse((0xFF,))) is not None
    szl = pdu.SzlRequest(0x11)
    assert pdu.response_mismatch(szl, pdu.SzlResponse(0x1C, 0)) is not None
    assert pdu.response_mismatch(szl, pdu.ErrorResponse(None, 0x81, 0x04)) is None


def test_szl_records_are_cut_by_their_header() -> None:
    answer = pdu.SzlResponse(0x0011, 0, bytes.fromhex("0004 0002") + b"abcdefgh")
    assert answer.records() == [b"abcd", b"efgh"]
    assert pdu.SzlResponse(0x0011, 0, b"").records() == []
