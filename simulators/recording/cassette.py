"""Cassettes: recorded exchanges, one JSON object per line (JSONL), so that a diff shows one exchange.

The first line is the header; every other line is one exchange (docs/replay.md shows a file):

    {"bifrost_cassette": 1, "created": "2026-12-02T03:00:00Z", "source": "proxy 127.0.0.1:5020"}
    {"t": 0.0, "protocol": "modbus", "device": "plc1", "unit": 1, "connection": 1, "transaction_id": 1,
     "latency": 0.00042, "request": {"hex": "0300000002", "decoded": {...}, "text": "read hr:0-1"},
     "response": {"hex": "030400010002", "decoded": {...}, "text": "0001 0002"}}

- `t`: seconds from the cassette's first request to this one; `latency`: seconds from request to
  response (null when there was no response).
- `connection`: which client connection carried it (1, 2, ... in the order they opened).
- `request` / `response`: `hex` is the protocol data unit as sent (for Modbus the PDU: function code
  first, without MBAP header or CRC) and is what replay uses; `decoded` and `text` are for people and
  for diff, written by the protocol's codec and ignored on reading. `response` is null when nothing
  answered (the client timed out).
- Optional: `transaction_id` (Modbus/TCP), `note` (what the recorder saw: a fault, a decode error).

`bifrost_cassette` is the format's version: a reader refuses a version it does not know, naming it.
Errors name the file, the line and the field (`CassetteError`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from bifrost.errors import ConfigError
from simulators.recording.codec import codec_for

CASSETTE_VERSION = 1
HEADER_KEY = "bifrost_cassette"


class CassetteError(ConfigError):
    """A cassette that cannot be read: the message names the file, line and field."""


class Entry(NamedTuple):
    """One recorded exchange. `request` and `response` are raw protocol data units. (A NamedTuple, not a
    dataclass: an import makes one per exchange, and a tuple is several times cheaper to build.)"""

    protocol: str
    device: str
    unit: int
    connection: int
    t: float
    request: bytes
    response: bytes | None
    latency: float | None = None
    transaction_id: int | None = None
    note: str | None = None

    def describe(self) -> str:
        """`#3 t=1.250s unit 1: read hr:0-1 -> 0001 0002`."""
        text = codec_for(self.protocol).describe(self.request, self.response)
        return f"t={self.t:.3f}s conn {self.connection} unit {self.unit}: {text}"

    def as_json(self) -> dict[str, Any]:
        line = self._head()
        asked, asked_text, answered, answered_text = codec_for(self.protocol).render(self.request, self.response)
        line["request"] = {"hex": self.request.hex(), "decoded": asked, "text": asked_text}
        line["response"] = (
            None if self.response is None else {"hex": self.response.hex(), "decoded": answered, "text": answered_text}
        )
        if self.note:
            line["note"] = self.note
        return line

    def _head(self) -> dict[str, Any]:
        """The line's fields before the request (as_json's, and _lines' uncached part)."""
        line: dict[str, Any] = {
            "t": round(self.t, 6),
            "protocol": self.protocol,
            "device": self.device,
            "unit": self.unit,
            "connection": self.connection,
        }
        if self.transaction_id is not None:
            line["transaction_id"] = self.transaction_id
        line["latency"] = None if self.latency is None else round(self.latency, 6)
        return line


_SEPARATORS = (", ", ": ")
_RENDER_CACHE = 4096  # distinct exchanges remembered by one _lines call


def _lines(entries: Iterable[Entry]) -> str:
    """`json.dumps(entry.as_json())` of each entry, a line each, as one string. The request and response
    part of a line is rendered once per distinct (protocol, request, response) — a capture polls the
    same registers over and over, and decoding is most of a line's cost."""
    dumps = json.dumps
    cache: dict[tuple[str, bytes, bytes | None], str] = {}
    out: list[str] = []
    for entry in entries:
        key = (entry.protocol, entry.request, entry.response)
        body = cache.get(key)
        if body is None:
            if len(cache) >= _RENDER_CACHE:
                cache.clear()
            asked, asked_text, answered, answered_text = codec_for(entry.protocol).render(entry.request, entry.response)
            response = entry.response
            parts = {
                "request": {"hex": entry.request.hex(), "decoded": asked, "text": asked_text},
                "response": None
                if response is None
                else {"hex": response.hex(), "decoded": answered, "text": answered_text},
            }
            body = cache[key] = dumps(parts, separators=_SEPARATORS)[1:-1]
        line = dumps(entry._head(), separators=_SEPARATORS)[:-1] + ", " + body
        if entry.note:
            line += ", " + dumps({"note": entry.note}, separators=_SEPARATORS)[1:-1]
        out.append(line + "}\n")
    return "".join(out)


@dataclass
class Cassette:
    """A header and its exchanges, in the order they happened."""

    entries: list[Entry] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def devices(self) -> list[str]:
        return list(dict.fromkeys(entry.device for entry in self.entries))

    def units(self, device: str | None = None) -> list[int]:
        return list(dict.fromkeys(e.unit for e in self.entries if device is None or e.device == device))

    def only(self, device: str | None) -> Cassette:
        """The exchanges of one device (all of them for None)."""
        if device is None:
            return self
        return Cassette([e for e in self.entries if e.device == device], dict(self.header), self.path)

    def save(self, path: str | Path, *, source: str | None = None) -> Path:
        """Write the whole cassette to `path` (replacing it)."""
        with CassetteWriter(path, source=source or self.header.get("source"), append=False) as writer:
            writer.write_many(self.entries)
        return Path(path)


def header(source: str | None = None) -> dict[str, Any]:
    line: dict[str, Any] = {HEADER_KEY: CASSETTE_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if source:
        line["source"] = source
    return line


class CassetteWriter:
    """Writes exchanges to a cassette as they happen, a line each, flushed (a crash loses nothing).

    `append=True` adds to an existing cassette (its header is kept, and `t` continues from its last
    exchange's); a new or emptied file gets a header first. Use it as a context manager, or `close()`.
    """

    def __init__(self, path: str | Path, *, source: str | None = None, append: bool = False) -> None:
        self.path = Path(path)
        self.count = 0
        existing = append and self.path.exists() and self.path.stat().st_size > 0
        self.offset = 0.0
        if existing:
            old = load_cassette(self.path)
            if old.entries:
                self.offset = max(entry.t for entry in old.entries)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("a" if existing else "w", encoding="utf-8")
        if not existing:
            self._file.write(json.dumps(header(source)) + "\n")
            self._file.flush()

    def write(self, entry: Entry) -> None:
        if self.offset:
            entry = entry._replace(t=entry.t + self.offset)
        self._file.write(json.dumps(entry.as_json(), separators=_SEPARATORS) + "\n")
        self._file.flush()
        self.count += 1

    def write_many(self, entries: Iterable[Entry], *, batch: int = 10_000) -> None:
        """Write exchanges already at hand (a whole cassette, a traffic log): the same lines as `write`'s,
        written and flushed a batch at a time rather than one by one."""
        chunk: list[Entry] = []
        for entry in entries:
            chunk.append(entry._replace(t=entry.t + self.offset) if self.offset else entry)
            if len(chunk) >= batch:
                self._write_batch(chunk)
                chunk = []
        if chunk:
            self._write_batch(chunk)

    def _write_batch(self, chunk: list[Entry]) -> None:
        self._file.write(_lines(chunk))
        self._file.flush()
        self.count += len(chunk)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> CassetteWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def save_cassette(path: str | Path, entries: Iterable[Entry], *, source: str | None = None) -> Path:
    return Cassette(list(entries)).save(path, source=source)


def _hex(value: Any, where: str) -> bytes:
    if not isinstance(value, dict) or not isinstance(value.get("hex"), str):
        raise CassetteError(f"{where}: expected an object with a `hex` string")
    try:
        return bytes.fromhex(value["hex"])
    except ValueError:
        raise CassetteError(f"{where}.hex: {value['hex']!r} is not hexadecimal") from None


def _number(line: dict[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    value = line.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CassetteError(f"{where}: {key}: expected a number, got {value!r}")
    return value


def parse_entry(line: dict[str, Any], where: str) -> Entry:
    """One exchange from its JSON object; `where` (file:line) starts every error message."""
    for key in ("protocol", "device"):
        if not isinstance(line.get(key), str):
            raise CassetteError(f"{where}: {key}: expected a string, got {line.get(key)!r}")
    try:
        codec_for(line["protocol"])
    except ValueError as exc:
        raise CassetteError(f"{where}: protocol: {exc}") from None
    unit = _number(line, "unit", where)
    connection = _number(line, "connection", where)
    transaction_id = _number(line, "transaction_id", where, optional=True)
    note = line.get("note")
    if note is not None and not isinstance(note, str):
        raise CassetteError(f"{where}: note: expected a string, got {note!r}")
    response = line.get("response")
    return Entry(
        protocol=line["protocol"],
        device=line["device"],
        unit=int(unit),
        connection=int(connection),
        t=float(_number(line, "t", where)),
        request=_hex(line.get("request"), f"{where}: request"),
        response=None if response is None else _hex(response, f"{where}: response"),
        latency=_number(line, "latency", where, optional=True),
        transaction_id=None if transaction_id is None else int(transaction_id),
        note=note,
    )


def load_cassette(path: str | Path) -> Cassette:
    """Read a cassette; a CassetteError names the file, line and field of the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CassetteError(f"{path}: cannot read the cassette: {exc.strerror or exc}") from None
    cassette = Cassette(path=path)
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CassetteError(f"{where}: not JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(line, dict):
            raise CassetteError(f"{where}: expected a JSON object, got {type(line).__name__}")
        if HEADER_KEY in line:
            version = line[HEADER_KEY]
            if version != CASSETTE_VERSION:
                raise CassetteError(
                    f"{where}: {HEADER_KEY}: version {version!r} is not one this Bifrost reads ({CASSETTE_VERSION})"
                )
            if number != 1 and cassette.header:
                raise CassetteError(f"{where}: a second header; a cassette has one, on its first line")
            cassette.header = line
            continue
        if not cassette.header:
            raise CassetteError(f'{where}: the first line must be the header {{"{HEADER_KEY}": {CASSETTE_VERSION}}}')
        cassette.entries.append(parse_entry(line, where))
    if not cassette.header:
        raise CassetteError(f"{path}: empty: a cassette starts with a header line")
    return cassette


__all__ = [
    "CASSETTE_VERSION",
    "Cassette",
    "CassetteError",
    "CassetteWriter",
    "Entry",
    "header",
    "load_cassette",
    "parse_entry",
    "save_cassette",
]
