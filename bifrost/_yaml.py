"""YAML with positions: every mapping key and list item keeps its file:line:column, so that a
validation error can name the place in the file it comes from.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bifrost.errors import ConfigError

Loc = tuple[str, ...]

MAX_FILE_BYTES = 4 * 1024 * 1024
"""The largest file read: a scenario or a devices file is a few kilobytes; far more is a mistake
(or /dev/zero), and is refused before it is read into memory."""
ALIAS_BUDGET = 10_000
"""The most nodes that aliases (`*name`) may copy in, all together. Aliases share what an anchor
names, so a few hundred bytes of nested aliases stand for billions of nodes once the data is walked
and validated (the "billion laughs"); real files reuse an anchor a few times."""


@dataclass(frozen=True)
class LocatedYaml:
    """Parsed YAML data with the (line, column) of each path in it, both 1-based."""

    source: str
    data: Any
    positions: dict[Loc, tuple[int, int]]
    problems: tuple[str, ...] = ()  # duplicate keys, when loaded with keep_going=True

    def where(self, loc: Sequence[str | int]) -> tuple[str, str]:
        """`file:line:col` of the deepest part of `loc` in the file, and the readable field path.

        Parts of a pydantic error location that are not in the file (union branch names such as
        `str` or `function-after[...]`) are skipped; a missing field is named after its parent's place.
        """
        path: Loc = ()
        shown: list[str] = []
        for index, part in enumerate(loc):
            candidate = (*path, str(part))
            if candidate in self.positions:
                path = candidate
                shown.append(str(part))
            elif index == len(loc) - 1 and isinstance(part, str) and not _is_branch_label(part):
                shown.append(part)
        line, column = self.positions.get(path, (1, 1))
        return f"{self.source}:{line}:{column}", _dotted(shown)


def _is_branch_label(part: str) -> bool:
    return "[" in part or part in {"str", "int", "float", "bool", "dict", "list"} or part[:1].isupper()


def _dotted(parts: Iterable[str]) -> str:
    out = ""
    for part in parts:
        if "." in part or " " in part or not part:
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def load_yaml(path: str | Path, text: str | None = None, *, keep_going: bool = False) -> LocatedYaml:
    """Parse a YAML file; a syntax error or a duplicate key is a ConfigError naming file:line:col.

    With `keep_going`, duplicate keys are returned in `problems` instead (the later value wins), so
    that a caller can report them together with the data's other mistakes.
    """
    source = str(path)
    if text is None:
        try:
            text = _read_text(path).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        loader = _Loader(text, source)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    positions: dict[Loc, tuple[int, int]] = {}
    problems: list[str] = []
    if node is not None:
        _walk(node, (), positions, problems, source)
    if problems and not keep_going:
        raise ConfigError("\n".join(problems), problems=problems)
    return LocatedYaml(source, data, positions, tuple(problems))


def _read_text(path: str | Path) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES; anything else is a ConfigError."""
    source = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat of what was opened, not of a name
        # that may have changed since.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise ConfigError(f"{source}: not a regular file ({what}); give the path of a YAML file")
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; not read")
    return data


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing aliases that would copy in more than ALIAS_BUDGET nodes, or themselves."""

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text)
        self._source = source
        self._left = ALIAS_BUDGET
        self._sizes: dict[int, int] = {}
        self._open: list[str | None] = []  # anchors of the nodes being composed, outermost first

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML's stubs leave it untyped
        if not isinstance(event, yaml.AliasEvent):
            self._open.append(getattr(event, "anchor", None))
            try:
                return super().compose_node(parent, index)
            finally:
                self._open.pop()
        node = self.anchors.get(event.anchor)
        if node is not None:
            mark = event.start_mark
            where = f"{self._source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else self._source
            size = _expanded_size(node, self._sizes, set())
            if size is None or event.anchor in self._open:
                raise ConfigError(f"{where}: alias *{event.anchor} is inside what it names (a recursive alias)")
            self._left -= size
            if self._left < 0:
                raise ConfigError(
                    f"{where}: aliases copy in more than {ALIAS_BUDGET} nodes by here (*{event.anchor} "
                    f"alone is {size}); nested aliases multiply, so write the data out or reuse less"
                )
        return super().compose_node(parent, index)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int | None:
    """Nodes under `node` with every alias copied in; None if it contains itself. Memoised per node."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        return None
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    open_.add(key)
    total = 1
    for child in children:
        size = _expanded_size(child, sizes, open_)
        if size is None:
            return None
        total += size
    open_.discard(key)
    sizes[key] = total
    return total


def _walk(node: yaml.Node, path: Loc, positions: dict[Loc, tuple[int, int]], problems: list[str], source: str) -> None:
    positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    f"{source}:{line}:{key_node.start_mark.column + 1}: duplicate key {key!r} "
                    f"(first at line {seen[key]}); a later one would silently replace it"
                )
            # The data holds the later value (as YAML loaders do), so its positions are the later ones.
            seen.setdefault(key, line)
            key_path = (*path, key)
            positions[key_path] = (line, key_node.start_mark.column + 1)
            _walk(value_node, key_path, positions, problems, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            item_path = (*path, str(index))
            _walk(item, item_path, positions, problems, source)


def validation_problems(error: ValidationError, located: LocatedYaml) -> list[str]:
    """One line per pydantic error: `file:line:col: field.path: what is wrong (got ...)`."""
    lines = []
    for item in error.errors(include_url=False):
        where, field = located.where(item["loc"])
        got = f" (got {item['input']!r})" if item["type"] not in {"missing"} and _short(item.get("input")) else ""
        lines.append(f"{where}: {field}: {item['msg']}{got}")
    return lines


def _short(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 60
