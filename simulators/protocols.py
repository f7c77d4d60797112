"""The protocol front-end registry: how the protocol-neutral core reaches each protocol.

The core (scenario, plant, host, hooks, traffic) names no protocol. A front-end package
(`simulators/modbus/`, `simulators/opcua/`, `simulators/s7/`) registers one `Frontend` here, which gives:

- `device_model`: the strict pydantic model of its scenario devices (a `DeviceModel` whose `protocol`
  is a `Literal` of its name). It checks its own keys and addresses; the scenario loader validates each
  device with the model of its `protocol`, so every mistake still names `file:line:col`.
- `create(devices, hooks=..., sleep=...)`: the protocol's server for the host's devices of that
  protocol, as a `ProtocolServer`: started on the host's loop thread, it gives each device's URL, the
  listeners the fault hooks see, and drops connections for a reboot. Each listener's `framing` is the
  front-end's `Framer` (simulators.faults.frames): how the fault lanes cut its bytes into frames and
  pair replies with requests. A front-end that gives none has its frame-level faults refused at load.
- `fault_codes` (optional): the codes its `exception` faults take (`FaultCodes`), which the fault
  vocabulary accepts and the scenario schema lists.

A front-end is imported when a scenario first names its protocol, so a protocol's heavy dependencies
are never loaded by a scenario that does not use it. Built-in front-ends are found by the module
named in `BUILTIN`; others call `register()` themselves (a plugin, a test).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bifrost.errors import ConfigError

if TYPE_CHECKING:
    from simulators.hooks import FaultHooks, ListenerInfo
    from simulators.plant import Plant
    from simulators.scenario import DeviceModel, Scenario
    from simulators.traffic import TrafficLog

Sleep = Callable[[float], Awaitable[None]]

BUILTIN: dict[str, str] = {
    "modbus": "simulators.modbus",
    "s7": "simulators.s7",
    "opcua": "simulators.opcua",
}
"""The built-in front-ends: protocol name -> the module that registers it when imported (in this order
their `exception` codes are named in errors)."""


@dataclass(frozen=True)
class DeviceSetup:
    """One device as the host hands it to its protocol's front-end."""

    scenario: Scenario
    name: str
    plant: Plant[Any]
    log: TrafficLog
    host: str
    """Where to listen: the scenario's host (or the host's `listen_host`)..."""
    port: int
    """...and port (0 under `any_port`: any free port)."""

    @property
    def spec(self) -> Any:
        """The device's strict scenario model (the front-end's `device_model`)."""
        return self.scenario.devices[self.name]


@dataclass(frozen=True)
class DeviceAbout:
    """What a served device tells about itself beyond its URL (for listings and the pytest plugin)."""

    transport: str = "tcp"
    unit: int | None = None


class ListenerGate(Protocol):
    """A listening socket the host closes while its devices refuse every connection (a device that is
    off), and reopens on the same port after."""

    devices: tuple[str, ...]

    @property
    def closed(self) -> bool: ...

    def want_closed(self, closed: bool) -> None: ...


class ProtocolServer(Protocol):
    """One protocol's devices of a host, served. Every method runs on the host's loop thread, except
    `about`, `changed` and `reset`, which may be called from any thread."""

    def about(self, device: str) -> DeviceAbout:
        """The device's transport and unit."""
        ...

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Listen; a ConfigError names the device and address when it cannot."""

    def url(self, device: str) -> str:
        """The URL a client connects to, once started."""
        ...

    @property
    def listeners(self) -> Sequence[ListenerInfo]:
        """The endpoints the fault hooks see (`accepting`, framing, the devices served there)."""
        ...

    def disconnect(self, device: str) -> int:
        """Drop every connection of the device now (a reboot); how many were dropped."""
        ...

    def close(self) -> list[asyncio.Task[None]]:
        """Stop listening and close every connection; the tasks still finishing."""
        ...

    def changed(self) -> None:
        """Whole-device faults may have come or gone (a freeze begins: take its snapshot now). Any thread."""

    def reset(self) -> None:
        """Between tests: thaw frozen reads and forget per-device state (the host clears the logs)."""

    def gates(self, loop: asyncio.AbstractEventLoop) -> Sequence[ListenerGate]:
        """The listening sockets the host may close for whole-device refusals (none: refused connections
        are accepted and closed at once instead, through the `accepting` hook)."""
        ...


@dataclass(frozen=True)
class FaultCodes:
    """The codes a protocol's `exception` faults take: `names` (lower case) and `numbers`, or names
    `pattern` matches, looked up by `lookup` (OPC UA status names). `help` says them in an error."""

    help: str
    names: Mapping[str, int] = field(default_factory=dict)
    numbers: frozenset[int] = frozenset()
    pattern: str | None = None
    lookup: Callable[[str], int | None] | None = None
    functions: Mapping[str, int] = field(default_factory=dict)
    """Names (lower case) a fault's `match: {function: ...}` may give instead of its number."""


class Frontend(Protocol):
    """What a protocol registers."""

    @property
    def name(self) -> str: ...

    @property
    def device_model(self) -> type[DeviceModel]:
        """The strict scenario model of this protocol's devices."""
        ...

    def create(self, devices: Sequence[DeviceSetup], *, hooks: FaultHooks, sleep: Sleep) -> ProtocolServer:
        """The server of this protocol's devices of one host (not started yet)."""
        ...

    def default_listen(self) -> str:
        """`host:port` a device listens on when its scenario says none (`127.0.0.1:502` style)."""
        ...


_registered: dict[str, Frontend] = {}


def register(frontend: Frontend) -> None:
    """Add (or replace) a protocol's front-end."""
    _registered[frontend.name] = frontend


def names() -> list[str]:
    """Every protocol a scenario may name: the built-in ones and those registered."""
    return sorted(set(BUILTIN) | set(_registered))


def frontend(name: str) -> Frontend | None:
    """The front-end of `name`, importing a built-in one on first use; None when it has no simulator here
    (a protocol whose front-end is not installed or not written yet)."""
    found = _registered.get(name)
    if found is not None:
        return found
    module = BUILTIN.get(name)
    if module is None:
        raise ConfigError(f"no protocol {name!r}; the protocols are: {', '.join(names())}")
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None  # the front-end package itself is absent
        raise
    return _registered.get(name)


def frontends() -> list[Frontend]:
    """Every front-end that can be had here (built-in ones imported)."""
    return [found for name in names() if (found := frontend(name)) is not None]


def fault_codes() -> list[FaultCodes]:
    """The `exception` codes of every front-end that has some, built-in ones first in BUILTIN's order."""
    found = [frontend(name) for name in BUILTIN] + [f for name, f in _registered.items() if name not in BUILTIN]
    out: list[FaultCodes] = []
    for front in found:
        codes = getattr(front, "fault_codes", None)
        if isinstance(codes, FaultCodes) and codes not in out:
            out.append(codes)
    return out


__all__ = [
    "BUILTIN",
    "DeviceAbout",
    "DeviceSetup",
    "FaultCodes",
    "Frontend",
    "ListenerGate",
    "ProtocolServer",
    "Sleep",
    "fault_codes",
    "frontend",
    "frontends",
    "names",
    "register",
]
