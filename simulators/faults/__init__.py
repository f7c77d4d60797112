"""Faults: transport faults as stream wrappers, protocol faults as decisions, in one vocabulary.

- `spec`: `FaultSpec`, from a scenario mapping, a `--fault KIND,key=value` string or keywords.
- `timing`: sleeping on the plant's clock (exact and free on a VirtualClock).
- `frames`: the `Framer` a front-end gives, to cut relayed bytes into frames without changing a byte
  and pair each reply with its request (Modbus's is simulators/modbus/frames.py).
- `lanes`: one direction of a connection through the transport faults.
- `protocol`: what protocol faults do to a request (an `Action` of simulators.hooks).

The core names no protocol: a front-end gives its framer with its listeners, and its `exception` codes
through simulators.protocols.
- `faultset`: `FaultSet`, the faults of one device over time; `PlantFaults`, the hooks a SimHost calls.
- `streams`: `wrap_streams`, the transport faults around a server's reader and writer.

The fault-injecting proxy (simulators.proxy) relays through the same lanes.
"""

from __future__ import annotations

from simulators.faults.faultset import ActiveFault, FaultHandle, FaultSet, PlantFaults
from simulators.faults.frames import Framer, LengthFramer
from simulators.faults.lanes import Lane, flip_bits
from simulators.faults.protocol import action_for
from simulators.faults.spec import (
    PROTOCOL_KINDS,
    TRANSPORT_KINDS,
    AddressRange,
    Direction,
    FaultSpec,
    Match,
    parse_duration,
    parse_faults,
)
from simulators.faults.streams import wrap_streams
from simulators.faults.timing import Sleep, Timing, clock_sleep

__all__ = [
    "PROTOCOL_KINDS",
    "TRANSPORT_KINDS",
    "ActiveFault",
    "AddressRange",
    "Direction",
    "FaultHandle",
    "FaultSet",
    "FaultSpec",
    "Framer",
    "Lane",
    "LengthFramer",
    "Match",
    "PlantFaults",
    "Sleep",
    "Timing",
    "action_for",
    "clock_sleep",
    "flip_bits",
    "parse_duration",
    "parse_faults",
    "wrap_streams",
]
