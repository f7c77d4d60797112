"""The Rust codec in bifrost._native is held to bifrost.values: same words, same values, same refusals."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bifrost import _native
from bifrost.errors import EncodeError
from bifrost.tags import ByteOrder, DataType
from bifrost.values import WireFormat

formats = st.builds(
    lambda dtype, order, length, scaled, scale, offset: WireFormat(
        dtype,
        order,
        length=length if dtype is DataType.STRING else 0,
        scale=scale if scaled and dtype not in (DataType.BOOL, DataType.STRING) else 1.0,
        offset=offset if scaled and dtype not in (DataType.BOOL, DataType.STRING) else 0.0,
    ),
    st.sampled_from(list(DataType)),
    st.sampled_from(list(ByteOrder)),
    st.integers(1, 20),
    st.booleans(),
    st.sampled_from([0.1, 0.01, 2.0, -1.5, 1e-3, 10.0]),
    st.sampled_from([0.0, -40.0, 273.15, 1e6]),
)

any_value = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(max_codepoint=300), max_size=24),
)


def _kwargs(fmt: WireFormat) -> dict[str, Any]:
    return {"length": fmt.length, "scale": fmt.scale, "offset": fmt.offset, "bit": fmt.bit}


def _same(left: object, right: object) -> bool:
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left) and math.isnan(right):
        return True
    return type(left) is type(right) and left == right


@settings(max_examples=500)
@given(formats, st.data())
def test_rust_decodes_any_words_exactly_as_python(fmt: WireFormat, data: st.DataObject) -> None:
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=fmt.words, max_size=fmt.words))
    expected = fmt.decode(words)
    got = _native.decode(words, fmt.type.value, fmt.byte_order.value, **_kwargs(fmt))
    assert _same(got, expected), (got, expected)


@settings(max_examples=500)
@given(formats, any_value)
def test_rust_encodes_any_value_exactly_as_python_or_refuses_it_too(fmt: WireFormat, value: Any) -> None:
    try:
        expected: list[int] | None = fmt.encode(value)
    except EncodeError:
        expected = None
    try:
        got: list[int] | None = _native.encode(value, fmt.type.value, fmt.byte_order.value, **_kwargs(fmt))
    except ValueError:
        got = None
    assert got == expected


@given(st.integers(0, 15), st.booleans(), st.integers(0, 0xFFFF))
def test_bits_merge_the_same_in_rust(bit: int, flag: bool, current: int) -> None:
    fmt = WireFormat(DataType.BOOL, bit=bit)
    assert _native.encode(flag, "bool", bit=bit, current=current) == fmt.encode(flag, current=[current])
    assert _native.decode([current], "bool", bit=bit) is fmt.decode([current])
