"""The S7 front-end of the simulator: a strict S7 CPU on ISO-on-TCP.

- `device.py`: a CPU answering decoded jobs against the plant (no I/O);
- `map.py`: its memory (DBs, M, I, Q) with the plant's tags laid over it;
- `server.py`: the listeners and connections, on one asyncio loop;
- `model.py`: the strict scenario model of an S7 device and the checks of its map;
- `traffic.py`: how its jobs read to fault matches and in the traffic log;
- `frontend.py`: what simulators.protocols registers.
"""

from __future__ import annotations

from simulators import protocols
from simulators.s7.device import S7Device
from simulators.s7.frontend import FRONTEND
from simulators.s7.model import S7DeviceModel
from simulators.s7.server import S7Server

protocols.register(FRONTEND)

__all__ = ["S7Device", "S7DeviceModel", "S7Server"]
