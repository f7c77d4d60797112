"""@pytest.mark.bifrost_cassette with an S7 device: python-snap7's server recorded, replayed to
python-snap7's client, a request never recorded failing the test, new episodes appended.

The inner project's "real device" is python-snap7's server, started by its conftest with DB1 holding
the value the outer test wrote (so a recorded answer can be told from a live one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("snap7")
# Imported here, so the in-process runs below share them: pytester drops the modules an inner run
# imported, and the codec registry (kept) would then hold an S7 codec of classes no longer in use.
import simulators.recording.s7_device
import simulators.s7.frontend  # noqa: F401

CONFTEST = """
import logging
from pathlib import Path

import pytest
import snap7
from snap7.type import SrvArea

HERE = Path(__file__).parent


@pytest.fixture
def bifrost_record_target():
    logging.getLogger("snap7").setLevel(logging.CRITICAL)
    server = snap7.server.Server(log=False)
    db1 = bytearray(16)
    db1[0] = int((HERE / "value.txt").read_text())
    server.register_area(SrvArea.DB, 1, db1)
    server.register_area(SrvArea.DB, 2, bytearray(range(16)))
    server.start(tcp_port=0)
    try:
        yield f"s7://127.0.0.1:{server.server_socket.getsockname()[1]}?rack=0&slot=1"
    finally:
        server.stop()
"""

TESTS = """
import json
import logging
from pathlib import Path

import pytest
import snap7

HERE = Path(__file__).parent


def read(url, db, size):
    logging.getLogger("snap7").setLevel(logging.CRITICAL)
    host, port = url.split("//")[1].split("?")[0].rsplit(":", 1)
    client = snap7.Client()
    client.connect(host, 0, 1, int(port))
    try:
        return list(client.db_read(db, 0, size))
    except Exception:
        return None
    finally:
        client.disconnect()


@pytest.mark.bifrost_cassette("cassettes/cpu.jsonl", record_mode=MODE, device="cpu1")
def test_db(bifrost_cassette):
    seen = {"db1": read(bifrost_cassette.url, 1, 2), "recording": bifrost_cassette.recording}
    if (HERE / "ask_db2.txt").exists():
        seen["db2"] = read(bifrost_cassette.url, 2, 4)
    (HERE / "seen.json").write_text(json.dumps(seen))
"""


@pytest.fixture
def project(pytester: pytest.Pytester):
    pytester.makeconftest(CONFTEST)

    def make(mode: str, *, value: int = 7) -> Path:
        pytester.makepyfile(test_cpu=TESTS.replace("MODE", repr(mode)))
        (pytester.path / "value.txt").write_text(str(value))
        return pytester.path / "cassettes" / "cpu.jsonl"

    return make


def _seen(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "seen.json").read_text())


def _texts(path: Path) -> list[str]:
    return [json.loads(line)["request"]["text"] for line in path.read_text().splitlines()[1:]]


def test_once_records_an_s7_device_then_replays_it_without_the_device(pytester, run, project) -> None:
    cassette = project("once")
    run().assert_outcomes(passed=1)
    assert _seen(pytester) == {"db1": [7, 0], "recording": True}
    assert _texts(cassette) == ["setup communication (PDU 480, AmQ 1)", "read DB1.DBB0 x2"]
    project("none", value=9)  # the device changed; the cassette did not
    run().assert_outcomes(passed=1)
    assert _seen(pytester) == {"db1": [7, 0], "recording": False}


def test_a_request_the_s7_cassette_cannot_answer_fails_the_test_naming_it(pytester, run, project) -> None:
    project("once")
    run().assert_outcomes(passed=1)
    project("none")
    (pytester.path / "ask_db2.txt").write_text("yes")
    result = run()
    result.assert_outcomes(failed=1)  # the test tolerated the refusal; the cassette did not
    result.stdout.fnmatch_lines(["*cannot answer 1 request(s)*", "*cpu1 unit 1: read DB2.DBB0 x4*never recorded*"])


def test_new_episodes_appends_the_s7_requests_that_are_new(pytester, run, project) -> None:
    cassette = project("once")
    run().assert_outcomes(passed=1)
    project("new_episodes", value=9)
    (pytester.path / "ask_db2.txt").write_text("yes")
    run().assert_outcomes(passed=1)
    assert _seen(pytester) == {"db1": [7, 0], "db2": [0, 1, 2, 3], "recording": True}  # old answer kept
    assert "read DB2.DBB0 x4" in _texts(cassette)
    project("none", value=11)
    run().assert_outcomes(passed=1)
    assert _seen(pytester) == {"db1": [7, 0], "db2": [0, 1, 2, 3], "recording": False}
