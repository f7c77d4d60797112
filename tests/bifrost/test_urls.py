"""connect(): the scheme registry and the errors that list what is accepted."""

from __future__ import annotations

import pytest

import bifrost
from bifrost._extras import require
from bifrost.errors import ConfigError
from bifrost.urls import parse_url


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        bifrost.connect("nope://x")
    message = str(caught.value)
    assert "unknown scheme 'nope'" in message
    for scheme in ("modbus://", "modbus+rtu://", "modbus+rtu+tcp://"):
        assert scheme in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "is not a URL"),
        ("modbus://", "no host"),
        ("modbus://host:99999", "port is not a number"),
        ("modbus://host?unti=1", "unknown parameter 'unti'; modbus:// accepts: unit=<int 0..255>"),
        ("modbus://host?unit=x", "unit='x' is not unit=<int 0..255>"),
        ("modbus://host?unit=300", "out of range"),
        ("modbus+rtu://host/dev/ttyUSB0", "expected a device path"),
        ("modbus+rtu:///dev/ttyUSB0?parity=X", "not one of parity=<N|E|O>"),
    ],
)
def test_bad_urls_say_what_is_accepted(url: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("?", r"\?").replace("+", r"\+")):
        parse_url(url)


def test_url_forms_of_the_vocabulary_parse() -> None:
    _, tcp = parse_url("modbus://10.0.0.5:1502?unit=7")
    assert (tcp.host, tcp.port, tcp.params["unit"]) == ("10.0.0.5", 1502, 7)
    _, default_port = parse_url("modbus://plc")
    assert (default_port.port, default_port.params["unit"]) == (502, 1)
    _, rtu = parse_url("modbus+rtu:///dev/ttyUSB0?baud=9600&parity=N&unit=3")
    assert (rtu.path, rtu.params["baud"], rtu.params["parity"], rtu.params["stopbits"]) == (
        "/dev/ttyUSB0",
        9600,
        "N",
        1,
    )


def test_engine_and_timeout_are_checked() -> None:
    with pytest.raises(ConfigError, match="engine 'turbo' is not available for modbus://; engines: native, python"):
        bifrost.connect("modbus://h", engine="turbo")
    with pytest.raises(ConfigError, match="timeout must be positive"):
        bifrost.connect("modbus://h", timeout=0)


def test_a_missing_extra_names_the_extra_to_install() -> None:
    with pytest.raises(ImportError, match=r'pip install "bifrost\[opcua\]"'):
        require("bifrost_surely_missing_module", "opcua")
    assert require("json", "none").dumps(1) == "1"


def test_public_names() -> None:
    for name in bifrost.__all__:
        assert hasattr(bifrost, name), name
    assert issubclass(bifrost.TimeoutError, TimeoutError)
    assert issubclass(bifrost.DeviceError, bifrost.BifrostError)
    assert bifrost.DeviceError("x", code=2).code == 2
