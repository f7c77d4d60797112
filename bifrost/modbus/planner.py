"""Read planning: the fewest Modbus read requests that fetch a set of tags. Pure: no I/O, no clock.

`Planner.plan(items)` sorts the items by unit, area and offset and walks them once, merging each
into the current request while the gap before it is small (`max_register_gap`, `max_bit_gap`) and
the request stays within the protocol's limits. Each tag then maps to a `Slice` of one response.

Merging across a gap reads registers no tag asked for, and a device that does not serve one of them
answers exception 2 (illegal data address) for the whole request. `Planner.split` then bisects the
request and remembers the failing range in a `HoleMap`, so later plans stop merging across it; a
tag whose own registers hold the hole fails on its own. `ReadJob` drives a plan through all that,
sans I/O: the engine asks it for the next request and hands back the answer or the error.

A plan is plain data (ints and strings, `Plan.to_plain()`), so the Rust engine can execute it too.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bifrost.errors import ConfigError, DeviceError, ProtocolError
from bifrost.modbus.address import Address, Area
from bifrost.modbus.pdu import ADDRESS_SPACE, MAX_READ_BITS, MAX_READ_REGISTERS, ExceptionCode, FunctionCode
from bifrost.values import WireFormat

# Areas by a small int, so the hot loop sorts and compares ints rather than enum members.
_AREAS = tuple(Area)
# Keyed by member and by value, so an item may name its area Area.HOLDING_REGISTER or plain 'hr'.
_RANK: dict[str, int] = {**{a.value: r for r, a in enumerate(_AREAS)}, **{a: r for r, a in enumerate(_AREAS)}}


class ReadItem(NamedTuple):
    """One thing to read: `width` registers (ir, hr) or bits (coil, di) from `offset` on `unit`.

    A NamedTuple (not a dataclass) because a poll builds and unpacks thousands of them. Its size is
    `width`, not `count`, which would hide tuple.count.
    """

    key: str
    unit: int
    area: Area
    offset: int
    width: int = 1

    @property
    def end(self) -> int:
        return self.offset + self.width

    @classmethod
    def of(cls, key: str, unit: int, address: Address, fmt: WireFormat | None = None) -> ReadItem:
        """The item for a value at `address`; `fmt` (e.g. from `resolve_tag`) sets its width in registers."""
        width = address.count if fmt is None or address.is_bit else fmt.words
        return cls(key, unit, address.area, address.offset, width)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read: function `area.read_function`, `count` registers or bits from `start`, on `unit`."""

    unit: int
    area: Area
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count

    @property
    def function(self) -> FunctionCode:
        return self.area.read_function

    def __str__(self) -> str:
        return f"unit {self.unit} {self.area.value}:{self.start} x{self.count}"


class Slice(NamedTuple):
    """Where one item sits in the answers: `width` values from `offset` of the answer to `request`."""

    request: int
    offset: int
    width: int


@dataclass(frozen=True, slots=True)
class Plan:
    """Requests to send, and where each item's values sit in their answers.

    `members[i]` are the keys read by `requests[i]`, in offset order. `failed` are items known to sit
    in a hole of the device's map (they get no request and fail with exception 2).
    """

    requests: tuple[ReadRequest, ...] = ()
    slices: Mapping[str, Slice] = field(default_factory=dict)
    members: tuple[tuple[str, ...], ...] = ()
    failed: tuple[ReadItem, ...] = ()

    def __len__(self) -> int:
        return len(self.requests)

    def item(self, key: str) -> ReadItem:
        """The item `key`, as it was planned."""
        where = self.slices[key]
        request = self.requests[where.request]
        return ReadItem(key, request.unit, request.area, request.start + where.offset, where.width)

    def values(self, index: int, data: Sequence[Any]) -> dict[str, Sequence[Any]]:
        """Cut the answer to `requests[index]` into each member's registers or bits."""
        slices = self.slices
        out: dict[str, Sequence[Any]] = {}
        for key in self.members[index]:
            where = slices[key]
            out[key] = data[where.offset : where.offset + where.width]
        return out

    def to_plain(self) -> dict[str, list[Any]]:
        """The plan as ints and strings only, for the Rust engine or a log.

        requests: (unit, area, function, start, count); slices: (key, request, offset, width);
        failed: (key, unit, area, offset, width).
        """
        return {
            "requests": [(r.unit, r.area.value, int(r.function), r.start, r.count) for r in self.requests],
            "slices": [(key, *where) for key, where in self.slices.items()],
            "failed": [(i.key, i.unit, i.area.value, i.offset, i.width) for i in self.failed],
        }


class _Hole:
    """A range that drew exception 2: at least one address in [start, end) is not served.

    `first_*` keep the range as it failed, because a later success may show that narrowing it was
    wrong (some devices refuse a request for crossing a boundary, not for a missing register).
    """

    __slots__ = ("end", "firm", "first_end", "first_start", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = self.first_start = start
        self.end = self.first_end = end
        self.firm = False  # True once narrowing proved wrong: the range then stays as it failed


class HoleMap:
    """What the planner has learnt about a device's map: ranges that drew exception 2.

    A request that contains a remembered range is never planned again. Successful reads narrow the
    ranges (call `readable`), so after a split the hole shrinks to the gap that really holds it.
    Forget everything (`clear`) when the device may have changed, e.g. on reconnect.
    """

    def __init__(self) -> None:
        self._holes: dict[tuple[int, Area], list[_Hole]] = {}
        # Per (unit, area): starts and ends of the holes, both ascending (no hole contains another).
        self._index: dict[tuple[int, Area], tuple[list[int], list[int]]] = {}

    def __len__(self) -> int:
        return sum(len(holes) for holes in self._holes.values())

    def ranges(self) -> list[tuple[int, Area, int, int]]:
        """Every remembered range as (unit, area, start, count), sorted."""
        return sorted(
            (unit, area, hole.start, hole.end - hole.start)
            for (unit, area), holes in self._holes.items()
            for hole in holes
        )

    def add(self, unit: int, area: Area, start: int, count: int) -> None:
        """A read of `count` from `start` drew exception 2."""
        key = (unit, Area(area))
        self._holes.setdefault(key, []).append(_Hole(start, start + count))
        self._reindex(key)

    def readable(self, unit: int, area: Area, start: int, count: int) -> None:
        """A read of `count` from `start` succeeded: no hole lies in it, so narrow the ranges it overlaps."""
        key = (unit, Area(area))
        holes = self._holes.get(key)
        if not holes:
            return
        end = start + count
        kept = []
        for hole in holes:
            if start <= hole.first_start and hole.first_end <= end:
                continue  # the whole failed range reads now: the device changed, forget it
            if not hole.firm and hole.start < end and start < hole.end:
                if start <= hole.start and hole.end <= end:
                    # Narrowed to nothing: the refusal was not about one missing address after all.
                    hole.start, hole.end, hole.firm = hole.first_start, hole.first_end, True
                elif start <= hole.start:
                    hole.start = end
                elif hole.end <= end:
                    hole.end = start
            kept.append(hole)
        self._holes[key] = kept
        self._reindex(key)

    def blocks(self, unit: int, area: Area, start: int, count: int) -> bool:
        """Whether a read of `count` from `start` contains a remembered hole (and so would fail)."""
        index = self._index.get((unit, Area(area)))
        return index is not None and _contains_hole(index[0], index[1], start, start + count)

    def clear(self, unit: int | None = None) -> None:
        """Forget the holes of one unit, or of every unit."""
        for key in [key for key in self._holes if unit is None or key[0] == unit]:
            del self._holes[key]
            self._index.pop(key, None)

    def _lookup(self, unit: int, area: Area) -> tuple[list[int], list[int]] | None:
        return self._index.get((unit, area))

    def _reindex(self, key: tuple[int, Area]) -> None:
        # Keep only the smallest ranges: a request containing a larger one contains a smaller one too.
        # Sorted by start, then widest first, a range is redundant if a later one ends no later.
        holes = sorted(self._holes[key], key=lambda hole: (hole.start, -hole.end))
        kept: list[_Hole] = []
        lowest_end = ADDRESS_SPACE + 1
        for hole in reversed(holes):
            if hole.end < lowest_end:
                kept.append(hole)
                lowest_end = hole.end
        kept.reverse()
        if kept:
            self._holes[key] = kept
            self._index[key] = ([hole.start for hole in kept], [hole.end for hole in kept])
        else:
            del self._holes[key]
            self._index.pop(key, None)


def _contains_hole(starts: list[int], ends: list[int], start: int, end: int) -> bool:
    # Ends ascend with starts, so the first hole starting at or after `start` ends soonest.
    i = bisect_left(starts, start)
    return i < len(starts) and ends[i] <= end


class Planner:
    """Plans reads for one device connection (any number of units), remembering its holes.

    max_register_gap / max_bit_gap: the most unrequested registers or bits read to join two items.
    max_registers / max_bits: the most one request may ask for; lower them for devices that refuse
    the protocol's maximum (125 registers, 2000 bits).
    """

    def __init__(
        self,
        *,
        max_register_gap: int = 8,
        max_bit_gap: int = 32,
        max_registers: int = MAX_READ_REGISTERS,
        max_bits: int = MAX_READ_BITS,
        holes: HoleMap | None = None,
    ) -> None:
        for name, value, lowest, highest in (
            ("max_register_gap", max_register_gap, 0, MAX_READ_REGISTERS),
            ("max_bit_gap", max_bit_gap, 0, MAX_READ_BITS),
            ("max_registers", max_registers, 1, MAX_READ_REGISTERS),
            ("max_bits", max_bits, 1, MAX_READ_BITS),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
                raise ConfigError(f"{name} must be a whole number {lowest}..{highest}, not {value!r}")
        self.max_register_gap = max_register_gap
        self.max_bit_gap = max_bit_gap
        self.max_registers = max_registers
        self.max_bits = max_bits
        self.holes = holes if holes is not None else HoleMap()
        self._limits = tuple(max_bits if area.holds_bits else max_registers for area in _AREAS)
        self._gaps = tuple(max_bit_gap if area.holds_bits else max_register_gap for area in _AREAS)

    def plan(self, items: Iterable[ReadItem]) -> Plan:
        """The fewest requests (greedily, in offset order) that read every item once.

        Raises ConfigError for an item that no request could read, or for a key given twice.
        """
        limits = self._limits
        rows: list[tuple[int, int, int, int, str]] = []
        append = rows.append
        for item in items:
            key, unit, area, offset, count = item
            rank = _RANK.get(area, -1)
            # One chained test on the hot path; the slow path says what was wrong.
            if not (rank >= 0 and 0 <= unit <= 255 and offset >= 0 and 1 <= count <= limits[rank]):
                raise ConfigError(self._item_problem(ReadItem(*item)))
            if offset + count > ADDRESS_SPACE:
                raise ConfigError(self._item_problem(ReadItem(*item)))
            append((unit, rank, offset, offset + count, key))
        rows.sort()
        return self._merge(rows)

    def _item_problem(self, item: ReadItem) -> str:
        key, unit, area, offset, count = item
        rank = _RANK.get(area)
        if rank is None:
            return f"item {key!r}: unknown area {area!r}; expected one of {', '.join(a.value for a in Area)}"
        if not 0 <= unit <= 255:
            return f"item {key!r}: unit {unit} is out of range; expected 0..255"
        if not 0 <= offset < ADDRESS_SPACE:
            return f"item {key!r}: offset {offset} is out of range; expected 0..{ADDRESS_SPACE - 1}"
        limit = self._limits[rank]
        if not 1 <= count <= limit:
            unit_name = "bits" if _AREAS[rank].holds_bits else "registers"
            return f"item {key!r}: {count} {unit_name} cannot be read at once; one read takes 1..{limit}"
        return f"item {key!r}: {count} from {offset} runs past the end of the address space ({ADDRESS_SPACE})"

    def _merge(self, rows: list[tuple[int, int, int, int, str]]) -> Plan:
        requests: list[ReadRequest] = []
        members: list[tuple[str, ...]] = []
        slices: dict[str, Slice] = {}
        failed: list[ReadItem] = []
        lookup = self.holes._lookup
        group_unit = group_rank = -1
        area = _AREAS[0]
        limit = gap = 0
        starts: list[int] | None = None
        ends: list[int] = []
        first = last = -1  # the open request's range; first < 0 when none is open
        keys: list[str] = []
        for unit, rank, start, end, key in rows:
            if unit != group_unit or rank != group_rank:
                if first >= 0:
                    requests.append(ReadRequest(group_unit, area, first, last - first))
                    members.append(tuple(keys))
                    first = -1
                group_unit, group_rank, area = unit, rank, _AREAS[rank]
                limit, gap = self._limits[rank], self._gaps[rank]
                index = lookup(unit, area)
                starts, ends = (None, []) if index is None else index
            if starts is not None and _contains_hole(starts, ends, start, end):
                failed.append(ReadItem(key, unit, area, start, end - start))
                continue
            if first >= 0:
                reach = end if end > last else last
                if (
                    start - last <= gap
                    and reach - first <= limit
                    and (starts is None or not _contains_hole(starts, ends, first, reach))
                ):
                    last = reach
                    keys.append(key)
                    slices[key] = Slice(len(requests), start - first, end - start)
                    continue
                requests.append(ReadRequest(unit, area, first, last - first))
                members.append(tuple(keys))
            first, last, keys = start, end, [key]
            slices[key] = Slice(len(requests), 0, end - start)
        if first >= 0:
            requests.append(ReadRequest(group_unit, area, first, last - first))
            members.append(tuple(keys))
        # A key given twice overwrites its slice; one in a hole and one not is caught by the set.
        planned = len(slices) + len(failed) if not failed else len(slices.keys() | {item.key for item in failed})
        if planned != len(rows):
            _raise_duplicates(row[4] for row in rows)
        return Plan(tuple(requests), slices, tuple(members), tuple(failed))

    def split(self, plan: Plan, index: int) -> Plan:
        """`plan.requests[index]` drew exception 2: remember the hole, and plan its items again.

        The items are bisected (at the widest gap near the middle) until no request contains a known
        hole; an item that contains one on its own is returned in `failed`. Run the returned plan
        like any other, calling `split` again on it if one of its requests draws exception 2 too.
        """
        request = plan.requests[index]
        unit, area = request.unit, request.area
        self.holes.add(unit, area, request.start, request.count)
        rows = sorted((where.offset, where.offset + where.width, key) for key, where in _members(plan, index))
        groups: list[list[tuple[int, int, str]]] = []
        failed: list[ReadItem] = []
        self._bisect(unit, area, request.start, rows, groups, failed)
        requests: list[ReadRequest] = []
        slices: dict[str, Slice] = {}
        members: list[tuple[str, ...]] = []
        for group in groups:
            first = group[0][0]
            last = max(row[1] for row in group)
            for start, end, key in group:
                slices[key] = Slice(len(requests), start - first, end - start)
            requests.append(ReadRequest(unit, area, request.start + first, last - first))
            members.append(tuple(row[2] for row in group))
        return Plan(tuple(requests), slices, tuple(members), tuple(failed))

    def _bisect(
        self,
        unit: int,
        area: Area,
        base: int,
        rows: list[tuple[int, int, str]],
        groups: list[list[tuple[int, int, str]]],
        failed: list[ReadItem],
    ) -> None:
        first = rows[0][0]
        last = max(row[1] for row in rows)
        if not self.holes.blocks(unit, area, base + first, last - first):
            groups.append(rows)
        elif len(rows) == 1:
            failed.append(ReadItem(rows[0][2], unit, area, base + first, last - first))
        else:
            cut = _cut(rows)
            self._bisect(unit, area, base, rows[:cut], groups, failed)
            self._bisect(unit, area, base, rows[cut:], groups, failed)

    def succeeded(self, plan: Plan, index: int) -> None:
        """`plan.requests[index]` was answered: narrow the holes it overlaps. Cheap when none are known."""
        request = plan.requests[index]
        self.holes.readable(request.unit, request.area, request.start, request.count)


def _members(plan: Plan, index: int) -> Iterable[tuple[str, Slice]]:
    slices = plan.slices
    return ((key, slices[key]) for key in plan.members[index])


def _cut(rows: list[tuple[int, int, str]]) -> int:
    """Where to split sorted rows in two: the widest gap within the middle half, else the middle.

    Staying in the middle half keeps the bisection logarithmic; the widest gap is the likeliest hole.
    """
    n = len(rows)
    lowest, highest = max(1, n // 4), min(n - 1, n - n // 4)
    middle = n // 2
    reach = max(row[1] for row in rows[:lowest])
    best, best_gap = middle, None
    for cut in range(lowest, highest + 1):
        gap = rows[cut][0] - reach
        if best_gap is None or gap > best_gap or (gap == best_gap and abs(cut - middle) < abs(best - middle)):
            best, best_gap = cut, gap
        reach = max(reach, rows[cut][1])
    return best


def _raise_duplicates(keys: Iterable[str]) -> None:
    twice = sorted(key for key, times in Counter(keys).items() if times > 1)
    raise ConfigError(f"each item is read once, but these keys are given more than once: {', '.join(twice)}")


def hole_error(item: ReadItem) -> DeviceError:
    """The error for an item that sits in a hole of the device's map."""
    what = ("bit" if item.area.holds_bits else "register") + ("s" if item.width > 1 else "")
    return DeviceError(
        f"{item.key!r} (unit {item.unit}, {item.area.value}:{item.offset}, {item.width} {what}) "
        "is not served by the device (exception 2, illegal data address)",
        code=ExceptionCode.ILLEGAL_DATA_ADDRESS,
    )


class ReadJob:
    """Runs one plan to the end, sans I/O, splitting requests that draw exception 2.

        job = ReadJob(planner, planner.plan(items))
        while (request := job.next_request()) is not None:
            try:
                job.answer(await send(request))      # the registers or bits read
            except DeviceError as exc:
                job.fail(exc)                         # code 2 splits; any other fails the request's keys
        job.values, job.errors                        # per key: the raw words/bits, or the error

    `fail` takes any exception (a timeout, a lost connection): every key of the request gets it.
    """

    def __init__(self, planner: Planner, plan: Plan) -> None:
        self.planner = planner
        self.values: dict[str, Sequence[Any]] = {}
        self.errors: dict[str, BaseException] = {}
        self._pending: deque[tuple[Plan, int]] = deque()
        self._current: tuple[Plan, int] | None = None
        self._enqueue(plan)

    @property
    def done(self) -> bool:
        return self._current is None and not self._pending

    def next_request(self) -> ReadRequest | None:
        """The next request to send, or None when every key has a value or an error."""
        if self._current is not None:
            raise RuntimeError("answer or fail the previous request before asking for the next")
        if not self._pending:
            return None
        self._current = plan, index = self._pending.popleft()
        return plan.requests[index]

    def answer(self, data: Sequence[Any]) -> None:
        """The current request's registers (ints) or bits (bools); extra trailing bits are ignored."""
        plan, index = self._take()
        request = plan.requests[index]
        if len(data) < request.count:
            short = ProtocolError(f"{request}: the answer holds {len(data)} values, not {request.count}")
            self._fail(plan, index, short)
            return
        self.values.update(plan.values(index, data))
        self.planner.succeeded(plan, index)

    def fail(self, error: BaseException) -> None:
        """The current request failed; exception 2 splits it, any other error fails its keys."""
        plan, index = self._take()
        self._fail(plan, index, error)

    def _fail(self, plan: Plan, index: int, error: BaseException) -> None:
        if isinstance(error, DeviceError) and error.code == ExceptionCode.ILLEGAL_DATA_ADDRESS:
            sub = self.planner.split(plan, index)
            # Depth first, so a split finishes before other requests go out and narrows its hole early.
            self._pending.extendleft(reversed([(sub, i) for i in range(len(sub.requests))]))
            self._fail_holes(sub)
            return
        for key in plan.members[index]:
            self.errors[key] = error

    def _take(self) -> tuple[Plan, int]:
        if self._current is None:
            raise RuntimeError("no request is outstanding: call next_request() first")
        current, self._current = self._current, None
        return current

    def _enqueue(self, plan: Plan) -> None:
        self._pending.extend((plan, index) for index in range(len(plan.requests)))
        self._fail_holes(plan)

    def _fail_holes(self, plan: Plan) -> None:
        for item in plan.failed:
            self.errors[item.key] = hole_error(item)
