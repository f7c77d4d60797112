"""The value codec: golden vectors, round trips for every type x byte order, and its errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifrost.errors import ConfigError, EncodeError
from bifrost.tags import ByteOrder, DataType, integer_range
from bifrost.values import WireFormat, decode, encode, words_for

ORDERS = list(ByteOrder)
INTEGER_TYPES = [t for t in DataType if t.is_integer]


@pytest.mark.parametrize(
    ("order", "words"),
    [("ABCD", [0x42F6, 0xE979]), ("BADC", [0xF642, 0x79E9]), ("CDAB", [0xE979, 0x42F6]), ("DCBA", [0x79E9, 0xF642])],
)
def test_float32_123_456_in_every_byte_order(order: str, words: list[int]) -> None:
    assert encode(123.456, "float32", order) == words
    assert decode(words, "float32", order) == pytest.approx(123.456, rel=1e-7)


@pytest.mark.parametrize(
    ("dtype", "order", "value", "words"),
    [
        ("int16", "ABCD", -2, [0xFFFE]),
        ("int16", "BADC", 0x1234, [0x3412]),
        ("uint16", "DCBA", 0x1234, [0x3412]),
        ("uint16", "CDAB", 0x1234, [0x1234]),
        ("int32", "ABCD", 0x01020304, [0x0102, 0x0304]),
        ("int32", "CDAB", 0x01020304, [0x0304, 0x0102]),
        ("uint32", "BADC", 0x01020304, [0x0201, 0x0403]),
        ("uint32", "DCBA", 0x01020304, [0x0403, 0x0201]),
        ("int64", "ABCD", 0x0102030405060708, [0x0102, 0x0304, 0x0506, 0x0708]),
        ("uint64", "CDAB", 0x0102030405060708, [0x0708, 0x0506, 0x0304, 0x0102]),
        ("uint64", "DCBA", 0x0102030405060708, [0x0807, 0x0605, 0x0403, 0x0201]),
        ("float64", "ABCD", 1.0, [0x3FF0, 0, 0, 0]),
        ("float64", "DCBA", 1.0, [0, 0, 0, 0xF03F]),
        ("float32", "ABCD", -0.0, [0x8000, 0]),
    ],
)
def test_known_encodings(dtype: str, order: str, value: float, words: list[int]) -> None:
    assert encode(value, dtype, order) == words
    assert decode(words, dtype, order) == value


def test_strings_are_latin1_nul_padded_and_only_byte_swapped() -> None:
    assert encode("hello", "string", "ABCD", length=5) == [0x6865, 0x6C6C, 0x6F00]
    assert encode("hello", "string", "CDAB", length=5) == [0x6865, 0x6C6C, 0x6F00]
    assert encode("hello", "string", "DCBA", length=5) == [0x6568, 0x6C6C, 0x006F]
    assert decode([0x6865, 0x6C6C, 0x6F00], "string", length=5) == "hello"
    assert decode([0x6869, 0, 0], "string", length=6) == "hi"
    assert encode("é", "string", length=2) == [0xE900]


def test_bits_read_and_merge_into_their_register() -> None:
    fmt = WireFormat(DataType.BOOL, bit=7)
    assert fmt.decode([0x0080]) is True
    assert fmt.decode([0xFF7F]) is False
    assert fmt.encode(True, current=[0x0001]) == [0x0081]
    assert fmt.encode(False, current=[0xFFFF]) == [0xFF7F]
    whole = WireFormat(DataType.BOOL)
    assert whole.decode([5]) is True
    assert whole.encode(True) == [1]
    assert whole.encode(0) == [0]


def test_scale_and_offset_convert_to_engineering_units() -> None:
    fmt = WireFormat(DataType.INT16, scale=0.1, offset=-40.0)
    assert fmt.encode(21.5) == [615]
    assert fmt.decode([615]) == pytest.approx(21.5)
    # Rounding half to even, the same in Rust.
    assert WireFormat(DataType.UINT16, scale=0.5).encode(1.25) == [2]


@pytest.mark.parametrize(
    ("dtype", "value", "why"),
    [
        ("int16", 40000, "out of range for int16"),
        ("uint16", -1, "out of range for uint16"),
        ("uint64", 2**64, "out of range for uint64"),
        ("int32", 1.5, "not a whole number"),
        ("int32", math.inf, "not a finite number"),
        ("float32", 1e39, "out of range for float32"),
        ("int16", "12", "takes a number"),
        ("bool", 2, "bool takes True/False"),
    ],
)
def test_values_that_do_not_fit_are_errors_never_wrapped(dtype: str, value: object, why: str) -> None:
    with pytest.raises(EncodeError, match=why):
        encode(value, dtype)  # type: ignore[arg-type]


def test_string_errors_name_the_problem() -> None:
    with pytest.raises(EncodeError, match="holds at most 4"):
        encode("hello", "string", length=4)
    with pytest.raises(EncodeError, match="outside latin-1 at index 1"):
        encode("a€", "string", length=4)
    with pytest.raises(EncodeError, match="takes a str"):
        encode(5, "string", length=4)


def test_impossible_formats_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="scale must not be 0"):
        WireFormat(DataType.INT16, scale=0)
    with pytest.raises(ConfigError, match="bit 16"):
        WireFormat(DataType.BOOL, bit=16)
    with pytest.raises(ConfigError, match="needs a length"):
        WireFormat(DataType.STRING)
    with pytest.raises(ValueError, match="takes 2 word"):
        decode([1], "float32")


def test_word_counts() -> None:
    assert [words_for(t) for t in (DataType.BOOL, DataType.INT16, DataType.UINT32, DataType.FLOAT64)] == [1, 1, 2, 4]
    assert words_for(DataType.STRING, 5) == 3


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[DataType, int, object]:
    dtype = draw(st.sampled_from(list(DataType)))
    length = 0
    value: object
    if dtype is DataType.BOOL:
        value = draw(st.booleans())
    elif dtype is DataType.STRING:
        length = draw(st.integers(1, 40))
        value = draw(st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=length))
    elif dtype is DataType.FLOAT32:
        value = draw(st.floats(width=32, allow_nan=False))
    elif dtype is DataType.FLOAT64:
        value = draw(st.floats(allow_nan=False))
    else:
        low, high = integer_range(dtype)
        value = draw(st.integers(low, high))
    return dtype, length, value


@given(typed_values(), st.sampled_from(ORDERS))
def test_every_type_round_trips_in_every_byte_order(case: tuple[DataType, int, object], order: ByteOrder) -> None:
    dtype, length, value = case
    fmt = WireFormat(dtype, order, length=length)
    words = fmt.encode(value)  # type: ignore[arg-type]
    assert len(words) == fmt.words
    assert all(0 <= word <= 0xFFFF for word in words)
    assert fmt.decode(words) == value


@given(st.sampled_from(INTEGER_TYPES), st.sampled_from(ORDERS), st.data())
def test_any_words_decode_and_encode_back_to_the_same_words(
    dtype: DataType, order: ByteOrder, data: st.DataObject
) -> None:
    fmt = WireFormat(dtype, order)
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=fmt.words, max_size=fmt.words))
    assert fmt.encode(fmt.decode(words)) == words
