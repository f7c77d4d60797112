"""`bifrost probe`: one register block read once and shown as every type and byte order, so a register
of unknown format can be recognised (and, with --expect, the readings that give a known value)."""

from __future__ import annotations

import json
import math
from typing import Annotated

import typer
from rich.table import Table

from bifrost.cli import common
from bifrost.cli.common import EngineOption, JsonOption, TimeoutOption
from bifrost.errors import EncodeError
from bifrost.modbus.address import Area, parse_address
from bifrost.tags import ByteOrder, DataType, Quality
from bifrost.values import WireFormat

HELP = """Show one register block as every type and byte order, with scale guesses.

Types int16..float64 in ABCD, BADC, CDAB and DCBA order; --expect VALUE keeps the readings that match it.

Examples:

  bifrost probe modbus://127.0.0.1:5020 hr:0

  bifrost probe modbus://127.0.0.1:5020 hr:0 --expect 40.0 --json
"""

TYPES = (
    DataType.INT16,
    DataType.UINT16,
    DataType.INT32,
    DataType.UINT32,
    DataType.FLOAT32,
    DataType.INT64,
    DataType.UINT64,
    DataType.FLOAT64,
)
SCALES = (1.0, 0.1, 0.01, 0.001, 10.0)
_TINY = 1e-30


def readings(words: list[int]) -> list[dict[str, object]]:
    """Every (type, byte order, scale) reading of the registers from the first one on."""
    out: list[dict[str, object]] = []
    for dtype in TYPES:
        fmt_words = WireFormat(dtype).words
        if fmt_words > len(words):
            continue
        orders = (ByteOrder.ABCD, ByteOrder.BADC) if fmt_words == 1 else tuple(ByteOrder)
        for order in orders:
            try:
                raw = WireFormat(dtype, order).decode(words[:fmt_words])
            except (EncodeError, ValueError):
                continue
            assert isinstance(raw, (int, float))
            for scale in SCALES if not dtype.is_float else (1.0,):
                value = raw * scale
                if isinstance(value, float) and (not math.isfinite(value) or 0 < abs(value) < _TINY):
                    continue  # NaN, infinities and denormals are no one's reading
                out.append({"type": dtype.value, "byte_order": order.value, "scale": scale, "value": value})
    return out


def matches(reading: dict[str, object], expected: float) -> bool:
    value = reading["value"]
    assert isinstance(value, (int, float))
    return math.isclose(value, expected, rel_tol=1e-4, abs_tol=1e-6)


def probe(
    url: Annotated[str, typer.Argument(help="A Modbus device URL.")],
    address: Annotated[str, typer.Argument(help="The first register: hr:10 or ir:4.")],
    expect: Annotated[float | None, typer.Option("--expect", help="Show only readings equal to this value.")] = None,
    engine: EngineOption = None,
    timeout: TimeoutOption = "3s",
    as_json: JsonOption = False,
) -> None:
    if not url.lower().startswith("modbus"):
        common.fail(f"{url}: probe reads Modbus registers; give a modbus:// URL")
    start = parse_address(address)
    if start.area not in (Area.HOLDING_REGISTER, Area.INPUT_REGISTER) or start.bit is not None:
        common.fail(f"{address!r}: probe reads registers: give hr:N or ir:N")
    limit = common.seconds(timeout, "--timeout")
    names = [
        f"{start.area.value}:{start.offset + index}:uint16" for index in range(4) if start.offset + index <= 0xFFFF
    ]

    async def main() -> list[int]:
        async with common.connect(url, None, engine, limit) as plc:
            points = await plc.read_many(names)
        words = []
        for name in names:
            point = points[name]
            if point.quality is not Quality.GOOD or not isinstance(point.value, int):
                break  # the block ends at the first register the device does not serve
            words.append(point.value)
        return words

    words = common.run(main)
    if not words:
        common.fail(f"{address}: the device serves no register there", common.EXIT_DEVICE)
    found = readings(words)
    if expect is not None:
        found = [reading for reading in found if matches(reading, expect)]
    if as_json:
        typer.echo(json.dumps({"address": address, "words": words, "readings": found}))
    else:
        table = Table(
            "type", "byte order", "scale", "value", title=f"{address}: " + " ".join(f"{w:04X}" for w in words)
        )
        for reading in found:
            table.add_row(
                str(reading["type"]), str(reading["byte_order"]), f"{reading['scale']:g}", f"{reading['value']:.10g}"
            )
        common.console().print(table)
    if expect is not None and not found:
        common.fail(f"no reading of {address} gives {expect:g}", common.EXIT_DEVICE)


def register(app: typer.Typer) -> None:
    app.command(help=HELP)(common.guarded(probe))
