"""A Modbus device's register map: each address bound to a plant tag, built once from the device map.

Each area is a dict from address to a slot, so a request costs one lookup per tag it touches, never a
scan. A register slot says which tag lives there, which of its words this address is, and the tag's
wire format (the one codec, bifrost.values); a register that holds bits (`hr:10.3`) lists its bit tags.

- Reads encode the plant's current values. A tag spanning several registers is encoded whole and the
  request's part of it is sliced out, so reading half of a float32 gives half of the right bytes.
  A value its wire type cannot hold (a narrowed type, a scale) raises `DeviceFailure`.
- Writes decode the registers written into tag values, checked against the plant tag's type before
  anything is set. A write covering part of a multi-register tag merges with the tag's current words.
  A bit tag counts as written only when the written register changes its bit, so a client may write a
  status word whose read-only bits it leaves as they are.
- An address no tag maps raises `Unmapped` (exception 2), as does writing a tag that is not writable
  for this device (`NotWritable`); a decoded value the tag cannot hold raises `BadValue` (exception 3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bifrost.errors import ConfigError, EncodeError
from bifrost.modbus.address import Area, check_fits, parse_address
from bifrost.tags import ByteOrder, DataType, Value, parse_type
from bifrost.values import WireFormat
from simulators.modbus.model import ModbusDeviceModel
from simulators.scenario import Scenario, checked_value

Values = Callable[[str], Value]
"""Where a read takes tag values from: the plant's `get`, or a frozen snapshot's."""


class MapError(Exception):
    """A request the map refuses; `code` is the Modbus exception code to answer with."""

    code = 4

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unmapped(MapError):
    code = 2


class NotWritable(MapError):
    code = 2


class BadValue(MapError):
    code = 3


class DeviceFailure(MapError):
    code = 4


class RegisterTag:
    """A tag on one or more registers."""

    __slots__ = ("_cached_value", "_cached_words", "count", "fmt", "name", "start", "type_name", "writable")

    def __init__(self, name: str, start: int, fmt: WireFormat, writable: bool, type_name: str) -> None:
        self.name = name
        self.start = start
        self.fmt = fmt
        self.count = fmt.words
        self.writable = writable
        self.type_name = type_name  # the plant tag's type, which a decoded value must fit
        self._cached_value: Any = _NOTHING
        self._cached_words: list[int] = []

    def words(self, value: Value) -> list[int]:
        # The plant keeps one object per value until it changes, so identity is a cheap, exact cache key.
        if value is self._cached_value:
            return self._cached_words
        try:
            words = self.fmt.encode(value)
        except (EncodeError, OverflowError, ValueError) as exc:
            wire = _fmt_name(self.fmt)
            raise DeviceFailure(f"{self.name} = {value!r} does not fit its wire type {wire}: {exc}") from None
        self._cached_value = value
        self._cached_words = words
        return words


class BitRegister:
    """A register whose bits are tags (`hr:10.3`); bits no tag maps read as 0."""

    __slots__ = ("bits", "count", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.count = 1
        self.bits: list[tuple[str, int, WireFormat, bool]] = []  # tag, bit, format, writable

    def word(self, values: Values) -> int:
        word = 0
        for name, bit, fmt, _ in self.bits:
            value = values(name)
            if value is True or (value is not False and fmt.encode(value, (0,))[0]):
                word |= 1 << bit
        return word


class BitTag:
    """A tag on a coil or a discrete input."""

    __slots__ = ("fmt", "name", "writable")

    def __init__(self, name: str, fmt: WireFormat, writable: bool) -> None:
        self.name = name
        self.fmt = fmt
        self.writable = writable


class _Nothing:
    """A value no tag ever holds: the empty encode cache."""


_NOTHING = _Nothing()
RegisterSlot = tuple[RegisterTag | BitRegister, int]  # the entry and which of its words this address is


def _fmt_name(fmt: WireFormat) -> str:
    name = f"string[{fmt.length}]" if fmt.type is DataType.STRING else fmt.type.value
    if fmt.scaled:
        name += f" (scale {fmt.scale:g}, offset {fmt.offset:g})"
    return name


class RegisterMap:
    """The four areas of one device, address by address. Build with `RegisterMap.of(scenario, device)`."""

    def __init__(self) -> None:
        self.coils: dict[int, BitTag] = {}
        self.inputs: dict[int, BitTag] = {}
        self.holding: dict[int, RegisterSlot] = {}
        self.input_registers: dict[int, RegisterSlot] = {}
        self.tags: dict[str, str] = {}  # tag -> its address, for messages

    @classmethod
    def of(cls, scenario: Scenario, device: str, writable: Callable[[str], bool]) -> RegisterMap:
        """The map of `device`; `writable(tag)` says whether a client may write a tag through it."""
        spec = scenario.device(device)
        assert isinstance(spec, ModbusDeviceModel), f"{device} is a {spec.protocol} device"
        out = cls()
        for name in spec.map:
            entry = spec.entry(name)
            plant_type = scenario.tags[name].type
            dtype, length = parse_type(entry.type or plant_type)
            address = parse_address(entry.address)
            order = entry.byte_order or spec.byte_order or ByteOrder.ABCD
            bit = address.bit if dtype is DataType.BOOL else None
            fmt = WireFormat(dtype, order, length or 0, entry.scale, entry.offset, bit)
            check_fits(address, fmt)  # the scenario checked it; a map built by hand gets the same check
            can_write = writable(name)
            out.tags[name] = entry.address
            if address.area in (Area.COIL, Area.DISCRETE_INPUT):
                area = out.coils if address.area is Area.COIL else out.inputs
                _claim(area, address.offset, name)
                area[address.offset] = BitTag(name, fmt, can_write)
                continue
            registers = out.holding if address.area is Area.HOLDING_REGISTER else out.input_registers
            if address.bit is not None:
                slot = registers.get(address.offset)
                if slot is None:
                    slot = registers[address.offset] = (BitRegister(address.offset), 0)
                register = slot[0]
                if not isinstance(register, BitRegister):
                    raise ConfigError(f"{device}: {name} at {address} overlaps {_owner(slot)}")
                register.bits.append((name, address.bit, fmt, can_write))
                continue
            tag = RegisterTag(name, address.offset, fmt, can_write, plant_type)
            for index in range(tag.count):
                _claim(registers, address.offset + index, name)
                registers[address.offset + index] = (tag, index)
        return out

    # --- reads ------------------------------------------------------------------------------------------

    def read_bits(self, area: dict[int, BitTag], address: int, count: int, values: Values) -> tuple[bool, ...]:
        out = []
        for offset in range(address, address + count):
            tag = area.get(offset)
            if tag is None:
                raise Unmapped(f"no tag at {_area_name(area is self.coils)}:{offset}")
            value = values(tag.name)
            if value is True or value is False:
                out.append(value)
            else:
                try:
                    out.append(bool(tag.fmt.encode(value)[0]))
                except EncodeError as exc:
                    raise DeviceFailure(f"{tag.name} = {value!r} is not a bit: {exc}") from None
        return tuple(out)

    def read_registers(self, area: dict[int, RegisterSlot], address: int, count: int, values: Values) -> list[int]:
        out: list[int] = []
        offset = address
        end = address + count
        while offset < end:
            slot = area.get(offset)
            if slot is None:
                raise Unmapped(f"no tag at {'hr' if area is self.holding else 'ir'}:{offset}")
            entry, index = slot
            take = min(entry.count - index, end - offset)
            if isinstance(entry, RegisterTag):
                words = entry.words(values(entry.name))
                out.extend(words[index : index + take] if take != entry.count else words)
            else:
                out.append(entry.word(values))
            offset += take
        return out

    # --- writes -----------------------------------------------------------------------------------------

    def write_coils(self, address: int, bits: Sequence[bool]) -> dict[str, Value]:
        """The tag values a write of `bits` from `address` sets (checked, nothing set yet)."""
        out: dict[str, Value] = {}
        for offset, bit in enumerate(bits, address):
            tag = self.coils.get(offset)
            if tag is None:
                raise Unmapped(f"no tag at coil:{offset}")
            if not tag.writable:
                raise NotWritable(f"{tag.name} (coil:{offset}) is not writable")
            out[tag.name] = bit
        return out

    def write_registers(self, address: int, words: Sequence[int], values: Values) -> dict[str, Value]:
        """The tag values a write of `words` from `address` sets (checked, nothing set yet)."""
        out: dict[str, Value] = {}
        holding = self.holding
        position = 0
        total = len(words)
        while position < total:
            offset = address + position
            slot = holding.get(offset)
            if slot is None:
                raise Unmapped(f"no tag at hr:{offset}")
            entry, index = slot
            take = min(entry.count - index, total - position)
            if isinstance(entry, RegisterTag):
                if not entry.writable:
                    raise NotWritable(f"{entry.name} ({self.tags[entry.name]}) is not writable")
                written = words[position : position + take]
                if take != entry.count:
                    merged = list(entry.words(values(entry.name)))
                    merged[index : index + take] = written
                    written = merged
                out[entry.name] = _decoded(entry, written)
            else:
                word = words[position]
                for name, bit, _, can_write in entry.bits:
                    new = bool(word >> bit & 1)
                    if new != bool(values(name)):
                        if not can_write:
                            raise NotWritable(f"{name} (hr:{offset}.{bit}) is not writable")
                        out[name] = new
            position += take
        return out

    def register(self, address: int, values: Values) -> int:
        """The current word of one holding register (for mask writes)."""
        return self.read_registers(self.holding, address, 1, values)[0]


def _decoded(tag: RegisterTag, words: Sequence[int]) -> Value:
    value = tag.fmt.decode(words)
    try:
        return checked_value(tag.type_name, value)
    except (EncodeError, ValueError) as exc:
        raise BadValue(f"{tag.name} cannot hold {value!r}: {exc}") from None


def _area_name(coils: bool) -> str:
    return "coil" if coils else "di"


def _claim(area: dict[int, Any], offset: int, name: str) -> None:
    if offset in area:
        raise ConfigError(f"{name} overlaps {_owner(area[offset])} at address {offset}")


def _owner(slot: Any) -> str:
    if isinstance(slot, BitTag):
        return slot.name
    entry = slot[0]
    if isinstance(entry, RegisterTag):
        return entry.name
    return ", ".join(name for name, *_ in entry.bits)
