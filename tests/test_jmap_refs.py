"""Result references (RFC 8620 §3.7) and JSON Pointer with ``*``
(proto/jmap/refs.py), sans-IO, and their use by run_request."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from mailaccess.proto.jmap import refs
from mailaccess.proto.jmap.errors import MethodError

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids,
                                                              max_size=4),
    max_leaves=20)


def paths_in(doc, prefix=()):
    """Every (tokens, value) pair of DOC."""
    yield list(prefix), doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths_in(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths_in(v, prefix + (str(i),))


def pointer(tokens):
    return "".join("/" + refs.escape_token(t) for t in tokens)


@given(json_values)
def test_every_member_is_reachable_by_its_escaped_pointer(doc):
    for tokens, value in paths_in(doc):
        assert refs.parse_pointer(pointer(tokens)) == tokens
        if "*" in tokens:        # a "*" token on an array means every item
            continue
        assert refs.evaluate(pointer(tokens), doc) == value


@given(st.lists(st.dictionaries(st.sampled_from(["id", "x"]), json_scalars, min_size=1),
                max_size=6))
def test_star_maps_over_an_array(items):
    doc = {"list": items}
    if all("id" in i for i in items):
        assert refs.evaluate("/list/*/id", doc) == [i["id"] for i in items]
    else:
        with pytest.raises(refs.PointerError):
            refs.evaluate("/list/*/id", doc)


@given(st.lists(st.lists(st.integers(), max_size=4), max_size=4))
def test_star_flattens_arrays_of_arrays(lists):
    doc = {"list": [{"ids": l} for l in lists]}
    assert refs.evaluate("/list/*/ids", doc) == [x for l in lists for x in l]


@pytest.mark.parametrize("ptr,doc,want", [
    ("", {"a": 1}, {"a": 1}),
    ("/a~1b", {"a/b": 1}, 1),
    ("/m~0n", {"m~n": 2}, 2),
    ("/~01", {"~1": 3}, 3),
    ("/", {"": 4}, 4),
    ("/*", {"*": 5}, 5),                 # "*" on an object is just a key
    ("/a/1", {"a": [7, 8]}, 8),
])
def test_rfc6901_examples(ptr, doc, want):
    assert refs.evaluate(ptr, doc) == want


@pytest.mark.parametrize("ptr,doc", [
    ("a", {"a": 1}), ("/a/01", {"a": [1, 2]}), ("/a/2", {"a": [1, 2]}),
    ("/a/-", {"a": [1]}), ("/a/x", {"a": [1]}), ("/a/b", {"a": 1}), ("/~2", {"~2": 1}),
    ("/nope", {}),
])
def test_bad_pointers(ptr, doc):
    with pytest.raises(refs.PointerError):
        refs.evaluate(ptr, doc)


RESPONSES = [["Foo/query", {"ids": ["a", "b"]}, "q"],
             ["Foo/get", {"list": [{"id": "a", "threadId": "T1"}]}, "g"],
             ["Foo/get", {"list": []}, "g"]]


def test_resolve_args():
    out = refs.resolve_args({"accountId": "A", "#ids": {"resultOf": "q", "name": "Foo/query",
                                                         "path": "/ids"}}, RESPONSES)
    assert out == {"accountId": "A", "ids": ["a", "b"]}
    # the first response with that callId
    out = refs.resolve_args({"#ids": {"resultOf": "g", "name": "Foo/get",
                                      "path": "/list/*/threadId"}}, RESPONSES)
    assert out == {"ids": ["T1"]}


@pytest.mark.parametrize("ref", [
    {"resultOf": "zz", "name": "Foo/query", "path": "/ids"},      # no such call
    {"resultOf": "q", "name": "Foo/get", "path": "/ids"},         # wrong name
    {"resultOf": "q", "name": "Foo/query", "path": "/nope"},      # bad path
    {"resultOf": "q", "name": "Foo/query"},                       # no path
    "q",                                                          # not an object
])
def test_bad_references(ref):
    with pytest.raises(MethodError) as e:
        refs.resolve_args({"#ids": ref}, RESPONSES)
    assert e.value.type == "invalidResultReference"


def test_plain_and_reference_together():
    with pytest.raises(MethodError) as e:
        refs.resolve_args({"ids": [], "#ids": {"resultOf": "q", "name": "Foo/query",
                                               "path": "/ids"}}, RESPONSES)
    assert e.value.type == "invalidArguments"
