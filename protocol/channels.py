"""Channel names, classes and wildcard matching (Bayeux 1.0 §2.2, CometD ``ChannelId``).

Rules, as CometD 8 and its JavaScript client apply them:

* A name starts with ``/`` and is at least two characters long.
* Segments are separated by a single ``/``; empty segments (``//``) are invalid. One trailing
  ``/`` is stripped, as CometD does.
* Segment characters: letters, digits and `` !#$()+-.@_{}~`` (CometD's set, a superset of the
  spec's BNF; the JS client validates against the same set before sending).
* ``*`` and ``**`` are wildcards and may only be the whole *last* segment.
* ``/meta/**`` is the protocol's own namespace, ``/service/**`` is request/response with the
  server, everything else is broadcast.

Matching: ``/a/*`` matches ``/a/b`` only; ``/a/**`` matches ``/a/b`` and ``/a/b/c``; ``/**``
matches every channel.  :func:`expand` gives, for a concrete name, every pattern that matches
it, which is how a delivery finds its subscribers (CometD ``getWilds``, faye ``Channel.expand``).
"""

from __future__ import annotations

import enum
import string
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "ChannelInfo",
    "ChannelKind",
    "channel_kind",
    "classify",
    "expand",
    "is_wildcard",
    "matches",
    "normalize",
]

META_PREFIX = "/meta/"
SERVICE_PREFIX = "/service/"

_SEGMENT_CHARS = frozenset(string.ascii_letters + string.digits + " !#$()+-.@_{}~")


class ChannelKind(enum.Enum):
    META = "meta"
    SERVICE = "service"
    BROADCAST = "broadcast"


def normalize(name: str) -> str | None:
    """Return the canonical form of ``name`` or ``None`` when it is not a valid channel."""
    return _normalize(name)


@lru_cache(maxsize=65536)
def _normalize(name: str) -> str | None:
    if len(name) < 2 or name[0] != "/":
        return None
    if name.endswith("/") and len(name) > 2:
        name = name[:-1]
    segments = name[1:].split("/")
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if not segment:
            return None
        if segment in ("*", "**"):
            if index != last:
                return None
            continue
        if not _SEGMENT_CHARS.issuperset(segment):
            return None
    return name


def is_wildcard(name: str) -> bool:
    """True for ``.../*`` and ``.../**`` patterns (``name`` must be normalized)."""
    return name.endswith("/*") or name.endswith("/**")


def channel_kind(name: str) -> ChannelKind:
    if name.startswith(META_PREFIX) or name == "/meta":
        return ChannelKind.META
    if name.startswith(SERVICE_PREFIX) or name == "/service":
        return ChannelKind.SERVICE
    return ChannelKind.BROADCAST


class ChannelInfo(NamedTuple):
    name: str  # normalized
    kind: ChannelKind
    wildcard: bool


_CLASSIFIED: dict[str, ChannelInfo | None] = {}
_CLASSIFIED_MAX = 65536


def classify(name: str) -> ChannelInfo | None:
    """What a publish needs to know about its channel, or ``None`` for an invalid name: one
    lookup in a plain dict (cheaper than an LRU on hits)."""
    try:
        return _CLASSIFIED[name]
    except KeyError:
        pass
    normal = _normalize(name)
    info = None
    if normal is not None:
        info = ChannelInfo(normal, channel_kind(normal), is_wildcard(normal))
    if len(_CLASSIFIED) >= _CLASSIFIED_MAX:
        _CLASSIFIED.clear()  # bounded: a client inventing channel names cannot grow it
    _CLASSIFIED[name] = info
    return info


@lru_cache(maxsize=65536)
def expand(name: str) -> tuple[str, ...]:
    """Every subscription that receives a message published on the concrete channel ``name``.

    ``/a/b/c`` → ``/a/b/c``, ``/a/b/*``, ``/a/b/**``, ``/a/**``, ``/**``.
    """
    segments = name[1:].split("/")
    patterns = [name]
    parent = "/" + "/".join(segments[:-1]) if len(segments) > 1 else ""
    patterns.append(parent + "/*")
    for depth in range(len(segments) - 1, -1, -1):
        prefix = "/" + "/".join(segments[:depth]) if depth else ""
        patterns.append(prefix + "/**")
    return tuple(patterns)


def matches(pattern: str, name: str) -> bool:
    """True when a subscription to ``pattern`` receives a message on concrete channel ``name``."""
    if pattern == name:
        return True
    if pattern.endswith("/**"):
        prefix = pattern[:-2]
        return name.startswith(prefix) and len(name) > len(prefix)
    if pattern.endswith("/*"):
        prefix = pattern[:-1]
        return (
            name.startswith(prefix) and "/" not in name[len(prefix) :] and len(name) > len(prefix)
        )
    return False
