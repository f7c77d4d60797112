"""Modbus addresses: `hr:10`, `hr:3.7`, `hr:10:float32:CDAB`, `coil:3`, `hr:20:string[8]`. No I/O.

Offsets are 0-based, as on the wire (0..65535). The 1-based Modicon numbers (40001 = hr:0) are read
only when asked for with `style="modicon"`, because a bare number is ambiguous between the two.

Grammar: `area:offset[.bit][:type[:byte order]]`. Area, type and byte order are read in any case;
`str()` gives back the canonical spelling (lower-case area and type, upper-case byte order, no
redundant `:bool` on a coil, a discrete input or a bit).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Literal

from bifrost.errors import ConfigError
from bifrost.modbus.pdu import (
    ADDRESS_SPACE,
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    MAX_WRITE_BITS,
    MAX_WRITE_REGISTERS,
    FunctionCode,
)
from bifrost.tags import ByteOrder, DataType, Tag, parse_type
from bifrost.values import WireFormat, words_for

AddressStyle = Literal["wire", "modicon"]

LAST_OFFSET = ADDRESS_SPACE - 1
# The longest string a client can both read and write in one request: 123 registers of 2 bytes (Tag agrees).
MAX_STRING_BYTES = 2 * MAX_WRITE_REGISTERS
_GRAMMAR = "area:offset[.bit][:type[:byte order]], e.g. hr:0, hr:3.7, hr:10:float32:CDAB, coil:3"


class Area(str, Enum):
    """The four Modbus data areas, named as in addresses."""

    COIL = "coil"
    DISCRETE_INPUT = "di"
    INPUT_REGISTER = "ir"
    HOLDING_REGISTER = "hr"

    @property
    def holds_bits(self) -> bool:
        """True for coils and discrete inputs (one bit each), False for registers (16 bits each)."""
        return self in _BIT_AREAS

    @property
    def writable(self) -> bool:
        """Whether a client may write it (coils and holding registers)."""
        return self in _WRITE_FUNCTIONS

    @property
    def read_function(self) -> FunctionCode:
        """1 (coils), 2 (discrete inputs), 3 (holding registers) or 4 (input registers)."""
        return _READ_FUNCTIONS[self]

    @property
    def write_single_function(self) -> FunctionCode | None:
        """5 (coil) or 6 (holding register); None for the read-only areas."""
        functions = _WRITE_FUNCTIONS.get(self)
        return None if functions is None else functions[0]

    @property
    def write_multiple_function(self) -> FunctionCode | None:
        """15 (coils) or 16 (holding registers); None for the read-only areas."""
        functions = _WRITE_FUNCTIONS.get(self)
        return None if functions is None else functions[1]

    @property
    def max_read(self) -> int:
        """The most bits or registers one read request may ask for."""
        return MAX_READ_BITS if self in _BIT_AREAS else MAX_READ_REGISTERS

    @property
    def max_write(self) -> int | None:
        """The most bits or registers one write-multiple request may carry; None for the read-only areas."""
        if not self.writable:
            return None
        return MAX_WRITE_BITS if self in _BIT_AREAS else MAX_WRITE_REGISTERS


_BIT_AREAS = frozenset((Area.COIL, Area.DISCRETE_INPUT))
_READ_FUNCTIONS = {
    Area.COIL: FunctionCode.READ_COILS,
    Area.DISCRETE_INPUT: FunctionCode.READ_DISCRETE_INPUTS,
    Area.HOLDING_REGISTER: FunctionCode.READ_HOLDING_REGISTERS,
    Area.INPUT_REGISTER: FunctionCode.READ_INPUT_REGISTERS,
}
_WRITE_FUNCTIONS = {
    Area.COIL: (FunctionCode.WRITE_SINGLE_COIL, FunctionCode.WRITE_MULTIPLE_COILS),
    Area.HOLDING_REGISTER: (FunctionCode.WRITE_SINGLE_REGISTER, FunctionCode.WRITE_MULTIPLE_REGISTERS),
}
_AREA_NAMES = ", ".join(area.value for area in Area)
_ORDER_NAMES = ", ".join(order.value for order in ByteOrder)
# Modicon numbers start with the area's digit; 2 was never assigned.
_MODICON_AREAS = {"0": Area.COIL, "1": Area.DISCRETE_INPUT, "3": Area.INPUT_REGISTER, "4": Area.HOLDING_REGISTER}
_MODICON_DIGITS = {area: digit for digit, area in _MODICON_AREAS.items()}


@dataclass(frozen=True, slots=True)
class Address:
    """One Modbus address, optionally with the type and byte order of the value stored there.

    `type` and `byte_order` are None when the address does not say (the tag or the connection then
    decides); `length` is a string's length in bytes and is set only for strings.
    """

    area: Area
    offset: int
    bit: int | None = None
    type: DataType | None = None
    length: int | None = None
    byte_order: ByteOrder | None = None

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem is not None:
            raise ConfigError(problem)
        # A bool on a bit-sized place says nothing more; dropping it keeps one spelling per address.
        if self.type is DataType.BOOL and self.is_bit:
            object.__setattr__(self, "type", None)

    def __str__(self) -> str:
        return f"{self.area.value}:{self.offset}{self._tail()}"

    def _tail(self) -> str:
        """Everything after the offset: `.bit`, `:type`, `:byte order`."""
        text = "" if self.bit is None else f".{self.bit}"
        if self.type is not None:
            text += f":{_type_name(self.type, self.length)}"
        if self.byte_order is not None:
            text += f":{self.byte_order.value}"
        return text

    @property
    def is_bit(self) -> bool:
        """True when the address names one bit: a coil, a discrete input, or a bit of a register."""
        return self.bit is not None or self.area.holds_bits

    @property
    def value_type(self) -> DataType:
        """The type of the value here: as written, else bool for bits and uint16 for registers."""
        if self.type is not None:
            return self.type
        return DataType.BOOL if self.is_bit else DataType.UINT16

    @property
    def count(self) -> int:
        """How many bits (coil, di) or registers (ir, hr) a read of this address takes."""
        return 1 if self.is_bit else words_for(self.value_type, self.length or 0)

    def wire_format(self, byte_order: ByteOrder = ByteOrder.ABCD) -> WireFormat:
        """How to decode the value; `byte_order` applies when the address names none."""
        return WireFormat(self.value_type, self.byte_order or byte_order, self.length or 0, bit=self.bit)

    def modicon(self) -> str:
        """The 1-based Modicon spelling: 40001 for hr:0, 6 digits past 9999 (hr:9999 is 410000)."""
        number = self.offset + 1
        digits = f"{number:04d}" if number <= 9999 else f"{number:05d}"
        return f"{_MODICON_DIGITS[self.area]}{digits}{self._tail()}"


def _type_name(dtype: DataType, length: int | None) -> str:
    return f"string[{length}]" if dtype is DataType.STRING else dtype.value


def _problem(address: Address) -> str | None:
    """What is wrong with an address, in words, or None. Shared by parsing and direct construction."""
    area, offset, bit, dtype, length = address.area, address.offset, address.bit, address.type, address.length
    if not isinstance(area, Area):
        return f"unknown area {area!r}; expected one of {_AREA_NAMES}"
    if not 0 <= offset <= LAST_OFFSET:
        return f"offset {offset} is out of range; expected 0..{LAST_OFFSET}"
    if bit is not None:
        if area.holds_bits:
            return f"a bit number is only for registers (ir, hr); a {area.value} is a single bit already"
        if not 0 <= bit <= 15:
            return f"bit {bit} is out of range; expected 0..15"
    if (dtype is DataType.STRING) != (length is not None):
        return "a string needs its length (string[N]), and only a string has one"
    if length is not None and not 1 <= length <= MAX_STRING_BYTES:
        return f"string[{length}] is out of range; expected string[1] to string[{MAX_STRING_BYTES}]"
    if dtype is not None:
        problem = _fit_problem(area, offset, bit, dtype, length)
        if problem is not None:
            return problem
    if address.byte_order is not None:
        if address.is_bit:
            return "a single bit has no byte order"
        if dtype is None:
            return "a byte order needs a type before it, e.g. hr:10:float32:CDAB"
        if dtype is DataType.BOOL:
            return "a bool has no byte order"
    return None


def _fit_problem(area: Area, offset: int, bit: int | None, dtype: DataType, length: int | None) -> str | None:
    """Why a value of this type cannot live at this place, or None."""
    name = _type_name(dtype, length)
    if dtype is not DataType.BOOL:
        if area.holds_bits:
            return f"a {area.value} holds a single bit, so its type can only be bool, not {name}"
        if bit is not None:
            return f"a bit (.{bit}) holds a bool, not {name}"
    words = 1 if bit is not None or area.holds_bits else words_for(dtype, length or 0)
    if offset + words > ADDRESS_SPACE:
        return f"{name} takes {words} registers, so it runs past the last register {LAST_OFFSET}"
    if words > MAX_READ_REGISTERS:
        return f"{name} takes {words} registers; one read returns at most {MAX_READ_REGISTERS}"
    return None


def parse_address(text: str, style: AddressStyle = "wire") -> Address:
    """Parse `hr:10:float32:CDAB` and friends; `style="modicon"` reads `40001` (hr:0) style numbers.

    A ConfigError quotes the text, names the bad part and says what is accepted.
    """
    if style == "wire":
        return _parse_wire(text)
    if style == "modicon":
        return _parse_modicon(text)
    raise ConfigError(f"unknown address style {style!r}; expected 'wire' (hr:0) or 'modicon' (40001)")


def parse_modicon(text: str) -> Address:
    """Parse a 1-based Modicon number: 00001 coil:0, 10001 di:0, 30001 ir:0, 40001 hr:0, or 6 digits."""
    return _parse_modicon(text)


# Cached: the same raw addresses come back on every poll.
@lru_cache(maxsize=4096)
def _parse_wire(text: str) -> Address:
    head, sep, tail = text.strip().partition(":")
    if not sep:
        hint = "; for a 1-based Modicon number such as 40001 use style='modicon'" if head.isdigit() else ""
        raise ConfigError(f"{text!r}: expected {_GRAMMAR}{hint}")
    area = _AREAS.get(head.lower())
    if area is None:
        raise ConfigError(f"{text!r}: unknown area {head!r}; expected one of {_AREA_NAMES}")
    reference, sep, rest = tail.partition(":")
    offset_text, dot, bit_text = reference.partition(".")
    offset = _number(text, "offset", offset_text, LAST_OFFSET)
    bit = _number(text, "bit", bit_text, 15) if dot else None
    return _typed(text, area, offset, bit, rest if sep else None)


@lru_cache(maxsize=4096)
def _parse_modicon(text: str) -> Address:
    reference, sep, rest = text.strip().partition(":")
    number_text, dot, bit_text = reference.partition(".")
    if not (number_text.isascii() and number_text.isdigit() and len(number_text) in (5, 6)):
        raise ConfigError(f"{text!r}: expected a Modicon number of 5 or 6 digits such as 40001 or 400001")
    area = _MODICON_AREAS.get(number_text[0])
    if area is None:
        raise ConfigError(
            f"{text!r}: unknown Modicon area digit {number_text[0]!r}; expected 0 (coil), 1 (di), 3 (ir) or 4 (hr)"
        )
    number = int(number_text[1:])
    highest = 9999 if len(number_text) == 5 else ADDRESS_SPACE
    if not 1 <= number <= highest:
        raise ConfigError(
            f"{text!r}: Modicon number {number_text[1:]!r} is out of range; "
            f"expected 1..{highest} (they count from 1: {number_text[0]}{'0' * (len(number_text) - 2)}1 is "
            f"{area.value}:0)"
        )
    bit = _number(text, "bit", bit_text, 15) if dot else None
    return _typed(text, area, number - 1, bit, rest if sep else None)


_AREAS = {area.value: area for area in Area}
_ORDERS = {order.value: order for order in ByteOrder}


def _number(text: str, what: str, digits: str, highest: int) -> int:
    # isascii: str.isdigit() also accepts digits such as '²' that int() refuses.
    if not (digits.isascii() and digits.isdigit()):
        raise ConfigError(f"{text!r}: {what} {digits!r} is not a number; expected 0..{highest}")
    value = int(digits)
    if value > highest:
        raise ConfigError(f"{text!r}: {what} {value} is out of range; expected 0..{highest}")
    return value


def _typed(text: str, area: Area, offset: int, bit: int | None, rest: str | None) -> Address:
    """Read the optional `type[:byte order]` tail and build the address."""
    dtype: DataType | None = None
    length: int | None = None
    order: ByteOrder | None = None
    if rest is not None:
        type_text, sep, order_text = rest.partition(":")
        try:
            dtype, length = parse_type(type_text.lower())
        except ValueError as exc:
            raise ConfigError(f"{text!r}: {exc}") from None
        if sep:
            if ":" in order_text:
                raise ConfigError(f"{text!r}: too many ':' parts; expected {_GRAMMAR}")
            order = _ORDERS.get(order_text.upper())
            if order is None:
                raise ConfigError(f"{text!r}: unknown byte order {order_text!r}; expected one of {_ORDER_NAMES}")
    try:
        return Address(area, offset, bit, dtype, length, order)
    except ConfigError as exc:
        raise ConfigError(f"{text!r}: {exc}") from None


def check_fits(address: Address, fmt: WireFormat) -> None:
    """Raise ConfigError unless a value of `fmt` can live at `address`.

    A bool fits a coil, a discrete input, a bit or a whole register; every other type needs registers
    (ir, hr), all of them inside the address space and within one read.
    """
    where = Address(address.area, address.offset, address.bit)
    problem = _fit_problem(address.area, address.offset, address.bit, fmt.type, fmt.length or None)
    if problem is None and fmt.bit != address.bit:
        problem = f"the value's bit {fmt.bit} is not the address's bit {address.bit}"
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")


def check_writable(address: Address) -> None:
    """Raise ConfigError if a client cannot write this area (discrete inputs and input registers)."""
    if not address.area.writable:
        raise ConfigError(f"{address}: {address.area.value} is read-only; a client writes only coil and hr")


def resolve_tag(tag: Tag, style: AddressStyle = "wire") -> tuple[Address, WireFormat]:
    """A tag's address and the wire format of its value (the tag's scale and offset included).

    The type and byte order may be given by the tag, by a typed address, or by both if they agree;
    when they disagree it is a ConfigError. A tag that leaves its type unset takes the address's
    (so a tag on a coil, a discrete input or a bit is a bool).
    """
    try:
        address = parse_address(tag.address, style)
    except ConfigError as exc:
        raise ConfigError(f"tag {tag.name!r}: {exc}") from None
    given = tag.model_fields_set  # Tag's defaults (uint16, ABCD) are not a statement about the wire
    dtype, length = tag.type, tag.length
    if "type" not in given:
        dtype, length = address.value_type, address.length
    elif address.type is not None and (dtype, length) != (address.type, address.length):
        raise ConfigError(
            f"tag {tag.name!r}: its type {tag.type_name} conflicts with the type in its address {address}; "
            "give the type in one place"
        )
    order = tag.byte_order
    if address.byte_order is not None:
        if "byte_order" in given and order is not address.byte_order:
            raise ConfigError(
                f"tag {tag.name!r}: its byte order {order.value} conflicts with the one in its address {address}"
            )
        order = address.byte_order
    # Checked before building the WireFormat, whose own message would not name the tag or the address.
    problem = _fit_problem(address.area, address.offset, address.bit, dtype, length)
    if problem is not None:
        raise ConfigError(f"tag {tag.name!r} at {Address(address.area, address.offset, address.bit)}: {problem}")
    return address, WireFormat(dtype, order, length or 0, tag.scale, tag.offset, address.bit)
