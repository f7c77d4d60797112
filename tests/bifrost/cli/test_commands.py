"""The `bifrost` command against real devices on 127.0.0.1: the shipped water tank served on a virtual
clock, and a pymodbus server whose map the command does not know. In-process through typer's
CliRunner, and as a subprocess where a real process matters (exit codes, SIGINT)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import bifrost
from bifrost.cli import app
from simulators import SimHost, load_scenario, shipped_scenario

WATER_TANK = str(shipped_scenario("water_tank"))
runner = CliRunner()


def bifrost_cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# --- an unknown device ------------------------------------------------------------------------------


@dataclass
class SparseDevice:
    url: str
    holding: dict[int, int]
    coils: dict[int, bool]


@pytest.fixture
def sparse_pymodbus() -> Iterator[SparseDevice]:
    """pymodbus's TCP server with holding registers 10..19 and 100..103 and coils 0..15, nothing else."""
    from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
    from pymodbus.server import ModbusTcpServer

    holding = {**{10 + i: 500 + i for i in range(10)}, **{100 + i: 7 * i for i in range(4)}}
    coils = {i: i % 3 == 1 for i in range(16)}  # pymodbus keeps coils in whole 16-bit words
    # A sparse block serves its keys as wire addresses (a sequential one would be off by one).
    device = ModbusDeviceContext(
        hr=ModbusSparseDataBlock(holding),
        co=ModbusSparseDataBlock(coils),
        # pymodbus wants every area to hold something: these sit far outside the ranges scanned.
        di=ModbusSparseDataBlock({5000: False}),
        ir=ModbusSparseDataBlock({5000: 0}),
    )
    context = ModbusServerContext(devices=device, single=True)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[Any, int]:
        server = ModbusTcpServer(context, address=("127.0.0.1", 0))
        await server.serve_forever(background=True)
        return server, server.transport.sockets[0].getsockname()[1]

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield SparseDevice(f"modbus://127.0.0.1:{port}?unit=1", holding, coils)
    finally:
        asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


# --- read ---------------------------------------------------------------------------------------------


def test_read_raw_addresses_and_tag_names_as_json(plant: SimHost) -> None:
    url = plant.url("plc1")
    code, out, _ = bifrost_cli("read", url, "hr:0:float32", "hr:6", "coil:0", "--json")
    assert code == 0
    assert [(line["tag"], line["value"], line["quality"]) for line in json_lines(out)] == [
        ("hr:0:float32", 40.0, "good"),
        ("hr:6", 50, "good"),
        ("coil:0", False, "good"),
    ]
    code, out, _ = bifrost_cli("read", url, "tank.level", "temp", "--tags", WATER_TANK, "--device", "plc1", "--json")
    assert code == 0
    lines = json_lines(out)
    assert lines[0] == {**lines[0], "tag": "tank.level", "value": 40.0, "unit": "%"}
    assert lines[1]["tag"] == "temp" and lines[1]["value"] == pytest.approx(plant.plant.get("temp"), abs=0.05)


def test_read_as_csv_and_as_a_table(plant: SimHost) -> None:
    code, out, _ = bifrost_cli("read", plant.url("plc1"), "hr:6", "di:0", "--csv")
    rows = list(csv.DictReader(out.splitlines()))
    assert code == 0 and [(row["tag"], row["value"]) for row in rows] == [("hr:6", "50"), ("di:0", "False")]
    code, out, _ = bifrost_cli("read", plant.url("plc1"), "hr:6")
    assert code == 0 and "hr:6" in out and "50" in out and "good" in out


def test_a_refused_address_reads_bad_and_exits_1(plant: SimHost) -> None:
    code, out, _ = bifrost_cli("read", plant.url("plc1"), "hr:6", "hr:100", "--json")
    assert code == 1
    assert [(line["tag"], line["quality"]) for line in json_lines(out)] == [("hr:6", "good"), ("hr:100", "bad")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["read", "modbus://127.0.0.1:1?unit=1", "hr:0", "--timeout", "nope"], "--timeout 'nope': expected a duration"),
        (["read", "mqtt://x", "hr:0"], "unknown scheme 'mqtt'"),
        (["read", "{url}", "tank.levl", "--tags", WATER_TANK], "'tank.levl' is not a tag of this connection"),
        (["read", "{url}", "hr:0", "--json", "--csv"], "--json and --csv: choose one"),
        (["read", "{url}", "hr:0", "--device", "plc1"], "--device needs --tags FILE"),
    ],
)
def test_usage_mistakes_exit_2_in_the_librarys_words(plant: SimHost, args: list[str], message: str) -> None:
    code, _, err = bifrost_cli(*[arg.replace("{url}", plant.url("plc1")) for arg in args])
    assert code == 2
    assert message in err


def test_a_device_that_is_not_there_exits_1_as_a_process(plant: SimHost) -> None:
    port = plant.url("plc1").split(":")[2].split("?")[0]
    plant.stop()
    result = subprocess.run(
        [sys.executable, "-m", "bifrost.cli", "read", f"modbus://127.0.0.1:{port}?unit=1", "hr:0", "--timeout", "1s"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot connect" in result.stderr


# --- write --------------------------------------------------------------------------------------------


def test_write_with_verify_reaches_the_plant(plant: SimHost) -> None:
    code, out, _ = bifrost_cli(
        "write", plant.url("plc1"), "pump.run=true", "valve.open=80", "--tags", WATER_TANK, "--verify", "--json"
    )
    assert code == 0
    assert json_lines(out) == [
        {"tag": "pump.run", "value": True, "verified": True},
        {"tag": "valve.open", "value": 80, "verified": True},
    ]
    assert plant.plant.get("pump.run") is True and plant.plant.get("valve.open") == 80
    assert plant.devices["plc1"].log.writes("valve.open") == [80]


def test_a_value_out_of_range_is_refused_before_the_wire(plant: SimHost) -> None:
    code, _, err = bifrost_cli("write", plant.url("plc1"), "pump.run=1", "valve.open=70000", "--tags", WATER_TANK)
    assert code == 2
    assert "valve.open: 70000 is out of range for uint16" in err
    assert plant.devices["plc1"].log.count() == 0  # nothing sent, not even the good value
    code, _, err = bifrost_cli("write", plant.url("plc1"), "coil:0=maybe")
    assert code == 2 and "coil:0: 'maybe' is not a bool value" in err


def test_dry_run_shows_the_encoded_requests_and_sends_nothing(plant: SimHost) -> None:
    code, out, _ = bifrost_cli("write", plant.url("plc1"), "hr:6=7", "hr:0:float32=5.5", "coil:0=on", "--dry-run")
    assert code == 0
    assert out.splitlines() == [
        "unit 1: write single register (6) hr:6: PDU 06 00 06 00 07",
        "unit 1: write multiple registers (16) hr:0:float32: PDU 10 00 00 00 02 04 40 b0 00 00",
        "unit 1: write single coil (5) coil:0: PDU 05 00 00 ff 00",
    ]
    assert plant.devices["plc1"].log.count() == 0


# --- monitor ------------------------------------------------------------------------------------------


def test_monitor_follows_changes_to_a_csv_file_and_sums_up(plant: SimHost, tmp_path: Path) -> None:
    log = tmp_path / "level.csv"
    code, out, _ = bifrost_cli(
        "monitor",
        plant.url("plc1"),
        "hr:6",
        "coil:0",
        "--interval",
        "20ms",
        "--count",
        "1",
        "--json",
        "--csv",
        str(log),
    )
    assert code == 0
    lines = json_lines(out)
    assert [(line["tag"], line["value"]) for line in lines[:2]] == [("hr:6", 50), ("coil:0", False)]
    summary = lines[-1]["summary"]
    assert isinstance(summary, dict) and summary["batches"] == 1
    assert summary["tags"]["hr:6"] == {"changes": 1, "errors": 0, "min": 50.0, "max": 50.0}
    assert [row["tag"] for row in csv.DictReader(log.read_text().splitlines())] == ["hr:6", "coil:0"]


def test_monitor_shows_a_change_then_stops_on_sigint_with_a_summary(plant: SimHost, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "bifrost.cli",
        "monitor",
        plant.url("plc1"),
        "hr:6",
        "--interval",
        "20ms",
        "--json",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert (first["tag"], first["value"]) == ("hr:6", 50)
        plant.plant.set("valve.open", 63)
        changed = json.loads(process.stdout.readline())  # blocks until the next change is polled
        assert (changed["tag"], changed["value"]) == ("hr:6", 63)
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    summary = json.loads(rest.splitlines()[-1])["summary"]
    assert summary["tags"]["hr:6"]["min"] == 50.0 and summary["tags"]["hr:6"]["max"] == 63.0


# --- scan ---------------------------------------------------------------------------------------------


def test_scan_finds_the_blocks_of_an_unknown_device_and_its_tag_file_reads_back(
    sparse_pymodbus: SparseDevice, tmp_path: Path
) -> None:
    draft = tmp_path / "draft.yaml"
    code, out, _ = bifrost_cli(
        "scan", sparse_pymodbus.url, "--range", "hr:0-299", "--range", "coil:0-99", "--write-tags", str(draft), "--json"
    )
    assert code == 0, out
    found = json.loads(out)
    assert found["units"] == [1]
    assert [(block["area"], block["first"], block["last"]) for block in found["blocks"]] == [
        ("hr", 10, 19),
        ("hr", 100, 103),
        ("coil", 0, 15),
    ]
    load_scenario(draft)  # a scenario the simulator accepts
    tags = bifrost.TagMap.from_scenario(draft, device="u1")
    assert len(tags) == 10 + 4 + 16

    async def read_back() -> dict[str, object]:
        async with bifrost.connect(sparse_pymodbus.url, tags=tags) as plc:
            points = await plc.read_many(list(tags))
        return {name: point.value for name, point in points.items()}

    values = asyncio.run(read_back())
    assert values == {
        **{f"u1.coil{address}": value for address, value in sparse_pymodbus.coils.items()},
        **{f"u1.hr{address}": value for address, value in sparse_pymodbus.holding.items()},
    }
    assert yaml.safe_load(draft.read_text())["devices"]["u1"]["map"]["u1.hr100"] == "hr:100"


def test_scan_of_the_simulator_finds_its_map_and_units(plant: SimHost) -> None:
    code, out, _ = bifrost_cli("scan", plant.url("plc1"), "--units", "1-3", "--range", "hr:0-99", "--json")
    assert code == 0
    found = json.loads(out)
    assert found["units"] == [1]  # units 2 and 3 get exception 0x0B (no such unit behind this address)
    assert [(block["first"], block["last"]) for block in found["blocks"]] == [(0, 1), (4, 6)]  # level, outflow, valve


def test_scan_is_bounded_in_requests(plant: SimHost) -> None:
    code, _, err = bifrost_cli("scan", plant.url("plc1"), "--range", "hr:0-9999", "--max-requests", "5")
    assert code == 2 and "--max-requests" in err


# --- probe --------------------------------------------------------------------------------------------


def test_probe_shows_which_readings_give_the_expected_value(plant: SimHost) -> None:
    code, out, _ = bifrost_cli("probe", plant.url("plc1"), "hr:0", "--expect", "40", "--json")
    assert code == 0
    found = json.loads(out)
    assert found["words"] == [0x4220, 0x0000, 0x0000, 0x0000][: len(found["words"])]
    assert {"type": "float32", "byte_order": "ABCD", "scale": 1.0, "value": 40.0} in found["readings"]
    assert all(reading["value"] == pytest.approx(40) for reading in found["readings"])
    code, _, err = bifrost_cli("probe", plant.url("plc1"), "hr:0", "--expect", "12345")
    assert code == 1 and "no reading of hr:0 gives 12345" in err


def test_probe_of_a_word_pair_shows_every_byte_order(plant: SimHost) -> None:
    code, out, _ = bifrost_cli("probe", plant.url("plc1"), "hr:0", "--json")
    assert code == 0
    readings = json.loads(out)["readings"]
    assert {(r["type"], r["byte_order"]) for r in readings if r["type"] == "float32"} >= {("float32", "ABCD")}
    assert {r["byte_order"] for r in readings if r["type"] == "int32"} == {"ABCD", "BADC", "CDAB", "DCBA"}


# --- discover -----------------------------------------------------------------------------------------


def test_discover_finds_the_modbus_device_on_an_explicit_host(plant: SimHost) -> None:
    port = plant.url("plc1").split(":")[2].split("?")[0]
    code, out, _ = bifrost_cli("discover", "127.0.0.1/32", "--ports", f"{port},1", "--modbus-ports", port, "--json")
    assert code == 0
    assert json_lines(out) == [
        {"host": "127.0.0.1", "port": int(port), "protocol": "modbus", "confirmed": True, "url": plant.url("plc1")}
    ]


def test_discover_refuses_a_range_past_its_bound() -> None:
    code, _, err = bifrost_cli("discover", "10.0.0.0/16")
    assert code == 2 and "at most 256" in err


def test_every_command_has_an_example_in_its_help() -> None:
    for command in ("read", "write", "monitor", "scan", "probe", "discover"):
        code, out, _ = bifrost_cli(command, "--help")
        assert code == 0 and "Examples:" in out and f"bifrost {command} " in out, command


@pytest.mark.skipif(os.name != "posix", reason="the shell completion script is for POSIX shells")
def test_shell_completion_is_offered() -> None:
    code, out, _ = bifrost_cli("--show-completion", "bash")
    assert code == 0 and "complete" in out
