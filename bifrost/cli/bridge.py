"""`bifrost bridge CONFIG`: run the edge gateway job with a rich status line or JSON health lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

import typer

from bifrost.errors import ConfigError


def _status(health: dict[str, Any]) -> str:
    parts = []
    for name, sink in health["sinks"].items():
        link = "[green]up[/]" if sink["connected"] else "[red]down[/]"
        parts.append(f"{name} {link} queued {sink['queued']} sent {sink['sent']}")
    for name, device in health["devices"].items():
        parts.append(
            f"{name} {'[green]polling[/]' if device['connected'] else '[red]offline[/]'} {device['changes']} changes"
        )
    errors = [s["last_error"] for s in health["sinks"].values() if s.get("last_error")]
    errors += [d["last_error"] for d in health["devices"].values() if d.get("last_error")]
    if errors:
        parts.append(f"last error: {errors[-1]}")
    return " | ".join(parts)


def register(app: typer.Typer) -> None:
    @app.command("bridge")
    def bridge(
        config: str = typer.Argument(..., help="The bridge's YAML file: devices to poll, sinks to publish to."),
        as_json: bool = typer.Option(
            False, "--json", help="Print one JSON health line per period instead of a status line."
        ),
    ) -> None:
        """Poll devices and publish what changes to MQTT, Sparkplug B, AWS IoT or Azure IoT Hub, through a
        durable queue per sink (nothing is lost when the link drops). Stops on Ctrl-C or SIGTERM."""
        run_bridge(config, as_json=as_json)


def run_bridge(config_path: str, *, as_json: bool) -> None:
    from bifrost.cloud.bridge import Bridge, load_bridge_config

    try:
        config, base = load_bridge_config(config_path)
        job = Bridge(config, base)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"{config_path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None

    if as_json:

        def show(health: dict[str, Any]) -> None:
            sys.stdout.write(json.dumps(health) + "\n")
            sys.stdout.flush()

        asyncio.run(_run(job, show))
        return

    from rich.console import Console
    from rich.live import Live

    console = Console()
    with Live("starting", console=console, refresh_per_second=4, transient=False) as live:
        asyncio.run(_run(job, lambda health: live.update(_status(health))))


async def _run(job: Any, show: Any) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(job.run(show))
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    # A clean stop: the sinks said goodbye (Sparkplug NDEATH) and closed their queues.
    with contextlib.suppress(asyncio.CancelledError):
        await task
