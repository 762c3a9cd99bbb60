"""Hypothesis strategies for what a hostile or careless producer lands: sidecar bytes and object keys.

Each strategy draws a `(kind, value)` pair: the kind names the class of input (it is what KNOWN_OPEN in
machine.py switches off for a finding still being fixed, and what a falsifying example shows first).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Kinds of hostile sidecar whose failure is a known open finding (see machine.KNOWN_OPEN).
PYTHON_REFUSES = ("huge_int", "deep_nesting")


def _scalars() -> st.SearchStrategy[Any]:
    return (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))


def _json_values() -> st.SearchStrategy[Any]:
    return st.recursive(_scalars(), lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def _as_bytes(document: Any) -> bytes:
    return json.dumps(document, allow_nan=True).encode("utf-8", "surrogatepass")


def hostile_sidecars(exclude: frozenset[str] = frozenset()) -> st.SearchStrategy[tuple[str, bytes]]:
    """(kind, sidecar bytes): valid JSON of the wrong shape, JSON Python or PostgreSQL refuse, not JSON;
    none of the kinds in `exclude`."""
    kinds: dict[str, st.SearchStrategy[bytes]] = {
        "huge_int": st.integers(4301, 8000).map(lambda n: b'{"project": "p", "n": ' + b"9" * n + b"}"),
        "deep_nesting": st.integers(1000, 5000).map(
            lambda n: b'{"project": "p", "x": ' + b"[" * n + b"]" * n + b"}"),
        "wrong_types": st.sampled_from([
            b"[]", b'"project"', b"42", b"null", b'{"project": 5}', b'{"project": ["a"]}',
            b'{"project": null}', b'{"project": {"x": 1}}', b'{"project": "p", "tags": "a,b"}',
            b'{"project": "p", "tags": [1, {}]}', b'{"project": "p", "extra": {"nested": [1]}}',
            b'{"project": "p", "_source": "forged"}', b'{"project": "p", "_error": ""}',
            b'{"project": "p", "_error": "forged"}']),
        "json_values": _json_values().map(_as_bytes),
        "object_values": st.dictionaries(st.text(max_size=80), _json_values(), max_size=5).map(
            lambda d: _as_bytes({"project": "p", **d})),
        "nan_inf": st.sampled_from([
            b'{"project": "p", "x": NaN}', b'{"project": "p", "x": Infinity}',
            b'{"project": "p", "x": 1e400}', b'{"project": "p", "x": -Infinity}']),
        "invalid_utf8": st.binary(min_size=1, max_size=30).map(
            lambda junk: b'{"project": "' + junk + b'\xff\xfe"}'),
        "unstorable_text": st.sampled_from([
            b'{"project": "p\\u0000"}', b'{"project": "\\ud800"}', b'{"project": "p", "x": "\\udfff"}',
            b'{"\\u0000": "p", "project": "p"}']),
        "huge_string": st.integers(8_000, 70_000).map(
            lambda n: b'{"project": "p", "description": "' + b"x" * n + b'"}'),
        "long_odd_keys": st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=3).map(
            lambda names: _as_bytes({"project": "p", **{n: "v" for n in names}})),
        "duplicate_keys": st.text(min_size=1, max_size=20).map(
            lambda p: b'{"project": "p", "project": ' + json.dumps(p).encode() + b"}"),
        "not_json": st.binary(max_size=60),
        "bom": st.just(b'\xef\xbb\xbf{"project": "p"}'),
    }
    return st.one_of(*(st.tuples(st.just(name), values) for name, values in kinds.items()
                       if name not in exclude))


def odd_key_names(max_bytes: int, *, allow_nul: bool = True) -> st.SearchStrategy[tuple[str, str]]:
    """(kind, a key's name below the prefix): odd characters, dot segments, long names (`max_bytes` UTF-8
    bytes at most, so the landing can hold it; a long name may leave no room for the quarantine prefix)."""
    banned = "/" if allow_nul else "/\x00"
    odd_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=banned), min_size=1,
                       max_size=30)
    kinds = [
        st.tuples(st.just("odd_chars"), odd_text.map(lambda s: f"{s}.ifc")),
        st.tuples(st.just("dot_segments"), st.sampled_from([
            "../x.ifc", "a/./b.ifc", "a//b.ifc", "./x.ifc", "a/../../b.ifc", "%2e%2e/x.ifc",
            "a\\..\\b.ifc"])),
        st.tuples(st.just("long_key"), st.integers(200, max_bytes).map(lambda n: "L" * (n - 4) + ".ifc")),
        st.tuples(st.just("long_odd_key"), st.integers(200, max_bytes).map(
            lambda n: "\x7f%\u200b" + "L" * (n - 15) + ".ifc")),
    ]
    return st.one_of(*kinds).filter(lambda kv: len(kv[1].encode("utf-8")) <= max_bytes)
