"""Recording: cassettes from the recording proxy (`bifrost-sim proxy --record`) and from a SimHost
device's traffic log, for any protocol with a recording codec (simulators.recording.codec).

`ProxyRecorder` is a proxy traffic log (`Proxy(..., log=recorder)`): it pairs each request the proxy
relays with the reply that comes back — by connection and the protocol's id where it has one (Modbus
transaction id, S7 PDU reference), in turn otherwise (RTU) — and writes each exchange to the cassette
as it completes, so a proxy that is killed loses at most the requests still waiting. `close()` writes
those with no answer.

`save_traffic(device, path)` writes what a simulated device served (`host.devices["plc1"]`), from its
traffic log: there the answer time is not kept, so `latency` is null.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from simulators.recording.cassette import CassetteWriter, Entry
from simulators.recording.codec import codec_for


class ProxyRecorder:
    """A proxy's traffic log that writes a cassette (see the module docstring). Thread-safe."""

    def __init__(
        self,
        path: str | Path,
        *,
        device: str,
        framing: str = "mbap",
        append: bool = False,
        source: str | None = None,
        protocol: str = "modbus",
    ) -> None:
        self.device = device
        self.protocol = protocol
        self.codec = codec_for(protocol)
        self.framing = framing if framing in self.codec.framings else self.codec.framings[0]
        self._by_id = self.codec.pairs_by_id(self.framing)
        self.writer = CassetteWriter(path, source=source or f"proxy for {device}", append=append)
        self._open: OrderedDict[tuple[int, int | None], tuple[float, int, bytes, int | None]] = OrderedDict()
        self._start: float | None = None
        self._numbers: dict[int, int] = {}
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.writer.path

    def __call__(self, record: Any) -> None:
        if record.event not in ("request", "response") or record.unit is None:
            return
        with self._lock:
            if record.event == "request":
                request = self.codec.unwrap(self.framing, record.data, "requests")
                if request is None:
                    return
                if self._start is None:
                    self._start = record.t
                key = (record.connection, record.transaction_id if self._by_id else None)
                if key in self._open:  # RTU: a new request means the last one went unanswered
                    self._write(self._open.pop(key), record.connection, None, None)
                self._open[key] = (record.t, record.unit, request, record.transaction_id)
                return
            key = (record.connection, record.transaction_id if self._by_id else None)
            pending = self._open.pop(key, None)
            if pending is None:
                return  # an answer the proxy made up for no request, or one already given up on
            response = self.codec.unwrap(self.framing, record.data, "responses")
            self._write(pending, record.connection, response, record.t)

    def _write(
        self, pending: tuple[float, int, bytes, int | None], connection: int, response: bytes | None, at: float | None
    ) -> None:
        when, unit, request, transaction_id = pending
        number = self._numbers.setdefault(connection, len(self._numbers) + 1)
        start = self._start if self._start is not None else when
        latency = None if at is None or response is None else max(0.0, at - when)
        self.writer.write(
            Entry(self.protocol, self.device, unit, number, when - start, request, response, latency, transaction_id)
        )

    def close(self) -> None:
        """Write the requests still waiting for an answer (with none), and close the cassette."""
        with self._lock:
            for (connection, _), pending in list(self._open.items()):
                self._write(pending, connection, None, None)
            self._open.clear()
            self.writer.close()

    def __enter__(self) -> ProxyRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def traffic_entries(
    log: Any, *, device: str | None = None, protocol: str = "modbus", served: Any = None
) -> list[Entry]:
    """A traffic log's exchanges (simulators.traffic) as cassette entries; `served` is the device
    that logged them (what its codec may need to know of it: an S7 CPU's rack and slot)."""
    codec = codec_for(protocol)
    entries: list[Entry] = []
    numbers: dict[str, int] = {}
    exchanges = log.entries()
    start = exchanges[0].plant_time if exchanges else 0.0
    for exchange in exchanges:
        kept = codec.log_exchange(exchange, served)
        if kept is None:
            continue
        unit, raw, response = kept
        number = numbers.setdefault(exchange.client, len(numbers) + 1)
        entries.append(
            Entry(
                protocol,
                device or exchange.device,
                unit,
                number,
                exchange.plant_time - start,
                raw,
                response,
                None,
                exchange.transaction_id,
                exchange.error,
            )
        )
    return entries


def save_traffic(device: Any, path: str | Path, *, append: bool = False) -> Path:
    """Write a SimHost device's traffic log (`host.devices["plc1"]`) to a cassette."""
    protocol = getattr(device, "protocol", "modbus")
    with CassetteWriter(path, source=f"traffic log of {device.name}", append=append) as writer:
        writer.write_many(traffic_entries(device.log, device=device.name, protocol=protocol, served=device))
    return Path(path)


__all__ = ["ProxyRecorder", "save_traffic", "traffic_entries"]
