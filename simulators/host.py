"""SimHost: a scenario's devices served on real sockets from one background event-loop thread.

    with SimHost("water_tank", clock="virtual", any_port=True) as host:
        url = host.devices["plc1"].url          # modbus://127.0.0.1:40123?unit=1
        ...                                     # any client: sync, async on any loop, blocking
        host.clock.advance(60)                  # a minute of plant time, at once
        with host.inject_fault("plc1", "latency", delay="200ms"):
            ...                                 # every answer of plc1 now comes 200 ms later
        host.reset()                            # between tests: values, time, logs and faults

The loop thread belongs to the host, so sync tests, async tests on their own loops and blocking
clients can all use the devices, and a test that stops its own loop cannot stop them. Everything the
host exposes may be called from any thread: the plant serialises with its lock, and what must run on
the loop thread is sent there (`call`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import ipaddress
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from bifrost.errors import ConfigError
from bifrost.tags import TagMap
from simulators import protocols
from simulators.clock import SystemClock, VirtualClock
from simulators.faults.faultset import ActiveFault, FaultHandle, PlantFaults
from simulators.faults.watch import FaultWatch, call_on_loop
from simulators.hooks import FaultHooks, HookContext
from simulators.plant import Plant
from simulators.protocols import DeviceSetup, ListenerGate, ProtocolServer
from simulators.scenario import Scenario, load_scenario
from simulators.shipped import shipped_scenario
from simulators.traffic import DEFAULT_MAXLEN, TrafficLog

log = logging.getLogger(__name__)

T = TypeVar("T")
_START_TIMEOUT = 10.0


class SimDevice:
    """One served device: its name, protocol, URL, tag database (for bifrost.connect) and traffic log."""

    def __init__(
        self, name: str, protocol: str, transport: str, unit: int | None, tags: TagMap, log: TrafficLog
    ) -> None:
        self.name = name
        self.protocol = protocol
        self.transport = transport
        self.unit = unit
        self.tags = tags
        self.log = log
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The URL a client connects to: `modbus://127.0.0.1:40123?unit=1`, `opc.tcp://127.0.0.1:40124/bifrost`..."""
        if self._url is None:
            raise RuntimeError(f"{self.name} has no URL until the host is started: call SimHost.start()")
        return self._url

    def __repr__(self) -> str:
        return f"SimDevice({self.name!r}, {self._url or 'not started'})"


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
"""Listen hosts that mean every interface of this machine."""


def reachable_note(host: str = "0.0.0.0") -> str:
    """Where clients reach a device that listens on every interface (`host`): here, and from elsewhere."""
    ipv6 = host == "::"
    name = socket.gethostname()
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)}
    except OSError:
        found = set()
    outside = sorted(
        address
        for address in found
        if not ipaddress.ip_address(address.split("%")[0]).is_loopback and (ipv6 or ":" not in address)
    )
    elsewhere = ", ".join(outside) if outside else f"this machine's address ({name})"
    here = "[::1] (or 127.0.0.1)" if ipv6 else "127.0.0.1"
    return f"on this machine at {here}, from other machines at {elsewhere}"


def resolve_scenario(scenario: Scenario | str | Path) -> Scenario:
    """A Scenario as given, or loaded from a path, or a shipped scenario's stem (`water_tank`)."""
    if isinstance(scenario, Scenario):
        return scenario
    path = Path(scenario)
    if path.exists() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return load_scenario(path)
    return load_scenario(shipped_scenario(str(scenario)))


class SimHost:
    """Serve a scenario's devices. See the module docstring.

    `clock`: "system" (plant time runs `speed` times faster than real time) or "virtual" (time moves
    only when `host.clock.advance()` is called). `any_port`: bind port 0 everywhere instead of the
    scenario's ports. `hooks`: fault hooks (simulators.hooks); by default a `PlantFaults`, so the
    scenario's fault events apply and `inject_fault()` works; `hooks=NoFaults()` serves every
    connection on the bare fast path, with no faults at all. `listen_host` replaces the host of every
    listen address (`bifrost-sim serve --host`). `only`: serve these devices alone (a shard).

    Faults that act on a device as a whole happen at their time (simulators.faults.watch): a reboot
    drops connections and sets tags back when it starts, and while a device refuses every connection
    (a `refuse` at probability 1 without a `count`, or a reboot's boot time) its TCP listening socket
    is closed, so connecting fails as at a device that is off, and reopened on the same port after.
    """

    def __init__(
        self,
        scenario: Scenario | str | Path,
        *,
        clock: Literal["system", "virtual"] = "system",
        speed: float = 1.0,
        any_port: bool = False,
        hooks: FaultHooks | None = None,
        listen_host: str | None = None,
        log_size: int = DEFAULT_MAXLEN,
        only: Collection[str] | None = None,
    ) -> None:
        self.scenario = resolve_scenario(scenario)
        if clock == "virtual":
            self.plant: Plant[Any] = Plant(self.scenario, VirtualClock())
        elif clock == "system":
            self.scenario.check_speed(speed)
            self.plant = Plant(self.scenario, SystemClock(speed))
        else:
            raise ConfigError(f"clock must be 'system' or 'virtual', not {clock!r}")
        self.hooks: FaultHooks = hooks if hooks is not None else PlantFaults()
        self.any_port = any_port
        self.listen_host = listen_host
        self.devices: dict[str, SimDevice] = {}
        self.skipped: dict[str, str] = {}
        """Devices not served, with the reason (protocols without a simulator yet)."""
        self.everywhere: list[str] = []
        """Devices that listen on every interface (0.0.0.0, ::): reachable from other machines."""
        self._everywhere_host = "0.0.0.0"
        setups: dict[str, list[DeviceSetup]] = {}
        frontends: dict[str, protocols.Frontend] = {}
        for name, spec in self.scenario.devices.items():
            if only is not None and name not in only:
                continue  # another shard's (bifrost-sim serve --shard)
            frontend = protocols.frontend(spec.protocol)
            if frontend is None:
                self.skipped[name] = f"no {spec.protocol} simulator yet"
                log.warning("%s: not served: %s", name, self.skipped[name])
                continue
            frontends[spec.protocol] = frontend
            host, port = self._listen(spec.listen or frontend.default_listen())
            if host in WILDCARD_HOSTS:
                self.everywhere.append(name)
                self._everywhere_host = host
            setup = DeviceSetup(self.scenario, name, self.plant, TrafficLog(name, log_size), host, port)
            setups.setdefault(spec.protocol, []).append(setup)
        self._servers: list[ProtocolServer] = [
            frontends[protocol].create(group, hooks=self.hooks, sleep=self._sleep) for protocol, group in setups.items()
        ]
        self._server_of: dict[str, ProtocolServer] = {}
        for server, group in zip(self._servers, setups.values(), strict=False):
            for setup in group:
                about = server.about(setup.name)
                tags = self.scenario.tag_map(setup.name)
                self.devices[setup.name] = SimDevice(
                    setup.name, setup.spec.protocol, about.transport, about.unit, tags, setup.log
                )
                self._server_of[setup.name] = server
        self._started: list[ProtocolServer] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sleepers: set[asyncio.Future[None]] = set()
        self._lock = threading.Lock()
        self._watch: FaultWatch | None = None
        self._gates: list[ListenerGate] = []
        self._warned = False

    def _listen(self, listen: str) -> tuple[str, int]:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        if self.listen_host is not None:
            host = self.listen_host
        return host, 0 if self.any_port else int(port)

    # --- the plant and its clock -----------------------------------------------------------------------

    @property
    def clock(self) -> Any:
        """The plant's clock: a VirtualClock (advance it from any thread) or a SystemClock."""
        return self.plant.clock

    def url(self, device: str) -> str:
        try:
            return self.devices[device].url
        except KeyError:
            served = ", ".join(self.devices) or "(none)"
            raise ConfigError(f"no device {device!r} is served; served: {served}") from None

    # --- lifecycle ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> SimHost:
        """Start every device on one background event-loop thread; returns once all of them listen.

        A port already in use (or any other reason a device cannot listen) is a ConfigError naming the
        device and the address; nothing is left running then.
        """
        with self._lock:
            if self._thread is not None:
                return self
            loop = asyncio.new_event_loop()
            name = f"bifrost-sim {self.scenario.scenario}"
            thread = threading.Thread(target=self._run, args=(loop,), name=name, daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
            future = asyncio.run_coroutine_threadsafe(self._start_devices(), loop)
            try:
                future.result(_START_TIMEOUT)
            except BaseException:
                self._halt()
                raise
        if self.everywhere and not self._warned:
            # Once per host: a test rig or a demo on 0.0.0.0 is a PLC anyone on the network can write to.
            self._warned = True
            log.warning(
                "%s listening on every interface: reachable from beyond this machine (%s); "
                "listen on 127.0.0.1 to keep it local",
                ", ".join(f"{name} ({self.devices[name].url})" for name in self.everywhere),
                reachable_note(self._everywhere_host),
            )
        return self

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _start_devices(self) -> None:
        loop = asyncio.get_running_loop()
        clock = self.plant.clock
        if isinstance(clock, SystemClock):
            clock.attach(loop)
        try:
            for server in self._servers:
                server.start(loop)
                self._started.append(server)
        except BaseException:
            for server in self._started:
                server.close()
            self._started = []
            raise
        for name, server in self._server_of.items():
            self.devices[name]._url = server.url(name)
        self.hooks.bind(
            HookContext(
                plant=self.plant,
                loop=loop,
                sleep=self._sleep,
                disconnect=self._disconnect,
                listeners=tuple(listener for server in self._servers for listener in server.listeners),
            )
        )
        if isinstance(self.hooks, PlantFaults):
            self._gates = [gate for server in self._servers for gate in server.gates(loop)]
            self._watch = FaultWatch(self.plant, self.hooks, list(self._server_of), self._act)
            self._watch.arm()

    def _disconnect(self, device: str) -> int:
        server = self._server_of.get(device)
        return 0 if server is None else server.disconnect(device)

    def stop(self) -> None:
        """Stop every device and the loop thread; the ports are free when it returns. Idempotent."""
        with self._lock:
            if self._thread is None:
                return
            loop = self._loop
            assert loop is not None
            if threading.current_thread() is self._thread:
                raise RuntimeError("SimHost.stop() was called on the host's own loop thread")
            future = asyncio.run_coroutine_threadsafe(self._stop_devices(), loop)
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                future.result(_START_TIMEOUT)
            self._halt()

    def _halt(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # already closed
                loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(_START_TIMEOUT)
        clock = self.plant.clock
        if isinstance(clock, SystemClock):
            clock.detach()
        for device in self.devices.values():
            device._url = None
        self._loop = self._thread = None
        self._started = []

    async def _stop_devices(self) -> None:
        if self._watch is not None:
            self._watch.disarm()
            self._watch = None
        self._gates = []
        tasks = [task for server in self._started for task in server.close()]
        self._started = []
        for future in list(self._sleepers):
            future.cancel()
        clock = self.plant.clock
        if isinstance(clock, SystemClock):
            clock.detach()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    def __enter__(self) -> SimHost:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        # A host dropped without stop() would keep its ports and thread until exit.
        with contextlib.suppress(Exception):
            if self._thread is not None and threading.current_thread() is not self._thread:
                self.stop()

    # --- between tests --------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the start: plant values, clock at 0, traffic logs cleared, frozen reads thawed, and
        faults cleared (through the hooks' `reset()`, if they have one). Callable from any thread."""
        reset_faults = getattr(self.hooks, "reset", None)
        if callable(reset_faults):
            reset_faults()
        self.plant.reset()
        watch = self._watch
        if watch is not None:
            watch.arm()  # the plant's reset cancelled its timers
        for server in self._servers:
            server.reset()
        for device in self.devices.values():
            device.log.clear()
        loop = self._loop
        if loop is not None and self._sleepers:
            # The clock's reset cancelled the timers these delayed answers waited on: let them go now.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake_sleepers)

    def _wake_sleepers(self) -> None:
        for future in list(self._sleepers):
            if not future.done():
                future.set_result(None)

    async def _sleep(self, seconds: float) -> None:
        """Sleep `seconds` of plant time: on a VirtualClock, until the clock is advanced that far."""
        clock = self.plant.clock
        if not isinstance(clock, VirtualClock):
            speed = clock.speed if isinstance(clock, SystemClock) else 1.0
            await asyncio.sleep(max(0.0, seconds) / speed)
            return
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:  # runs on whichever thread advances the clock
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_finish, future)

        # At once if a test thread advanced the clock past that time since now() was read.
        timer = clock.call_when_due(clock.now() + seconds, wake)
        self._sleepers.add(future)
        try:
            await future
        finally:
            timer.cancel()
            self._sleepers.discard(future)

    # --- faults -------------------------------------------------------------------------------------------

    def _plant_faults(self, what: str) -> PlantFaults:
        hooks = self.hooks
        if not isinstance(hooks, PlantFaults):
            raise ConfigError(
                f"{what} needs the host's default fault hooks (PlantFaults); this host was given "
                f"hooks={type(hooks).__name__}()"
            )
        return hooks

    def _served(self, device: str) -> str:
        if device not in self.devices:
            served = ", ".join(self.devices) or "(none)"
            raise ConfigError(f"no device {device!r} is served; served: {served}")
        return device

    def inject_fault(self, device: str, kind: str, **params: Any) -> FaultHandle:
        """Switch a fault on in a served device now, in the vocabulary of docs/faults.md:
        `host.inject_fault("plc1", "latency", delay="200ms")`, `..., "exception", code=6,
        match={"function": 3}, for_="10s")` (`for_` or `duration` for `for`).

        Returns a handle: `clear()` it, or use it as a context manager; `.active` says whether it is
        still in force (a `for` or `count` may have ended it) and `.hits` how often it has acted. A
        mistake in the keys is a ConfigError naming the key. Callable from any thread, before or after
        start(); `reset()` and `clear_faults()` end it too.
        """
        hooks = self._plant_faults("inject_fault()")
        return hooks.add(self._served(device), kind=kind, **params)

    def active_faults(self, device: str | None = None) -> dict[str, list[ActiveFault]]:
        """The faults in force now, injected and scenario ones, by device (of one device, or of all)."""
        hooks = self._plant_faults("active_faults()")
        names = list(self.devices) if device is None else [self._served(device)]
        return {name: hooks.device(name).active() for name in names}

    def clear_faults(self, device: str | None = None) -> None:
        """Switch off every fault in force, of one device or of all: those injected and those the
        scenario's events switched on (as a `clear` event does; later events still switch theirs on)."""
        hooks = self._plant_faults("clear_faults()")
        if device is None:
            for name in self.devices:
                hooks.clear(name)
        else:
            hooks.clear(self._served(device))

    def _act(self) -> None:
        """What the FaultWatch asks for when whole-device faults may have come or gone (any thread)."""
        for server in self._servers:
            server.changed()  # a freeze keeps the values of its start, not of the next change
        self._gate()

    def _gate(self) -> None:
        """Close or reopen listening sockets as the faults say; from any thread, done before it returns."""
        gates, loop = self._gates, self._loop
        if not gates or loop is None:
            return
        hooks = self._plant_faults("a listener gate")

        def wanted(gate: ListenerGate) -> bool:
            return any(hooks.device(name).closes_listener() for name in gate.devices)

        if all(gate.closed == wanted(gate) for gate in gates):
            return  # nothing to change: no trip to the loop thread

        def apply() -> None:  # on the loop thread, deciding again there: the last one to run is right
            for gate in gates:
                gate.want_closed(wanted(gate))

        call_on_loop(loop, apply)

    # --- running code on the loop -----------------------------------------------------------------------

    @overload
    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T: ...
    @overload
    def call(self, fn: Callable[..., T], *args: Any) -> T: ...

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` on the host's loop thread and return its result (awaited, if it is awaitable)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the host is not running: call start() first")
        if threading.current_thread() is self._thread:
            result = fn(*args)
            if inspect.isawaitable(result):
                raise RuntimeError("call() on the loop thread cannot wait for an awaitable; await it instead")
            return result

        async def run() -> Any:
            result = fn(*args)
            if inspect.isawaitable(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), loop).result()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"SimHost({self.scenario.scenario!r}, {state}, devices={list(self.devices)})"


def _finish(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


__all__ = ["WILDCARD_HOSTS", "SimDevice", "SimHost", "reachable_note", "resolve_scenario"]
