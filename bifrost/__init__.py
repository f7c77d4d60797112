"""Bifrost: one async client API for PLCs, and virtual PLCs to test it against.

async with bifrost.connect("modbus://10.0.0.5:502") as plc:
    point = await plc.read("hr:0:float32")
"""

from __future__ import annotations

import bifrost.modbus  # registers the modbus:// schemes
import bifrost.opcua  # registers opc.tcp://
import bifrost.s7  # noqa: F401  - registers the s7:// scheme
from bifrost.connection import Connection
from bifrost.errors import (
    BifrostError,
    ConfigError,
    ConnectError,
    DeviceError,
    EncodeError,
    ProtocolError,
    TimeoutError,
)
from bifrost.modbus.fleet import poll
from bifrost.tags import ByteOrder, DataPoint, DataType, Quality, Tag, TagMap
from bifrost.urls import connect, known_schemes

__version__ = "0.1.0"

__all__ = [
    "BifrostError",
    "ByteOrder",
    "ConfigError",
    "ConnectError",
    "Connection",
    "DataPoint",
    "DataType",
    "DeviceError",
    "EncodeError",
    "ProtocolError",
    "Quality",
    "Tag",
    "TagMap",
    "TimeoutError",
    "__version__",
    "connect",
    "known_schemes",
    "poll",
]
