"""The Sparkplug B payload codec, checked against Google's protobuf runtime decoding the spec's schema."""

from __future__ import annotations

import contextlib
import math
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifrost.cloud.sparkplug_payload import (
    DataType,
    Metric,
    Payload,
    PropertySet,
    PropertyValue,
    decode_payload,
    encode_payload,
)
from bifrost.errors import EncodeError, ProtocolError

RANGES = {
    DataType.Int8: (-(2**7), 2**7 - 1),
    DataType.Int16: (-(2**15), 2**15 - 1),
    DataType.Int32: (-(2**31), 2**31 - 1),
    DataType.Int64: (-(2**63), 2**63 - 1),
    DataType.UInt8: (0, 2**8 - 1),
    DataType.UInt16: (0, 2**16 - 1),
    DataType.UInt32: (0, 2**32 - 1),
    DataType.UInt64: (0, 2**64 - 1),
}


def typed_values() -> st.SearchStrategy[tuple[DataType, Any]]:
    ints = [st.tuples(st.just(t), st.integers(lo, hi)) for t, (lo, hi) in RANGES.items()]
    return st.one_of(
        *ints,
        st.tuples(st.just(DataType.Boolean), st.booleans()),
        st.tuples(st.just(DataType.Double), st.floats(allow_nan=False)),
        st.tuples(st.just(DataType.Float), st.floats(width=32, allow_nan=False)),
        st.tuples(st.just(DataType.String), st.text()),
        st.tuples(st.just(DataType.Bytes), st.binary()),
    )


@given(st.lists(typed_values(), max_size=5), st.integers(0, 255), st.integers(0, 2**63))
def test_round_trip(values: list[tuple[DataType, Any]], seq: int, stamp: int) -> None:
    metrics = [
        Metric(name=f"m{i}", alias=i + 1, timestamp=stamp, datatype=int(t), value=v) for i, (t, v) in enumerate(values)
    ]
    back = decode_payload(encode_payload(Payload(timestamp=stamp, metrics=metrics, seq=seq)))
    assert back.seq == seq and back.timestamp == stamp
    assert [(m.name, m.alias, m.datatype, m.value) for m in back.metrics] == [
        (m.name, m.alias, m.datatype, m.value) for m in metrics
    ]


def _wire_value(metric: Any) -> Any:
    kind = metric.WhichOneof("value")
    return None if kind is None else getattr(metric, kind)


@given(st.lists(typed_values(), min_size=1, max_size=5))
def test_the_independent_decoder_reads_what_we_encode(spb: type, values: list[tuple[DataType, Any]]) -> None:
    metrics = [
        Metric(name=f"m{i}", alias=i + 1, timestamp=7, datatype=int(t), value=v) for i, (t, v) in enumerate(values)
    ]
    theirs = spb.FromString(encode_payload(Payload(timestamp=1, metrics=metrics, seq=9)))  # type: ignore[attr-defined]
    assert theirs.seq == 9 and theirs.timestamp == 1
    for ours, their in zip(metrics, theirs.metrics, strict=True):
        assert (their.name, their.alias, their.datatype, their.timestamp) == (ours.name, ours.alias, ours.datatype, 7)
        raw = _wire_value(their)
        kind = DataType(ours.datatype)
        if kind in (DataType.Int8, DataType.Int16, DataType.Int32):
            assert raw == ours.value & 0xFFFFFFFF  # two's complement in a uint32, as the spec says
        elif kind is DataType.Int64:
            assert raw == ours.value & 0xFFFFFFFFFFFFFFFF
        elif kind is DataType.Float:
            assert raw == ours.value or (math.isinf(raw) and math.isinf(ours.value))
        else:
            assert raw == ours.value


def test_we_decode_what_the_independent_encoder_writes(spb: type) -> None:
    theirs = spb(timestamp=5, seq=200)
    theirs.metrics.add(name="a", alias=1, datatype=int(DataType.Int16), int_value=(-3) & 0xFFFFFFFF)
    theirs.metrics.add(alias=2, is_historical=True, double_value=2.5)
    m = theirs.metrics.add(name="q", datatype=int(DataType.Boolean), boolean_value=True)
    m.properties.keys.append("Quality")
    m.properties.values.add(type=int(DataType.Int32), int_value=192)
    ours = decode_payload(theirs.SerializeToString())
    assert (ours.timestamp, ours.seq) == (5, 200)
    assert ours.metrics[0].value == -3
    assert (ours.metrics[1].alias, ours.metrics[1].is_historical, ours.metrics[1].value) == (2, True, 2.5)
    props = ours.metrics[2].properties
    assert props is not None and props.get("Quality") == PropertyValue(int(DataType.Int32), 192)


def test_data_metrics_by_alias_carry_no_datatype_but_the_typed_value_field(spb: type) -> None:
    raw = encode_payload(
        Payload(timestamp=1, seq=1, metrics=[Metric(alias=4, timestamp=1, value=-2)]),
        datatypes={4: int(DataType.Int32)},
    )
    their = spb.FromString(raw).metrics[0]  # type: ignore[attr-defined]
    assert not their.HasField("datatype") and their.int_value == (-2) & 0xFFFFFFFF
    assert decode_payload(raw, datatypes={4: int(DataType.Int32)}).metrics[0].value == -2


def test_null_and_property_sets() -> None:
    props = PropertySet(["Quality"], [PropertyValue(int(DataType.Int32), 0)])
    raw = encode_payload(
        Payload(metrics=[Metric(name="n", datatype=int(DataType.Float), is_null=True, properties=props)])
    )
    back = decode_payload(raw).metrics[0]
    assert back.is_null and back.value is None and back.properties == props


@pytest.mark.parametrize(
    ("metric", "match"),
    [
        (Metric(name="x", datatype=int(DataType.Int8), value=200), "does not fit Int8"),
        (Metric(name="x", datatype=int(DataType.UInt16), value=-1), "does not fit UInt16"),
        (Metric(name="x", datatype=99, value=1), "not a Sparkplug DataType"),
        (Metric(name="x", datatype=int(DataType.DataSet), value=1), "DataSet are not supported"),
        (Metric(name="x", value=1), "needs a datatype"),
        (Metric(name="x", datatype=int(DataType.Int32), value="abc"), "not a Int32"),
    ],
)
def test_encode_errors_name_the_metric(metric: Metric, match: str) -> None:
    with pytest.raises(EncodeError, match=match):
        encode_payload(Payload(metrics=[metric]))


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x08", "truncated varint"),
        (b"\x12\x05\x0a", "claims 5 bytes"),
        (b"\x0b", "wire type 3"),
        (b"\x00", "field number 0"),
        (b"\x12\x02\x0a\x05", "claims 5 bytes, 0 left"),
        (b"\x12\x03\x0a\x01\xff", "not UTF-8"),
        (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
    ],
)
def test_malformed_payloads_raise_protocol_errors(raw: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_payload(raw)


@given(st.binary(max_size=64))
def test_random_bytes_never_crash_the_decoder(raw: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_payload(raw)


def test_float_field_is_fixed32() -> None:
    raw = encode_payload(Payload(metrics=[Metric(alias=1, datatype=int(DataType.Float), value=1.5)]))
    assert struct.pack("<f", 1.5) in raw
