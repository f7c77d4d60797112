"""Every client engine, held to the same results as asyncua's own client reading the same server.

Hypothesis draws sequences of writes and read_many calls over nodes of every type (and an unknown
one); each sequence runs on every engine built here, from the same server state, and every point must
equal what asyncua's high-level client reads of the node (value, quality, source timestamp), and the
outcomes of the engines must equal one another.
"""

from __future__ import annotations

import asyncio
import datetime
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bifrost
from bifrost import DeviceError, EncodeError, Quality

from .conftest import ENGINES, TYPES, AsyncuaPeer

RANGES = {
    "SByte": (-(2**7), 2**7 - 1),
    "Byte": (0, 2**8 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "UInt16": (0, 2**16 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "UInt32": (0, 2**32 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt64": (0, 2**64 - 1),
}


def _value(name: str) -> st.SearchStrategy[Any]:
    if name == "Boolean":
        return st.booleans()
    if name == "String":
        return st.text(max_size=20)
    if name == "Float":
        return st.floats(width=32, allow_nan=False)
    if name == "Double":
        return st.floats(allow_nan=False)
    low, high = RANGES[name]
    # Out of range now and then: an EncodeError before the wire, on every engine alike.
    return st.integers(low - 3, high + 3)


_writes = st.sampled_from(list(TYPES)).flatmap(lambda name: st.tuples(st.just("write"), st.just(name), _value(name)))
_reads = st.tuples(st.just("read_many"), st.lists(st.sampled_from([*TYPES, "missing"]), min_size=1, max_size=8))
_ops = st.lists(st.one_of(_writes, _reads), min_size=1, max_size=6)


def _reference(peer: AsyncuaPeer, name: str) -> tuple[Any, Quality, float | None]:
    """The node as asyncua's own client-side API sees it, through the server's address space."""
    if name == "missing":
        return None, Quality.BAD, None

    async def read() -> Any:
        return await peer.nodes[f"types.{name}"].read_data_value()

    assert peer._runner is not None
    data = peer._runner.run(read())
    # A client's write carries no source timestamp; then the point carries the server's.
    stamp = data.SourceTimestamp or data.ServerTimestamp
    if stamp is None:
        return data.Value.Value, Quality.GOOD, None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return data.Value.Value, Quality.GOOD, stamp.timestamp()


async def _run(peer: AsyncuaPeer, engine: str, ops: list[Any]) -> list[Any]:
    outcomes: list[Any] = []
    node = {name: peer.node_id(f"types.{name}") for name in TYPES} | {"missing": "ns=2;s=types.missing"}
    async with bifrost.connect(peer.url, engine=engine) as plc:
        for op in ops:
            if op[0] == "write":
                _, name, value = op
                try:
                    await plc.write(node[name], value)
                    outcomes.append(("written", name))
                except (EncodeError, DeviceError) as exc:
                    outcomes.append((type(exc).__name__, name))
            else:
                names = op[1]
                points = await plc.read_many([node[name] for name in names])
                row = []
                for name in dict.fromkeys(names):
                    point = points[node[name]]
                    value, quality, stamp = _reference(peer, name)
                    if name == "Float" and value is not None:
                        assert math.isclose(point.value, value, rel_tol=1e-7)  # type: ignore[arg-type]
                    else:
                        assert point.value == value, (name, point, value)
                    assert point.quality is quality
                    if stamp is not None:
                        assert abs(point.timestamp - stamp) < 1e-3
                    row.append((name, point.value, point.quality))
                outcomes.append(row)
    return outcomes


def _reset(peer: AsyncuaPeer) -> None:
    for name, (vtype, value) in TYPES.items():
        peer.set(f"types.{name}", value, vtype)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_engines_agree_with_asyncua_and_each_other(opcua_server: AsyncuaPeer, ops: list[Any]) -> None:
    results = []
    try:
        for engine in ENGINES:
            _reset(opcua_server)
            results.append(asyncio.run(_run(opcua_server, engine, ops)))
    finally:
        _reset(opcua_server)
    assert all(result == results[0] for result in results[1:])
