"""Forward a DurableBuffer's messages over a link, in order, acknowledging each only once the far end did.

The link is any `send(message, historical)` coroutine that returns when the broker acknowledged the
message (MQTT QoS 1: the PUBACK) and raises when the link is lost. A batch is sent pipelined (every
message of it in flight at once, in order on one connection, as MQTT keeps order per connection) and
acknowledged in the queue in one commit when all of it was acknowledged by the broker. When the link
drops mid-batch, the unacknowledged rest is sent again on the next connection: at-least-once, and the
message id lets a consumer drop the repeats.

A message is `historical` when it was queued before the current connection came up: it waited out an
outage or a restart, and a Sparkplug sink marks its metrics `is_historical`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bifrost.cloud.buffer import DurableBuffer, Message

Send = Callable[[Message, bool], Awaitable[None]]


@dataclass
class ForwardStats:
    sent: int = 0
    resent_after_reconnect: int = 0
    connections: int = 0
    last_error: str | None = None


class Forwarder:
    """Drains `buffer` through `send` while a link is up. `notify()` after a put wakes it."""

    def __init__(self, buffer: DurableBuffer, *, batch: int = 200, clock: Callable[[], float] = time.time) -> None:
        self.buffer = buffer
        self.batch = batch
        self.stats = ForwardStats()
        self._clock = clock
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()

    def notify(self) -> None:
        self._wake.set()

    async def drained(self) -> None:
        """Wait until the queue is empty (every message acknowledged)."""
        while len(self.buffer):
            self._idle.clear()
            self.notify()
            await self._idle.wait()

    async def run(self, send: Send) -> None:
        """Forward until cancelled or `send` raises (the link dropped); call again on the next link."""
        self.stats.connections += 1
        connected_at = self._clock()
        first = True
        while True:
            self._wake.clear()
            messages = self.buffer.pending(self.batch)
            if not messages:
                self._idle.set()
                await self._wake.wait()
                continue
            if first and self.stats.connections > 1:
                self.stats.resent_after_reconnect += len(messages)
            first = False
            # gather starts the sends in list order, so they go on the wire in queue order.
            tasks = [asyncio.ensure_future(send(m, m.created_at < connected_at)) for m in messages]
            try:
                await asyncio.gather(*tasks)
            except BaseException as exc:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                raise
            self.buffer.ack([m.seq for m in messages])
            self.stats.sent += len(messages)
