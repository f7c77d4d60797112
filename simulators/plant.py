"""The plant: the tag store of one scenario, its behaviours and its event timeline, on one Clock.

Protocol-agnostic: every device of every protocol reads and writes this one store.

Time. The plant ticks every `clock.tick` of the scenario, as a periodic timer on its clock. A tick
computes every behaviour (tags a behaviour reads first, so `inflow` is fresh when `tank.level`
integrates it), moves active ramps, then checks `when` events. `at` and `every` events are timers of
their own and fire at their exact times, between ticks if need be. The plant owns its clock:
creating or resetting the plant sets the clock back to 0 and cancels the clock's timers.

Writes. `set()` (a client's write, a test, an event) stores the value at once. A tag driven by a
time-based behaviour (constant, sine, ramp, square, steps, expr) keeps the written value until the
next tick recomputes it; a stateful behaviour (integrate, lag, random walk) continues from the written
value. A write also ends a ramp on that tag. `set()` does not check `writable`: tests and events may
set any tag, and a protocol server asks `is_writable()` first.

Values are kept as the tag's type holds them: bool, int (rounded and saturated to the type's range),
float (float32 tags saturate at float32's largest finite value) or str (cut to string[N]).

Threads. A SystemClock's ticks run on an asyncio loop thread while tests call `set()` or `reset()`
from theirs; one re-entrant lock serialises them. Listeners run with that lock held.
"""

from __future__ import annotations

import difflib
import logging
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from bifrost.errors import ConfigError
from bifrost.tags import DataType, Value, integer_range, parse_type, with_article
from simulators.behaviours import Behaviour, build
from simulators.clock import Clock, Timer, VirtualClock
from simulators.expr import ExprError, compile_expr
from simulators.scenario import Event, FaultMatch, Scenario, SetExpr, StrictTag, checked_value

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Value]], object]
_FLOAT32_MAX = 3.4028234663852886e38
# What a behaviour or an event may raise at run time: the plant keeps the old value and carries on.
_RUNTIME_ERRORS = (ExprError, ArithmeticError, ValueError, TypeError)


@dataclass
class FaultRecord:
    """A fault switched on by an event: which device, what kind, from when until when (plant seconds).

    `end` is None while it lasts until cleared. The machinery that applies faults is a later issue;
    the plant only keeps the record.
    """

    device: str
    kind: str
    start: float
    end: float | None
    probability: float = 1.0
    match: FaultMatch | None = None
    count: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def active_at(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


@dataclass
class _Ramp:
    start_value: float
    to: float
    t0: float
    over: float


@dataclass
class _When:
    event: Event
    condition: Callable[[dict[str, Value]], Value]
    was_true: bool = False


def _coercer(type_name: str) -> Callable[[Any], Value]:
    """Turns what a behaviour computed into what the tag's type holds (never raising on range)."""
    dtype, length = parse_type(type_name)
    if dtype is DataType.BOOL:
        return bool
    if dtype is DataType.FLOAT64:
        return float
    if dtype is DataType.FLOAT32:

        def to_float32(value: Any) -> float:
            number = float(value)
            return max(-_FLOAT32_MAX, min(_FLOAT32_MAX, number)) if math.isfinite(number) else number

        return to_float32
    if dtype is DataType.STRING:
        size = length or 0

        def to_string(value: Any) -> str:
            text = value if isinstance(value, str) else str(value)
            return text.encode("latin-1", "replace")[:size].decode("latin-1")

        return to_string
    low, high = integer_range(dtype)

    def to_integer(value: Any) -> int:
        if isinstance(value, float):
            value = round(value)  # raises on nan and inf: the tag keeps its value
        elif not isinstance(value, int):
            raise TypeError(f"{type_name} holds integers, not {type(value).__name__} {value!r}")
        return low if value < low else high if value > high else int(value)

    return to_integer


def _initial(spec: StrictTag) -> Value:
    if spec.init is not None:
        return checked_value(spec.type, spec.init)
    dtype, _ = parse_type(spec.type)
    if dtype is DataType.BOOL:
        return False
    if dtype is DataType.STRING:
        return ""
    return 0.0 if dtype.is_float else 0


ClockT = TypeVar("ClockT", bound=Clock)


class Plant(Generic[ClockT]):
    """The live state of one scenario; see the module docstring for the rules of time and writes.

    Generic in its clock, so that `Plant(scenario).clock.advance(...)` type-checks (a VirtualClock by
    default) as `Plant(scenario, SystemClock()).clock.attach(...)` does.
    """

    @overload
    def __init__(self: Plant[VirtualClock], scenario: Scenario, clock: None = None) -> None: ...
    @overload
    def __init__(self, scenario: Scenario, clock: ClockT) -> None: ...

    def __init__(self, scenario: Scenario, clock: ClockT | None = None) -> None:
        self.scenario = scenario
        self.clock: ClockT = VirtualClock() if clock is None else clock  # type: ignore[assignment]  # the overloads pair them
        self.tick = scenario.clock.tick
        self._lock = threading.RLock()
        self._init = {name: _initial(spec) for name, spec in scenario.tags.items()}
        self._values: dict[str, Value] = dict(self._init)
        self._coerce = {name: _coercer(spec.type) for name, spec in scenario.tags.items()}
        self._behaviours = {
            name: build(spec.behaviour) for name, spec in scenario.tags.items() if spec.behaviour is not None
        }
        self._order = [
            (name, self._behaviours[name], self._coerce[name]) for name in _evaluation_order(self._behaviours)
        ]
        self._when = [_When(event, compile_expr(event.when)) for event in scenario.events if event.when is not None]
        self._set_exprs = {
            value.expr: compile_expr(value.expr)
            for event in scenario.events
            for value in (event.assign or {}).values()
            if isinstance(value, SetExpr)
        }
        self._listeners: list[Listener] = []
        self._ramps: dict[str, _Ramp] = {}
        self._faults: list[FaultRecord] = []
        self._failing: dict[str, str] = {}
        self._timers: list[Timer] = []
        self._rngs: dict[str, random.Random] = {}
        self._generation = 0
        self._last = 0.0
        self._start()

    # --- reading and writing -------------------------------------------------------------------------

    def get(self, name: str) -> Value:
        try:
            return self._values[name]
        except KeyError:
            raise self._unknown(name) from None

    def set(self, name: str, value: Value) -> None:
        """Write a tag now (see the module docstring); a value its type cannot hold is an EncodeError."""
        spec = self.scenario.tags.get(name)
        if spec is None:
            raise self._unknown(name)
        checked = checked_value(spec.type, value)
        with self._lock:
            changes: dict[str, Value] = {}
            self._write(name, checked, changes)
            self._notify(changes)

    def is_writable(self, name: str, device: str | None = None) -> bool:
        """Whether a client may write the tag (through `device`, whose map may say otherwise)."""
        spec = self.scenario.tags.get(name)
        if spec is None:
            raise self._unknown(name)
        if device is not None:
            model = self.scenario.device(device)
            if name in model.mapped(self.scenario.tags):
                writable = model.entry(name).writable
                if writable is not None:
                    return writable
        return spec.writable

    def snapshot(self) -> dict[str, Value]:
        with self._lock:
            return dict(self._values)

    @property
    def time(self) -> float:
        """Plant time, in seconds since the start or the last reset."""
        return self.clock.now()

    @property
    def failing(self) -> dict[str, str]:
        """Tags whose behaviour failed on its last tick (they keep their value), with the reason."""
        return dict(self._failing)

    def on_change(self, callback: Listener) -> Callable[[], None]:
        """Call `callback(changes)` with {tag: new value} after each tick, write or event that changed
        something. Returns a function that unsubscribes it."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def rng(self, stream: str) -> random.Random:
        """A random generator seeded from the scenario's seed and `stream` (e.g. a device's faults);
        the same one until the next reset, so draws are repeatable run after run."""
        with self._lock:
            found = self._rngs.get(stream)
            if found is None:
                found = self._rngs[stream] = random.Random(f"{self.scenario.seed}:{stream}")
            return found

    # --- faults ---------------------------------------------------------------------------------------

    @property
    def faults(self) -> list[FaultRecord]:
        """Every fault switched on since the start or the last reset, ended ones included."""
        return list(self._faults)

    def active_faults(self, device: str) -> list[FaultRecord]:
        now = self.clock.now()
        return [fault for fault in self._faults if fault.device == device and fault.active_at(now)]

    # --- time -------------------------------------------------------------------------------------------

    def step(self, ticks: int = 1) -> None:
        """Run `ticks` ticks. On a VirtualClock this advances time by `ticks * tick` (so due events run
        too); other clocks cannot be moved, so each tick is computed at the current time."""
        if isinstance(self.clock, VirtualClock):
            self.clock.advance(ticks * self.tick)
            return
        for _ in range(ticks):
            self._tick()

    def reset(self) -> None:
        """Back to the start: initial values, clock at 0, RNGs reseeded, events re-armed, faults and
        ramps gone. Listeners stay subscribed and hear about every value the reset changed."""
        with self._lock:
            before = dict(self._values)
            self._start()
            self._notify({name: value for name, value in self._values.items() if before.get(name) != value})

    def _start(self) -> None:
        self._generation += 1
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self.clock.reset()
        self._values.clear()
        self._values.update(self._init)
        self._rngs.clear()
        for name, behaviour in self._behaviours.items():
            behaviour.reset(self._init[name], self.rng(f"tag:{name}"))
        self._ramps.clear()
        self._faults.clear()
        self._failing.clear()
        for when in self._when:
            when.was_true = False
        self._last = 0.0
        # Time 0 is computed at once, so that the plant is consistent before the first tick.
        changes: dict[str, Value] = {}
        self._compute(0.0, 0.0, changes)
        generation = self._generation
        self._timers.append(self.clock.call_every(self.tick, lambda: self._on_tick(generation), start=self.tick))
        for event in self.scenario.events:
            if event.at is not None:
                if event.at == 0:
                    self._fire(event, changes)
                else:
                    self._timers.append(self.clock.call_at(event.at, self._timed(event, generation)))
            elif event.every is not None:
                self._timers.append(
                    self.clock.call_every(event.every, self._timed(event, generation), start=event.every)
                )

    def _timed(self, event: Event, generation: int) -> Callable[[], None]:
        def fire() -> None:
            with self._lock:
                if generation != self._generation:
                    return  # a timer from before a reset that was already on its way
                changes: dict[str, Value] = {}
                self._fire(event, changes)
                self._notify(changes)

        return fire

    def _on_tick(self, generation: int) -> None:
        if generation == self._generation:
            self._tick()

    def _tick(self) -> None:
        with self._lock:
            now = self.clock.now()
            dt = max(0.0, now - self._last)
            self._last = now
            changes: dict[str, Value] = {}
            self._compute(now, dt, changes)
            self._notify(changes)

    def _compute(self, now: float, dt: float, changes: dict[str, Value]) -> None:
        values = self._values
        for name, behaviour, coerce in self._order:
            try:
                value = coerce(behaviour.update(now, dt, values))
            except _RUNTIME_ERRORS as exc:
                self._failed(name, exc)
                continue
            if value != values[name]:
                values[name] = value
                changes[name] = value
            if self._failing:
                self._failing.pop(name, None)
        if self._ramps:
            self._move_ramps(now, changes)
        for when in self._when:
            try:
                now_true = bool(when.condition(values))
            except _RUNTIME_ERRORS as exc:
                self._failed(f"when {when.event.when}", exc)
                now_true = False
            else:
                if self._failing:
                    self._failing.pop(f"when {when.event.when}", None)
            if now_true and not when.was_true:
                self._fire(when.event, changes)
            when.was_true = now_true

    def _failed(self, what: str, exc: Exception) -> None:
        if what not in self._failing:
            log.warning("%s: %s (the value is kept; logged once until it recovers)", what, exc)
        self._failing[what] = str(exc)

    # --- events ---------------------------------------------------------------------------------------

    def _fire(self, event: Event, changes: dict[str, Value]) -> None:
        now = self.clock.now()
        for name, value in (event.assign or {}).items():
            try:
                if isinstance(value, SetExpr):
                    value = self._coerce[name](self._set_exprs[value.expr](self._values))
                else:
                    value = checked_value(self.scenario.tags[name].type, value)
            except _RUNTIME_ERRORS as exc:
                self._failed(f"set {name}", exc)
                continue
            self._write(name, value, changes)
        if event.ramp is not None:
            ramp = event.ramp
            current = self._values[ramp.tag]
            start = float(current) if isinstance(current, (int, float)) else 0.0
            self._ramps[ramp.tag] = _Ramp(start, ramp.to, now, ramp.over)
            generation = self._generation

            def finish() -> None:
                with self._lock:
                    if generation == self._generation:
                        done: dict[str, Value] = {}
                        self._move_ramps(self.clock.now(), done)
                        self._notify(done)

            # One-shot timers that already ran are dropped, so a long run of ramps does not pile them up.
            self._timers = [timer for timer in self._timers if timer.period_ns or timer.when > now]
            self._timers.append(self.clock.call_at(now + ramp.over, finish))
        if event.clear is not None:
            for fault in self._faults:
                if (
                    fault.device == event.clear.device
                    and event.clear.kind in (None, fault.kind)
                    and fault.active_at(now)
                ):
                    fault.end = now
        if event.fault is not None:
            spec = event.fault
            end = None if spec.duration is None else now + spec.duration
            self._faults.append(
                FaultRecord(spec.device, spec.kind, now, end, spec.probability, spec.match, spec.count, spec.params)
            )

    def _move_ramps(self, now: float, changes: dict[str, Value]) -> None:
        for name, ramp in list(self._ramps.items()):
            fraction = min(1.0, (now - ramp.t0) / ramp.over)
            value = self._coerce[name](ramp.start_value + (ramp.to - ramp.start_value) * fraction)
            self._store(name, value, changes)
            if fraction >= 1.0:
                del self._ramps[name]

    def _write(self, name: str, value: Value, changes: dict[str, Value]) -> None:
        self._ramps.pop(name, None)
        self._store(name, value, changes)

    def _store(self, name: str, value: Value, changes: dict[str, Value]) -> None:
        behaviour = self._behaviours.get(name)
        if behaviour is not None:
            behaviour.written(value)
        if value != self._values[name]:
            self._values[name] = value
            changes[name] = value

    def _notify(self, changes: dict[str, Value]) -> None:
        if changes:
            for listener in list(self._listeners):
                listener(dict(changes))

    def _unknown(self, name: str) -> ConfigError:
        close = difflib.get_close_matches(name, list(self._values), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return ConfigError(f"no tag {name!r} in scenario {self.scenario.scenario!r}{hint}")

    def __repr__(self) -> str:
        return f"Plant({self.scenario.scenario!r}, t={self.clock.now()})"


_EXPRESSION_KINDS = ("expr", "integrate", "lag")


def expression_problems(scenario: Scenario) -> list[tuple[tuple[str | int, ...], str]]:
    """Every expression of `scenario` evaluated once, against the values the plant starts from.

    Driven tags are computed at time 0 in the plant's order, as `Plant` does; an integrator's or a lag's
    input (which time 0 does not read) is evaluated too, as are `when` conditions and `set` expressions.
    What fails here fails when served, so `load_scenario` reports it as a mistake of the file, at its
    place (the field path), instead of a WARNING once the plant runs.
    """
    values: dict[str, Value] = {name: _initial(spec) for name, spec in scenario.tags.items()}
    specs = {name: spec.behaviour for name, spec in scenario.tags.items() if spec.behaviour is not None}
    behaviours = {name: build(spec) for name, spec in specs.items()}
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for name in _evaluation_order(behaviours):
        spec = specs[name]
        coerce = _coercer(scenario.tags[name].type)
        try:
            if spec.kind in _EXPRESSION_KINDS:
                result = compile_expr(getattr(spec, spec.kind))(values)
                if spec.kind != "expr" and (isinstance(result, (bool, str)) or not isinstance(result, (int, float))):
                    raise ExprError(f"{getattr(spec, spec.kind)!r}: expected a number, got {result!r}")
            behaviour = behaviours[name]
            behaviour.reset(values[name], random.Random(scenario.seed))
            values[name] = coerce(behaviour.update(0.0, 0.0, values))
        except _RUNTIME_ERRORS as exc:
            problems.append((("tags", name, "behaviour", spec.kind), _cannot(exc, scenario.tags[name].type)))
    for index, event in enumerate(scenario.events):
        if event.when is not None:
            try:
                compile_expr(event.when)(values)
            except _RUNTIME_ERRORS as exc:
                problems.append((("events", index, "when"), _cannot(exc, None)))
        for tag, value in (event.assign or {}).items():
            if isinstance(value, SetExpr):
                try:
                    _coercer(scenario.tags[tag].type)(compile_expr(value.expr)(values))
                except _RUNTIME_ERRORS as exc:
                    problems.append((("events", index, "set", tag, "expr"), _cannot(exc, scenario.tags[tag].type)))
    return problems


def _cannot(exc: Exception, type_name: str | None) -> str:
    into = f" (as {with_article(type_name)})" if type_name is not None and not isinstance(exc, ExprError) else ""
    return f"cannot be evaluated with the values the plant starts from{into}: {exc}"


def _evaluation_order(behaviours: dict[str, Behaviour]) -> list[str]:
    """Tags in an order where each comes after the driven tags it reads (file order otherwise).

    In a loop (level -> outflow -> level) the first one met reads the others' values of the last tick.
    """
    order: list[str] = []
    state: dict[str, bool] = {}  # False while visiting, True when placed

    def visit(name: str) -> None:
        if name in state:
            return
        state[name] = False
        for dependency in sorted(behaviours[name].names):
            if dependency in behaviours:
                visit(dependency)
        state[name] = True
        order.append(name)

    for name in behaviours:
        visit(name)
    return order
