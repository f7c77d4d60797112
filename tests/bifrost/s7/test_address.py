"""The S7 address grammar of DESIGN and the one type table."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifrost import ConfigError, DataType, EncodeError, Tag
from bifrost.s7.address import FROM_DATATYPE, TYPES, S7Format, parse_address, parse_type, resolve_tag
from bifrost.s7.pdu import Area, TransportSize


@pytest.mark.parametrize(
    ("text", "area", "db", "start", "bit", "type_name"),
    [
        ("DB1.DBX4.0", Area.DB, 1, 4, 0, "BOOL"),
        ("%DB1.DBX4.7", Area.DB, 1, 4, 7, "BOOL"),
        ("DB1.DBB2", Area.DB, 1, 2, None, "BYTE"),
        ("DB1.DBW6", Area.DB, 1, 6, None, "WORD"),
        ("DB1.DBD0", Area.DB, 1, 0, None, "DWORD"),
        ("%DB1.DBD0:REAL", Area.DB, 1, 0, None, "REAL"),
        ("DB1.DBW0:INT[10]", Area.DB, 1, 0, None, "INT[10]"),
        ("DB1:10:REAL", Area.DB, 1, 10, None, "REAL"),
        ("%DB1:10:LREAL", Area.DB, 1, 10, None, "LREAL"),
        ("DB3:4.2:BOOL", Area.DB, 3, 4, 2, "BOOL"),
        ("DB2.DBX8:STRING[20]", Area.DB, 2, 8, None, "STRING[20]"),
        ("db1.dbw6:int", Area.DB, 1, 6, None, "INT"),
        ("M10.0", Area.FLAGS, 0, 10, 0, "BOOL"),
        ("%M0.0:BOOL", Area.FLAGS, 0, 0, 0, "BOOL"),
        ("MB4", Area.FLAGS, 0, 4, None, "BYTE"),
        ("%MW20:WORD", Area.FLAGS, 0, 20, None, "WORD"),
        ("MD24", Area.FLAGS, 0, 24, None, "DWORD"),
        ("MD24:REAL", Area.FLAGS, 0, 24, None, "REAL"),
        ("I0.0", Area.INPUTS, 0, 0, 0, "BOOL"),
        ("IW4", Area.INPUTS, 0, 4, None, "WORD"),
        ("Q0.1", Area.OUTPUTS, 0, 0, 1, "BOOL"),
        ("QW2", Area.OUTPUTS, 0, 2, None, "WORD"),
        ("DB5.DBX0:DTL", Area.DB, 5, 0, None, "DTL"),
        ("DB5:12:DT", Area.DB, 5, 12, None, "DATE_AND_TIME"),
    ],
)
def test_the_design_grammar(text: str, area: Area, db: int, start: int, bit: int | None, type_name: str) -> None:
    address = parse_address(text)
    assert (address.area, address.db, address.start, address.bit) == (area, db, start, bit)
    assert address.default_fmt is not None
    assert address.default_fmt.name == type_name


def test_an_address_without_a_type_takes_the_tags() -> None:
    address = parse_address("DB1:10")
    assert address.fmt is None
    tag = Tag(name="t", address="DB1:10", type=DataType.FLOAT32, scale=2.0)
    _address, fmt = resolve_tag(tag)
    assert (fmt.name, fmt.scale) == ("REAL", 2.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("DB0.DBW0", "DB0 is not a data block"),
        ("DB1.DBX4.8", "bit 8 is not 0..7"),
        ("DB1.DBW4.1", r"only a bit address \(X\) takes .bit"),
        ("DB1.DBW0:REAL", "a word address is 2 bytes, but REAL is 4"),
        ("DB1.DBD0:INT", "a double word address is 4 bytes"),
        ("DB1.DBX0.0:INT", "a bit address holds a BOOL"),
        ("DB1:0:BOOL", "a BOOL needs a bit address"),
        ("DB1.DBX0.0:BOOL[8]", "read them as BYTE"),
        ("DB1:0:FLOAT", "unknown S7 type 'FLOAT'"),
        ("DB1:0:STRING", "a STRING needs its length"),
        ("DB1:0:STRING[300]", "1..254"),
        ("X7", "not an S7 address"),
        ("hr:0", "not an S7 address"),
        ("M70000", "past 65535"),
    ],
)
def test_bad_addresses_say_why(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_address(text)


def test_the_type_table_maps_design_types_both_ways() -> None:
    expected = {
        "BOOL": DataType.BOOL,
        "INT": DataType.INT16,
        "WORD": DataType.UINT16,
        "UINT": DataType.UINT16,
        "DINT": DataType.INT32,
        "DWORD": DataType.UINT32,
        "UDINT": DataType.UINT32,
        "LINT": DataType.INT64,
        "LWORD": DataType.UINT64,
        "ULINT": DataType.UINT64,
        "REAL": DataType.FLOAT32,
        "LREAL": DataType.FLOAT64,
        "STRING": DataType.STRING,
    }
    for name, dtype in expected.items():
        assert TYPES[name].dtype is dtype
        assert TYPES[FROM_DATATYPE[dtype]].dtype is dtype
    for name in ("BYTE", "SINT", "USINT", "CHAR", "DTL", "DATE_AND_TIME", "TIME"):
        assert TYPES[name].dtype is None


def test_a_size_letter_fixes_the_width_and_the_tag_the_type() -> None:
    _address, fmt = resolve_tag(Tag(name="level", address="DB1.DBD0", type=DataType.FLOAT32))
    assert fmt.name == "REAL"
    _address, fmt = resolve_tag(Tag(name="valve", address="DB1.DBW6", type=DataType.UINT16))
    assert fmt.name == "WORD"
    with pytest.raises(ConfigError, match=r"DB1\.DBW6 is 2 bytes wide, but a float32 is REAL"):
        resolve_tag(Tag(name="t", address="DB1.DBW6", type=DataType.FLOAT32))


def test_a_tag_whose_type_contradicts_its_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="does not match REAL"):
        resolve_tag(Tag(name="t", address="DB1.DBD0:REAL", type=DataType.INT32))
    with pytest.raises(ConfigError, match="needs a bit address"):
        resolve_tag(Tag(name="t", address="DB1:4", type=DataType.BOOL))


numbers = {
    "BYTE": st.integers(0, 255),
    "USINT": st.integers(0, 255),
    "SINT": st.integers(-128, 127),
    "WORD": st.integers(0, 0xFFFF),
    "UINT": st.integers(0, 0xFFFF),
    "INT": st.integers(-(2**15), 2**15 - 1),
    "DWORD": st.integers(0, 2**32 - 1),
    "UDINT": st.integers(0, 2**32 - 1),
    "DINT": st.integers(-(2**31), 2**31 - 1),
    "TIME": st.integers(-(2**31), 2**31 - 1),
    "LWORD": st.integers(0, 2**64 - 1),
    "ULINT": st.integers(0, 2**64 - 1),
    "LINT": st.integers(-(2**63), 2**63 - 1),
    "LREAL": st.floats(allow_nan=False),
    "REAL": st.floats(width=32, allow_nan=False),
    "BOOL": st.booleans(),
    "CHAR": st.characters(max_codepoint=255),
    "STRING[12]": st.text(st.characters(max_codepoint=255), max_size=12),
    "INT[4]": st.lists(st.integers(-(2**15), 2**15 - 1), min_size=4, max_size=4).map(tuple),
    "STRING[3][2]": st.lists(st.text(st.characters(max_codepoint=255), max_size=3), min_size=2, max_size=2).map(tuple),
}


@pytest.mark.parametrize("name", sorted(numbers))
@given(data=st.data())
def test_every_type_round_trips_big_endian(name: str, data: st.DataObject) -> None:
    fmt = parse_type(name)
    value = data.draw(numbers[name])
    raw = fmt.encode(value)
    assert len(raw) == fmt.size
    back = fmt.decode(raw)
    if isinstance(value, float) and math.isinf(value):
        assert back == value
    else:
        assert back == value


def test_wire_layouts() -> None:
    assert parse_type("INT").encode(-2) == b"\xff\xfe"
    assert parse_type("REAL").encode(1.0) == b"\x3f\x80\x00\x00"
    assert parse_type("STRING[4]").encode("ab") == b"\x04\x02ab\x00\x00"
    assert parse_type("STRING[4]").decode(b"\x04\x09abcd") == "abcd"  # an actual length past the max is cut
    assert parse_type("DTL").encode("2026-12-02T03:04:05.000006") == bytes.fromhex("07ea 0c 02 04 03 04 05 00001770")
    assert parse_type("DT").encode("2026-12-02T03:04:05.678") == bytes.fromhex("26 12 02 03 04 05 67 84")
    assert parse_type("DT").decode(bytes.fromhex("99 01 02 03 04 05 00 01")) == "1999-01-02T03:04:05.000"
    bit = S7Format(TYPES["BOOL"], bit=3)
    assert bit.decode(b"\x08") is True
    assert bit.decode(b"\xf7") is False


def test_scale_and_offset() -> None:
    fmt = S7Format(TYPES["INT"], scale=0.1, offset=5)
    assert fmt.encode(7.5) == (25).to_bytes(2, "big")
    assert fmt.decode((25).to_bytes(2, "big")) == pytest.approx(7.5)


@pytest.mark.parametrize(
    ("type_name", "value", "message"),
    [
        ("INT", 40000, "out of range"),
        ("BYTE", -1, "out of range"),
        ("INT", 1.5, "not a whole number"),
        ("INT", "7", "not a number"),
        ("BOOL", 2, "not a bool"),
        ("STRING[2]", "abc", "do not fit 2"),
        ("STRING[2]", "☃", "outside Latin-1"),
        ("CHAR", "ab", "not one character"),
        ("DTL", "yesterday", "not an ISO 8601"),
        ("DT", "1980-01-01T00:00:00", "outside 1990..2089"),
        ("INT[2]", (1,), "expected 2 values"),
    ],
)
def test_values_that_do_not_fit_are_refused(type_name: str, value: object, message: str) -> None:
    with pytest.raises(EncodeError, match=message):
        parse_type(type_name).encode(value)


def test_a_bool_is_a_bit_item_and_anything_else_bytes() -> None:
    address = parse_address("DB1.DBX4.3")
    assert address.default_fmt is not None
    spec = address.spec(address.default_fmt)
    assert (spec.transport, spec.start, spec.bit, spec.count) == (TransportSize.BIT, 4, 3, 1)
    address = parse_address("DB1.DBW0:INT[10]")
    assert address.fmt is not None
    spec = address.spec(address.fmt)
    assert (spec.transport, spec.count) == (TransportSize.BYTE, 20)
