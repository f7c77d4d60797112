"""OPC UA addresses: NodeIds in the standard string form, and browse paths. No I/O.

NodeIds (OPC UA Part 6, 5.3.1.10): `ns=2;s=Tank.Level`, `ns=3;i=1001`, `i=85` (namespace 0),
`ns=1;g=72962b91-fa75-4ae6-8d28-b404dc7daf63`, `ns=1;b=M/RbKBsRVkePCePcx24oRA==`, and by namespace URI
`nsu=urn:bifrost:water-tank;s=tank.level` (stable across servers: the index is looked up on the
server). A `;` inside a URI is written `%3B`, as the standard says.

Browse paths: `Objects/plc1/tank/level`, from the Root folder, each segment a BrowseName; a
segment may pin its namespace index, `Objects/2:plc1/level`. `&` escapes a `/`, a `:` or itself.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from enum import Enum

from bifrost.errors import ConfigError

MAX_NAMESPACE = 0xFFFF
MAX_NUMERIC = 0xFFFF_FFFF


class IdType(str, Enum):
    """The four kinds of identifier, named by their letter in the string form."""

    NUMERIC = "i"
    STRING = "s"
    GUID = "g"
    OPAQUE = "b"


@dataclass(frozen=True, slots=True)
class NodeId:
    """A node's identity. Exactly one of `namespace` (an index) or `namespace_uri` is meaningful:
    with a URI the index is unknown until resolved against the server's NamespaceArray."""

    identifier: int | str | uuid.UUID | bytes
    namespace: int = 0
    namespace_uri: str | None = None

    @property
    def id_type(self) -> IdType:
        if isinstance(self.identifier, bool):
            raise TypeError("a NodeId identifier is not a bool")
        if isinstance(self.identifier, int):
            return IdType.NUMERIC
        if isinstance(self.identifier, str):
            return IdType.STRING
        if isinstance(self.identifier, uuid.UUID):
            return IdType.GUID
        return IdType.OPAQUE

    def with_namespace(self, index: int) -> NodeId:
        """The same node by namespace index (a URI resolved against the server)."""
        return NodeId(self.identifier, index, None)

    def __str__(self) -> str:
        kind = self.id_type
        ident = self.identifier
        if kind is IdType.GUID:
            text = str(ident)
        elif kind is IdType.OPAQUE:
            assert isinstance(ident, bytes)
            text = base64.b64encode(ident).decode("ascii")
        else:
            text = str(ident)
        if self.namespace_uri is not None:
            prefix = f"nsu={_escape_uri(self.namespace_uri)};"
        elif self.namespace:
            prefix = f"ns={self.namespace};"
        else:
            prefix = ""
        return f"{prefix}{kind.value}={text}"


# Root folders a browse path may start from, and their well-known NodeIds (namespace 0).
ROOTS = {"Root": 84, "Objects": 85, "Types": 86, "Views": 87}
OBJECTS = NodeId(85)
ROOT = NodeId(84)


@dataclass(frozen=True, slots=True)
class QualifiedName:
    """One segment of a browse path: a BrowseName, its namespace index given or left open (None)."""

    name: str
    namespace: int | None = None

    def __str__(self) -> str:
        escaped = self.name.replace("&", "&&").replace("/", "&/").replace(":", "&:")
        return escaped if self.namespace is None else f"{self.namespace}:{escaped}"


@dataclass(frozen=True, slots=True)
class BrowsePath:
    """A path of BrowseNames from a root folder (Root, Objects, Types or Views)."""

    root: str
    segments: tuple[QualifiedName, ...]

    @property
    def start(self) -> NodeId:
        return NodeId(ROOTS[self.root])

    def __str__(self) -> str:
        return "/".join([self.root, *(str(segment) for segment in self.segments)])


Address = NodeId | BrowsePath

_NODE_START = re.compile(r"^(ns|nsu|svr|i|s|g|b)=")
_NAMESPACE = re.compile(r"^\d+$")


def _escape_uri(uri: str) -> str:
    return uri.replace("%", "%25").replace(";", "%3B")


def _unescape_uri(uri: str) -> str:
    return re.sub(r"%(25|3B|3b)", lambda m: "%" if m.group(1) == "25" else ";", uri)


def parse_node_id(text: str) -> NodeId:
    """`ns=2;s=Tank.Level` -> NodeId. A ConfigError names the part at fault and the accepted forms."""
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{text!r} is not a NodeId; expected e.g. ns=2;s=Tank.Level or ns=3;i=1001")
    rest = text
    namespace = 0
    namespace_uri: str | None = None
    if rest.startswith("svr="):
        raise ConfigError(f"{text!r}: a server index (svr=) names a node on another server; not supported")
    if rest.startswith("ns="):
        part, sep, rest = rest[3:].partition(";")
        if not sep:
            raise ConfigError(f"{text!r}: 'ns={part}' must be followed by ';' and an identifier, as in ns=2;s=Name")
        if not _NAMESPACE.match(part) or int(part) > MAX_NAMESPACE:
            raise ConfigError(f"{text!r}: the namespace index {part!r} is not a number 0..{MAX_NAMESPACE}")
        namespace = int(part)
    elif rest.startswith("nsu="):
        part, sep, rest = rest[4:].partition(";")
        if not sep:
            raise ConfigError(
                f"{text!r}: 'nsu={part}' must be followed by ';' and an identifier, as in nsu=urn:x;s=Name"
            )
        if not part:
            raise ConfigError(f"{text!r}: the namespace URI after nsu= is empty")
        namespace_uri = _unescape_uri(part)
    kind, sep, ident = rest.partition("=")
    if not sep or kind not in ("i", "s", "g", "b"):
        raise ConfigError(
            f"{text!r}: the identifier {rest!r} must start with i= (numeric), s= (string), g= (GUID) or b= (opaque)"
        )
    identifier: int | str | uuid.UUID | bytes
    if kind == "i":
        if not ident.isdigit() or not ident.isascii() or int(ident) > MAX_NUMERIC:
            raise ConfigError(f"{text!r}: the numeric identifier {ident!r} is not a number 0..{MAX_NUMERIC}")
        identifier = int(ident)
    elif kind == "s":
        if not ident:
            raise ConfigError(f"{text!r}: the string identifier after s= is empty")
        identifier = ident
    elif kind == "g":
        try:
            identifier = uuid.UUID(ident)
        except ValueError:
            raise ConfigError(
                f"{text!r}: the GUID {ident!r} is not of the form 72962b91-fa75-4ae6-8d28-b404dc7daf63"
            ) from None
        if len(ident) != 36:
            raise ConfigError(f"{text!r}: the GUID {ident!r} is not of the form 72962b91-fa75-4ae6-8d28-b404dc7daf63")
    else:
        try:
            identifier = base64.b64decode(ident, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{text!r}: the opaque identifier {ident!r} is not base64") from None
        if not identifier:
            raise ConfigError(f"{text!r}: the opaque identifier after b= is empty")
    return NodeId(identifier, namespace, namespace_uri)


def parse_browse_path(text: str) -> BrowsePath:
    """`Objects/plc1/tank/level` -> BrowsePath. A ConfigError names the segment at fault."""
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{text!r} is not a browse path; expected e.g. Objects/plc1/tank/level")
    parts = _split_segments(text)
    root = parts[0]
    if root not in ROOTS:
        raise ConfigError(
            f"{text!r}: a browse path starts at one of {', '.join(ROOTS)}, not {root!r} (e.g. Objects/plc1/tank/level)"
        )
    segments = []
    for position, raw in enumerate(parts[1:], 2):
        segments.append(_parse_segment(raw, text, position))
    return BrowsePath(root, tuple(segments))


def _split_segments(text: str) -> list[str]:
    # Split on '/' not escaped by '&'; keep the escapes for _parse_segment.
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "&":
            current.append(char)
            current.append(next(chars, ""))
        elif char == "/":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _parse_segment(raw: str, text: str, position: int) -> QualifiedName:
    namespace: int | None = None
    name: list[str] = []
    chars = iter(raw)
    prefix_allowed = True
    for char in chars:
        if char == "&":
            escaped = next(chars, "")
            if escaped not in ("&", "/", ":"):
                raise ConfigError(f"{text!r}: segment {position} ({raw!r}): '&' escapes only '/', ':' or '&'")
            name.append(escaped)
            prefix_allowed = False
        elif char == ":" and prefix_allowed:
            index = "".join(name)
            if not _NAMESPACE.match(index) or int(index) > MAX_NAMESPACE:
                raise ConfigError(
                    f"{text!r}: segment {position} ({raw!r}): {index!r} before ':' is not a namespace index "
                    f"0..{MAX_NAMESPACE} (write a ':' in a name as '&:')"
                )
            namespace = int(index)
            name = []
            prefix_allowed = False
        elif char == ":":
            raise ConfigError(f"{text!r}: segment {position} ({raw!r}) has a second ':' (write it as '&:')")
        else:
            name.append(char)
    if not name:
        raise ConfigError(f"{text!r}: segment {position} is empty (two '/' in a row, or a trailing '/')")
    return QualifiedName("".join(name), namespace)


def parse_address(text: str) -> Address:
    """A NodeId (`ns=2;s=X`, `i=85`, `nsu=...`) or a browse path (`Objects/plc1/level`)."""
    if isinstance(text, str) and _NODE_START.match(text):
        return parse_node_id(text)
    if isinstance(text, str) and text.split("/", 1)[0] in ROOTS:
        return parse_browse_path(text)
    raise ConfigError(
        f"{text!r} is neither a NodeId (ns=2;s=Tank.Level, ns=3;i=1001, nsu=urn:...;s=Name) "
        f"nor a browse path from {'/'.join(ROOTS)} (Objects/plc1/tank/level)"
    )
