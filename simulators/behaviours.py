"""What drives a tag over time: constant, sine, ramp, square, random walk, steps, lag, integrate, expr.

Each behaviour computes a tag's next value from plant time `t`, the tick's length `dt` and the other
tags' values. Time-based ones (sine, ramp, square, steps) depend on `t` alone; stateful ones (random
walk, lag, integrate) carry a state from tick to tick, and a value written from outside becomes that
state, so the plant carries on from what an operator or a test wrote. Noise and min/max clamping
wrap any of them. Randomness comes only from the `random.Random` the plant hands in, seeded from
the scenario's seed, so two runs are identical.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Mapping
from typing import Any

from bifrost.tags import Value
from simulators.expr import ExprError, compile_expr
from simulators.scenario import (
    BehaviourSpec,
    ConstantBehaviour,
    ExprBehaviour,
    IntegrateBehaviour,
    LagBehaviour,
    RampBehaviour,
    RandomWalkBehaviour,
    SineBehaviour,
    SquareBehaviour,
    StepsBehaviour,
)

Values = Mapping[str, Value]
_TAU = 2 * math.pi


class Behaviour:
    """Base: `reset` at start, `update` every tick, `written` when a value is set from outside."""

    __slots__ = ()
    names: frozenset[str] = frozenset()  # tags it reads, so the plant computes those first

    def reset(self, init: Value, rng: random.Random) -> None:
        """Start over (plant start or reset) from the tag's initial value."""

    def update(self, t: float, dt: float, values: Values) -> Any:
        raise NotImplementedError

    def written(self, value: Value) -> None:
        """A client, a test or an event set the tag; stateful behaviours continue from `value`."""


class Constant(Behaviour):
    __slots__ = ("value",)

    def __init__(self, value: Value) -> None:
        self.value = value

    def update(self, t: float, dt: float, values: Values) -> Any:
        return self.value


class Sine(Behaviour):
    __slots__ = ("amplitude", "mean", "omega", "phase")

    def __init__(self, mean: float, amplitude: float, period: float, phase: float = 0.0) -> None:
        self.mean, self.amplitude, self.omega, self.phase = mean, amplitude, _TAU / period, phase

    def update(self, t: float, dt: float, values: Values) -> Any:
        return self.mean + self.amplitude * math.sin(self.omega * (t + self.phase))


class Ramp(Behaviour):
    """From `start` to `to` over `over` seconds; then again (a sawtooth), or held at `to`."""

    __slots__ = ("over", "repeat", "start", "to")

    def __init__(self, start: float, to: float, over: float, repeat: bool = True) -> None:
        self.start, self.to, self.over, self.repeat = start, to, over, repeat

    def update(self, t: float, dt: float, values: Values) -> Any:
        fraction = (t % self.over) / self.over if self.repeat else min(t / self.over, 1.0)
        return self.start + (self.to - self.start) * fraction


class Square(Behaviour):
    __slots__ = ("high", "high_for", "low", "period", "phase")

    def __init__(self, low: float, high: float, period: float, duty: float = 0.5, phase: float = 0.0) -> None:
        self.low, self.high, self.period, self.high_for, self.phase = low, high, period, duty * period, phase

    def update(self, t: float, dt: float, values: Values) -> Any:
        return self.high if (t + self.phase) % self.period < self.high_for else self.low


class Steps(Behaviour):
    """Each value held for its duration, in order; then from the top (repeat) or the last one held."""

    __slots__ = ("ends", "repeat", "total", "values")

    def __init__(self, steps: list[tuple[Value, float]], repeat: bool = True) -> None:
        self.values = [value for value, _ in steps]
        self.ends: list[float] = []
        elapsed = 0.0
        for _, duration in steps:
            elapsed += duration
            self.ends.append(elapsed)
        self.total = elapsed
        self.repeat = repeat

    def update(self, t: float, dt: float, values: Values) -> Any:
        if self.repeat:
            t %= self.total
        index = bisect.bisect_right(self.ends, t)
        return self.values[min(index, len(self.values) - 1)]


class _Stateful(Behaviour):
    """Carries `state` between ticks, clamped to [low, high] so that an integrator cannot wind up."""

    __slots__ = ("high", "low", "state")

    def __init__(self, low: float | None, high: float | None) -> None:
        self.low = -math.inf if low is None else low
        self.high = math.inf if high is None else high
        self.state = 0.0

    def reset(self, init: Value, rng: random.Random) -> None:
        self.state = self._clamp(_number(init))

    def written(self, value: Value) -> None:
        self.state = self._clamp(_number(value))

    def _clamp(self, value: float) -> float:
        return self.low if value < self.low else self.high if value > self.high else value


class RandomWalk(_Stateful):
    """Each tick moves by a uniform random amount in [-step, +step]."""

    __slots__ = ("rng", "start", "step")

    def __init__(self, step: float, start: float | None, low: float | None, high: float | None) -> None:
        super().__init__(low, high)
        self.step, self.start = step, start
        self.rng = random.Random(0)

    def reset(self, init: Value, rng: random.Random) -> None:
        super().reset(init if self.start is None else self.start, rng)
        self.rng = rng

    def update(self, t: float, dt: float, values: Values) -> Any:
        if dt > 0:
            self.state = self._clamp(self.state + self.rng.uniform(-self.step, self.step))
        return self.state


class Lag(_Stateful):
    """First-order lag: follows its input with time constant `tau` (63% of a step after tau)."""

    __slots__ = ("expr", "names", "tau")

    def __init__(self, source: str, tau: float, low: float | None, high: float | None) -> None:
        super().__init__(low, high)
        self.expr = compile_expr(source)
        self.names = self.expr.names
        self.tau = tau

    def update(self, t: float, dt: float, values: Values) -> Any:
        if dt > 0:
            target = _number(self.expr(values))
            self.state = self._clamp(self.state + (target - self.state) * -math.expm1(-dt / self.tau))
        return self.state


class Integrate(_Stateful):
    """Adds up its input (a rate per second) over time, clamped to [min, max]."""

    __slots__ = ("expr", "names")

    def __init__(self, source: str, low: float | None, high: float | None) -> None:
        super().__init__(low, high)
        self.expr = compile_expr(source)
        self.names = self.expr.names

    def update(self, t: float, dt: float, values: Values) -> Any:
        if dt > 0:
            self.state = self._clamp(self.state + _number(self.expr(values)) * dt)
        return self.state


class Expr(Behaviour):
    __slots__ = ("expr", "names")

    def __init__(self, source: str) -> None:
        self.expr = compile_expr(source)
        self.names = self.expr.names

    def update(self, t: float, dt: float, values: Values) -> Any:
        return self.expr(values)


class Modified(Behaviour):
    """Gaussian noise added to, then min/max applied to, what another behaviour computes."""

    __slots__ = ("high", "inner", "low", "names", "noise", "rng")

    def __init__(self, inner: Behaviour, noise: float | None, low: float | None, high: float | None) -> None:
        self.inner = inner
        self.names = inner.names
        self.noise = noise or 0.0
        self.low = -math.inf if low is None else low
        self.high = math.inf if high is None else high
        self.rng = random.Random(0)

    def reset(self, init: Value, rng: random.Random) -> None:
        self.inner.reset(init, rng)
        self.rng = rng

    def written(self, value: Value) -> None:
        self.inner.written(value)

    def update(self, t: float, dt: float, values: Values) -> Any:
        value = _number(self.inner.update(t, dt, values))
        if self.noise:
            value += self.rng.gauss(0.0, self.noise)
        return self.low if value < self.low else self.high if value > self.high else value


def _number(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    raise ExprError(f"expected a number, got {type(value).__name__} {value!r}")


def build(spec: BehaviourSpec) -> Behaviour:
    """The behaviour a scenario describes (noise and min/max included)."""
    behaviour: Behaviour
    low, high = spec.min, spec.max
    if isinstance(spec, ConstantBehaviour):
        behaviour = Constant(spec.constant)
    elif isinstance(spec, SineBehaviour):
        p = spec.sine
        behaviour = Sine(p.mean, p.amplitude, p.period, p.phase)
    elif isinstance(spec, RampBehaviour):
        r = spec.ramp
        behaviour = Ramp(r.start, r.to, r.over, r.repeat)
    elif isinstance(spec, SquareBehaviour):
        q = spec.square
        behaviour = Square(q.low, q.high, q.period, q.duty, q.phase)
    elif isinstance(spec, StepsBehaviour):
        behaviour = Steps([(step.value, step.duration) for step in spec.steps], spec.repeat)
    elif isinstance(spec, RandomWalkBehaviour):
        behaviour = RandomWalk(spec.random_walk.step, spec.random_walk.start, low, high)
    elif isinstance(spec, LagBehaviour):
        behaviour = Lag(spec.lag, spec.tau, low, high)
    elif isinstance(spec, IntegrateBehaviour):
        behaviour = Integrate(spec.integrate, low, high)
    elif isinstance(spec, ExprBehaviour):
        behaviour = Expr(spec.expr)
    else:  # pragma: no cover - the scenario model admits no other kind
        raise TypeError(f"unknown behaviour {type(spec).__name__}")
    if spec.noise or low is not None or high is not None:
        behaviour = Modified(behaviour, spec.noise, low, high)
    return behaviour
