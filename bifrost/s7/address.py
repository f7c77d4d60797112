"""S7 addresses (PLC4X style) and S7 types: the grammar of DESIGN and one table of types.

Addresses, with an optional leading `%` and an optional `:TYPE` (needed when neither the address nor
the tag gives a type):

    DB1.DBX4.0  DB1.DBB2  DB1.DBW6  DB1.DBD0   a bit, byte, word or double word of a data block
    DB1:10:REAL  DB1:4.0:BOOL                  the short form: DB, byte offset (and bit), type
    M10.0  MB4  MW20  MD24                     flags (merker)
    I0.0  IB0  IW4  ID0   Q0.1  QB0  QW2  QD0  inputs and outputs (process image)
    DB1.DBW0:INT[10]  DB1.DBX8:STRING[20]      arrays of a type; STRING[n] is a string of n chars

`TYPES` is the one table of S7 types: their width, and the Bifrost DataType each maps to and from
(bool BOOL, int16 INT, uint16 WORD/UINT, int32 DINT, uint32 DWORD/UDINT, int64 LINT, uint64
LWORD/ULINT, float32 REAL, float64 LREAL, string[N] STRING[N]). Types with no Bifrost DataType are
still read and written: BYTE/USINT/SINT as ints, CHAR as a one-character string, TIME as an int of
milliseconds, DTL and DATE_AND_TIME as an ISO 8601 string. S7 is big-endian throughout.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bifrost.errors import ConfigError, EncodeError
from bifrost.s7.pdu import Area, DataTransport, ItemData, TransportSize, VarSpec
from bifrost.tags import DataType, Tag, Value, integer_range

S7Value = Value | tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class S7Type:
    """One S7 elementary type: its name, bytes on the wire, and how a value is packed."""

    name: str
    size: int
    dtype: DataType | None  # the Bifrost DataType it maps to, if any
    pack: str = ""  # struct format, for the plain numeric types

    @property
    def is_bool(self) -> bool:
        return self.name == "BOOL"

    @property
    def is_string(self) -> bool:
        return self.name == "STRING"


_T = S7Type
TYPES: dict[str, S7Type] = {
    t.name: t
    for t in (
        _T("BOOL", 1, DataType.BOOL),
        _T("BYTE", 1, None, ">B"),
        _T("USINT", 1, None, ">B"),
        _T("SINT", 1, None, ">b"),
        _T("CHAR", 1, None),
        _T("WORD", 2, DataType.UINT16, ">H"),
        _T("UINT", 2, DataType.UINT16, ">H"),
        _T("INT", 2, DataType.INT16, ">h"),
        _T("DWORD", 4, DataType.UINT32, ">I"),
        _T("UDINT", 4, DataType.UINT32, ">I"),
        _T("DINT", 4, DataType.INT32, ">i"),
        _T("TIME", 4, None, ">i"),
        _T("REAL", 4, DataType.FLOAT32, ">f"),
        _T("LWORD", 8, DataType.UINT64, ">Q"),
        _T("ULINT", 8, DataType.UINT64, ">Q"),
        _T("LINT", 8, DataType.INT64, ">q"),
        _T("LREAL", 8, DataType.FLOAT64, ">d"),
        _T("DATE_AND_TIME", 8, None),
        _T("DTL", 12, None),
        _T("STRING", 0, DataType.STRING),  # n + 2 bytes: max length, actual length, characters
    )
}
ALIASES = {"DT": "DATE_AND_TIME", "DATE_TIME": "DATE_AND_TIME"}

# Bifrost DataType -> the S7 type a tag of it is served as when the address gives no type.
FROM_DATATYPE: dict[DataType, str] = {
    DataType.BOOL: "BOOL",
    DataType.INT16: "INT",
    DataType.UINT16: "WORD",
    DataType.INT32: "DINT",
    DataType.UINT32: "DWORD",
    DataType.INT64: "LINT",
    DataType.UINT64: "LWORD",
    DataType.FLOAT32: "REAL",
    DataType.FLOAT64: "LREAL",
    DataType.STRING: "STRING",
}
_INT_RANGES = {
    "BYTE": (0, 255),
    "USINT": (0, 255),
    "SINT": (-128, 127),
    "TIME": (-(2**31), 2**31 - 1),
    **{name: integer_range(t.dtype) for name, t in TYPES.items() if t.dtype is not None and t.dtype.is_integer},
}
MAX_STRING = 254

# Area letters and the size letter's default type.
_AREAS = {"DB": Area.DB, "M": Area.FLAGS, "I": Area.INPUTS, "Q": Area.OUTPUTS}
_SIZE_TYPE = {"X": "BOOL", "B": "BYTE", "W": "WORD", "D": "DWORD"}
_SIZE_BYTES = {"W": 2, "D": 4}

_LONG = re.compile(r"^DB(?P<db>\d+)\.DB(?P<size>[XBWD])(?P<byte>\d+)(?:\.(?P<bit>\d+))?$")
_SHORT = re.compile(r"^DB(?P<db>\d+):(?P<byte>\d+)(?:\.(?P<bit>\d+))?$")
_SHORT_WITH_TYPE = re.compile(r"^(?P<location>DB\d+:\d+(?:\.\d+)?)(?::(?P<type>.+))?$", re.IGNORECASE)
_FLAT = re.compile(r"^(?P<area>[MIQ])(?P<size>[BWD]?)(?P<byte>\d+)(?:\.(?P<bit>\d+))?$")
_TYPE = re.compile(r"^(?P<name>[A-Z_]+)(?:\[(?P<n>\d+)\])?(?:\[(?P<count>\d+)\])?$")

GRAMMAR = (
    "DB<n>.DBX<byte>.<bit>, DB<n>.DBB|DBW|DBD<byte>, DB<n>:<byte>[.<bit>]:<TYPE>, "
    "M|I|Q<byte>.<bit>, MB|MW|MD<byte> (and IB/IW/ID, QB/QW/QD), each with optional % and :TYPE[count]"
)


@dataclass(frozen=True, slots=True)
class S7Format:
    """How a value sits in an area: type, string length, array count, bit, scale and offset."""

    type: S7Type
    length: int = 0  # STRING[n]: n
    count: int = 1  # an array of `count` elements (1: a single value)
    bit: int = 0
    scale: float = 1.0
    offset: float = 0.0

    @property
    def element_size(self) -> int:
        return self.length + 2 if self.type.is_string else self.type.size

    @property
    def size(self) -> int:
        """Bytes the value covers."""
        return self.element_size * self.count

    @property
    def name(self) -> str:
        base = f"STRING[{self.length}]" if self.type.is_string else self.type.name
        return f"{base}[{self.count}]" if self.count > 1 else base

    # -- decoding ------------------------------------------------------------------------------

    def decode(self, data: bytes | bytearray | memoryview) -> S7Value:
        """The value of `size` bytes (for a BOOL: the byte that holds bit `bit`)."""
        if self.count == 1:
            return self._decode_one(bytes(data[: self.element_size]), self.bit)
        step = self.element_size
        return tuple(self._decode_one(bytes(data[i * step : (i + 1) * step]), 0) for i in range(self.count))

    def _decode_one(self, raw: bytes, bit: int) -> Value:
        kind = self.type
        if kind.is_bool:
            return bool(raw[0] >> bit & 1)
        if kind.pack:
            number: int | float = struct.unpack(kind.pack, raw)[0]
            return self._scaled(number)
        if kind.is_string:
            used = min(raw[1], raw[0], self.length) if len(raw) >= 2 else 0
            return raw[2 : 2 + used].decode("latin-1")
        if kind.name == "CHAR":
            return raw[:1].decode("latin-1")
        if kind.name == "DTL":
            return _decode_dtl(raw)
        return _decode_date_and_time(raw)

    def _scaled(self, number: int | float) -> int | float:
        if self.scale == 1.0 and self.offset == 0.0:
            return number
        return number * self.scale + self.offset

    # -- encoding ------------------------------------------------------------------------------

    def encode(self, value: Any) -> bytes:
        """The bytes of `value` (a BOOL: one byte, 0 or 1); EncodeError says why it does not fit."""
        if self.count == 1:
            return self._encode_one(value)
        if not isinstance(value, (list, tuple)) or len(value) != self.count:
            raise EncodeError(f"{self.name}: expected {self.count} values, got {value!r}")
        return b"".join(self._encode_one(item) for item in value)

    def _encode_one(self, value: Any) -> bytes:
        kind = self.type
        if kind.is_bool:
            if not isinstance(value, (bool, int)) or (isinstance(value, int) and value not in (0, 1)):
                raise EncodeError(f"BOOL: {value!r} is not a bool")
            return b"\x01" if value else b"\x00"
        if kind.pack:
            return self._encode_number(value)
        if kind.is_string:
            if not isinstance(value, str):
                raise EncodeError(f"{self.name}: {value!r} is not a str")
            try:
                text = value.encode("latin-1")
            except UnicodeEncodeError:
                raise EncodeError(f"{self.name}: {value!r} has characters outside Latin-1") from None
            if len(text) > self.length:
                raise EncodeError(f"{self.name}: {len(text)} characters do not fit {self.length}")
            return bytes((self.length, len(text))) + text.ljust(self.length, b"\x00")
        if kind.name == "CHAR":
            if not isinstance(value, str) or len(value.encode("latin-1", "replace")) != 1:
                raise EncodeError(f"CHAR: {value!r} is not one character")
            return value.encode("latin-1")
        if not isinstance(value, str):
            raise EncodeError(f"{kind.name}: {value!r} is not an ISO 8601 date and time string")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise EncodeError(f"{kind.name}: {value!r} is not an ISO 8601 date and time") from None
        return _encode_dtl(moment) if kind.name == "DTL" else _encode_date_and_time(moment)

    def _encode_number(self, value: Any) -> bytes:
        kind = self.type
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EncodeError(f"{kind.name}: {value!r} is not a number")
        raw: int | float = value
        if self.scale != 1.0 or self.offset != 0.0:
            raw = (value - self.offset) / self.scale
        if kind.name in ("REAL", "LREAL"):
            try:
                return struct.pack(kind.pack, float(raw))
            except OverflowError:
                raise EncodeError(f"{kind.name}: {value!r} is out of range") from None
        if isinstance(raw, float):
            if raw != raw or raw in (float("inf"), float("-inf")):
                raise EncodeError(f"{kind.name}: {value!r} is not a finite number")
            rounded = round(raw)
            if self.scale == 1.0 and self.offset == 0.0 and rounded != raw:
                raise EncodeError(f"{kind.name}: {value!r} is not a whole number")
            raw = rounded
        low, high = _INT_RANGES[kind.name]
        if not low <= raw <= high:
            raise EncodeError(f"{kind.name}: {value!r} is out of range {low}..{high}")
        return struct.pack(kind.pack, raw)

    # -- the wire ------------------------------------------------------------------------------

    def item_data(self, value: Any) -> ItemData:
        """The data of a write of `value`: a BOOL as a bit, anything else as bytes."""
        if self.type.is_bool and self.count == 1:
            return ItemData(0, DataTransport.BIT, self._encode_one(value))
        return ItemData(0, DataTransport.BYTE, self.encode(value))


def _bcd(value: int) -> int:
    return (value // 10) << 4 | value % 10


def _from_bcd(byte: int) -> int:
    return (byte >> 4) * 10 + (byte & 0x0F)


def _decode_date_and_time(raw: bytes) -> str:
    year = _from_bcd(raw[0])
    year += 1900 if year >= 90 else 2000
    month, day, hour, minute, second = (_from_bcd(b) for b in raw[1:6])
    millis = _from_bcd(raw[6]) * 10 + (raw[7] >> 4)
    try:
        return datetime(year, month, day, hour, minute, second, millis * 1000).isoformat(timespec="milliseconds")
    except ValueError:
        return f"invalid DATE_AND_TIME {raw.hex(' ')}"


def _encode_date_and_time(moment: datetime) -> bytes:
    if not 1990 <= moment.year <= 2089:
        raise EncodeError(f"DATE_AND_TIME: year {moment.year} is outside 1990..2089")
    millis = moment.microsecond // 1000
    weekday = moment.isoweekday() % 7 + 1  # 1 = Sunday
    head = bytes(
        _bcd(v) for v in (moment.year % 100, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    )
    return head + bytes((_bcd(millis // 10), (millis % 10) << 4 | weekday))


def _decode_dtl(raw: bytes) -> str:
    year, month, day, _weekday, hour, minute, second, nanos = struct.unpack(">HBBBBBBI", raw)
    try:
        return datetime(year, month, day, hour, minute, second, nanos // 1000).isoformat(timespec="microseconds")
    except ValueError:
        return f"invalid DTL {raw.hex(' ')}"


def _encode_dtl(moment: datetime) -> bytes:
    if not 1970 <= moment.year <= 2262:
        raise EncodeError(f"DTL: year {moment.year} is outside 1970..2262")
    weekday = moment.isoweekday() % 7 + 1
    return struct.pack(
        ">HBBBBBBI",
        moment.year,
        moment.month,
        moment.day,
        weekday,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond * 1000,
    )


# ---------------------------------------------------------------------------------------- grammar


@dataclass(frozen=True, slots=True)
class Address:
    """Where a value lives: an area (a DB number for DBs), a byte offset, a bit, and maybe a type."""

    area: Area
    start: int
    db: int = 0
    bit: int | None = None
    fmt: S7Format | None = None  # the :TYPE given; None: the tag's type, else the size letter's
    text: str = ""
    size: str | None = None  # the size letter (X, B, W, D), which fixes the width but not the type

    @property
    def default_fmt(self) -> S7Format | None:
        """The type of a raw address: its :TYPE, else what its size letter says (W: WORD, D: DWORD...)."""
        if self.fmt is not None:
            return self.fmt
        if self.size is None or (self.size == "X" and self.bit is None):
            return None
        return S7Format(TYPES[_SIZE_TYPE[self.size]], bit=self.bit or 0)

    @property
    def where(self) -> str:
        return f"DB{self.db}" if self.area is Area.DB else self.area.name

    def spec(self, fmt: S7Format) -> VarSpec:
        """The read item for a value of `fmt` here: a bit item for a single BOOL, bytes otherwise."""
        if fmt.type.is_bool and fmt.count == 1:
            return VarSpec(self.area, self.start, 1, TransportSize.BIT, self.db, self.bit or 0)
        return VarSpec(self.area, self.start, fmt.size, TransportSize.BYTE, self.db)

    def __str__(self) -> str:
        return self.text or f"{self.where}:{self.start}"


def parse_type(text: str, *, where: str = "") -> S7Format:
    """`REAL`, `STRING[20]`, `INT[10]`, `STRING[8][3]` -> S7Format. ConfigError lists what is accepted."""
    match = _TYPE.match(text.strip().upper())
    name = match.group("name") if match else ""
    name = ALIASES.get(name, name)
    kind = TYPES.get(name)
    if match is None or kind is None:
        accepted = ", ".join([*TYPES, *ALIASES]).replace("STRING", "STRING[n]")
        raise ConfigError(f"{where}unknown S7 type {text!r}; expected one of {accepted} (arrays: TYPE[count])")
    first, second = match.group("n"), match.group("count")
    if kind.is_string:
        if first is None:
            raise ConfigError(f"{where}a STRING needs its length: STRING[n], n 1..{MAX_STRING}")
        length = int(first)
        if not 1 <= length <= MAX_STRING:
            raise ConfigError(f"{where}STRING[{length}]: the length must be 1..{MAX_STRING}")
        count = int(second) if second else 1
    else:
        if second is not None:
            raise ConfigError(f"{where}{text!r}: only STRING[n] takes a second [count]")
        length = 0
        count = int(first) if first else 1
    if not 1 <= count <= 65535:
        raise ConfigError(f"{where}{text!r}: an array count must be 1..65535")
    return S7Format(kind, length, count)


def parse_address(text: str) -> Address:
    """Parse an address of DESIGN's grammar; a ConfigError names the part at fault."""
    if not isinstance(text, str):
        raise ConfigError(f"{text!r} is not an S7 address; expected {GRAMMAR}")
    raw = text.strip()
    body = raw[1:] if raw.startswith("%") else raw
    short = _SHORT_WITH_TYPE.match(body)
    if short is not None:
        location, type_text = short.group("location"), short.group("type")
    else:
        location, _, rest = body.partition(":")
        type_text = rest or None
    location = location.upper()
    for pattern in (_LONG, _SHORT, _FLAT):
        match = pattern.match(location)
        if match is not None:
            break
    else:
        raise ConfigError(f"{text!r} is not an S7 address; expected {GRAMMAR}")
    fmt = parse_type(type_text, where=f"{text!r}: ") if type_text else None
    groups = match.groupdict()
    byte = int(groups["byte"])
    bit = int(groups["bit"]) if groups.get("bit") is not None else None
    if pattern is _FLAT:
        area, db = _AREAS[groups["area"]], 0
        size = groups["size"] or ("X" if bit is not None else None)
    else:
        area, db = Area.DB, int(groups["db"])
        size = groups.get("size")
        if not 1 <= db <= 65535:
            raise ConfigError(f"{text!r}: DB{db} is not a data block number 1..65535")
    if byte > 65535:
        raise ConfigError(f"{text!r}: byte offset {byte} is past 65535")
    if bit is not None:
        if not 0 <= bit <= 7:
            raise ConfigError(f"{text!r}: bit {bit} is not 0..7")
        if size not in (None, "X"):
            raise ConfigError(f"{text!r}: only a bit address (X) takes .bit")
    if bit is not None:
        size = "X"
    if fmt is not None:
        if fmt.type.is_bool and fmt.count > 1:
            raise ConfigError(f"{text!r}: S7 packs BOOL arrays in bits; read them as BYTE[n] instead")
        if fmt.type.is_bool and bit is None:
            raise ConfigError(f"{text!r}: a BOOL needs a bit address, e.g. DB1.DBX0.0, DB1:4.0:BOOL or M10.0")
        if bit is not None and not fmt.type.is_bool:
            raise ConfigError(f"{text!r}: a bit address holds a BOOL, not {fmt.name}")
        width = _SIZE_BYTES.get(size or "")
        if width is not None and fmt.element_size != width:
            what = "word" if size == "W" else "double word"
            raise ConfigError(f"{text!r}: a {what} address is {width} bytes, but {fmt.name} is {fmt.element_size}")
    return Address(area, byte, db, bit, fmt, raw, size)


def format_for_tag(tag: Tag, address: Address) -> S7Format:
    """The format of a tag at `address`: the address's type if it has one, else the tag's type."""
    if address.fmt is not None:
        fmt = address.fmt
        dtype = fmt.type.dtype
        if dtype is not None and tag.type is not dtype and tag.type is not DataType.UINT16:
            # uint16 is the Tag default: an address that gives a type wins over it.
            raise ConfigError(
                f"tag {tag.name!r}: its type {tag.type_name} does not match {fmt.name} at {address}"
                f" ({fmt.name} maps to {dtype.value})"
            )
    else:
        name = FROM_DATATYPE[tag.type]
        fmt = S7Format(TYPES[name], length=tag.length or 1) if name == "STRING" else S7Format(TYPES[name])
        if fmt.type.is_bool and address.bit is None:
            raise ConfigError(f"tag {tag.name!r}: a bool needs a bit address (e.g. DB1.DBX4.0), not {address}")
        width = _SIZE_BYTES.get(address.size or "")
        if width is not None and fmt.element_size != width:
            raise ConfigError(
                f"tag {tag.name!r}: {address} is {width} bytes wide, but a {tag.type_name} is {fmt.name}"
                f" ({fmt.element_size} bytes)"
            )
        if not fmt.type.is_bool and address.bit is not None:
            raise ConfigError(f"tag {tag.name!r}: {address} is a bit, but the tag is {tag.type_name}")
    return S7Format(fmt.type, fmt.length, fmt.count, address.bit or 0, tag.scale, tag.offset)


def resolve_tag(tag: Tag) -> tuple[Address, S7Format]:
    try:
        address = parse_address(tag.address)
    except ConfigError as exc:
        raise ConfigError(f"tag {tag.name!r}: {exc}") from None
    return address, format_for_tag(tag, address)


def raw_format(address: Address) -> S7Format:
    """The format of a raw address given to read/write: it must carry its type."""
    fmt = address.default_fmt
    if fmt is None:
        raise ConfigError(f"{address}: give the type, e.g. {address}:REAL (or use a tag with a type)")
    return S7Format(fmt.type, fmt.length, fmt.count, address.bit or 0)


def type_names() -> Sequence[str]:
    return [*TYPES]


__all__ = [
    "ALIASES",
    "FROM_DATATYPE",
    "GRAMMAR",
    "MAX_STRING",
    "TYPES",
    "Address",
    "S7Format",
    "S7Type",
    "S7Value",
    "format_for_tag",
    "parse_address",
    "parse_type",
    "raw_format",
    "resolve_tag",
]
