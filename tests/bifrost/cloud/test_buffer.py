"""The durable queue: order, acks, the size cap and its policies, the TTL, and a real kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bifrost.cloud.buffer import BufferFull, DurableBuffer
from bifrost.errors import ConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_messages_come_out_in_order_and_leave_only_when_acked(tmp_path: Path) -> None:
    with DurableBuffer(tmp_path / "q.db") as buf:
        sent = [buf.put("t/a", f"m{i}".encode()) for i in range(5)]
        assert [m.payload for m in buf.pending(10)] == [f"m{i}".encode() for i in range(5)]
        buf.ack([sent[0].seq, sent[1].seq])
        assert [m.seq for m in buf.pending(10)] == [m.seq for m in sent[2:]]
        assert [m.seq for m in buf.pending(10, after=sent[3].seq)] == [sent[4].seq]
        buf.ack([sent[0].seq])  # twice: harmless
        assert buf.stats.acked == 2


def test_ids_are_unique_across_reopen_and_sequences_never_reused(tmp_path: Path) -> None:
    with DurableBuffer(tmp_path / "q.db") as buf:
        first = buf.put("t", b"x")
        buf.ack([first.seq])
    with DurableBuffer(tmp_path / "q.db") as again:
        second = again.put("t", b"y")
    assert second.id.split(":")[0] == first.id.split(":")[0]
    assert second.seq > first.seq and second.id != first.id


def test_queue_survives_reopen(tmp_path: Path) -> None:
    with DurableBuffer(tmp_path / "q.db") as buf:
        buf.put_many([("t", b"1"), ("t", b"2")])
    with DurableBuffer(tmp_path / "q.db") as buf:
        assert [m.payload for m in buf.pending()] == [b"1", b"2"]
        assert buf.bytes == 4


def test_reject_new_when_full(tmp_path: Path) -> None:
    with DurableBuffer(tmp_path / "q.db", max_bytes=30, when_full="reject_new") as buf:
        buf.put("t", b"a" * 9)  # 10 bytes with the topic
        buf.put("t", b"b" * 9)
        buf.put("t", b"c" * 9)
        with pytest.raises(BufferFull, match="queue full"):
            buf.put("t", b"d")
        assert [m.payload[:1] for m in buf.pending()] == [b"a", b"b", b"c"]
        assert buf.stats.rejected == 1
        buf.ack([buf.pending(1)[0].seq])
        buf.put("t", b"d")  # room again


def test_drop_oldest_when_full(tmp_path: Path) -> None:
    with DurableBuffer(tmp_path / "q.db", max_bytes=30, when_full="drop_oldest") as buf:
        for letter in b"abcde":
            buf.put("t", bytes([letter]) * 9)
        assert [m.payload[:1] for m in buf.pending()] == [b"c", b"d", b"e"]
        assert buf.stats.dropped == 2
        assert buf.bytes == 30


def test_a_message_larger_than_the_cap_is_rejected_under_either_policy(tmp_path: Path) -> None:
    with (
        DurableBuffer(tmp_path / "q.db", max_bytes=8, when_full="drop_oldest") as buf,
        pytest.raises(BufferFull, match="do not fit"),
    ):
        buf.put("t", b"0123456789")


def test_ttl_drops_expired_messages(tmp_path: Path) -> None:
    clock = Clock()
    with DurableBuffer(tmp_path / "q.db", ttl=60, clock=clock) as buf:
        buf.put("t", b"old")
        clock.now += 30
        buf.put("t", b"new")
        clock.now += 31
        assert [m.payload for m in buf.pending()] == [b"new"]
        assert buf.stats.expired == 1
        assert buf.bytes == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"when_full": "overwrite"}, "when_full"),
        ({"sync": "sometimes"}, "sync"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"ttl": -1}, "ttl"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DurableBuffer(tmp_path / "q.db", **kwargs)  # type: ignore[arg-type]


def test_full_sync_mode_round_trips(tmp_path: Path) -> None:
    with DurableBuffer(tmp_path / "q.db", sync="full") as buf:
        buf.put("t", b"x")
        assert len(buf) == 1


# A child that puts messages, acks every other batch as a forwarder would, and reports each step on
# stdout only after the call returned. The parent kills it with SIGKILL mid-stream.
CHILD = r"""
import sys
from bifrost.cloud.buffer import DurableBuffer
buf = DurableBuffer(sys.argv[1])
i = 0
while True:
    m = buf.put("plant/tag", b"v%d" % i)
    print("put", m.seq, flush=True)
    if i % 3 == 2:
        done = [p.seq for p in buf.pending(2)]
        print("acking", *done, flush=True)
        buf.ack(done)
        print("acked", *done, flush=True)
    i += 1
"""


def test_kill_9_loses_nothing_and_resends_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    seen: dict[str, set[int]] = {"put": set(), "acking": set(), "acked": set()}

    def note(line: str) -> None:
        word, *seqs = line.split()
        seen[word].update(int(s) for s in seqs)

    for line in child.stdout:
        note(line)
        if len(seen["put"]) >= 400:
            break
    os.kill(child.pid, signal.SIGKILL)
    for line in child.stdout:  # what it printed before it died: each line is a call that returned
        note(line)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    with DurableBuffer(path) as buf:
        pending = {m.seq for m in buf.pending(10_000)}
        # An ack under way when the kill came may or may not have committed; every other put must be there.
        assert seen["put"] - seen["acking"] <= pending, "a message whose put returned was lost"
        assert not pending & seen["acked"], "a message whose ack returned is handed out again"
        payloads = [m.payload for m in buf.pending(10_000)]
        assert payloads == sorted(payloads, key=lambda p: int(p[1:])), "order kept"
