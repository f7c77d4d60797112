"""Behaviours, computed on a VirtualClock at exact plant times (no sleeps, no wall clock)."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from typing import Any

import pytest

from simulators.behaviours import (
    Constant,
    Expr,
    Integrate,
    Lag,
    Modified,
    Ramp,
    RandomWalk,
    Sine,
    Square,
    Steps,
)
from simulators.expr import ExprError
from simulators.plant import Plant
from simulators.scenario import Scenario


def plant_of(
    tags: dict[str, Any], events: list[dict[str, Any]] | None = None, tick: str = "100ms", seed: int = 0
) -> Plant:
    data = {"scenario": "test", "seed": seed, "clock": {"tick": tick}, "tags": tags, "events": events or []}
    return Plant(Scenario.model_validate(data))


def at(plant: Plant, t: float) -> Plant:
    plant.clock.advance(t - plant.time)
    return plant


# --- time-based: a function of plant time alone -----------------------------------------------------


def test_constant() -> None:
    assert Constant(5).update(123.0, 0.1, {}) == 5
    plant = plant_of({"c": {"type": "string[4]", "behaviour": {"constant": "ON"}}})
    assert plant.get("c") == "ON"


@pytest.mark.parametrize(("t", "expected"), [(0, 20), (150, 25), (300, 20), (450, 15), (600, 20), (750, 25)])
def test_sine(t: float, expected: float) -> None:
    sine = Sine(mean=20, amplitude=5, period=600)
    assert sine.update(t, 0.1, {}) == pytest.approx(expected)
    plant = plant_of({"s": {"type": "float64", "behaviour": {"sine": {"mean": 20, "amplitude": 5, "period": "10min"}}}})
    assert at(plant, t).get("s") == pytest.approx(expected)


def test_sine_phase_shifts_it_earlier() -> None:
    assert Sine(0, 1, 4, phase=1).update(0, 0, {}) == pytest.approx(1.0)


@pytest.mark.parametrize(("t", "expected"), [(0, 10), (2.5, 15), (5, 20), (7.5, 25), (10, 10), (12.5, 15)])
def test_ramp_repeats_as_a_sawtooth(t: float, expected: float) -> None:
    assert Ramp(10, 30, 10).update(t, 0.1, {}) == pytest.approx(expected)


@pytest.mark.parametrize(("t", "expected"), [(0, 10), (5, 20), (10, 30), (100, 30)])
def test_ramp_without_repeat_holds_at_the_end(t: float, expected: float) -> None:
    plant = plant_of(
        {"r": {"type": "float64", "behaviour": {"ramp": {"from": 10, "to": 30, "over": "10s", "repeat": False}}}}
    )
    assert at(plant, t).get("r") == pytest.approx(expected)


@pytest.mark.parametrize(("t", "expected"), [(0, 5), (0.9, 5), (1.0, -5), (3.9, -5), (4.0, 5), (5.0, -5)])
def test_square_spends_duty_of_each_period_high(t: float, expected: float) -> None:
    assert Square(low=-5, high=5, period=4, duty=0.25).update(t, 0.1, {}) == expected


def test_square_drives_a_bool_tag() -> None:
    plant = plant_of({"b": {"type": "bool", "behaviour": {"square": {"period": "2s"}}}})
    assert plant.get("b") is True
    assert at(plant, 1.0).get("b") is False
    assert at(plant, 2.0).get("b") is True


STEPS = {"steps": [{"value": "IDLE", "for": "5s"}, {"value": "RUN", "for": "1min"}, {"value": "STOP", "for": "10s"}]}


@pytest.mark.parametrize(
    ("t", "expected"),
    [(0, "IDLE"), (4.9, "IDLE"), (5, "RUN"), (64.9, "RUN"), (65, "STOP"), (75, "IDLE"), (80, "RUN"), (150, "IDLE")],
)
def test_steps_repeat(t: float, expected: str) -> None:
    plant = plant_of({"state": {"type": "string[8]", "behaviour": STEPS}})
    assert at(plant, t).get("state") == expected


def test_steps_without_repeat_hold_the_last_value() -> None:
    steps = Steps([(1, 1.0), (2, 1.0)], repeat=False)
    assert [steps.update(t, 0, {}) for t in (0, 1, 2, 1000)] == [1, 2, 2, 2]


# --- stateful: carried from tick to tick ---------------------------------------------------------------


def test_integrate_adds_up_a_rate_and_clamps_without_winding_up() -> None:
    plant = plant_of(
        {
            "rate": {"type": "float64", "writable": True, "init": 2.0},
            "total": {"type": "float64", "init": 10, "behaviour": {"integrate": "rate", "min": 0, "max": 50}},
        }
    )
    assert at(plant, 5).get("total") == pytest.approx(20.0)
    assert at(plant, 60).get("total") == 50.0  # clamped
    plant.set("rate", -1.0)
    assert at(plant, 61).get("total") == pytest.approx(49.0)  # leaves the clamp at once: no wind-up


def test_integrate_into_an_integer_counter() -> None:
    plant = plant_of({"count": {"type": "uint16", "behaviour": {"integrate": "2"}}})
    assert at(plant, 10).get("count") == 20
    assert isinstance(plant.get("count"), int)


def test_first_order_lag_reaches_63_percent_after_tau() -> None:
    plant = plant_of(
        {
            "target": {"type": "float64", "writable": True, "init": 100.0},
            "y": {"type": "float64", "init": 0.0, "behaviour": {"lag": "target", "tau": "30s"}},
        }
    )
    assert plant.get("y") == 0.0
    assert at(plant, 30).get("y") == pytest.approx(100 * (1 - math.exp(-1)))
    assert at(plant, 300).get("y") == pytest.approx(100, abs=0.01)


def test_lag_is_exact_for_any_tick_length() -> None:
    fine, coarse = Lag("x", 10, None, None), Lag("x", 10, None, None)
    for lag in (fine, coarse):
        lag.reset(0.0, random.Random(0))
    for _ in range(100):
        fine.update(0, 0.1, {"x": 1.0})
    coarse.update(0, 10, {"x": 1.0})
    assert fine.state == pytest.approx(coarse.state)


def test_random_walk_stays_in_bounds_and_repeats_with_the_seed() -> None:
    def run(seed: int) -> list[float]:
        plant = plant_of(
            {"w": {"type": "float64", "behaviour": {"random_walk": {"step": 1, "start": 5}, "min": 0, "max": 10}}},
            seed=seed,
        )
        values = []
        for _ in range(2000):
            plant.step()
            values.append(float(plant.get("w")))
        return values

    first = run(1)
    assert all(0 <= value <= 10 for value in first)
    assert max(abs(b - a) for a, b in itertools.pairwise(first)) <= 1
    assert len(set(first)) > 100
    assert run(1) == first
    assert run(2) != first


def test_random_walk_starts_from_init_without_a_start() -> None:
    walk = RandomWalk(0.5, None, None, None)
    walk.reset(7.0, random.Random(0))
    assert walk.update(0, 0, {}) == 7.0  # no time passed, no step


def test_a_write_becomes_the_state_of_a_stateful_behaviour() -> None:
    integrate = Integrate("1", 0, 100)
    integrate.reset(0, random.Random(0))
    integrate.update(0, 5, {})
    integrate.written(80)
    assert integrate.update(0, 5, {}) == 85
    integrate.written(1000)
    assert integrate.state == 100  # clamped


# --- expressions, noise and clamps ---------------------------------------------------------------------


def test_expr_reads_other_tags() -> None:
    plant = plant_of(
        {
            "a": {"type": "int16", "writable": True, "init": 4},
            "b": {"type": "float64", "behaviour": {"expr": "sqrt(a) * 10"}},
        }
    )
    assert plant.get("b") == 20.0
    plant.set("a", 9)
    plant.step()
    assert plant.get("b") == 30.0


def test_expr_names_are_known_for_ordering() -> None:
    assert Expr("a + b.c").names == {"a", "b.c"}


def test_noise_is_gaussian_around_the_value_and_seeded() -> None:
    def run(seed: int) -> list[float]:
        plant = plant_of({"n": {"type": "float64", "behaviour": {"constant": 50, "noise": 2}}}, seed=seed)
        values = []
        for _ in range(5000):
            plant.step()
            values.append(float(plant.get("n")))
        return values

    values = run(3)
    assert statistics.fmean(values) == pytest.approx(50, abs=0.2)
    assert statistics.stdev(values) == pytest.approx(2, rel=0.05)
    assert run(3) == values


def test_noise_does_not_feed_back_into_an_integrators_state() -> None:
    noisy = Modified(Integrate("0", None, None), noise=5, low=None, high=None)
    noisy.reset(10.0, random.Random(0))
    outputs = [noisy.update(0, 1, {}) for _ in range(1000)]
    assert statistics.fmean(outputs) == pytest.approx(10, abs=0.5)
    assert isinstance(noisy.inner, Integrate)
    assert noisy.inner.state == 10.0


def test_min_and_max_clamp_any_behaviour() -> None:
    plant = plant_of(
        {"s": {"type": "float64", "behaviour": {"sine": {"amplitude": 10, "period": "4s"}, "max": 3, "min": -1}}}
    )
    assert at(plant, 1).get("s") == 3
    assert at(plant, 3).get("s") == -1


def test_a_number_behaviour_refuses_text() -> None:
    with pytest.raises(ExprError, match="expected a number"):
        Integrate("'x'", None, None).update(0, 1, {})
