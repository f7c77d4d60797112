"""The `bifrost` command on the OPC UA and S7 sides of the same served plant (the water tank serves
plc1 over Modbus, hmi over OPC UA and cpu1 over S7): one command line for every protocol."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bifrost
from bifrost.cli import app
from simulators import SimHost, load_scenario, shipped_scenario

WATER_TANK = str(shipped_scenario("water_tank"))
NODE = "nsu=urn:bifrost:water-tank;s="
runner = CliRunner()


def bifrost_cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_read_and_write_opcua_nodes_raw_and_by_tag(plant: SimHost) -> None:
    url = plant.url("hmi")
    code, out, err = bifrost_cli("read", url, f"{NODE}valve.open", f"{NODE}pump.run", "--json")
    assert code == 0, err
    assert [(line["value"], line["quality"]) for line in map(json.loads, out.splitlines())] == [
        (50, "good"),
        (False, "good"),
    ]
    code, out, err = bifrost_cli("write", url, f"{NODE}valve.open=66", "--verify", "--json")
    assert code == 0, err
    assert json.loads(out) == {"tag": f"{NODE}valve.open", "value": 66, "verified": True}
    assert plant.plant.get("valve.open") == 66
    code, out, err = bifrost_cli(
        "read", url, "tank.level", "--tags", WATER_TANK, "--json"
    )  # hmi: the one OPC UA device
    assert code == 0, err and json.loads(out)["value"] == 40.0


def test_read_and_write_s7_addresses(plant: SimHost) -> None:
    url = plant.url("cpu1")
    code, out, err = bifrost_cli("read", url, "DB1.DBW6", "DB1.DBD0:REAL", "--json")
    assert code == 0, err
    assert [line["value"] for line in map(json.loads, out.splitlines())] == [50, 40.0]
    code, _, err = bifrost_cli("write", url, "DB1.DBW6=71", "--verify")
    assert code == 0, err
    assert plant.plant.get("valve.open") == 71


def test_scan_of_an_opcua_server_writes_a_tag_file_that_reads_back(plant: SimHost, tmp_path: Path) -> None:
    draft = tmp_path / "hmi.yaml"
    code, out, err = bifrost_cli("scan", plant.url("hmi"), "--write-tags", str(draft), "--json")
    assert code == 0, err
    paths = {item["path"] for item in json.loads(out)["variables"]}
    assert any(path.endswith("/level") for path in paths), paths
    load_scenario(draft)
    tags = bifrost.TagMap.from_scenario(draft, device="server")
    assert len(tags) == len(load_scenario(WATER_TANK).tags)

    async def read_back() -> dict[str, object]:
        async with bifrost.connect(plant.url("hmi"), tags=tags) as plc:
            return {name: point.value for name, point in (await plc.read_many(list(tags))).items()}

    values = asyncio.run(read_back())  # the draft's tags are named by browse path: plant tags by their last words
    expected = plant.plant.snapshot()
    assert {name.removeprefix("hmi."): value for name, value in values.items()} == pytest.approx(expected, rel=1e-6)


def test_scan_of_an_s7_cpu_names_it_and_its_data_blocks(plant: SimHost) -> None:
    code, out, err = bifrost_cli("scan", plant.url("cpu1"), "--dbs", "1-5", "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found["state"] == "RUN" and found["dbs"] == [1, 2]
    assert found["identity"]


def test_discover_an_opcua_server_lists_its_endpoints_and_their_security(plant: SimHost) -> None:
    code, out, err = bifrost_cli("discover", plant.url("hmi"), "--json", "--timeout", "5s")
    assert code == 0, err
    found = json.loads(out)
    assert [server["name"] for server in found["servers"]] == ["Bifrost simulator"]
    assert [(e["url"], e["security"], e["mode"], e["logins"]) for e in found["endpoints"]] == [
        (plant.url("hmi"), "None", "None", ["anonymous"])
    ]


def test_discover_identifies_an_s7_cpu_on_an_explicit_port(plant: SimHost) -> None:
    port = plant.url("cpu1").split(":")[2].split("?")[0]
    code, out, err = bifrost_cli("discover", "127.0.0.1", "--ports", port, "--s7-ports", port, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert (found["protocol"], found["confirmed"], found["state"]) == ("s7", True, "RUN")
