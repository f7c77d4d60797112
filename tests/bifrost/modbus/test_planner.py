"""The read planner: fewest requests within the limits, each tag read once, and holes learnt from exception 2."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bifrost import TagMap
from bifrost.errors import ConfigError, DeviceError, ProtocolError
from bifrost.modbus.address import Area, parse_address, resolve_tag
from bifrost.modbus.pdu import ADDRESS_SPACE, MAX_READ_BITS, MAX_READ_REGISTERS, ExceptionCode
from bifrost.modbus.planner import (
    HoleMap,
    Plan,
    Planner,
    ReadItem,
    ReadJob,
    ReadRequest,
    Slice,
    hole_error,
)
from bifrost.tags import DataType
from bifrost.values import WireFormat
from simulators import shipped_scenario

HR, IR, COIL, DI = Area.HOLDING_REGISTER, Area.INPUT_REGISTER, Area.COIL, Area.DISCRETE_INPUT


def hr(key: str, offset: int, width: int = 1, unit: int = 1) -> ReadItem:
    return ReadItem(key, unit, HR, offset, width)


def spans(plan: Plan) -> list[tuple[int, str, int, int]]:
    return [(r.unit, r.area.value, r.start, r.count) for r in plan.requests]


# --- examples -------------------------------------------------------------------------------------


def test_neighbours_merge_across_gaps_up_to_max_gap() -> None:
    planner = Planner(max_register_gap=8)
    plan = planner.plan([hr("a", 0, 2), hr("b", 10), hr("c", 20)])  # gaps of 8, then 9
    assert spans(plan) == [(1, "hr", 0, 11), (1, "hr", 20, 1)]
    assert plan.slices == {"a": Slice(0, 0, 2), "b": Slice(0, 10, 1), "c": Slice(1, 0, 1)}
    assert plan.members == (("a", "b"), ("c",))
    assert spans(Planner(max_register_gap=0).plan([hr("a", 0, 2), hr("b", 2), hr("c", 4)])) == [
        (1, "hr", 0, 3),
        (1, "hr", 4, 1),
    ]


def test_bits_have_their_own_gap() -> None:
    items = [ReadItem("a", 1, COIL, 0), ReadItem("b", 1, COIL, 33), ReadItem("c", 1, COIL, 67)]
    assert spans(Planner(max_bit_gap=32).plan(items)) == [(1, "coil", 0, 34), (1, "coil", 67, 1)]


def test_units_and_areas_never_share_a_request() -> None:
    items = [
        hr("a", 0),
        hr("b", 1, unit=2),
        ReadItem("c", 1, IR, 1),
        ReadItem("d", 1, DI, 0),
        ReadItem("e", 1, COIL, 0),
    ]
    plan = Planner().plan(items)
    assert spans(plan) == [(1, "coil", 0, 1), (1, "di", 0, 1), (1, "ir", 1, 1), (1, "hr", 0, 1), (2, "hr", 1, 1)]
    assert [r.function for r in plan.requests] == [1, 2, 4, 3, 3]


@pytest.mark.parametrize(("area", "limit"), [(HR, MAX_READ_REGISTERS), (IR, MAX_READ_REGISTERS), (COIL, MAX_READ_BITS)])
def test_a_request_never_asks_for_more_than_the_protocol_allows(area: Area, limit: int) -> None:
    full = [ReadItem(f"k{i}", 1, area, i) for i in range(limit)]
    assert spans(Planner().plan(full)) == [(1, area.value, 0, limit)]
    one_more = [*full, ReadItem("last", 1, area, limit)]
    assert spans(Planner().plan(one_more)) == [(1, area.value, 0, limit), (1, area.value, limit, 1)]


def test_device_limits_may_be_lower() -> None:
    planner = Planner(max_registers=10, max_bits=16)
    plan = planner.plan([hr(f"k{i}", i) for i in range(25)] + [ReadItem(f"c{i}", 1, COIL, i) for i in range(20)])
    assert spans(plan) == [
        (1, "coil", 0, 16),
        (1, "coil", 16, 4),
        (1, "hr", 0, 10),
        (1, "hr", 10, 10),
        (1, "hr", 20, 5),
    ]


def test_a_wide_item_that_would_overflow_starts_a_new_request_overlapping_the_last() -> None:
    plan = Planner(max_register_gap=125).plan([hr("a", 0, 4), hr("b", 120, 4), hr("c", 123, 4)])
    assert spans(plan) == [(1, "hr", 0, 124), (1, "hr", 123, 4)]


def test_overlapping_items_share_registers() -> None:
    items = [hr("word", 3), ReadItem("bit0", 1, HR, 3), ReadItem("bit7", 1, HR, 3), hr("dword", 2, 2)]
    plan = Planner().plan(items)
    assert spans(plan) == [(1, "hr", 2, 2)]
    assert plan.slices == {
        "dword": Slice(0, 0, 2),
        "bit0": Slice(0, 1, 1),
        "bit7": Slice(0, 1, 1),
        "word": Slice(0, 1, 1),
    }


def test_the_end_of_the_address_space() -> None:
    plan = Planner().plan([hr("a", 65532, 4), hr("b", 65524, 2)])
    assert spans(plan) == [(1, "hr", 65524, 12)]
    assert plan.requests[0].end == ADDRESS_SPACE


def test_an_empty_plan() -> None:
    plan = Planner().plan([])
    assert (plan.requests, dict(plan.slices), plan.members, plan.failed, len(plan)) == ((), {}, (), (), 0)


def test_areas_may_be_given_as_strings() -> None:
    plan = Planner().plan([ReadItem("a", 1, "hr", 0), ReadItem("b", 1, "hr", 1)])  # type: ignore[arg-type]
    assert spans(plan) == [(1, "hr", 0, 2)]
    assert plan.requests[0].area is HR


def test_plans_are_plain_data_for_the_rust_engine() -> None:
    planner = Planner()
    planner.holes.add(1, HR, 50, 1)
    plan = planner.plan([hr("a", 0, 2), hr("b", 4), ReadItem("c", 1, COIL, 7), hr("gone", 50)])
    assert plan.to_plain() == {
        "requests": [(1, "coil", 1, 7, 1), (1, "hr", 3, 0, 5)],
        "slices": [("c", 0, 0, 1), ("a", 1, 0, 2), ("b", 1, 4, 1)],
        "failed": [("gone", 1, "hr", 50, 1)],
    }
    assert str(plan.requests[1]) == "unit 1 hr:0 x5"
    assert plan.item("b") == hr("b", 4)


def test_plan_values_cuts_an_answer_into_its_items() -> None:
    plan = Planner().plan([hr("a", 0, 2), hr("b", 4)])
    assert plan.values(0, [10, 11, 12, 13, 14]) == {"a": [10, 11], "b": [14]}


@pytest.mark.parametrize(
    ("address", "fmt", "width"),
    [
        ("hr:0", None, 1),
        ("hr:0:float64", None, 4),
        ("hr:0", WireFormat(DataType.FLOAT32), 2),
        ("hr:0:string[7]", None, 4),
        ("hr:0.3", WireFormat(DataType.BOOL, bit=3), 1),
        ("coil:9", WireFormat(DataType.BOOL), 1),
    ],
)
def test_read_items_from_addresses(address: str, fmt: WireFormat | None, width: int) -> None:
    parsed = parse_address(address)
    item = ReadItem.of("k", 3, parsed, fmt)
    assert item == ReadItem("k", 3, parsed.area, parsed.offset, width)
    assert item.end == parsed.offset + width


def test_the_shipped_scenario_plans_one_request_per_area() -> None:
    tags = TagMap.from_scenario(shipped_scenario("water_tank"), device="plc1")
    items = [ReadItem.of(name, tags.unit or 1, *resolve_tag(tags[name])) for name in tags]
    plan = Planner().plan(items)
    assert spans(plan) == [(1, "coil", 0, 1), (1, "di", 0, 1), (1, "ir", 0, 1), (1, "hr", 0, 7)]
    assert plan.slices["valve.open"] == Slice(3, 6, 1)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (ReadItem("k", 1, "xx", 0), "item 'k': unknown area 'xx'; expected one of coil, di, ir, hr"),  # type: ignore[arg-type]
        (ReadItem("k", 256, HR, 0), "item 'k': unit 256 is out of range; expected 0..255"),
        (ReadItem("k", -1, HR, 0), "unit -1 is out of range"),
        (ReadItem("k", 1, HR, -1), "item 'k': offset -1 is out of range; expected 0..65535"),
        (ReadItem("k", 1, HR, 0, 0), "item 'k': 0 registers cannot be read at once; one read takes 1..125"),
        (ReadItem("k", 1, HR, 0, 126), "126 registers cannot be read at once; one read takes 1..125"),
        (ReadItem("k", 1, DI, 0, 2001), "2001 bits cannot be read at once; one read takes 1..2000"),
        (ReadItem("k", 1, HR, 65535, 2), "item 'k': 2 from 65535 runs past the end of the address space (65536)"),
        (ReadItem("k", 1, HR, 65536, 1), "offset 65536 is out of range"),
    ],
)
def test_items_no_request_could_read_are_config_errors(item: ReadItem, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Planner().plan([hr("fine", 0), item])
    assert message in str(caught.value)


def test_a_key_given_twice_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="given more than once: a, b"):
        Planner().plan([hr("a", 0), hr("b", 1), hr("a", 5), hr("b", 9), hr("c", 7)])
    planner = Planner()
    planner.holes.add(1, HR, 5, 1)
    with pytest.raises(ConfigError, match=r"given more than once: a$"):
        planner.plan([hr("a", 0), hr("a", 5)])  # once planned, once in a hole


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_register_gap": -1}, "max_register_gap must be a whole number 0..125, not -1"),
        ({"max_bit_gap": 2001}, "max_bit_gap must be a whole number 0..2000, not 2001"),
        ({"max_registers": 0}, "max_registers must be a whole number 1..125, not 0"),
        ({"max_registers": 126}, "max_registers must be a whole number 1..125"),
        ({"max_bits": 2.5}, "max_bits must be a whole number 1..2000, not 2.5"),
        ({"max_bits": True}, "max_bits must be a whole number"),
    ],
)
def test_planner_settings_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Planner(**kwargs)  # type: ignore[arg-type]


# --- the hole map ------------------------------------------------------------------------------------


def test_a_hole_blocks_every_request_that_contains_it() -> None:
    holes = HoleMap()
    holes.add(1, HR, 10, 5)
    assert holes.blocks(1, HR, 10, 5) and holes.blocks(1, HR, 0, 20)
    assert not holes.blocks(1, HR, 10, 4) and not holes.blocks(1, HR, 11, 10)
    assert not holes.blocks(2, HR, 0, 20) and not holes.blocks(1, IR, 0, 20)
    assert holes.ranges() == [(1, HR, 10, 5)] and len(holes) == 1


def test_only_the_smallest_ranges_are_kept() -> None:
    holes = HoleMap()
    holes.add(1, HR, 10, 10)
    holes.add(1, HR, 12, 3)  # inside the first: the first says nothing more
    holes.add(1, HR, 0, 40)  # contains a known one: redundant
    holes.add(1, HR, 12, 3)  # again
    holes.add(1, HR, 30, 2)
    assert holes.ranges() == [(1, HR, 12, 3), (1, HR, 30, 2)]


def test_successful_reads_narrow_a_hole_to_the_gap_that_holds_it() -> None:
    holes = HoleMap()
    holes.add(1, HR, 0, 20)
    holes.readable(1, HR, 0, 6)  # left part reads
    assert holes.ranges() == [(1, HR, 6, 14)]
    holes.readable(1, HR, 15, 5)  # right part reads
    assert holes.ranges() == [(1, HR, 6, 9)]
    holes.readable(1, HR, 9, 2)  # strictly inside: cannot narrow a range to two pieces
    holes.readable(1, HR, 100, 2)  # elsewhere
    holes.readable(2, HR, 0, 20)  # another unit
    assert holes.ranges() == [(1, HR, 6, 9)]


def test_a_refusal_that_was_not_a_missing_register_keeps_the_range_as_it_failed() -> None:
    # Some devices refuse reads that cross a block boundary: both halves read, the whole does not.
    holes = HoleMap()
    holes.add(1, HR, 0, 10)
    holes.readable(1, HR, 0, 5)
    holes.readable(1, HR, 5, 5)
    assert holes.ranges() == [(1, HR, 0, 10)]
    holes.readable(1, HR, 0, 9)  # no longer narrowed
    assert holes.ranges() == [(1, HR, 0, 10)]
    holes.readable(1, HR, 0, 10)  # now the whole range reads: the device changed, forget it
    assert holes.ranges() == [] and not holes.blocks(1, HR, 0, 10)


def test_holes_are_cleared_per_unit_or_all_at_once() -> None:
    holes = HoleMap()
    for unit in (1, 2):
        holes.add(unit, HR, 5, 1)
        holes.add(unit, COIL, 5, 1)
    holes.clear(unit=1)
    assert holes.ranges() == [(2, COIL, 5, 1), (2, HR, 5, 1)]
    holes.clear()
    assert len(holes) == 0


def test_plans_avoid_known_holes_and_fail_the_items_inside_them() -> None:
    planner = Planner()
    planner.holes.add(1, HR, 3, 1)
    plan = planner.plan([hr("a", 0, 2), hr("in", 3), hr("over", 2, 2), hr("b", 5)])
    assert spans(plan) == [(1, "hr", 0, 2), (1, "hr", 5, 1)]
    assert [item.key for item in plan.failed] == ["over", "in"]
    planner.holes.clear()
    assert spans(planner.plan([hr("a", 0, 2), hr("in", 3), hr("over", 2, 2), hr("b", 5)])) == [(1, "hr", 0, 6)]


# --- splitting on exception 2 ------------------------------------------------------------------------


def test_split_bisects_at_the_widest_gap_and_remembers_the_hole() -> None:
    planner = Planner(max_register_gap=20)
    plan = planner.plan([hr("a", 0), hr("b", 2), hr("c", 4), hr("d", 20), hr("e", 22)])
    assert spans(plan) == [(1, "hr", 0, 23)]
    sub = planner.split(plan, 0)
    assert spans(sub) == [(1, "hr", 0, 5), (1, "hr", 20, 3)]
    assert sub.members == (("a", "b", "c"), ("d", "e"))
    assert sub.slices["e"] == Slice(1, 2, 1)
    assert planner.holes.ranges() == [(1, HR, 0, 23)]
    planner.succeeded(sub, 0)
    planner.succeeded(sub, 1)
    assert planner.holes.ranges() == [(1, HR, 5, 15)]  # the gap between the halves
    assert spans(planner.plan(plan.item(k) for k in "abcde")) == [(1, "hr", 0, 5), (1, "hr", 20, 3)]


def test_an_item_that_is_its_own_request_fails_alone() -> None:
    planner = Planner()
    plan = planner.plan([hr("a", 7, 2)])
    sub = planner.split(plan, 0)
    assert sub.requests == () and sub.failed == (hr("a", 7, 2),)
    assert planner.plan([hr("a", 7, 2)]).failed == (hr("a", 7, 2),)


def test_items_on_the_same_registers_fail_together_only_if_they_hold_the_hole() -> None:
    planner = Planner()
    plan = planner.plan([hr("x", 4), ReadItem("bit", 1, HR, 4), hr("y", 5)])
    sub = planner.split(plan, 0)  # hr:4..5 refused
    assert spans(sub) == [(1, "hr", 4, 1), (1, "hr", 5, 1)]
    again = planner.split(sub, 0)  # hr:4 refused too
    assert again.requests == ()
    assert sorted(item.key for item in again.failed) == ["bit", "x"]


def test_split_works_when_no_cut_leaves_both_halves_smaller() -> None:
    # The long item ends last, so the left half at the middle cut still spans the failed range.
    planner = Planner()
    plan = planner.plan([hr("a", 0), hr("long", 1, 9), hr("b", 5)])
    sub = planner.split(plan, 0)
    assert sorted(item.key for item in sub.failed) == []
    assert {key for members in sub.members for key in members} == {"a", "long", "b"}
    assert all(not planner.holes.blocks(r.unit, r.area, r.start, r.count) for r in sub.requests)


# --- ReadJob -------------------------------------------------------------------------------------------


@dataclass
class Device:
    """A fake device: a read fails with exception 2 if it contains one of `refused` (unit, area, start, end)."""

    refused: list[tuple[int, Area, int, int]] = field(default_factory=list)
    requests: int = 0
    refusals: int = 0

    def reads(self, unit: int, area: Area, start: int, end: int) -> bool:
        return not any((u, a) == (unit, area) and start <= first and last <= end for u, a, first, last in self.refused)

    def answer(self, request: ReadRequest) -> list[int]:
        self.requests += 1
        if not self.reads(request.unit, request.area, request.start, request.end):
            self.refusals += 1
            raise DeviceError("illegal data address", code=ExceptionCode.ILLEGAL_DATA_ADDRESS)
        return [value(request.unit, request.area, a) for a in range(request.start, request.end)]


def value(unit: int, area: Area, address: int) -> int:
    if area.holds_bits:
        return (address * 7 + unit) % 3 == 0
    return (unit * 1000 + list(Area).index(area) * 100 + address * 31) % 65536


def poll(planner: Planner, device: Device, items: Sequence[ReadItem]) -> ReadJob:
    job = ReadJob(planner, planner.plan(items))
    while (request := job.next_request()) is not None:
        try:
            data = device.answer(request)
        except DeviceError as exc:
            job.fail(exc)
        else:
            job.answer(data)
    assert job.done
    return job


def check(job: ReadJob, device: Device, items: Sequence[ReadItem]) -> None:
    assert set(job.values).isdisjoint(job.errors)
    assert set(job.values) | set(job.errors) == {item.key for item in items}
    for item in items:
        if device.reads(item.unit, item.area, item.offset, item.end):
            expected = [value(item.unit, item.area, a) for a in range(item.offset, item.end)]
            assert list(job.values[item.key]) == expected, item
        else:
            error = job.errors[item.key]
            assert isinstance(error, DeviceError) and error.code == ExceptionCode.ILLEGAL_DATA_ADDRESS, item
            assert repr(item.key) in str(error)


def test_a_hole_in_a_gap_costs_one_split_and_is_then_avoided() -> None:
    items = [hr("a", 0, 2), hr("b", 4), hr("c", 8, 2), ReadItem("x", 1, COIL, 0)]
    device = Device(refused=[(1, HR, 6, 7)])
    planner = Planner()
    first = poll(planner, device, items)
    check(first, device, items)
    assert (device.requests, device.refusals) == (4, 1)  # coil, hr:0..9 refused, hr:0..4, hr:8..9
    assert planner.holes.ranges() == [(1, HR, 5, 3)]
    device.requests = device.refusals = 0
    check(poll(planner, device, items), device, items)
    assert (device.requests, device.refusals) == (3, 0)


def test_a_tag_in_a_hole_fails_alone_and_is_not_asked_for_again() -> None:
    items = [hr("a", 0), hr("missing", 1), hr("b", 2)]
    device = Device(refused=[(1, HR, 1, 2)])
    planner = Planner()
    job = poll(planner, device, items)
    check(job, device, items)
    assert set(job.errors) == {"missing"}
    assert "'missing' (unit 1, hr:1, 1 register) is not served by the device (exception 2" in str(job.errors["missing"])
    device.requests = 0
    check(poll(planner, device, items), device, items)
    assert device.requests == 2


def test_other_errors_fail_every_key_of_the_request() -> None:
    planner = Planner()
    job = ReadJob(planner, planner.plan([hr("a", 0), hr("b", 1), hr("c", 50)]))
    assert not job.done
    job.next_request()
    timeout = TimeoutError("no answer")
    job.fail(timeout)
    job.next_request()
    job.fail(DeviceError("busy", code=6))
    assert job.next_request() is None and job.done
    assert job.errors["a"] is timeout and job.errors["b"] is timeout
    assert isinstance(job.errors["c"], DeviceError) and job.errors["c"].code == 6
    assert len(planner.holes) == 0


def test_a_short_answer_is_a_protocol_error_and_extra_bits_are_ignored() -> None:
    planner = Planner()
    job = ReadJob(planner, planner.plan([hr("a", 0), hr("b", 1), ReadItem("c", 1, COIL, 0, 3)]))
    assert job.next_request() == ReadRequest(1, COIL, 0, 3)
    job.answer([True, False, True, False, False, False, False, False])  # padded to a byte
    job.next_request()
    job.answer([1])
    assert job.values == {"c": [True, False, True]}
    assert isinstance(job.errors["a"], ProtocolError) and "holds 1 values, not 2" in str(job.errors["a"])


def test_read_job_is_used_in_order() -> None:
    planner = Planner()
    job = ReadJob(planner, planner.plan([hr("a", 0)]))
    with pytest.raises(RuntimeError, match="call next_request"):
        job.answer([1])
    job.next_request()
    with pytest.raises(RuntimeError, match="answer or fail the previous request"):
        job.next_request()


def test_items_already_known_to_be_in_holes_fail_without_a_request() -> None:
    planner = Planner()
    planner.holes.add(1, HR, 1, 1)
    job = ReadJob(planner, planner.plan([hr("gone", 1)]))
    assert job.next_request() is None
    assert job.errors["gone"].code == ExceptionCode.ILLEGAL_DATA_ADDRESS  # type: ignore[attr-defined]
    assert str(hole_error(hr("g", 0, 2))).startswith("'g' (unit 1, hr:0, 2 registers) is not served")
    assert "coil:4, 1 bit)" in str(hole_error(ReadItem("c", 1, COIL, 4)))


# --- properties -----------------------------------------------------------------------------------------

AREAS = list(Area)


@st.composite
def item_lists(draw: st.DrawFn) -> list[ReadItem]:
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(1, 3),
                st.sampled_from(AREAS),
                st.integers(1, 8),
                st.one_of(st.integers(0, 260), st.integers(ADDRESS_SPACE - 40, ADDRESS_SPACE - 1)),
            ),
            max_size=60,
        )
    )
    return [
        ReadItem(f"k{i}", unit, area, min(offset, ADDRESS_SPACE - width), width)
        for i, (unit, area, width, offset) in enumerate(rows)
    ]


planners = st.builds(
    Planner,
    max_register_gap=st.integers(0, 20),
    max_bit_gap=st.integers(0, 64),
    max_registers=st.integers(8, MAX_READ_REGISTERS),
    max_bits=st.integers(8, MAX_READ_BITS),
)


def limit_of(planner: Planner, area: Area) -> int:
    return planner.max_bits if area.holds_bits else planner.max_registers


def gap_of(planner: Planner, area: Area) -> int:
    return planner.max_bit_gap if area.holds_bits else planner.max_register_gap


def check_plan(planner: Planner, plan: Plan, items: list[ReadItem]) -> None:
    """Every item once, from the right place; every request within limits; nothing left to merge."""
    failed = {item.key for item in plan.failed}
    assert set(plan.slices) | failed == {item.key for item in items}
    assert set(plan.slices).isdisjoint(failed)
    assert sorted(key for members in plan.members for key in members) == sorted(plan.slices)
    assert len(plan.requests) <= len(items) - len(failed)  # never longer than tag by tag
    for item in items:
        if item.key in failed:
            assert planner.holes.blocks(item.unit, item.area, item.offset, item.width)
            continue
        where = plan.slices[item.key]
        request = plan.requests[where.request]
        assert (request.unit, request.area, request.start + where.offset, where.width) == (
            item.unit,
            item.area,
            item.offset,
            item.width,
        )
        assert where.offset + where.width <= request.count and item.key in plan.members[where.request]
    for request, members in zip(plan.requests, plan.members, strict=True):
        assert members and 1 <= request.count <= limit_of(planner, request.area)
        assert request.start >= 0 and request.end <= ADDRESS_SPACE
        assert not planner.holes.blocks(request.unit, request.area, request.start, request.count)
    # Optimal-ish: no two neighbouring requests of one unit and area could have been one.
    ordered = sorted(plan.requests, key=lambda r: (r.unit, AREAS.index(r.area), r.start))
    for left, right in itertools.pairwise(ordered):
        if (left.unit, left.area) != (right.unit, right.area):
            continue
        merged_end = max(left.end, right.end)
        assert (
            right.start - left.end > gap_of(planner, left.area)
            or merged_end - left.start > limit_of(planner, left.area)
            or planner.holes.blocks(left.unit, left.area, left.start, merged_end - left.start)
        ), (left, right)


@settings(max_examples=200)
@given(item_lists(), planners)
def test_every_item_is_read_once_from_the_right_words_within_the_limits(
    items: list[ReadItem], planner: Planner
) -> None:
    plan = planner.plan(items)
    assert not plan.failed
    check_plan(planner, plan, items)
    device = Device()
    values: dict[str, Sequence[int]] = {}
    for index, request in enumerate(plan.requests):
        values.update(plan.values(index, device.answer(request)))
    for item in items:
        assert list(values[item.key]) == [value(item.unit, item.area, a) for a in range(item.offset, item.end)]


@settings(max_examples=150)
@given(
    item_lists(),
    planners,
    st.lists(st.tuples(st.integers(1, 3), st.sampled_from(AREAS), st.integers(0, 260), st.integers(1, 3)), max_size=6),
)
def test_known_holes_are_never_requested(
    items: list[ReadItem], planner: Planner, holes: list[tuple[int, Area, int, int]]
) -> None:
    for hole in holes:
        planner.holes.add(*hole)
    check_plan(planner, planner.plan(items), items)


refusals = st.lists(
    st.tuples(
        st.integers(1, 3),
        st.sampled_from(AREAS),
        st.integers(0, 260),
        st.sampled_from([1, 1, 1, 2]),  # a missing address, or a boundary reads may not cross
    ).map(lambda t: (t[0], t[1], t[2], t[2] + t[3])),
    max_size=8,
)


@settings(max_examples=150)
@given(item_lists(), planners, refusals)
def test_exception_2_splits_and_is_learnt_until_polls_run_clean(
    items: list[ReadItem], planner: Planner, refused: list[tuple[int, Area, int, int]]
) -> None:
    device = Device(refused=refused)
    for _ in range(30):
        device.requests = device.refusals = 0
        job = poll(planner, device, items)
        check(job, device, items)
        # Splitting is a bisection tree over each request's items: bounded, never a retry storm.
        assert device.requests <= 3 * len(items)
        check_plan(planner, planner.plan(items), items)
        if device.refusals == 0:
            break
    assert device.refusals == 0, "the planner kept asking for refused ranges"
