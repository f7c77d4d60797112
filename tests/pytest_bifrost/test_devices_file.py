"""The real target's devices file: read only for --bifrost-target=real; every mistake a usage error."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_bifrost.devices import DevicesFileError, load_devices


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(text)
    return path


def test_a_mapping_of_names_to_urls(tmp_path: Path) -> None:
    path = _write(tmp_path, "plc1: modbus://10.0.0.5:502?unit=1\nplc2: modbus+rtu+tcp://10.0.0.6:4001\n")
    assert load_devices(path) == {"plc1": "modbus://10.0.0.5:502?unit=1", "plc2": "modbus+rtu+tcp://10.0.0.6:4001"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"devices\.yaml:1:1: expected a mapping of device names to URLs.*\(it is empty\)"),
        ("- plc1\n", r"devices\.yaml:1:1: expected a mapping .*\(got list\)"),
        ("plc1: [oops\n", r"devices\.yaml:2:1: invalid YAML"),
        ("plc1: modbus://a\nplc1: modbus://b\n", r"devices\.yaml:2:1: duplicate key 'plc1'"),
        ("plc1: 5020\n", r"devices\.yaml:1:1: plc1: expected a URL string.*\(got 5020\)"),
        ("ok: modbus://a\nplc2: http://x\n", r"devices\.yaml:2:1: plc2: unknown scheme 'http'"),
        ("plc1: modbus://a?unti=1\n", r"devices\.yaml:1:1: plc1: .*unknown parameter 'unti'"),
    ],
    ids=["empty", "list", "yaml", "duplicate", "not-a-string", "scheme", "parameter"],
)
def test_mistakes_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DevicesFileError, match=message):
        load_devices(_write(tmp_path, text))


def test_every_mistake_at_once(tmp_path: Path) -> None:
    with pytest.raises(DevicesFileError) as caught:
        load_devices(_write(tmp_path, "a: 1\nb: modbus://ok\nc: ftp://x\n"))
    lines = str(caught.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["a", "c"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DevicesFileError, match=r"no such devices file \(a YAML mapping of device names to URLs"):
        load_devices(tmp_path / "nope.yaml")


# --- at configure time -------------------------------------------------------------------------------


def test_real_target_without_devices_file_is_a_usage_error(pytester: pytest.Pytester, run) -> None:
    pytester.makepyfile("def test_never(): pass")
    result = run("--bifrost-target=real")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--bifrost-target=real needs a devices file*--bifrost-devices FILE*"])


def test_missing_devices_file_is_a_usage_error(pytester: pytest.Pytester, run) -> None:
    pytester.makepyfile("def test_never(): pass")
    result = run("--bifrost-target=real", "--bifrost-devices=rig.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--bifrost-devices: *rig.yaml: no such devices file*"])


def test_malformed_devices_file_from_ini_is_a_usage_error(pytester: pytest.Pytester, run) -> None:
    pytester.makeini("[pytest]\nbifrost_target = real\nbifrost_devices = rig.yaml\n")
    (pytester.path / "rig.yaml").write_text("plc1: modbus://10.0.0.5:502?unit=1\nplc2: 502\n")
    pytester.makepyfile("def test_never(): pass")
    result = run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bifrost_devices in *tox.ini: *rig.yaml:2:1: plc2: expected a URL string*"])


def test_sim_target_does_not_read_the_devices_file(pytester: pytest.Pytester, run) -> None:
    # A project may name its rig's file in the ini; CI, on the sim target, need not have it.
    pytester.makeini("[pytest]\nbifrost_devices = rig-only.yaml\n")
    pytester.makepyfile("def test_runs(): pass")
    run().assert_outcomes(passed=1)
