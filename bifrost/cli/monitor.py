"""`bifrost monitor`: a live table of tags through `subscribe()`, CSV appended as it runs, a summary on Ctrl-C."""

from __future__ import annotations

import contextlib
import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from bifrost.cli import common
from bifrost.cli.common import DeviceOption, EngineOption, JsonOption, TagsOption, TimeoutOption
from bifrost.errors import BifrostError
from bifrost.tags import DataPoint, Quality

HELP = """Watch tags change: a live table with a sparkline, quality and age per tag; Ctrl-C prints a summary.

Appends each change to --csv FILE as it runs; the summary counts changes, errors and min/max per tag.

Examples:

  bifrost monitor modbus://127.0.0.1:5020 hr:0:float32 --interval 500ms

  bifrost monitor modbus://127.0.0.1:5020 tank.level --tags scenarios/water_tank.yaml --deadband 0.5 --csv l.csv
"""

_BARS = "▁▂▃▄▅▆▇█"
_HISTORY = 40


@dataclass
class TagStats:
    changes: int = 0
    errors: int = 0
    last: DataPoint | None = None
    low: float | None = None
    high: float | None = None
    history: list[float] = field(default_factory=list)

    def add(self, point: DataPoint) -> None:
        self.changes += 1
        self.last = point
        if point.quality is not Quality.GOOD:
            self.errors += 1
            return
        value = point.value
        if isinstance(value, (int, float)):
            number = float(value)
            self.low = number if self.low is None else min(self.low, number)
            self.high = number if self.high is None else max(self.high, number)
            self.history = [*self.history[-(_HISTORY - 1) :], number]

    def sparkline(self) -> str:
        if not self.history:
            return ""
        low, high = min(self.history), max(self.history)
        span = high - low
        return "".join(
            _BARS[0 if span == 0 else round((value - low) / span * (len(_BARS) - 1))] for value in self.history
        )


@dataclass
class Monitor:
    tags: list[str]
    stats: dict[str, TagStats] = field(default_factory=dict)
    batches: int = 0
    failures: int = 0
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.stats = {tag: TagStats() for tag in self.tags}

    def table(self) -> Table:
        table = Table("tag", "value", "trend", "quality", "age", "changes", "min", "max", title=self._title())
        now = time.time()
        for tag, stats in self.stats.items():
            point = stats.last
            value = "—" if point is None or point.value is None else str(point.value)
            quality = "" if point is None else point.quality.value
            age = "" if point is None else f"{max(0.0, now - point.timestamp):.1f}s"
            table.add_row(
                tag, value, stats.sparkline(), quality, age, str(stats.changes), _number(stats.low), _number(stats.high)
            )
        return table

    def _title(self) -> str:
        title = f"{self.batches} batch(es) in {time.monotonic() - self.started:.0f}s"
        return title + (f" — last error: {self.last_error}" if self.last_error else "")

    def summary(self) -> dict[str, Any]:
        return {
            "summary": {
                "batches": self.batches,
                "failures": self.failures,
                "seconds": round(time.monotonic() - self.started, 3),
                "tags": {
                    tag: {"changes": stats.changes, "errors": stats.errors, "min": stats.low, "max": stats.high}
                    for tag, stats in self.stats.items()
                },
            }
        }


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def monitor(
    url: Annotated[str, typer.Argument(help="The device URL.")],
    tags: Annotated[list[str], typer.Argument(help="Tag names or raw addresses.")],
    interval: Annotated[str, typer.Option("--interval", help="How often to poll: 500ms, 2s, ...")] = "1s",
    deadband: Annotated[float, typer.Option("--deadband", help="Ignore numeric changes up to this size.")] = 0.0,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Append every change to this CSV file.")] = None,
    count: Annotated[int, typer.Option("--count", help="Stop after this many batches (0: until Ctrl-C).")] = 0,
    tag_file: TagsOption = None,
    device: DeviceOption = None,
    engine: EngineOption = None,
    timeout: TimeoutOption = "3s",
    as_json: JsonOption = False,
) -> None:
    tag_map = common.tag_map(tag_file, device, url)
    period = common.seconds(interval, "--interval")
    limit = common.seconds(timeout, "--timeout")
    if deadband < 0:
        common.fail(f"--deadband {deadband}: expected zero or more")
    state = Monitor(list(dict.fromkeys(tags)))
    live_view = not as_json and common.console().is_terminal

    async def main() -> None:
        with contextlib.ExitStack() as stack:
            sink = _csv_sink(stack, csv_file)
            live = (
                stack.enter_context(Live(state.table(), console=common.console(), refresh_per_second=4))
                if live_view
                else None
            )
            async with common.connect(url, tag_map, engine, limit) as plc:
                while True:
                    try:
                        async for batch in plc.subscribe(state.tags, interval=period, deadband=deadband):
                            state.batches += 1
                            for name, point in batch.items():
                                state.stats[name].add(point)
                                record = common.point_record(name, point)
                                if sink is not None:
                                    sink.writerow(record)
                                if as_json:
                                    typer.echo(json.dumps(record))
                            if live is not None:
                                live.update(state.table())
                            if count and state.batches >= count:
                                return
                    except BifrostError as exc:  # a lost device: shown, and polled again
                        state.failures += 1
                        state.last_error = str(exc)
                        if not as_json and live is None:
                            typer.echo(f"error: {exc}", err=True)

    interrupted = False
    try:
        common.run(main)
    except KeyboardInterrupt:  # Ctrl-C (SIGINT): the normal way to stop
        interrupted = True
    if as_json:
        typer.echo(json.dumps(state.summary()))
    else:
        console = common.console()
        console.print(state.table())
        console.print(f"{state.batches} batch(es), {state.failures} failure(s)" + (" — stopped" if interrupted else ""))


def _csv_sink(stack: contextlib.ExitStack, path: Path | None) -> Any:
    if path is None:
        return None
    new = not path.exists() or path.stat().st_size == 0
    handle: IO[str] = stack.enter_context(path.open("a", newline="", buffering=1))
    writer = csv.DictWriter(handle, ["tag", "value", "quality", "timestamp"], extrasaction="ignore")
    if new:
        writer.writeheader()
    return writer


def register(app: typer.Typer) -> None:
    app.command(help=HELP)(common.guarded(monitor))
