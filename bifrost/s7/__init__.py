"""Siemens S7 (S7comm over ISO-on-TCP): registers the s7:// URL scheme. The client is imported when used."""

from __future__ import annotations

from typing import Any

from bifrost.connection import Connection
from bifrost.tags import TagMap
from bifrost.urls import Endpoint, Param, Scheme, register_scheme

_PARAMS = (
    Param("rack", int, 0, "rack of the CPU", minimum=0, maximum=7),
    Param("slot", int, 1, "slot of the CPU (1 on S7-1200/1500, 2 on most S7-300)", minimum=0, maximum=31),
    Param("pdu", int, 960, "PDU size to ask for (the CPU may grant less)", minimum=240, maximum=960),
    Param("type", int, 1, "connection type: 1 PG, 2 OP, 3 S7 basic", choices=(1, 2, 3)),
)


def _open(endpoint: Endpoint, *, tags: TagMap | None, timeout: float, engine: str | None, **options: Any) -> Connection:
    # S7 declares no options, so connect() passes none.
    from bifrost.s7.client import open_connection

    return open_connection(endpoint, tags=tags, timeout=timeout)


register_scheme(Scheme("s7", "s7://10.0.0.5:102?rack=0&slot=1", _open, _PARAMS, default_port=102))
