"""Protocol faults on a replayed OPC UA device (docs/faults.md), as a client of a simulated one sees them.

The OPC UA front-end (simulators.opcua.frontend) sets them into the replay (OpcuaReplayServer) with the
calls it makes on a simulated device; here is what the replay keeps of them and what its relay asks:

- `exception` is armed in the replay's C server, as on a simulated device: the status per variable, to
  Reads and Writes (and the samples of a subscription), with the fault's probability, count and seed.
- `bad_quality` is the status of every value pushed into the matched variables (the recorded one back
  when it ends).
- A Read or Write of a matched node that the relay would answer with a recorded response goes to the
  server instead, once the response's values are pushed into it: the cassette steps on as it would
  without the fault, and the server's answer carries the fault.
- `freeze`: a Read is passed to the server, which answers from the values it holds, and takes no turn
  of the cassette, so no value moves; Writes are replayed as usual and take effect.
- `reboot`: the sessions dropped (the host drops the connections) and the cassette back at its start.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReplayFaults:
    """The protocol faults in force on one replayed device (variables by their index in the server)."""

    exception: bool = False
    exception_nodes: frozenset[int] | None = None  # None: every variable
    quality: int = 0  # 0: no bad_quality
    quality_nodes: frozenset[int] | None = None
    frozen: bool = False

    def status(self, index: int, recorded: int) -> int:
        """The status a value pushed into variable `index` carries: bad_quality's, else the recorded one."""
        if self.quality and (self.quality_nodes is None or index in self.quality_nodes):
            return self.quality
        return recorded

    def to_server(self, touched: tuple[str, set[int]] | None) -> bool:
        """Whether a data request (its service and the variables it names, OpcuaAnswers.touched) that
        the relay would answer from the cassette goes to the server instead, for a fault to answer."""
        if touched is None or not touched[1] or not (self.exception or self.quality):
            return False
        service, indexes = touched
        if self.exception and (self.exception_nodes is None or indexes & self.exception_nodes):
            return True
        return bool(service == "Read" and self.quality and (self.quality_nodes is None or indexes & self.quality_nodes))


__all__ = ["ReplayFaults"]
