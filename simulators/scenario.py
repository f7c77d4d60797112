"""The scenario format, strictly: pydantic models of a whole scenario file, and its loader.

The tag-database half (tag types, devices, maps) is `bifrost.tagfile`'s models, subclassed here with
unknown keys forbidden; this module adds what only a simulator needs: initial values, behaviours,
events and faults. `load_scenario()` reports every mistake in a file at once, one line each:
`file:line:col: field.path: what was expected (got X)`.

Cross-references (an expression or a device map naming a tag, an event naming a device) are checked
where they are written, so each mistake gets its own line: while a Scenario validates, the names of
its tags and devices sit in a context variable that the field validators below consult.
"""

from __future__ import annotations

import contextvars
import difflib
import json
import keyword
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NoReturn, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    PlainValidator,
    SerializeAsAny,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError
from typing_extensions import Self

from bifrost import durations
from bifrost._yaml import load_yaml
from bifrost.errors import ConfigError, EncodeError
from bifrost.tagfile import MapEntry, TagFile, TagSpec, map_entry, mapped_tags, validate_located
from bifrost.tags import DataType, Value, parse_type, with_article
from bifrost.values import WireFormat
from simulators.expr import ExprError, compile_expr

FaultKind = Literal[
    "latency",
    "bandwidth",
    "slicer",
    "stall",
    "reset",
    "close",
    "refuse",
    "corrupt",
    "drop",
    "exception",
    "wrong_transaction",
    "truncate",
    "freeze",
    "bad_quality",
    "reboot",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)  # DESIGN's fault vocabulary


# --- errors that name their place --------------------------------------------------------------


def _error(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("scenario", "{message}", {"message": message}), loc=loc, input=value
    )


def _carried(items: list[ErrorDetails]) -> list[InitErrorDetails]:
    """Errors of a ValidationError, ready to be raised again together with more."""
    return [
        InitErrorDetails(
            type=PydanticCustomError(item["type"], "{message}", {"message": item["msg"]}),
            loc=item["loc"],
            input=item["input"],
        )
        for item in items
    ]


def _raise(title: str, errors: list[InitErrorDetails]) -> NoReturn:
    raise ValidationError.from_exception_data(title, errors)


def _with_more(title: str, data: Any, handler: Callable[[Any], Any], more: list[InitErrorDetails]) -> Any:
    """Validate with `handler`; if `more` holds problems, raise them along with the handler's own."""
    if not more:
        return handler(data)
    try:
        handler(data)
    except ValidationError as exc:
        more = _carried(exc.errors()) + more
    _raise(title, more)


def _listing(names: Any, limit: int = 12) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "") if names else "(none)"


def _suggest(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {close[0]!r}?" if close else f"expected one of: {_listing(known)}"


# --- names known while a Scenario validates ------------------------------------------------------


@dataclass(frozen=True)
class _Known:
    tags: dict[str, str | None]  # name -> type as written, when it is a string
    devices: frozenset[str]

    def type_of(self, tag: str) -> tuple[DataType, int | None] | None:
        written = self.tags.get(tag)
        if written is None:
            return None
        try:
            return parse_type(written)
        except ValueError:
            return None


_known: contextvars.ContextVar[_Known | None] = contextvars.ContextVar("scenario_names", default=None)


@contextmanager
def _knowing(data: Any) -> Iterator[None]:
    tags = data.get("tags") if isinstance(data, dict) else None
    devices = data.get("devices") if isinstance(data, dict) else None
    known = _Known(
        tags={
            str(name): spec.get("type") if isinstance(spec, dict) and isinstance(spec.get("type"), str) else None
            for name, spec in (tags.items() if isinstance(tags, dict) else ())
        },
        devices=frozenset(str(name) for name in devices) if isinstance(devices, dict) else frozenset(),
    )
    # Without a readable `tags:` there is nothing to check names against: say nothing rather than
    # call every name unknown.
    token = _known.set(known if isinstance(tags, dict) else None)
    try:
        yield
    finally:
        _known.reset(token)


def known_tag_type(tag: str) -> str | None:
    """While a scenario validates, the type its file gives `tag` (None when unknown, or not validating):
    for a front-end's address checks, which need the type of the tag an address serves."""
    known = _known.get()
    return None if known is None else known.tags.get(tag)


# --- field types ---------------------------------------------------------------------------------


def parse_duration(value: object) -> float:
    """`250ms`, `2s`, `1.5min`, `1h` or a bare number of seconds, as float seconds (never negative)."""
    try:
        return durations.parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds == 0:
        raise PydanticCustomError("duration", "expected a duration longer than zero, such as 100ms")
    return seconds


MIN_PERIOD = 0.001
"""The shortest tick or `every` period (1 ms): each one is a timer run on the server's event loop, and
below a millisecond the plant would do nothing but tick while clients wait."""
MAX_TIMER_RATE = 1000.0
"""The most ticks or `every` events one period may ask of a real second, after `--clock-speed`."""


def _period(value: object) -> float:
    seconds = _positive_duration(value)
    if seconds < MIN_PERIOD:
        raise PydanticCustomError(
            "duration",
            "expected at least 1ms: the plant runs one timer per period, and shorter ones would leave it no "
            "time to answer clients (got {seconds:g}s)",
            {"seconds": seconds},
        )
    return seconds


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": durations.DURATION.pattern},
    ],
    "description": durations.HELP,
}
Duration = Annotated[float, PlainValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]
PositiveDuration = Annotated[float, PlainValidator(_positive_duration), WithJsonSchema(_DURATION_SCHEMA)]
Period = Annotated[
    float, PlainValidator(_period), WithJsonSchema({**_DURATION_SCHEMA, "description": "a duration of 1ms or more"})
]


def _scalar(value: object) -> Value:
    if isinstance(value, (bool, int, float, str)):
        return value
    raise PydanticCustomError("scalar", "expected a single value: a number, true/false or a string")


Scalar = Annotated[
    bool | int | float | str,
    PlainValidator(_scalar),
    WithJsonSchema({"type": ["boolean", "number", "string"]}),
]


def _expression(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = repr(value)
    if not isinstance(value, str):
        raise PydanticCustomError("expression", 'expected an expression (text), such as "inflow - outflow"')
    try:
        compiled = compile_expr(value)
    except ExprError as exc:
        raise PydanticCustomError("expression", "{why}", {"why": str(exc)}) from None
    known = _known.get()
    if known is not None:
        unknown = sorted(compiled.names - known.tags.keys())
        if unknown:
            name = unknown[0]
            more = f" (and {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else ""
            raise PydanticCustomError(
                "unknown_tag",
                "{message}",
                {"message": f"expression names {name!r}{more}, which is not a tag; {_suggest(name, known.tags)}"},
            )
    return value


Expr = Annotated[
    str,
    PlainValidator(_expression),
    WithJsonSchema({"type": ["string", "number"], "description": "an expression over tags, e.g. inflow - outflow"}),
]


def _tag_name(name: str) -> str:
    parts = name.split(".")
    if not all(part.isidentifier() and not keyword.iskeyword(part) and not part.startswith("__") for part in parts):
        raise PydanticCustomError(
            "tag_name",
            "a tag name is dot-separated words of letters, digits and _ (such as tank.level), so that "
            "expressions can name it",
        )
    return name


def _known_tag(name: str) -> str:
    known = _known.get()
    if known is not None and name not in known.tags:
        raise PydanticCustomError(
            "unknown_tag", "{message}", {"message": f"no tag {name!r}; {_suggest(name, known.tags)}"}
        )
    return name


def _known_device(name: str) -> str:
    known = _known.get()
    if known is not None and name not in known.devices:
        raise PydanticCustomError(
            "unknown_device", "{message}", {"message": f"no device {name!r}; {_suggest(name, known.devices)}"}
        )
    return name


_LISTEN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


def _listen(value: str) -> str:
    match = _LISTEN.match(value)
    if match is None or int(match.group(2)) > 65535:
        raise PydanticCustomError("listen", "expected host:port, such as 127.0.0.1:5020 (port 0 picks any free port)")
    return value


TagName = Annotated[str, AfterValidator(_tag_name)]
KnownTag = Annotated[str, AfterValidator(_known_tag)]
KnownDevice = Annotated[str, AfterValidator(_known_device)]
Listen = Annotated[str, AfterValidator(_listen)]


def checked_value(type_name: str, value: Value) -> Value:
    """`value` as a tag of type `type_name` holds it (5.0 -> 5 for an int16, 1 -> True for a bool).

    The range rules are the value codec's: a value the tag's type cannot hold is an EncodeError.
    """
    dtype, length = parse_type(type_name)
    try:
        WireFormat(dtype, length=length or 0).encode(value)
    except OverflowError:
        raise EncodeError(f"{value!r} is out of range for {type_name}") from None
    if dtype is DataType.BOOL:
        return bool(value)
    if dtype is DataType.STRING:
        return value
    if dtype.is_float:
        return float(value)
    return int(value)


def _value_problem(type_name: str | None, value: Any) -> str | None:
    if type_name is None:
        return None
    try:
        checked_value(type_name, value)
    except (EncodeError, ValueError) as exc:
        return f"expected a value {with_article(type_name)} tag can hold: {exc}"
    return None


# --- the model base: strict, and unknown keys name what is expected -----------------------------


class _Strict(BaseModel):
    """Base of the strict models.

    An unknown key is named with what is expected (pydantic's own message says neither), and a
    model's cross-field checks (`_problems`) run even when its mapping has other mistakes, so that
    every mistake gets its own line at once.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    _open: ClassVar[bool] = False  # keys beyond the fields are kept, not refused

    @model_validator(mode="wrap")
    @classmethod
    def _every_problem(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        errors: list[InitErrorDetails] = []
        misspelt: set[str] = set()
        if isinstance(data, dict) and not cls._open:
            allowed = [field.alias or name for name, field in cls.model_fields.items()]
            for key in data:
                if key not in allowed:
                    close = difflib.get_close_matches(str(key), allowed, n=1)
                    misspelt.update(close)
                    errors.append(_error((str(key),), cls._unknown_key_message(str(key), allowed, close), key))
            data = {key: value for key, value in data.items() if key in allowed}
        try:
            result = handler(data)
        except ValidationError as exc:
            # A key missing because it was misspelt is already reported, as the misspelling.
            found = [item for item in exc.errors() if not (item["type"] == "missing" and item["loc"][0] in misspelt)]
            _raise(cls.__name__, _carried(found) + errors)
        errors.extend(result._problems())
        if errors:
            _raise(cls.__name__, errors)
        return result

    @classmethod
    def _unknown_key_message(cls, key: str, allowed: list[str], close: list[str]) -> str:
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key; {hint}expected one of: {', '.join(allowed)}"

    def _problems(self) -> list[InitErrorDetails]:
        """Checks across fields, run once the fields themselves are valid."""
        return []


# --- behaviours ------------------------------------------------------------------------------------


class BehaviourSpec(_Strict):
    """What drives a tag: one kind key (the subclass's first field) plus noise and min/max beside it."""

    noise: float | None = Field(default=None, ge=0, description="standard deviation of gaussian noise added each tick")
    min: float | None = Field(default=None, description="clamp the value (and an integrator's state) to at least this")
    max: float | None = Field(default=None, description="clamp the value (and an integrator's state) to at most this")

    @classmethod
    def kind_name(cls) -> str:
        """The key that names this kind of behaviour (its first own field)."""
        return next(name for name in cls.model_fields if name not in BehaviourSpec.model_fields)

    @classmethod
    def _unknown_key_message(cls, key: str, allowed: list[str], close: list[str]) -> str:
        if key in BEHAVIOUR_KINDS:
            return f"a behaviour has one kind, and this one is already {cls.kind_name()!r}"
        return super()._unknown_key_message(key, allowed, close)

    def _problems(self) -> list[InitErrorDetails]:
        if self.min is not None and self.max is not None and self.min > self.max:
            return [_error(("min",), f"min ({self.min}) is above max ({self.max})", self.min)]
        return []

    @property
    def kind(self) -> str:
        return self.kind_name()


class ConstantBehaviour(BehaviourSpec):
    constant: Scalar


class SineParams(_Strict):
    mean: float = 0.0
    amplitude: float = 1.0
    period: PositiveDuration
    phase: Duration = Field(default=0.0, description="shifts the wave earlier by this much time")


class SineBehaviour(BehaviourSpec):
    sine: SineParams


class RampParams(_Strict):
    start: float = Field(default=0.0, alias="from")
    to: float
    over: PositiveDuration
    repeat: bool = Field(default=True, description="start again from `from` (a sawtooth); false holds at `to`")


class RampBehaviour(BehaviourSpec):
    ramp: RampParams


class SquareParams(_Strict):
    low: float = 0.0
    high: float = 1.0
    period: PositiveDuration
    duty: float = Field(default=0.5, gt=0, lt=1, description="fraction of each period spent high")
    phase: Duration = 0.0


class SquareBehaviour(BehaviourSpec):
    square: SquareParams


class RandomWalkParams(_Strict):
    step: float = Field(gt=0, description="each tick moves by a uniform random amount in [-step, +step]")
    start: float | None = Field(default=None, description="first value (default: the tag's init)")


class RandomWalkBehaviour(BehaviourSpec):
    random_walk: RandomWalkParams


class Step(_Strict):
    value: Scalar
    duration: PositiveDuration = Field(alias="for")


class StepsBehaviour(BehaviourSpec):
    steps: list[Step] = Field(min_length=1, description="values held for a while each, in order")
    repeat: bool = True


class LagBehaviour(BehaviourSpec):
    lag: Expr = Field(description="the input the value follows")
    tau: PositiveDuration = Field(description="time constant: 63% of a step is followed after tau")


class IntegrateBehaviour(BehaviourSpec):
    integrate: Expr = Field(description="rate of change per second")


class ExprBehaviour(BehaviourSpec):
    expr: Expr


BEHAVIOUR_KINDS: dict[str, type[BehaviourSpec]] = {
    "constant": ConstantBehaviour,
    "sine": SineBehaviour,
    "ramp": RampBehaviour,
    "square": SquareBehaviour,
    "random_walk": RandomWalkBehaviour,
    "steps": StepsBehaviour,
    "lag": LagBehaviour,
    "integrate": IntegrateBehaviour,
    "expr": ExprBehaviour,
}
_STRING_KINDS = frozenset({"constant", "steps", "expr"})


def _behaviour_kind(value: Any) -> str | None:
    if isinstance(value, BehaviourSpec):
        return type(value).__name__
    if isinstance(value, dict):
        for key in value:
            if key in BEHAVIOUR_KINDS:
                return BEHAVIOUR_KINDS[key].__name__
    return None


Behaviour = Annotated[
    Annotated[ConstantBehaviour, Tag("ConstantBehaviour")]
    | Annotated[SineBehaviour, Tag("SineBehaviour")]
    | Annotated[RampBehaviour, Tag("RampBehaviour")]
    | Annotated[SquareBehaviour, Tag("SquareBehaviour")]
    | Annotated[RandomWalkBehaviour, Tag("RandomWalkBehaviour")]
    | Annotated[StepsBehaviour, Tag("StepsBehaviour")]
    | Annotated[LagBehaviour, Tag("LagBehaviour")]
    | Annotated[IntegrateBehaviour, Tag("IntegrateBehaviour")]
    | Annotated[ExprBehaviour, Tag("ExprBehaviour")],
    Discriminator(
        _behaviour_kind,
        custom_error_type="behaviour",
        custom_error_message=f"expected a behaviour: a mapping with one of {', '.join(BEHAVIOUR_KINDS)}",
    ),
]


# --- tags ------------------------------------------------------------------------------------------


def _type_text(name: str) -> str:
    try:
        parse_type(name)
    except ValueError as exc:
        raise PydanticCustomError("tag_type", "{why}", {"why": str(exc)}) from None
    return name


class StrictTag(TagSpec, _Strict):
    """A plant tag: its type, how it starts, and what drives it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    init: Scalar | None = Field(default=None, description="value at start and after a reset (default 0, false or '')")
    behaviour: Behaviour | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, name: str) -> str:
        return _type_text(name)

    def _problems(self) -> list[InitErrorDetails]:
        errors = []
        if self.init is not None and (problem := _value_problem(self.type, self.init)):
            errors.append(_error(("init",), problem, self.init))
        behaviour = self.behaviour
        if behaviour is not None:
            errors.extend(self._behaviour_problems(behaviour))
        return errors

    def _behaviour_problems(self, behaviour: BehaviourSpec) -> list[InitErrorDetails]:
        dtype, _ = parse_type(self.type)
        where = ("behaviour",)
        errors = []
        if dtype is DataType.STRING and behaviour.kind not in _STRING_KINDS:
            errors.append(
                _error(
                    (*where, behaviour.kind),
                    f"a string tag takes constant, steps or expr, not {behaviour.kind}",
                    behaviour.kind,
                )
            )
        if dtype in (DataType.STRING, DataType.BOOL):
            for option in ("noise", "min", "max"):
                if getattr(behaviour, option) is not None:
                    errors.append(
                        _error(
                            (*where, option),
                            f"{option} needs a number tag, not {self.type}",
                            getattr(behaviour, option),
                        )
                    )
        if isinstance(behaviour, ConstantBehaviour) and (problem := _value_problem(self.type, behaviour.constant)):
            errors.append(_error((*where, "constant"), problem, behaviour.constant))
        if isinstance(behaviour, StepsBehaviour):
            for index, step in enumerate(behaviour.steps):
                if problem := _value_problem(self.type, step.value):
                    errors.append(_error((*where, "steps", index, "value"), problem, step.value))
        return errors


# --- devices -----------------------------------------------------------------------------------------


class StrictMapEntry(MapEntry, _Strict):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("type")
    @classmethod
    def _known_type(cls, name: str | None) -> str | None:
        return None if name is None else _type_text(name)


def map_entry_kind(value: Any) -> str | None:
    """Which shape a map entry has, for front-ends' discriminated map values: "Address" (`hr:0`,
    `DB1.DBD0`) or "Entry" (a table with `address:` and more keys); None for neither."""
    if isinstance(value, str):
        return "Address"
    if isinstance(value, (dict, MapEntry)):
        return "Entry"
    return None


@dataclass(frozen=True)
class AddressedEntry:
    """A map entry that gives an address, as a front-end's model checks it: the tag, the address
    text, where an error about the address points, the wire type (written, or the tag map's), and
    the entry's other keys (empty for a bare address)."""

    tag: str
    text: str
    loc: tuple[str | int, ...]
    wire: str | None
    keys: dict[Any, Any]

    def scale_problem(self, dtype: DataType) -> InitErrorDetails | None:
        """scale and offset on a bool or a string, which they cannot apply to."""
        keys = self.keys
        if (keys.get("scale", 1) != 1 or keys.get("offset", 0) != 0) and dtype in (DataType.BOOL, DataType.STRING):
            return _error(("map", self.tag), f"scale and offset apply to numbers, not {self.wire}", self.text)
        return None


def addressed_entries(raw_map: dict[Any, Any]) -> Iterator[AddressedEntry]:
    """The entries of a raw device map that give an address as text; the model reports the others."""
    for key, raw in raw_map.items():
        tag = str(key)
        keys = raw if isinstance(raw, dict) else {}
        text = raw if isinstance(raw, str) else keys.get("address")
        if not isinstance(text, str):
            continue
        loc: tuple[str | int, ...] = ("map", tag) if isinstance(raw, str) else ("map", tag, "address")
        written = keys.get("type")
        yield AddressedEntry(tag, text, loc, written if isinstance(written, str) else known_tag_type(tag), keys)


class DeviceModel(_Strict):
    """The keys every device has, whatever its protocol. Each protocol's front-end subclasses it (its
    `protocol` a Literal of its name) with its own keys and address checks, and registers it in
    simulators.protocols; the loader validates each device with the model its `protocol` names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: str
    listen: Listen | None = Field(default=None, description="host:port to serve on; port 0 picks a free port")
    map: dict[KnownTag, Any] | Literal["all"] = Field(default_factory=dict)

    def entry(self, tag: str) -> MapEntry:
        return map_entry(self, tag)

    def mapped(self, tags: Any) -> list[str]:
        """The tags this device serves (`map: all`: every tag of `tags`)."""
        return mapped_tags(self, tags)


class UnservedDevice(DeviceModel):
    """A device of a protocol that has no simulator here: its keys are kept unchecked, and the host
    does not serve it (it says so)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    _open: ClassVar[bool] = True


def _device_problems(devices: dict[Any, Any]) -> tuple[dict[Any, Any], list[InitErrorDetails]]:
    """Each device validated by its protocol's model; what failed is left out and reported."""
    from simulators import protocols  # the front-ends import this module

    checked: dict[Any, Any] = {}
    errors: list[InitErrorDetails] = []
    for name, raw in devices.items():
        protocol = raw.get("protocol") if isinstance(raw, dict) else None
        if not isinstance(protocol, str):
            checked[name] = raw  # the base model reports the missing or wrong protocol
            continue
        if protocol not in protocols.names():
            loc = (str(name), "protocol")
            message = f"unknown protocol {protocol!r}; {_suggest(protocol, protocols.names())}"
            errors.append(_error(("devices", *loc), message, protocol))
            continue
        frontend = protocols.frontend(protocol)
        model: type[DeviceModel] = UnservedDevice if frontend is None else frontend.device_model
        try:
            checked[name] = model.model_validate(raw)
        except ValidationError as exc:
            errors.extend(
                InitErrorDetails(
                    type=PydanticCustomError(item["type"], "{message}", {"message": item["msg"]}),
                    loc=("devices", str(name), *item["loc"]),
                    input=item["input"],
                )
                for item in exc.errors()
            )
    return checked, errors


# --- events --------------------------------------------------------------------------------------------


class SetExpr(_Strict):
    """A computed value for `set`: `{expr: "count + 1"}`."""

    expr: Expr


SetValue = Annotated[
    Annotated[Scalar, Tag("Value")] | Annotated[SetExpr, Tag("SetExpr")],
    Discriminator(lambda value: "SetExpr" if isinstance(value, (dict, SetExpr)) else "Value"),
]


class RampAction(_Strict):
    """Move a number tag in a straight line to `to`, over `over`."""

    tag: KnownTag
    to: float
    over: PositiveDuration


def _one_or_more(value: Any) -> Any:
    return [value] if isinstance(value, (int, str)) and not isinstance(value, bool) else value


def _one_or_more_schema(low: int, high: int) -> WithJsonSchema:
    # The model keeps a list, but the file may give one number: say so to editors, too.
    number = {"type": "integer", "minimum": low, "maximum": high}
    return WithJsonSchema({"anyOf": [number, {"type": "array", "items": number}, {"type": "null"}]})


# A match's address or range, one grammar for the scenario model and the fault's checker
# (simulators.faults.spec.AddressRange): Modbus areas, or S7 byte areas.
MATCH_ADDRESS = r"^\s*(coil|di|ir|hr|DB[1-9]\d{0,4}|M|I|Q):(\d{1,5})(?:\s*-\s*(\d{1,5}))?\s*$"


def _function_item(value: Any) -> Any:
    """A code in 1..65535, or a name checked against the front-ends' tables now (so a typo is an error
    at its line); kept as written, as the fault's checker takes both."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("expected a function or service code (1..65535) or its name")
    if isinstance(value, int):
        if not 1 <= value <= 0xFFFF:
            raise ValueError("Input should be greater than or equal to 1 and less than or equal to 65535")
        return value
    from simulators.faults.spec import function_code  # simulators.faults imports this module

    try:
        function_code(value)
    except ConfigError as exc:
        raise ValueError(
            "expected a function or service code, or a name the front-ends give one "
            "(read_holding_registers, read_var, Read)"
        ) from exc
    return value


def _function_schema() -> WithJsonSchema:
    item = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 0xFFFF}, {"type": "string", "minLength": 1}]}
    return WithJsonSchema({"anyOf": [item, {"type": "array", "items": item}, {"type": "null"}]})


class FaultMatch(_Strict):
    """Which requests a fault applies to; an absent key matches everything."""

    unit: Annotated[
        list[Annotated[int, Field(ge=0, le=255)]] | None, BeforeValidator(_one_or_more), _one_or_more_schema(0, 255)
    ] = None
    # The protocol's function or service code: Modbus 1..127, an S7 function, an OPC UA request's DataType id;
    # or its name as the front-ends give it (read_holding_registers, read_var, Read).
    function: Annotated[
        list[Annotated[int | str, BeforeValidator(_function_item)]] | None,
        BeforeValidator(_one_or_more),
        _function_schema(),
    ] = None
    address: Annotated[str, Field(pattern=MATCH_ADDRESS)] | None = Field(
        default=None,
        description="an address or range: Modbus hr:0-9 (coil, di, ir, hr), S7 bytes DB1:0-7 (DB<n>, M, I, Q)",
    )
    node: str | None = Field(default=None, description="an OPC UA node id")


def _fault_schema(schema: dict[str, Any]) -> None:
    # Imported here: simulators.faults imports this module (for the vocabulary of kinds).
    from simulators.faults.spec import kind_schemas

    schema["additionalProperties"] = True  # the kind's clause below says which
    schema["allOf"] = kind_schemas()


class FaultSpec(_Strict):
    """A fault to switch on: the common keys here, the kind's own (delay, jitter, code, ...) checked by
    simulators.faults.spec, the checker the host uses when the event fires."""

    model_config = ConfigDict(extra="allow", frozen=True, json_schema_extra=_fault_schema)
    _open: ClassVar[bool] = True

    device: KnownDevice
    kind: FaultKind
    probability: float = Field(default=1.0, ge=0, le=1)
    match: FaultMatch | None = None
    count: int | None = Field(default=None, ge=1, description="apply to this many requests, then stop")
    duration: PositiveDuration | None = Field(default=None, alias="for", description="stop after this long")

    def _problems(self) -> list[InitErrorDetails]:
        if self.count is not None and self.duration is not None:
            return [_error(("count",), "a fault takes count or for, not both", self.count)]
        return _host_check(self)

    @property
    def params(self) -> dict[str, Any]:
        """The kind-specific keys."""
        return dict(self.model_extra or {})


_CHECKED_KEY = re.compile(r"^([A-Za-z_][\w.]*): ")


def _host_check(fault: FaultSpec) -> list[InitErrorDetails]:
    """The fault as the host will build it when its event fires, checked now by the same code.

    The kind's own keys (delay, code, ...) are checked only there (simulators.faults.spec), so a file
    that passes here is a file whose faults all happen; the error is placed at the key it names.
    """
    # Imported here: simulators.faults imports this module (for the vocabulary of kinds).
    from simulators.faults.spec import FaultSpec as CheckedFault
    from simulators.plant import FaultRecord

    record = FaultRecord(
        fault.device, fault.kind, 0.0, fault.duration, fault.probability, fault.match, fault.count, fault.params
    )
    try:
        CheckedFault.from_record(record)
    except ConfigError as exc:
        message = str(exc).removeprefix(f"fault {fault.kind} of {fault.device}: ")
        found = _CHECKED_KEY.match(message)
        if found is None:
            return [_error((), message, None)]
        key = found.group(1)
        return [_error(tuple(key.split(".")), message[found.end() :], fault.params.get(key))]
    return []


class ClearSpec(_Strict):
    """Switch off a device's active faults (of one kind, or all)."""

    device: KnownDevice
    kind: FaultKind | None = None


TRIGGERS = ("at", "every", "when")
ACTIONS = ("set", "ramp", "fault", "clear")


class Event(_Strict):
    """A trigger (at, every or when) and what then happens (set, ramp, fault, clear)."""

    at: Duration | None = Field(default=None, description="once, at this plant time")
    every: Period | None = Field(default=None, description="at this period, first one period in (1ms or more)")
    when: Expr | None = Field(default=None, description="each time this becomes true (checked every tick)")
    assign: dict[KnownTag, SetValue] | None = Field(default=None, alias="set")
    ramp: RampAction | None = None
    fault: FaultSpec | None = None
    clear: ClearSpec | None = None

    def _problems(self) -> list[InitErrorDetails]:
        errors = []
        triggers = [name for name in TRIGGERS if getattr(self, name) is not None]
        if len(triggers) != 1:
            got = ", ".join(triggers) or "none"
            errors.append(_error((), f"an event has exactly one trigger: at, every or when (got {got})", None))
        if self.assign is None and self.ramp is None and self.fault is None and self.clear is None:
            errors.append(_error((), "an event needs an action: set, ramp, fault or clear", None))
        known = _known.get()
        if known is not None:
            for tag, value in (self.assign or {}).items():
                if not isinstance(value, SetExpr) and (problem := _value_problem(known.tags.get(tag), value)):
                    errors.append(_error(("set", tag), problem, value))
            if self.ramp is not None:
                found = known.type_of(self.ramp.tag)
                if found is not None and found[0] in (DataType.BOOL, DataType.STRING):
                    errors.append(
                        _error(
                            ("ramp", "tag"),
                            f"ramp moves a number tag, not {with_article(found[0].value)}",
                            self.ramp.tag,
                        )
                    )
        return errors

    @property
    def trigger(self) -> str:
        return next(name for name in TRIGGERS if getattr(self, name) is not None)


# --- the scenario --------------------------------------------------------------------------------------


class ClockSpec(_Strict):
    tick: Period = Field(default=0.1, description="how often behaviours and `when` events are computed (1ms or more)")


class Scenario(TagFile, _Strict):
    """A whole scenario file: one plant, its tags, the devices that serve them, and its events."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="Bifrost scenario",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    scenario: str = Field(min_length=1, description="the plant's name")
    description: str | None = None
    seed: int = Field(default=0, description="every random behaviour and fault draws from it")
    clock: ClockSpec = Field(default_factory=lambda: ClockSpec())
    tags: dict[TagName, StrictTag]  # type: ignore[assignment]  # narrower than the lenient model's
    devices: dict[str, SerializeAsAny[DeviceModel]] = Field(default_factory=dict)  # type: ignore[assignment]  # narrower
    events: list[Event] = Field(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _names_in_context(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        with _knowing(data):
            errors: list[InitErrorDetails] = []
            if isinstance(data, dict) and isinstance(data.get("devices"), dict):
                devices, errors = _device_problems(data["devices"])
                data = {**data, "devices": devices}
            result: Self = _with_more(cls.__name__, data, handler, errors)
            return result

    def fastest_speed(self) -> float:
        """The highest clock speed at which no period (the tick, an `every`) asks for more than
        MAX_TIMER_RATE timers a real second."""
        shortest = min([self.clock.tick, *(event.every for event in self.events if event.every is not None)])
        return MAX_TIMER_RATE * shortest

    def check_speed(self, speed: float) -> None:
        """A ConfigError unless a real-time clock can run this plant `speed` times faster than real time."""
        if not (speed > 0 and math.isfinite(speed)):
            raise ConfigError(f"clock speed must be a positive number, not {speed!r}")
        limit = self.fastest_speed()
        if speed > limit:
            shortest = limit / MAX_TIMER_RATE
            raise ConfigError(
                f"clock speed {speed:g} is too fast for {self.scenario}: its shortest period ({shortest * 1000:g}ms) "
                f"would come {speed / shortest:.3g} times a second, and a plant keeps up with at most "
                f"{MAX_TIMER_RATE:g}; at most {limit:g} for this scenario"
            )

    def device(self, name: str) -> DeviceModel:
        try:
            return self.devices[name]
        except KeyError:
            raise ConfigError(f"no device {name!r}; the devices are: {_listing(self.devices)}") from None


# What front-ends build their device models with.
Strict = _Strict
scenario_error = _error
with_problems = _with_more


def json_schema() -> str:
    """The JSON Schema of scenario files, as shipped in scenarios/scenario.schema.json: a device is one
    of the device models the protocols' front-ends register, told apart by `protocol`."""
    from simulators import protocols

    schema = Scenario.model_json_schema()
    defs = schema.setdefault("$defs", {})
    choices = []
    for frontend in protocols.frontends():
        model = frontend.device_model
        sub = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        defs[model.__name__] = sub
        choices.append({"$ref": f"#/$defs/{model.__name__}"})
    defs.pop("DeviceModel", None)
    schema["properties"]["devices"]["additionalProperties"] = {"oneOf": choices}
    return json.dumps(schema, indent=2) + "\n"


# pydantic's wording, made to say what is expected
_REWORDED = (
    (re.compile(r"Value error, |Assertion failed, "), ""),
    (re.compile(r": Field required$"), ": required, but missing"),
)


def _reworded(problem: str) -> str:
    for pattern, replacement in _REWORDED:
        problem = pattern.sub(replacement, problem)
    return problem


def load_scenario(path: str | Path, text: str | None = None) -> Scenario:
    """Read and check a scenario file; a ConfigError lists every problem, one `file:line:col: ...` line each."""
    located = load_yaml(path, text, keep_going=True)
    problems = list(located.problems)
    scenario: Scenario | None = None
    try:
        scenario = validate_located(Scenario, located)
    except ConfigError as exc:
        problems.extend(_reworded(problem) for problem in exc.problems)
    if scenario is not None and not problems:
        # Imported here: the plant imports this module. Only a file that checks can be evaluated.
        from simulators.plant import expression_problems

        for loc, message in expression_problems(scenario):
            where, field = located.where(loc)
            problems.append(f"{where}: {field}: {message}")
    if problems or scenario is None:
        problems = sorted(problems, key=lambda line: _position(line, located.source))
        raise ConfigError("\n".join(problems), problems=problems)
    return scenario


def _position(line: str, source: str) -> tuple[int, int]:
    match = re.match(r":(\d+):(\d+):", line[len(source) :])
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)
