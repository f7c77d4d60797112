"""An S7 device's memory: DBs, flags (M), inputs (I) and outputs (Q) as byte images, with the plant's
tags laid over them at their addresses.

A CPU's memory is bytes, so this is too: a read renders the tags it touches into the image (encoded
with their S7 type, big-endian) and answers the bytes; bytes no tag maps hold what was last written
there (zeros at first), as in a real DB. A write lands in a copy of the image, the tags it touches are
decoded from it and checked, and only then is anything kept and set in the plant — so a refused
write changes nothing. Areas are sized from the map (the end of its last tag) or from `sizes`.

The answers are a CPU's item return codes: an area that does not exist 0x0A, a range past its end
0x05, a tag that is not writable through this device 0x03, a written value the tag cannot hold 0x07,
and a tag whose current value does not fit the type it is served as 0x01 (hardware fault).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bifrost.errors import EncodeError
from bifrost.s7.address import S7Format, format_for_tag, parse_address
from bifrost.s7.pdu import Area, ReturnCode
from bifrost.tags import Tag, Value, parse_type
from simulators.s7.model import DEFAULT_SIZES, S7DeviceModel, area_key
from simulators.scenario import Scenario, checked_value

Values = Callable[[str], Value]


class AreaError(Exception):
    """A request the memory refuses: `code` is the item return code to answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class TagSlot:
    name: str
    area: str
    start: int
    fmt: S7Format
    writable: bool
    type_name: str  # the plant tag's type, which a written value must fit

    @property
    def end(self) -> int:
        return self.start + self.fmt.size

    @property
    def bit(self) -> int | None:
        return self.fmt.bit if self.fmt.type.is_bool else None


class Memory:
    """The areas of one device, and the tags on them."""

    def __init__(self, sizes: Mapping[str, int], slots: list[TagSlot]) -> None:
        self.images: dict[str, bytearray] = {key: bytearray(size) for key, size in sizes.items()}
        self.slots: dict[str, list[TagSlot]] = {}
        for slot in sorted(slots, key=lambda s: (s.area, s.start)):
            self.slots.setdefault(slot.area, []).append(slot)
        self._starts = {area: [s.start for s in found] for area, found in self.slots.items()}
        self._widest = {area: max(s.fmt.size for s in found) for area, found in self.slots.items()}
        self.tags = {slot.name: slot for slot in slots}

    @classmethod
    def of(cls, scenario: Scenario, device: str, writable: Callable[[str], bool]) -> Memory:
        spec = scenario.device(device)
        assert isinstance(spec, S7DeviceModel), f"{device} is a {spec.protocol} device"
        slots = []
        sizes: dict[str, int] = {}
        for name in spec.mapped(scenario.tags):
            entry = spec.entry(name)
            plant_type = scenario.tags[name].type
            dtype, length = parse_type(entry.type or plant_type)
            address = parse_address(entry.address)
            tag = Tag(
                name=name, address=entry.address, type=dtype, length=length, scale=entry.scale, offset=entry.offset
            )
            fmt = format_for_tag(tag, address)
            slot = TagSlot(name, area_key(address.area, address.db), address.start, fmt, writable(name), plant_type)
            slots.append(slot)
            sizes[slot.area] = max(sizes.get(slot.area, 0), slot.end)
        # Declared sizes, else defaults for M/I/Q; never smaller than what the map puts there.
        for key, size in {**DEFAULT_SIZES, **spec.sizes}.items():
            sizes[key] = max(sizes.get(key, 0), size)
        return cls(sizes, slots)

    def size(self, area: Area, db: int) -> int | None:
        image = self.images.get(area_key(area, db))
        return None if image is None else len(image)

    # --- reads --------------------------------------------------------------------------------------

    def _touching(self, area: str, start: int, end: int) -> list[TagSlot]:
        slots = self.slots.get(area)
        if not slots:
            return []
        first = bisect_left(self._starts[area], start - self._widest[area] + 1)
        out = []
        for slot in slots[first:]:
            if slot.start >= end:
                break
            if slot.end > start:
                out.append(slot)
        return out

    def _image(self, area: Area, db: int, start: int, size: int) -> tuple[str, bytearray]:
        key = area_key(area, db)
        image = self.images.get(key)
        if image is None:
            raise AreaError(ReturnCode.OBJECT_DOES_NOT_EXIST, f"{key} does not exist")
        if start + size > len(image):
            raise AreaError(
                ReturnCode.ADDRESS_OUT_OF_RANGE,
                f"{key} bytes {start}..{start + size - 1} run past its {len(image)} bytes",
            )
        return key, image

    def _render(self, image: bytearray, slots: list[TagSlot], values: Values) -> None:
        for slot in slots:
            value = values(slot.name)
            try:
                if slot.bit is not None:
                    mask = 1 << slot.bit
                    image[slot.start] = image[slot.start] | mask if value else image[slot.start] & ~mask
                else:
                    image[slot.start : slot.end] = slot.fmt.encode(value)
            except EncodeError as exc:
                raise AreaError(
                    ReturnCode.HARDWARE_FAULT, f"{slot.name} = {value!r} does not fit {slot.fmt.name}: {exc}"
                ) from None

    def read(self, area: Area, db: int, start: int, size: int, values: Values) -> bytes:
        key, image = self._image(area, db, start, size)
        self._render(image, self._touching(key, start, start + size), values)
        return bytes(image[start : start + size])

    # --- writes -------------------------------------------------------------------------------------

    def write(self, area: Area, db: int, start: int, data: bytes, bit: int | None, values: Values) -> dict[str, Value]:
        """Write bytes (or one bit, `data` 0/1) and return the tag values it set; refused: nothing changes."""
        size = 1 if bit is not None else len(data)
        key, image = self._image(area, db, start, size)
        touched = self._touching(key, start, start + size)
        if bit is not None:
            touched = [slot for slot in touched if slot.bit is None or slot.bit == bit]
        draft = bytearray(image[start : start + size])
        scratch = image  # render into the image first, so a partial write merges with current values
        self._render(scratch, touched, values)
        before = bytes(scratch[start : start + size])
        if bit is not None:
            mask = 1 << bit
            draft = bytearray(before)
            draft[0] = draft[0] | mask if data[:1] != b"\x00" else draft[0] & ~mask
        else:
            draft = bytearray(data)
        changed: dict[str, Value] = {}
        for slot in touched:
            if slot.bit is not None:
                old = bool(before[slot.start - start] >> slot.bit & 1)
                new = bool(draft[slot.start - start] >> slot.bit & 1)
                if old == new and bit is None:
                    continue  # a byte write that leaves this bit as it is does not write the bit's tag
                value: Value = new
            else:
                lo, hi = max(slot.start, start), min(slot.end, start + size)
                whole = bytearray(scratch[slot.start : slot.end])
                whole[lo - slot.start : hi - slot.start] = draft[lo - start : hi - start]
                decoded = slot.fmt.decode(bytes(whole))
                if isinstance(decoded, tuple):
                    raise AreaError(ReturnCode.TYPE_NOT_SUPPORTED, f"{slot.name} is an array: not served as a tag")
                value = decoded
            if not slot.writable:
                raise AreaError(ReturnCode.ACCESS_DENIED, f"{slot.name} is not writable through this device")
            if isinstance(value, float) and not math.isfinite(value) and slot.type_name.startswith("int"):
                raise AreaError(ReturnCode.TYPE_INCONSISTENT, f"{value!r} does not fit {slot.name}")
            try:
                changed[slot.name] = checked_value(slot.type_name, value)
            except Exception as exc:  # the value does not fit the plant tag: nothing is written
                raise AreaError(ReturnCode.TYPE_INCONSISTENT, f"{value!r} does not fit {slot.name}: {exc}") from None
        image[start : start + size] = draft
        return changed


__all__ = ["AreaError", "Memory", "TagSlot", "Values"]
