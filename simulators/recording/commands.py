"""The `bifrost-sim` commands of record and replay: import, diff, replay (registered in simulators/cli.py)."""

from __future__ import annotations

import io
from pathlib import Path

import typer

from bifrost.errors import ConfigError
from simulators.recording.pcap import CaptureError


def import_command(
    capture: Path = typer.Argument(..., help="A pcap or pcapng file."),  # noqa: B008 - typer's idiom
    output: Path = typer.Option(..., "-o", "--output", help="The cassette to write (JSONL)."),  # noqa: B008
    framing: str = typer.Option("auto", help="auto | mbap (Modbus/TCP) | rtu (RTU over TCP) | s7 (S7comm)."),
    port: list[int] = typer.Option(  # noqa: B008
        [], "--port", help="Only connections to this server port (repeatable; default: every port)."
    ),
    device: str | None = typer.Option(None, help="Name the device (default: the server's HOST:PORT)."),
) -> None:
    """Import the exchanges of a capture (Modbus/TCP, RTU over TCP, S7) into a cassette, on any port.

    Prints what was imported and what could not be paired. Exits 0 when something was imported, 1 when
    nothing was, 2 when the capture cannot be read.
    """
    from simulators.recording.importer import import_capture

    try:
        cassette, report = import_capture(capture, framing=framing, device=device, ports=port)
    except (CaptureError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:  # a --framing no protocol has
        typer.echo(f"error: --framing: {exc}", err=True)
        raise typer.Exit(2) from None
    cassette.save(output)
    for line in report.lines():
        typer.echo(line)
    typer.echo(f"wrote {len(cassette)} exchange(s) to {output}")
    if not cassette.entries:
        raise typer.Exit(1)


def diff_command(
    a: Path = typer.Argument(..., help="The reference cassette."),  # noqa: B008
    b: Path = typer.Argument(..., help="The cassette to compare with it."),  # noqa: B008
    tolerance: str = typer.Option("100ms", help="Timing differences up to this are equal (250ms, 1s, ...)."),
    compare_time: bool = typer.Option(False, "--time", help="Also compare when each request came (t)."),
    ignore_timing: bool = typer.Option(False, "--no-timing", help="Compare answers only."),
) -> None:
    """List the exchanges of two cassettes that differ: answers, exceptions, timing beyond a tolerance.

    Exits 0 when none differ, 1 when some do, 2 when a cassette cannot be read.
    """
    from simulators.faults.spec import parse_duration
    from simulators.recording.cassette import load_cassette
    from simulators.recording.diff import diff_cassettes

    try:
        seconds = parse_duration(tolerance, "--tolerance")
        first, second = load_cassette(a), load_cassette(b)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    differences = diff_cassettes(
        first, second, tolerance=seconds, compare_time=compare_time, ignore_timing=ignore_timing
    )
    for difference in differences:
        typer.echo(difference.describe())
    if differences:
        typer.echo(f"{len(differences)} difference(s) between {a} ({len(first)}) and {b} ({len(second)})", err=True)
        raise typer.Exit(1)
    typer.echo(f"no differences: {len(first)} exchange(s) in {a}, {len(second)} in {b}")


def record_command(
    target: str = typer.Option(..., help="HOST:PORT of the device to record."),
    output: Path = typer.Option(..., "-o", "--output", help="The cassette to write (JSONL)."),  # noqa: B008
    listen: str = typer.Option("127.0.0.1:1502", help="HOST:PORT clients connect to; port 0 picks a free one."),
    device: str | None = typer.Option(None, help="The device name in the cassette (default: the target's HOST:PORT)."),
    append: bool = typer.Option(False, "--append", help="Add to the cassette instead of replacing it."),
    rtu: bool = typer.Option(False, "--rtu", help="The traffic is RTU frames over TCP, not Modbus TCP."),
    protocol: str = typer.Option("modbus", help="modbus | s7 | opcua: the device's protocol."),
) -> None:
    """Record a device: `proxy --record` without faults. Clients connect to --listen; every exchange
    goes to the cassette as it completes. Prints `listening on HOST:PORT`; Ctrl-C or SIGTERM stops."""
    import asyncio

    from simulators.proxy import run

    try:
        asyncio.run(
            run(
                listen=listen,
                target=target,
                faults=[],
                scenario=None,
                seed=None,
                log_file=None,
                rtu=rtu,
                out=_FirstLine(),  # type: ignore[arg-type]  # a text stream, as IO[str] is
                record=output,
                record_device=device,
                append=append,
                protocol=protocol,
            )
        )
    except (ConfigError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from None
    except KeyboardInterrupt:
        pass


class _FirstLine(io.TextIOBase):
    """The proxy's output, less its per-exchange lines: `record` says where it listens and stays quiet."""

    def write(self, text: str) -> int:
        if text.startswith("listening on"):
            typer.echo(text.rstrip("\n"))
        return len(text)

    def flush(self) -> None:
        import sys

        sys.stdout.flush()


def replay_command(
    cassette: Path = typer.Argument(..., help="The cassette to serve."),  # noqa: B008
    device: str | None = typer.Option(None, help="The cassette's device to serve (default: the only one)."),
    mode: str = typer.Option("request", help="strict | request | image (see docs/replay.md)."),
    timing: str = typer.Option("fast", help="fast | recorded (answer after each recorded delay)."),
    speed: float = typer.Option(1.0, help="With --timing recorded: delays are divided by this."),
    unknown: str = typer.Option(
        "default",
        help="The code a request the cassette cannot answer gets: default (Modbus exception 2, S7 item code 0x0A, "
        "OPC UA BadNodeIdUnknown or in strict mode BadUnexpectedError), a number (0x.. allowed), an OPC UA Bad "
        "status name, or none: silence.",
    ),
    listen: str = typer.Option("127.0.0.1:0", help="HOST:PORT to listen on; port 0 picks a free one."),
    transport: str = typer.Option("tcp", help="tcp | rtu+tcp | rtu (a pseudo-terminal)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line of the device URLs, and nothing else."),
) -> None:
    """Serve a cassette as a virtual PLC until Ctrl-C or SIGTERM: each request gets its recorded answer.

    Prints the device's URL. At the end, lists the requests the cassette could not answer. Exits 0
    when stopped, 1 when the cassette or the options are wrong.
    """
    import json
    import signal
    import sys
    import threading

    from simulators.host import SimHost
    from simulators.recording.serve import misses, replay_scenario

    try:
        code: int | str | None = None if unknown.lower() == "none" else unknown if unknown == "default" else None
        if unknown.startswith("Bad"):
            code = unknown  # an OPC UA status name
        elif unknown.lower() not in ("none", "default"):
            code = int(unknown, 16) if unknown.lower().startswith("0x") else int(unknown)
        scenario = replay_scenario(
            cassette,
            device=device,
            mode=mode,
            timing=timing,
            speed=speed,
            unknown=code,
            listen=listen,
            transport=transport,
        )
        host = SimHost(scenario).start()
    except ValueError as exc:  # ConfigError is one; int("x") too
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        if as_json:
            devices = {name: {"protocol": d.protocol, "url": d.url} for name, d in host.devices.items()}
            sys.stdout.write(json.dumps({"devices": devices}) + "\n")
        else:
            for name, served in host.devices.items():
                typer.echo(f"{name}: {served.url} (replaying {cassette}, mode {mode}, timing {timing})")
            typer.echo("Ctrl-C or SIGTERM stops.")
        sys.stdout.flush()
        stop.wait()
    finally:
        host.stop()
    if not as_json:
        for miss in misses(host):
            typer.echo(f"not in the cassette: {miss.describe()}")


__all__ = ["diff_command", "import_command", "record_command", "replay_command"]
