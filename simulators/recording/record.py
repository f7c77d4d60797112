"""Recording: cassettes from the recording proxy (`bifrost-sim proxy --record`) and from a SimHost
device's traffic log.

`ProxyRecorder` is a proxy traffic log (`Proxy(..., log=recorder)`): it pairs each request the proxy
relays with the reply that comes back — by connection and transaction id over Modbus/TCP, in turn
over RTU — and writes each exchange to the cassette as it completes, so a proxy that is killed loses
at most the requests still waiting. `close()` writes those with no answer.

`save_traffic(device, path)` writes what a simulated device served (`host.devices["plc1"]`), from its
traffic log: there the answer time is not kept, so `latency` is null.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from bifrost.modbus import pdu
from bifrost.modbus.framing import Frame, MbapFramer, RtuFramer
from simulators.recording.cassette import CassetteWriter, Entry


def _pdu(data: bytes, framing: str, expect: Any) -> bytes | None:
    """The PDU of one whole frame, cut by bifrost's framers; None when the bytes are no frame."""
    items: list[Any]
    if framing == "mbap":
        items = list(MbapFramer().feed(data))
    else:
        rtu = RtuFramer(expect)
        items = [*rtu.feed(data), *rtu.silence()]
    frames = [item for item in items if type(item) is Frame]
    return frames[0].pdu if frames else None


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
    ) -> None:
        self.device = device
        self.framing = framing
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
                request = _pdu(record.data, self.framing, "requests")
                if request is None:
                    return
                if self._start is None:
                    self._start = record.t
                key = (record.connection, record.transaction_id if self.framing == "mbap" else None)
                if key in self._open:  # RTU: a new request means the last one went unanswered
                    self._write(self._open.pop(key), record.connection, None, None)
                self._open[key] = (record.t, record.unit, request, record.transaction_id)
                return
            key = (record.connection, record.transaction_id if self.framing == "mbap" else None)
            pending = self._open.pop(key, None)
            if pending is None:
                return  # an answer the proxy made up for no request, or one already given up on
            response = _pdu(record.data, self.framing, "responses")
            self._write(pending, record.connection, response, record.t)

    def _write(
        self, pending: tuple[float, int, bytes, int | None], connection: int, response: bytes | None, at: float | None
    ) -> None:
        when, unit, request, transaction_id = pending
        number = self._numbers.setdefault(connection, len(self._numbers) + 1)
        start = self._start if self._start is not None else when
        latency = None if at is None or response is None else max(0.0, at - when)
        self.writer.write(
            Entry("modbus", self.device, unit, number, when - start, request, response, latency, transaction_id)
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


def traffic_entries(log: Any, *, device: str | None = None, protocol: str = "modbus") -> list[Entry]:
    """A traffic log's exchanges (simulators.traffic) as cassette entries."""
    entries: list[Entry] = []
    numbers: dict[str, int] = {}
    exchanges = log.entries()
    start = exchanges[0].plant_time if exchanges else 0.0
    for exchange in exchanges:
        request = exchange.request
        raw = request if isinstance(request, bytes) else pdu.encode_request(request)
        response = None if exchange.response is None else pdu.encode_response(exchange.response)
        number = numbers.setdefault(exchange.client, len(numbers) + 1)
        entries.append(
            Entry(
                protocol,
                device or exchange.device,
                exchange.unit if exchange.unit is not None else 0,
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
        writer.write_many(traffic_entries(device.log, device=device.name, protocol=protocol))
    return Path(path)


__all__ = ["ProxyRecorder", "save_traffic", "traffic_entries"]
