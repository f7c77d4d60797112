"""The cassette format: a header line, one exchange a line, read back exactly; errors name file:line:field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bifrost.modbus import pdu
from simulators.recording import CASSETTE_VERSION, CassetteError, CassetteWriter, Entry, load_cassette, save_cassette


def _entry(t: float = 0.0, request: pdu.RequestPdu | None = None, response: pdu.ResponsePdu | None = None) -> Entry:
    request = request or pdu.ReadHoldingRegistersRequest(0, 2)
    response = response or pdu.ReadHoldingRegistersResponse((1, 2))
    return Entry("modbus", "plc1", 1, 1, t, pdu.encode_request(request), pdu.encode_response(response), 0.001, 7)


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    entries = [
        _entry(0.0),
        _entry(0.5, pdu.ReadCoilsRequest(3, 5), pdu.ReadCoilsResponse((True, False, True, True, False))),
        _entry(1.0, pdu.WriteSingleRegisterRequest(4, 9), pdu.ExceptionResponse(6, 2)),
        Entry("modbus", "plc2", 9, 2, 1.5, pdu.encode_request(pdu.ReadCoilsRequest(0, 1)), None, None, None, "dropped"),
    ]
    path = save_cassette(tmp_path / "c.jsonl", entries, source="test")
    cassette = load_cassette(path)
    assert cassette.entries == entries
    assert cassette.header["bifrost_cassette"] == CASSETTE_VERSION and cassette.header["source"] == "test"
    assert cassette.devices() == ["plc1", "plc2"]


def test_lines_are_readable(tmp_path: Path) -> None:
    path = save_cassette(
        tmp_path / "c.jsonl", [_entry(0.0, pdu.ReadCoilsRequest(3, 2), pdu.ReadCoilsResponse((True, False)))]
    )
    header, line = (json.loads(text) for text in path.read_text().splitlines())
    assert set(header) >= {"bifrost_cassette", "created"}
    assert line["request"] == {
        "hex": "0100030002",
        "decoded": {"type": "read_coils", "function": 1, "address": 3, "count": 2},
        "text": "read coil:3-4",
    }
    assert line["response"]["decoded"] == {"type": "read_coils", "function": 1, "values": [True, False]}
    assert (line["protocol"], line["device"], line["unit"], line["connection"]) == ("modbus", "plc1", 1, 1)
    refused = save_cassette(tmp_path / "e.jsonl", [_entry(0, response=pdu.ExceptionResponse(3, 2))])
    decoded = json.loads(refused.read_text().splitlines()[1])["response"]["decoded"]
    assert decoded == {"type": "exception", "function": 3, "code": 2, "name": "ILLEGAL_DATA_ADDRESS"}


def test_append_continues_time(tmp_path: Path) -> None:
    path = save_cassette(tmp_path / "c.jsonl", [_entry(0.0), _entry(2.0)])
    with CassetteWriter(path, append=True) as writer:
        writer.write(_entry(0.0))
    cassette = load_cassette(path)
    assert [entry.t for entry in cassette] == [0.0, 2.0, 2.0]
    assert path.read_text().count("bifrost_cassette") == 1


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"bifrost_cassette": 99}'], r"c.jsonl:1: bifrost_cassette: version 99 is not one"),
        (['{"t": 0}'], r"c.jsonl:1: the first line must be the header"),
        (['{"bifrost_cassette": 1}', "not json"], r"c.jsonl:2: not JSON"),
        (['{"bifrost_cassette": 1}', '{"protocol": "modbus"}'], r"c.jsonl:2: device: expected a string"),
        (
            ['{"bifrost_cassette": 1}', '{"protocol": "bacnet", "device": "x"}'],
            r"c.jsonl:2: protocol: no recording codec for protocol 'bacnet'",
        ),
        (
            [
                '{"bifrost_cassette": 1}',
                '{"protocol": "modbus", "device": "x", "unit": 1, "connection": 1, "t": 0, "request": {"hex": "zz"}}',
            ],
            r"c.jsonl:2: request.hex: 'zz' is not hexadecimal",
        ),
        (
            [
                '{"bifrost_cassette": 1}',
                '{"protocol": "modbus", "device": "x", "unit": "one", "connection": 1, "t": 0}',
            ],
            r"c.jsonl:2: unit: expected a number",
        ),
        ([], r"c.jsonl: empty"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CassetteError, match=message):
        load_cassette(path)


_PDUS = st.sampled_from(
    [
        (pdu.ReadHoldingRegistersRequest(1, 2), pdu.ReadHoldingRegistersResponse((0, 65535))),
        (pdu.WriteMultipleCoilsRequest(0, (True,) * 9), pdu.WriteMultipleCoilsResponse(0, 9)),
        (pdu.MaskWriteRegisterRequest(1, 0xF0, 0x0F), pdu.MaskWriteRegisterResponse(1, 0xF0, 0x0F)),
        (
            pdu.ReadDeviceIdentificationRequest(1, 0),
            pdu.ReadDeviceIdentificationResponse(1, 0x81, False, 0, ((0, b"x"),)),
        ),
        (pdu.UnsupportedRequest(65, b"\x01\x02"), pdu.UnsupportedResponse(65, b"\x09")),
    ]
)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_PDUS, st.floats(0, 1e6), st.integers(0, 255), st.none() | st.floats(0, 10)), max_size=8))
def test_any_exchanges_round_trip(tmp_path_factory: pytest.TempPathFactory, exchanges: list) -> None:
    entries = [
        Entry(
            "modbus",
            "d",
            unit,
            1,
            round(t, 6),
            pdu.encode_request(q),
            pdu.encode_response(a),
            None if lat is None else round(lat, 6),
        )
        for (q, a), t, unit, lat in exchanges
    ]
    path = save_cassette(tmp_path_factory.mktemp("c") / "c.jsonl", entries)
    assert load_cassette(path).entries == entries


def test_saving_at_once_writes_the_lines_written_one_by_one(tmp_path: Path) -> None:
    # save() renders each distinct exchange once and writes in batches; the file must not change for it.
    repeated = _entry(0.0)
    entries = [
        repeated,
        repeated._replace(t=0.25, transaction_id=8),
        _entry(0.5, pdu.ReadCoilsRequest(3, 5), pdu.ReadCoilsResponse((True, False, True, True, False))),
        repeated._replace(t=0.75, device='plc "north"', note="late"),
        Entry("modbus", "plc2", 9, 2, 1.5, pdu.encode_request(pdu.ReadCoilsRequest(0, 1)), None, None, None, "dropped"),
        Entry("modbus", "plc2", 9, 2, 2.0, b"\x03\x00", b"\x83", 0.002),  # malformed both ways
    ]
    with CassetteWriter(tmp_path / "one.jsonl", source="test") as writer:
        for entry in entries:
            writer.write(entry)
    with CassetteWriter(tmp_path / "many.jsonl", source="test") as writer:
        writer.write_many(entries, batch=4)
        assert writer.count == len(entries)
    one = (tmp_path / "one.jsonl").read_text().splitlines()
    many = (tmp_path / "many.jsonl").read_text().splitlines()
    assert many[1:] == one[1:] and len(many) == len(entries) + 1
    assert load_cassette(tmp_path / "many.jsonl").entries == entries
