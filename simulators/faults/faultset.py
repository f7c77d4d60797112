"""The faults of one device, as they come and go: `FaultSet`, and `PlantFaults`, the hooks a SimHost calls.

A FaultSet holds the faults switched on at run time (`add(spec) -> handle`, `handle.clear()`, `with
faults.add(...)`) and, given a Plant, those its scenario's events switched on for the device
(`plant.active_faults(device)`). A fault lasts until cleared, until its `for` has passed, or until it
has hit `count` chunks or requests. Every random draw (probability, jitter, which bits to flip) comes
from one seeded `random.Random`, so a run repeats.

What the faults then do:

- transport faults act on bytes, through `Lane`s (one per direction of a connection): `wrap()` puts
  them around a server's streams, and the proxy relays through them;
- protocol faults are decided per decoded request (`decide`, or `on_request` for a server), as an
  `Action` from simulators.hooks;
- `refuse` answers `accepting()`, `freeze` answers `frozen()`, and `reboot` drops the device's
  connections and sets its tags back to their initial values (`on_reboot` listeners), then refuses
  connections for its `for`, as a device that is booting.

Thread-safe: a test may add and clear faults while the host's loop thread applies them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bifrost.errors import ConfigError
from simulators.clock import Clock, VirtualClock
from simulators.faults.frames import FRAME_KINDS, Framer, RequestRef, frame_unit
from simulators.faults.protocol import action_for
from simulators.faults.spec import DIRECTED_KINDS, FaultSpec
from simulators.faults.timing import Timing
from simulators.faults.watch import call_on_loop
from simulators.hooks import Action, HookContext, ListenerInfo, NoFaults, Reader, RequestInfo, Writer

if TYPE_CHECKING:
    from simulators.plant import FaultRecord, Plant

log = logging.getLogger(__name__)

_REQUEST_KINDS = frozenset({"exception", "bad_quality", "wrong_transaction", "truncate"})
RebootListener = Callable[[], object]


class ActiveFault:
    """A fault with its time: switched on at `start`, off at `end` (None: until cleared), `count` hits left."""

    __slots__ = ("_end", "carried_out", "cleared", "hits", "record", "remaining", "spec", "start")

    def __init__(self, spec: FaultSpec, start: float, record: FaultRecord | None = None) -> None:
        self.spec = spec
        self.start = start
        self.record = record
        self._end = None if spec.for_ is None else start + spec.for_
        self.remaining = spec.count
        self.cleared = False
        self.carried_out = False  # a reboot: done once, at its start
        self.hits = 0

    def restart(self, start: float) -> None:
        """Start again at `start` (a fault added before its device had a clock)."""
        self.start = start
        self._end = None if self.spec.for_ is None else start + self.spec.for_

    @property
    def end(self) -> float | None:
        # A scenario's `clear` event ends a record by setting its end: read it from there.
        return self.record.end if self.record is not None else self._end

    def live(self, now: float) -> bool:
        if self.cleared or now < self.start or self.remaining == 0:
            return False
        end = self.end
        if self.spec.kind == "reboot":
            # A reboot happens at its start; its `for` is the boot time, refused connections.
            return end is not None and now < end
        return end is None or now < end

    def __repr__(self) -> str:
        until = "cleared" if self.cleared else f"until {self.end}" if self.end is not None else "until cleared"
        left = f", {self.remaining} left" if self.remaining is not None else ""
        return f"ActiveFault({self.spec}, from {self.start} {until}{left})"


class FaultHandle:
    """A fault added at run time: `clear()` it, or use it as a context manager."""

    def __init__(self, owner: FaultSet, fault: ActiveFault) -> None:
        self._owner = owner
        self._fault = fault

    @property
    def spec(self) -> FaultSpec:
        return self._fault.spec

    @property
    def fault(self) -> ActiveFault:
        """The fault in force, as `FaultSet.active()` lists it."""
        return self._fault

    @property
    def active(self) -> bool:
        return self._owner.still_live(self._fault)

    @property
    def hits(self) -> int:
        """How many chunks, requests or connections it has hit so far."""
        return self._fault.hits

    def clear(self) -> None:
        self._owner._clear_fault(self._fault)

    def __enter__(self) -> FaultHandle:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.clear()

    def __repr__(self) -> str:
        return f"FaultHandle({self._fault!r})"


def _as_spec(spec: FaultSpec | str | Mapping[str, Any] | None, keys: Mapping[str, Any]) -> FaultSpec:
    if isinstance(spec, FaultSpec):
        if keys:
            raise ConfigError("give a FaultSpec or keyword arguments, not both")
        return spec
    if isinstance(spec, str):
        return FaultSpec.parse(spec) if not keys else FaultSpec.of(spec, **keys)
    if spec is None:
        return FaultSpec.from_mapping(dict(keys))
    return FaultSpec.from_mapping({**spec, **keys})


class FaultSet:
    """The faults of one device; see the module docstring.

    `clock` (or the plant's) gives their time and the delays' sleep; `seed` (default: the plant's
    seed, else 0) seeds the draws; `framer` says how the device's bytes are cut into frames (its
    front-end's Framer; None: plain chunks, and the faults that need frames are refused); `units`, if
    set, limits transport faults to frames of those units (a listener shared by several devices carries
    their frames on one wire).
    """

    def __init__(
        self,
        device: str = "device",
        *,
        plant: Plant[Any] | None = None,
        clock: Clock | None = None,
        seed: int | str | None = None,
        framer: Framer | None = None,
        units: Iterable[int] | None = None,
        timing: Timing | None = None,
        faults: Iterable[FaultSpec | str] = (),
    ) -> None:
        self.device = device
        self.plant = plant
        self.clock = plant.clock if plant is not None and clock is None else clock
        self.timing = timing if timing is not None else Timing.of(self.clock)
        self.framer = framer
        self.framed = True  # the framer is known (a PlantFaults' set learns it when the host starts)
        self.units = None if units is None else frozenset(units)
        self._seed = seed
        self._lock = threading.RLock()
        self._faults: list[ActiveFault] = []
        self.generation = 0  # bumped by reset(): lanes then let go of what they hold, on the old timeline
        self._records: dict[int, tuple[FaultRecord, ActiveFault | None]] = {}
        self._reboot_listeners: list[RebootListener] = []
        self._change_listeners: list[Callable[[], object]] = []
        self._hit_listeners: list[Callable[[ActiveFault], object]] = []
        self.rng = self._new_rng()
        for spec in faults:
            self.add(spec)

    def _new_rng(self) -> random.Random:
        if self._seed is None and self.plant is not None:
            return self.plant.rng(f"faults:{self.device}")
        return random.Random(f"{0 if self._seed is None else self._seed}:faults:{self.device}")

    def now(self) -> float:
        return self.timing.now()

    def seed_for(self, stream: str) -> int:
        """A 64-bit seed for draws made elsewhere (a C server's), from the same seed as this set's own
        draws (the given one, else the plant's scenario seed), for `stream`; drawing nothing from `rng`."""
        if self._seed is None and self.plant is not None:
            base: object = self.plant.scenario.seed
        else:
            base = 0 if self._seed is None else self._seed
        return random.Random(f"{base}:faults:{self.device}:{stream}").getrandbits(64)

    def attach(
        self,
        plant: Plant[Any] | None,
        timing: Timing,
        framer: Framer | None,
        units: frozenset[int] | None,
        framed: bool = True,
    ) -> None:
        """Move onto a plant (PlantFaults.bind, when a host starts). Faults added while there was none
        start again now, on the plant's clock; on the same plant again (a restart) they carry on.

        A fault that needs frames, on a device whose front-end cuts none, is a ConfigError here."""
        with self._lock:
            early = self.plant is None and plant is not None
            self.plant = plant
            self.clock = None if plant is None else plant.clock
            self.timing = timing
            self.framer = framer
            self.units = units
            self.framed = framed
            for fault in self._faults:
                self.check_framed(fault.spec)
            if early:
                now = self.now()
                for fault in self._faults:
                    fault.restart(now)
                self.rng = self._new_rng()

    # --- switching faults on and off ------------------------------------------------------------------

    def add(self, spec: FaultSpec | str | Mapping[str, Any] | None = None, /, **keys: Any) -> FaultHandle:
        """Switch a fault on now: a FaultSpec, CLI text (`"latency,delay=200ms"`), a mapping, or keywords
        (`add(kind="latency", delay="200ms")`). Returns a handle that clears it."""
        fault = ActiveFault(_as_spec(spec, keys), self.now())
        self.check_framed(fault.spec)
        with self._lock:
            self._faults.append(fault)
        if fault.spec.kind == "reboot":
            self.poll()
        self._changed()
        return FaultHandle(self, fault)

    def check_framed(self, spec: FaultSpec, what: str = "") -> None:
        """A ConfigError when `spec` needs frames and this device's bytes are not cut into any."""
        if self.framer is not None or not self.framed or spec.kind not in DIRECTED_KINDS:
            return
        if spec.kind in FRAME_KINDS or not spec.match.empty:
            needs = f"{spec.kind} with a match" if spec.kind not in FRAME_KINDS else spec.kind
            raise ConfigError(
                f"{what}fault {spec.kind} on device {self.device}: {needs} acts on whole frames, and this "
                "device's front-end gives no framer to cut its bytes into frames; use a fault that acts on the "
                "byte stream (latency, bandwidth, slicer, stall, reset, close, refuse) without a match"
            )

    def clear(self, kind: str | None = None) -> None:
        """Switch off every active fault (of `kind`, if given), the scenario's included, as its `clear` event does."""
        now = self.now()
        with self._lock:
            for fault in self._faults:
                if kind in (None, fault.spec.kind):
                    fault.cleared = True
            self._faults = [fault for fault in self._faults if not fault.cleared]
            if self.plant is not None:
                for record in self.plant.active_faults(self.device):
                    if kind in (None, record.kind):
                        record.end = now
        self._changed()

    def _clear_fault(self, fault: ActiveFault) -> None:
        with self._lock:
            fault.cleared = True
            if fault in self._faults:
                self._faults.remove(fault)
        self._changed()

    def reset(self) -> None:
        """Back to the start: run-time faults gone, counts and draws started afresh (the plant's own
        records are the plant's to reset)."""
        with self._lock:
            for fault in self._faults:
                fault.cleared = True
            self._faults.clear()
            self._records.clear()
            self.rng = self._new_rng()
            self.generation += 1
        self._changed()

    def on_change(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call `callback()` (on the caller's thread) after each add, clear or reset. Returns an unsubscriber.

        Faults that start or end with time (a scenario event, a `for`) are not changes: poll for those.
        """
        self._change_listeners.append(callback)
        return lambda: self._change_listeners.remove(callback) if callback in self._change_listeners else None

    def _changed(self) -> None:
        for callback in list(self._change_listeners):
            try:
                callback()
            except Exception:
                log.exception("%s: a fault change listener failed", self.device)

    def active(self) -> list[ActiveFault]:
        """The faults in force now, run-time and scenario ones."""
        with self._lock:
            return self._live(self.now())

    def _live(self, now: float) -> list[ActiveFault]:
        faults = [fault for fault in self._faults if fault.live(now)]
        if len(faults) != len(self._faults):
            # Ended ones go, except a pending reboot (its moment may not have been acted on yet).
            self._faults = [fault for fault in self._faults if fault.live(now) or self._reboot_pending(fault)]
        if self.plant is not None:
            for record in self.plant.active_faults(self.device):
                fault = self._from_record(record)
                if fault is not None and fault.live(now):
                    faults.append(fault)
        return faults

    def _from_record(self, record: FaultRecord) -> ActiveFault | None:
        cached = self._records.get(id(record))
        if cached is not None and cached[0] is record:
            return cached[1]
        fault: ActiveFault | None
        try:
            fault = ActiveFault(FaultSpec.from_record(record), record.start, record)
        except ConfigError as exc:
            log.warning("%s: ignoring a scenario fault that does not check: %s", self.device, exc)
            fault = None
        self._records[id(record)] = (record, fault)  # the record is kept, so its id is not reused
        return fault

    def still_live(self, fault: ActiveFault) -> bool:
        with self._lock:
            return fault.live(self.now())

    def spend(self, fault: ActiveFault) -> None:
        """Count a hit against the fault's `count` (a stalled lane swallowing one more chunk)."""
        with self._lock:
            self._hit(fault)
        self._heard([fault])

    def on_hit(self, callback: Callable[[ActiveFault], object]) -> Callable[[], None]:
        """Call `callback(fault)` each time a fault hits a chunk, request or connection (on the thread
        that applied it, after the fact). Returns an unsubscriber. For logs, and for tests to wait on."""
        self._hit_listeners.append(callback)
        return lambda: self._hit_listeners.remove(callback) if callback in self._hit_listeners else None

    def _heard(self, hits: list[ActiveFault]) -> None:
        for callback in list(self._hit_listeners):
            for fault in hits:
                try:
                    callback(fault)
                except Exception:
                    log.exception("%s: a fault hit listener failed", self.device)

    @staticmethod
    def _hit(fault: ActiveFault) -> None:
        fault.hits += 1
        if fault.remaining is not None:
            fault.remaining = max(0, fault.remaining - 1)

    def _draw(self, spec: FaultSpec) -> bool:
        # No draw for a certain fault: adding one does not shift every later draw of the run.
        return spec.probability >= 1.0 or (spec.probability > 0.0 and self.rng.random() < spec.probability)

    # --- what the faults decide --------------------------------------------------------------------------

    def quiet(self) -> bool:
        """No fault at all, run-time or scenario: the hot path's early way out (read without the lock:
        a fault added meanwhile acts from the next chunk)."""
        return not self._faults and (self.plant is None or not self.plant.active_faults(self.device))

    _quiet = quiet

    def transport_possible(self, direction: str) -> bool:
        """Whether any transport fault in force now acts on `direction` (a quick test, no draws)."""
        if self._quiet():
            return False
        with self._lock:
            return any(
                fault.spec.kind in DIRECTED_KINDS and fault.spec.applies_to(direction)
                for fault in self._live(self.now())
            )

    def transport(self, direction: str, request: RequestRef = None) -> list[ActiveFault]:
        """The transport faults that hit a chunk travelling `direction`, with their draws and counts taken.

        `request` is the request the chunk is (upstream) or answers (downstream), if known; a frame is
        decoded only if some fault's match needs it.
        """
        if self._quiet():
            return []
        units = self.units
        if units is not None and request is not None and frame_unit(request) not in units:
            return []  # another device's frame on a shared wire
        hits = []
        info: RequestInfo | None = None
        decoded = False
        with self._lock:
            for fault in self._live(self.now()):
                spec = fault.spec
                if spec.kind not in DIRECTED_KINDS or not spec.applies_to(direction):
                    continue
                if not spec.match.empty:
                    if not decoded:
                        framer = self.framer
                        info, decoded = (None if framer is None else framer.info(request)), True
                    if not spec.match.matches(info):
                        continue
                if self._draw(spec):
                    self._hit(fault)
                    hits.append(fault)
        if hits:
            self._heard(hits)
        return hits

    def decide(self, request: RequestInfo | None) -> tuple[Action, tuple[str, ...]] | None:
        """The protocol faults that hit one request, as the Action to take and the kinds that decided it."""
        if self._quiet():
            return None
        self.poll()
        hits = []
        with self._lock:
            for fault in self._live(self.now()):
                spec = fault.spec
                if spec.kind in _REQUEST_KINDS and spec.match.matches(request) and self._draw(spec):
                    self._hit(fault)
                    hits.append(fault)
        if hits:
            self._heard(hits)
        return action_for([fault.spec for fault in hits])

    def refusing(self) -> bool:
        """Whether a new connection is refused (a draw per connection), or the device is rebooting."""
        self.poll()
        hit: ActiveFault | None = None
        with self._lock:
            for fault in self._live(self.now()):
                if fault.spec.kind == "reboot":
                    return True
                if fault.spec.kind == "refuse" and self._draw(fault.spec):
                    self._hit(fault)
                    hit = fault
                    break
        if hit is None:
            return False
        self._heard([hit])
        return True

    def closes_listener(self) -> bool:
        """Whether the listening socket should be closed now, so connecting fails as it does at a device
        that is off: a reboot's boot time, or a refuse at probability 1 without a `count` (one with a
        count ends by refusing connections, so they must be let in to be refused one by one)."""
        if self._quiet():
            return False
        with self._lock:
            return any(
                fault.spec.kind == "reboot"
                or (fault.spec.kind == "refuse" and fault.spec.probability >= 1.0 and fault.spec.count is None)
                for fault in self._live(self.now())
            )

    def is_frozen(self) -> bool:
        if self._quiet():
            return False
        with self._lock:
            return any(fault.spec.kind == "freeze" for fault in self._live(self.now()))

    # --- reboot ----------------------------------------------------------------------------------------

    def on_reboot(self, callback: RebootListener) -> Callable[[], None]:
        """Call `callback()` when a reboot fault takes effect. Returns a function that unsubscribes."""
        self._reboot_listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._reboot_listeners:
                self._reboot_listeners.remove(callback)

        return unsubscribe

    def _reboot_pending(self, fault: ActiveFault) -> bool:
        return fault.spec.kind == "reboot" and not fault.cleared and not fault.carried_out

    def poll(self) -> int:
        """Carry out reboots whose time has come (scenario ones are noticed here, at the next connection
        or request, or when a host calls this). How many were carried out."""
        due = []
        with self._lock:
            now = self.now()
            candidates = list(self._faults)
            if self.plant is not None:
                candidates += [
                    fault
                    for record in self.plant.active_faults(self.device)
                    if record.kind == "reboot" and (fault := self._from_record(record)) is not None
                ]
            for fault in candidates:
                if self._reboot_pending(fault) and fault.start <= now:
                    fault.carried_out = True
                    fault.hits += 1
                    due.append(fault)
        for _ in due:
            for callback in list(self._reboot_listeners):
                try:
                    callback()
                except Exception:
                    log.exception("%s: a reboot listener failed", self.device)
        return len(due)

    # --- the hooks of one device (simulators.hooks.FaultHooks, with the device already chosen) ----------

    def accepting(self, listener: ListenerInfo | None = None) -> bool:
        return not self.refusing()

    def frozen(self, device: str | None = None) -> bool:
        return self.is_frozen()

    def on_request(self, device: str | None, request: RequestInfo) -> Action | None:
        if self._quiet():
            return None
        decided = self.decide(request)
        return None if decided is None else decided[0]

    def wrap(self, reader: Reader, writer: Writer, device: str | None = None) -> tuple[Reader, Writer]:
        """The connection's streams, with this device's transport faults in both directions."""
        from simulators.faults.streams import wrap_streams  # streams need a FaultSet; this avoids a cycle

        return wrap_streams(self, reader, writer)

    def __repr__(self) -> str:
        return f"FaultSet({self.device!r}, {self.active()!r})"


class PlantFaults(NoFaults):
    """The FaultHooks of a SimHost: a FaultSet per device of the plant, created when first asked for.

    `bind(context)` (by the host) gives the plant, whose scenario events switch faults on, and the means
    to carry out a reboot: the device's connections are dropped, and its mapped tags go back to their
    initial values. Tests add faults through `device(name).add(...)` or `add(name, ...)`.
    """

    def __init__(self, *, seed: int | str | None = None) -> None:
        self._seed = seed
        self._sets: dict[str, FaultSet] = {}
        self._lock = threading.Lock()

    def bind(self, context: HookContext) -> None:
        self.context = context
        with self._lock:
            sets = dict(self._sets)
        # The FaultSets made before (faults added before the host started) are kept, so their handles
        # and listeners stay good: they move onto the plant, and their faults start again now, on its clock.
        served = {name for listener in context.listeners for name in listener.devices}
        for name, faults in sets.items():
            plant, timing, framer, units = self._placement(name)
            faults.attach(plant, timing, framer, units, framed=name in served)
        self._check_scenario(context)

    def _check_scenario(self, context: HookContext) -> None:
        """A scenario's faults are refused at load (here, as the host starts) when they cannot act: one
        that needs frames, on a device whose front-end cuts none."""
        from simulators.plant import FaultRecord

        served = {name for listener in context.listeners for name in listener.devices}
        for index, event in enumerate(context.plant.scenario.events):
            fault = event.fault
            if fault is None or fault.device not in served:
                continue
            record = FaultRecord(
                fault.device, fault.kind, 0.0, fault.duration, fault.probability, fault.match, fault.count, fault.params
            )
            self.device(fault.device).check_framed(FaultSpec.from_record(record), f"events[{index}]: ")

    def device(self, name: str) -> FaultSet:
        found = self._sets.get(name)  # the hot path: one lookup, no lock
        if found is not None:
            return found
        with self._lock:
            found = self._sets.get(name)
            if found is None:
                found = self._sets[name] = self._create(name)
            return found

    def _placement(self, name: str) -> tuple[Plant[Any] | None, Timing, Framer | None, frozenset[int] | None]:
        """Where a device's faults live: its plant, their timing, its framer and, on a shared listener,
        its unit. Before `bind` there is no plant: a clock that stays at 0 stands in."""
        context = self.context
        if context is None:
            return None, Timing.of(VirtualClock()), None, None
        plant = context.plant
        framer: Framer | None = None
        units: frozenset[int] | None = None
        for listener in context.listeners:
            if name in listener.devices:
                framer = listener.framing
                if len(listener.devices) > 1:
                    unit = getattr(plant.scenario.devices[name], "unit", None)
                    units = frozenset({1 if unit is None else unit})
        # The host's sleep: a reset of the host wakes its sleepers (the plant's clock reset cancels timers).
        return plant, Timing(plant.clock.now, context.sleep), framer, units

    def _create(self, name: str) -> FaultSet:
        plant, timing, framer, units = self._placement(name)
        faults = FaultSet(name, plant=plant, seed=self._seed, framer=framer, units=units, timing=timing)
        # Before the host starts, the device's framer is not known yet: its faults are checked at bind.
        faults.framed = self.context is not None and any(name in lst.devices for lst in self.context.listeners)
        faults.on_reboot(lambda: self._reboot(name))
        return faults

    def add(self, device: str, spec: FaultSpec | str | Mapping[str, Any] | None = None, /, **keys: Any) -> FaultHandle:
        return self.device(device).add(spec, **keys)

    def clear(self, device: str | None = None, kind: str | None = None) -> None:
        with self._lock:
            sets = list(self._sets.values()) if device is None else [self.device(device)]
        for faults in sets:
            faults.clear(kind)

    def reset(self) -> None:
        with self._lock:
            sets = list(self._sets.values())
        for faults in sets:
            faults.reset()

    # --- FaultHooks ---------------------------------------------------------------------------------------

    def accepting(self, listener: ListenerInfo) -> bool:
        return all(self.device(name).accepting(listener) for name in listener.devices)

    def wrap(self, reader: Reader, writer: Writer, device: str) -> tuple[Reader, Writer]:
        return self.device(device).wrap(reader, writer)

    def on_request(self, device: str, request: RequestInfo) -> Action | None:
        return self.device(device).on_request(device, request)

    def frozen(self, device: str) -> bool:
        return self.device(device).frozen()

    # --- reboot ----------------------------------------------------------------------------------------------

    def _reboot(self, device: str) -> None:
        context = self.context
        if context is None:
            return
        log.info("%s: rebooting (a reboot fault)", device)
        loop = context.loop
        if loop.is_closed():
            return
        if _on_thread_of(loop):
            # Noticed while serving (a connection, a request): carried out once that is done.
            def carry_out() -> None:
                context.disconnect(device)
                reset_device_tags(context.plant, device)

            loop.call_soon(carry_out)
            return
        # Noticed on another thread (a test advancing a VirtualClock, say): done before this returns,
        # the connections dropped on the loop thread, then the tags set back here.
        call_on_loop(loop, lambda: context.disconnect(device))
        reset_device_tags(context.plant, device)


def _on_thread_of(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def reset_device_tags(plant: Plant[Any], device: str) -> None:
    """Set the tags `device` maps back to their initial values, as a device does when it restarts."""
    from simulators.scenario import checked_value

    scenario = plant.scenario
    spec = scenario.devices.get(device)
    if spec is None:
        return
    for name in spec.mapped(scenario.tags):  # `map: all` maps every tag
        tag = scenario.tags[name]
        value: Any = tag.init
        if value is None:
            current = plant.get(name)
            value = "" if isinstance(current, str) else False if isinstance(current, bool) else type(current)(0)
        plant.set(name, checked_value(tag.type, value))


__all__ = ["ActiveFault", "FaultHandle", "FaultSet", "PlantFaults", "reset_device_tags"]
