"""What every `bifrost` command shares: the target options, opening the connection, typed values,
output as a table, JSON lines or CSV, and exit codes.

Exit codes: 0 ok; 1 the device or the protocol failed (no answer, a refusal, a Bad value); 2 the command
was wrong (a bad URL, tag, value or option), in the library's own wording.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
import sys
from collections.abc import Callable, Coroutine, Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

import bifrost
from bifrost.durations import parse_duration
from bifrost.errors import BifrostError, ConfigError, EncodeError
from bifrost.tags import DataPoint, DataType, Tag, TagMap, Value
from bifrost.values import WireFormat

T = TypeVar("T")

EXIT_OK, EXIT_DEVICE, EXIT_USAGE = 0, 1, 2


class Output(str, Enum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


TagsOption = Annotated[
    Path | None,
    typer.Option("--tags", help="A tag file or scenario: tag names then stand for their addresses.", dir_okay=False),
]
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="Which device of the tag file (needed when it has several).")
]
EngineOption = Annotated[str | None, typer.Option("--engine", help="The engine, where a protocol has several.")]
TimeoutOption = Annotated[str, typer.Option("--timeout", help="Per call: 3s, 500ms, or seconds.")]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line (for scripts).")]
CsvOption = Annotated[bool, typer.Option("--csv", help="CSV with a header line.")]


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def seconds(text: str, option: str) -> float:
    try:
        value = parse_duration(text, bare_text=True)
    except ValueError as exc:
        fail(f"{option} {text!r}: {exc}")
    if value <= 0:
        fail(f"{option} {text!r}: expected more than zero")
    return value


def output_of(as_json: bool, as_csv: bool) -> Output:
    if as_json and as_csv:
        fail("--json and --csv: choose one")
    return Output.JSON if as_json else Output.CSV if as_csv else Output.TABLE


_SCHEME_PROTOCOL = {"modbus": "modbus", "opc.tcp": "opcua", "s7": "s7"}


def _protocol_of(url: str | None) -> str | None:
    """The scenario protocol a URL speaks: modbus+rtu://... is modbus, opc.tcp://... is opcua."""
    scheme = url.split("://", 1)[0].lower() if url and "://" in url else ""
    return _SCHEME_PROTOCOL.get(scheme.split("+", 1)[0])


def tag_map(tags: Path | None, device: str | None, url: str | None = None) -> TagMap | None:
    """The tag database of `--tags FILE --device NAME` (a file with one device needs no --device, nor
    one with a single device of the URL's protocol: water_tank's plc1 for a modbus:// URL)."""
    if tags is None:
        if device is not None:
            fail("--device needs --tags FILE")
        return None
    if device is None:
        from bifrost._yaml import load_yaml

        devices = load_yaml(tags).data.get("devices") if tags.is_file() else None
        names = list(devices) if isinstance(devices, dict) else []
        protocol = _protocol_of(url)
        if len(names) > 1 and protocol is not None and isinstance(devices, dict):
            of_url = [n for n in names if isinstance(devices[n], dict) and devices[n].get("protocol") == protocol]
            names = of_url if len(of_url) == 1 else names
        if len(names) != 1:
            fail(f"{tags}: --device is needed to choose one of: {', '.join(map(str, names)) or '(no devices)'}")
        device = str(names[0])
    return TagMap.from_scenario(tags, device=device)


def connect(url: str, tags: TagMap | None, engine: str | None, timeout: float) -> bifrost.Connection:
    """`bifrost.connect` as the library offers it: the command line has no other way in."""
    return bifrost.connect(url, tags=tags, timeout=timeout, engine=engine)


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine; the library's errors become messages and exit codes."""
    try:
        return asyncio.run(main())
    except (ConfigError, EncodeError) as exc:
        fail(str(exc), EXIT_USAGE)
    except BifrostError as exc:
        fail(str(exc), EXIT_DEVICE)
    except ImportError as exc:  # a protocol whose extra is not installed names the extra
        fail(str(exc), EXIT_USAGE)


def guarded(command: Callable[..., T]) -> Callable[..., T]:
    """Library errors raised outside `run` (while parsing a tag file, say) as messages and exit codes."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return command(*args, **kwargs)
        except (ConfigError, EncodeError) as exc:
            fail(str(exc), EXIT_USAGE)
        except BifrostError as exc:
            fail(str(exc), EXIT_DEVICE)

    return wrapper


# --- values -------------------------------------------------------------------------------------------

_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}


def parse_value(text: str, tag: Tag) -> Value:
    """`text` typed by the tag (bool: true/false/1/0/on/off; integers also 0x..; floats; strings as
    written). The range is the codec's to check, when the value is encoded."""
    dtype = tag.type
    try:
        if dtype is DataType.BOOL:
            lowered = text.strip().lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise ValueError
        if dtype.is_integer:
            return int(text.strip(), 0)
        if dtype.is_float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{tag.name}: {text!r} is not a {tag.type_name} value") from None
    return text


def checked_value(text: str, tag: Tag) -> Value:
    """`text` typed by the tag and checked by the value codec, before anything is sent: a value the tag
    cannot hold is refused with the codec's words, naming the tag."""
    value = parse_value(text, tag)
    try:
        WireFormat(tag.type, length=tag.length or 0, scale=tag.scale, offset=tag.offset).encode(value)
    except (EncodeError, OverflowError) as exc:
        raise EncodeError(f"{tag.name}: {exc}") from None
    return value


def value_for(plc: bifrost.Connection, tag: str, text: str) -> Value:
    """The value to write: typed by what the connection knows of the tag or address, else (a raw OPC UA
    NodeId, whose type only the server knows) read as a literal that the connection converts."""
    try:
        known = plc.describe(tag)
    except ConfigError:
        if plc.tags.get(tag) is not None or not plc.url.startswith("opc.tcp"):
            raise
        return literal(text)
    return checked_value(text, known)


def literal(text: str) -> Value:
    """`true`/`false`, a whole number, a number, or the text itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def split_assignment(text: str) -> tuple[str, str]:
    # At the last "=": an OPC UA NodeId holds some (ns=2;s=Tank.Level=40.5).
    tag, sep, value = text.rpartition("=")
    if not sep or not tag:
        raise ConfigError(f"{text!r}: expected TAG=VALUE, such as hr:10:float32=1.5 or pump.run=true")
    return tag.strip(), value


# --- output -------------------------------------------------------------------------------------------


def point_record(name: str, point: DataPoint, unit: str | None = None) -> dict[str, Any]:
    return {
        "tag": name,
        "value": point.value,
        "quality": point.quality.value,
        "timestamp": point.timestamp,
        **({"unit": unit} if unit else {}),
    }


def print_points(points: Mapping[str, DataPoint], output: Output, units: Mapping[str, str | None]) -> None:
    records = [point_record(name, point, units.get(name)) for name, point in points.items()]
    if output is Output.JSON:
        for record in records:
            typer.echo(json.dumps(record))
    elif output is Output.CSV:
        typer.echo(csv_text(records, ["tag", "value", "quality", "timestamp", "unit"]), nl=False)
    else:
        table = Table("tag", "value", "unit", "quality", "time")
        for name, point in points.items():
            shown = (
                "—" if point.value is None else repr(point.value) if isinstance(point.value, str) else str(point.value)
            )
            table.add_row(
                name, shown, units.get(name) or "", point.quality.value, point.datetime.strftime("%H:%M:%S.%f")[:-3]
            )
        console().print(table)


def csv_text(records: Iterable[Mapping[str, Any]], columns: list[str], header: bool = True) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def console() -> Console:
    # A table piped to a file keeps its width rather than being cut at 80 columns.
    return Console(width=None if sys.stdout.isatty() else 200)
