"""`bifrost scan`: what an unknown device serves, found through the Connection API and written as a
draft tag file (a scenario: `bifrost.connect(tags=...)` reads it, `bifrost-sim serve` serves it).

Modbus: which units answer (a read of hr:0; any answer, even an exception, is a unit, but exception 0x0B
"gateway target failed to respond" and silence are not), then which blocks of each area are mapped:
each block is read through `read_many`, whose planner bisects a request the device refuses with
exception 2 and remembers the hole, so the addresses that come back Good are the mapped ones. Bounded by
`--max-requests`; progress is shown on a terminal.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import typer
import yaml
from rich.progress import Progress

from bifrost import errors
from bifrost.cli import common
from bifrost.cli.common import EngineOption, JsonOption, TimeoutOption
from bifrost.errors import ConfigError, ConnectError, DeviceError
from bifrost.modbus.address import Area
from bifrost.modbus.pdu import ExceptionCode
from bifrost.tags import Quality

HELP = """Find what a device serves and write it as a draft tag file.

Modbus: the units that answer, then the mapped blocks of each area (0..999 unless --range says otherwise).
OPC UA: the browse tree below Objects, every Variable read once. S7: the CPU's identity, state and data blocks.

Examples:

  bifrost scan modbus://127.0.0.1:5020 --units 1-3

  bifrost scan modbus://127.0.0.1:5020 --range hr:0-199 --range coil:0-63 --write-tags plc.yaml --json

  bifrost scan opc.tcp://127.0.0.1:4840/bifrost --write-tags hmi.yaml

  bifrost scan s7://127.0.0.1:1102?rack=0&slot=1 --dbs 1-20
"""

_AREAS = (Area.COIL, Area.DISCRETE_INPUT, Area.INPUT_REGISTER, Area.HOLDING_REGISTER)
_BLOCK = {Area.COIL: 2000, Area.DISCRETE_INPUT: 2000, Area.INPUT_REGISTER: 125, Area.HOLDING_REGISTER: 125}
_RANGE = re.compile(r"^(coil|di|ir|hr):(\d+)-(\d+)$")
_DEFAULT_SPAN = (0, 999)


@dataclass(frozen=True)
class Block:
    """A run of mapped addresses, both ends included, with the values read."""

    unit: int
    area: Area
    first: int
    last: int
    values: tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.area.value}:{self.first}" + ("" if self.first == self.last else f"-{self.last}")


def _units(text: str) -> list[int]:
    low, sep, high = text.partition("-")
    try:
        first, last = int(low), int(high) if sep else int(low)
    except ValueError:
        raise ConfigError(f"--units {text!r}: expected a unit or a range such as 1-247") from None
    if not 0 <= first <= last <= 255:
        raise ConfigError(f"--units {text!r}: units are 0..255, low to high")
    return list(range(first, last + 1))


def _ranges(texts: list[str]) -> dict[Area, tuple[int, int]]:
    if not texts:
        return dict.fromkeys(_AREAS, _DEFAULT_SPAN)
    out: dict[Area, tuple[int, int]] = {}
    for text in texts:
        found = _RANGE.match(text.strip())
        if found is None or int(found.group(2)) > int(found.group(3)) or int(found.group(3)) > 0xFFFF:
            raise ConfigError(
                f"--range {text!r}: expected AREA:FIRST-LAST such as hr:0-199 (coil, di, ir, hr; 0..65535)"
            )
        out[Area(found.group(1))] = (int(found.group(2)), int(found.group(3)))
    return out


def with_unit(url: str, unit: int) -> str:
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key != "unit"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("unit", str(unit))])))


class Budget:
    """The requests a scan may still make; the planner's bisection may spend several per block."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise ConfigError("the scan needs more requests than --max-requests allows; narrow it with --range")


async def _unit_answers(url: str, engine: str | None, timeout: float) -> bool:
    try:
        async with common.connect(url, None, engine, timeout) as plc:
            await plc.read("hr:0")
    except errors.TimeoutError:
        return False
    except DeviceError as exc:
        return exc.code != ExceptionCode.GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND
    return True


async def _blocks(
    url: str,
    unit: int,
    spans: dict[Area, tuple[int, int]],
    engine: str | None,
    timeout: float,
    budget: Budget,
    progress: Progress | None,
) -> list[Block]:
    found: list[Block] = []
    async with common.connect(url, None, engine, timeout) as plc:
        for area, (first, last) in spans.items():
            task = progress.add_task(f"unit {unit} {area.value}", total=last - first + 1) if progress else None
            mapped: dict[int, Any] = {}
            for start in range(first, last + 1, _BLOCK[area]):
                end = min(last, start + _BLOCK[area] - 1)
                budget.spend(1)
                names = [f"{area.value}:{offset}" for offset in range(start, end + 1)]
                points = await plc.read_many(names)
                for offset, name in zip(range(start, end + 1), names, strict=True):
                    if points[name].quality is Quality.GOOD:
                        mapped[offset] = points[name].value
                if progress is not None and task is not None:
                    progress.advance(task, end - start + 1)
            found.extend(_runs(unit, area, mapped))
    return found


def _runs(unit: int, area: Area, mapped: dict[int, Any]) -> list[Block]:
    runs: list[Block] = []
    offsets = sorted(mapped)
    while offsets:
        first = last = offsets.pop(0)
        while offsets and offsets[0] == last + 1:
            last = offsets.pop(0)
        runs.append(Block(unit, area, first, last, tuple(mapped[offset] for offset in range(first, last + 1))))
    return runs


def draft_tag_file(url: str, blocks: list[Block]) -> dict[str, Any]:
    """A scenario with one tag per mapped address, typed plainly (bool or uint16), holding the value
    read, and one device per unit: edit the names and types, then use it as a tag file or a scenario."""
    parts = urlsplit(url)
    listen = f"{parts.hostname or '127.0.0.1'}:{parts.port or 502}"
    tags: dict[str, Any] = {}
    devices: dict[str, Any] = {}
    for block in blocks:
        device = devices.setdefault(
            f"u{block.unit}", {"protocol": "modbus", "listen": listen, "unit": block.unit, "map": {}}
        )
        bits = block.area in (Area.COIL, Area.DISCRETE_INPUT)
        for index, value in enumerate(block.values):
            offset = block.first + index
            name = f"u{block.unit}.{block.area.value}{offset}"
            tags[name] = {"type": "bool" if bits else "uint16", "init": value}
            device["map"][name] = f"{block.area.value}:{offset}"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return {
        "scenario": re.sub(r"[^A-Za-z0-9_-]+", "-", f"scan-{listen}"),
        "description": f"Draft tag file written by `bifrost scan {url}` on {stamp}: names and types are guesses.",
        "tags": tags,
        "devices": devices,
    }


def scan(
    url: Annotated[str, typer.Argument(help="The device URL (for Modbus, the unit in it is replaced by --units).")],
    units: Annotated[
        str | None, typer.Option("--units", help="Units to try: 1, or 1-247 (default: the URL's unit).")
    ] = None,
    ranges: Annotated[
        list[str] | None, typer.Option("--range", help="AREA:FIRST-LAST to scan, e.g. hr:0-199; repeatable.")
    ] = None,
    max_requests: Annotated[int, typer.Option("--max-requests", help="Give up past this many block reads.")] = 5000,
    write_tags: Annotated[Path | None, typer.Option("--write-tags", help="Write a draft tag file (YAML) here.")] = None,
    depth: Annotated[int, typer.Option("--depth", help="OPC UA: how many levels below Objects to browse.")] = 6,
    dbs: Annotated[str, typer.Option("--dbs", help="S7: the data block numbers to look for, e.g. 1-100.")] = "1-100",
    engine: EngineOption = None,
    timeout: TimeoutOption = "500ms",
    as_json: JsonOption = False,
) -> None:
    limit = common.seconds(timeout, "--timeout")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "opc.tcp":
        _scan_opcua(url, limit, depth, Budget(max_requests), write_tags, as_json)
        return
    if scheme == "s7":
        if write_tags is not None:
            common.fail("--write-tags: an S7 scan lists the CPU and its data blocks; their layout is not on the wire")
        _scan_s7(url, limit, dbs, Budget(max_requests), as_json)
        return
    if not scheme.startswith("modbus"):
        common.fail(f"{url}: scan knows modbus://, opc.tcp:// and s7:// devices")
    spans = _ranges(ranges or [])
    budget = Budget(max_requests)
    unit_list = _units(units) if units else [int(dict(parse_qsl(urlsplit(url).query)).get("unit", "1"))]

    async def main() -> tuple[list[int], list[Block]]:
        answering: list[int] = []
        blocks: list[Block] = []
        show = not as_json and common.console().is_terminal
        with Progress(console=common.console(), transient=True, disable=not show) as progress:
            task = progress.add_task("units", total=len(unit_list))
            for unit in unit_list:
                budget.spend(1)
                if await _unit_answers(with_unit(url, unit), engine, limit):
                    answering.append(unit)
                progress.advance(task)
            for unit in answering:
                blocks.extend(await _blocks(with_unit(url, unit), unit, spans, engine, limit, budget, progress))
        return answering, blocks

    try:
        answering, blocks = common.run(main)
    except ConnectError as exc:  # pragma: no cover - run() turns it into exit 1
        common.fail(str(exc), common.EXIT_DEVICE)
    if write_tags is not None:
        write_tags.write_text(yaml.safe_dump(draft_tag_file(url, blocks), sort_keys=False))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "units": answering,
                    "blocks": [
                        {"unit": block.unit, "area": block.area.value, "first": block.first, "last": block.last}
                        for block in blocks
                    ],
                    "tag_file": None if write_tags is None else str(write_tags),
                }
            )
        )
    else:
        typer.echo(f"units answering: {', '.join(map(str, answering)) or 'none'}")
        for block in blocks:
            typer.echo(f"  unit {block.unit}: {block} ({len(block.values)} address(es))")
        if write_tags is not None:
            typer.echo(f"draft tag file: {write_tags}")
    if not answering:
        raise typer.Exit(common.EXIT_DEVICE)


def _scan_opcua(url: str, limit: float, depth: int, budget: Budget, write_tags: Path | None, as_json: bool) -> None:
    from bifrost.cli.scan_other import scan_opcua

    found = common.run(lambda: scan_opcua(url, limit, depth, budget))
    if write_tags is not None:
        draft = {
            "scenario": re.sub(r"[^A-Za-z0-9_-]+", "-", f"scan-{found['device']['listen']}"),
            "description": f"Draft tag file written by `bifrost scan {url}`: names and types are guesses.",
            "tags": found["tags"],
            "devices": {"server": found["device"]},
        }
        write_tags.write_text(yaml.safe_dump(draft, sort_keys=False))
    if as_json:
        typer.echo(
            json.dumps({"variables": found["variables"], "tag_file": None if write_tags is None else str(write_tags)})
        )
    else:
        for item in found["variables"]:
            typer.echo(f"  {item['path']}  {item['node']}")
        typer.echo(f"{len(found['variables'])} variable(s)" + (f"; draft tag file: {write_tags}" if write_tags else ""))
    if not found["variables"]:
        raise typer.Exit(common.EXIT_DEVICE)


def _scan_s7(url: str, limit: float, dbs: str, budget: Budget, as_json: bool) -> None:
    from bifrost.cli.scan_other import scan_s7

    first, _, last = dbs.partition("-")
    try:
        numbers = range(int(first), int(last or first) + 1)
    except ValueError:
        common.fail(f"--dbs {dbs!r}: expected a number or a range such as 1-100")
    if not numbers or numbers.start < 1 or numbers.stop > 65536:
        common.fail(f"--dbs {dbs!r}: data blocks are numbered 1..65535, low to high")
    found = common.run(lambda: scan_s7(url, limit, numbers, budget))
    if as_json:
        typer.echo(json.dumps(found))
    else:
        for key, value in found["identity"].items():
            typer.echo(f"{key}: {value}")
        typer.echo(f"state: {found['state']}")
        typer.echo(f"data blocks: {', '.join(f'DB{number}' for number in found['dbs']) or 'none'}")


def register(app: typer.Typer) -> None:
    app.command(help=HELP)(common.guarded(scan))
