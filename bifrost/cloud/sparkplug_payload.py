"""The Sparkplug B payload (Sparkplug 3.0, chapter 6, `sparkplug_b.proto`) and its protobuf wire codec.
Pure functions over bytes: no I/O.

Written from the specification's message definitions, with the spec's field numbers. Our own small
proto2 encoder and decoder rather than the `protobuf` runtime: the messages are few and fixed, it keeps
the `cloud` extra to aiomqtt and boto3, and it leaves the `protobuf` runtime free to be the independent
decoder our tests check us against. DataSet and Template values are not supported (an EncodeError
names them); unknown fields are skipped when decoding, as protobuf does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from bifrost.errors import EncodeError, ProtocolError

NAMESPACE = "spBv1.0"


class DataType(IntEnum):
    """Sparkplug data types, numbered as in the spec's `DataType` enum."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21


# Which `oneof value` field carries a value of each type (Metric numbering; PropertyValue is offset by -7).
_INT32 = {DataType.Int8, DataType.Int16, DataType.Int32, DataType.UInt8, DataType.UInt16, DataType.UInt32}
_INT64 = {DataType.Int64, DataType.UInt64, DataType.DateTime}
_SIGNED = {DataType.Int8: 32, DataType.Int16: 32, DataType.Int32: 32, DataType.Int64: 64}
_RANGE = {
    DataType.Int8: (-(2**7), 2**7 - 1),
    DataType.Int16: (-(2**15), 2**15 - 1),
    DataType.Int32: (-(2**31), 2**31 - 1),
    DataType.Int64: (-(2**63), 2**63 - 1),
    DataType.UInt8: (0, 2**8 - 1),
    DataType.UInt16: (0, 2**16 - 1),
    DataType.UInt32: (0, 2**32 - 1),
    DataType.UInt64: (0, 2**64 - 1),
    DataType.DateTime: (0, 2**64 - 1),
}
_STRINGS = {DataType.String, DataType.Text, DataType.UUID}
_BYTES = {DataType.Bytes, DataType.File}

# Sparkplug quality codes (the "Quality" property): 0 bad, 192 good, 500 stale.
QUALITY_BAD, QUALITY_GOOD, QUALITY_STALE = 0, 192, 500


@dataclass
class PropertyValue:
    type: int
    value: Any = None
    is_null: bool = False


@dataclass
class PropertySet:
    keys: list[str] = field(default_factory=list)
    values: list[PropertyValue] = field(default_factory=list)

    def get(self, key: str) -> PropertyValue | None:
        return self.values[self.keys.index(key)] if key in self.keys else None


@dataclass
class Metric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None  # ms since the epoch
    datatype: int | None = None
    is_historical: bool | None = None
    is_transient: bool | None = None
    is_null: bool | None = None
    properties: PropertySet | None = None
    value: Any = None


@dataclass
class Payload:
    timestamp: int | None = None  # ms since the epoch
    metrics: list[Metric] = field(default_factory=list)
    seq: int | None = None
    uuid: str | None = None
    body: bytes | None = None

    def metric(self, name: str) -> Metric:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(name)


# -- wire format -----------------------------------------------------------------------------------

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    if value < 0:
        raise EncodeError(f"varint {value}: negative values are sent as two's complement by the caller")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len_field(number: int, data: bytes) -> bytes:
    return _key(number, _LEN) + _varint(len(data)) + data


def _uint_field(number: int, value: int) -> bytes:
    return _key(number, _VARINT) + _varint(value)


def _bool_field(number: int, value: bool) -> bytes:
    return _key(number, _VARINT) + (b"\x01" if value else b"\x00")


def _value_fields(datatype: int, value: Any, base: int, where: str) -> bytes:
    """The oneof value of a Metric (base 10) or a PropertyValue (base 3)."""
    try:
        kind = DataType(datatype)
    except ValueError:
        raise EncodeError(f"{where}: datatype {datatype} is not a Sparkplug DataType") from None
    try:
        if kind is DataType.Boolean:
            return _bool_field(base + 4, bool(value))
        if kind in _INT32 or kind in _INT64:
            number = int(value)
            bits = 32 if kind in _INT32 else 64
            lo, hi = _RANGE[kind]
            if not lo <= number <= hi:
                raise EncodeError(f"{where}: {number} does not fit {kind.name}")
            return _uint_field(base if kind in _INT32 else base + 1, number & (2**bits - 1))
        if kind is DataType.Float:
            return _key(base + 2, _I32) + struct.pack("<f", float(value))
        if kind is DataType.Double:
            return _key(base + 3, _I64) + struct.pack("<d", float(value))
        if kind in _STRINGS:
            return _len_field(base + 5, str(value).encode())
        if kind in _BYTES and base == 10:
            return _len_field(16, bytes(value))
    except (TypeError, ValueError, OverflowError, struct.error) as exc:
        raise EncodeError(f"{where}: {value!r} is not a {kind.name}: {exc}") from None
    raise EncodeError(f"{where}: values of type {kind.name} are not supported")


def _encode_property_set(props: PropertySet) -> bytes:
    out = bytearray()
    for key in props.keys:
        out += _len_field(1, key.encode())
    for index, pv in enumerate(props.values):
        body = _uint_field(1, pv.type)
        if pv.is_null:
            body += _bool_field(2, True)
        else:
            body += _value_fields(pv.type, pv.value, 3, f"property {props.keys[index]!r}")
        out += _len_field(2, body)
    return bytes(out)


def encode_metric(metric: Metric) -> bytes:
    out = bytearray()
    if metric.name is not None:
        out += _len_field(1, metric.name.encode())
    if metric.alias is not None:
        out += _uint_field(2, metric.alias)
    if metric.timestamp is not None:
        out += _uint_field(3, metric.timestamp)
    if metric.datatype is not None:
        out += _uint_field(4, metric.datatype)
    if metric.is_historical is not None:
        out += _bool_field(5, metric.is_historical)
    if metric.is_transient is not None:
        out += _bool_field(6, metric.is_transient)
    if metric.is_null is not None:
        out += _bool_field(7, metric.is_null)
    if metric.properties is not None:
        out += _len_field(9, _encode_property_set(metric.properties))
    if not metric.is_null and metric.value is not None:
        if metric.datatype is None:
            raise EncodeError(f"metric {metric.name or metric.alias}: a value needs a datatype to be encoded")
        out += _value_fields(metric.datatype, metric.value, 10, f"metric {metric.name or metric.alias}")
    return bytes(out)


def encode_payload(payload: Payload, *, datatypes: dict[int, int] | None = None) -> bytes:
    """Encode; `datatypes` (alias -> datatype) types metrics sent by alias without a datatype (DATA)."""
    out = bytearray()
    if payload.timestamp is not None:
        out += _uint_field(1, payload.timestamp)
    for metric in payload.metrics:
        if metric.datatype is None and datatypes and metric.alias in datatypes and metric.value is not None:
            # DATA messages carry no datatype (tck-id-payloads-metric-datatype-not-req) but the value still
            # goes in the field its type selects.
            typed = Metric(**{**metric.__dict__, "datatype": datatypes[metric.alias]})
            body = encode_metric(typed)
            body = _strip_datatype(body)
        else:
            body = encode_metric(metric)
        out += _len_field(2, body)
    if payload.seq is not None:
        out += _uint_field(3, payload.seq)
    if payload.uuid is not None:
        out += _len_field(4, payload.uuid.encode())
    if payload.body is not None:
        out += _len_field(5, payload.body)
    return bytes(out)


def _strip_datatype(encoded_metric: bytes) -> bytes:
    out = bytearray()
    for number, _wire, _raw, start, end in _fields(encoded_metric, "metric"):
        if number != 4:
            out += encoded_metric[start:end]
    return bytes(out)


def _read_varint(data: bytes, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtocolError(f"{where}: truncated varint at byte {pos}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtocolError(f"{where}: varint longer than 10 bytes at byte {pos}")


def _fields(data: bytes, where: str) -> Iterator[tuple[int, int, Any, int, int]]:
    """(field number, wire type, value, start, end) for each field; bytes for LEN, int for the others."""
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _read_varint(data, pos, where)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtocolError(f"{where}: field number 0 at byte {start}")
        value: Any
        if wire == _VARINT:
            value, pos = _read_varint(data, pos, where)
        elif wire == _I64:
            if pos + 8 > len(data):
                raise ProtocolError(f"{where}: field {number} truncated at byte {pos}")
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == _I32:
            if pos + 4 > len(data):
                raise ProtocolError(f"{where}: field {number} truncated at byte {pos}")
            value, pos = data[pos : pos + 4], pos + 4
        elif wire == _LEN:
            length, pos = _read_varint(data, pos, where)
            if pos + length > len(data):
                raise ProtocolError(f"{where}: field {number} claims {length} bytes, {len(data) - pos} left")
            value, pos = data[pos : pos + length], pos + length
        else:
            raise ProtocolError(f"{where}: field {number} has wire type {wire}, which proto2 payloads do not use")
        yield number, wire, value, start, pos


def _text(raw: Any, where: str) -> str:
    try:
        return bytes(raw).decode()
    except (UnicodeDecodeError, TypeError):
        raise ProtocolError(f"{where}: not UTF-8 text") from None


def _decode_value(number: int, wire: int, raw: Any, base: int, datatype: int | None, where: str) -> Any:
    offset = number - base
    if offset in (0, 1) and wire == _VARINT:
        bits = 32 if offset == 0 else 64
        value = int(raw) & (2**bits - 1)
        if datatype in _SIGNED and _SIGNED[DataType(datatype)] == bits and value >= 2 ** (bits - 1):
            value -= 2**bits  # two's complement, as the encoder wrote it
        return value
    if offset == 2 and wire == _I32:
        return struct.unpack("<f", raw)[0]
    if offset == 3 and wire == _I64:
        return struct.unpack("<d", raw)[0]
    if offset == 4 and wire == _VARINT:
        return bool(raw)
    if offset == 5 and wire == _LEN:
        return _text(raw, where)
    if offset == 6 and wire == _LEN and base == 10:
        return bytes(raw)
    return None  # DataSet, Template, extensions: not decoded


def _decode_property_set(data: bytes, where: str) -> PropertySet:
    props = PropertySet()
    for number, wire, raw, _, _ in _fields(data, where):
        if number == 1 and wire == _LEN:
            props.keys.append(_text(raw, where))
        elif number == 2 and wire == _LEN:
            pv = PropertyValue(type=0)
            for n, w, r, _, _ in _fields(raw, where):
                if n == 1 and w == _VARINT:
                    pv.type = r
                elif n == 2 and w == _VARINT:
                    pv.is_null = bool(r)
                elif 3 <= n <= 8:
                    pv.value = _decode_value(n, w, r, 3, pv.type, where)
            props.values.append(pv)
    if len(props.keys) != len(props.values):
        raise ProtocolError(f"{where}: a PropertySet has {len(props.keys)} keys and {len(props.values)} values")
    return props


def decode_metric(data: bytes, where: str = "metric", datatypes: dict[int, int] | None = None) -> Metric:
    metric = Metric()
    value_field: tuple[int, int, Any] | None = None
    for number, wire, raw, _, _ in _fields(data, where):
        if number == 1 and wire == _LEN:
            metric.name = _text(raw, where)
        elif number == 2 and wire == _VARINT:
            metric.alias = raw
        elif number == 3 and wire == _VARINT:
            metric.timestamp = raw
        elif number == 4 and wire == _VARINT:
            metric.datatype = raw
        elif number == 5 and wire == _VARINT:
            metric.is_historical = bool(raw)
        elif number == 6 and wire == _VARINT:
            metric.is_transient = bool(raw)
        elif number == 7 and wire == _VARINT:
            metric.is_null = bool(raw)
        elif number == 9 and wire == _LEN:
            metric.properties = _decode_property_set(raw, where)
        elif 10 <= number <= 19:
            value_field = (number, wire, raw)
    if value_field is not None:
        datatype = metric.datatype
        if datatype is None and datatypes and metric.alias is not None:
            datatype = datatypes.get(metric.alias)
        metric.value = _decode_value(*value_field, 10, datatype, where)
    return metric


def decode_payload(data: bytes, *, datatypes: dict[int, int] | None = None) -> Payload:
    """Decode a Sparkplug B payload; malformed bytes raise ProtocolError saying where."""
    payload = Payload()
    for number, wire, raw, _start, _ in _fields(bytes(data), "payload"):
        if number == 1 and wire == _VARINT:
            payload.timestamp = raw
        elif number == 2 and wire == _LEN:
            payload.metrics.append(decode_metric(raw, f"payload metric {len(payload.metrics)}", datatypes))
        elif number == 3 and wire == _VARINT:
            payload.seq = raw
        elif number == 4 and wire == _LEN:
            payload.uuid = _text(raw, "payload uuid")
        elif number == 5 and wire == _LEN:
            payload.body = bytes(raw)
    return payload
