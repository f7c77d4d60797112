"""OPC UA values <-> Bifrost values, no I/O: the Variant type a tag writes, range checks, the value a
read gives, scale/offset (engineering = raw * scale + offset, as for Modbus), and StatusCode quality.
"""

from __future__ import annotations

import datetime
import math
import struct
import uuid

from bifrost.errors import EncodeError
from bifrost.opcua.engine import VariantType
from bifrost.opcua.nodes import NodeId, QualifiedName
from bifrost.tags import DataType, Quality, Tag, Value

VARIANT_OF_TYPE = {
    DataType.BOOL: VariantType.BOOLEAN,
    DataType.INT16: VariantType.INT16,
    DataType.UINT16: VariantType.UINT16,
    DataType.INT32: VariantType.INT32,
    DataType.UINT32: VariantType.UINT32,
    DataType.INT64: VariantType.INT64,
    DataType.UINT64: VariantType.UINT64,
    DataType.FLOAT32: VariantType.FLOAT,
    DataType.FLOAT64: VariantType.DOUBLE,
    DataType.STRING: VariantType.STRING,
}
INTEGER_RANGES = {
    VariantType.SBYTE: (-(2**7), 2**7 - 1),
    VariantType.BYTE: (0, 2**8 - 1),
    VariantType.INT16: (-(2**15), 2**15 - 1),
    VariantType.UINT16: (0, 2**16 - 1),
    VariantType.INT32: (-(2**31), 2**31 - 1),
    VariantType.UINT32: (0, 2**32 - 1),
    VariantType.INT64: (-(2**63), 2**63 - 1),
    VariantType.UINT64: (0, 2**64 - 1),
}
WRITABLE_VARIANTS = frozenset({VariantType.BOOLEAN, VariantType.FLOAT, VariantType.DOUBLE, VariantType.STRING})
WRITABLE_VARIANTS |= frozenset(INTEGER_RANGES)


def quality_of(status: int) -> Quality:
    """The top two bits of a StatusCode: 00 Good, 01 Uncertain, 10 and 11 Bad (Part 4, 7.39)."""
    severity = (status >> 30) & 0b11
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def variant_of_tag(tag: Tag) -> VariantType:
    return VARIANT_OF_TYPE[tag.type]


def encode(value: Value, variant: VariantType, tag: Tag | None = None) -> object:
    """`value` as the Python value of a `variant` Variant: the tag's scale/offset inverted, whole
    numbers for integer types, in range. An EncodeError says why not."""
    name = variant.name.capitalize() if variant is not VariantType.SBYTE else "SByte"
    if variant is VariantType.BOOLEAN:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
        raise EncodeError(f"Boolean takes True/False (or 0/1), not {value!r}")
    if variant is VariantType.STRING:
        if not isinstance(value, str):
            raise EncodeError(f"String takes a str, not {type(value).__name__} {value!r}")
        if tag is not None and tag.length is not None and len(value.encode("utf-8")) > tag.length:
            raise EncodeError(f"{value!r} is longer than the tag's string[{tag.length}] (in UTF-8 bytes)")
        return value
    if isinstance(value, str) or not isinstance(value, (bool, int, float)):
        raise EncodeError(f"{name} takes a number, not {type(value).__name__} {value!r}")
    number: int | float = value
    scaled = tag is not None and (tag.scale != 1.0 or tag.offset != 0.0)
    if tag is not None and scaled:
        number = (float(number) - tag.offset) / tag.scale
    if variant in (VariantType.FLOAT, VariantType.DOUBLE):
        number = float(number)
        if variant is VariantType.FLOAT and math.isfinite(number) and math.isinf(_round_to_f32(number)):
            raise EncodeError(f"{value!r} is out of range for Float (float32)")
        return number
    if variant not in INTEGER_RANGES:
        raise EncodeError(
            f"writing a {variant.name} Variant is not supported; Bifrost writes numbers, bools and strings"
        )
    if isinstance(number, float):
        if not math.isfinite(number):
            raise EncodeError(f"{value!r} is not a finite number, so it cannot be written as {name}")
        if not scaled and not number.is_integer():
            raise EncodeError(f"{value!r} is not a whole number; {name} holds integers")
        number = round(number)
    low, high = INTEGER_RANGES[variant]
    if not low <= number <= high:
        raise EncodeError(f"{value!r} is out of range for {name} ({low}..{high})")
    return int(number)


def _round_to_f32(number: float) -> float:
    try:
        return float(struct.unpack(">f", struct.pack(">f", number))[0])
    except OverflowError:
        return math.inf


class NotScalar(ValueError):
    """The node holds an array or a structure, which a DataPoint cannot carry."""


def decode(value: object, tag: Tag | None = None) -> Value | None:
    """A read value as a DataPoint carries it: numbers, bools and strings as they are (scaled by the
    tag), DateTime as ISO 8601 text, Guid, NodeId and QualifiedName in their string forms,
    ByteString as hex. Arrays and structures raise NotScalar."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        if tag is not None and (tag.scale != 1.0 or tag.offset != 0.0):
            return value * tag.scale + tag.offset
        return value
    if isinstance(value, datetime.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=datetime.timezone.utc)
        return moment.isoformat()
    if isinstance(value, (uuid.UUID, NodeId, QualifiedName)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    kind = "an array" if isinstance(value, (list, tuple)) else f"a {type(value).__name__}"
    raise NotScalar(f"the node holds {kind}; Bifrost reads scalar values")
