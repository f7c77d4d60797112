"""The plant: the tag store, writes against behaviours, events, faults, reset, listeners, determinism."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bifrost.errors import ConfigError, EncodeError
from bifrost.tags import Value
from simulators import load_scenario, shipped_scenarios
from simulators.clock import SystemClock, VirtualClock
from simulators.plant import Plant
from simulators.scenario import Scenario

SHIPPED = sorted(shipped_scenarios())


def plant_of(tags: dict[str, Any], events: list[dict[str, Any]] | None = None, **extra: Any) -> Plant:
    data = {"scenario": "test", "tags": tags, "events": events or [], **extra}
    return Plant(Scenario.model_validate(data))


def water_tank() -> Plant:
    return Plant(load_scenario(shipped_scenarios()["water_tank"]))


class Changes:
    """A listener that keeps every batch of changes it hears."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Value]] = []

    def __call__(self, changes: dict[str, Value]) -> None:
        self.batches.append(changes)

    def of(self, name: str) -> list[Value]:
        return [batch[name] for batch in self.batches if name in batch]


# --- the store -----------------------------------------------------------------------------------------


def test_a_new_plant_is_computed_at_time_zero() -> None:
    plant = water_tank()
    assert plant.time == 0.0
    assert plant.get("tank.level") == 40.0
    assert plant.get("valve.open") == 50
    assert plant.get("pump.run") is False  # no init: the type's zero
    assert plant.get("outflow") == pytest.approx(0.5 * 0.8 * math.sqrt(40.0))  # computed, not left at 0
    assert isinstance(plant.clock, VirtualClock)


def test_values_have_the_types_of_their_tags() -> None:
    plant = plant_of(
        {
            "i": {"type": "int16", "behaviour": {"expr": "1000.6 * 100"}},
            "u": {"type": "uint16", "behaviour": {"expr": "-5"}},
            "f": {"type": "float32", "behaviour": {"expr": "1e300"}},
            "d": {"type": "float64", "init": 1},
            "b": {"type": "bool", "behaviour": {"expr": "2"}},
            "s": {"type": "string[3]", "behaviour": {"expr": "'ABCDEF'"}},
        }
    )
    assert plant.snapshot() == {"i": 32767, "u": 0, "f": 3.4028234663852886e38, "d": 1.0, "b": True, "s": "ABC"}
    assert [type(plant.get(name)) for name in "iufdbs"] == [int, int, float, float, bool, str]


def test_get_and_set_unknown_tags_name_the_scenario() -> None:
    plant = water_tank()
    with pytest.raises(ConfigError, match="no tag 'nope' in scenario 'water-tank'"):
        plant.get("nope")
    with pytest.raises(ConfigError, match=r"no tag 'tank\.levle' in scenario 'water-tank'; did you mean 'tank\.level'"):
        plant.get("tank.levle")
    with pytest.raises(ConfigError, match="no tag 'nope'"):
        plant.set("nope", 1)
    with pytest.raises(ConfigError, match="no tag 'nope'"):
        plant.is_writable("nope")


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [("valve.open", -1, "out of range for uint16"), ("valve.open", 1.5, "whole number"), ("pump.run", 2, "bool takes")],
)
def test_set_checks_the_value_against_the_tags_type(name: str, value: Value, match: str) -> None:
    plant = water_tank()
    with pytest.raises(EncodeError, match=match):
        plant.set(name, value)


def test_set_stores_the_value_as_the_type_holds_it() -> None:
    plant = water_tank()
    plant.set("valve.open", 80.0)
    plant.set("pump.run", 1)
    assert plant.get("valve.open") == 80
    assert isinstance(plant.get("valve.open"), int)
    assert plant.get("pump.run") is True


def test_writable_comes_from_the_tag_or_the_devices_map() -> None:
    scenario = Scenario.model_validate(
        {
            "scenario": "w",
            "tags": {"a": {"type": "bool", "writable": True}, "b": {"type": "bool"}},
            "devices": {
                "plc": {"protocol": "modbus", "map": {"a": {"address": "coil:0", "writable": False}, "b": "coil:1"}}
            },
        }
    )
    plant = Plant(scenario)
    assert plant.is_writable("a") is True
    assert plant.is_writable("a", device="plc") is False
    assert plant.is_writable("b", device="plc") is False
    plant.set("b", True)  # not writable for clients, but tests and events may set it
    assert plant.get("b") is True


def test_snapshot_is_a_copy() -> None:
    plant = water_tank()
    snapshot = plant.snapshot()
    snapshot["valve.open"] = 0
    assert plant.get("valve.open") == 50


# --- writes and behaviours -------------------------------------------------------------------------------


def test_a_write_to_a_time_based_tag_holds_until_the_next_tick() -> None:
    plant = water_tank()
    plant.set("inflow", 99.0)
    assert plant.get("inflow") == 99.0
    plant.clock.advance(0.05)
    assert plant.get("inflow") == 99.0
    plant.step()  # the tick at 0.1 s recomputes it
    assert plant.get("inflow") == 0.0


def test_a_write_to_a_stateful_tag_is_where_it_carries_on_from() -> None:
    plant = water_tank()
    plant.set("valve.open", 0)
    plant.set("tank.level", 10.0)
    plant.set("pump.run", True)
    plant.clock.advance(1.0)
    assert plant.get("tank.level") == pytest.approx(10.0 + 12.5)


def test_tags_are_computed_after_the_tags_they_read() -> None:
    plant = water_tank()
    plant.set("valve.open", 0)
    plant.set("pump.run", True)
    plant.step()  # inflow becomes 12.5 and is integrated in the same tick
    assert plant.get("inflow") == 12.5
    assert plant.get("tank.level") == pytest.approx(40.0 + 1.25)


def test_step_on_a_virtual_clock_moves_time_by_ticks() -> None:
    plant = water_tank()
    plant.step(25)
    assert plant.time == pytest.approx(2.5)


def test_a_failing_behaviour_keeps_its_value_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    plant = plant_of(
        {
            "x": {"type": "float64", "writable": True, "init": 4},
            "root": {"type": "float64", "behaviour": {"expr": "sqrt(x)"}},
        }
    )
    assert plant.get("root") == 2.0
    plant.set("x", -1.0)
    plant.step(3)
    assert plant.get("root") == 2.0
    assert "math domain error" in plant.failing["root"]
    assert caplog.text.count("math domain error") == 1  # logged once, not every tick
    plant.set("x", 9.0)
    plant.step()
    assert plant.get("root") == 3.0
    assert plant.failing == {}


# --- listeners -----------------------------------------------------------------------------------------------


def test_listeners_hear_each_batch_of_changes_and_can_unsubscribe() -> None:
    plant = water_tank()
    heard = Changes()
    unsubscribe = plant.on_change(heard)
    plant.set("valve.open", 50)  # no change, no call
    assert heard.batches == []
    plant.set("pump.run", True)
    assert heard.batches == [{"pump.run": True}]
    plant.step()
    assert set(heard.batches[-1]) >= {"inflow", "tank.level", "temp"}
    unsubscribe()
    unsubscribe()
    plant.step()
    assert len(heard.batches) == 2


# --- events ---------------------------------------------------------------------------------------------------


def test_at_and_every_events_fire_at_their_exact_times_between_ticks() -> None:
    plant = plant_of(
        {"n": {"type": "uint16"}, "flag": {"type": "bool"}},
        [
            {"at": "0.25s", "set": {"flag": True}},
            {"every": "1.05s", "set": {"n": {"expr": "n + 1"}}},
            {"at": 0, "set": {"n": 100}},
        ],
        clock={"tick": "1s"},
    )
    assert plant.get("n") == 100  # at: 0 happens at once
    heard = Changes()
    plant.on_change(heard)
    plant.clock.run_until(lambda: bool(plant.get("flag")))
    assert plant.time == 0.25
    plant.clock.advance(10)
    assert plant.get("n") == 109
    assert heard.of("n") == list(range(101, 110))


def test_when_events_fire_on_the_rising_edge_only() -> None:
    plant = plant_of(
        {
            "level": {"type": "float64", "writable": True},
            "alarms": {"type": "uint16"},
        },
        [{"when": "level > 90", "set": {"alarms": {"expr": "alarms + 1"}}}],
    )
    for level, expected in [(50, 0), (95, 1), (99, 1), (80, 1), (91, 2), (92, 2)]:
        plant.set("level", float(level))
        plant.step()
        assert plant.get("alarms") == expected, level


def test_a_when_condition_true_from_the_start_fires_at_time_zero() -> None:
    plant = plant_of({"a": {"type": "bool"}}, [{"when": "1 > 0", "set": {"a": True}}])
    assert plant.get("a") is True


def test_the_shipped_water_tank_raises_and_clears_its_alarm() -> None:
    plant = water_tank()
    plant.set("pump.run", True)
    plant.clock.run_until(lambda: plant.get("alarm.high") is True, limit=60)
    assert float(plant.get("tank.level")) > 95
    plant.set("pump.run", False)
    plant.set("valve.open", 100)
    plant.clock.run_until(lambda: plant.get("alarm.high") is False, limit=600)
    assert float(plant.get("tank.level")) < 90


def test_a_ramp_moves_a_tag_in_a_straight_line_and_lands_exactly() -> None:
    plant = plant_of(
        {"sp": {"type": "float64", "init": 20}},
        [{"at": "10s", "ramp": {"tag": "sp", "to": 80, "over": "1min"}}],
        clock={"tick": "1s"},
    )
    plant.clock.advance(10)
    assert plant.get("sp") == 20
    plant.clock.advance(30)
    assert plant.get("sp") == pytest.approx(50)
    plant.clock.advance(29.5)
    assert plant.get("sp") == pytest.approx(79)
    plant.clock.advance(0.5)  # t = 70 s: not a tick, the ramp's own end
    assert plant.get("sp") == 80
    plant.clock.advance(100)
    assert plant.get("sp") == 80


def test_a_write_ends_a_ramp() -> None:
    plant = plant_of(
        {"sp": {"type": "float64", "writable": True}},
        [{"at": "1s", "ramp": {"tag": "sp", "to": 100, "over": "10s"}}],
    )
    plant.clock.advance(6)
    assert plant.get("sp") == pytest.approx(50)
    plant.set("sp", 7.0)
    plant.clock.advance(20)
    assert plant.get("sp") == 7.0


def test_a_ramp_overrides_a_behaviour_while_it_runs() -> None:
    plant = plant_of(
        {"y": {"type": "float64", "behaviour": {"constant": 1}}},
        [{"at": "1s", "ramp": {"tag": "y", "to": 11, "over": "10s"}}],
    )
    plant.clock.advance(6)
    assert plant.get("y") == pytest.approx(6)
    plant.clock.advance(10)
    assert plant.get("y") == 1  # done: the behaviour takes over again


# --- faults ---------------------------------------------------------------------------------------------------

FAULT_EVENTS = [
    {"at": "30s", "fault": {"device": "plc", "kind": "latency", "delay": "200ms", "for": "10s"}},
    {
        "at": "1min",
        "fault": {"device": "plc", "kind": "exception", "code": 6, "probability": 0.2, "match": {"function": 3}},
    },
    {"at": "1min", "fault": {"device": "other", "kind": "stall"}},
    {"at": "2min", "clear": {"device": "plc", "kind": "exception"}},
]


def fault_plant() -> Plant:
    return plant_of(
        {"x": {"type": "bool"}},
        FAULT_EVENTS,
        devices={"plc": {"protocol": "modbus"}, "other": {"protocol": "modbus"}},
    )


def test_fault_events_are_recorded_with_their_times() -> None:
    plant = fault_plant()
    assert plant.active_faults("plc") == []
    plant.clock.advance(35)
    (latency,) = plant.active_faults("plc")
    assert (latency.kind, latency.start, latency.end, latency.params) == ("latency", 30.0, 40.0, {"delay": "200ms"})
    plant.clock.advance(25)  # t = 60: the latency is over, the exception starts
    (exception,) = plant.active_faults("plc")
    assert (exception.kind, exception.probability, exception.end, exception.params) == (
        "exception",
        0.2,
        None,
        {"code": 6},
    )
    assert exception.match is not None and exception.match.function == [3]
    assert [fault.kind for fault in plant.active_faults("other")] == ["stall"]
    plant.clock.advance(60)  # t = 120: cleared
    assert plant.active_faults("plc") == []
    assert exception.end == 120.0
    assert [fault.kind for fault in plant.faults] == ["latency", "exception", "stall"]
    assert [fault.kind for fault in plant.active_faults("other")] == ["stall"]


def test_clear_without_a_kind_clears_every_fault_of_the_device() -> None:
    plant = plant_of(
        {"x": {"type": "bool"}},
        [
            {"at": "1s", "fault": {"device": "plc", "kind": "stall"}},
            {"at": "1s", "fault": {"device": "plc", "kind": "drop"}},
            {"at": "2s", "clear": {"device": "plc"}},
        ],
        devices={"plc": {"protocol": "modbus"}},
    )
    plant.clock.advance(1.5)
    assert len(plant.active_faults("plc")) == 2
    plant.clock.advance(1)
    assert plant.active_faults("plc") == []


# --- reset and determinism ---------------------------------------------------------------------------------------


def test_reset_brings_back_the_start() -> None:
    plant = fault_plant()
    plant.set("x", True)
    plant.clock.advance(100)
    heard = Changes()
    plant.on_change(heard)
    plant.reset()
    assert plant.time == 0.0
    assert plant.get("x") is False
    assert plant.faults == []
    assert heard.batches == [{"x": False}]  # listeners stay, and hear what the reset changed
    plant.clock.advance(35)  # events are armed again
    assert [fault.kind for fault in plant.active_faults("plc")] == ["latency"]


def test_reset_replays_the_same_random_run() -> None:
    plant = Plant(load_scenario(shipped_scenarios()["boiler"]))
    plant.clock.advance(600)
    first = plant.snapshot()
    plant.reset()
    plant.clock.advance(600)
    assert plant.snapshot() == first


@pytest.mark.parametrize("stem", SHIPPED)
def test_two_runs_of_a_scenario_are_identical_and_the_seed_matters(stem: str) -> None:
    scenario = load_scenario(shipped_scenarios()[stem])
    runs = []
    for seed in (scenario.seed, scenario.seed, scenario.seed + 1):
        plant = Plant(scenario.model_copy(update={"seed": seed}))
        trace = []
        for _ in range(30):
            plant.clock.advance(10)
            trace.append(plant.snapshot())
        runs.append(trace)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("stem", SHIPPED)
def test_an_hour_of_plant_time_runs_clean(stem: str) -> None:
    scenario = load_scenario(shipped_scenarios()[stem])
    plant = Plant(scenario)
    ticks = 0

    def count(_: dict[str, Value]) -> None:
        nonlocal ticks
        ticks += 1

    plant.on_change(count)
    plant.clock.advance(3600)
    assert plant.time == 3600.0
    assert plant.failing == {}
    assert ticks >= 3600 / scenario.clock.tick * 0.99  # something changes on (nearly) every tick
    for name, value in plant.snapshot().items():
        assert not (isinstance(value, float) and not math.isfinite(value)), name


def test_a_timer_from_before_a_reset_is_ignored() -> None:
    plant = plant_of({"n": {"type": "uint16"}}, [{"at": "1s", "set": {"n": 5}}])
    stale = plant._timed(plant.scenario.events[0], plant._generation)
    plant.reset()
    stale()
    assert plant.get("n") == 0


# --- on a SystemClock ------------------------------------------------------------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.ns = 5_000_000_000

    def __call__(self) -> int:
        return self.ns


def test_the_plant_runs_the_same_on_a_system_clock() -> None:
    fake = FakeMonotonic()
    clock = SystemClock(speed=10, monotonic_ns=fake)
    plant = Plant(load_scenario(shipped_scenarios()["water_tank"]), clock)
    virtual = water_tank()
    for current in (plant, virtual):
        current.set("valve.open", 0)
        current.set("pump.run", True)
    for _ in range(20):
        fake.ns += 10_000_000  # 10 ms of real time is 0.1 s of plant time
        assert clock.run_due() == 1
    virtual.clock.advance(2)
    assert plant.time == pytest.approx(2.0)
    assert plant.get("tank.level") == pytest.approx(virtual.get("tank.level"))
    plant.step()  # a system clock cannot be moved: a tick at the current time (dt 0)
    assert plant.time == pytest.approx(2.0)
    plant.reset()
    assert clock.now() == 0.0
    assert clock.next_timer() == pytest.approx(0.1)
