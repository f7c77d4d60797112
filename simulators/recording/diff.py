"""`bifrost-sim diff A B`: the exchanges of two cassettes that differ, for regression tests.

Exchanges are paired by what was asked, not by position: the n-th time a device was asked a given
request in A pairs with the n-th time it was asked the same in B (so a run that polled in another
order, or over other connections, still compares). A pair differs when:

- the answers differ: other values, an exception where there was an answer (or the reverse), or an
  answer where there was none;
- the timing differs beyond `tolerance` seconds: the time to answer (`latency`), or, with
  `compare_time`, when the request came (`t`, from the cassette's first request).

A request asked in one cassette and not the other (or more often) is a difference too.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from simulators.recording.cassette import Cassette, Entry
from simulators.recording.codec import codec_for


@dataclass(frozen=True)
class Difference:
    kind: str  # "response", "timing", "only in A", "only in B"
    a: Entry | None
    b: Entry | None
    detail: str

    def describe(self) -> str:
        entry = self.a if self.a is not None else self.b
        assert entry is not None
        asked = codec_for(entry.protocol).describe(entry.request, None).rsplit(" -> ", 1)[0]
        where = f"{entry.device} unit {entry.unit}"
        return f"{self.kind}: {where}: {asked}: {self.detail}"


def _key(entry: Entry) -> Hashable:
    return (entry.protocol, entry.device, codec_for(entry.protocol).match_key(entry.unit, entry.request))


def _answer_key(entry: Entry) -> Hashable:
    """The response as diff compares it: its bytes, or what the codec says matters in them (OPC UA's
    `answer_key`: not the timestamps and handles that change every run)."""
    if entry.response is None:
        return None
    key = getattr(codec_for(entry.protocol), "answer_key", None)
    return entry.response if key is None else key(entry.response)


def _answer(entry: Entry) -> str:
    if entry.response is None:
        return "no answer"
    return codec_for(entry.protocol).describe(entry.request, entry.response).rsplit(" -> ", 1)[-1]


def diff_cassettes(
    a: Cassette, b: Cassette, *, tolerance: float = 0.1, compare_time: bool = False, ignore_timing: bool = False
) -> list[Difference]:
    """Every difference between `a` and `b`, in A's order (then what only B has)."""
    occurrences: dict[Hashable, list[Entry]] = {}
    for entry in b.entries:
        occurrences.setdefault(_key(entry), []).append(entry)
    taken: dict[Hashable, int] = {}
    out: list[Difference] = []
    for entry in a.entries:
        key = _key(entry)
        index = taken.get(key, 0)
        candidates = occurrences.get(key, [])
        if index >= len(candidates):
            out.append(Difference("only in A", entry, None, f"asked in A (t={entry.t:.3f}s), not in B"))
            continue
        taken[key] = index + 1
        other = candidates[index]
        if _answer_key(entry) != _answer_key(other):
            out.append(
                Difference("response", entry, other, f"A answered {_answer(entry)}; B answered {_answer(other)}")
            )
            continue
        if ignore_timing:
            continue
        if entry.latency is not None and other.latency is not None and abs(entry.latency - other.latency) > tolerance:
            out.append(
                Difference(
                    "timing",
                    entry,
                    other,
                    f"answered in {entry.latency * 1000:.1f} ms in A, {other.latency * 1000:.1f} ms in B "
                    f"(tolerance {tolerance * 1000:g} ms)",
                )
            )
        elif compare_time and abs(entry.t - other.t) > tolerance:
            out.append(
                Difference(
                    "timing",
                    entry,
                    other,
                    f"asked at t={entry.t:.3f}s in A, t={other.t:.3f}s in B (tolerance {tolerance:g}s)",
                )
            )
    for key, entries in occurrences.items():
        for entry in entries[taken.get(key, 0) :]:
            out.append(Difference("only in B", None, entry, f"asked in B (t={entry.t:.3f}s), not in A"))
    return out


__all__ = ["Difference", "diff_cassettes"]
