"""The two client engines, held to the same results against the simulator: values, exception codes,
errors raised before the wire, and timeouts. Hypothesis draws the operations (reads, writes, mask
writes, read/write multiple, device identification, server id); each sequence runs on the Python
engine and on the native one, from the same plant state, over Modbus TCP and over RTU over TCP, and
the outcomes must be equal.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bifrost
from bifrost import TagMap
from simulators import SimHost, load_scenario

PLANT = """
scenario: differential
seed: 1
tags:
  a: {type: int16, init: -5, writable: true}
  b: {type: uint32, init: 70000, writable: true}
  c: {type: float32, init: 1.5, writable: true}
  d: {type: float64, init: -2.25, writable: true}
  e: {type: "string[6]", init: abc, writable: true}
  f: {type: bool, init: true, writable: true}
  g: {type: bool, init: false}
  h: {type: uint16, init: 7}
  r: {type: uint16, init: 3}
  s: {type: float32, init: 21.5, writable: true}
devices:
  plc1:
    protocol: modbus
    transport: {transport}
    listen: 127.0.0.1:0
    unit: 1
    map:
      a: hr:0
      b: {address: hr:1, byte_order: CDAB}
      c: hr:3
      d: {address: hr:10, byte_order: DCBA}
      e: hr:20
      f: coil:0
      g: di:0
      h: ir:0
      r: hr:30
      s: {address: hr:32, type: int16, scale: 0.5}
"""
NAMES = ["a", "b", "c", "d", "e", "f", "g", "h", "r", "s"]
ENGINES = ("python", "native")


@pytest.fixture(scope="module", params=["tcp", "rtu+tcp"])
def host(request: pytest.FixtureRequest) -> Iterator[SimHost]:
    scenario = load_scenario(Path("differential.yaml"), text=PLANT.replace("{transport}", str(request.param)))
    with SimHost(scenario, clock="virtual", any_port=True) as started:
        yield started


raw_addresses = st.builds(
    lambda area, offset, typed: f"{area}:{offset}{typed if area in ('hr', 'ir') else ''}",
    st.sampled_from(["hr", "ir", "coil", "di"]),
    st.integers(0, 40),
    st.sampled_from(["", ":int16", ":uint32", ":float32", ":uint32:CDAB", ":float64:DCBA"]),
)
targets = st.one_of(st.sampled_from(NAMES), raw_addresses)
values = st.one_of(
    st.booleans(),
    st.integers(-(2**33), 2**33),
    st.floats(allow_nan=False, width=32),
    st.sampled_from(["xyz", "too long for six"]),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("read"), targets),
        st.tuples(st.just("read_many"), st.lists(targets, min_size=1, max_size=6)),
        st.tuples(st.just("write"), targets, values),
        st.tuples(st.just("mask_write"), targets, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
        st.tuples(st.just("read_write"), targets, targets, values),
        st.tuples(st.just("identify"), st.sampled_from([1, 2, 3])),
        st.tuples(st.just("server_id")),
    ),
    min_size=1,
    max_size=8,
)


def _outcome(error: BaseException) -> tuple[str, Any]:
    return (type(error).__name__, getattr(error, "code", None))


def _comparable(value: Any) -> Any:
    # Registers read as a float may hold a NaN, which equals nothing, not even the other engine's NaN.
    return "nan" if isinstance(value, float) and math.isnan(value) else value


async def _run(url: str, tags: TagMap, engine: str, ops: list[tuple[Any, ...]], timeout: float) -> list[Any]:
    out: list[Any] = []
    async with bifrost.connect(url, tags=tags, engine=engine, timeout=timeout) as plc:
        for op in ops:
            try:
                if op[0] == "read":
                    out.append(("value", _comparable((await plc.read(op[1])).value)))
                elif op[0] == "read_many":
                    points = await plc.read_many(op[1])
                    out.append(
                        ("points", [(name, _comparable(p.value), p.quality.value) for name, p in points.items()])
                    )
                elif op[0] == "write":
                    await plc.write(op[1], op[2])
                    out.append(("written",))
                elif op[0] == "mask_write":
                    await plc.mask_write(op[1], op[2], op[3])
                    out.append(("masked",))
                elif op[0] == "read_write":
                    out.append(("value", _comparable((await plc.read_write(op[1], op[2], op[3])).value)))
                elif op[0] == "identify":
                    out.append(("identity", await plc.device_identification(op[1])))
                else:
                    out.append(("server id", await plc.report_server_id()))
            except (bifrost.BifrostError, ValueError) as exc:
                out.append(_outcome(exc))
    return out


def _both(host: SimHost, ops: list[tuple[Any, ...]], timeout: float = 3.0) -> dict[str, list[Any]]:
    device = host.devices["plc1"]
    results = {}
    for engine in ENGINES:
        host.reset()  # the same plant state for each engine
        results[engine] = asyncio.run(asyncio.wait_for(_run(device.url, device.tags, engine, ops, timeout), 30))
    return results


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_engines_agree_on_any_sequence_of_reads_and_writes(host: SimHost, ops: list[tuple[Any, ...]]) -> None:
    results = _both(host, ops)
    assert results["python"] == results["native"]


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fault=st.sampled_from(
        [
            ("stall", {}),
            ("drop", {}),
            ("exception", {"code": 6}),
            ("exception", {"code": 3}),
            ("bad_quality", {}),
        ]
    ),
    target=st.sampled_from(["a", "c", "f", "hr:20:uint32"]),
)
def test_engines_agree_under_faults(host: SimHost, fault: tuple[str, dict[str, Any]], target: str) -> None:
    """A timeout, a lost answer and an exception surface alike; the read after the fault is good on both."""
    kind, params = fault
    device = host.devices["plc1"]
    results = {}
    for engine in ENGINES:
        host.reset()
        with host.inject_fault("plc1", kind, **params):
            during = asyncio.run(asyncio.wait_for(_run(device.url, device.tags, engine, [("read", target)], 0.2), 30))
        after = asyncio.run(asyncio.wait_for(_run(device.url, device.tags, engine, [("read", target)], 3.0), 30))
        results[engine] = (during, after)
    assert results["python"] == results["native"]
    during, after = results["python"]
    assert during[0][0] in {"TimeoutError", "DeviceError"}
    assert after[0][0] == "value"
