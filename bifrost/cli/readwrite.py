"""`bifrost read` and `bifrost write`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bifrost.cli import common
from bifrost.cli.common import (
    CsvOption,
    DeviceOption,
    EngineOption,
    JsonOption,
    Output,
    TagsOption,
    TimeoutOption,
)
from bifrost.errors import ConfigError
from bifrost.tags import Quality, Value

READ_HELP = """Read tags: raw addresses or, with --tags FILE, tag names.

Examples:

  bifrost read modbus://127.0.0.1:5020 hr:0:float32 coil:0

  bifrost read modbus://127.0.0.1:5020 tank.level pump.run --tags scenarios/water_tank.yaml --json
"""

WRITE_HELP = """Write tags: TAG=VALUE, typed by the tag or the address.

Examples:

  bifrost write modbus://127.0.0.1:5020 coil:0=true hr:10:float32=12.5 --verify

  bifrost write modbus://127.0.0.1:5020 valve.open=80 --tags scenarios/water_tank.yaml --dry-run
"""


def read(
    url: Annotated[str, typer.Argument(help="The device: modbus://host:port?unit=1, opc.tcp://..., s7://...")],
    tags: Annotated[list[str], typer.Argument(help="Tag names or raw addresses (hr:0:float32, coil:3, ...).")],
    tag_file: TagsOption = None,
    device: DeviceOption = None,
    engine: EngineOption = None,
    timeout: TimeoutOption = "3s",
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
) -> None:
    output = common.output_of(as_json, as_csv)
    tag_map = common.tag_map(tag_file, device, url)
    limit = common.seconds(timeout, "--timeout")

    async def main() -> bool:
        async with common.connect(url, tag_map, engine, limit) as plc:
            units = {name: tag.unit if (tag := plc.tags.get(name)) else None for name in tags}
            points = await plc.read_many(tags)
        common.print_points(points, output, units)
        return all(point.quality is Quality.GOOD for point in points.values())

    if not common.run(main):
        raise typer.Exit(common.EXIT_DEVICE)  # a value the device refused came back Bad


def write(
    url: Annotated[str, typer.Argument(help="The device URL.")],
    assignments: Annotated[list[str], typer.Argument(help="TAG=VALUE ... (hr:10:float32=1.5, pump.run=true)")],
    tag_file: TagsOption = None,
    device: DeviceOption = None,
    engine: EngineOption = None,
    timeout: TimeoutOption = "3s",
    verify: Annotated[bool, typer.Option("--verify", help="Read each tag back and check it holds the value.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the encoded requests; send nothing (not even a connect).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    tag_map = common.tag_map(tag_file, device, url)
    limit = common.seconds(timeout, "--timeout")
    pairs = [common.split_assignment(text) for text in assignments] if assignments else []
    if not pairs:
        common.fail("give at least one TAG=VALUE")

    async def main() -> list[str]:
        plc = common.connect(url, tag_map, engine, limit)
        values: dict[str, Value] = {tag: common.value_for(plc, tag, text) for tag, text in pairs}
        if dry_run:
            for tag, value in values.items():
                for line in plc.preview_write(tag, value):
                    typer.echo(json.dumps({"tag": tag, "value": value, "request": line}) if as_json else line)
            return []
        mismatches = []
        async with plc:
            await plc.write_many(values)
            if verify:
                back = await plc.read_many(list(values))
                for tag, value in values.items():
                    read_back = back[tag].value
                    same = read_back == value or (
                        isinstance(value, float)
                        and isinstance(read_back, float)
                        and abs(read_back - value) <= 1e-6 * max(1.0, abs(value))
                    )
                    if not same:
                        mismatches.append(f"{tag}: wrote {value!r}, read back {read_back!r}")
        for tag, value in values.items():
            shown = {
                "tag": tag,
                "value": value,
                "verified": verify and not any(m.startswith(f"{tag}:") for m in mismatches),
            }
            typer.echo(
                json.dumps(shown) if as_json else f"{tag} = {value!r}" + ("  (verified)" if shown["verified"] else "")
            )
        return mismatches

    try:
        mismatches = common.run(main)
    except ConfigError as exc:  # pragma: no cover - run() turns these into exit 2
        common.fail(str(exc))
    if mismatches:
        common.fail("; ".join(mismatches), common.EXIT_DEVICE)


def register(app: typer.Typer) -> None:
    app.command(help=READ_HELP)(common.guarded(read))
    app.command(help=WRITE_HELP)(common.guarded(write))


__all__ = ["Output", "read", "register", "write"]
