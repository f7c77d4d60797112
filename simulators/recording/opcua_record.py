"""OPC UA exchanges from byte streams: a capture's TCP connections, or a live relay's, as cassette entries.

Each connection's two directions go through an `OpcuaPairer` (simulators.recording.opcua_chunks),
which cuts them into messages and pairs each request with the response of its request id. Used by
the pcap importer (`connection_entries`), and by the recording relay in front of a real OPC UA
server (`OpcuaRecorder`, `OpcuaRecordingRelay`). Only security None can be read; a channel with
another policy is said so in the report and its messages are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from simulators.recording.cassette import CassetteWriter, Entry
from simulators.recording.opcua_chunks import Exchange, OpcuaPairer

PROTOCOL = "opcua"


def _entry(exchange: Exchange, device: str, connection: int, start: float) -> Entry:
    latency = None if exchange.answered_at is None else max(0.0, exchange.answered_at - exchange.t)
    return Entry(
        PROTOCOL,
        device,
        0,
        connection,
        exchange.t - start,
        exchange.request,
        exchange.response,
        latency,
        exchange.request_id,
        exchange.note,
    )


def pair_streams(
    client: Iterable[tuple[float, bytes]], server: Iterable[tuple[float, bytes]]
) -> tuple[list[Exchange], OpcuaPairer]:
    """One captured connection's exchanges, in the order their requests were made: both directions'
    chunks merged by time (the client's first at equal times: a request precedes its answer)."""
    events = sorted(
        [(when, 0, data) for when, data in client] + [(when, 1, data) for when, data in server],
        key=lambda event: (event[0], event[1]),
    )
    pairer = OpcuaPairer()
    exchanges: list[Exchange] = []
    for when, from_server, data in events:
        exchanges.extend(pairer.from_server(data, when) if from_server else pairer.from_client(data, when))
    exchanges.extend(pairer.close())
    exchanges.sort(key=lambda exchange: exchange.t)
    return exchanges, pairer


def notes_of(pairer: OpcuaPairer) -> list[str]:
    notes = list(pairer.notes)
    if pairer.secured_messages:
        policy = pairer.client.policy or pairer.server.policy
        notes.append(
            f"{pairer.secured_messages} message(s) left out: the channel's security policy is {policy}, "
            "and only None can be read"
        )
    return notes


class OpcuaRecorder:
    """Writes the exchanges of live OPC UA connections to a cassette as each completes. Feed it each
    direction's bytes (`from_client`, `from_server`) as they pass; thread-safe."""

    def __init__(self, path: str | Path, *, device: str, append: bool = False, source: str | None = None) -> None:
        self.device = device
        self.writer = CassetteWriter(path, source=source or f"proxy for {device}", append=append)
        self._pairers: dict[int, OpcuaPairer] = {}
        self._numbers: dict[int, int] = {}
        self._start: float | None = None
        self._lock = threading.Lock()
        self.notes: list[str] = []

    @property
    def path(self) -> Path:
        return self.writer.path

    def _pairer(self, connection: int) -> OpcuaPairer:
        pairer = self._pairers.get(connection)
        if pairer is None:
            pairer = self._pairers[connection] = OpcuaPairer()
            self._numbers[connection] = len(self._numbers) + 1
        return pairer

    def from_client(self, connection: int, data: bytes, when: float | None = None) -> None:
        with self._lock:
            at = time.time() if when is None else when
            if self._start is None:
                self._start = at
            self._write(connection, self._pairer(connection).from_client(data, at))

    def from_server(self, connection: int, data: bytes, when: float | None = None) -> None:
        with self._lock:
            at = time.time() if when is None else when
            self._write(connection, self._pairer(connection).from_server(data, at))

    def closed(self, connection: int) -> None:
        """The connection ended: its requests still waiting are written unanswered."""
        with self._lock:
            pairer = self._pairers.pop(connection, None)
            if pairer is not None:
                self._write(connection, pairer.close())
                self.notes.extend(notes_of(pairer))

    def _write(self, connection: int, exchanges: list[Exchange]) -> None:
        number = self._numbers[connection]
        for exchange in exchanges:
            start = self._start if self._start is not None else exchange.t
            self.writer.write(_entry(exchange, self.device, number, start))

    def close(self) -> None:
        for connection in list(self._pairers):
            self.closed(connection)
        self.writer.close()

    def __enter__(self) -> OpcuaRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OpcuaRecordingRelay:
    """A relay in front of a real OPC UA server that records what passes (bytes unchanged):
    `async with OpcuaRecordingRelay((host, port), recorder) as relay: relay.address`."""

    def __init__(self, target: tuple[str, int], recorder: OpcuaRecorder, *, listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.target = target
        self.recorder = recorder
        self.listen = listen
        self._server: asyncio.Server | None = None
        self._count = 0
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the relay is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> OpcuaRecordingRelay:
        self._server = await asyncio.start_server(self._client, *self.listen)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.close()

    async def __aenter__(self) -> OpcuaRecordingRelay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count += 1
        connection = self._count
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, connection, True), self._pump(up_reader, writer, connection, False)
            )
        finally:
            self._writers.difference_update((writer, up_writer))
            self.recorder.closed(connection)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: int, from_client: bool
    ) -> None:
        feed = self.recorder.from_client if from_client else self.recorder.from_server
        try:
            while data := await reader.read(65536):
                feed(connection, data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


__all__ = ["OpcuaRecorder", "OpcuaRecordingRelay", "notes_of", "pair_streams"]
