"""@pytest.mark.bifrost_cassette and its four record modes, as vcrpy's behave, through pytester.

The "real device" of the inner projects is a simulator started by their conftest (a pump station whose
pump speed the outer test sets through a file), so the outer test can tell a recorded answer from a
live one, and count what reached the device.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"

CONFTEST = f"""
import json
from pathlib import Path

import pytest
from simulators import SimHost

HERE = Path(__file__).parent


@pytest.fixture
def bifrost_record_target():
    # The real device: the pump station, at the speed the outer test wrote.
    with SimHost({str(DATA / "pump_station.yaml")!r}, any_port=True) as host:
        host.plant.set("pump1.speed", int((HERE / "speed.txt").read_text()))
        yield host.url("plc1")
        served = HERE / "served.txt"
        count = int(served.read_text()) if served.exists() else 0
        served.write_text(str(count + len(host.devices["plc1"].log)))
"""

TESTS = """
import json
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

HERE = Path(__file__).parent


def read(url, area, address):
    host, port = url.split("//")[1].split("?")[0].rsplit(":", 1)
    client = ModbusTcpClient(host, port=int(port), timeout=5, retries=0)
    assert client.connect()
    try:
        reader = client.read_holding_registers if area == "hr" else client.read_input_registers
        answer = reader(address, count=1, device_id=1)
        return None if answer.isError() else answer.registers[0]
    finally:
        client.close()


def seen(**values):
    (HERE / "seen.json").write_text(json.dumps(values))


@pytest.mark.bifrost_cassette("cassettes/pump_station.jsonl", record_mode=MODE)
def test_speed(bifrost_cassette):
    seen(speed=read(bifrost_cassette.url, "hr", 2), recording=bifrost_cassette.recording)


@pytest.mark.bifrost_cassette("cassettes/pump_station.jsonl", record_mode=MODE)
def test_flow_too(bifrost_cassette):
    if (HERE / "ask_flow.txt").exists():
        seen(speed=read(bifrost_cassette.url, "hr", 2), flow=read(bifrost_cassette.url, "ir", 0))
"""


@pytest.fixture
def project(pytester: pytest.Pytester):
    pytester.makeconftest(CONFTEST)

    def make(mode: str | None, *, speed: int = 1450) -> Path:
        pytester.makepyfile(test_pumps=TESTS.replace("MODE", repr(mode)))
        (pytester.path / "speed.txt").write_text(str(speed))
        (pytester.path / "served.txt").write_text("0")
        return pytester.path / "cassettes" / "pump_station.jsonl"

    return make


def _seen(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "seen.json").read_text())


def _served(pytester: pytest.Pytester) -> int:
    return int((pytester.path / "served.txt").read_text())


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_none_without_a_cassette_fails_saying_how_to_record(pytester, run, project) -> None:
    project("none")
    result = run("test_pumps.py::test_speed")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*pump_station.jsonl: no cassette, and record_mode is 'none'*once*"])


def test_once_records_when_missing_then_replays_without_the_device(pytester, run, project) -> None:
    cassette = project("once")
    run("test_pumps.py::test_speed").assert_outcomes(passed=1)
    assert _seen(pytester) == {"speed": 1450, "recording": True}
    assert _served(pytester) == 1 and len(_lines(cassette)) == 1
    project("once", speed=1600)  # the device changed; the cassette did not
    run("test_pumps.py::test_speed").assert_outcomes(passed=1)
    assert _seen(pytester) == {"speed": 1450, "recording": False}
    assert _served(pytester) == 0  # replayed: nothing reached the device


def test_none_replays_and_a_request_not_recorded_fails_the_test_naming_it(pytester, run, project) -> None:
    cassette = project("once")
    run("test_pumps.py::test_speed").assert_outcomes(passed=1)
    project("none", speed=1600)
    run("test_pumps.py::test_speed").assert_outcomes(passed=1)
    assert _seen(pytester)["speed"] == 1450
    (pytester.path / "ask_flow.txt").write_text("yes")
    result = run("test_pumps.py::test_flow_too")
    result.assert_outcomes(failed=1)  # the test itself tolerated the refusal; the cassette did not
    result.stdout.fnmatch_lines(["*cannot answer 1 request(s)*", "*plc1 unit 1: read ir:0 (0400000001)*"])
    assert _served(pytester) == 0 and len(_lines(cassette)) == 1


def test_new_episodes_replays_what_it_has_and_appends_what_is_new(pytester, run, project) -> None:
    cassette = project("once")
    run("test_pumps.py::test_speed").assert_outcomes(passed=1)
    project("new_episodes", speed=1600)
    (pytester.path / "ask_flow.txt").write_text("yes")
    run("test_pumps.py::test_flow_too").assert_outcomes(passed=1)
    assert _seen(pytester) == {"speed": 1450, "flow": 120}  # the old answer kept; the new one live
    assert _served(pytester) == 1  # only the new request reached the device
    lines = _lines(cassette)
    assert [line["request"]["text"] for line in lines] == ["read hr:2", "read ir:0"]
    assert cassette.read_text().count("bifrost_cassette") == 1
    project("none", speed=1700)
    run("test_pumps.py::test_flow_too").assert_outcomes(passed=1)  # both now come from the cassette
    assert _seen(pytester) == {"speed": 1450, "flow": 120}


def test_all_records_again_against_the_device(pytester, run, project) -> None:
    cassette = project("once")
    run("test_pumps.py::test_speed").assert_outcomes(passed=1)
    project("all", speed=1600)
    run("test_pumps.py::test_speed").assert_outcomes(passed=1)
    assert _seen(pytester) == {"speed": 1600, "recording": True}
    assert _served(pytester) == 1
    lines = _lines(cassette)
    assert len(lines) == 1 and lines[0]["response"]["decoded"]["values"] == [1600]


def test_the_command_line_mode_wins_over_the_marker(pytester, run, project) -> None:
    cassette = project("once")
    run("test_pumps.py::test_speed").assert_outcomes(passed=1)
    project("once", speed=1600)
    run("test_pumps.py::test_speed", "--bifrost-record-mode=all").assert_outcomes(passed=1)
    assert _seen(pytester)["speed"] == 1600 and _lines(cassette)[0]["response"]["decoded"]["values"] == [1600]
    result = run("--bifrost-record-mode=sometimes")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--bifrost-record-mode: invalid choice: 'sometimes'*"])


def test_recording_without_a_device_says_where_to_name_one(pytester, run) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.bifrost_cassette("cassettes/x.jsonl", record_mode="once")
        def test_x(bifrost_cassette):
            pass
        """
    )
    result = run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*records, but there is no device to record from*target=*"])


def test_the_ini_key_applies_where_the_marker_says_nothing(pytester, run, project) -> None:
    cassette = project(None)
    run("test_pumps.py::test_speed", "-o", "bifrost_record_mode=once").assert_outcomes(passed=1)
    assert _seen(pytester) == {"speed": 1450, "recording": True} and cassette.exists()
    project("none", speed=1600)  # the marker's own mode wins over the ini key
    run("test_pumps.py::test_speed", "-o", "bifrost_record_mode=all").assert_outcomes(passed=1)
    assert _seen(pytester) == {"speed": 1450, "recording": False}
