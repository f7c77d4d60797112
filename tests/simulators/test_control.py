"""The control API of `bifrost-sim serve --control`, RemoteHost over it, and shards.

Every check goes through real sockets on 127.0.0.1: an HTTP client (httpx) drives the API, and an
independent Modbus client (pymodbus) sees what it did to the device.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pymodbus.client import ModbusTcpClient

from bifrost.errors import ConfigError
from simulators import SimHost, load_scenario
from simulators.control import ControlServer
from simulators.remote import RemoteHost
from simulators.shards import shard_devices, shard_of


@dataclass
class Served:
    process: subprocess.Popen[str]
    line: dict[str, object]

    @property
    def control(self) -> str:
        return str(self.line["control"])

    def modbus(self, device: str = "plc1") -> ModbusTcpClient:
        url = self.line["devices"][device]["url"]  # type: ignore[index]
        host, port = str(url).split("//")[1].split("?")[0].rsplit(":", 1)
        return ModbusTcpClient(host, port=int(port))


def _serve(*args: str) -> Iterator[Served]:
    command = [sys.executable, "-m", "simulators.cli", "serve", "--json", "--any-port", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        if not first:
            raise AssertionError(f"serve printed nothing: {process.communicate(timeout=30)[1]}")
        yield Served(process, json.loads(first))
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.fixture
def served() -> Iterator[Served]:
    yield from _serve("--control", "127.0.0.1:0", "--clock", "virtual")


def test_an_http_client_sets_a_tag_and_a_modbus_client_reads_it(served: Served) -> None:
    with httpx.Client(base_url=served.control) as http, served.modbus() as plc:
        overview = http.get("/api").json()
        assert overview["scenario"] == "water-tank" and "plc1" in overview["devices"]
        answer = http.put("/api/tags/valve.open", json={"value": 77})
        assert answer.status_code == 200 and answer.json() == {"name": "valve.open", "value": 77}
        assert plc.read_holding_registers(6, count=1, device_id=1).registers == [77]
        assert http.post("/api/tags", json={"values": {"valve.open": 12, "pump.run": True}}).status_code == 200
        assert plc.read_holding_registers(6, count=1, device_id=1).registers == [12]
        assert plc.read_coils(0, count=1, device_id=1).bits[0] is True
        assert http.get("/api/tags/pump.run").json()["value"] is True
        refused = http.put("/api/tags/valve.open", json={"value": 70000})
        assert refused.status_code == 400 and "70000" in refused.json()["error"]
        assert http.get("/api/tags/nosuch").status_code == 404


def test_a_fault_injected_over_http_reaches_a_modbus_client_and_shows_its_hits(served: Served) -> None:
    with httpx.Client(base_url=served.control) as http, served.modbus() as plc:
        created = http.post(
            "/api/faults", json={"device": "plc1", "kind": "exception", "code": 6, "match": {"function": 3}}
        )
        assert created.status_code == 201, created.text
        fault = created.json()
        answer = plc.read_holding_registers(0, count=2, device_id=1)
        assert answer.isError() and answer.exception_code == 6
        assert http.get(f"/api/faults/{fault['id']}").json()["hits"] == 1
        listed = http.get("/api/faults").json()
        assert [(item["id"], item["kind"], item["hits"]) for item in listed] == [(fault["id"], "exception", 1)]
        traffic = http.get("/api/devices/plc1/traffic", params={"function": 3}).json()
        assert traffic["total"] == 1
        exchange = traffic["exchanges"][0]
        assert exchange["request"] == "read hr:0-1" and exchange["refused"] is True
        assert http.delete(f"/api/faults/{fault['id']}").status_code == 204
        assert not plc.read_holding_registers(0, count=2, device_id=1).isError()
        assert http.get("/api/devices/plc1/traffic").json()["total"] == 2
        bad = http.post("/api/faults", json={"device": "plc1", "kind": "latency", "dely": "2s"})
        assert bad.status_code == 400 and "dely" in bad.json()["error"]


def test_the_clock_moves_and_reset_brings_the_plant_back(served: Served) -> None:
    with httpx.Client(base_url=served.control) as http:
        assert http.get("/api/clock").json()["mode"] == "virtual"
        http.put("/api/tags/pump.run", json={"value": True})
        level = http.get("/api/tags/tank.level").json()["value"]
        moved = http.post("/api/clock/advance", json={"seconds": 10}).json()
        assert moved["now"] == pytest.approx(10.0)
        assert http.get("/api/tags/tank.level").json()["value"] > level  # the pump filled the tank
        assert http.post("/api/clock/run_until", json={"time": 25}).json()["now"] == pytest.approx(25.0)
        assert http.post("/api/reset").json()["now"] == 0.0
        assert http.get("/api/tags/tank.level").json()["value"] == level


def test_the_api_is_described_by_an_openapi_document(served: Served) -> None:
    document = httpx.get(served.control + "/openapi.json").json()
    paths = set(document["paths"])
    assert {"/api", "/api/tags/{name}", "/api/faults", "/api/devices/{name}/traffic", "/api/clock/advance"} <= paths
    assert {"/api/reset", "/api/events"} <= paths


def test_the_event_stream_sends_tag_changes_and_traffic(served: Served) -> None:
    with httpx.Client(base_url=served.control, timeout=30) as http, http.stream("GET", "/api/events") as events:
        lines = events.iter_lines()
        assert next(lines) == "event: tags" and "tank.level" in json.loads(next(lines).removeprefix("data: "))
        http.put("/api/tags/valve.open", json={"value": 33})
        seen: list[str] = []
        for line in lines:
            seen.append(line)
            if line.startswith("data: ") and json.loads(line.removeprefix("data: ")).get("valve.open") == 33:
                break
        with served.modbus() as plc:
            plc.read_coils(0, count=1, device_id=1)
        for line in lines:
            if line == "event: traffic":
                exchange = json.loads(next(lines).removeprefix("data: "))
                assert exchange["request"] == "read coil:0"
                break


def test_beyond_loopback_the_api_needs_a_token() -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "simulators.cli", "serve", "--json", "--any-port", "--control", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in __import__("os").environ.items() if k != "BIFROST_CONTROL_TOKEN"},
    )
    assert refused.returncode == 2
    assert "needs a token" in refused.stderr
    for served in _serve("--control", "0.0.0.0:0", "--control-token", "s3cret"):
        url = served.control
        assert httpx.get(url + "/api").status_code == 401
        assert httpx.get(url + "/api", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(url + "/api", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(url + "/api", params={"token": "s3cret"}).status_code == 200


# --- RemoteHost ---------------------------------------------------------------------------------------


@pytest.fixture
def remote() -> Iterator[tuple[SimHost, RemoteHost]]:
    with (
        SimHost("water_tank", clock="virtual", any_port=True) as host,
        ControlServer(host) as server,
        RemoteHost(server.url) as remote_host,
    ):
        yield host, remote_host


def test_remote_host_offers_simhosts_surface(remote: tuple[SimHost, RemoteHost]) -> None:
    host, far = remote
    assert far.devices["plc1"].url == host.url("plc1")
    assert far.devices["plc1"].tags["tank.level"].address == "hr:0"
    far.plant.set("valve.open", 21)
    assert host.plant.get("valve.open") == 21 and far.plant.get("valve.open") == 21
    with ModbusTcpClient("127.0.0.1", port=int(host.url("plc1").split(":")[2].split("?")[0])) as plc:
        with far.inject_fault("plc1", "exception", code=4, match={"function": 3}) as fault:
            assert plc.read_holding_registers(6, count=1, device_id=1).exception_code == 4
            assert fault.active and fault.hits == 1
        assert not fault.active
        assert plc.read_holding_registers(6, count=1, device_id=1).registers == [21]
    log = far.devices["plc1"].log
    assert log.count(function=3) == 2 and len(log.errors()) == 1
    assert far.clock.advance(5) == pytest.approx(5.0) and host.clock.now() == pytest.approx(5.0)
    far.reset()
    assert host.clock.now() == 0.0 and host.plant.get("valve.open") == 50 and log.count() == 0


def test_remote_host_errors_name_the_request(remote: tuple[SimHost, RemoteHost]) -> None:
    _, far = remote
    with pytest.raises(ConfigError, match=r"PUT /api/tags/nosuch: 404: no tag 'nosuch'"):
        far.plant.set("nosuch", 1)


# --- shards -------------------------------------------------------------------------------------------

FLEET = """\
scenario: fleet
tags:
{tags}
devices:
{devices}
"""


def _served(device: int, shared: bool) -> int:
    return 0 if shared and device == 1 else device  # shared: d1 serves d0's tag


def _fleet(count: int, shared: bool = False) -> str:
    tags = "\n".join(f"  t{i}: {{type: uint16, init: {i}}}" for i in range(count))
    devices = "\n".join(
        f"  d{i}: {{protocol: modbus, listen: 127.0.0.1:0, unit: {i + 1}, map: {{t{_served(i, shared)}: hr:0}}}}"
        for i in range(count)
    )
    return FLEET.format(tags=tags, devices=devices)


def test_shards_split_the_devices_stably_and_wholly(tmp_path: Path) -> None:
    scenario = load_scenario(tmp_path / "fleet.yaml", text=_fleet(12))
    shares = [shard_devices(scenario, f"{k}/4") for k in range(1, 5)]
    assert sorted(name for share in shares for name in share) == sorted(scenario.devices)
    assert shares == [shard_devices(scenario, f"{k}/4") for k in range(1, 5)]  # stable
    assert all(shard_of(name, 4) == k for k, share in enumerate(shares, 1) for name in share)


def test_a_tag_two_shards_need_is_refused(tmp_path: Path) -> None:
    scenario = load_scenario(tmp_path / "fleet.yaml", text=_fleet(8, shared=True))
    assert shard_of("d0", 2) != shard_of("d1", 2)  # the hash puts them apart, as the test needs
    with pytest.raises(ConfigError, match=r"tag 't0' is needed by 'd0' .* and by 'd1'"):
        shard_devices(scenario, "1/2")
    with pytest.raises(ConfigError, match="expected K/N"):
        shard_devices(scenario, "3/2")


def test_serve_a_shard_says_which_devices_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(_fleet(6))
    expected = shard_devices(load_scenario(path), "2/3")
    for served in _serve(str(path), "--shard", "2/3", "--control", "127.0.0.1:0"):
        assert served.line["shard"] == "2/3"
        assert sorted(served.line["devices"]) == sorted(expected)  # type: ignore[arg-type]
        overview = httpx.get(served.control + "/api").json()
        assert overview["shard"] == "2/3" and sorted(overview["devices"]) == sorted(expected)
