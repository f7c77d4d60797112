"""The HTTP control API of a running SimHost, on FastAPI.

FastAPI because its models are pydantic's (the scenario models already are), it writes the OpenAPI
document from them (`/openapi.json`, browsable at `/docs`), and it runs plain `def` endpoints on a thread
pool, so a call into the host (which may block briefly: a clock advance runs the plant) never stalls the
event stream. Every endpoint is a thin call into SimHost; the host is thread-safe.

With a token, every request must carry it: `Authorization: Bearer TOKEN`, or `?token=TOKEN` (for a
browser's EventSource, which cannot set headers).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from bifrost.errors import BifrostError, ConfigError
from bifrost.tags import Value
from simulators.clock import VirtualClock

if TYPE_CHECKING:
    from simulators.faults.faultset import FaultHandle
    from simulators.host import SimHost
    from simulators.traffic import Exchange

_EVENT_POLL = 0.2  # seconds between looks at the traffic logs for the event stream


class DeviceOut(BaseModel):
    protocol: str
    url: str
    transport: str
    unit: int | None
    tags: dict[str, Any] = Field(description="the device's tag database (bifrost.TagMap as JSON)")


class Overview(BaseModel):
    scenario: str
    devices: dict[str, DeviceOut]
    skipped: dict[str, str]
    clock: dict[str, Any]
    shard: str | None = None


class SetValue(BaseModel):
    value: bool | int | float | str


class SetMany(BaseModel):
    values: dict[str, bool | int | float | str]


class FaultIn(BaseModel):
    """A fault as a scenario writes it: `{"device": "plc1", "kind": "latency", "delay": "200ms"}`."""

    model_config = {
        "extra": "allow",
        "json_schema_extra": {"examples": [{"device": "plc1", "kind": "latency", "delay": "200ms"}]},
    }

    device: str
    kind: str


class FaultOut(BaseModel):
    id: int | None = Field(description="set for faults injected through this API (DELETE /api/faults/{id})")
    device: str
    kind: str
    active: bool
    hits: int
    spec: dict[str, Any]


class Advance(BaseModel):
    seconds: float = Field(ge=0)


class RunUntil(BaseModel):
    time: float = Field(ge=0, description="plant time, in seconds")


def exchange_json(exchange: Exchange) -> dict[str, Any]:
    codec = exchange.codec
    return {
        "plant_time": exchange.plant_time,
        "wall_time": exchange.wall_time,
        "device": exchange.device,
        "client": exchange.client,
        "unit": exchange.unit,
        "transaction_id": exchange.transaction_id,
        "function": exchange.function,
        "request": codec.describe_request(exchange.request),
        "response": codec.describe_response(exchange.response),
        "refused": exchange.refused,
        "error": exchange.error,
        "written": dict(exchange.written),
    }


def clock_json(host: SimHost) -> dict[str, Any]:
    clock = host.plant.clock
    virtual = isinstance(clock, VirtualClock)
    return {"mode": "virtual" if virtual else "system", "now": clock.now(), "speed": getattr(clock, "speed", None)}


def create_app(
    host: SimHost, *, token: str | None = None, shard: str | None = None, dashboard: Callable[[str], str] | None = None
) -> FastAPI:
    """The API of `host`. `dashboard` gives the page served at `/`."""
    app = FastAPI(
        title="Bifrost simulator control",
        version="1",
        description="Drive a running `bifrost-sim serve`: tags, faults, traffic, clock and reset.",
    )
    injected: dict[int, tuple[str, str, FaultHandle, dict[str, Any]]] = {}
    ids = itertools.count(1)
    lock = threading.Lock()

    @app.middleware("http")
    async def _token(request: Request, call_next: Any) -> Any:
        if token is not None:
            given = request.query_params.get("token") or request.headers.get("authorization", "").removeprefix(
                "Bearer "
            )
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "this control API needs its token (Authorization: Bearer ...)"}, 401)
        return await call_next(request)

    @app.exception_handler(ConfigError)
    async def _config_error(request: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 400)

    @app.exception_handler(BifrostError)
    async def _bifrost_error(request: Request, exc: BifrostError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 400)

    def _device(name: str) -> Any:
        found = host.devices.get(name)
        if found is None:
            raise HTTPException(404, f"no device {name!r} is served; served: {', '.join(host.devices) or '(none)'}")
        return found

    def _tag(name: str) -> str:
        if name not in host.scenario.tags:
            raise HTTPException(404, f"no tag {name!r} in {host.scenario.scenario!r}")
        return name

    @app.get("/api", response_model=Overview, summary="The scenario, its devices and URLs, the clock")
    def overview() -> Overview:
        devices = {
            name: DeviceOut(
                protocol=device.protocol,
                url=device.url,
                transport=device.transport,
                unit=device.unit,
                tags=device.tags.model_dump(mode="json"),
            )
            for name, device in host.devices.items()
        }
        return Overview(
            scenario=host.scenario.scenario, devices=devices, skipped=host.skipped, clock=clock_json(host), shard=shard
        )

    @app.get("/api/tags", summary="Every tag's value")
    def tags() -> dict[str, Value]:
        return host.plant.snapshot()

    @app.get("/api/tags/{name}", summary="One tag's value")
    def get_tag(name: str) -> dict[str, Any]:
        return {"name": name, "value": host.plant.get(_tag(name))}

    @app.put("/api/tags/{name}", summary="Set one tag, as the process would")
    def set_tag(name: str, body: SetValue) -> dict[str, Any]:
        host.plant.set(_tag(name), body.value)
        return {"name": name, "value": host.plant.get(name)}

    @app.post("/api/tags", summary="Set several tags at once")
    def set_tags(body: SetMany) -> dict[str, Value]:
        for name in body.values:
            _tag(name)
        host.call(_set_all, host, body.values)  # on the loop thread: no tick sees half of them
        return {name: host.plant.get(name) for name in body.values}

    @app.get("/api/faults", response_model=list[FaultOut], summary="The faults in force, with their hits")
    def faults() -> list[FaultOut]:
        out = []
        with lock:
            known = {id(handle.fault): fault_id for fault_id, (_, _, handle, _) in injected.items()}
        for name, active in host.active_faults().items():
            for fault in active:
                spec = fault.spec
                out.append(
                    FaultOut(
                        id=known.get(id(fault)),
                        device=name,
                        kind=spec.kind,
                        active=True,
                        hits=fault.hits,
                        spec={"probability": spec.probability, **dict(spec.params), **dict(spec.match.items())},
                    )
                )
        return out

    @app.post("/api/faults", status_code=201, response_model=FaultOut, summary="Switch a fault on now")
    def inject(body: FaultIn) -> FaultOut:
        params = dict(body.model_extra or {})
        handle = host.inject_fault(body.device, body.kind, **params)
        with lock:
            fault_id = next(ids)
            injected[fault_id] = (body.device, body.kind, handle, params)
        return FaultOut(
            id=fault_id, device=body.device, kind=body.kind, active=handle.active, hits=handle.hits, spec=params
        )

    @app.get("/api/faults/{fault_id}", response_model=FaultOut, summary="One injected fault: active? hits?")
    def fault(fault_id: int) -> FaultOut:
        device, kind, handle, params = _injected(fault_id)
        return FaultOut(id=fault_id, device=device, kind=kind, active=handle.active, hits=handle.hits, spec=params)

    @app.delete("/api/faults/{fault_id}", status_code=204, summary="Clear one injected fault")
    def clear_fault(fault_id: int) -> None:
        _injected(fault_id)[2].clear()

    @app.delete("/api/faults", status_code=204, summary="Clear every fault (of one device, with ?device=)")
    def clear_faults(device: str | None = None) -> None:
        host.clear_faults(device)

    def _injected(fault_id: int) -> tuple[str, str, FaultHandle, dict[str, Any]]:
        with lock:
            found = injected.get(fault_id)
        if found is None:
            raise HTTPException(404, f"no fault {fault_id} was injected through this API")
        return found

    @app.get("/api/devices/{name}/traffic", summary="A device's traffic log, oldest first, filtered and paged")
    def traffic(
        name: str,
        function: int | None = None,
        unit: int | None = None,
        offset: int = Query(0, ge=0),
        limit: int = Query(100, ge=1, le=10_000),
    ) -> dict[str, Any]:
        log = _device(name).log
        entries = log.requests(function, unit)
        page = entries[offset : offset + limit]
        return {
            "device": name,
            "total": len(entries),
            "dropped": log.dropped,
            "offset": offset,
            "exchanges": [exchange_json(entry) for entry in page],
        }

    @app.get("/api/clock", summary="The plant clock: mode, plant time, speed")
    def clock() -> dict[str, Any]:
        return clock_json(host)

    @app.post("/api/clock/advance", summary="Move a virtual clock forward")
    def advance(body: Advance) -> dict[str, Any]:
        _virtual().advance(body.seconds)
        return clock_json(host)

    @app.post("/api/clock/run_until", summary="Move a virtual clock to a plant time")
    def run_until(body: RunUntil) -> dict[str, Any]:
        clock = _virtual()
        clock.advance(max(0.0, body.time - clock.now()))
        return clock_json(host)

    def _virtual() -> VirtualClock:
        clock = host.plant.clock
        if not isinstance(clock, VirtualClock):
            raise HTTPException(409, "this plant runs on the system clock; serve it with --clock virtual to move time")
        return clock

    @app.post("/api/reset", summary="Back to the start: values, clock, logs, faults")
    def reset() -> dict[str, Any]:
        with lock:
            injected.clear()
        host.reset()
        return clock_json(host)

    @app.get("/api/events", summary="Server-sent events: tag changes (`tags`) and traffic (`traffic`)")
    async def events(request: Request) -> StreamingResponse:
        return StreamingResponse(_stream(host, request), media_type="text/event-stream")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        if dashboard is None:
            raise HTTPException(404, "no dashboard here")
        return dashboard(host.scenario.scenario)

    return app


def _set_all(host: SimHost, values: Mapping[str, Value]) -> None:
    for name, value in values.items():
        host.plant.set(name, value)


async def _stream(host: SimHost, request: Request) -> AsyncIterator[str]:
    """Tag changes as the plant makes them, and each device's new exchanges, as SSE messages."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Value]] = asyncio.Queue(maxsize=1000)

    def changed(changes: Mapping[str, Value]) -> None:  # on the plant's thread, its lock held
        def put() -> None:
            if not queue.full():  # a slow reader misses changes rather than growing the queue
                queue.put_nowait(dict(changes))

        loop.call_soon_threadsafe(put)

    unsubscribe = host.plant.on_change(changed)
    seen = {name: len(device.log) + device.log.dropped for name, device in host.devices.items()}
    try:
        yield f"event: tags\ndata: {json.dumps(host.plant.snapshot())}\n\n"
        while not await request.is_disconnected():
            try:
                changes = await asyncio.wait_for(queue.get(), _EVENT_POLL)
                yield f"event: tags\ndata: {json.dumps(changes)}\n\n"
            except asyncio.TimeoutError:
                pass
            for name, device in host.devices.items():
                total = len(device.log) + device.log.dropped
                fresh = total - seen[name]
                if fresh > 0:
                    for entry in device.log.entries()[-min(fresh, 100) :]:
                        yield f"event: traffic\ndata: {json.dumps(exchange_json(entry))}\n\n"
                seen[name] = total
    finally:
        unsubscribe()


__all__ = ["create_app", "exchange_json"]
