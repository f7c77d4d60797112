"""The `replay:` key of a scenario device: serve the device from a cassette instead of from the plant.

devices:
  plc1:
    protocol: modbus
    listen: 127.0.0.1:0
    unit: 1
    replay: {cassette: cassettes/pump_station.jsonl, mode: image, timing: recorded}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
    unknown: int | None = Field(
        default=2, ge=1, le=255, description="the exception code a request the cassette cannot answer gets; null: none"
    )


__all__ = ["ReplaySpec"]
