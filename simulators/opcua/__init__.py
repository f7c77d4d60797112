"""The OPC UA front-end of the simulator, served by C open62541 through bifrost._native.

- `nodes.py`: how a device's map becomes variables (NodeIds, browse paths, types; no I/O);
- `server.py`: one device's server, kept in step with the plant both ways;
- `model.py`: the strict scenario model of an OPC UA device;
- `frontend.py`: what simulators.protocols registers.
"""

from __future__ import annotations

from simulators import protocols
from simulators.opcua.frontend import FRONTEND
from simulators.opcua.model import OpcuaDeviceModel

protocols.register(FRONTEND)

__all__ = ["OpcuaDeviceModel"]
