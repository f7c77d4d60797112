"""scenarios/flaky_tank.yaml: every fault kind on a timeline, run in full while a client polls the PLC.

The scenario validates and switches on every fault kind of the vocabulary, from `at`, `every` and
`when` events, with `for` durations and `count`s. Then it runs for its whole five minutes on a
VirtualClock under a SimHost while a `bifrost.connect` client (each engine) reads the tank level once
a second of plant time. The test checks each fault was committed at its time (the FaultSet's hits and
the traffic log, stamped with plant time) and never outside it, and that the client saw what
docs/faults.md says it sees.

Driving time: before each read the clock stands still; the poller waits until the host has seen the
request (an asyncio event the hooks set) and has written or held its answer (a round trip through the
host's loop). If a latency, bandwidth or slicer fault holds the answer back, plant time moves a tick at
a time until it arrives; otherwise the read ends by itself (with a value, an error, or the client's
timeout: wall time, bounded). Nothing sleeps to wait for anything.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
import yaml

import bifrost
from bifrost.connection import Connection
from bifrost.modbus.framing import Request
from simulators import shipped_scenarios
from simulators.faults import PlantFaults
from simulators.hooks import Action
from simulators.host import SimHost
from simulators.scenario import FAULT_KINDS, load_scenario

TIMEOUT = 0.3  # the client's timeout (wall seconds): what a poll waits when its answer is lost
GUARD = 10.0  # no await may take longer than this
END = 300.0  # the scenario's timeline, in plant seconds
TICK = 0.1
HELD = frozenset({"latency", "bandwidth", "slicer"})  # faults that hold an answer back for some plant time


def test_the_scenario_validates_and_uses_every_fault_kind_by_every_kind_of_event() -> None:
    path = shipped_scenarios()["flaky_tank"]
    scenario = load_scenario(path)
    schema = json.loads((path.parent / "scenario.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)  # what an editor checks it against
    faults = [event for event in scenario.events if event.fault is not None]
    assert {event.fault.kind for event in faults if event.fault is not None} == set(FAULT_KINDS)
    assert {"at", "every", "when"} <= {
        name for event in faults for name in ("at", "every", "when") if getattr(event, name) is not None
    }
    assert any(event.fault.duration is not None for event in faults if event.fault is not None)
    assert any(event.fault.count is not None for event in faults if event.fault is not None)


# --- the run ------------------------------------------------------------------------------------------------


class Watching(PlantFaults):
    """PlantFaults that also tell the test loop when plc1 has read a request."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: asyncio.Event | None = None
        self.test_loop: asyncio.AbstractEventLoop | None = None

    def on_request(self, device: str, event: Request) -> Action | None:
        action = super().on_request(device, event)
        seen, loop = self.seen, self.test_loop
        if seen is not None and loop is not None:
            loop.call_soon_threadsafe(seen.set)
        return action


@dataclass(frozen=True)
class Poll:
    t: float  # plant time the read began
    outcome: str  # "ok", "TimeoutError", "DeviceError 6", "ConnectError", "ProtocolError"
    value: Any  # the value read, if one was
    took: float  # plant seconds until it ended


@dataclass
class Run:
    polls: list[Poll]
    hits: list[tuple[float, str]]  # (plant time, kind) of every fault hit
    reboots: list[float]
    host: SimHost

    def at(self, t: float) -> Poll:
        (found,) = [poll for poll in self.polls if poll.t == t]
        return found

    def between(self, start: float, end: float) -> list[Poll]:
        return [poll for poll in self.polls if start <= poll.t < end]

    def hit_times(self, kind: str) -> list[float]:
        return [t for t, hit in self.hits if hit == kind]

    def aftermath(self, t: float) -> list[str]:
        """The reads after the one at `t` that a garbled stream spoiled: the timeouts and protocol errors
        up to the first read that ended otherwise."""
        out = []
        for poll in self.polls:
            if poll.t > t:
                if poll.outcome not in ("TimeoutError", "ProtocolError"):
                    break
                out.append(poll.outcome)
        return out

    def garbled(self) -> set[float]:
        """Times of the reads whose answer a corrupt fault garbled, and of those it spoiled after it."""
        times = set()
        for t in self.hit_times("corrupt"):
            times.add(t)
            times.update(t + 1 + index for index in range(len(self.aftermath(t))))
        return times

    def logged(self, note: str) -> list[float]:
        return [exchange.plant_time for exchange in self.host.devices["plc1"].log if note in (exchange.error or "")]


class Poller:
    def __init__(self, host: SimHost, hooks: Watching, engine: str) -> None:
        self.host = host
        self.hooks = hooks
        self.engine = engine
        self.clock = host.clock
        self.plc: Connection | None = None

    async def advance(self, seconds: float) -> None:
        await asyncio.to_thread(self.clock.advance, seconds)
        await self.settle()

    async def settle(self) -> None:
        """One trip through the host's loop: what it was doing (answering a request) is done."""

        async def turns() -> None:
            for _ in range(3):
                await asyncio.sleep(0)

        await asyncio.to_thread(self.host.call, turns)

    async def connect(self) -> Connection:
        device = self.host.devices["plc1"]
        plc = bifrost.connect(device.url, tags=device.tags, engine=self.engine, timeout=TIMEOUT)
        try:
            await asyncio.wait_for(plc.__aenter__(), GUARD)
        except bifrost.ConnectError:
            await plc.close()
            raise
        return plc

    async def drop(self) -> None:
        plc, self.plc = self.plc, None
        if plc is not None:
            await asyncio.wait_for(plc.close(), GUARD)

    async def poll(self, seen: asyncio.Event) -> Poll:
        t = self.clock.now()
        try:
            if self.plc is None:
                self.plc = await self.connect()
        except bifrost.ConnectError:
            return Poll(t, "ConnectError", None, 0.0)
        seen.clear()
        hits_before = len(self.hits)
        reading = asyncio.ensure_future(self.plc.read("tank.level"))
        waiting = asyncio.ensure_future(seen.wait())
        await asyncio.wait({reading, waiting}, timeout=GUARD, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        await self.settle()
        if any(kind in HELD for _, kind in self.hits[hits_before:]):
            for _ in range(20):  # the answer is held back: let plant time pass, a tick at a time
                if reading.done():
                    break
                await self.advance(TICK)
                await asyncio.wait({reading}, timeout=0.05)
        try:
            point = await asyncio.wait_for(reading, GUARD)
        except bifrost.DeviceError as exc:
            return Poll(t, f"DeviceError {exc.code}", None, self.clock.now() - t)
        except bifrost.ConnectError:
            await self.drop()  # a new connection for the next poll (the engine's backoff is wall time)
            return Poll(t, "ConnectError", None, self.clock.now() - t)
        except (bifrost.TimeoutError, bifrost.ProtocolError) as exc:
            return Poll(t, type(exc).__name__, None, self.clock.now() - t)
        return Poll(t, "ok", point.value, round(self.clock.now() - t, 6))

    async def run(self) -> Run:
        hits: list[tuple[float, str]] = []
        self.hits = hits
        faults = self.hooks.device("plc1")
        faults.on_hit(lambda fault: hits.append((faults.now(), fault.spec.kind)))
        reboots: list[float] = []
        faults.on_reboot(lambda: reboots.append(self.clock.now()))
        self.hooks.seen = seen = asyncio.Event()
        self.hooks.test_loop = asyncio.get_running_loop()
        polls = []
        try:
            while self.clock.now() < END:
                polls.append(await self.poll(seen))
                next_poll = math.floor(self.clock.now() + 1e-9) + 1.0
                await self.advance(next_poll - self.clock.now())
        finally:
            await self.drop()
        return Run(polls, hits, reboots, self.host)


def outcomes(polls: list[Poll]) -> list[str]:
    return [poll.outcome for poll in polls]


@pytest.mark.parametrize("engine", ["python", "native"])
def test_the_whole_timeline_runs_and_each_fault_is_seen_at_its_time(engine: str) -> None:
    hooks = Watching()
    with SimHost("flaky_tank", clock="virtual", any_port=True, hooks=hooks) as host:
        run = asyncio.run(asyncio.wait_for(Poller(host, hooks, engine).run(), 120))
        assert [poll.t for poll in run.polls] == [float(t) for t in range(300)]
        assert host.clock.now() == END
        for check in CHECKS:
            check(run, engine)


# --- what the run shows, fault by fault (plant seconds; the scenario's timeline) ----------------------------


def faults_act_only_within_their_time(run: Run, engine: str) -> None:
    records = run.host.plant.faults
    assert {record.kind for record in records} == set(FAULT_KINDS)
    for t, kind in run.hits:
        windows = [
            (record.start, record.end if record.end is not None else record.start + 2.0)
            for record in records
            if record.kind == kind
        ]
        assert any(start <= t < end for start, end in windows), f"{kind} acted at {t}, outside {windows}"
    # Refuse (the listener is closed: nothing comes to be refused), freeze (it acts on values) and
    # reboot (carried out at its time) are seen below; every other kind acted on a request or reply.
    assert {kind for _, kind in run.hits} == set(FAULT_KINDS) - {"refuse", "freeze", "reboot"}


def a_healthy_plc_answers_at_once(run: Run, engine: str) -> None:
    quiet = run.between(0, 10) + run.between(100, 120) + run.between(241, 270) + run.between(271, 300)
    assert set(outcomes(quiet)) == {"ok"}
    assert all(poll.took == 0 for poll in quiet)


def latency_holds_each_answer_for_its_delay_give_or_take_its_jitter(run: Run, engine: str) -> None:
    slow = run.between(10, 30)
    assert set(outcomes(slow)) == {"ok"}
    # 300 ms +- 100 ms, seen to the next tick of the poller (and never early)
    assert all(0.2 <= poll.took <= 0.5 for poll in slow), [poll.took for poll in slow]
    assert len({poll.took for poll in slow}) > 1  # the jitter
    assert run.hit_times("latency") == [poll.t for poll in slow]


def bandwidth_and_slicer_deliver_whole_answers_a_little_late(run: Run, engine: str) -> None:
    for kind, start in (("bandwidth", 40), ("slicer", 60)):
        polls = [poll for poll in run.between(start, start + 10) if poll.t not in run.garbled()]
        assert set(outcomes(polls)) == {"ok"}, kind
        assert all(0 < poll.took <= 0.3 for poll in polls), (kind, [poll.took for poll in polls])
        assert run.hit_times(kind) == [float(t) for t in range(start, start + 10)]


def a_busy_plc_refuses_about_half_the_reads_with_exception_6(run: Run, engine: str) -> None:
    busy = [poll for poll in run.between(80, 100) if poll.t not in run.garbled()]
    refused = [poll.t for poll in busy if poll.outcome == "DeviceError 6"]
    assert set(outcomes(busy)) == {"ok", "DeviceError 6"} and 3 <= len(refused) <= 15
    assert [t for t in run.hit_times("exception") if t not in run.garbled()] == refused
    assert run.logged("exception 6 by a fault") == run.hit_times("exception")


def drop_and_corrupt_hit_one_answer_at_each_turn(run: Run, engine: str) -> None:
    assert run.hit_times("drop") == [120.0, 240.0]
    assert [run.at(t).outcome for t in (120.0, 240.0)] == ["TimeoutError", "TimeoutError"]
    assert run.hit_times("corrupt") == [45.0, 90.0, 135.0, 180.0, 225.0, 270.0]
    # Modbus TCP has no checksum: a flipped bit is noticed when it breaks the frame, as each did here.
    assert all(run.at(t).outcome != "ok" for t in run.hit_times("corrupt")), [
        run.at(t) for t in run.hit_times("corrupt")
    ]
    # A garbled answer spoils nothing after it: both engines drop the connection after a timeout or a
    # protocol error, so a reply cut short or with a wrong length cannot eat into the next.
    for t in [*run.hit_times("corrupt"), *run.hit_times("truncate")]:
        assert run.aftermath(t) == [], (t, run.aftermath(t))


def stall_wrong_transaction_truncate_close_reset(run: Run, engine: str) -> None:
    assert outcomes(run.between(130, 135)) == ["TimeoutError"] * 5
    assert run.hit_times("stall") == [130.0, 131.0, 132.0, 133.0, 134.0]
    # A reply on a transaction nobody is waiting for is the device's fault on both engines (docs/faults.md).
    assert outcomes(run.between(150, 152)) == ["ProtocolError", "ProtocolError"]
    assert run.logged("answered with another transaction id") == [150.0, 151.0]
    assert run.at(160).outcome == "TimeoutError"  # (and for the Python engine, the next is spoiled: above)
    assert run.logged("answer cut to 3 bytes") == [160.0]
    assert run.at(170).outcome == "ConnectError" and run.hit_times("close") == [170.0]
    assert run.at(185).outcome == "ConnectError" and run.hit_times("reset") == [185.0]


def refuse_keeps_new_connections_out_for_its_time(run: Run, engine: str) -> None:
    assert outcomes(run.between(186, 195)) == ["ConnectError"] * 9
    assert run.at(195).outcome == "ok"


def freeze_keeps_the_level_while_the_tank_fills(run: Run, engine: str) -> None:
    frozen = run.between(210, 225)
    assert set(outcomes(frozen)) == {"ok"} and {poll.value for poll in frozen} == {50.0}
    # ... while the pump, on from 215 s, filled the tank: it passed 90 % at 225 s (the bad_quality below)


def overfill_bad_quality_then_a_reboot(run: Run, engine: str) -> None:
    records = {record.kind: record for record in run.host.plant.faults}
    bad, reboot = records["bad_quality"], records["reboot"]
    assert 225 <= bad.start < 225.5 and 226 <= reboot.start < 226.5  # the ticks that saw > 90 % and > 95 %
    assert run.reboots == [reboot.start]
    assert run.at(226).outcome == "DeviceError 4"
    assert outcomes(run.between(227, 230)) == ["ConnectError"] * 3  # dropped, then refused while it boots
    after = run.between(230, 240)
    assert set(outcomes(after)) == {"ok"} and {poll.value for poll in after} == {50.0}  # its initial level
    assert run.host.plant.get("pump.run") is False


CHECKS = [
    faults_act_only_within_their_time,
    a_healthy_plc_answers_at_once,
    latency_holds_each_answer_for_its_delay_give_or_take_its_jitter,
    bandwidth_and_slicer_deliver_whole_answers_a_little_late,
    a_busy_plc_refuses_about_half_the_reads_with_exception_6,
    drop_and_corrupt_hit_one_answer_at_each_turn,
    stall_wrong_transaction_truncate_close_reset,
    refuse_keeps_new_connections_out_for_its_time,
    freeze_keeps_the_level_while_the_tank_fills,
    overfill_bad_quality_then_a_reboot,
]
