"""Plan reads for 10,000 tags: time per plan, and requests against reading tag by tag.

    python3 bench/bench_planner.py [--tags 10000] [--repeat 20] [--seed 7]

The tags are a seeded, realistic mix: four units behind one gateway, mostly holding and input
registers of every type (bits of status words, strings, 64-bit counters), some coils and discrete
inputs, laid out in blocks with reserved registers between tags and jumps between blocks. The peer
is the naive client, one request per tag, measured in the same run. A benchmark prints; it never
asserts.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from functools import partial

from bifrost.modbus.address import Area, resolve_tag
from bifrost.modbus.planner import Planner, ReadItem, ReadRequest
from bifrost.tags import Tag

AREA_MIX = [("hr", 55), ("ir", 25), ("coil", 12), ("di", 8)]
# (type, share): what register maps of drives, meters and PLCs hold.
REGISTER_TYPES = [
    ("uint16", 24),
    ("int16", 14),
    ("float32", 26),
    ("int32", 6),
    ("uint32", 6),
    ("float64", 4),
    ("uint64", 3),
    ("bits", 10),  # several bool tags on the bits of one status word
    ("string[16]", 4),
    ("string[8]", 3),
]


def make_tags(count: int, seed: int) -> list[tuple[int, Tag]]:
    """`count` (unit, tag) pairs laid out like real device maps."""
    rng = random.Random(seed)
    cursors: dict[tuple[int, str], int] = {}
    tags: list[tuple[int, Tag]] = []
    areas, area_weights = zip(*AREA_MIX, strict=True)
    types, type_weights = zip(*REGISTER_TYPES, strict=True)
    while len(tags) < count:
        unit = rng.randint(1, 4)
        area = rng.choices(areas, area_weights)[0]
        offset = cursors.get((unit, area), rng.randrange(0, 200))
        roll = rng.random()
        # Mostly packed, sometimes a reserved register or two, now and then the next block.
        offset += 0 if roll < 0.7 else rng.randint(1, 4) if roll < 0.92 else rng.randint(20, 400)
        if offset + 8 > 65536:  # full (never at 10,000 tags): a huge --tags wraps round rather than overflow
            offset = rng.randrange(0, 200)
        name = f"u{unit}.{area}.{len(tags)}"
        if area in ("coil", "di"):
            tags.append((unit, _tag(name, f"{area}:{offset}", "bool")))
            cursors[(unit, area)] = offset + 1
            continue
        kind = rng.choices(types, type_weights)[0]
        if kind == "bits":
            bits = sorted(rng.sample(range(16), rng.randint(2, 8)))
            tags += [(unit, _tag(f"{name}.{bit}", f"{area}:{offset}.{bit}", "bool")) for bit in bits]
            cursors[(unit, area)] = offset + 1
            continue
        tag = _tag(name, f"{area}:{offset}", kind, rng.choice(["ABCD", "CDAB"]))
        tags.append((unit, tag))
        cursors[(unit, area)] = offset + resolve_tag(tag)[1].words
    return tags[:count]


def _tag(name: str, address: str, kind: str, byte_order: str = "ABCD") -> Tag:
    return Tag.model_validate({"name": name, "address": address, "type": kind, "byte_order": byte_order})


def tag_by_tag(items: list[ReadItem]) -> list[ReadRequest]:
    """The peer: a client without a planner sends one request per tag."""
    return [ReadRequest(item.unit, Area(item.area), item.offset, item.width) for item in items]


def timed(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best and median wall time of `repeat` runs, in milliseconds (the collector left on, as in use)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args, _ = parser.parse_known_args()  # nox passes its posargs to every bench script

    tags = make_tags(args.tags, args.seed)
    started = time.perf_counter()
    items = [ReadItem.of(tag.name, unit, *resolve_tag(tag)) for unit, tag in tags]
    resolve_ms = (time.perf_counter() - started) * 1000
    mix = Counter(item.area.value for item in items)
    units = len({item.unit for item in items})
    print(f"bench_planner: {len(items):,} tags on {units} units ({', '.join(f'{a} {mix[a]:,}' for a, _ in AREA_MIX)})")
    print(f"  resolving the tags to addresses and widths, once per tag map: {resolve_ms:.1f} ms")

    naive = tag_by_tag(items)
    naive_best, naive_median = timed(lambda: tag_by_tag(items), args.repeat)
    rows = [("tag by tag (peer)", len(naive), naive_best, naive_median)]
    for label, planner in (
        ("planner, adjacent only", Planner(max_register_gap=0, max_bit_gap=0)),
        ("planner, default gaps (8 reg / 32 bit)", Planner()),
        ("planner, gaps 32 reg / 128 bit", Planner(max_register_gap=32, max_bit_gap=128)),
    ):
        plan = planner.plan(items)
        best, median = timed(partial(planner.plan, items), args.repeat)
        rows.append((label, len(plan.requests), best, median))

    holes = Planner()
    plan = holes.plan(items)
    for index in range(0, len(plan.requests), 10):  # one request in ten drew exception 2 and was split
        holes.split(plan, index)
    hole_plan = holes.plan(items)
    best, median = timed(partial(holes.plan, items), args.repeat)
    rows.append((f"planner, {len(holes.holes):,} known holes", len(hole_plan.requests), best, median))

    print(f"  {'':40} {'requests':>9} {'ratio':>7} {'best ms':>9} {'median ms':>10}")
    for label, requests, best, median in rows:
        print(f"  {label:40} {requests:>9,} {len(naive) / requests:>6.1f}x {best:>9.2f} {median:>10.2f}")
    default = rows[2]
    print(
        f"ratio: {len(naive) / default[1]:.1f}x fewer requests than tag by tag "
        f"({default[1]:,} vs {len(naive):,}), planned in {default[2]:.1f} ms best / {default[3]:.1f} ms median "
        f"per {len(items):,} tags"
    )


if __name__ == "__main__":
    main()
