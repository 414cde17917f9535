"""Grouping work that falls due together: websocket pushes, answers of ended holds.

A broadcast to ten thousand websocket sessions makes ten thousand pushes; one task and one
timer each would cost more than the pushes themselves.  Pushes are grouped instead: those due
"as soon as possible" share one loop callback, and delayed ones (the batching window) share a
timer per ``TICK_MS`` slot.  Each group runs as one task.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["PushGroups"]

T = TypeVar("T")

TICK_MS = 10
_SOON = -1


class PushGroups(Generic[T]):
    def __init__(
        self,
        run: Callable[[list[T]], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._run = run
        self._spawn = spawn
        self._groups: dict[int, list[T]] = {}

    def schedule(self, item: T, delay_ms: int) -> None:
        """Run ``item`` with the group due ``delay_ms`` from now (0: this loop turn)."""
        now_ms = time.monotonic() * 1000
        key = _SOON if delay_ms <= 0 else math.ceil((now_ms + delay_ms) / TICK_MS)
        group = self._groups.get(key)
        if group is not None:
            group.append(item)
            return
        self._groups[key] = [item]
        loop = asyncio.get_running_loop()
        if key == _SOON:
            loop.call_soon(self._fire, key)
        else:
            loop.call_later((key * TICK_MS - now_ms) / 1000, self._fire, key)

    def _fire(self, key: int) -> None:
        group = self._groups.pop(key, None)
        if group:
            self._spawn(self._run(group))
