"""What a fault is: `FaultSpec`, parsed from a scenario mapping, a `--fault` string or keyword arguments.

One vocabulary (DESIGN, "One vocabulary"): the kind, the common keys `probability`, `match` (unit,
function, address range, node), `count` or `for`, and for transport faults `direction`; then the
kind's own keys (`delay`, `jitter`, `rate`, `code`, ...). Every spelling ends up here, checked once,
with durations in seconds, so the machinery that applies faults never parses anything.

A mistake is a ConfigError that names the key and what is accepted.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast, get_args

from bifrost import durations
from bifrost.errors import ConfigError
from simulators.hooks import RequestInfo
from simulators.scenario import FAULT_KINDS, MATCH_ADDRESS

if TYPE_CHECKING:
    from simulators.plant import FaultRecord

Direction = Literal["both", "upstream", "downstream"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)

TRANSPORT_KINDS = frozenset({"latency", "bandwidth", "slicer", "stall", "reset", "close", "refuse", "corrupt", "drop"})
PROTOCOL_KINDS = frozenset(FAULT_KINDS) - TRANSPORT_KINDS
# Transport faults that act on data in flight, so they have a direction (refuse acts before any data).
DIRECTED_KINDS = TRANSPORT_KINDS - {"refuse"}
# Kinds that act on a device or a listener as a whole, never on one request: a match means nothing.
_UNMATCHED_KINDS = frozenset({"refuse", "freeze", "reboot"})

# Modbus areas (registers or bits), and S7 ones (bytes of a DB, the flags, inputs or outputs).
_ADDRESS = re.compile(MATCH_ADDRESS)
_AREAS = ("coil", "di", "ir", "hr")


# --- values ---------------------------------------------------------------------------------------------


def parse_duration(value: object, key: str = "duration") -> float:
    """`250ms`, `2s`, `1.5min`, `1h` or a number of seconds (also as text, from a command line)."""
    try:
        return durations.parse_duration(value, bare_text=True)
    except ValueError as exc:
        detail = "negative or infinite" if "negative" in str(exc) else ""
        shown = f"{detail} ({value!r})" if detail else repr(value)
        raise ConfigError(f"{key}: expected {durations.HELP}, not {shown}") from None


def _positive_duration(value: object, key: str) -> float:
    seconds = parse_duration(value, key)
    if seconds <= 0:
        raise ConfigError(f"{key}: expected a duration above zero, such as 250ms or 2s (got {value!r})")
    return seconds


def _integer(value: object, key: str, low: int, high: int | None, what: str) -> int:
    number: object = value
    if isinstance(value, str):
        try:
            number = int(value.strip(), 0)
        except ValueError:
            number = value
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if not isinstance(number, int) or isinstance(number, bool) or number < low or (high is not None and number > high):
        raise ConfigError(f"{key}: expected {what}, not {value!r}")
    return number


def _positive_int(value: object, key: str) -> int:
    return _integer(value, key, 1, None, "a whole number of at least 1")


def _non_negative_int(value: object, key: str) -> int:
    return _integer(value, key, 0, None, "a whole number of at least 0")


def _probability(value: object, key: str) -> float:
    number: object = value
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            number = value
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number <= 1:
        raise ConfigError(f"{key}: expected a probability from 0 to 1 (or a percentage such as 20%), not {value!r}")
    return float(number)


DEVICE_FAILURE = 4
"""`exception`'s code when none is given, and what `bad_quality` asks of a front-end without value statuses:
the device failed (Modbus server_device_failure; S7 answers a hardware fault, OPC UA BadCommunicationError)."""


def _code_tables() -> list[Any]:
    # The codes are the front-ends' (simulators.protocols); the core names none of them.
    from simulators import protocols

    return protocols.fault_codes()


def _status_code(value: object, key: str) -> int:
    """A status name (`BadCommunicationError`) as its code, by the front-end whose names it matches."""
    if isinstance(value, str):
        for table in _code_tables():
            if table.pattern is not None and table.lookup is not None and re.fullmatch(table.pattern, value.strip()):
                code = table.lookup(value.strip())
                if code is not None:
                    return int(code)
    raise ConfigError(f"{key}: expected an OPC UA status name such as BadCommunicationError, not {value!r}")


def _exception_code(value: object, key: str) -> int:
    """A fault's code in its protocol's own numbers, as a front-end gives them (simulators.protocols
    FaultCodes): a Modbus exception code (number or name), an S7 item return code or error class, or an
    OPC UA status name.

    Numbers are only those the protocols define: a client under test meets no other from a real device, and
    a typo such as 99 would otherwise pass as a fault that tests nothing anyone meant."""
    tables = _code_tables()
    if isinstance(value, str):
        text = value.strip()
        for table in tables:
            if text.lower() in table.names:
                return int(table.names[text.lower()])
        if any(table.pattern is not None and re.fullmatch(table.pattern, text) for table in tables):
            return _status_code(value, key)
    helps = [table.help for table in tables]
    what = "; ".join(helps[:-1]) + f"; or {helps[-1]}" if len(helps) > 1 else "".join(helps) or "a code"
    numbers = frozenset(number for table in tables for number in table.numbers)
    code = _integer(value, key, 1, 255, what)
    if code not in numbers:
        raise ConfigError(f"{key}: expected {what}, not {value!r}")
    return code


# --- match ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddressRange:
    """A range of one area, both ends included: Modbus `hr:0-9`, or S7 bytes `DB1:0-7`, `M:10`."""

    area: str
    first: int
    last: int

    @classmethod
    def parse(cls, value: object, key: str = "address") -> AddressRange:
        found = _ADDRESS.match(value) if isinstance(value, str) else None
        if found is None:
            raise ConfigError(
                f"{key}: expected an address or range such as hr:0 or hr:0-9 (coil, di, ir, hr), or S7 bytes such "
                f"as DB1:0-7 (DB<n>, M, I, Q), not {value!r}"
            )
        first = int(found.group(2))
        last = int(found.group(3)) if found.group(3) is not None else first
        if last < first or last > 0xFFFF:
            raise ConfigError(f"{key}: {value!r} is not a range of addresses 0..65535, low to high")
        return cls(found.group(1), first, last)

    def overlaps(self, area: str, start: int, end: int) -> bool:
        """Whether [start, end) of `area` touches this range."""
        return area == self.area and start <= self.last and self.first < end

    def __str__(self) -> str:
        return f"{self.area}:{self.first}" if self.first == self.last else f"{self.area}:{self.first}-{self.last}"


def function_code(name: str) -> int:
    """The code of a function or service name as a front-end gives it (`Read`, `read_var`)."""
    return _function(name, "function", "a function or service code")


def _function(item: object, key: str, what: str) -> int:
    """A function or service code, or its name as a front-end gives it (`Read`, `read_var`)."""
    if isinstance(item, str) and item.strip() and not item.strip()[0].isdigit():
        names: dict[str, int] = {name: code for table in _code_tables() for name, code in table.functions.items()}
        code = names.get(item.strip().lower())
        if code is None:
            raise ConfigError(f"{key}: expected {what}, or a name such as Read or read_var, not {item!r}")
        return code
    return _integer(item, key, 1, 0xFFFF, what)


def _int_set(
    value: object, key: str, low: int, high: int, what: str, parse: Callable[[object, str, str], int] | None = None
) -> frozenset[int]:
    if isinstance(value, str):
        items: Iterable[object] = [part for part in re.split(r"[|\s]+", value.strip()) if part]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        items = [value]
    if parse is None:
        found = frozenset(_integer(item, key, low, high, what) for item in items)
    else:
        found = frozenset(parse(item, key, what) for item in items)
    if not found:
        raise ConfigError(f"{key}: expected {what}, or several separated by |, not {value!r}")
    return found


@dataclass(frozen=True)
class Match:
    """Which requests a fault applies to. An absent key matches everything."""

    unit: frozenset[int] | None = None
    function: frozenset[int] | None = None
    address: AddressRange | None = None
    node: str | None = None  # OPC UA; a request of another protocol names no node

    KEYS: ClassVar[tuple[str, ...]] = ("unit", "function", "address", "node")

    @classmethod
    def from_value(cls, value: object, where: str = "match") -> Match:
        """From a mapping (`{function: 3, address: "hr:0-9"}`), a scenario FaultMatch, a Match or None."""
        if value is None:
            return cls()
        if isinstance(value, Match):
            return value
        if hasattr(value, "model_dump"):
            value = value.model_dump(exclude_none=True)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of unit, function, address, node; not {value!r}")
        keys = cls.KEYS
        unknown = [str(key) for key in value if key not in keys]
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r}; a match takes {', '.join(keys)}{_close(unknown[0], keys)}"
            )
        unit = value.get("unit")
        function = value.get("function")
        address = value.get("address")
        node = value.get("node")
        return cls(
            unit=None if unit is None else _int_set(unit, f"{where}.unit", 0, 255, "a unit id 0..255"),
            function=None
            if function is None
            else _int_set(
                function,
                f"{where}.function",
                1,
                0xFFFF,
                "a function or service code 1..65535 (Modbus 1..127, an S7 function, an OPC UA request's DataType "
                "id such as 629 for Read)",
                _function,
            ),
            address=None if address is None else AddressRange.parse(address, f"{where}.address"),
            node=None if node is None else str(node),
        )

    @property
    def empty(self) -> bool:
        return self.unit is None and self.function is None and self.address is None and self.node is None

    def matches(self, request: RequestInfo | None) -> bool:
        """Whether `request` is one of those meant. Without a request (bytes that did not decode), only an
        empty match applies: a fault aimed at some requests cannot tell whether these are among them."""
        if self.empty:
            return True
        if request is None:
            return False
        if self.node is not None and self.node not in request.nodes:
            return False
        if self.unit is not None and request.unit not in self.unit:
            return False
        if self.function is not None and request.function not in self.function:
            return False
        address = self.address
        return address is None or any(address.overlaps(*span) for span in request.spans)

    def items(self) -> list[tuple[str, str]]:
        """The set keys as CLI text, e.g. [("function", "3|4"), ("address", "hr:0-9")]."""
        out = []
        if self.unit is not None:
            out.append(("unit", "|".join(str(unit) for unit in sorted(self.unit))))
        if self.function is not None:
            out.append(("function", "|".join(str(function) for function in sorted(self.function))))
        if self.address is not None:
            out.append(("address", str(self.address)))
        if self.node is not None:
            out.append(("node", self.node))
        return out


# --- kinds and their keys ------------------------------------------------------------------------------

ParamValue = float  # every kind-specific value is a number once parsed (an int is a float to mypy)


@dataclass(frozen=True)
class _Param:
    parse: Callable[[object, str], ParamValue]
    default: ParamValue | None  # None: optional with no default (the fault decides), see `required`
    required: bool = False
    help: str = ""

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the values `parse` accepts (for editors; the parser has the last word)."""
        if self.parse is parse_duration:
            return {
                "anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": durations.DURATION.pattern}],
                "description": self.help,
            }
        if self.parse is _exception_code:
            tables = _code_tables()
            patterns = [{"type": "string", "pattern": table.pattern} for table in tables if table.pattern is not None]
            return {
                "anyOf": [
                    {"enum": sorted({number for table in tables for number in table.numbers})},
                    {"enum": sorted({name for table in tables for name in table.names})},
                    *patterns,
                ],
                "description": "the protocol's own code: Modbus (number or name), S7 item code or error class, "
                "or an OPC UA status name",
            }
        low = 0 if self.parse is _non_negative_int else 1
        return {"type": "integer", "minimum": low, "description": self.help}


_PARAMS: dict[str, dict[str, _Param]] = {
    "latency": {
        "delay": _Param(parse_duration, None, required=True, help="added to each chunk's travel time"),
        "jitter": _Param(parse_duration, 0.0, help="each delay is delay ± up to this much, uniformly"),
    },
    "bandwidth": {"rate": _Param(_positive_int, None, required=True, help="bytes per second")},
    "slicer": {
        "size": _Param(_positive_int, 1, help="bytes per piece"),
        "gap": _Param(parse_duration, 0.001, help="time between pieces"),
    },
    "stall": {},
    "reset": {},
    "close": {},
    "refuse": {},
    "corrupt": {"bits": _Param(_positive_int, 1, help="bits flipped in each chunk it hits")},
    "drop": {},
    "exception": {"code": _Param(_exception_code, DEVICE_FAILURE, help="exception code")},
    "wrong_transaction": {},
    "truncate": {"keep": _Param(_non_negative_int, 3, help="bytes of the reply frame that are sent")},
    "freeze": {},
    "bad_quality": {
        "code": _Param(_status_code, None, help="OPC UA: the values' status (BadSensorFailure when absent)")
    },
    "reboot": {},
}
assert set(_PARAMS) == set(FAULT_KINDS), "every kind of the vocabulary has its keys"

COMMON_KEYS = ("probability", "match", "count", "for", "direction")
MATCH_KEYS = ("unit", "function", "address", "node")
_ALIASES = {"for_": "for", "duration": "for"}  # `for` is a Python keyword; scenario models call it duration


def kind_keys(kind: str) -> tuple[str, ...]:
    """Every key a fault of `kind` accepts, its own first."""
    common = [
        key
        for key in COMMON_KEYS
        if (key != "direction" or kind in DIRECTED_KINDS) and (key != "match" or kind not in _UNMATCHED_KINDS)
    ]
    matched = [] if kind in _UNMATCHED_KINDS else [*MATCH_KEYS]
    return (*_PARAMS[kind], *common, *matched)


def kind_schemas() -> list[dict[str, Any]]:
    """Per kind, a JSON Schema `if kind is K then only K's keys` clause, so that an editor refuses a
    misspelt key as `validate` does. `common` holds the schemas of the keys every kind shares."""
    clauses = []
    for kind, params in _PARAMS.items():
        properties: dict[str, Any] = {"device": True, "kind": True}
        properties.update({key: True for key in kind_keys(kind) if key not in params})
        properties.update({key: param.schema for key, param in params.items()})
        if kind in DIRECTED_KINDS:
            properties["direction"] = {"enum": list(DIRECTIONS), "default": "downstream"}
        clause: dict[str, Any] = {"properties": properties, "additionalProperties": False}
        required = [key for key, param in params.items() if param.required]
        if required:
            clause["required"] = required
        clauses.append({"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]}, "then": clause})
    return clauses


def _close(key: str, keys: Iterable[str]) -> str:
    near = difflib.get_close_matches(key, list(keys), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _check_kind(kind: object) -> str:
    if not isinstance(kind, str) or kind not in _PARAMS:
        kinds = ", ".join(FAULT_KINDS)
        hint = _close(kind, _PARAMS) if isinstance(kind, str) else ""
        raise ConfigError(f"kind: {kind!r} is not a fault kind; the kinds are {kinds}{hint}")
    return kind


# --- the spec ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultSpec:
    """One fault, checked: kind, common keys and the kind's own `params` (durations in seconds).

    Built directly (`FaultSpec("latency", params={"delay": "200ms"})` is checked and normalised too),
    from a mapping (`from_mapping`, a scenario's fault event), from CLI text (`parse`) or from keyword
    arguments (`of`). `direction` applies to transport faults: "downstream" (device to client, the
    default, so a latency of 200ms adds 200ms to each round trip), "upstream" or "both".
    """

    kind: str
    probability: float = 1.0
    match: Match = field(default_factory=Match)
    count: int | None = None
    for_: float | None = None
    direction: Direction = "downstream"
    params: Mapping[str, Any] = field(default_factory=dict)  # numbers once checked (durations in seconds)

    def __post_init__(self) -> None:
        kind = _check_kind(self.kind)
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "probability", _probability(self.probability, "probability"))
        set_(self, "match", Match.from_value(self.match))
        if self.count is not None:
            set_(self, "count", _positive_int(self.count, "count"))
        if self.for_ is not None:
            set_(self, "for_", _positive_duration(self.for_, "for"))
        if self.count is not None and self.for_ is not None:
            raise ConfigError("count: a fault takes count or for, not both")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction: expected one of {', '.join(DIRECTIONS)}, not {self.direction!r}")
        if self.direction != "downstream" and kind not in DIRECTED_KINDS:
            raise ConfigError(f"direction: {kind} is not a transport fault, so it has no direction")
        if kind in _UNMATCHED_KINDS and not self.match.empty:
            raise ConfigError(f"match: {kind} acts on the whole device, not on some requests, so it takes no match")
        set_(self, "params", _checked_params(kind, self.params))

    # --- constructors --------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, where: str = "") -> FaultSpec:
        """From a scenario-style mapping: `{kind: latency, delay: 200ms, match: {function: 3}, for: 10s}`.

        Match keys may also sit at the top level (`function: 3`), as on the command line. `device`, if
        present, is ignored: the caller decides which device's faults these are. `where` prefixes errors.
        """
        try:
            return cls._from_mapping(mapping)
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc}" if where else str(exc)) from None

    @classmethod
    def _from_mapping(cls, mapping: Mapping[str, Any]) -> FaultSpec:
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"a fault is a mapping with a kind, not {mapping!r}")
        data = {_ALIASES.get(str(key), str(key)): value for key, value in mapping.items() if key != "device"}
        if "kind" not in data:
            raise ConfigError(f"kind: required; one of {', '.join(FAULT_KINDS)}")
        kind = _check_kind(data.pop("kind"))
        accepted = kind_keys(kind)
        for key in data:
            if key not in accepted:
                raise ConfigError(
                    f"{key}: {kind} takes no such key; it takes {', '.join(accepted)}{_close(key, accepted)}"
                )
        match_data = data.pop("match", None)
        top = {key: data.pop(key) for key in MATCH_KEYS if key in data}
        if top:
            if match_data is not None:
                raise ConfigError(f"{next(iter(top))}: give match keys either inside match or beside it, not both")
            match_data = top
        common = {key: data.pop(key) for key in COMMON_KEYS if key in data}
        count = common.get("count")
        duration = common.get("for")
        direction = common.get("direction", "downstream")
        return cls(
            kind,
            probability=cast(float, common.get("probability", 1.0)),
            match=Match.from_value(match_data),
            count=None if count is None else cast(int, count),
            for_=None if duration is None else cast(float, duration),
            direction=cast(Direction, direction),
            params=data,
        )

    @classmethod
    def of(cls, kind: str, **keys: Any) -> FaultSpec:
        """From keyword arguments: `FaultSpec.of("latency", delay="200ms", for_="10s")`."""
        return cls.from_mapping({"kind": kind, **keys})

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """From CLI text: `KIND[,key=value...]`, e.g. `exception,code=6,function=3,probability=0.5`.

        Several units or function codes are separated by `|` (`function=3|4`).
        """
        parts = [part.strip() for part in text.split(",")]
        if not parts or not parts[0]:
            raise ConfigError(f"--fault {text!r}: expected KIND[,key=value...], such as latency,delay=200ms")
        head, *rest = parts
        data: dict[str, Any] = {}
        if "=" in head:
            rest.insert(0, head)
        else:
            data["kind"] = head
        for part in rest:
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"--fault {text!r}: {part!r} is not key=value")
            if key in data:
                raise ConfigError(f"--fault {text!r}: {key} is given twice")
            data[key] = value.strip()
        return cls.from_mapping(data, where=f"--fault {text!r}: ")

    @classmethod
    def from_record(cls, record: FaultRecord) -> FaultSpec:
        """From a plant's FaultRecord (a scenario event that switched the fault on)."""
        data: dict[str, Any] = {"kind": record.kind, "probability": record.probability, **record.params}
        if record.match is not None:
            data["match"] = record.match
        if record.count is not None:
            data["count"] = record.count
        if record.end is not None and record.end > record.start:
            data["for"] = record.end - record.start
        return cls.from_mapping(data, where=f"fault {record.kind} of {record.device}: ")

    # --- reading ----------------------------------------------------------------------------------------

    @property
    def transport(self) -> bool:
        """A transport fault (acts on bytes) rather than a protocol one (acts on requests)."""
        return self.kind in TRANSPORT_KINDS

    def number(self, key: str, default: float = 0.0) -> float:
        value = self.params.get(key)
        return default if value is None else float(value)

    def integer(self, key: str, default: int = 0) -> int:
        value = self.params.get(key)
        return default if value is None else int(value)

    def applies_to(self, direction: str) -> bool:
        """Whether a transport fault acts on data travelling `direction` ("upstream" or "downstream")."""
        return self.direction in ("both", direction)

    def to_text(self) -> str:
        """The CLI spelling, which `parse` reads back to an equal spec."""
        parts = [self.kind]
        defaults = _PARAMS[self.kind]
        parts += [f"{key}={_text(value, key)}" for key, value in self.params.items() if value != defaults[key].default]
        if self.probability != 1.0:
            parts.append(f"probability={self.probability!r}")
        parts += [f"{key}={value}" for key, value in self.match.items()]
        if self.count is not None:
            parts.append(f"count={self.count}")
        if self.for_ is not None:
            parts.append(f"for={self.for_!r}s")
        if self.direction != "downstream":
            parts.append(f"direction={self.direction}")
        return ",".join(parts)

    def __str__(self) -> str:
        return self.to_text()


_DURATION_KEYS = frozenset(
    key for params in _PARAMS.values() for key, param in params.items() if param.parse is parse_duration
)


def _text(value: float, key: str) -> str:
    if key in _DURATION_KEYS:
        return f"{float(value)!r}s"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _checked_params(kind: str, given: Mapping[str, Any]) -> dict[str, ParamValue]:
    schema = _PARAMS[kind]
    accepted = kind_keys(kind)
    out: dict[str, ParamValue] = {}
    for key, value in given.items():
        param = schema.get(key)
        if param is None:
            raise ConfigError(f"{key}: {kind} takes no such key; it takes {', '.join(accepted)}{_close(key, accepted)}")
        out[key] = param.parse(value, key)
    for key, param in schema.items():
        if key not in out:
            if param.required:
                raise ConfigError(f"{key}: {kind} needs {key} ({param.help})")
            if param.default is not None:
                out[key] = param.default
    if kind == "latency" and out["jitter"] > out["delay"]:
        # Delays are clamped at zero; a jitter beyond the delay would skew the mean the user asked for.
        raise ConfigError(f"jitter: {out['jitter']}s is more than the delay ({out['delay']}s)")
    return out


def parse_faults(texts: Iterable[str]) -> list[FaultSpec]:
    """Every `--fault` text, parsed; the first mistake is raised."""
    return [FaultSpec.parse(text) for text in texts]


__all__ = [
    "COMMON_KEYS",
    "DEVICE_FAILURE",
    "DIRECTIONS",
    "MATCH_KEYS",
    "PROTOCOL_KINDS",
    "TRANSPORT_KINDS",
    "AddressRange",
    "Direction",
    "FaultSpec",
    "Match",
    "function_code",
    "kind_keys",
    "kind_schemas",
    "parse_duration",
    "parse_faults",
]
