"""RemoteHost: a `bifrost-sim serve --control` in another process or on another machine, driven with the
surface of SimHost (devices and their URLs and logs, plant values, faults, the clock, reset).

    with RemoteHost("http://127.0.0.1:8020", token=...) as host:
        url = host.devices["plc1"].url
        host.plant.set("pump.run", True)
        with host.inject_fault("plc1", "latency", delay="200ms") as fault:
            ...
        assert fault.hits > 0
        host.clock.advance(60)            # a virtual clock (serve --clock virtual)
        host.reset()
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from bifrost import errors
from bifrost._extras import require
from bifrost.errors import ConfigError, ConnectError
from bifrost.tags import TagMap, Value

TOKEN_VARIABLE = "BIFROST_CONTROL_TOKEN"


class _Api:
    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        httpx = require("httpx", "control")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self._httpx = httpx

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except self._httpx.HTTPError as exc:
            raise ConnectError(f"{self.url}: the control API does not answer: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = body.get("error") or body.get("detail") or response.text
            except ValueError:
                detail = response.text
            raise ConfigError(f"{method} {path}: {response.status_code}: {detail}")
        return None if response.status_code == 204 else response.json()

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class RemoteExchange:
    """One exchange of a remote device's traffic log, as the API gives it."""

    plant_time: float
    wall_time: float
    device: str
    client: str
    unit: int | None
    transaction_id: int | None
    function: int
    request: str
    response: str
    refused: bool
    error: str | None
    written: Mapping[str, Value]

    def describe(self) -> str:
        line = f"{self.plant_time:10.3f}s  {self.client:<21} {self.request} -> {self.response}"
        return line + (f"  ({self.error})" if self.error else "")


class RemoteTrafficLog:
    """A remote device's traffic log: what TrafficLog offers for reading."""

    def __init__(self, api: _Api, device: str) -> None:
        self._api = api
        self.device = device

    def _page(self, **params: Any) -> dict[str, Any]:
        found: dict[str, Any] = self._api.call(
            "GET", f"/api/devices/{self.device}/traffic", params={key: v for key, v in params.items() if v is not None}
        )
        return found

    def entries(self, function: int | None = None, unit: int | None = None) -> list[RemoteExchange]:
        out: list[RemoteExchange] = []
        while True:
            page = self._page(function=function, unit=unit, offset=len(out), limit=10_000)
            out.extend(RemoteExchange(**item) for item in page["exchanges"])
            if len(out) >= page["total"] or not page["exchanges"]:
                return out

    requests = entries

    def __iter__(self) -> Iterator[RemoteExchange]:
        return iter(self.entries())

    def __len__(self) -> int:
        return int(self._page(limit=1)["total"])

    def count(self, function: int | None = None, unit: int | None = None) -> int:
        return int(self._page(function=function, unit=unit, limit=1)["total"])

    def writes(self, tag: str) -> list[Value]:
        return [exchange.written[tag] for exchange in self.entries() if tag in exchange.written]

    def errors(self) -> list[RemoteExchange]:
        return [exchange for exchange in self.entries() if exchange.refused]

    def format(self, last: int = 20) -> str:
        entries = self.entries()[-last:]
        return "\n".join("  " + exchange.describe() for exchange in entries) or "  (no traffic)"


class RemoteDevice:
    def __init__(self, api: _Api, name: str, info: Mapping[str, Any]) -> None:
        self.name = name
        self.protocol: str = info["protocol"]
        self.url: str = info["url"]
        self.transport: str = info["transport"]
        self.unit: int | None = info["unit"]
        self.tags = TagMap.model_validate(info["tags"])
        self.log = RemoteTrafficLog(api, name)

    def __repr__(self) -> str:
        return f"RemoteDevice({self.name!r}, {self.url})"


class RemotePlant:
    """The plant's values: get, set (as the process would), snapshot."""

    def __init__(self, api: _Api) -> None:
        self._api = api

    def get(self, tag: str) -> Value:
        value: Value = self._api.call("GET", f"/api/tags/{tag}")["value"]
        return value

    def set(self, tag: str, value: Value) -> None:
        self._api.call("PUT", f"/api/tags/{tag}", json={"value": value})

    def set_many(self, values: Mapping[str, Value]) -> None:
        self._api.call("POST", "/api/tags", json={"values": dict(values)})

    def snapshot(self) -> dict[str, Value]:
        found: dict[str, Value] = self._api.call("GET", "/api/tags")
        return found

    @property
    def time(self) -> float:
        """Plant time, in seconds."""
        return float(self._api.call("GET", "/api/clock")["now"])


class RemoteClock:
    """The plant's clock; `advance` and `run_until` move a virtual one."""

    def __init__(self, api: _Api) -> None:
        self._api = api

    def now(self) -> float:
        return float(self._api.call("GET", "/api/clock")["now"])

    @property
    def mode(self) -> str:
        return str(self._api.call("GET", "/api/clock")["mode"])

    def advance(self, seconds: float) -> float:
        return float(self._api.call("POST", "/api/clock/advance", json={"seconds": seconds})["now"])

    def run_until(
        self, target: float | Callable[[], bool], *, step: float | None = None, limit: float = 3600.0
    ) -> float:
        """To plant time `target`, or in steps (of `step`, default 0.1 s) until `target()` is true; a
        bifrost TimeoutError past `limit` seconds of plant time, as VirtualClock.run_until."""
        if not callable(target):
            return float(self._api.call("POST", "/api/clock/run_until", json={"time": target})["now"])
        start = now = self.now()
        while not target():
            if now - start >= limit:
                raise errors.TimeoutError(f"the condition was still false after {limit:g} s of plant time")
            now = self.advance(step or 0.1)
        return now


class RemoteFault:
    """A fault injected through the API: `clear()` it or use it as a context manager; `active`, `hits`."""

    def __init__(self, api: _Api, info: Mapping[str, Any]) -> None:
        self._api = api
        self.id: int = info["id"]
        self.device: str = info["device"]
        self.kind: str = info["kind"]

    def _state(self) -> dict[str, Any]:
        found: dict[str, Any] = self._api.call("GET", f"/api/faults/{self.id}")
        return found

    @property
    def active(self) -> bool:
        return bool(self._state()["active"])

    @property
    def hits(self) -> int:
        return int(self._state()["hits"])

    def clear(self) -> None:
        self._api.call("DELETE", f"/api/faults/{self.id}")

    def __enter__(self) -> RemoteFault:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.clear()

    def __repr__(self) -> str:
        return f"RemoteFault({self.kind!r} on {self.device!r}, id {self.id})"


class RemoteHost:
    """A served scenario reached through its control API. See the module docstring."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        self._api = _Api(url, token if token is not None else os.environ.get(TOKEN_VARIABLE), timeout)
        self.url = self._api.url
        overview = self._api.call("GET", "/api")
        self.scenario_name: str = overview["scenario"]
        self.shard: str | None = overview.get("shard")
        self.devices = {name: RemoteDevice(self._api, name, info) for name, info in overview["devices"].items()}
        self.skipped: dict[str, str] = overview["skipped"]
        self.plant = RemotePlant(self._api)
        self.clock = RemoteClock(self._api)

    running = True

    def start(self) -> RemoteHost:
        return self  # it runs elsewhere: nothing to start

    def stop(self) -> None:
        self._api.close()

    def __enter__(self) -> RemoteHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url_of(self, device: str) -> str:
        found = self.devices.get(device)
        if found is None:
            raise ConfigError(f"no device {device!r} is served; served: {', '.join(self.devices) or '(none)'}")
        return found.url

    def inject_fault(self, device: str, kind: str, **params: Any) -> RemoteFault:
        """As SimHost.inject_fault: `for_` (or `duration`) for `for`."""
        body = {("for" if key in ("for_", "duration") else key): value for key, value in params.items()}
        return RemoteFault(
            self._api, self._api.call("POST", "/api/faults", json={"device": device, "kind": kind, **body})
        )

    def active_faults(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._api.call("GET", "/api/faults")
        return found

    def clear_faults(self, device: str | None = None) -> None:
        self._api.call("DELETE", "/api/faults", params={"device": device} if device else None)

    def reset(self) -> None:
        self._api.call("POST", "/api/reset")

    def __repr__(self) -> str:
        return f"RemoteHost({self.url!r}, devices={list(self.devices)})"


__all__ = [
    "RemoteClock",
    "RemoteDevice",
    "RemoteExchange",
    "RemoteFault",
    "RemoteHost",
    "RemotePlant",
    "RemoteTrafficLog",
]
