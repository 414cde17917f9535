"""Crash points for fault tests: ``GATEWAY_FAILPOINT=name`` makes the process die at once
(``os._exit``, like ``kill -9``: no cleanup, no flush) when it reaches :func:`hit` ``(name)``.

Used by the tests that kill the gateway between two steps that must both happen exactly once
(a message claimed but not yet an interaction; a reply committed but not yet handed to SMTP).
Unset in production, :func:`hit` is one dictionary lookup.
"""

from __future__ import annotations

import os
import sys

__all__ = ["EXIT_STATUS", "hit"]

EXIT_STATUS = 137  # what a shell reports for SIGKILL
_ARMED = frozenset(filter(None, os.environ.get("GATEWAY_FAILPOINT", "").split(",")))


def hit(name: str) -> None:
    if name in _ARMED:
        sys.stderr.write(f"failpoint {name}: exiting\n")
        sys.stderr.flush()
        os._exit(EXIT_STATUS)
