"""The error hierarchy: every error Bifrost raises on purpose is a BifrostError."""

from __future__ import annotations

import builtins


class BifrostError(Exception):
    """Base of every error Bifrost raises on purpose."""


class ConfigError(BifrostError, ValueError):
    """A URL, tag map, scenario or argument is wrong; the message says where and what is accepted.

    `problems` holds one line per mistake when a file had several, each starting `file:line:col:`.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


class EncodeError(BifrostError, ValueError):
    """A value cannot be written as the tag's type: out of range, wrong kind, or too long."""


class ConnectError(BifrostError, ConnectionError):
    """The device could not be reached, or the connection was lost."""


class TimeoutError(BifrostError, builtins.TimeoutError):  # noqa: A001 - DESIGN names it so; it is also the builtin
    """A request got no answer in time. Also a builtin TimeoutError, so `except TimeoutError` catches it."""


class ProtocolError(BifrostError):
    """The peer broke the protocol: a malformed frame, a reply that matches no request."""


class DeviceError(BifrostError):
    """The device answered with an error (a Modbus exception code, an OPC UA status, an S7 error)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


__all__ = [
    "BifrostError",
    "ConfigError",
    "ConnectError",
    "DeviceError",
    "EncodeError",
    "ProtocolError",
    "TimeoutError",
]
