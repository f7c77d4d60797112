"""The tag model: what a tag is, how it sits on the wire, and the value a read returns.

Configuration (Tag, TagMap) is pydantic, validated once when loaded. DataPoint is on the hot path
(a fleet poll makes millions a second), so it is a native class, made in Rust.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bifrost._native import DataPoint as DataPoint  # re-exported: `from bifrost import DataPoint`

Value = bool | int | float | str


class DataType(str, Enum):
    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"

    @property
    def bits(self) -> int:
        """Width on the wire in bits (0 for strings, whose width is their length)."""
        return _BITS[self]

    @property
    def is_integer(self) -> bool:
        return self in _INTEGER_RANGES

    @property
    def is_float(self) -> bool:
        return self in (DataType.FLOAT32, DataType.FLOAT64)


_BITS = {
    DataType.BOOL: 16,
    DataType.INT16: 16,
    DataType.UINT16: 16,
    DataType.INT32: 32,
    DataType.UINT32: 32,
    DataType.INT64: 64,
    DataType.UINT64: 64,
    DataType.FLOAT32: 32,
    DataType.FLOAT64: 64,
    DataType.STRING: 0,
}
_INTEGER_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}


def integer_range(dtype: DataType) -> tuple[int, int]:
    return _INTEGER_RANGES[dtype]


class ByteOrder(str, Enum):
    """Order of the bytes of a multi-word value: A is the most significant byte.

    The two letters that swap are independent: BADC swaps the bytes in each word, CDAB reverses the
    words, DCBA does both (plain little-endian).
    """

    ABCD = "ABCD"
    BADC = "BADC"
    CDAB = "CDAB"
    DCBA = "DCBA"

    @property
    def swaps_bytes(self) -> bool:
        return self in (ByteOrder.BADC, ByteOrder.DCBA)

    @property
    def swaps_words(self) -> bool:
        return self in (ByteOrder.CDAB, ByteOrder.DCBA)


class Quality(str, Enum):
    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


# DataPoint (imported above) is a Rust class, rust/bifrost-py/src/point.rs, so that a bulk read builds
# its points in one go: DataPoint(value, quality=Quality.GOOD, timestamp=None), immutable, with .good,
# .datetime (UTC), equality by value, quality and timestamp (so unhashable), and pickling. It caches
# Quality.GOOD and Quality.BAD on first use.

_STRING_TYPE = re.compile(r"^string\[(\d+)\]$")


def with_article(type_name: str) -> str:
    """`an int16`, `a uint16`, `a float32`: a type name as a message reads it aloud."""
    return f"an {type_name}" if type_name.startswith("int") else f"a {type_name}"


def parse_type(name: str) -> tuple[DataType, int | None]:
    """`float32` -> (FLOAT32, None); `string[8]` -> (STRING, 8). A ValueError lists what is accepted."""
    match = _STRING_TYPE.match(name)
    if match:
        return DataType.STRING, int(match.group(1))
    try:
        dtype = DataType(name)
    except ValueError:
        accepted = ", ".join(t.value for t in DataType if t is not DataType.STRING) + ", string[N]"
        raise ValueError(f"unknown type {name!r}; expected one of {accepted}") from None
    if dtype is DataType.STRING:
        raise ValueError("a string type needs its length in bytes: string[N]")
    return dtype, None


class Tag(BaseModel):
    """A named value on a device: its wire type, address and conversion to engineering units."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    address: str = Field(description="Protocol address, e.g. 'hr:0', 'coil:3', 'hr:3.7'")
    type: DataType = DataType.UINT16
    length: int | None = Field(default=None, ge=1, le=246, description="Bytes of a string[N] tag")
    byte_order: ByteOrder = ByteOrder.ABCD
    scale: float = 1.0
    offset: float = 0.0
    writable: bool = True
    unit: str | None = Field(default=None, description="Engineering unit, e.g. '%' or 'degC'")
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_string_length(cls, data: Any) -> Any:
        # `string[N]` is one word in files but two fields here: the type and its length.
        if isinstance(data, dict) and isinstance(data.get("type"), str):
            match = _STRING_TYPE.match(data["type"])
            if match:
                data = {**data, "type": DataType.STRING, "length": int(match.group(1))}
        return data

    @field_validator("scale")
    @classmethod
    def _scale_not_zero(cls, scale: float) -> float:
        if scale == 0:
            raise ValueError("scale must not be 0 (the raw value could not be recovered)")
        return scale

    @model_validator(mode="after")
    def _string_has_length(self) -> Tag:
        if self.type is DataType.STRING and self.length is None:
            raise ValueError("a string tag needs a length: write its type as string[N]")
        if self.type is not DataType.STRING and self.length is not None:
            raise ValueError(f"length is only for string tags, not {self.type.value}")
        return self

    @property
    def type_name(self) -> str:
        return f"string[{self.length}]" if self.type is DataType.STRING else self.type.value


class TagMap(BaseModel):
    """The tags of one device, by name: the client's tag database."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tags: dict[str, Tag] = Field(default_factory=dict)
    unit: int | None = Field(default=None, description="Protocol unit / slave id the tags live on, if any")

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        # Let `{"tank.level": {"address": "hr:0", ...}}` omit the name it is keyed by.
        if isinstance(data, dict) and isinstance(data.get("tags"), dict):
            tags = {
                key: ({"name": key, **value} if isinstance(value, dict) and "name" not in value else value)
                for key, value in data["tags"].items()
            }
            data = {**data, "tags": tags}
        return data

    @model_validator(mode="after")
    def _keys_match_names(self) -> TagMap:
        for key, tag in self.tags.items():
            if key != tag.name:
                raise ValueError(f"tag {key!r} is named {tag.name!r}; the key and the name must match")
        return self

    @classmethod
    def of(cls, *tags: Tag, unit: int | None = None) -> TagMap:
        return cls(tags={tag.name: tag for tag in tags}, unit=unit)

    @classmethod
    def from_scenario(cls, path: str | Path, device: str) -> TagMap:
        """The tag database of `device` in a scenario file, ignoring its simulation keys."""
        from bifrost.tagfile import load_tag_file

        return load_tag_file(path).tag_map(device)

    def __getitem__(self, name: str) -> Tag:
        try:
            return self.tags[name]
        except KeyError:
            raise KeyError(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
        """What to tell a user who asked for `name`, which is not a tag: the closest name, and the tags."""
        return f"no tag {name!r}; {self.suggest(name)}known tags: {', '.join(sorted(self.tags)) or '(none)'}"

    def suggest(self, name: str) -> str:
        """`did you mean 'tank.level'? ` for a name close to a tag's, else nothing."""
        close = difflib.get_close_matches(str(name), list(self.tags), n=1)
        return f"did you mean {close[0]!r}? " if close else ""

    def __contains__(self, name: object) -> bool:
        return name in self.tags

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # iterate names, like a mapping
        return iter(self.tags)

    def __len__(self) -> int:
        return len(self.tags)

    def get(self, name: str) -> Tag | None:
        return self.tags.get(name)

    def as_mapping(self) -> Mapping[str, Tag]:
        return self.tags
