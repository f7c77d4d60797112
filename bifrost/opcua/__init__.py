"""OPC UA: registers the opc.tcp:// URL scheme. The client itself is imported only when used."""

from __future__ import annotations

from typing import Any

from bifrost.connection import Connection
from bifrost.tags import TagMap
from bifrost.urls import Endpoint, Param, Scheme, register_scheme

ENGINES = ("native", "asyncua")
OPTIONS = ("security", "mode", "user", "password", "certificate", "private_key")


def _open(endpoint: Endpoint, *, tags: TagMap | None, timeout: float, engine: str | None, **options: Any) -> Connection:
    from bifrost.opcua.client import open_connection

    return open_connection(endpoint, tags=tags, timeout=timeout, engine=engine, **options)


register_scheme(
    Scheme(
        "opc.tcp",
        "opc.tcp://10.0.0.5:4840/path?security=Basic256Sha256&mode=SignAndEncrypt",
        _open,
        (
            Param(
                "security",
                str,
                "None",
                "security policy",
                choices=("None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"),
            ),
            Param(
                "mode",
                str,
                "",
                "message security mode (default: SignAndEncrypt with a policy)",
                choices=("", "None", "Sign", "SignAndEncrypt"),
            ),
        ),
        default_port=4840,
        engines=ENGINES,
        options=OPTIONS,
    )
)
