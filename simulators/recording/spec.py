"""The `replay:` key of a scenario device: serve the device from a cassette instead of from the plant.

devices:
  plc1:
    protocol: modbus               # or s7: a CPU at the cassette's rack and slot; or opcua
    listen: 127.0.0.1:0
    unit: 1
    replay: {cassette: cassettes/pump_station.jsonl, mode: image, timing: recorded}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from simulators.recording.cassette import Cassette


class ReplaySpec(BaseModel):
    """How a device replays a cassette (simulators.recording.replay explains the modes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cassette: str = Field(description="the cassette file (JSONL), relative to where the host runs")
    device: str | None = Field(
        default=None, description="the device of the cassette to replay (default: the only one, or this device's name)"
    )
    mode: Literal["strict", "request", "image"] = Field(
        default="request",
        description="strict: in recorded order; request: the recorded answer to an equal request; "
        "image: also answer unrecorded requests from every value the cassette showed",
    )
    timing: Literal["recorded", "fast"] = Field(default="fast", description="recorded: answer after the recorded delay")
    speed: float = Field(default=1.0, gt=0, description="with timing: recorded, delays are divided by this")
    unknown: (
        Annotated[int, Field(ge=1, le=255)]
        | Literal["default"]
        | Annotated[str, Field(pattern=r"^Bad[A-Za-z0-9]+$")]
        | None
    ) = Field(
        default="default",
        description="the code a request the cassette cannot answer is refused with: default, the protocol's own "
        "(Modbus exception 2; S7 item return code 0x0A, object does not exist; an S7 error class 0x81..0x87 "
        "refuses the whole job; OPC UA BadNodeIdUnknown, or in strict mode BadUnexpectedError); an OPC UA "
        "Bad status name (OPC UA only: the whole request refused with it); null: no answer (not OPC UA)",
    )

    def load(self, name: str) -> tuple[Cassette, str | None]:
        """The cassette, and which of its devices the scenario device `name` replays: `device`, else
        its own name when the cassette records it, else None (the Replayer takes the only one)."""
        from simulators.recording.cassette import load_cassette

        cassette = load_cassette(Path(self.cassette))
        if self.device is None and name in cassette.devices():
            return cassette, name
        return cassette, self.device


__all__ = ["ReplaySpec"]
