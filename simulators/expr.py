"""Safe expressions over plant tags: a whitelist over Python's `ast`, compiled once into closures.

Never `eval`: the source is parsed, every node is checked against a short whitelist (literals,
arithmetic, comparisons, boolean logic, `x if c else y`, tag names such as `tank.level`, and calls
to a fixed set of math functions), and the checked tree is turned into nested closures that read
tag values from a mapping. Inputs are bounded (source length, node count, nesting) and the two
operators that can blow up exponentially (`**`, `<<`) check the size of their result first, so no
expression can hang the plant or eat its memory. Every failure is an ExprError.
"""

from __future__ import annotations

import ast
import math
import operator
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from bifrost.errors import BifrostError
from bifrost.tags import Value

MAX_SOURCE = 1000  # characters
MAX_NODES = 300
MAX_DEPTH = 40
MAX_INT_BITS = 4096  # largest integer result of `**` or `<<`
MAX_ROUND_DIGITS = 20  # round(x, n): |n| beyond this costs time and means nothing

Values = Mapping[str, Value]
Evaluator = Callable[[Values], Any]


class ExprError(BifrostError, ValueError):
    """An expression is not allowed, does not parse, or failed to evaluate."""


# --- operators: the C ones where they are safe, guarded ones where they are not -----------------


def _numbers(a: Any, b: Any, symbol: str) -> None:
    # Strings may be compared and joined, never multiplied or %-formatted (`"x" * 10**9`).
    if isinstance(a, str) or isinstance(b, str):
        raise TypeError(f"{symbol} takes numbers, not strings")


def _mul(a: Any, b: Any) -> Any:
    _numbers(a, b, "*")
    # Integers have no size limit: products of products would grow without end, so bound them as `**`.
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
        raise ExprError(f"the product is too large (results are limited to {MAX_INT_BITS} bits)")
    return a * b


def _mod(a: Any, b: Any) -> Any:
    _numbers(a, b, "%")
    return a % b


def _pow(a: Any, b: Any) -> Any:
    _numbers(a, b, "**")
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1 and b * abs(a).bit_length() > MAX_INT_BITS:
        raise ExprError(f"{a} ** {b} is too large (results are limited to {MAX_INT_BITS} bits)")
    result = a**b
    if isinstance(result, complex):
        raise ExprError(f"{a} raised to {b} is not a real number")
    return result


def _lshift(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and a.bit_length() + b > MAX_INT_BITS:
        raise ExprError(f"{a} << {b} is too large (results are limited to {MAX_INT_BITS} bits)")
    return a << b


def _invert(a: Any) -> Any:
    if not isinstance(a, int):
        raise TypeError(f"~ takes an integer, not {type(a).__name__}")
    return ~int(a)  # int(): ~True is -2 on every Python, without 3.12's deprecation warning


_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: _mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: _mod,
    ast.Pow: _pow,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
    ast.LShift: _lshift,
    ast.RShift: operator.rshift,
}
_UNARYOPS: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
    ast.Invert: _invert,
}
_CMPOPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}

# --- functions ----------------------------------------------------------------------------------


def _clamp(x: Any, low: Any, high: Any) -> Any:
    return low if x < low else high if x > high else x


def _round(x: Any, ndigits: Any = None) -> Any:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS:
        raise ExprError(f"round() takes a whole number of digits in -{MAX_ROUND_DIGITS}..{MAX_ROUND_DIGITS}")
    return round(x, ndigits)


def _log(x: Any, base: Any = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


def _sign(x: Any) -> int:
    return int((x > 0) - (x < 0))


# name -> (function, fewest arguments, most arguments)
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "abs": (abs, 1, 1),
    "min": (min, 2, 16),
    "max": (max, 2, 16),
    "clamp": (_clamp, 3, 3),
    "round": (_round, 1, 2),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "sign": (_sign, 1, 1),
    "sqrt": (math.sqrt, 1, 1),
    "exp": (math.exp, 1, 1),
    "log": (_log, 1, 2),
    "log10": (math.log10, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "asin": (math.asin, 1, 1),
    "acos": (math.acos, 1, 1),
    "atan": (math.atan, 1, 1),
    "atan2": (math.atan2, 2, 2),
    "hypot": (math.hypot, 2, 2),
    "int": (int, 1, 1),
    "float": (float, 1, 1),
    "bool": (bool, 1, 1),
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

# What a failing evaluation may raise; all of it becomes ExprError.
_EVAL_ERRORS = (ArithmeticError, ValueError, TypeError, KeyError, RecursionError, MemoryError)


class Expression:
    """A checked, compiled expression. Call it with a mapping of tag values."""

    __slots__ = ("_fn", "names", "source")

    def __init__(self, source: str, fn: Evaluator, names: frozenset[str]) -> None:
        self.source = source
        self.names = names  # the tags it reads, e.g. {"tank.level", "pump.run"}
        self._fn = fn

    def __call__(self, values: Values) -> Value:
        try:
            result: Value = self._fn(values)
        except ExprError as exc:
            raise ExprError(f"{self.source!r}: {exc}") from None
        except KeyError as exc:
            raise ExprError(f"{self.source!r}: no value for tag {exc.args[0]!r}") from None
        except _EVAL_ERRORS as exc:
            raise ExprError(f"{self.source!r}: {exc}") from None
        return result

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def compile_expr(source: str) -> Expression:
    """Parse and check `source` once; the result evaluates fast and safely, any number of times."""
    if not isinstance(source, str):
        raise ExprError(f"an expression is text, not {type(source).__name__}")
    if len(source) > MAX_SOURCE:
        raise ExprError(f"expression is {len(source)} characters; at most {MAX_SOURCE} are allowed")
    try:
        with warnings.catch_warnings():
            # `1and 2` parses with a SyntaxWarning; refuse it as the mistake it almost surely is.
            warnings.simplefilter("error", SyntaxWarning)
            tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"not a valid expression: {exc.msg} (column {exc.offset})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExprError(f"not a valid expression: {exc}") from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise ExprError(f"expression has {count} parts; at most {MAX_NODES} are allowed")
    names: set[str] = set()
    fn, _ = _Compiler(names).build(tree.body, 0)
    return Expression(source, fn, frozenset(names))


_NOT_ALLOWED = {
    ast.Subscript: "indexing ([...]) is not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.NamedExpr: ":= is not allowed",
    ast.Starred: "* unpacking is not allowed",
    ast.List: "lists are not allowed",
    ast.Tuple: "tuples are not allowed",
    ast.Dict: "dicts are not allowed",
    ast.Set: "sets are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
}


class _Compiler:
    """Turns a checked tree into closures; constant subtrees are folded at compile time."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def build(self, node: ast.expr, depth: int) -> tuple[Evaluator, tuple[Any] | None]:
        """The evaluator of `node`, and `(value,)` when it is a constant."""
        if depth > MAX_DEPTH:
            raise ExprError(f"expression is nested more than {MAX_DEPTH} deep")
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise ExprError(_NOT_ALLOWED.get(type(node), f"{type(node).__name__} is not allowed in an expression"))
        result: tuple[Evaluator, tuple[Any] | None] = method(node, depth + 1)
        return result

    def _Constant(self, node: ast.Constant, depth: int) -> tuple[Evaluator, tuple[Any] | None]:
        value = node.value
        if not isinstance(value, (bool, int, float, str)):
            raise ExprError(f"{value!r} is not allowed; constants are numbers, strings, True and False")
        return (lambda _v: value), (value,)

    def _Name(self, node: ast.Name, depth: int) -> tuple[Evaluator, tuple[Any] | None]:
        if node.id in CONSTANTS:
            value = CONSTANTS[node.id]
            return (lambda _v: value), (value,)
        if node.id in FUNCTIONS:
            raise ExprError(f"{node.id} is a function: call it, as in {node.id}(x)")
        return self._tag(node.id)

    def _Attribute(self, node: ast.Attribute, depth: int) -> tuple[Evaluator, tuple[Any] | None]:
        # Only chains of names (`tank.level`, `line1.pump.run`) are allowed: they name one tag.
        parts = [node.attr]
        inner: ast.expr = node.value
        while isinstance(inner, ast.Attribute):
            parts.append(inner.attr)
            inner = inner.value
        if not isinstance(inner, ast.Name):
            raise ExprError("a dotted name must name a tag, such as tank.level; attributes of values are not allowed")
        parts.append(inner.id)
        return self._tag(".".join(reversed(parts)))

    def _tag(self, name: str) -> tuple[Evaluator, tuple[Any] | None]:
        if any(part.startswith("__") for part in name.split(".")):
            raise ExprError(f"{name!r}: names starting with __ are not allowed")
        self.names.add(name)
        return (lambda v: v[name]), None

    def _BinOp(self, node: ast.BinOp, depth: int) -> tuple[Evaluator, tuple[Any] | None]:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise ExprError(f"operator {type(node.op).__name__} is not allowed")
        left, lc = self.build(node.left, depth)
        right, rc = self.build(node.right, depth)
        if lc is not None and rc is not None:
            folded = _fold(op, lc[0], rc[0])
            if folded is not None:
                value = folded[0]
                return (lambda _v: value), folded
        if rc is not None:
            rv = rc[0]
            return (lambda v: op(left(v), rv)), None
        if lc is not None:
            lv = lc[0]
            return (lambda v: op(lv, right(v))), None
        return (lambda v: op(left(v), right(v))), None

    def _UnaryOp(self, node: ast.UnaryOp, depth: int) -> tuple[Evaluator, tuple[Any] | None]:
        op = _UNARYOPS[type(node.op)]
        operand, oc = self.build(node.operand, depth)
        if oc is not None:
            folded = _fold(op, oc[0])
            if folded is not None:
                value = folded[0]
                return (lambda _v: value), folded
        return (lambda v: op(operand(v))), None

    def _BoolOp(self, node: ast.BoolOp, depth: int) -> tuple[Evaluator, tuple[Any] | None]:
        parts = [self.build(value, depth)[0] for value in node.values]
        is_and = isinstance(node.op, ast.And)
        if len(parts) == 2:
            first, second = parts
            if is_and:
                return (lambda v: first(v) and second(v)), None
            return (lambda v: first(v) or second(v)), None

        def chain(v: Values) -> Any:
            result = None
            for part in parts:
                result = part(v)
                if bool(result) is not is_and:
                    return result
            return result

        return chain, None

    def _Compare(self, node: ast.Compare, depth: int) -> tuple[Evaluator, tuple[Any] | None]:
        ops = []
        for cmp in node.ops:
            op = _CMPOPS.get(type(cmp))
            if op is None:
                raise ExprError(f"comparison {type(cmp).__name__} is not allowed; use == != < <= > >=")
            ops.append(op)
        left = self.build(node.left, depth)[0]
        rights = [self.build(value, depth)[0] for value in node.comparators]
        if len(ops) == 1:
            op, right = ops[0], rights[0]
            return (lambda v: op(left(v), right(v))), None
        pairs = list(zip(ops, rights, strict=True))

        def chain(v: Values) -> bool:
            current = left(v)
            for op, right in pairs:
                following = right(v)
                if not op(current, following):
                    return False
                current = following
            return True

        return chain, None

    def _IfExp(self, node: ast.IfExp, depth: int) -> tuple[Evaluator, tuple[Any] | None]:
        test = self.build(node.test, depth)[0]
        body = self.build(node.body, depth)[0]
        orelse = self.build(node.orelse, depth)[0]
        return (lambda v: body(v) if test(v) else orelse(v)), None

    def _Call(self, node: ast.Call, depth: int) -> tuple[Evaluator, tuple[Any] | None]:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            called = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)[:40]
            raise ExprError(f"unknown function {called!r}; the functions are: {known}")
        name = node.func.id
        fn, fewest, most = FUNCTIONS[name]
        if node.keywords:
            raise ExprError(f"{name}() takes no keyword arguments")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise ExprError(_NOT_ALLOWED[ast.Starred])
        if not fewest <= len(node.args) <= most:
            wanted = str(fewest) if fewest == most else f"{fewest} to {most}"
            raise ExprError(f"{name}() takes {wanted} argument(s), got {len(node.args)}")
        args = [self.build(arg, depth)[0] for arg in node.args]
        if len(args) == 1:
            only = args[0]
            return (lambda v: fn(only(v))), None
        if len(args) == 2:
            first, second = args
            return (lambda v: fn(first(v), second(v))), None
        return (lambda v: fn(*[arg(v) for arg in args])), None


def _fold(op: Callable[..., Any], *operands: Any) -> tuple[Any] | None:
    """The value of a constant subexpression, or None to leave a failure to run time.

    (`1/0 if x else 2` is a fine expression while x is false.)
    """
    try:
        return (op(*operands),)
    except (*_EVAL_ERRORS, ExprError):
        return None
