"""`@pytest.mark.bifrost_cassette(path, record_mode=...)` and the `bifrost_cassette` fixture: a test
talks to a device that is a cassette, recorded from the real one when the mode says so (vcrpy's modes).

| mode | cassette there | cassette missing |
| --- | --- | --- |
| `none` (default) | replay it | the test fails: record it first |
| `once` | replay it | record it, through the recording proxy in front of the target |
| `new_episodes` | replay it; what it cannot answer is asked of the target and appended | record it |
| `all` | record it again (replacing it) | record it |

Modbus, S7 and OPC UA devices alike (`target=` a `modbus://`, `s7://` or `opc.tcp://` URL). While
replaying, a request the cassette cannot answer is refused with the protocol's error (Modbus exception 2, S7
item code 0x0A, OPC UA BadNodeIdUnknown, or in strict mode BadUnexpectedError) and fails the test, naming the
request. OPC UA's `new_episodes` asks such a Read or Write of the target over a session of its own
(simulators.recording.opcua_forward), through the recording proxy, so the exchange is appended.

The target to record from is the marker's `target=` URL, else the `--bifrost-devices` file's URL for the
marker's `device=` (default `plc1`), or whatever the `bifrost_record_target` fixture returns (override it
in a conftest, e.g. to start a device for recording). `--bifrost-record-mode` on
the command line wins over the marker (so CI can force `none`, or a rig re-record with `all`); the
marker wins over the ini key `bifrost_record_mode`. Replay `mode=` (strict, request, image),
`timing=` (fast, recorded), `speed=` and `unknown=` (the exception code of a miss; for OPC UA a Bad status
name) are marker keywords too.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pytest_bifrost.options import RECORD_MODES, Settings

CASSETTE_DEVICE = pytest.StashKey["CassetteDevice"]()
_TIMEOUT = 10.0


@dataclass
class CassetteDevice:
    """What the `bifrost_cassette` fixture gives: where to connect, and what the cassette did."""

    path: Path
    record_mode: str
    recording: bool
    """Whether this test records (its requests reach the target) rather than only replaying."""
    url: str = ""
    device: str = "plc1"
    unit: int = 1
    _replayer: Any = None
    _host: Any = None
    _stoppers: list[Any] = field(default_factory=list)

    @property
    def misses(self) -> list[Any]:
        """The requests the cassette could not answer (replay only)."""
        return list(self._replayer.misses) if self._replayer is not None else []

    def close(self) -> None:
        for stop in reversed(self._stoppers):
            stop()
        self._stoppers.clear()


def _settings(config: pytest.Config) -> Settings:
    from pytest_bifrost.fixtures import settings_of

    return settings_of(config)


def _mode(request: pytest.FixtureRequest, marker: pytest.Mark) -> str:
    settings = _settings(request.config)
    given = settings.record_mode_given
    mode = given or marker.kwargs.get("record_mode") or settings.record_mode or "none"
    if mode not in RECORD_MODES:
        pytest.fail(f"bifrost_cassette: record_mode={mode!r}: expected one of {', '.join(RECORD_MODES)}", pytrace=False)
    return str(mode)


@pytest.fixture
def bifrost_record_target(request: pytest.FixtureRequest) -> str | None:
    """The URL of the device a cassette is recorded from (override it in a conftest to provide one)."""
    marker = request.node.get_closest_marker("bifrost_cassette")
    if marker is None:
        return None
    target = marker.kwargs.get("target")
    if target:
        return str(target)
    devices = _settings(request.config).devices
    return devices.get(str(marker.kwargs.get("device", "plc1")))


class _Thread:
    """An event loop on a thread of its own, for the recording proxy (sync and async tests alike)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bifrost cassette proxy", daemon=True)
        self.thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(_TIMEOUT)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(_TIMEOUT)
        self.loop.close()


def _address(url: str) -> tuple[str, int, int, str]:
    """Host, port, unit and scheme of a device URL (for S7 the unit is rack * 32 + slot)."""
    parts = urlsplit(url)
    if parts.scheme == "opc.tcp" and parts.hostname is not None and parts.port is not None:
        return parts.hostname, parts.port, 0, parts.scheme
    schemes = ("modbus", "modbus+rtu+tcp", "s7")
    if parts.scheme not in schemes or parts.hostname is None or parts.port is None:
        pytest.fail(
            f"bifrost_cassette: cannot record from {url!r}: expected modbus://HOST:PORT?unit=N "
            "(or modbus+rtu+tcp://..., s7://HOST:PORT?rack=R&slot=S, opc.tcp://HOST:PORT/PATH)",
            pytrace=False,
        )
    query = parse_qs(parts.query)
    if parts.scheme == "s7":
        unit = int(query.get("rack", ["0"])[0]) << 5 | int(query.get("slot", ["1"])[0])
    else:
        unit = int(query.get("unit", ["1"])[0])
    return parts.hostname, parts.port, unit, parts.scheme


def _url(scheme: str, host: str, port: int, unit: int) -> str:
    if scheme == "s7":
        return f"s7://{host}:{port}?rack={unit >> 5}&slot={unit & 0x1F}"
    return f"{scheme}://{host}:{port}?unit={unit}"


def _record(device: CassetteDevice, target: str, *, append: bool) -> None:
    """Serve `device.url` as the recording proxy in front of `target`, writing the cassette."""
    from simulators.proxy import Proxy
    from simulators.recording.record import ProxyRecorder

    host, port, unit, scheme = _address(target)
    protocol = {"s7": "s7", "opc.tcp": "opcua"}.get(scheme, "modbus")
    framing = {"modbus+rtu+tcp": "rtu", "s7": "s7", "opc.tcp": "opcua"}.get(scheme, "mbap")
    recorder = ProxyRecorder(
        device.path, device=device.device, framing=framing, append=append, source=target, protocol=protocol
    )
    runner = _Thread()
    proxy = Proxy((host, port), log=recorder, framing="rtu" if framing == "rtu" else "mbap", protocol=protocol)
    runner.run(proxy.start())
    listen_host, listen_port = proxy.address

    def stop() -> None:
        runner.run(proxy.stop())
        runner.stop()
        recorder.close()

    device._stoppers.append(stop)
    if protocol == "opcua":
        device.url = f"opc.tcp://{listen_host}:{listen_port}{urlsplit(target).path}"
    else:
        device.url = _url(scheme, listen_host, listen_port, unit)
    device.unit = unit


class _Forward:
    """What `new_episodes` asks the target for: one blocking Modbus/TCP exchange at a time, through the
    recording proxy (so the new exchange lands in the cassette)."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.lock = threading.Lock()

    def __call__(self, unit: int, request: bytes) -> bytes | None:
        from bifrost.modbus.framing import ClientConnection, Response
        from bifrost.modbus.pdu import decode_request, encode_response

        with self.lock:
            if self.sock is None:
                self.sock = socket.create_connection(self.address, timeout=_TIMEOUT)
            connection = ClientConnection("mbap", unit=unit)
            self.sock.sendall(connection.send(decode_request(request)))
            while True:
                data = self.sock.recv(4096)
                if not data:
                    self.sock = None
                    return None
                connection.receive_data(data)
                event = connection.next_event()
                if isinstance(event, Response):
                    return encode_response(event.response)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


class _S7Forward(_Forward):
    """`new_episodes` over S7: one job at a time on one connection (COTP connect and setup first)."""

    def __init__(self, host: str, port: int, unit: int) -> None:
        super().__init__(host, port)
        self.unit = unit
        self.connection: Any = None

    def _next(self, kinds: tuple[type, ...]) -> Any:
        assert self.sock is not None and self.connection is not None
        while True:
            event = self.connection.next_event()
            if event is None:
                data = self.sock.recv(4096)
                if not data:
                    raise ConnectionError("the device closed the connection")
                self.connection.receive_data(data)
                continue
            if isinstance(event, kinds):
                return event

    def __call__(self, unit: int, request: bytes) -> bytes | None:
        from bifrost.s7 import framing, pdu

        with self.lock:
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(self.address, timeout=_TIMEOUT)
                    self.connection = framing.ClientConnection(self.unit >> 5, self.unit & 0x1F)
                    self.sock.sendall(self.connection.connect_request())
                    self._next((framing.Connected,))
                    self.sock.sendall(self.connection.setup())
                    self._next((framing.Ready,))
                reference, asked = pdu.decode_request(request)
                self.sock.sendall(self.connection.send(asked))
                event = self._next((framing.Response, framing.MismatchedReply))
                return pdu.encode_response(reference, event.response)
            except (OSError, ConnectionError):
                self.close()
                self.sock = None
                return None


def _replay(device: CassetteDevice, marker: pytest.Mark, fallback: Any = None) -> None:
    from simulators.host import SimHost
    from simulators.recording.serve import replay_scenario, replayers

    scenario = replay_scenario(
        device.path,
        device=marker.kwargs.get("device"),
        mode=marker.kwargs.get("mode", "request"),
        timing=marker.kwargs.get("timing", "fast"),
        speed=float(marker.kwargs.get("speed", 1.0)),
        unknown=marker.kwargs.get("unknown", "default"),
    )
    host = SimHost(scenario, clock="system").start()
    device._stoppers.append(host.stop)
    name = next(iter(host.devices))
    device.device = name
    device.url = host.url(name)
    device.unit = host.devices[name].unit or 1
    device._host = host
    device._replayer = replayers(host)[name]
    device._replayer.fallback = fallback


@pytest.fixture
def bifrost_cassette(request: pytest.FixtureRequest, bifrost_record_target: str | None) -> Iterator[CassetteDevice]:
    """The device of the test's `@pytest.mark.bifrost_cassette(path, ...)`: `.url` to connect to."""
    marker = request.node.get_closest_marker("bifrost_cassette")
    if marker is None or len(marker.args) != 1:
        pytest.fail(
            "bifrost_cassette needs @pytest.mark.bifrost_cassette('cassettes/NAME.jsonl', record_mode=...) "
            "(one path, relative to the test file)",
            pytrace=False,
        )
    path = Path(marker.args[0])
    if not path.is_absolute():
        path = Path(request.node.path).parent / path
    mode = _mode(request, marker)
    exists = path.exists() and path.stat().st_size > 0
    records = mode == "all" or (mode in ("once", "new_episodes") and not exists)
    device = CassetteDevice(path, mode, recording=records or mode == "new_episodes")
    device.device = str(marker.kwargs.get("device", "plc1"))
    if not exists and mode == "none":
        pytest.fail(
            f"{path}: no cassette, and record_mode is 'none'; record it with --bifrost-record-mode=once "
            "(or record_mode='once' on the marker) against the real device",
            pytrace=False,
        )
    if device.recording and bifrost_record_target is None:
        pytest.fail(
            f"{path}: record_mode {mode!r} records, but there is no device to record from: give the marker "
            "target='modbus://HOST:PORT?unit=N' (or s7://HOST:PORT?rack=R&slot=S), a --bifrost-devices file naming "
            f"{device.device!r}, or a bifrost_record_target fixture",
            pytrace=False,
        )
    try:
        if records:
            _record(device, str(bifrost_record_target), append=False)
        elif mode == "new_episodes":
            # What the cassette has is replayed; the rest goes to the target through the recording proxy.
            assert bifrost_record_target is not None
            _record(device, bifrost_record_target, append=True)
            host, port, unit, scheme = _address(device.url)
            forward: Any
            if scheme == "opc.tcp":
                from simulators.recording.opcua_forward import OpcuaForward

                forward = OpcuaForward(device.url)  # a session of its own, through the recording proxy
            elif scheme == "s7":
                forward = _S7Forward(host, port, unit)
            else:
                forward = _Forward(host, port)
            device._stoppers.append(forward.close)
            _replay(device, marker, fallback=forward)
        else:
            _replay(device, marker)
        request.node.stash[CASSETTE_DEVICE] = device
        yield device
    finally:
        device.close()


def miss_report(item: pytest.Item) -> str | None:
    """Why a replaying test fails: the requests its cassette could not answer."""
    device = item.stash.get(CASSETTE_DEVICE, None)
    if device is None or not device.misses:
        return None
    lines = [f"{device.path}: the cassette cannot answer {len(device.misses)} request(s):"]
    lines += [f"  {miss.describe()}" for miss in device.misses[:20]]
    lines.append("record them with --bifrost-record-mode=new_episodes (or all) against the real device")
    return "\n".join(lines)


__all__ = ["CassetteDevice", "bifrost_cassette", "bifrost_record_target", "miss_report"]
