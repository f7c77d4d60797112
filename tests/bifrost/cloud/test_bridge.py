"""`bifrost bridge`: the issue's judged check. A served scenario (bifrost-sim serve --json --any-port), a
bridge to mosquitto, an independent subscriber (mosquitto_sub); the broker stops for a while and the
bridge is killed with SIGKILL once. Afterwards nothing is missing, order is kept per tag, and what waited
out the outage is marked historical."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bifrost.cli import app
from bifrost.cloud.bridge import load_bridge_config, parse_duration
from bifrost.errors import ConfigError
from pytest_bifrost.mqtt import MqttBroker

from .conftest import Subscriber

ROOT = Path(__file__).resolve().parents[3]
SCENARIO = ROOT / "scenarios" / "water_tank.yaml"


class Proc:
    """A child process whose stdout lines are read into a queue."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_json(self, done: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and self.lines.empty()):
                raise AssertionError(f"no such line within {timeout}s (exit code {self.proc.poll()})")
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            data = json.loads(line)
            if done(data):
                return data  # type: ignore[no-any-return]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(10)


@pytest.fixture
def served() -> Iterator[str]:
    script = Path(sys.executable).with_name("bifrost-sim")  # the installed command, as a user runs it
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from simulators.cli import main; main()"]
    sim = Proc([*command, "serve", str(SCENARIO), "--json", "--any-port"])
    try:
        devices = sim.wait_json(lambda d: "devices" in d)["devices"]
        yield devices["plc1"]["url"]
    finally:
        sim.stop()


def _config(tmp_path: Path, plc_url: str, broker: MqttBroker) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        f"""
buffer: {{dir: queue, when_full: reject_new}}
health_interval: 100ms
devices:
  plc1:
    url: "{plc_url}"
    tags: {SCENARIO}
    interval: 100ms
sinks:
  cloud: {{kind: mqtt, url: "{broker.url}", topic: "plant/{{device}}/{{tag_path}}", qos: 1, client_id: bridge-1}}
"""
    )
    return path


def _bridge(config: Path) -> Proc:
    return Proc([sys.executable, "-c", "from bifrost.cli import main; main()", "bridge", str(config), "--json"])


def _sink(health: dict[str, Any]) -> dict[str, Any]:
    return health["sinks"]["cloud"]  # type: ignore[no-any-return]


def test_bridge_loses_nothing_over_an_outage_and_a_kill_9(
    served: str, bifrost_mqtt_broker: MqttBroker, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscribe("plant/#")
    config = _config(tmp_path, served, bifrost_mqtt_broker)
    bridge = _bridge(config)
    try:
        bridge.wait_json(lambda h: _sink(h)["sent"] >= 20)
        bifrost_mqtt_broker.stop()
        down_at = time.time()
        bridge.wait_json(lambda h: not _sink(h)["connected"] and _sink(h)["queued"] >= 20)
        bridge.kill()  # kill -9 while messages wait on disk
        bridge = _bridge(config)
        bridge.wait_json(lambda h: h["devices"]["plc1"]["changes"] >= 10 and _sink(h)["queued"] >= 30)
        bifrost_mqtt_broker.start()
        back_at = time.time()
        bridge.wait_json(lambda h: _sink(h)["connected"] and _sink(h)["queued"] == 0 and _sink(h)["sent"] >= 30)
        bridge.wait_json(lambda h: _sink(h)["queued"] == 0)  # a fresh line after more polls
        assert bridge.stop() == 0
    finally:
        bridge.kill()

    # Every message the queue ever held has a sequence number 1..N in its id; all must have arrived.
    import sqlite3

    db = sqlite3.connect(tmp_path / "queue" / "cloud.db")
    (last,) = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'queue'").fetchone()
    (left,) = db.execute("SELECT COUNT(*) FROM queue").fetchone()
    db.close()
    assert left == 0
    got = sub.wait_for(lambda m: len({json.loads(x.payload)["id"] for x in m}) >= last)
    first_seen: dict[str, dict[str, Any]] = {}
    for message in got:
        body = json.loads(message.payload)
        body["topic"] = message.topic
        first_seen.setdefault(body["id"], body)  # de-duplicate on the message id
    seqs = sorted(int(i.split(":")[1]) for i in first_seen)
    assert seqs == list(range(1, last + 1)), "every queued change arrived"
    assert len(got) - len(first_seen) <= 2 * 200, "repeats are bounded by what was in flight"

    per_tag: dict[str, list[float]] = {}
    for body in first_seen.values():
        per_tag.setdefault(body["tag"], []).append(body["timestamp"])
        assert body["topic"] == "plant/plc1/" + body["tag"].replace(".", "/")
    assert all(stamps == sorted(stamps) for stamps in per_tag.values()), "order kept per tag"

    waited = [b for b in first_seen.values() if down_at < b["timestamp"] < back_at - 1.0]
    assert waited, "changes were read while the broker was down"
    assert all(b["historical"] for b in waited), "what waited out the outage is marked historical"
    assert not all(b["historical"] for b in first_seen.values())


def test_config_errors_name_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bridge.yaml"
    bad.write_text("devices:\n  plc1: {url: 'modbus://h:1', tags: t.yaml, interval: soon}\nsinks: {}\n")
    with pytest.raises(ConfigError, match=r"bridge.yaml:2:\d+: devices.plc1.interval"):
        load_bridge_config(bad)
    result = CliRunner().invoke(app, ["bridge", str(bad)])
    assert result.exit_code == 1
    assert "interval" in result.output


def test_config_with_an_unknown_tag_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        f"devices:\n  plc1: {{url: 'modbus://127.0.0.1:1', tags: '{SCENARIO}', only: [nope]}}\n"
        "sinks:\n  s: {kind: mqtt, url: 'mqtt://127.0.0.1:1'}\n"
    )
    result = CliRunner().invoke(app, ["bridge", str(path)])
    assert result.exit_code == 1 and "no such tags: nope" in result.output


def test_durations() -> None:
    assert [parse_duration(v) for v in ("250ms", "2s", "1.5min", "1h", "1d", 3)] == [0.25, 2, 90, 3600, 86400, 3]
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_status_line_names_queue_sent_and_last_error() -> None:
    from bifrost.cli.bridge import _status

    health = {
        "sinks": {"cloud": {"connected": False, "queued": 12, "sent": 30, "last_error": "127.0.0.1:1883: refused"}},
        "devices": {"plc1": {"connected": True, "changes": 42, "last_error": None}},
    }
    line = _status(health)
    assert "cloud [red]down[/] queued 12 sent 30" in line
    assert "plc1 [green]polling[/] 42 changes" in line
    assert line.endswith("last error: 127.0.0.1:1883: refused")
