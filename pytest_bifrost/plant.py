"""`BifrostPlant`: what a test sees of its scenario, on either target.

On the sim target it fronts a running SimHost; on the real target it holds the devices file's URLs
and the scenario's tag maps, and every operation only a simulator can do skips the test saying why,
so one test file runs against both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from bifrost.tags import TagMap, Value

if TYPE_CHECKING:
    from bifrost.connection import Connection
    from simulators import SimHost, TrafficLog
    from simulators.clock import VirtualClock
    from simulators.faults import FaultHandle
    from simulators.scenario import Scenario

REAL = "--bifrost-target=real talks to hardware"


def _skip_on_real(what: str) -> NoReturn:
    pytest.skip(f"{what} needs a simulated plant; {REAL}")


def _sim_options(scenario: Scenario, name: str) -> dict[str, str]:
    """What a client needs beside the URL to be let in by a simulated device (none for most)."""
    spec = scenario.devices[name]
    if spec.protocol != "opcua":
        return {}
    options: dict[str, str] = {}
    security = list(getattr(spec, "security", ()))
    if security and "None" not in security:
        options["security"] = str(security[0])
    for user, entry in dict(getattr(spec, "users", {})).items():
        options["user"] = str(user)
        options["password"] = entry if isinstance(entry, str) else str(entry.password)
        break
    return options


class PlantFault:
    """A fault injected into a simulated device; cleared by `clear()`, by leaving a `with` block, or
    by the reset before the next test."""

    def __init__(self, handle: FaultHandle, description: str) -> None:
        self._handle = handle
        self.description = description

    @property
    def active(self) -> bool:
        """Still in force: not cleared, and its `for` or `count` (if any) not yet used up."""
        return bool(self._handle.active)

    @property
    def hits(self) -> int:
        """How many times the fault has acted on traffic."""
        return int(self._handle.hits)

    def clear(self) -> None:
        self._handle.clear()

    def __enter__(self) -> PlantFault:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.clear()

    def __repr__(self) -> str:
        return f"<PlantFault {self.description}>"


class PlantClock:
    """Plant time. On a virtual clock, time moves only through `advance()` and `run_until()`."""

    def __init__(self, plant: BifrostPlant) -> None:
        self._plant = plant

    def _virtual(self, what: str) -> VirtualClock:
        host = self._plant._simulated(f"bifrost_plant.clock.{what}")
        from simulators.clock import VirtualClock

        clock = host.clock
        if getattr(clock, "mode", None) == "virtual":  # a RemoteHost's clock, virtual on its side
            return clock  # type: ignore[no-any-return]
        if not isinstance(clock, VirtualClock):
            pytest.skip(f"bifrost_plant.clock.{what} needs a virtual clock; this run uses --bifrost-clock=system")
        return clock

    def now(self) -> float:
        """Seconds of plant time since the test began (the plant is reset before each test)."""
        return float(self._plant._simulated("bifrost_plant.clock.now()").plant.time)

    def advance(self, seconds: float) -> float:
        """Move plant time forward, running every tick and event on the way; the new time."""
        return self._virtual("advance()").advance(seconds)

    def run_until(
        self, target: float | Callable[[], bool], *, step: float | None = None, limit: float = 3600.0
    ) -> float:
        """Advance to plant time `target`, or until `target()` is true (a bifrost.errors.TimeoutError
        after `limit` seconds of plant time); the new time."""
        return self._virtual("run_until()").run_until(target, step=step, limit=limit)


class PlantDevice:
    """One device of the plant: where it answers and its tag database, and on the sim target its
    traffic log."""

    def __init__(
        self,
        plant: BifrostPlant,
        name: str,
        protocol: str,
        url: str,
        tags: TagMap,
        options: Mapping[str, str] | None = None,
    ) -> None:
        self.plant = plant
        self.name = name
        self.protocol = protocol
        self.url = url
        self.tags = tags
        self.options: dict[str, str] = dict(options or {})
        """`bifrost.connect`'s arguments beside the URL: on the real target the devices file's (OPC UA
        security, mode, user, password, certificate, private_key); on the sim target what the scenario's
        device asks of a client (an OPC UA device's first user, its policy when it offers no None)."""

    def connect(self, **overrides: Any) -> Connection:
        """`bifrost.connect(url, tags=tags, **options)` for this device; keyword arguments win."""
        import bifrost

        return bifrost.connect(self.url, tags=self.tags, **{**self.options, **overrides})

    @property
    def log(self) -> TrafficLog:
        """Every request and response this simulated device saw since the test began."""
        host = self.plant._simulated(f"{self.name}.log (the traffic log)")
        return host.devices[self.name].log

    def set(self, tag: str, value: Value) -> None:
        """Write a plant tag behind the device's back (see BifrostPlant.set)."""
        self.plant.set(tag, value)

    def get(self, tag: str) -> Value:
        return self.plant.get(tag)

    def fault(self, kind: str, **params: Any) -> PlantFault:
        """Inject a fault into this device; see BifrostPlant.fault."""
        return self.plant.fault(self.name, kind, **params)

    def __repr__(self) -> str:
        return f"<PlantDevice {self.name} {self.protocol} at {self.url}>"


class BifrostPlant:
    """The plant of the scenario a test is marked with, reset before each test on the sim target."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        path: Path | None,
        host: SimHost | None = None,
        real_urls: Mapping[str, str] | None = None,
        real_options: Mapping[str, Mapping[str, str]] | None = None,
        devices_file: Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.path = path
        self._host = host
        self._real_urls = real_urls
        self._real_options = real_options or {}
        self._devices_file = devices_file
        self._devices: dict[str, PlantDevice] = {}
        self.clock = PlantClock(self)

    @property
    def is_simulated(self) -> bool:
        return self._host is not None

    @property
    def target(self) -> str:
        return "sim" if self._host is not None else "real"

    @property
    def host(self) -> SimHost:
        """The SimHost running this plant (sim target only)."""
        return self._simulated("bifrost_plant.host")

    def _simulated(self, what: str) -> SimHost:
        if self._host is None:
            _skip_on_real(what)
        return self._host

    # --- devices ------------------------------------------------------------------------------------

    @property
    def device_names(self) -> list[str]:
        return list(self.scenario.devices)

    def device(self, name: str) -> PlantDevice:
        found = self._devices.get(name)
        if found is None:
            found = self._devices[name] = self._make_device(name)
        return found

    def url(self, name: str) -> str:
        return self.device(name).url

    def _make_device(self, name: str) -> PlantDevice:
        if name not in self.scenario.devices:
            known = ", ".join(self.scenario.devices) or "(none)"
            where = f" in {self.path}" if self.path else ""
            pytest.fail(f"no device {name!r}{where}; the scenario's devices are: {known}", pytrace=False)
        protocol = self.scenario.devices[name].protocol
        if self._host is not None:
            device = self._host.devices.get(name)
            if device is None:
                why = self._host.skipped.get(name, "the host does not serve it")
                pytest.skip(f"device {name!r} ({protocol}) is not simulated: {why}")
            return PlantDevice(self, name, protocol, device.url, device.tags, _sim_options(self.scenario, name))
        urls = self._real_urls or {}
        if name not in urls:
            listed = ", ".join(urls) or "(none)"
            pytest.fail(
                f"device {name!r} of scenario {self.scenario.scenario!r} is not in the devices file "
                f"{self._devices_file} (it names: {listed}); add a line `{name}: <url>`",
                pytrace=False,
            )
        options = dict(self._real_options.get(name, {}))
        return PlantDevice(self, name, protocol, urls[name], self.scenario.tag_map(name), options)

    # --- the plant behind the devices' backs (sim target only) --------------------------------------

    def set(self, tag: str, value: Value) -> None:
        """Change a plant tag behind the devices' backs, as the process would."""
        self._simulated("bifrost_plant.set").plant.set(tag, value)

    def get(self, tag: str) -> Value:
        """A plant tag's value as the simulator holds it (not read through a device)."""
        host = self._simulated("bifrost_plant.get")
        return host.plant.get(tag)

    def snapshot(self) -> dict[str, Value]:
        host = self._simulated("bifrost_plant.snapshot")
        return host.plant.snapshot()

    def reset(self) -> None:
        """Back to the scenario's start (the fixture already does this before each test)."""
        self._simulated("bifrost_plant.reset").reset()

    def fault(self, device: str, kind: str, **params: Any) -> PlantFault:
        """Inject a fault (the vocabulary of docs/faults.md: latency, stall, exception, ...) into a
        simulated device now; use the result as a context manager, or `clear()` it."""
        host = self._simulated(f"bifrost_plant.fault({kind!r})")
        self.device(device)  # a clear error for an unknown device name, before the host sees it
        return PlantFault(host.inject_fault(device, kind, **params), f"{kind} on {device} {params}")

    def __repr__(self) -> str:
        return f"<BifrostPlant {self.scenario.scenario!r} ({self.target}) devices={self.device_names}>"
