"""Read planning for S7: the fewest read-var PDUs that fetch a set of tags. Pure: no I/O, no clock.

1. Merge: items of one area (one DB) are sorted by offset and merged into byte ranges while the gap
   between them is small (`max_gap`); a range never outgrows what one answer can carry. An item
   larger than that is cut into several ranges and joined again.
2. Pack: ranges go into as few PDUs as the negotiated PDU size allows, counting both the request
   (12 bytes per item) and the answer (4 bytes per item, its data and fill bytes); first fit by size,
   largest first. There is no fixed item limit (python-snap7 and PLC4X stop at 20).
3. Fail alone: every range has its own return code, so a bad item only fails its own range. When a
   range of several items fails (0x05 out of range, say, because merging ran past the end of a DB),
   `ReadJob` reads its items again one by one, and the planner remembers them so later plans keep
   them apart; when a whole PDU is refused, its ranges are sent again one per PDU.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from bifrost.errors import ConfigError, DeviceError, ProtocolError
from bifrost.s7.pdu import (
    ACK_HEADER,
    HEADER,
    ITEM_SPEC,
    MIN_PDU,
    Area,
    ItemData,
    ReadRequest,
    ReturnCode,
    TransportSize,
    VarSpec,
    return_code_text,
)

_ITEM_ANSWER = 4  # return code, transport size, length


class ReadItem(NamedTuple):
    """`size` bytes from byte `start` of an area (`db` for a data block)."""

    key: str
    area: Area
    db: int
    start: int
    size: int

    def __str__(self) -> str:
        where = f"DB{self.db}" if self.area is Area.DB else self.area.name
        return f"{self.key!r} ({where} bytes {self.start}..{self.start + self.size - 1})"


class Member(NamedTuple):
    """Part of an item in a range: `length` bytes at `offset` of the range are bytes
    `item_offset`.. of item `key`."""

    key: str
    offset: int
    item_offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Range:
    area: Area
    db: int
    start: int
    size: int
    members: tuple[Member, ...]

    @property
    def spec(self) -> VarSpec:
        return VarSpec(self.area, self.start, self.size, TransportSize.BYTE, self.db)

    @property
    def answer_size(self) -> int:
        return _ITEM_ANSWER + self.size + (self.size & 1)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(member.key for member in self.members))

    def __str__(self) -> str:
        where = f"DB{self.db}" if self.area is Area.DB else self.area.name
        return f"{where} bytes {self.start}..{self.start + self.size - 1}"


@dataclass(frozen=True, slots=True)
class Batch:
    """One read-var PDU."""

    ranges: tuple[Range, ...]

    @property
    def request(self) -> ReadRequest:
        return ReadRequest(tuple(r.spec for r in self.ranges))

    @property
    def request_size(self) -> int:
        return HEADER + 2 + ITEM_SPEC * len(self.ranges)

    @property
    def answer_size(self) -> int:
        return ACK_HEADER + 2 + sum(r.answer_size for r in self.ranges)


@dataclass(frozen=True, slots=True)
class Plan:
    batches: tuple[Batch, ...] = ()
    sizes: dict[str, int] = field(default_factory=dict)  # bytes of each item

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def ranges(self) -> int:
        return sum(len(batch.ranges) for batch in self.batches)


def max_payload(pdu_size: int) -> int:
    """The most data bytes one item of a read answer can carry in a PDU of `pdu_size`."""
    return pdu_size - ACK_HEADER - 2 - _ITEM_ANSWER


class Planner:
    """Plans reads for one connection, for its negotiated `pdu_size`; remembers items that failed.

    max_gap: the most unrequested bytes read to join two items of one area.
    """

    def __init__(self, pdu_size: int = 480, *, max_gap: int = 8) -> None:
        if isinstance(max_gap, bool) or not isinstance(max_gap, int) or not 0 <= max_gap <= 256:
            raise ConfigError(f"max_gap must be a whole number 0..256, not {max_gap!r}")
        self.max_gap = max_gap
        self.pdu_size = pdu_size
        self.alone: set[tuple[Area, int, int, int]] = set()  # items seen failing: never merged again

    @property
    def pdu_size(self) -> int:
        return self._pdu_size

    @pdu_size.setter
    def pdu_size(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < MIN_PDU // 2:
            raise ConfigError(f"pdu_size must be a whole number of at least {MIN_PDU // 2}, not {size!r}")
        self._pdu_size = size
        self._payload = max_payload(size)

    def plan(self, items: Iterable[ReadItem]) -> Plan:
        """The ranges and PDUs that read every item once. ConfigError for a bad or repeated item."""
        rows = []
        sizes: dict[str, int] = {}
        for item in items:
            key, area, db, start, size = item
            if key in sizes:
                raise ConfigError(f"each item is read once, but {key!r} is given twice")
            if not isinstance(area, Area) or not 0 <= db <= 0xFFFF or start < 0 or size < 1:
                raise ConfigError(f"item {item}: not a readable area, DB, offset and size")
            if start + size > 0x10000:
                raise ConfigError(f"item {item}: runs past byte 65535 of its area")
            sizes[key] = size
            rows.append(item)
        rows.sort(key=lambda r: (r.area, r.db, r.start, -r.size))
        return Plan(self.pack(self.merge(rows)), sizes)

    def merge(self, rows: Sequence[ReadItem]) -> list[Range]:
        """Byte ranges of sorted items: near items joined, big items cut to fit one answer."""
        ranges: list[Range] = []
        payload = self._payload
        group: tuple[Area, int] | None = None
        first = last = 0
        members: list[Member] = []

        def close() -> None:
            if members:
                ranges.append(Range(group[0], group[1], first, last - first, tuple(members)))  # type: ignore[index]
                members.clear()

        for item in rows:
            key, area, db, start, size = item
            end = start + size
            if (area, db, start, size) in self.alone or size > payload:
                close()
                for at in range(0, size, payload):
                    length = min(payload, size - at)
                    ranges.append(Range(area, db, start + at, length, (Member(key, 0, at, length),)))
                group = None
                continue
            if members and group == (area, db) and start - last <= self.max_gap and max(end, last) - first <= payload:
                members.append(Member(key, start - first, 0, size))
                last = max(last, end)
                continue
            close()
            group, first, last = (area, db), start, end
            members.append(Member(key, 0, 0, size))
        close()
        return ranges

    def pack(self, ranges: Sequence[Range]) -> tuple[Batch, ...]:
        """Ranges into the fewest PDUs (first fit, largest first), each within the PDU size both ways."""
        limit = self._pdu_size
        open_batches: list[tuple[list[Range], int, int]] = []  # ranges, request bytes, answer bytes
        for rng in sorted(ranges, key=lambda r: -r.answer_size):
            for index, (members, request, answer) in enumerate(open_batches):
                if request + ITEM_SPEC <= limit and answer + rng.answer_size <= limit:
                    members.append(rng)
                    open_batches[index] = (members, request + ITEM_SPEC, answer + rng.answer_size)
                    break
            else:
                open_batches.append(([rng], HEADER + 2 + ITEM_SPEC, ACK_HEADER + 2 + rng.answer_size))
        batches = []
        for members, _request, _answer in open_batches:
            members.sort(key=lambda r: (r.area, r.db, r.start))
            batches.append(Batch(tuple(members)))
        batches.sort(key=lambda b: (b.ranges[0].area, b.ranges[0].db, b.ranges[0].start))
        return tuple(batches)

    def failed_alone(self, item: ReadItem) -> None:
        self.alone.add((item.area, item.db, item.start, item.size))

    def forget(self) -> None:
        """Forget what failed (on reconnect: the CPU may have been loaded anew)."""
        self.alone.clear()


def item_error(item: ReadItem | Range | str, code: int, device: str = "") -> DeviceError:
    prefix = f"{device}: " if device else ""
    return DeviceError(f"{prefix}{item}: {return_code_text(code)}", code=code)


# Return codes that say "this object is not there at all": re-reading parts of it cannot help.
_WHOLE_OBJECT = {ReturnCode.OBJECT_DOES_NOT_EXIST}


class ReadJob:
    """Runs one plan, sans I/O; reads the items of a failed range again one by one::

    job = ReadJob(planner, plan, items)
    while (batch := job.next_batch()) is not None:
        try:
            job.answer(await send(batch.request))  # the ItemData of each range
        except DeviceError as exc:
            job.fail(exc)  # the PDU was refused as a whole
    job.values, job.errors  # per key: the bytes, or the error
    """

    def __init__(self, planner: Planner, plan: Plan, items: Iterable[ReadItem], device: str = "") -> None:
        self.planner = planner
        self.device = device
        self.items = {item.key: item for item in items}
        self.values: dict[str, bytes] = {}
        self.errors: dict[str, BaseException] = {}
        self._buffers: dict[str, bytearray] = {}
        self._parts: dict[str, int] = {}
        self._pending: deque[Batch] = deque(plan.batches)
        self._current: Batch | None = None
        self.round_trips = 0

    def next_batch(self) -> Batch | None:
        if self._current is not None:
            raise RuntimeError("answer or fail the previous batch before asking for the next")
        if not self._pending:
            return None
        self._current = self._pending.popleft()
        self.round_trips += 1
        return self._current

    def _take(self) -> Batch:
        if self._current is None:
            raise RuntimeError("no batch is outstanding: call next_batch() first")
        batch, self._current = self._current, None
        return batch

    def answer(self, items: Sequence[ItemData]) -> None:
        batch = self._take()
        if len(items) != len(batch.ranges):
            error = ProtocolError(f"{self.device}: {len(items)} items answered, {len(batch.ranges)} asked")
            for rng in batch.ranges:
                self._fail_range(rng, error)
            return
        retry: list[Range] = []
        for rng, data in zip(batch.ranges, items, strict=False):
            if not data.ok:
                if len(rng.keys) > 1 and data.return_code not in _WHOLE_OBJECT:
                    retry.extend(self._singles(rng))
                else:
                    if len(rng.keys) == 1:
                        self.planner.failed_alone(self.items[rng.keys[0]])
                    self._fail_range(rng, item_error(self._name(rng), data.return_code, self.device))
                continue
            if len(data.data) < rng.size:
                self._fail_range(
                    rng, ProtocolError(f"{self.device}: {rng}: {len(data.data)} bytes answered, {rng.size} asked")
                )
                continue
            for member in rng.members:
                self._put(member, data.data)
        if retry:
            self._pending.extendleft(reversed(self.planner.pack(retry)))

    def fail(self, error: BaseException) -> None:
        """The batch failed as a whole: a refused PDU of several ranges is retried range by range."""
        batch = self._take()
        if isinstance(error, DeviceError) and len(batch.ranges) > 1:
            self._pending.extendleft(reversed([Batch((rng,)) for rng in batch.ranges]))
            return
        for rng in batch.ranges:
            self._fail_range(rng, error)

    def _singles(self, rng: Range) -> list[Range]:
        """The items of a failed range, each in ranges of its own (cut to fit one answer)."""
        payload = max_payload(self.planner.pdu_size)
        out = []
        for key in rng.keys:
            item = self.items[key]
            for at in range(0, item.size, payload):
                length = min(payload, item.size - at)
                out.append(Range(item.area, item.db, item.start + at, length, (Member(key, 0, at, length),)))
        return out

    def _name(self, rng: Range) -> str | ReadItem:
        keys = rng.keys
        return self.items[keys[0]] if len(keys) == 1 else str(rng)

    def _fail_range(self, rng: Range, error: BaseException) -> None:
        for key in rng.keys:
            self.errors.setdefault(key, error)
            self.values.pop(key, None)

    def _put(self, member: Member, data: bytes) -> None:
        key = member.key
        if key in self.errors:
            return
        size = self.items[key].size
        chunk = data[member.offset : member.offset + member.length]
        if member.length == size:
            self.values[key] = bytes(chunk)
            return
        buffer = self._buffers.setdefault(key, bytearray(size))
        buffer[member.item_offset : member.item_offset + member.length] = chunk
        self._parts[key] = self._parts.get(key, 0) + member.length
        if self._parts[key] >= size:
            self.values[key] = bytes(buffer)


__all__ = ["Batch", "Member", "Plan", "Planner", "Range", "ReadItem", "ReadJob", "item_error", "max_payload"]
