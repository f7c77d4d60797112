"""The Modbus front-end of the simulator: TCP, RTU over TCP and RTU on a pty.

- `device.py`: a device answering decoded requests against the plant (no I/O);
- `map.py`: the register map of one device (tags onto coils, inputs and registers);
- `server.py`: the transports and listeners, on one asyncio loop;
- `model.py`: the strict scenario model of a Modbus device and the checks of its map;
- `requests.py`, `traffic.py`: how its requests read to fault matches and to the traffic log;
- `frontend.py`: what simulators.protocols registers.
"""

from __future__ import annotations

from simulators import protocols
from simulators.modbus.device import ModbusDevice
from simulators.modbus.frontend import FRONTEND
from simulators.modbus.model import ModbusDeviceModel
from simulators.modbus.server import Endpoint, ModbusServer

protocols.register(FRONTEND)

__all__ = ["Endpoint", "ModbusDevice", "ModbusDeviceModel", "ModbusServer"]
