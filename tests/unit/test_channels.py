"""Channel names and wildcard matching, against a brute-force reference (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import ChannelKind, channel_kind, expand, is_wildcard, matches, normalize


def reference_match(pattern: str, name: str) -> bool:
    """The Bayeux rule written the slow, obvious way: compare segment lists."""
    p, n = pattern.split("/")[1:], name.split("/")[1:]
    if p[-1] == "**":
        return len(n) > len(p) - 1 and n[: len(p) - 1] == p[:-1]
    if p[-1] == "*":
        return len(n) == len(p) and n[:-1] == p[:-1]
    return p == n


segment = st.sampled_from(["a", "b", "c", "foo", "x-y", "1"])
names = st.lists(segment, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
patterns = st.one_of(
    names,
    st.lists(segment, min_size=0, max_size=3).map(lambda s: "/" + "/".join([*s, "*"])),
    st.lists(segment, min_size=0, max_size=3).map(lambda s: "/" + "/".join([*s, "**"])),
)


@given(patterns, names)
def test_matches_agrees_with_reference(pattern: str, name: str) -> None:
    assert matches(pattern, name) == reference_match(pattern, name)


@given(patterns, names)
def test_expand_lists_exactly_the_matching_patterns(pattern: str, name: str) -> None:
    assert (pattern in expand(name)) == reference_match(pattern, name)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("/foo/*", "/foo/bar", True),
        ("/foo/*", "/foo", False),
        ("/foo/*", "/foobar", False),
        ("/foo/*", "/foo/bar/boo", False),
        ("/foo/**", "/foo/bar/boo", True),
        ("/foo/**", "/foo", False),
        ("/foo/**", "/foobar/boo", False),
        ("/**", "/a/b/c", True),
    ],
)
def test_reference_table_of_bayeux_md_4_2(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/a/b", "/a/b"),
        ("/a/b/", "/a/b"),
        ("/a/*", "/a/*"),
        ("/**", "/**"),
        ("/a b/$x@(y)~!_-.", "/a b/$x@(y)~!_-."),
        ("/", None),
        ("a/b", None),
        ("//a", None),
        ("/a//b", None),
        ("/a/*/b", None),
        ("/a/**/b", None),
        ("/a/b*", None),
        ("/a/é", None),
        ("", None),
    ],
)
def test_normalize(raw: str, normal: str | None) -> None:
    assert normalize(raw) == normal


def test_kinds() -> None:
    assert channel_kind("/meta/connect") is ChannelKind.META
    assert channel_kind("/service/echo") is ChannelKind.SERVICE
    assert channel_kind("/v2/me/interactions") is ChannelKind.BROADCAST
    assert channel_kind("/metadata") is ChannelKind.BROADCAST
    assert is_wildcard("/a/*") and is_wildcard("/**") and not is_wildcard("/a")
