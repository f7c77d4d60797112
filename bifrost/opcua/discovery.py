"""OPC UA discovery: FindServers and GetEndpoints on a URL, the security each endpoint offers.

On asyncua (extra `opcua`), whatever the connection's engine: discovery opens no session.
"""

from __future__ import annotations

from dataclasses import dataclass

from bifrost._extras import require
from bifrost.errors import ConnectError

_MODES = {1: "None", 2: "Sign", 3: "SignAndEncrypt"}
_TOKENS = {0: "anonymous", 1: "username", 2: "certificate", 3: "issued"}


@dataclass(frozen=True)
class ServerInfo:
    """A server FindServers lists: who it is and where it is found."""

    application_uri: str
    name: str
    kind: str
    discovery_urls: tuple[str, ...]


@dataclass(frozen=True)
class EndpointInfo:
    """An endpoint GetEndpoints lists: its URL, security policy and mode, and the logins it accepts."""

    url: str
    security: str  # "None", "Basic256Sha256", ...
    mode: str  # "None", "Sign", "SignAndEncrypt"
    logins: tuple[str, ...]
    application_uri: str


def _client(url: str, timeout: float) -> object:
    asyncua = require("asyncua", "opcua")
    return asyncua.Client(url, timeout=timeout)


async def find_servers(url: str, timeout: float = 3.0) -> list[ServerInfo]:
    """The servers the discovery endpoint at `url` knows of (a server alone lists itself)."""
    client = _client(url, timeout)
    try:
        found = await client.connect_and_find_servers()  # type: ignore[attr-defined]
    except (OSError, TimeoutError) as exc:
        raise ConnectError(f"{url}: no OPC UA server answers: {exc or type(exc).__name__}") from None
    kinds = {0: "server", 1: "client", 2: "client and server", 3: "discovery server"}
    return [
        ServerInfo(
            application_uri=str(server.ApplicationUri),
            name=str(server.ApplicationName.Text or ""),
            kind=kinds.get(int(server.ApplicationType), str(server.ApplicationType)),
            discovery_urls=tuple(server.DiscoveryUrls or ()),
        )
        for server in found
    ]


async def get_endpoints(url: str, timeout: float = 3.0) -> list[EndpointInfo]:
    """The endpoints of the server at `url`, with the security policy, mode and logins of each."""
    client = _client(url, timeout)
    try:
        found = await client.connect_and_get_server_endpoints()  # type: ignore[attr-defined]
    except (OSError, TimeoutError) as exc:
        raise ConnectError(f"{url}: no OPC UA server answers: {exc or type(exc).__name__}") from None
    return [
        EndpointInfo(
            url=str(endpoint.EndpointUrl),
            security=str(endpoint.SecurityPolicyUri).rsplit("#", 1)[-1],
            mode=_MODES.get(int(endpoint.SecurityMode), str(endpoint.SecurityMode)),
            logins=tuple(
                _TOKENS.get(int(token.TokenType), str(token.TokenType)) for token in endpoint.UserIdentityTokens
            ),
            application_uri=str(endpoint.Server.ApplicationUri),
        )
        for endpoint in found
    ]


__all__ = ["EndpointInfo", "ServerInfo", "find_servers", "get_endpoints"]
