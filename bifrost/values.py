"""Typed values <-> 16-bit words: the one codec the client engines and the simulators share.

Rules (held to the Rust codec in `bifrost._native` by a differential test):
- Numbers are packed big-endian (ABCD), then BADC swaps the two bytes of every word, CDAB reverses
  the order of the words, DCBA does both (so DCBA is little-endian at every width).
- Strings are `length` bytes of latin-1, NUL-padded to whole words; only the byte swap applies to
  them (they are sequences, not numbers). Decoding strips trailing NULs.
- A bool is a whole register (non-zero is True, written as 1) or, with `bit`, one bit of it (0 = LSB).
- Engineering value = raw * scale + offset. Writing inverts it and rounds half to even for
  integer types; a result outside the type's range is an EncodeError, never silently wrapped.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from bifrost.errors import ConfigError, EncodeError
from bifrost.tags import ByteOrder, DataType, Tag, Value, integer_range

_STRUCT_CODES = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.INT64: ">q",
    DataType.UINT64: ">Q",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
}


@dataclass(frozen=True, slots=True)
class WireFormat:
    """How one value sits in registers: type, byte order, string length, bit, scale and offset."""

    type: DataType
    byte_order: ByteOrder = ByteOrder.ABCD
    length: int = 0
    scale: float = 1.0
    offset: float = 0.0
    bit: int | None = None

    def __post_init__(self) -> None:
        if self.type is DataType.STRING and self.length < 1:
            raise ConfigError("a string needs a length of at least 1 byte")
        if self.bit is not None and (self.type is not DataType.BOOL or not 0 <= self.bit <= 15):
            raise ConfigError(f"bit {self.bit} is invalid: a bit is 0..15 of a register and its type is bool")
        if self.scale == 0:
            raise ConfigError("scale must not be 0")

    @classmethod
    def of(cls, tag: Tag, bit: int | None = None) -> WireFormat:
        return cls(tag.type, tag.byte_order, tag.length or 0, tag.scale, tag.offset, bit)

    @property
    def words(self) -> int:
        """How many 16-bit registers the value takes."""
        return words_for(self.type, self.length)

    @property
    def scaled(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0

    def decode(self, words: Sequence[int]) -> Value:
        """The value held in `words` (exactly `self.words` of them, each 0..65535)."""
        if len(words) != self.words:
            raise ValueError(f"{self.type.value} takes {self.words} word(s), got {len(words)}")
        dtype = self.type
        if dtype is DataType.BOOL:
            word = words[0]
            return bool((word >> self.bit) & 1) if self.bit is not None else word != 0
        if dtype is DataType.STRING:
            raw = _words_to_bytes(words, self.byte_order.swaps_bytes, swap_words=False)
            return raw[: self.length].rstrip(b"\x00").decode("latin-1")
        raw = _words_to_bytes(words, self.byte_order.swaps_bytes, self.byte_order.swaps_words)
        number: int | float = struct.unpack(_STRUCT_CODES[dtype], raw)[0]
        if self.scaled:
            return number * self.scale + self.offset
        return number

    def encode(self, value: Value, current: Sequence[int] = (0,)) -> list[int]:
        """The words that hold `value`. A bit is merged into `current`, the register it lives in."""
        dtype = self.type
        if dtype is DataType.BOOL:
            flag = _as_bool(value)
            if self.bit is None:
                return [int(flag)]
            mask = 1 << self.bit
            return [(current[0] | mask) if flag else (current[0] & ~mask & 0xFFFF)]
        if dtype is DataType.STRING:
            return self._encode_string(value)
        raw = self._raw_number(value)
        packed = struct.pack(_STRUCT_CODES[dtype], raw)
        return _bytes_to_words(packed, self.byte_order.swaps_bytes, self.byte_order.swaps_words)

    def _encode_string(self, value: Value) -> list[int]:
        if not isinstance(value, str):
            raise EncodeError(f"string[{self.length}] takes a str, not {type(value).__name__} {value!r}")
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise EncodeError(f"{value!r} has a character outside latin-1 at index {exc.start}") from None
        if len(raw) > self.length:
            raise EncodeError(f"{value!r} is {len(raw)} bytes; string[{self.length}] holds at most {self.length}")
        raw = raw.ljust(self.words * 2, b"\x00")
        return _bytes_to_words(raw, self.byte_order.swaps_bytes, swap_words=False)

    def _raw_number(self, value: Value) -> int | float:
        dtype = self.type
        if isinstance(value, str) or not isinstance(value, (bool, int, float)):
            raise EncodeError(f"{dtype.value} takes a number, not {type(value).__name__} {value!r}")
        number: int | float = value
        if self.scaled:
            number = (float(number) - self.offset) / self.scale
        if dtype.is_float:
            number = float(number)
            if dtype is DataType.FLOAT32 and math.isfinite(number) and math.isinf(_round_to_f32(number)):
                raise EncodeError(f"{value!r} is out of range for float32")
            return number
        if isinstance(number, float):
            if not math.isfinite(number):
                raise EncodeError(f"{value!r} is not a finite number, so it cannot be written as {dtype.value}")
            if not self.scaled and not number.is_integer():
                raise EncodeError(f"{value!r} is not a whole number; {dtype.value} holds integers")
            number = round(number)
        low, high = integer_range(dtype)
        if not low <= number <= high:
            raise EncodeError(f"{value!r} is out of range for {dtype.value} ({low}..{high})")
        return int(number)


def _round_to_f32(number: float) -> float:
    try:
        return float(struct.unpack(">f", struct.pack(">f", number))[0])
    except OverflowError:
        return math.inf


def _as_bool(value: Value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise EncodeError(f"bool takes True/False (or 0/1), not {value!r}")


def _words_to_bytes(words: Sequence[int], swap_bytes: bool, swap_words: bool) -> bytes:
    ordered = reversed(words) if swap_words else words
    out = bytearray()
    for word in ordered:
        if not 0 <= word <= 0xFFFF:
            raise ValueError(f"register value {word} is not 0..65535")
        out += bytes((word & 0xFF, word >> 8)) if swap_bytes else bytes((word >> 8, word & 0xFF))
    return bytes(out)


def _bytes_to_words(raw: bytes, swap_bytes: bool, swap_words: bool) -> list[int]:
    if swap_bytes:
        words = [raw[i] | (raw[i + 1] << 8) for i in range(0, len(raw), 2)]
    else:
        words = [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]
    if swap_words:
        words.reverse()
    return words


def decode(
    words: Sequence[int], dtype: DataType | str, byte_order: ByteOrder | str = ByteOrder.ABCD, **kw: float
) -> Value:
    """Shorthand for `WireFormat(...).decode(words)`."""
    return _format(dtype, byte_order, kw).decode(words)


def encode(value: Value, dtype: DataType | str, byte_order: ByteOrder | str = ByteOrder.ABCD, **kw: float) -> list[int]:
    """Shorthand for `WireFormat(...).encode(value)`."""
    return _format(dtype, byte_order, kw).encode(value)


def _format(dtype: DataType | str, byte_order: ByteOrder | str, kw: dict[str, float]) -> WireFormat:
    bit = kw.get("bit")
    return WireFormat(
        DataType(dtype),
        ByteOrder(byte_order),
        length=int(kw.get("length", 0)),
        scale=kw.get("scale", 1.0),
        offset=kw.get("offset", 0.0),
        bit=None if bit is None else int(bit),
    )


def words_for(dtype: DataType, length: int = 0) -> int:
    """How many registers a value of this type takes (`length` is a string's bytes)."""
    return (length + 1) // 2 if dtype is DataType.STRING else max(1, dtype.bits // 16)
