"""Values written as TOML 1.0 text, for ``gateway config``: what ``tomllib`` reads back equal.

Only what the configuration holds: booleans, integers, floats, strings, arrays, and tables
written inline.  TOML has no null: callers leave ``None`` out (an inline table drops its
``None`` entries here).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["key", "value"]

_BARE_KEY = re.compile(r"\A[A-Za-z0-9_-]+\Z")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
# TOML basic strings may not hold U+0000-U+001F or U+007F as they are.
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f]')


def key(name: str) -> str:
    """A key, bare when TOML allows it, else quoted."""
    return name if _BARE_KEY.match(name) else _string(name)


def value(item: Any) -> str:
    """``item`` as a TOML value; ``TypeError`` for what TOML cannot say (``None``, objects)."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if math.isnan(item):
            return "nan"
        if math.isinf(item):
            return "inf" if item > 0 else "-inf"
        return repr(item)  # '30.0', '1e-05', '1e+20': all TOML floats
    if isinstance(item, str):
        return _string(item)
    if isinstance(item, Mapping):
        entries = [f"{key(str(k))} = {value(v)}" for k, v in item.items() if v is not None]
        return "{" + ", ".join(entries) + "}"
    if isinstance(item, Sequence):
        return "[" + ", ".join(value(v) for v in item) + "]"
    raise TypeError(f"no TOML value for {type(item).__name__}")


def _string(text: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\u{ord(char):04X}"
