"""Each fault kind x each client engine: what a client sees, checked, and written into docs/faults.md.

Every cell serves one device from a SimHost on a VirtualClock, injects one fault with
`host.inject_fault`, and drives a `bifrost.connect(url, engine=..., timeout=...)` client through it,
noting what each step observed as a short string ("TimeoutError; next read ok", "DeviceError code 6").
Plant time moves only when the cell advances it, so delays are exact and cost no wall time; the one
thing that is wall time is the client's own timeout (TIMEOUT), so a cell that expects one waits that
long, and every await is bounded by GUARD so that nothing can hang.

The issue's promises, cell by cell: a timeout raises bifrost.TimeoutError in bounded time (checked
against TIMEOUT), the next read works once the fault clears, an exception surfaces as DeviceError
with its code, a corrupted RTU frame never yields a value, and a late reply is never taken for the
answer to a later request (a reply held past the timeout is let go with an older value, and the next
read must show the newer one).

The table in docs/faults.md between the GENERATED markers is rendered from the observations; if
it differs, `BIFROST_REGENERATE_DOCS=1 python3 -m pytest tests/simulators/test_fault_matrix.py`
rewrites it. Under xdist a worker observes the cells the other one ran again for the table (they run
a few at a time, so this costs about as long as the slowest of them).
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

import bifrost
from bifrost.connection import Connection
from simulators.faults import ActiveFault, PlantFaults
from simulators.host import SimHost
from simulators.scenario import FAULT_KINDS, load_scenario

T = TypeVar("T")

TIMEOUT = 0.4  # the client's timeout, in wall seconds: what a cell waits when it expects a timeout
PATIENT = 5.0  # the client's timeout in cells that expect no timeout (busy CI machines are slow)
GUARD = 10.0  # the most any one await of a cell may take before the cell fails (nothing hangs CI)
CELL_GUARD = 30.0
ENGINES = ("python", "native")
DOC = Path(__file__).resolve().parents[2] / "docs" / "faults.md"
BEGIN = "<!-- BEGIN GENERATED: fault x engine x observed behaviour (written by a test run; do not edit by hand) -->"
END = "<!-- END GENERATED -->"
REGENERATE = "BIFROST_REGENERATE_DOCS"

SCENARIO = """\
scenario: fault matrix
seed: 7
clock: {{tick: 1s}}
tags:
  level: {{type: uint16, init: 5, writable: true}}
devices:
  plc1:
    protocol: modbus
    transport: {transport}
    listen: 127.0.0.1:0
    unit: 1
    map: {{level: hr:0}}
"""

TRANSPORTS = {"tcp": "TCP", "rtu+tcp": "RTU over TCP"}


# --- a cell's rig ----------------------------------------------------------------------------------------


class Rig:
    """One cell: a host serving plc1 on a VirtualClock, the engine to connect with, and its fault hits."""

    def __init__(self, host: SimHost, engine: str) -> None:
        self.host = host
        self.engine = engine
        self.url = host.url("plc1")
        self._hit = threading.Event()
        hooks = host.hooks
        assert isinstance(hooks, PlantFaults)
        hooks.device("plc1").on_hit(self._heard)

    def _heard(self, fault: ActiveFault) -> None:
        self._hit.set()

    @property
    def clock(self) -> Any:
        return self.host.clock

    def inject(self, kind: str, **params: Any) -> Any:
        self._hit.clear()
        return self.host.inject_fault("plc1", kind, **params)

    async def hit(self) -> None:
        """Wait until the fault has acted (on the host's loop thread); the next hit is waited for anew."""
        assert await asyncio.to_thread(self._hit.wait, GUARD), "the fault never acted"
        self._hit.clear()

    async def settle(self) -> None:
        """Let the host's loop run what is due now (bytes a lane let go when the clock moved)."""

        async def turns() -> None:
            for _ in range(5):
                await asyncio.sleep(0)

        await asyncio.to_thread(self.host.call, turns)

    async def advance(self, seconds: float) -> None:
        await asyncio.to_thread(self.clock.advance, seconds)
        await self.settle()

    def set(self, value: int) -> None:
        self.host.plant.set("level", value)

    @asynccontextmanager
    async def connect(self, timeout: float = TIMEOUT) -> AsyncIterator[Connection]:
        tags = self.host.devices["plc1"].tags
        connection = bifrost.connect(self.url, tags=tags, engine=self.engine, timeout=timeout)
        await bounded(connection.__aenter__())
        try:
            yield connection
        finally:
            await bounded(connection.__aexit__(None, None, None))


async def bounded(awaitable: Awaitable[T], limit: float = GUARD) -> T:
    return await asyncio.wait_for(awaitable, limit)


async def outcome(rig: Rig, awaitable: Awaitable[Any], *, expect: int | None = None) -> str:
    """What one call came to: "ok", "value 5", "TimeoutError", "DeviceError code 6", "ConnectError", ...

    A timeout is checked to come in bounded time: no sooner than the client's timeout, and not long
    after it.
    """
    start = time.monotonic()
    try:
        result = await bounded(awaitable)
    except bifrost.DeviceError as exc:
        return f"DeviceError code {exc.code}"
    except bifrost.TimeoutError:
        elapsed = time.monotonic() - start
        assert TIMEOUT * 0.9 <= elapsed <= TIMEOUT + 2.0, f"a {TIMEOUT} s timeout came after {elapsed:.3f} s"
        return "TimeoutError"
    except (bifrost.ConnectError, bifrost.ProtocolError) as exc:
        return type(exc).__name__
    value = getattr(result, "value", None)
    if expect is not None and value == expect:
        return "ok"
    return f"value {value}"


async def read(rig: Rig, plc: Connection, expect: int) -> str:
    return await outcome(rig, plc.read("level"), expect=expect)


# --- the cells ----------------------------------------------------------------------------------------------

Steps = Callable[[Rig], Awaitable[str]]


async def latency(rig: Rig) -> str:
    async with rig.connect(PATIENT) as plc:
        rig.inject("latency", delay="1s")
        pending = asyncio.ensure_future(read(rig, plc, 5))
        await rig.hit()  # the reply is held, due 1 s of plant time from now
        await rig.advance(0.999)
        early = pending.done()
        await rig.advance(0.001)
        first = await bounded(pending)
        assert not early, "the reply came before its delay"
        rig.host.clear_faults("plc1")
    async with rig.connect() as plc:
        # Held past the client's timeout: the late reply, with the old value, must not be taken.
        rig.inject("latency", delay="1s")
        pending = asyncio.ensure_future(read(rig, plc, 5))
        await rig.hit()
        late = await bounded(pending)
        rig.set(6)
        rig.host.clear_faults("plc1")
        await rig.advance(1)  # the late reply (value 5) goes out now, before the next request
        after = await read(rig, plc, 6)
    return f"{first} after 1 s of plant time; held past the timeout: {late}, next read {after} (not the late reply)"


async def paced(rig: Rig, kind: str, params: dict[str, Any], whole: float, what: str) -> str:
    async with rig.connect(PATIENT) as plc:
        rig.inject(kind, **params)
        pending = asyncio.ensure_future(read(rig, plc, 5))
        await rig.hit()
        await rig.advance(whole - 0.001)
        early = pending.done()
        await rig.advance(0.001)
        result = await bounded(pending)
        assert not early, f"the reply was whole before {whole} s"
    return f"{result}, {what}"


async def bandwidth(rig: Rig) -> str:
    return await paced(rig, "bandwidth", {"rate": 11}, 1.0, "whole after 1 s of plant time (11 bytes at 11 B/s)")


async def slicer(rig: Rig) -> str:
    return await paced(rig, "slicer", {"size": 1, "gap": "10ms"}, 0.1, "from 11 one-byte pieces over 0.1 s")


async def through_and_after(rig: Rig, kind: str, reads: int = 1, **params: Any) -> str:
    """A read (or several) under the fault, the fault cleared, a read after; the fault must have acted."""
    async with rig.connect() as plc:
        assert await read(rig, plc, 5) == "ok"
        handle = rig.inject(kind, **params)
        during = [await read(rig, plc, 5) for _ in range(reads)]
        assert handle.hits >= 1, f"{kind} never acted"
        handle.clear()
        after = await read(rig, plc, 5)
    return f"{', '.join(during)}; next read {after}"


async def stall(rig: Rig) -> str:
    return await through_and_after(rig, "stall")


async def reset(rig: Rig) -> str:
    return await through_and_after(rig, "reset", count=1)


async def close(rig: Rig) -> str:
    return await through_and_after(rig, "close", count=1)


async def drop(rig: Rig) -> str:
    return await through_and_after(rig, "drop", count=1)


async def corrupt(rig: Rig) -> str:
    # Nine bits flipped in each of two replies: the CRC catches them, so neither read may yield a value.
    return await through_and_after(rig, "corrupt", reads=2, bits=9, count=2)


async def exception(rig: Rig) -> str:
    return await through_and_after(rig, "exception", code=6)


async def bad_quality(rig: Rig) -> str:
    return await through_and_after(rig, "bad_quality")


async def wrong_transaction(rig: Rig) -> str:
    return await through_and_after(rig, "wrong_transaction", count=1)


async def truncate(rig: Rig) -> str:
    return await through_and_after(rig, "truncate", count=1)


async def refuse(rig: Rig) -> str:
    async with rig.connect() as served:
        assert await read(rig, served, 5) == "ok"
        handle = rig.inject("refuse")
        try:
            async with rig.connect() as refused:
                connecting = await read(rig, refused, 5)
        except (bifrost.ConnectError, bifrost.TimeoutError) as exc:
            connecting = type(exc).__name__
        open_one = await read(rig, served, 5)
        handle.clear()
        async with rig.connect() as later:
            after = await read(rig, later, 5)
    return f"connecting: {connecting}; a connection made before: {open_one}; once cleared: {after}"


async def freeze(rig: Rig) -> str:
    async with rig.connect() as plc:
        handle = rig.inject("freeze")
        rig.set(6)
        during = await read(rig, plc, 6)
        handle.clear()
        after = await read(rig, plc, 6)
    return f"{during} while the plant moved to 6; next read {after}"


async def reboot(rig: Rig) -> str:
    async with rig.connect() as plc:
        await bounded(plc.write("level", 77))
        rig.inject("reboot", for_="1s")
        dropped = await read(rig, plc, 5)
        booting = await read(rig, plc, 5)
        await rig.advance(1)
        after = await read(rig, plc, 5)
    return f"{dropped} (dropped); while booting: {booting}; once booted: {after} (77 written before is back to 5)"


@dataclass(frozen=True, eq=False)  # hashed by identity: one object per row
class Row:
    """One fault: how a cell injects it, its steps, and what both engines must observe."""

    fault: str
    transport: str
    steps: Steps
    expected: str | dict[str, str]

    @property
    def kind(self) -> str:
        return self.fault.split(",")[0]

    def expect(self, engine: str) -> str:
        return self.expected if isinstance(self.expected, str) else self.expected[engine]


ROWS = [
    Row(
        "latency,delay=1s",
        "tcp",
        latency,
        "ok after 1 s of plant time; held past the timeout: TimeoutError, next read ok (not the late reply)",
    ),
    Row("bandwidth,rate=11", "tcp", bandwidth, "ok, whole after 1 s of plant time (11 bytes at 11 B/s)"),
    Row("slicer,size=1,gap=10ms", "tcp", slicer, "ok, from 11 one-byte pieces over 0.1 s"),
    Row("stall", "tcp", stall, "TimeoutError; next read ok"),
    Row("reset,count=1", "tcp", reset, "ConnectError; next read ok"),
    Row("close,count=1", "tcp", close, "ConnectError; next read ok"),
    Row("refuse", "tcp", refuse, "connecting: ConnectError; a connection made before: ok; once cleared: ok"),
    Row("corrupt,bits=9,count=2", "rtu+tcp", corrupt, "TimeoutError, TimeoutError; next read ok"),
    Row("drop,count=1", "tcp", drop, "TimeoutError; next read ok"),
    Row("exception,code=6", "tcp", exception, "DeviceError code 6; next read ok"),
    Row(
        "wrong_transaction,count=1",
        "tcp",
        wrong_transaction,
        "ProtocolError; next read ok",
    ),
    Row("truncate,count=1", "tcp", truncate, "TimeoutError; next read ok"),
    Row("freeze", "tcp", freeze, "value 5 while the plant moved to 6; next read ok"),
    Row("bad_quality", "tcp", bad_quality, "DeviceError code 4; next read ok"),
    Row(
        "reboot,for=1s",
        "tcp",
        reboot,
        "ConnectError (dropped); while booting: ConnectError; once booted: ok (77 written before is back to 5)",
    ),
]

KNOWN_ISSUES: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Cell:
    row: Row
    engine: str

    @property
    def id(self) -> str:
        return f"{self.row.kind}-{self.row.transport}-{self.engine}"


ALL = [Cell(row, engine) for row in ROWS for engine in ENGINES]


async def run_cell(cell: Cell) -> str:
    scenario = load_scenario("matrix.yaml", text=SCENARIO.format(transport=cell.row.transport))
    with SimHost(scenario, clock="virtual", any_port=True) as host:
        return await bounded(cell.row.steps(Rig(host, cell.engine)), CELL_GUARD)


_observed: dict[Cell, str] = {}


def observe(cell: Cell) -> str:
    found = _observed.get(cell)
    if found is None:
        found = _observed[cell] = asyncio.run(run_cell(cell))
    return found


def observe_all() -> dict[Cell, str]:
    """Every cell's observation: those this process ran already, the others now, a few at a time."""
    missing = [cell for cell in ALL if cell not in _observed]

    async def run_missing() -> None:
        gate = asyncio.Semaphore(3)

        async def one(cell: Cell) -> None:
            async with gate:
                _observed[cell] = await run_cell(cell)

        await asyncio.gather(*(one(cell) for cell in missing))

    if missing:
        asyncio.run(run_missing())
    return {cell: _observed[cell] for cell in ALL}


# --- the tests -------------------------------------------------------------------------------------------------


def _param(cell: Cell) -> Any:
    issue = KNOWN_ISSUES.get((cell.row.kind, cell.engine))
    marks = [pytest.mark.xfail(reason=issue, strict=True)] if issue else []
    return pytest.param(cell, id=cell.id, marks=marks)


@pytest.mark.parametrize("cell", [_param(cell) for cell in ALL])
def test_each_engine_behaves_as_documented_under_each_fault(cell: Cell) -> None:
    assert observe(cell) == cell.row.expect(cell.engine)


def test_every_fault_kind_has_a_row() -> None:
    assert sorted(row.kind for row in ROWS) == sorted(FAULT_KINDS)


def render(observed: dict[Cell, str]) -> str:
    lines = [
        f"Observed by `tests/simulators/test_fault_matrix.py`: one device on a VirtualClock, the fault injected with "
        f"`host.inject_fault`, a client `bifrost.connect(url, engine=..., timeout={TIMEOUT})` reading one register. "
        f"`ok`: the value read is the plant's current one; `TimeoutError`: after the client's {TIMEOUT} s timeout "
        "(checked), with no value.",
        "",
        '| fault | transport | `engine="python"` | `engine="native"` |',
        "|---|---|---|---|",
    ]
    for row in ROWS:
        cells = []
        for engine in ENGINES:
            text = observed[Cell(row, engine)]
            if (row.kind, engine) in KNOWN_ISSUES:
                text += " (known issue, below)"
            cells.append(text)
        lines.append(f"| `{row.fault}` | {TRANSPORTS[row.transport]} | {cells[0]} | {cells[1]} |")
    if KNOWN_ISSUES:
        lines += ["", "Known issues (each an `xfail(strict=True)` cell of the test, so a fix is noticed):", ""]
        lines += [f'- `{kind}`, `engine="{engine}"`: {why}.' for (kind, engine), why in KNOWN_ISSUES.items()]
    return "\n".join(lines) + "\n"


def generated_section(text: str) -> str:
    found = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), text, flags=re.DOTALL)
    assert found, f"docs/faults.md lost its markers {BEGIN!r} ... {END!r}"
    return found.group(1).strip("\n") + "\n"


def test_the_table_in_the_docs_is_the_one_this_run_observed() -> None:
    table = render(observe_all())
    text = DOC.read_text()
    if os.environ.get(REGENERATE):
        start = text.index(BEGIN) + len(BEGIN)
        DOC.write_text(text[:start] + "\n\n" + table + "\n" + text[text.index(END, start) :])
        text = DOC.read_text()
    assert generated_section(text) == table, (
        "the table of observed behaviour in docs/faults.md is not the one this run observed: run "
        f"`{REGENERATE}=1 python3 -m pytest tests/simulators/test_fault_matrix.py` to rewrite it"
    )


if __name__ == "__main__":
    import sys

    for cell in ALL:
        if len(sys.argv) < 2 or cell.row.kind in sys.argv[1:]:
            print(cell.id, "|", observe(cell), flush=True)
