"""`bifrost-sim`: serve, validate and inspect scenarios."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import typer

from bifrost.errors import ConfigError
from simulators.proxy import command as proxy_command
from simulators.recording.commands import diff_command, import_command, record_command, replay_command
from simulators.scenario import Scenario, json_schema, load_scenario
from simulators.shipped import DEFAULT_SCENARIO, shipped_scenarios

app = typer.Typer(help="Bifrost's virtual PLCs: serve scenario files on real sockets.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Keeps `bifrost-sim` a group of commands even while it has one."""


@app.command("list")
def list_shipped() -> None:
    """List the scenario files shipped with Bifrost."""
    for stem, path in shipped_scenarios().items():
        typer.echo(f"{stem}\t{path}")


@app.command("validate")
def validate(files: list[Path] = typer.Argument(..., help="Scenario files to check.")) -> None:  # noqa: B008 - typer's idiom
    """Check scenario files; print every problem as file:line:col: field: what was expected.

    Exits 0 when every file is valid, 1 otherwise.
    """
    failed = 0
    for path in files:
        try:
            load_scenario(path)
        except ConfigError as exc:
            failed += 1
            for problem in exc.problems:
                typer.echo(problem)
        else:
            typer.echo(f"{path}: ok")
    if failed:
        typer.echo(f"{failed} of {len(files)} file(s) have problems", err=True)
        raise typer.Exit(1)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of scenario files (for editors; also shipped as scenarios/scenario.schema.json)."""
    typer.echo(json_schema(), nl=False)


app.command("proxy")(proxy_command)  # the implementation lives in simulators/proxy.py
app.command("import")(import_command)  # record and replay: simulators/recording/commands.py
app.command("diff")(diff_command)
app.command("replay")(replay_command)
app.command("record")(record_command)


@app.command("serve")
def serve(
    scenario: str | None = typer.Argument(
        None, help=f"A scenario file, or the name of a shipped one (default: {DEFAULT_SCENARIO})."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON line of the devices' URLs once every device listens, and nothing else."
    ),
    clock_speed: float = typer.Option(
        1.0, "--clock-speed", help="Run plant time this many times faster than real time."
    ),
    any_port: bool = typer.Option(False, "--any-port", help="Listen on free ports instead of the scenario's."),
    host: str | None = typer.Option(None, "--host", help="Listen on this host instead of the scenario's."),
    clock: str = typer.Option(
        "system", "--clock", help="system (plant time runs with real time) or virtual (moves only when told)."
    ),
    control: str | None = typer.Option(
        None, "--control", help="Serve the control API and dashboard on HOST:PORT (127.0.0.1:0: any free port)."
    ),
    control_token: str | None = typer.Option(
        None,
        "--control-token",
        help="Require this token on every control request (needed beyond loopback).",
        envvar="BIFROST_CONTROL_TOKEN",
        show_envvar=True,
    ),
    shard: str | None = typer.Option(
        None, "--shard", help="K/N: serve the K-th of N shares of the devices (stable by device name)."
    ),
) -> None:
    """Serve a scenario's devices on real sockets until Ctrl-C or SIGTERM.

    Prints a table of devices and URLs (and, on a terminal, the tag values as they change).
    Exits 0 when stopped; 1 when the scenario has problems or a device cannot listen; 2 when there
    is no such file.
    """
    from simulators.host import SimHost  # the server stack, only for the command that serves

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not (clock_speed > 0 and math.isfinite(clock_speed)):
        _fail(f"--clock-speed must be a number above 0, not {clock_speed}", 2)
    loaded = _scenario_to_serve(scenario)
    if clock not in ("system", "virtual"):
        _fail(f"--clock must be system or virtual, not {clock!r}", 2)
    devices_served = None
    if shard is not None:
        from simulators.shards import shard_devices

        try:
            devices_served = shard_devices(loaded, shard)
        except ConfigError as exc:
            _fail(f"--shard {shard}: {exc}", 2)
    try:
        if clock == "system":  # a virtual clock moves only when told: no real-time limit
            loaded.check_speed(clock_speed)
    except ConfigError as exc:
        _fail(f"--clock-speed: {exc}", 2)
    try:
        sim = SimHost(
            loaded,
            clock="virtual" if clock == "virtual" else "system",
            speed=clock_speed,
            any_port=any_port,
            listen_host=host,
            only=devices_served,
        ).start()
    except ConfigError as exc:
        _fail("\n".join(exc.problems), 1)
    controller = None
    if control is not None:
        from simulators.control import ControlServer

        try:
            controller = ControlServer(sim, control, token=control_token, shard=shard).start()
        except (ConfigError, ImportError) as exc:
            sim.stop()
            _fail(str(exc), 2)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        if as_json:
            devices = {name: {"protocol": d.protocol, "url": d.url} for name, d in sim.devices.items()}
            line: dict[str, Any] = {"devices": devices}
            if controller is not None:
                line["control"] = controller.url
            if shard is not None:
                line["shard"] = shard
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            stop.wait()
        else:
            if controller is not None:
                typer.echo(f"control API and dashboard: {controller.url}/")
            _show(sim, stop)
    finally:
        if controller is not None:
            controller.stop()
        sim.stop()


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _scenario_to_serve(scenario: str | None) -> Scenario:
    shipped = shipped_scenarios()
    if scenario is None:
        scenario = DEFAULT_SCENARIO
    path = Path(scenario)
    if not path.exists():
        if scenario not in shipped:
            _fail(f"{scenario}: no such file, nor a shipped scenario (shipped: {', '.join(shipped)})", 2)
        path = shipped[scenario]
    try:
        return load_scenario(path)
    except ConfigError as exc:
        _fail("\n".join(exc.problems), 1)
    except OSError as exc:
        _fail(f"{path}: {exc.strerror or exc}", 2)


def _show(sim: Any, stop: threading.Event) -> None:
    """The device table; on a terminal, a live view of the tag values below it until stopped."""
    from rich.console import Console, Group
    from rich.live import Live
    from rich.table import Table

    console = Console()
    devices = Table(title=f"{sim.scenario.scenario}: serving", title_justify="left")
    for column in ("device", "protocol", "transport", "unit", "url"):
        devices.add_column(column)
    for name, device in sim.devices.items():
        devices.add_row(name, device.protocol, device.transport, str(device.unit), device.url)
    for name, why in sim.skipped.items():
        devices.add_row(name, sim.scenario.devices[name].protocol, "-", "-", f"not served: {why}")
    if sim.everywhere:
        from simulators.host import reachable_note

        devices.caption = (
            f"{', '.join(sim.everywhere)}: every interface; reachable {reachable_note(sim.listen_host or '0.0.0.0')}"
        )
        devices.caption_justify = "left"
    if not console.is_terminal:
        console.print(devices)
        console.print("Ctrl-C or SIGTERM stops.")
        sys.stdout.flush()
        stop.wait()
        return

    def view() -> Group:
        plant = sim.plant
        values = Table(title=f"plant time {plant.time:.1f} s", title_justify="left")
        for column in ("tag", "value", "unit"):
            values.add_column(column)
        for name, value in plant.snapshot().items():
            shown = f"{value:.3f}" if isinstance(value, float) else repr(value)
            values.add_row(name, shown, sim.scenario.tags[name].unit or "")
        return Group(devices, values, "Ctrl-C or SIGTERM stops.")

    with Live(view(), console=console, refresh_per_second=4) as live:
        while not stop.wait(0.25):  # the view's refresh interval
            live.update(view())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
