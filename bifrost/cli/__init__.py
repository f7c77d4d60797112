"""The `bifrost` command: talk to a PLC from the shell."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

import bifrost

app = typer.Typer(help="Bifrost: one client for Modbus, OPC UA and S7 PLCs.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print Bifrost's version and that of its Rust engine."""
    from bifrost import _native

    typer.echo(f"bifrost {bifrost.__version__} (native {_native.__version__})")


@app.command()
def schemes() -> None:
    """List the URL schemes `bifrost.connect` accepts, with their query parameters."""
    table = Table("scheme", "example", "parameters")
    for name, scheme in sorted(bifrost.known_schemes().items()):
        table.add_row(f"{name}://", scheme.example, "\n".join(p.describe() for p in scheme.params))
    Console().print(table)


@app.command()
def bridge(
    config: str = typer.Argument(..., help="The bridge's YAML file: devices to poll, sinks to publish to."),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON health line per period instead of a status line."
    ),
) -> None:
    """Poll devices and publish what changes to MQTT, Sparkplug B, AWS IoT or Azure IoT Hub, through a
    durable queue per sink (nothing is lost when the link drops). Stops on Ctrl-C or SIGTERM."""
    from bifrost.cli.bridge import run_bridge  # the cloud stack only for the command that needs it

    run_bridge(config, as_json=as_json)


def main() -> None:
    app()
