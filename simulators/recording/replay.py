"""Answering requests from a cassette: the decision a replayed device makes, without I/O.

`Replayer(cassette, mode=...)` takes one request at a time (`answer(unit, request)`) and says what
to send back and when. Modes:

- `strict`: the exchanges in the order they were recorded. The next request must be the next one
  recorded (same unit, same request); anything else is a miss.
- `request` (the default): the recorded answer to an equal request, wherever it was in the cassette;
  a request asked several times gets its recorded answers in turn, and the last one again after.
- `image`: as `request`, and a request never recorded as such is answered from the learned image —
  every value the capture showed (the protocol's codec learns it: for Modbus, the four tables), kept
  up to date by the writes replayed. Only what the capture never showed is a miss.

A miss is answered by `fallback` when there is one (a live device; the pytest plugin's `new_episodes`),
otherwise with the protocol's error (`unknown`, by default the protocol's: for Modbus exception 2;
None: no answer at all) and kept in `misses`, so a test can fail naming the request.

Timing: `timing="recorded"` gives each answer the delay it had in the cassette (`latency`), times
`1/speed`; `"fast"` answers at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Literal

from bifrost.errors import ConfigError
from simulators.recording.cassette import Cassette, Entry
from simulators.recording.codec import Codec, Image, codec_for

Mode = Literal["strict", "request", "image"]
Timing = Literal["recorded", "fast"]
MODES: tuple[str, ...] = ("strict", "request", "image")
TIMINGS: tuple[str, ...] = ("recorded", "fast")


@dataclass(frozen=True, slots=True)
class Answer:
    """What to send: `response` (None: nothing), after `delay` seconds; `source` says where it came from
    ("recorded", "repeated", "image" or "miss"), `note` why."""

    response: bytes | None
    delay: float = 0.0
    source: str = "recorded"
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Miss:
    """A request the cassette could not answer."""

    device: str
    unit: int
    request: bytes
    reason: str
    protocol: str = "modbus"

    def describe(self) -> str:
        asked = codec_for(self.protocol).describe(self.request, None).rsplit(" -> ", 1)[0]
        return f"{self.device} unit {self.unit}: {asked} ({self.request.hex()}): {self.reason}"


class Replayer:
    """One device's answers from a cassette; see the module docstring. Thread-safe."""

    def __init__(
        self,
        cassette: Cassette,
        *,
        device: str | None = None,
        mode: Mode = "request",
        timing: Timing = "fast",
        speed: float = 1.0,
        unknown: int | str | None = "default",
        protocol: str | None = None,
        fallback: Callable[[int, bytes], bytes | None] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"replay mode must be one of {', '.join(MODES)}, not {mode!r}")
        if timing not in TIMINGS:
            raise ConfigError(f"replay timing must be one of {', '.join(TIMINGS)}, not {timing!r}")
        if not speed > 0:
            raise ConfigError(f"replay speed must be above 0, not {speed}")
        devices = cassette.devices()
        if device is None:
            if len(devices) > 1:
                raise ConfigError(f"the cassette records {len(devices)} devices ({', '.join(devices)}): name one")
            device = devices[0] if devices else "device"
        elif devices and device not in devices:
            raise ConfigError(f"the cassette records no device {device!r} (it records {', '.join(devices)})")
        self.device = device
        entries = [entry for entry in cassette.entries if entry.device == device]
        protocols = {entry.protocol for entry in entries}
        if len(protocols) > 1:
            raise ConfigError(f"{device}: the cassette mixes protocols {sorted(protocols)} for one device")
        self.protocol = protocol or (protocols.pop() if protocols else "modbus")
        self.codec: Codec = codec_for(self.protocol)
        # What the front-end's connection answers itself (S7's setup communication) is not replayed.
        self.entries: list[Entry] = [entry for entry in entries if not self.codec.is_handshake(entry.request)]
        self.mode: Mode = mode
        self.timing: Timing = timing
        self.speed = speed
        # "default": the protocol's own refusal (Modbus: exception 2; S7: item code 0x0A).
        if isinstance(unknown, str) and unknown != "default":
            raise ConfigError(
                f"replay unknown must be a code, None or 'default', not {unknown!r} (a status name is for OPC UA)"
            )
        self.unknown: int | None = self.codec.default_unknown if isinstance(unknown, str) else unknown
        self.fallback = fallback
        """Asked what the cassette cannot answer (the pytest plugin's `new_episodes`: the real device)."""
        self.misses: list[Miss] = []
        self.served = 0
        self._lock = threading.Lock()
        self._by_key: dict[Hashable, list[Entry]] = {}
        for entry in self.entries:
            self._by_key.setdefault(self.codec.match_key(entry.unit, entry.request), []).append(entry)
        self.reset()

    def units(self) -> list[int]:
        return list(dict.fromkeys(entry.unit for entry in self.entries))

    def reset(self) -> None:
        """Back to the start of the cassette (and the image as the capture left it); misses cleared."""
        with self._lock:
            self._cursor = 0
            self._turns: dict[Hashable, int] = {}
            self.misses = []
            self.served = 0
            self.image: Image | None = None
            if self.mode == "image":
                image = self.codec.new_image()
                for entry in self.entries:
                    if entry.response is not None:
                        image.learn(entry.unit, entry.request, entry.response)
                self.image = image

    def _delay(self, entry: Entry) -> float:
        if self.timing == "fast" or entry.latency is None:
            return 0.0
        return entry.latency / self.speed

    def _miss(self, unit: int, request: bytes, reason: str) -> Answer:
        if self.fallback is not None:
            live = self.fallback(unit, request)
            if live is not None and self.image is not None:
                self.image.learn(unit, request, live)
            return Answer(live, 0.0, "live", f"not in the cassette ({reason}): asked the device")
        self.misses.append(Miss(self.device, unit, request, reason, self.protocol))
        response = None if self.unknown is None else self.codec.error_response(request, self.unknown)
        return Answer(response, 0.0, "miss", reason)

    def answer(self, unit: int, request: bytes) -> Answer:
        """The answer to one request (see the module docstring)."""
        with self._lock:
            self.served += 1
            if self.mode == "strict":
                return self._strict(unit, request)
            key = self.codec.match_key(unit, request)
            recorded = self._by_key.get(key)
            if recorded:
                turn = self._turns.get(key, 0)
                self._turns[key] = turn + 1
                entry = recorded[min(turn, len(recorded) - 1)]
                if self.image is not None and entry.response is not None:
                    self.image.learn(unit, request, entry.response)
                source = "recorded" if turn < len(recorded) else "repeated"
                return Answer(entry.response, self._delay(entry), source)
            if self.image is not None:
                response = self.image.answer(unit, request)
                if response is not None:
                    return Answer(response, 0.0, "image")
                return self._miss(unit, request, "never recorded, and the capture never showed what it touches")
            return self._miss(unit, request, "never recorded")

    def _strict(self, unit: int, request: bytes) -> Answer:
        if self._cursor >= len(self.entries):
            return self._miss(unit, request, f"all {len(self.entries)} recorded exchanges were replayed")
        entry = self.entries[self._cursor]
        if self.codec.match_key(entry.unit, entry.request) != self.codec.match_key(unit, request):
            expected = self.codec.describe(entry.request, None).rsplit(" -> ", 1)[0]
            return self._miss(
                unit, request, f"exchange {self._cursor + 1} of the cassette is unit {entry.unit}: {expected}"
            )
        self._cursor += 1
        return Answer(entry.response, self._delay(entry), "recorded")

    def assert_no_misses(self) -> None:
        """AssertionError listing every request the cassette could not answer, if there was one."""
        misses = list(self.misses)
        if misses:
            shown = "\n".join("  " + miss.describe() for miss in misses[:20])
            more = f"\n  ... and {len(misses) - 20} more" if len(misses) > 20 else ""
            raise AssertionError(f"{len(misses)} request(s) the cassette cannot answer:\n{shown}{more}")


__all__ = ["MODES", "TIMINGS", "Answer", "Miss", "Mode", "Replayer", "Timing"]
