"""A real MQTT broker for tests: Debian's mosquitto as a child process (amqtt in-process when mosquitto
is not installed), on a free port, that a test can stop and start again on the same port (an outage).

mosquitto cannot listen on port 0 and say which port it got, so the port is found by a bind probe: bind
127.0.0.1:0, read the port, close, start mosquitto on it. Another process may take the port in between
(pytest -n 2 workers do this all day); mosquitto then exits with "Address already in use" and we probe
again, up to `ATTEMPTS` times. Readiness is a TCP connect that succeeds, polled with a bound while the
process is alive, never a sleep; mosquitto's "running" log line (written once its listeners are open)
is what says the port is its own, since a connect alone could reach whoever took the port.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

BrokerKind = Literal["auto", "mosquitto", "amqtt"]
ATTEMPTS = 8
START_TIMEOUT = 10.0


class BrokerError(RuntimeError):
    """The broker could not start; the message carries its log."""


@dataclass(frozen=True)
class BrokerTls:
    """Serve MQTT over TLS with these PEM files; `require_certificate` asks clients for one (mutual TLS)."""

    ca: Path
    cert: Path
    key: Path
    require_certificate: bool = True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class MqttBroker:
    """`broker.start()`, `broker.stop()`, `broker.start()` again on the same port; `host`, `port`, `url`."""

    def __init__(
        self,
        *,
        kind: BrokerKind = "auto",
        tls: BrokerTls | None = None,
        host: str = "127.0.0.1",
        users: dict[str, str] | None = None,
        config: str = "",
    ) -> None:
        found = mosquitto_path()
        if kind == "auto":
            kind = "mosquitto" if found else "amqtt"
        if kind == "mosquitto" and not found:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        if kind == "amqtt" and (tls is not None or users):
            raise BrokerError("the amqtt fallback serves plain anonymous MQTT only; TLS and users need mosquitto")
        self.kind: Literal["mosquitto", "amqtt"] = kind
        self.tls = tls
        self.host = host
        self.port = 0
        self.extra_config = config
        self.users = dict(users or {})  # username -> password; when given, anonymous clients are refused
        self._binary = found
        self._dir = Path(tempfile.mkdtemp(prefix="bifrost-mqtt-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._amqtt: _AmqttThread | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._amqtt is not None

    def start(self) -> MqttBroker:
        """Start (or start again, on the port it had). Returns when the broker accepts connections."""
        if self.running:
            return self
        keep_port = self.port != 0
        last = ""
        for _ in range(ATTEMPTS):
            port = self.port if keep_port else free_port(self.host)
            try:
                self._start_on(port)
            except _AddressInUse as exc:
                last = str(exc)
                if keep_port:
                    # The port we must come back on is briefly taken: wait a little for it, boundedly.
                    time.sleep(0.05)
                continue
            self.port = port
            return self
        raise BrokerError(f"the {self.kind} broker found no free port in {ATTEMPTS} attempts: {last}")

    def _start_on(self, port: int) -> None:
        if self.kind == "amqtt":
            thread = _AmqttThread(self.host, port)
            thread.start_and_wait()
            self._amqtt = thread
            return
        conf = self._dir / "mosquitto.conf"
        log = self._dir / "mosquitto.log"
        # Persistence (saved on a graceful stop) keeps persistent sessions and their queued QoS 1 messages
        # across an outage, as a production broker does; a kill loses what was not saved, as a crash does.
        lines = [
            f"listener {port} {self.host}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            "persistence true",
            f"persistence_location {self._dir}/",
            "log_dest stderr",
            # Started as root, mosquitto would switch to user `mosquitto`, who cannot write our temp folder.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
        ]
        if self.users:
            lines.append(f"password_file {self._password_file()}")
        if self.tls is not None:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.cert}", f"keyfile {self.tls.key}"]
            if self.tls.require_certificate:
                lines += ["require_certificate true", "use_identity_as_username true"]
        conf.write_text("\n".join([*lines, self.extra_config, ""]))
        assert self._binary is not None
        offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:  # appended: one log across restarts
            proc = subprocess.Popen([self._binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = log.read_bytes()[offset:].decode(errors="replace")
            if proc.poll() is not None:
                if "in use" in text.lower():
                    raise _AddressInUse(text.strip())
                raise BrokerError(f"mosquitto exited with {proc.returncode}:\n{text}")
            if " running" in text and _accepts(self.host, port):
                self._proc = proc
                return
            time.sleep(0.005)  # a poll interval, bounded by the deadline above
        proc.kill()
        proc.wait()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{port} in {START_TIMEOUT}s:\n{log.read_text()}")

    def _password_file(self) -> Path:
        path = self._dir / "passwords"
        path.write_text("".join(f"{user}:{password}\n" for user, password in self.users.items()))
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        subprocess.run([tool, "-U", str(path)], check=True, capture_output=True)  # hash them in place
        return path

    def stop(self, *, crash: bool = False) -> None:
        """Stop the broker (an outage); clients see their connection drop. `crash=True` kills it (SIGKILL:
        what it held in memory is lost); otherwise SIGTERM, and it saves its sessions. Safe to call twice."""
        if self._proc is not None:
            if crash:
                self._proc.kill()
            else:
                self._proc.terminate()
            try:
                self._proc.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._amqtt is not None:
            self._amqtt.stop()
            self._amqtt = None

    def log(self) -> str:
        path = self._dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> MqttBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AddressInUse(Exception):
    pass


class _AmqttThread:
    """amqtt's broker on its own event loop in a thread: the fallback where mosquitto is absent."""

    def __init__(self, host: str, port: int) -> None:
        import asyncio
        import threading

        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="amqtt", daemon=True)
        self._broker: object = None

    def start_and_wait(self) -> None:
        import asyncio

        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise BrokerError("neither mosquitto nor amqtt is installed; apt-get install mosquitto") from exc
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "sys_interval": 0,
            "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
            "topic-check": {"enabled": False},
        }
        self._thread.start()

        async def start() -> object:
            import warnings

            with warnings.catch_warnings():
                # amqtt 0.12 warns about its own plugin loading and optional psutil; nothing for us to do.
                warnings.simplefilter("ignore", DeprecationWarning)
                broker = Broker(config, loop=self._loop)
                await broker.start()
            return broker

        try:
            self._broker = asyncio.run_coroutine_threadsafe(start(), self._loop).result(START_TIMEOUT)
        except OSError as exc:
            self._shutdown_loop()
            if "in use" in str(exc).lower():
                raise _AddressInUse(str(exc)) from exc
            raise

    def stop(self) -> None:
        import asyncio

        if self._broker is not None:
            shutdown = self._broker.shutdown  # type: ignore[attr-defined]
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(START_TIMEOUT)
            self._broker = None
        self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT)
