"""`bifrost-sim diff`: what differs between two cassettes, paired by request; exit 1 when anything does."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bifrost.modbus import pdu
from simulators.cli import app
from simulators.recording import Entry, save_cassette
from simulators.recording.cassette import Cassette
from simulators.recording.diff import diff_cassettes


def _read(address: int, values: tuple[int, ...], t: float = 0.0, latency: float = 0.001) -> Entry:
    request = pdu.encode_request(pdu.ReadHoldingRegistersRequest(address, len(values)))
    return Entry(
        "modbus", "plc1", 1, 1, t, request, pdu.encode_response(pdu.ReadHoldingRegistersResponse(values)), latency
    )


def test_equal_runs_in_another_order_do_not_differ() -> None:
    a = Cassette([_read(0, (1,)), _read(5, (2,)), _read(0, (3,))])
    b = Cassette([_read(5, (2,), t=0.1), _read(0, (1,), t=0.2), _read(0, (3,), t=0.3)])
    assert diff_cassettes(a, b) == []


def test_values_exceptions_timing_and_missing_requests() -> None:
    refused = _read(9, (0,))._replace(response=pdu.encode_response(pdu.ExceptionResponse(3, 2)))
    a = Cassette([_read(0, (1, 2)), _read(5, (7,)), _read(9, (0,)), _read(20, (1,))])
    b = Cassette([_read(0, (1, 3)), _read(5, (7,), latency=0.5), refused, _read(30, (1,))])
    found = diff_cassettes(a, b, tolerance=0.1)
    kinds = [d.kind for d in found]
    assert kinds == ["response", "timing", "response", "only in A", "only in B"]
    text = [d.describe() for d in found]
    assert "read hr:0-1" in text[0] and "0001 0002" in text[0] and "0001 0003" in text[0]
    assert "500.0 ms in B" in text[1]
    assert "exception 2" in text[2]
    assert diff_cassettes(a, b, tolerance=1.0)[1].kind == "response"  # within the tolerance: no timing entry
    assert [d.kind for d in diff_cassettes(a, b, ignore_timing=True)].count("timing") == 0


def test_command_exit_codes(tmp_path: Path) -> None:
    a = save_cassette(tmp_path / "a.jsonl", [_read(0, (1,))])
    b = save_cassette(tmp_path / "b.jsonl", [_read(0, (2,))])
    same = CliRunner().invoke(app, ["diff", str(a), str(a)])
    assert same.exit_code == 0 and "no differences" in same.output
    differ = CliRunner().invoke(app, ["diff", str(a), str(b)])
    assert differ.exit_code == 1 and "response: plc1 unit 1: read hr:0" in differ.output
    (tmp_path / "bad.jsonl").write_text("{}\n")
    assert CliRunner().invoke(app, ["diff", str(a), str(tmp_path / "bad.jsonl")]).exit_code == 2
    slow = save_cassette(tmp_path / "slow.jsonl", [_read(0, (1,), latency=0.3)])
    assert CliRunner().invoke(app, ["diff", str(a), str(slow), "--tolerance", "250ms"]).exit_code == 1
    assert CliRunner().invoke(app, ["diff", str(a), str(slow), "--tolerance", "1s"]).exit_code == 0
