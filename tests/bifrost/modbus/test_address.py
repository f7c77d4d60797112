"""Modbus addresses: the grammar, the Modicon alternative, canonical spelling, and tags to wire formats."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bifrost import ByteOrder, DataType, Tag, TagMap
from bifrost.errors import ConfigError
from bifrost.modbus.address import (
    MAX_STRING_BYTES,
    Address,
    Area,
    check_fits,
    check_writable,
    parse_address,
    parse_modicon,
    resolve_tag,
)
from bifrost.modbus.pdu import MAX_READ_BITS, MAX_READ_REGISTERS, MAX_WRITE_BITS, MAX_WRITE_REGISTERS
from bifrost.values import WireFormat, words_for
from simulators import shipped_scenario

HR, IR, COIL, DI = Area.HOLDING_REGISTER, Area.INPUT_REGISTER, Area.COIL, Area.DISCRETE_INPUT
NUMBER_TYPES = [t for t in DataType if t not in (DataType.STRING, DataType.BOOL)]


@pytest.mark.parametrize(
    ("area", "read", "bits", "writable", "single", "multiple", "max_read", "max_write"),
    [
        (COIL, 1, True, True, 5, 15, MAX_READ_BITS, MAX_WRITE_BITS),
        (DI, 2, True, False, None, None, MAX_READ_BITS, None),
        (HR, 3, False, True, 6, 16, MAX_READ_REGISTERS, MAX_WRITE_REGISTERS),
        (IR, 4, False, False, None, None, MAX_READ_REGISTERS, None),
    ],
)
def test_each_area_knows_its_function_codes_and_limits(
    area: Area,
    read: int,
    bits: bool,
    writable: bool,
    single: int | None,
    multiple: int | None,
    max_read: int,
    max_write: int | None,
) -> None:
    assert (area.read_function, area.holds_bits, area.writable) == (read, bits, writable)
    assert (area.write_single_function, area.write_multiple_function) == (single, multiple)
    assert (area.max_read, area.max_write) == (max_read, max_write)


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("hr:10", Address(HR, 10), "hr:10"),
        ("hr:0", Address(HR, 0), "hr:0"),
        ("hr:65535", Address(HR, 65535), "hr:65535"),
        ("hr:3.7", Address(HR, 3, bit=7), "hr:3.7"),
        ("ir:0.15", Address(IR, 0, bit=15), "ir:0.15"),
        ("hr:10:float32:CDAB", Address(HR, 10, type=DataType.FLOAT32, byte_order=ByteOrder.CDAB), "hr:10:float32:CDAB"),
        ("ir:4:int16", Address(IR, 4, type=DataType.INT16), "ir:4:int16"),
        ("coil:3", Address(COIL, 3), "coil:3"),
        ("di:0", Address(DI, 0), "di:0"),
        ("hr:20:string[8]", Address(HR, 20, type=DataType.STRING, length=8), "hr:20:string[8]"),
        ("hr:20:string[8]:BADC", Address(HR, 20, None, DataType.STRING, 8, ByteOrder.BADC), "hr:20:string[8]:BADC"),
        ("hr:1:bool", Address(HR, 1, type=DataType.BOOL), "hr:1:bool"),
        ("hr:65532:float64:DCBA", Address(HR, 65532, None, DataType.FLOAT64, None, ByteOrder.DCBA), None),
        # Any case in, one spelling out; a redundant bool on a bit-sized place is dropped.
        ("HR:10:Float32:cdab", Address(HR, 10, type=DataType.FLOAT32, byte_order=ByteOrder.CDAB), "hr:10:float32:CDAB"),
        ("coil:3:bool", Address(COIL, 3), "coil:3"),
        ("hr:3.7:BOOL", Address(HR, 3, bit=7), "hr:3.7"),
        ("  hr:010  ", Address(HR, 10), "hr:10"),
    ],
)
def test_parse_address(text: str, expected: Address, canonical: str | None) -> None:
    address = parse_address(text)
    assert address == expected
    assert str(address) == (canonical or text)
    assert parse_address(str(address)) == address


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "hr:10:flaot32",
            "'hr:10:flaot32': unknown type 'flaot32'; expected one of bool, int16, uint16, int32, uint32, int64, "
            "uint64, float32, float64, string[N]",
        ),
        ("hx:10", "'hx:10': unknown area 'hx'; expected one of coil, di, ir, hr"),
        ("40001", "'40001': expected area:offset[.bit][:type[:byte order]], e.g. hr:0"),
        ("", "'': expected area:offset"),
        ("hr:abc", "'hr:abc': offset 'abc' is not a number; expected 0..65535"),
        ("hr:", "'hr:': offset '' is not a number"),
        ("hr:-1", "offset '-1' is not a number"),
        ("hr:²", "offset '²' is not a number"),
        ("hr:70000", "'hr:70000': offset 70000 is out of range; expected 0..65535"),
        ("hr:65536", "offset 65536 is out of range"),
        ("hr:3.16", "'hr:3.16': bit 16 is out of range; expected 0..15"),
        ("hr:3.", "bit '' is not a number; expected 0..15"),
        ("hr:3.x", "bit 'x' is not a number"),
        ("coil:3.1", "'coil:3.1': a bit number is only for registers (ir, hr); a coil is a single bit already"),
        ("di:3.1", "a di is a single bit already"),
        ("coil:3:int16", "'coil:3:int16': a coil holds a single bit, so its type can only be bool, not int16"),
        ("di:0:float32", "a di holds a single bit"),
        ("hr:3.7:int16", "'hr:3.7:int16': a bit (.7) holds a bool, not int16"),
        ("hr:10:", "'hr:10:': unknown type ''"),
        ("hr:10:string", "a string type needs its length in bytes: string[N]"),
        ("hr:10:string[0]", f"string[0] is out of range; expected string[1] to string[{MAX_STRING_BYTES}]"),
        ("hr:10:string[247]", "string[247] is out of range"),
        ("hr:10:float32:", "'hr:10:float32:': unknown byte order ''; expected one of ABCD, BADC, CDAB, DCBA"),
        ("hr:10:float32:CBDA", "unknown byte order 'CBDA'; expected one of ABCD, BADC, CDAB, DCBA"),
        ("hr:10:float32:CDAB:x", "'hr:10:float32:CDAB:x': too many ':' parts; expected area:offset"),
        ("hr:10:bool:CDAB", "'hr:10:bool:CDAB': a bool has no byte order"),
        ("hr:3.7:bool:CDAB", "a single bit has no byte order"),
        ("hr:65535:float32", "'hr:65535:float32': float32 takes 2 registers, so it runs past the last register 65535"),
        ("hr:65533:uint64", "uint64 takes 4 registers"),
        ("hr:65530:string[20]", "string[20] takes 10 registers"),
    ],
)
def test_errors_name_the_bad_part_and_what_is_accepted(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_address(text)
    assert message in str(caught.value)
    assert str(caught.value).startswith(repr(text))


def test_a_bare_number_hints_at_the_modicon_style() -> None:
    with pytest.raises(ConfigError, match="style='modicon'"):
        parse_address("40001")
    with pytest.raises(ConfigError, match="unknown address style 'plc'; expected 'wire'"):
        parse_address("hr:0", style="plc")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00001", "coil:0"),
        ("10001", "di:0"),
        ("30001", "ir:0"),
        ("40001", "hr:0"),
        ("40010", "hr:9"),
        ("49999", "hr:9998"),
        ("000001", "coil:0"),
        ("400001", "hr:0"),
        ("410000", "hr:9999"),
        ("465536", "hr:65535"),
        ("300005", "ir:4"),
        ("40004.7", "hr:3.7"),
        ("40011:float32:CDAB", "hr:10:float32:CDAB"),
        ("30005:int16", "ir:4:int16"),
    ],
)
def test_modicon_numbers_count_from_one(text: str, expected: str) -> None:
    assert str(parse_address(text, style="modicon")) == expected
    assert parse_modicon(text) == parse_address(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("40000", "'40000': Modicon number '0000' is out of range; expected 1..9999 (they count from 1: 40001 is"),
        ("400000", "expected 1..65536 (they count from 1: 400001 is hr:0)"),
        ("465537", "Modicon number '65537' is out of range"),
        ("20001", "unknown Modicon area digit '2'; expected 0 (coil), 1 (di), 3 (ir) or 4 (hr)"),
        ("4001", "expected a Modicon number of 5 or 6 digits such as 40001 or 400001"),
        ("4000001", "5 or 6 digits"),
        ("hr:0", "5 or 6 digits"),
        ("4000a", "5 or 6 digits"),
        ("00001.3", "a bit number is only for registers"),
        ("40001.16", "bit 16 is out of range"),
        ("40001:float33", "unknown type 'float33'"),
    ],
)
def test_modicon_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_address(text, style="modicon")
    assert message in str(caught.value)


@st.composite
def addresses(draw: st.DrawFn) -> Address:
    area = draw(st.sampled_from(list(Area)))
    kind = draw(st.sampled_from(["plain", "bit", "typed"]))
    if area.holds_bits or kind == "plain":
        return Address(area, draw(st.integers(0, 65535)))
    if kind == "bit":
        return Address(area, draw(st.integers(0, 65535)), bit=draw(st.integers(0, 15)))
    dtype = draw(st.sampled_from(list(DataType)))
    length = draw(st.integers(1, MAX_STRING_BYTES)) if dtype is DataType.STRING else None
    offset = draw(st.integers(0, 65536 - words_for(dtype, length or 0)))
    order = None if dtype is DataType.BOOL else draw(st.none() | st.sampled_from(list(ByteOrder)))
    return Address(area, offset, None, dtype, length, order)


@settings(max_examples=200)
@given(addresses())
def test_every_address_round_trips_through_both_spellings(address: Address) -> None:
    assert parse_address(str(address)) == address
    assert parse_address(address.modicon(), style="modicon") == address
    assert hash(parse_address(str(address))) == hash(address)


@settings(max_examples=200)
@given(st.text(alphabet="hrcoildi:.0123456789fatsng[]ABCDxu-", max_size=24))
def test_any_text_parses_or_raises_a_config_error(text: str) -> None:
    for style in ("wire", "modicon"):
        message = None
        try:
            address = parse_address(text, style=style)
        except ConfigError as exc:
            message = str(exc)
        if message is None:
            assert parse_address(str(address)) == address
        else:
            assert message.startswith(repr(text))


def test_addresses_are_frozen_and_slotted() -> None:
    address = parse_address("hr:10:float32")
    assert not hasattr(address, "__dict__")
    with pytest.raises(AttributeError):
        address.offset = 11  # type: ignore[misc]
    assert {address, parse_address("hr:10:float32")} == {address}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"area": "hr", "offset": 0}, "unknown area 'hr'; expected one of coil, di, ir, hr"),
        ({"area": HR, "offset": -1}, "offset -1 is out of range"),
        ({"area": HR, "offset": 0, "bit": -1}, "bit -1 is out of range"),
        ({"area": HR, "offset": 0, "type": DataType.STRING}, "a string needs its length (string[N])"),
        ({"area": HR, "offset": 0, "type": DataType.INT16, "length": 2}, "only a string has one"),
        ({"area": HR, "offset": 0, "byte_order": ByteOrder.CDAB}, "a byte order needs a type before it"),
        ({"area": COIL, "offset": 0, "byte_order": ByteOrder.CDAB}, "a single bit has no byte order"),
    ],
)
def test_direct_construction_is_checked_too(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Address(**kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "value_type", "count", "fmt"),
    [
        ("hr:0", DataType.UINT16, 1, WireFormat(DataType.UINT16)),
        ("coil:5", DataType.BOOL, 1, WireFormat(DataType.BOOL)),
        ("hr:3.7", DataType.BOOL, 1, WireFormat(DataType.BOOL, bit=7)),
        ("hr:0:float64:CDAB", DataType.FLOAT64, 4, WireFormat(DataType.FLOAT64, ByteOrder.CDAB)),
        ("hr:0:string[5]", DataType.STRING, 3, WireFormat(DataType.STRING, length=5)),
        ("ir:0:int32", DataType.INT32, 2, WireFormat(DataType.INT32, ByteOrder.DCBA)),
    ],
)
def test_value_type_count_and_wire_format(text: str, value_type: DataType, count: int, fmt: WireFormat) -> None:
    address = parse_address(text)
    assert (address.value_type, address.count) == (value_type, count)
    # The connection's default byte order applies only where the address names none.
    assert address.wire_format(ByteOrder.DCBA if text.startswith("ir") else ByteOrder.ABCD) == fmt
    assert address.wire_format().words == count or address.is_bit


def test_check_fits() -> None:
    check_fits(parse_address("coil:0"), WireFormat(DataType.BOOL))
    check_fits(parse_address("hr:0"), WireFormat(DataType.BOOL))
    check_fits(parse_address("hr:0.3"), WireFormat(DataType.BOOL, bit=3))
    check_fits(parse_address("hr:65534"), WireFormat(DataType.FLOAT32))
    with pytest.raises(ConfigError, match="di:0: a di holds a single bit, so its type can only be bool, not float32"):
        check_fits(parse_address("di:0"), WireFormat(DataType.FLOAT32))
    with pytest.raises(ConfigError, match=r"hr:0.3: the value's bit None is not the address's bit 3"):
        check_fits(parse_address("hr:0.3"), WireFormat(DataType.BOOL))
    with pytest.raises(ConfigError, match="hr:65535: float64 takes 4 registers, so it runs past"):
        check_fits(parse_address("hr:65535"), WireFormat(DataType.FLOAT64))
    with pytest.raises(ConfigError, match=r"string\[300\] takes 150 registers; one read returns at most 125"):
        check_fits(parse_address("hr:0"), WireFormat(DataType.STRING, length=300))


def test_check_writable() -> None:
    check_writable(parse_address("coil:0"))
    check_writable(parse_address("hr:0:float32"))
    with pytest.raises(ConfigError, match="ir:0: ir is read-only; a client writes only coil and hr"):
        check_writable(parse_address("ir:0"))
    with pytest.raises(ConfigError, match="di is read-only"):
        check_writable(parse_address("di:0"))


def tag(address: str, **kwargs: object) -> Tag:
    return Tag(name="t", address=address, **kwargs)


@pytest.mark.parametrize(
    ("made", "address", "fmt"),
    [
        # Tag's own defaults (uint16, ABCD) say nothing: the address decides.
        (tag("coil:1"), "coil:1", WireFormat(DataType.BOOL)),
        (tag("hr:3.7"), "hr:3.7", WireFormat(DataType.BOOL, bit=7)),
        (tag("hr:1"), "hr:1", WireFormat(DataType.UINT16)),
        (tag("hr:1:float32:CDAB"), "hr:1:float32:CDAB", WireFormat(DataType.FLOAT32, ByteOrder.CDAB)),
        (tag("hr:1:string[4]"), "hr:1:string[4]", WireFormat(DataType.STRING, length=4)),
        # The tag's type and order win over an untyped address.
        (tag("hr:1", type="float32", byte_order="DCBA"), "hr:1", WireFormat(DataType.FLOAT32, ByteOrder.DCBA)),
        (tag("hr:1", type="string[6]"), "hr:1", WireFormat(DataType.STRING, length=6)),
        (tag("coil:1", type="bool"), "coil:1", WireFormat(DataType.BOOL)),
        (tag("hr:1.2", type="bool"), "hr:1.2", WireFormat(DataType.BOOL, bit=2)),
        # Both may say the same thing; the tag's scaling comes along.
        (
            tag("hr:1:float32:CDAB", type="float32", byte_order="CDAB", scale=0.1, offset=5.0),
            "hr:1:float32:CDAB",
            WireFormat(DataType.FLOAT32, ByteOrder.CDAB, scale=0.1, offset=5.0),
        ),
        (tag("ir:4:int16", byte_order="BADC"), "ir:4:int16", WireFormat(DataType.INT16, ByteOrder.BADC)),
    ],
)
def test_resolve_tag(made: Tag, address: str, fmt: WireFormat) -> None:
    assert resolve_tag(made) == (parse_address(address), fmt)


@pytest.mark.parametrize(
    ("made", "message"),
    [
        (tag("hr:1:flaot32"), "tag 't': 'hr:1:flaot32': unknown type 'flaot32'"),
        (tag("hr:1:float32", type="int32"), "tag 't': its type int32 conflicts with the type in its address"),
        (tag("hr:1:string[4]", type="string[5]"), "its type string[5] conflicts"),
        (tag("hr:1:float32:CDAB", byte_order="ABCD"), "its byte order ABCD conflicts with the one in its address"),
        (tag("coil:1", type="int16"), "tag 't' at coil:1: a coil holds a single bit, so its type can only be bool"),
        (tag("hr:1.3", type="uint16"), "tag 't' at hr:1.3: a bit (.3) holds a bool, not uint16"),
        (tag("hr:65535", type="float32"), "tag 't' at hr:65535: float32 takes 2 registers, so it runs past"),
    ],
)
def test_resolve_tag_errors_name_the_tag(made: Tag, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_tag(made)
    assert message in str(caught.value)


def test_resolve_tag_in_modicon_style() -> None:
    assert resolve_tag(tag("40011", type="float32"), style="modicon") == (
        parse_address("hr:10"),
        WireFormat(DataType.FLOAT32),
    )


def test_every_tag_of_the_shipped_scenario_resolves() -> None:
    tags = TagMap.from_scenario(shipped_scenario("water_tank"), device="plc1")
    resolved = {name: resolve_tag(tags[name]) for name in tags}
    address, fmt = resolved["tank.level"]
    assert (str(address), fmt.type, fmt.words) == ("hr:0", DataType.FLOAT32, 2)
    assert all(str(address) == tags[name].address for name, (address, _) in resolved.items())
