"""The NodeId and browse-path grammar: the standard string forms, round trips, and errors that name
the part at fault. No sockets."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifrost.errors import ConfigError
from bifrost.opcua.nodes import (
    BrowsePath,
    IdType,
    NodeId,
    QualifiedName,
    parse_address,
    parse_browse_path,
    parse_node_id,
)


@pytest.mark.parametrize(
    ("text", "node"),
    [
        ("ns=2;s=Tank.Level", NodeId("Tank.Level", 2)),
        ("ns=3;i=1001", NodeId(1001, 3)),
        ("i=85", NodeId(85)),
        ("ns=0;i=85", NodeId(85)),
        ("s=a;b=c", NodeId("a;b=c")),  # a string identifier runs to the end
        ("ns=1;g=72962b91-fa75-4ae6-8d28-b404dc7daf63", NodeId(uuid.UUID("72962b91-fa75-4ae6-8d28-b404dc7daf63"), 1)),
        ("ns=1;b=M/RbKBsRVkePCePcx24oRA==", NodeId(bytes.fromhex("33f45b281b1156478f09e3dcc76e2844"), 1)),
        ("nsu=urn:bifrost:water-tank;s=tank.level", NodeId("tank.level", 0, "urn:bifrost:water-tank")),
        ("nsu=urn:a%3Bb;i=7", NodeId(7, 0, "urn:a;b")),
        ("ns=65535;i=4294967295", NodeId(2**32 - 1, 65535)),
    ],
)
def test_standard_forms_parse(text: str, node: NodeId) -> None:
    assert parse_node_id(text) == node
    assert parse_address(text) == node


def test_kinds_and_resolution() -> None:
    node = parse_node_id("nsu=urn:x;g=72962b91-fa75-4ae6-8d28-b404dc7daf63")
    assert node.id_type is IdType.GUID
    assert node.with_namespace(4) == NodeId(node.identifier, 4)
    assert str(node.with_namespace(4)) == "ns=4;g=72962b91-fa75-4ae6-8d28-b404dc7daf63"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ns=x;s=A", "the namespace index 'x' is not a number 0..65535"),
        ("ns=70000;i=1", "the namespace index '70000' is not a number 0..65535"),
        ("ns=2", "'ns=2' must be followed by ';' and an identifier"),
        ("ns=2;q=1", "the identifier 'q=1' must start with i= (numeric), s= (string), g= (GUID) or b= (opaque)"),
        ("ns=2;i=12a", "the numeric identifier '12a' is not a number 0..4294967295"),
        ("i=4294967296", "the numeric identifier '4294967296' is not a number"),
        ("ns=2;s=", "the string identifier after s= is empty"),
        ("ns=1;g=not-a-guid", "the GUID 'not-a-guid' is not of the form"),
        ("ns=1;b=***", "the opaque identifier '***' is not base64"),
        ("nsu=;s=x", "the namespace URI after nsu= is empty"),
        ("nsu=urn:x", "'nsu=urn:x' must be followed by ';'"),
        ("svr=1;i=1", "a server index (svr=) names a node on another server"),
    ],
)
def test_bad_node_ids_name_the_part_at_fault(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_node_id(text)
    assert message in str(caught.value)
    assert repr(text) in str(caught.value)


def test_browse_paths() -> None:
    path = parse_browse_path("Objects/plc1/tank/level")
    assert path == BrowsePath("Objects", (QualifiedName("plc1"), QualifiedName("tank"), QualifiedName("level")))
    assert path.start == NodeId(85)
    assert parse_browse_path("Objects/2:plc1/a&/b&:c&&d").segments == (
        QualifiedName("plc1", 2),
        QualifiedName("a/b:c&d"),
    )
    assert parse_address("Root/Objects/Server") == BrowsePath(
        "Root", (QualifiedName("Objects"), QualifiedName("Server"))
    )
    assert parse_browse_path("Types").segments == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Object/plc1", "a browse path starts at one of Root, Objects, Types, Views, not 'Object'"),
        ("Objects//level", "segment 2 is empty"),
        ("Objects/plc1/", "segment 3 is empty"),
        ("Objects/x:plc1", "segment 2 ('x:plc1'): 'x' before ':' is not a namespace index"),
        ("Objects/1:a:b", "has a second ':'"),
        ("Objects/a&b", "'&' escapes only '/', ':' or '&'"),
    ],
)
def test_bad_browse_paths_name_the_segment(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        parse_browse_path(text)
    assert message in str(caught.value)


def test_an_address_is_one_or_the_other() -> None:
    with pytest.raises(ConfigError, match=r"is neither a NodeId .* nor a browse path"):
        parse_address("tank.level")


_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
_identifiers = st.one_of(
    st.integers(0, 2**32 - 1),
    _names,
    st.uuids(),
    st.binary(min_size=1, max_size=16),
)
_uris = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=16)
_nodes = st.one_of(
    st.builds(NodeId, _identifiers, st.integers(0, 65535)),
    st.builds(lambda ident, uri: NodeId(ident, 0, uri), _identifiers, _uris),
)


@given(_nodes)
def test_node_ids_round_trip(node: NodeId) -> None:
    text = str(node)
    assert parse_node_id(text) == node
    assert str(parse_node_id(text)) == text


_segments = st.builds(QualifiedName, _names, st.none() | st.integers(0, 65535))


@given(st.sampled_from(["Root", "Objects", "Types", "Views"]), st.lists(_segments, max_size=5))
def test_browse_paths_round_trip(root: str, segments: list[QualifiedName]) -> None:
    path = BrowsePath(root, tuple(segments))
    assert parse_browse_path(str(path)) == path
