"""`bifrost-sim`: serve, validate and inspect scenarios."""

from __future__ import annotations

from pathlib import Path

import typer

from bifrost.errors import ConfigError
from simulators.proxy import command as proxy_command
from simulators.scenario import json_schema, load_scenario
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


def main() -> None:
    app()
