"""A durable store-and-forward queue on SQLite (WAL), for an edge gateway that must lose nothing when
its link drops.

The promises, as AWS Greengrass Stream Manager makes them for its streams:

- a message is committed to the database before `put` returns, so a `kill -9` of the process right after
  loses nothing (the write is in the OS's page cache, which outlives the process);
- messages come out of `pending()` in the order they were put, and leave the queue only through `ack`,
  which the forwarder calls once the broker acknowledged them (MQTT QoS 1 PUBACK): at-least-once;
  once `ack` returned, a message is never handed out again;
- a size cap (`max_bytes`) with a policy when full: `reject_new` (put raises BufferFull) or `drop_oldest`;
- a time to live: a message older than `ttl` seconds is dropped instead of sent;
- each message has an id (`<buffer id>:<sequence>`, unique across restarts of one queue file) that a
  consumer can de-duplicate on.

Fsyncs are batched: with `sync="batched"` (the default) SQLite's WAL is fsynced at most every
`fsync_interval` seconds (and at checkpoints), which bounds what a power cut can lose to that window while
a killed process loses nothing; `sync="full"` fsyncs every commit; `put_many` commits a batch at once.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bifrost.errors import BifrostError, ConfigError

WhenFull = Literal["reject_new", "drop_oldest"]
SyncMode = Literal["batched", "full"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a sequence is never reused, even after acks
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    size INTEGER NOT NULL
);
"""


class BufferFull(BifrostError):
    """The queue is at its size cap and its policy is `reject_new`."""


@dataclass(frozen=True)
class Message:
    """One queued message. `id` is stable across restarts: de-duplicate on it."""

    seq: int
    id: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created_at: float
    expires_at: float | None


@dataclass
class BufferStats:
    put: int = 0
    acked: int = 0
    dropped: int = 0  # by drop_oldest
    rejected: int = 0  # by reject_new
    expired: int = 0  # by the TTL


class DurableBuffer:
    """`DurableBuffer("queue.db", max_bytes=256 * 2**20, when_full="drop_oldest", ttl=24 * 3600)`.

    Not thread-safe: use one from one thread (or one event loop). Close it, or use `with`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 256 * 2**20,
        when_full: WhenFull = "reject_new",
        ttl: float | None = None,
        sync: SyncMode = "batched",
        fsync_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if when_full not in ("reject_new", "drop_oldest"):
            raise ConfigError(f"when_full={when_full!r}: expected 'reject_new' or 'drop_oldest'")
        if sync not in ("batched", "full"):
            raise ConfigError(f"sync={sync!r}: expected 'batched' or 'full'")
        if max_bytes <= 0:
            raise ConfigError(f"max_bytes={max_bytes}: must be above 0")
        if ttl is not None and ttl <= 0:
            raise ConfigError(f"ttl={ttl}: must be above 0 seconds (or None for no TTL)")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.when_full: WhenFull = when_full
        self.ttl = ttl
        self.sync: SyncMode = sync
        self.fsync_interval = fsync_interval
        self.stats = BufferStats()
        self._clock = clock
        # isolation_level=None: we open transactions ourselves, so one put is exactly one commit.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit is written (survives the process) but fsynced only at checkpoints;
        # we checkpoint every fsync_interval. FULL: an fsync per commit.
        self._db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='id'").fetchone()
        if row is None:
            self.id = uuid.uuid4().hex[:12]
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('id', ?)", (self.id,))
            self.id = self._db.execute("SELECT value FROM meta WHERE key='id'").fetchone()[0]
        else:
            self.id = str(row[0])
        self._bytes = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM queue").fetchone()[0])
        self._last_fsync = time.monotonic()

    # -- writing ----------------------------------------------------------------------------------

    def put(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> Message:
        """Queue one message; it is committed when this returns. Raises BufferFull under `reject_new`."""
        return self.put_many([(topic, payload)], qos=qos, retain=retain)[0]

    def put_many(self, messages: Iterable[tuple[str, bytes]], *, qos: int = 1, retain: bool = False) -> list[Message]:
        """Queue several messages in one commit (one fsync under `sync="full"`). All or none."""
        if qos not in (0, 1):
            raise ConfigError(f"qos={qos}: the queue forwards with QoS 0 or 1")
        rows = [(topic, bytes(payload)) for topic, payload in messages]
        sizes = [len(topic.encode()) + len(payload) for topic, payload in rows]
        incoming = sum(sizes)
        if incoming > self.max_bytes:
            self.stats.rejected += len(rows)
            raise BufferFull(f"{self.path}: {incoming} bytes do not fit a queue capped at {self.max_bytes} bytes")
        now = self._clock()
        expires = None if self.ttl is None else now + self.ttl
        out: list[Message] = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._bytes + incoming > self.max_bytes:
                if self.when_full == "reject_new":
                    self.stats.rejected += len(rows)
                    raise BufferFull(
                        f"{self.path}: queue full ({self._bytes} of {self.max_bytes} bytes; when_full=reject_new)"
                    )
                self._drop_oldest(self._bytes + incoming - self.max_bytes)
            for (topic, payload), size in zip(rows, sizes, strict=True):
                cursor = self._db.execute(
                    "INSERT INTO queue (topic, payload, qos, retain, created_at, expires_at, size) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (topic, payload, qos, int(retain), now, expires, size),
                )
                seq = int(cursor.lastrowid or 0)
                out.append(Message(seq, f"{self.id}:{seq}", topic, payload, qos, retain, now, expires))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._bytes += incoming
        self.stats.put += len(out)
        self._maybe_fsync()
        return out

    def _drop_oldest(self, need: int) -> None:
        freed = 0
        while freed < need:
            rows = self._db.execute("SELECT seq, size FROM queue ORDER BY seq LIMIT 256").fetchall()
            if not rows:
                break
            last = rows[0][0]
            for seq, size in rows:
                freed += size
                last = seq
                self.stats.dropped += 1
                if freed >= need:
                    break
            self._db.execute("DELETE FROM queue WHERE seq <= ?", (last,))
        self._bytes -= freed

    # -- reading and acknowledging ----------------------------------------------------------------

    def pending(self, limit: int = 100, *, after: int = 0) -> list[Message]:
        """The oldest unacknowledged messages (sequence above `after`), in order; expired ones are dropped."""
        self._expire()
        rows = self._db.execute(
            "SELECT seq, topic, payload, qos, retain, created_at, expires_at FROM queue "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [
            Message(seq, f"{self.id}:{seq}", topic, bytes(payload), qos, bool(retain), created, expires)
            for seq, topic, payload, qos, retain, created, expires in rows
        ]

    def ack(self, seqs: Sequence[int] | Iterable[int]) -> None:
        """The broker acknowledged these: remove them, in one commit. Acking twice is harmless."""
        batch = [(seq,) for seq in seqs]
        if not batch:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            freed = 0
            for (seq,) in batch:
                row = self._db.execute("DELETE FROM queue WHERE seq = ? RETURNING size", (seq,)).fetchone()
                if row is not None:
                    freed += row[0]
                    self.stats.acked += 1
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._bytes -= freed
        self._maybe_fsync()

    def _expire(self) -> None:
        if self.ttl is None:
            return
        now = self._clock()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            rows = self._db.execute("DELETE FROM queue WHERE expires_at <= ? RETURNING size", (now,)).fetchall()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._bytes -= sum(size for (size,) in rows)
        self.stats.expired += len(rows)

    def meta_get(self, key: str) -> str | None:
        """A small durable value kept beside the queue (a Sparkplug bdSeq, ...)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta_set(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- state ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])

    @property
    def bytes(self) -> int:
        """Bytes queued (topics and payloads), as the size cap counts them."""
        return self._bytes

    def _maybe_fsync(self) -> None:
        if self.sync == "batched" and time.monotonic() - self._last_fsync >= self.fsync_interval:
            self.fsync()

    def fsync(self) -> None:
        """Make everything committed so far survive a power cut (a WAL checkpoint fsyncs the WAL)."""
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._last_fsync = time.monotonic()

    def close(self) -> None:
        """Fsync and close. Safe to call twice."""
        try:
            self.fsync()
        except sqlite3.ProgrammingError:
            return
        self._db.close()

    def __enter__(self) -> DurableBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
