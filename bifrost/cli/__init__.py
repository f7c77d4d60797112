"""The `bifrost` command: talk to a PLC from the shell.

Each command lives in its own module and registers itself on `app`: readwrite (read, write), monitor,
scan, probe, discover, bridge. They all go through `bifrost.connect` and the Connection API, as a program would.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

import bifrost
from bifrost.cli import bridge, discover, monitor, probe, readwrite, scan

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
    # A URL or a parameter list has few spaces to wrap at: fold it across lines rather than cut it with
    # an ellipsis, so that a narrow or piped output (80 columns) still shows each one whole.
    for column in table.columns[1:]:
        column.overflow = "fold"
    for name, scheme in sorted(bifrost.known_schemes().items()):
        table.add_row(f"{name}://", scheme.example, "\n".join(p.describe() for p in scheme.params))
    Console().print(table)


for _module in (readwrite, monitor, scan, probe, discover, bridge):
    _module.register(app)


def main() -> None:
    app()
