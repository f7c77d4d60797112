"""opc.tcp:// URLs and connect() arguments, checked before any socket opens; the extra's ImportError."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import bifrost
from bifrost.errors import ConfigError
from bifrost.opcua.client import session_options
from bifrost.urls import parse_url


def _options(url: str, **kwargs: object) -> object:
    _, endpoint = parse_url(url)
    return session_options(endpoint, kwargs)


def test_url_and_defaults() -> None:
    _, endpoint = parse_url("opc.tcp://plc.local/bifrost?security=Basic256Sha256&mode=Sign")
    assert (endpoint.host, endpoint.port, endpoint.path) == ("plc.local", 4840, "/bifrost")
    options = session_options(endpoint, {})
    assert (options.policy, options.mode) == ("Basic256Sha256", "Sign")
    plain = _options("opc.tcp://h:4841")
    assert (plain.policy, plain.mode, plain.user) == ("None", "None", None)  # type: ignore[attr-defined]
    # A policy alone means SignAndEncrypt; the argument and the URL may say the same thing.
    secured = _options("opc.tcp://h", security="Basic256Sha256", user="op", password="pw")
    assert (secured.policy, secured.mode, secured.user) == ("Basic256Sha256", "SignAndEncrypt", "op")  # type: ignore[attr-defined]
    assert _options("opc.tcp://h?security=Basic256Sha256", security="Basic256Sha256").mode == "SignAndEncrypt"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("opc.tcp://h?security=Basic128", {}, "security='Basic128' is not one of"),
        ("opc.tcp://h?mode=Encrypt", {}, "mode='Encrypt' is not one of"),
        ("opc.tcp://h?mode=Sign", {}, "policy None goes with mode None"),
        ("opc.tcp://h?security=Basic256Sha256&mode=None", {}, "policy None goes with mode None"),
        ("opc.tcp://h?security=Basic256Sha256", {"security": "Aes256_Sha256_RsaPss"}, "contradicts the URL"),
        ("opc.tcp://h", {"password": "x"}, "a password was given without a user"),
        ("opc.tcp://h?security=Basic256Sha256", {"certificate": "c.der"}, "give both certificate= and private_key="),
        ("opc.tcp://h", {"certificate": "/no/such.der", "private_key": "/no/such.key"}, "'/no/such.der' is not a file"),
    ],
)
def test_contradictions_are_config_errors(url: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _options(url, **kwargs)
    assert message in str(caught.value)


def test_connect_checks_arguments_per_scheme() -> None:
    with pytest.raises(ConfigError, match="modbus:// takes no argument 'user'; its own arguments: none"):
        bifrost.connect("modbus://h", user="op")
    with pytest.raises(ConfigError, match=r"opc.tcp:// takes no argument 'unit'; its own arguments: security, mode"):
        bifrost.connect("opc.tcp://h", unit=1)
    with pytest.raises(ConfigError, match=r"engine 'python' is not available for opc.tcp://; engines: native, asyncua"):
        bifrost.connect("opc.tcp://h", engine="python")
    with pytest.raises(ConfigError, match=r"unknown parameter 'user'; opc.tcp:// accepts: security="):
        bifrost.connect("opc.tcp://h?user=op")  # credentials never in URLs


def test_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from bifrost.opcua import client

    monkeypatch.setenv("BIFROST_OPCUA_ENGINE", "asyncua")
    assert bifrost.connect("opc.tcp://h").engine_name == "asyncua"  # type: ignore[attr-defined]
    monkeypatch.setenv("BIFROST_OPCUA_ENGINE", "turbo")
    with pytest.raises(ConfigError, match="unknown OPC UA engine 'turbo'"):
        bifrost.connect("opc.tcp://h")
    monkeypatch.delenv("BIFROST_OPCUA_ENGINE")
    expected = "native" if client.native_available() else "asyncua"
    assert bifrost.connect("opc.tcp://h").engine_name == expected  # type: ignore[attr-defined]


def test_a_missing_extra_names_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['asyncua'] = None\n"
        "import bifrost\n"
        "try:\n"
        "    bifrost.connect('opc.tcp://h', engine='asyncua')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert 'pip install "bifrost[opcua]"' in out.stdout
    assert "'asyncua'" in out.stdout


def test_importing_bifrost_imports_no_asyncua(tmp_path: Path) -> None:
    code = "import sys, bifrost; print('asyncua' in sys.modules, 'opc.tcp' in bifrost.known_schemes())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_schemes_lists_opc_tcp() -> None:
    scheme = bifrost.known_schemes()["opc.tcp"]
    assert scheme.default_port == 4840
    assert [param.name for param in scheme.params] == ["security", "mode"]


@pytest.mark.asyncio
async def test_subscribe_arguments_are_checked_before_the_wire() -> None:
    plc = bifrost.connect("opc.tcp://h")  # never opened: nothing may be sent
    with pytest.raises(ConfigError, match="interval must be positive"):
        await plc.subscribe(["i=2258"], interval=0).__anext__()  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="deadband must not be negative"):
        await plc.subscribe(["i=2258"], deadband=-1).__anext__()  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="is neither a NodeId"):
        await plc.read("tank.level")
