"""`connect(url)` and the scheme registry that protocols add themselves to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from bifrost.connection import Connection
from bifrost.errors import ConfigError
from bifrost.tags import TagMap

DEFAULT_TIMEOUT = 3.0


@dataclass(frozen=True)
class Param:
    """A query parameter a scheme accepts: `?unit=1`."""

    name: str
    kind: type[int] | type[float] | type[str]
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def describe(self) -> str:
        if self.choices is not None:
            accepted = "|".join(str(choice) for choice in self.choices)
        elif self.minimum is not None and self.maximum is not None:
            accepted = f"{self.kind.__name__} {self.kind(self.minimum)}..{self.kind(self.maximum)}"
        else:
            accepted = self.kind.__name__
        return f"{self.name}=<{accepted}> ({self.help}; default {self.default})"

    def parse(self, raw: str, url: str) -> Any:
        try:
            value = self.kind(raw)
        except ValueError:
            raise ConfigError(f"{url}: {self.name}={raw!r} is not {self.describe()}") from None
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{url}: {self.name}={raw!r} is not one of {self.describe()}")
        if not isinstance(value, str) and not (
            (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)
        ):
            raise ConfigError(f"{url}: {self.name}={raw!r} is out of range: {self.describe()}")
        return value


@dataclass(frozen=True)
class Endpoint:
    """A parsed, validated URL."""

    url: str
    scheme: str
    host: str
    port: int | None
    path: str
    params: Mapping[str, Any]


class ConnectionFactory(Protocol):
    def __call__(
        self, endpoint: Endpoint, *, tags: TagMap | None, timeout: float, engine: str | None, **options: Any
    ) -> Connection: ...


@dataclass(frozen=True)
class Scheme:
    """A URL scheme: how to read its URLs and how to make a connection from one."""

    name: str
    example: str
    factory: ConnectionFactory
    params: tuple[Param, ...] = ()
    default_port: int | None = None
    target: str = "host"  # "host": //host[:port]; "path": a local device path such as /dev/ttyUSB0
    engines: tuple[str, ...] = ()
    # Keyword arguments of connect() beyond the common ones (OPC UA: user, password, certificate...):
    # what must never sit in a URL.
    options: tuple[str, ...] = ()
    params_by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params_by_name", {param.name: param for param in self.params})

    def parse(self, url: str) -> Endpoint:
        parts = urlsplit(url)
        if self.target == "host":
            host = parts.hostname or ""
            if not host:
                raise ConfigError(f"{url}: no host; expected a URL like {self.example}")
            try:
                port = parts.port or self.default_port
            except ValueError:
                raise ConfigError(f"{url}: the port is not a number 0..65535; expected {self.example}") from None
            path = parts.path
        else:
            host, port, path = "", None, parts.path
            if parts.netloc or not path:
                raise ConfigError(f"{url}: expected a device path after {self.name}:// as in {self.example}")
        params: dict[str, Any] = {param.name: param.default for param in self.params}
        for key, raw in parse_qsl(parts.query, keep_blank_values=True):
            param = self.params_by_name.get(key)
            if param is None:
                accepted = "; ".join(p.describe() for p in self.params) or "none"
                raise ConfigError(f"{url}: unknown parameter {key!r}; {self.name}:// accepts: {accepted}")
            params[key] = param.parse(raw, url)
        return Endpoint(url=url, scheme=self.name, host=host, port=port, path=path, params=params)


_SCHEMES: dict[str, Scheme] = {}


def register_scheme(scheme: Scheme) -> None:
    """Add a protocol's URL scheme. Registering a name twice replaces it (a plugin may override)."""
    _SCHEMES[scheme.name] = scheme


def known_schemes() -> dict[str, Scheme]:
    return dict(_SCHEMES)


def parse_url(url: str) -> tuple[Scheme, Endpoint]:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"{url!r} is not a URL; expected one of: {_list_schemes()}")
    name = url.split("://", 1)[0].lower()
    scheme = _SCHEMES.get(name)
    if scheme is None:
        raise ConfigError(f"unknown scheme {name!r} in {url!r}; known schemes: {_list_schemes()}")
    return scheme, scheme.parse(url)


def _list_schemes() -> str:
    return ", ".join(f"{name}:// (e.g. {scheme.example})" for name, scheme in sorted(_SCHEMES.items()))


def connect(
    url: str,
    *,
    tags: TagMap | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    engine: str | None = None,
    **options: Any,
) -> Connection:
    """A connection to the device at `url`; use it with `async with`, or `await` it.

    `engine` picks an implementation where a protocol has several (Modbus: "native" or "python").
    `options` are the scheme's own keyword arguments (opc.tcp://: security, mode, user, password,
    certificate, private_key).
    """
    scheme, endpoint = parse_url(url)
    if engine is not None and engine not in scheme.engines:
        accepted = ", ".join(scheme.engines) or "none (this scheme has one engine)"
        raise ConfigError(f"engine {engine!r} is not available for {scheme.name}://; engines: {accepted}")
    if timeout <= 0:
        raise ConfigError(f"timeout must be positive seconds, got {timeout!r}")
    unknown = sorted(set(options) - set(scheme.options))
    if unknown:
        accepted = ", ".join(scheme.options) or "none"
        raise ConfigError(f"{scheme.name}:// takes no argument {unknown[0]!r}; its own arguments: {accepted}")
    return scheme.factory(endpoint, tags=tags, timeout=timeout, engine=engine, **options)
