"""`bifrost-sim`: serve, validate and inspect scenarios."""

from __future__ import annotations

import typer

from simulators.shipped import shipped_scenarios

app = typer.Typer(help="Bifrost's virtual PLCs: serve scenario files on real sockets.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Keeps `bifrost-sim` a group of commands even while it has one."""


@app.command("list")
def list_shipped() -> None:
    """List the scenario files shipped with Bifrost."""
    for stem, path in shipped_scenarios().items():
        typer.echo(f"{stem}\t{path}")


def main() -> None:
    app()
