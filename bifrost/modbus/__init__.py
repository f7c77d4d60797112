"""Modbus: registers the modbus:// URL schemes. The client itself is imported only when used."""

from __future__ import annotations

from typing import Any

from bifrost.connection import Connection
from bifrost.tags import TagMap
from bifrost.urls import Endpoint, Param, Scheme, register_scheme

ENGINES = ("native", "python")

_UNIT = Param("unit", int, 1, "unit (slave) id", minimum=0, maximum=255)
# Opt-in pipelining on Modbus TCP (the native engine): several requests on the wire, matched by
# transaction id. A device that cannot take it is detected, and served one at a time.
_IN_FLIGHT = Param(
    "max_in_flight", int, 1, "requests in flight on the connection (native engine)", minimum=1, maximum=64
)
_SERIAL = (
    Param("baud", int, 19200, "bits per second", minimum=300, maximum=4_000_000),
    Param("parity", str, "E", "parity", choices=("N", "E", "O")),
    Param("stopbits", int, 1, "stop bits", choices=(1, 2)),
    Param("bytesize", int, 8, "data bits", choices=(7, 8)),
)


def _open(endpoint: Endpoint, *, tags: TagMap | None, timeout: float, engine: str | None, **options: Any) -> Connection:
    # Modbus declares no options, so connect() passes none.
    from bifrost.modbus.client import open_connection

    return open_connection(endpoint, tags=tags, timeout=timeout, engine=engine)


register_scheme(
    Scheme("modbus", "modbus://10.0.0.5:502?unit=1", _open, (_UNIT, _IN_FLIGHT), default_port=502, engines=ENGINES)
)
register_scheme(
    Scheme(
        "modbus+rtu",
        "modbus+rtu:///dev/ttyUSB0?baud=19200&parity=E&unit=1",
        _open,
        (_UNIT, *_SERIAL),
        target="path",
        engines=ENGINES,
    )
)
register_scheme(
    Scheme(
        "modbus+rtu+tcp", "modbus+rtu+tcp://10.0.0.5:4001?unit=1", _open, (_UNIT,), default_port=502, engines=ENGINES
    )
)
