"""`bifrost_host`: the session's running simulators, each scenario started once and reused.

One registry per pytest session, so one per xdist worker; every host listens on ports the OS picks
(`any_port=True`), so workers never clash. A host is keyed by (scenario, seed, clock): the same
file under another `--bifrost-seed` or clock is another plant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from bifrost.errors import ConfigError
from bifrost.tags import Value
from pytest_bifrost.options import Settings
from pytest_bifrost.plant import REAL
from pytest_bifrost.scenarios import ScenarioNotFound, resolve_scenario

if TYPE_CHECKING:
    from simulators import SimHost
    from simulators.remote import RemoteHost
    from simulators.scenario import Scenario

HostKey = tuple[str, "int | None", str]


def _fail(message: str) -> NoReturn:
    # pytrace=False: the message already says what is wrong and where; a plugin traceback would not.
    # Callers fail outside their `except` block: raised inside one, pytest shows the caught error too,
    # chained ("During handling of the above exception..."), so the user reads the message twice.
    pytest.fail(message, pytrace=False)


class HostRegistry:
    """The value of the `bifrost_host` fixture."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self._scenarios: dict[Path, Scenario] = {}
        self._hosts: dict[HostKey, SimHost] = {}
        # What a pytest_bifrost_plant_started hook wrote, put back after every reset (see hookspecs).
        self._baselines: dict[HostKey, dict[str, Value]] = {}

    @property
    def hosts(self) -> dict[HostKey, SimHost]:
        """The running hosts by (scenario, seed, clock)."""
        return dict(self._hosts)

    def resolve(self, ref: str | os.PathLike[str], base: Path | None = None) -> Path:
        """The scenario file a `bifrost_scenario` mark (a stem or a path) names."""
        try:
            return resolve_scenario(
                ref, scenarios_dir=self.settings.scenarios_dir, base=base or self.config.invocation_params.dir
            )
        except ScenarioNotFound as exc:
            problem = str(exc)
        _fail(problem)

    def seeded(self, scenario: Scenario) -> Scenario:
        """The scenario under --bifrost-seed, if given."""
        seed = self.settings.seed
        return scenario if seed is None else scenario.model_copy(update={"seed": seed})

    def scenario(self, path: Path) -> Scenario:
        """The scenario file, loaded once per session (and seeded by --bifrost-seed); its problems fail
        the test that needs it."""
        found = self._scenarios.get(path)
        if found is None:
            from simulators import load_scenario

            problems: list[str] = []
            try:
                loaded = load_scenario(path)
            except ConfigError as exc:
                problems = exc.problems
            if problems:
                _fail(f"scenario {path} has problems:\n" + "\n".join(problems))
            found = self._scenarios[path] = self.seeded(loaded)
        return found

    def host(self, ref: str | os.PathLike[str], base: Path | None = None) -> SimHost:
        """The running host of a scenario (a stem or a path), started on first use. Not reset: the
        `bifrost_plant` fixture resets before each test."""
        path = self.resolve(ref, base)
        return self.host_for(self.scenario(path), str(path))

    def host_for(self, scenario: Scenario, identity: str) -> SimHost:
        """The running host of a (seeded) scenario known by `identity`, started on first use."""
        if self.settings.real:
            pytest.skip(f"starting a simulator for {scenario.scenario!r} needs the sim target; {REAL}")
        key: HostKey = (identity, self.settings.seed, self.settings.clock)
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = self._remote(scenario) if self.settings.host_url else self._start(key, scenario)
        return host

    def _remote(self, scenario: Scenario) -> SimHost:
        """The remote `serve --control` of --bifrost-host, checked to serve this scenario. A RemoteHost has
        SimHost's surface where the plugin uses it (devices, plant, clock, faults, logs, reset)."""
        from simulators.remote import RemoteHost

        url = str(self.settings.host_url)
        try:
            remote: RemoteHost = RemoteHost(url)
        except (ConfigError, OSError) as exc:
            _fail(f"--bifrost-host {url}: {exc}")
        if remote.scenario_name != scenario.scenario:
            remote.stop()
            _fail(
                f"--bifrost-host {url} serves scenario {remote.scenario_name!r}; the test needs {scenario.scenario!r}"
            )
        return remote  # type: ignore[return-value]  # the same surface, duck-typed

    def reset(self, host: SimHost, identity: str) -> None:
        """Back to the scenario's start, then the hook's adjustments on top."""
        baseline = self._baselines.get((identity, self.settings.seed, self.settings.clock))
        if self.settings.host_url:
            host.reset()
            if baseline:
                host.plant.set_many(baseline)  # type: ignore[attr-defined]  # a RemotePlant
            return
        if baseline:
            # On the loop thread, so that no tick of a system clock sees the plant between the two.
            host.call(_reset_to, host, baseline)
        else:
            host.reset()

    def _start(self, key: HostKey, scenario: Scenario) -> SimHost:
        from simulators import SimHost

        try:
            host = SimHost(scenario, clock=self.settings.clock, any_port=True).start()
        except (ConfigError, OSError) as exc:
            problem = f"cannot start scenario {scenario.scenario!r}: {exc}"
        else:
            problem = ""
        if problem:
            _fail(problem)
        try:
            self._baselines[key] = self._run_hook(host, scenario)
        except BaseException:
            host.stop()
            raise
        return host

    def _run_hook(self, host: SimHost, scenario: Scenario) -> dict[str, Value]:
        """Call pytest_bifrost_plant_started; the tag values it changed, to put back after each reset."""
        from simulators.clock import SystemClock

        clock = host.plant.clock
        # A system clock's ticks would change values while the hook runs, and those are no part of
        # what the hook meant: hold its timers (they are skipped, not replayed, when it resumes).
        paused = isinstance(clock, SystemClock)
        if paused:
            host.call(clock.detach)
        try:
            before = host.plant.snapshot()
            self.config.hook.pytest_bifrost_plant_started(host=host, scenario=scenario)
            after = host.plant.snapshot()
        finally:
            if paused:
                host.call(clock.attach)
        return {tag: value for tag, value in after.items() if before.get(tag) != value}

    def stop_all(self) -> None:
        hosts, self._hosts = list(self._hosts.values()), {}
        errors: list[BaseException] = []
        for host in hosts:
            try:
                host.stop()
            except Exception as exc:  # stop the others before reporting
                errors.append(exc)
        if errors:
            raise errors[0]

    def __repr__(self) -> str:
        return f"<HostRegistry {self.settings.target} target, {len(self._hosts)} running>"


def _reset_to(host: SimHost, baseline: dict[str, Value]) -> None:
    host.reset()
    for tag, value in baseline.items():
        host.plant.set(tag, value)
