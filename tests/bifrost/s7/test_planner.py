"""The S7 read planner: merging, packing to the negotiated PDU size both ways, and failing alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bifrost import ConfigError, DeviceError
from bifrost.s7 import pdu
from bifrost.s7.pdu import Area, ItemData, ReturnCode
from bifrost.s7.planner import Planner, ReadItem, ReadJob, max_payload

DB, MK = Area.DB, Area.FLAGS


def serve(memory: dict[tuple[Area, int], bytes], request: pdu.ReadRequest) -> list[ItemData]:
    """A CPU's answer: the bytes, 0x0A for an unknown DB, 0x05 past its end."""
    out = []
    for spec in request.items:
        area = memory.get((spec.area, spec.db))
        if area is None:
            out.append(ItemData(ReturnCode.OBJECT_DOES_NOT_EXIST, pdu.DataTransport.NULL))
        elif spec.start + spec.size > len(area):
            out.append(ItemData(ReturnCode.ADDRESS_OUT_OF_RANGE, pdu.DataTransport.NULL))
        else:
            out.append(ItemData(data=area[spec.start : spec.start + spec.size]))
    return out


def run(planner: Planner, items: list[ReadItem], memory: dict[tuple[Area, int], bytes]) -> ReadJob:
    job = ReadJob(planner, planner.plan(items), items)
    while (batch := job.next_batch()) is not None:
        request = batch.request
        assert len(pdu.encode_request(1, request)) <= planner.pdu_size
        answer = serve(memory, request)
        assert len(pdu.encode_response(1, pdu.ReadResponse(tuple(answer)))) <= planner.pdu_size
        job.answer(answer)
    return job


def test_near_items_of_one_db_merge_and_far_or_other_areas_do_not() -> None:
    planner = Planner(max_gap=4)
    plan = planner.plan(
        [
            ReadItem("a", DB, 1, 0, 4),
            ReadItem("b", DB, 1, 6, 2),
            ReadItem("c", DB, 1, 100, 4),
            ReadItem("d", DB, 2, 8, 4),
            ReadItem("e", MK, 0, 0, 2),
        ]
    )
    assert len(plan) == 1
    ranges = [(r.area, r.db, r.start, r.size, r.keys) for r in plan.batches[0].ranges]
    assert ranges == [
        (MK, 0, 0, 2, ("e",)),
        (DB, 1, 0, 8, ("a", "b")),
        (DB, 1, 100, 4, ("c",)),
        (DB, 2, 8, 4, ("d",)),
    ]


def test_two_hundred_tags_pack_into_far_fewer_pdus_than_chunks_of_twenty() -> None:
    # 200 tags spread over 3 DBs, 40 bytes apart so nothing merges: only packing helps.
    items = [ReadItem(f"t{i}", DB, 1 + i % 3, (i // 3) * 40, 4) for i in range(200)]
    plan = Planner(480, max_gap=0).plan(items)
    assert plan.ranges == 200
    assert len(plan) <= 6  # 480 bytes take 38 items of 4 bytes; snap7 would send 10 chunks of 20
    assert len(Planner(960, max_gap=0).plan(items)) <= 3


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([(DB, 1), (DB, 2), (MK, 0)]), st.integers(0, 600), st.integers(1, 300)),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([240, 480, 960]),
    st.integers(0, 16),
)
def test_every_item_is_read_whole_within_the_pdu_size(
    rows: list[tuple[tuple[Area, int], int, int]], pdu_size: int, gap: int
) -> None:
    memory = {(DB, 1): bytes(i % 251 for i in range(1000)), (DB, 2): bytes(range(256)) * 4, (MK, 0): bytes(900)}
    items = [ReadItem(f"k{i}", area, db, start, size) for i, ((area, db), start, size) in enumerate(rows)]
    job = run(Planner(pdu_size, max_gap=gap), items, memory)
    assert not job.errors
    for item in items:
        assert job.values[item.key] == memory[(item.area, item.db)][item.start : item.start + item.size]


def test_a_failing_item_fails_alone_and_is_kept_apart_afterwards() -> None:
    memory = {(DB, 1): bytes(range(10))}
    planner = Planner(max_gap=8)
    items = [ReadItem("ok", DB, 1, 0, 4), ReadItem("past_end", DB, 1, 8, 4), ReadItem("nodb", DB, 7, 0, 2)]
    job = run(planner, items, memory)
    assert job.values == {"ok": bytes(range(4))}
    assert isinstance(job.errors["past_end"], DeviceError) and job.errors["past_end"].code == 0x05
    assert isinstance(job.errors["nodb"], DeviceError) and job.errors["nodb"].code == 0x0A
    assert job.round_trips == 2  # the merged range failed once, then its items went one by one
    again = run(planner, items, memory)
    assert again.round_trips == 1
    assert again.values == {"ok": bytes(range(4))}
    planner.forget()
    assert planner.alone == set()


def test_a_pdu_refused_as_a_whole_is_retried_range_by_range() -> None:
    planner = Planner()
    items = [ReadItem("a", DB, 1, 0, 2), ReadItem("b", DB, 2, 0, 2)]
    job = ReadJob(planner, planner.plan(items), items)
    assert job.next_batch() is not None
    job.fail(DeviceError("refused", 0x8404))
    first = job.next_batch()
    assert first is not None and len(first.ranges) == 1
    job.answer([ItemData(data=b"ab")])
    second = job.next_batch()
    assert second is not None
    job.fail(DeviceError("refused", 0x8404))
    assert job.next_batch() is None
    assert job.values == {"a": b"ab"}
    assert set(job.errors) == {"b"}


def test_an_item_larger_than_one_answer_is_cut_and_joined() -> None:
    planner = Planner(240)
    size = max_payload(240) * 2 + 10
    memory = {(DB, 3): bytes(i % 256 for i in range(size))}
    job = run(planner, [ReadItem("big", DB, 3, 0, size)], memory)
    assert job.values["big"] == memory[(DB, 3)]


def test_bad_items_are_refused() -> None:
    planner = Planner()
    with pytest.raises(ConfigError, match="given twice"):
        planner.plan([ReadItem("a", DB, 1, 0, 2), ReadItem("a", DB, 1, 4, 2)])
    with pytest.raises(ConfigError, match="past byte 65535"):
        planner.plan([ReadItem("a", DB, 1, 65535, 2)])
    with pytest.raises(ConfigError, match="max_gap"):
        Planner(max_gap=-1)
