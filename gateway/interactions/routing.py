"""Who can take work now, per queue, longest idle first: the index the router picks from.

Each queue keeps a heap of ``(idle_since, username, stamp)``.  Whenever an agent's
availability or idle time changes, :meth:`Available.touch` gives them a new stamp and pushes
a fresh entry to each of their queues where they can take work; entries whose stamp is not
the agent's current one are stale and dropped when they reach the top.  Picking is then
O(log agents) instead of a scan of every agent per interaction.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping

__all__ = ["Available"]

Entry = tuple[int, str, int]


class Available:
    def __init__(self, queues: Iterable[str], can_take: Callable[[str, str], bool]) -> None:
        """``can_take(username, queue)``: may this agent be offered this queue's work now?"""
        self._heaps: dict[str, list[Entry]] = {q: [] for q in queues}
        self._stamps: dict[str, int] = {}
        self._counter = 0
        self._can_take = can_take

    def touch(self, username: str, idle_since: Mapping[str, int]) -> None:
        """Re-index an agent; ``idle_since`` maps each of their queues to its idle time."""
        self._counter += 1
        stamp = self._counter
        self._stamps[username] = stamp
        for queue, idle in idle_since.items():
            if self._can_take(username, queue):
                heap = self._heaps[queue]
                heapq.heappush(heap, (idle, username, stamp))
                if len(heap) > 4 * len(self._stamps) + 64:
                    self._compact(queue)

    def pick(self, queue: str, exclude: tuple[str, ...] = ()) -> str | None:
        """The longest-idle agent who can take this queue's work, not one of ``exclude``."""
        heap = self._heaps[queue]
        skipped = []
        chosen = None
        while heap:
            _, name, stamp = heap[0]
            if self._stamps.get(name) != stamp or not self._can_take(name, queue):
                heapq.heappop(heap)  # stale
            elif name in exclude:
                skipped.append(heapq.heappop(heap))
            else:
                chosen = name
                break
        for entry in skipped:
            heapq.heappush(heap, entry)
        return chosen

    def anyone(self, queue: str) -> bool:
        return self.pick(queue) is not None

    def _compact(self, queue: str) -> None:
        heap = [e for e in self._heaps[queue] if self._stamps.get(e[1]) == e[2]]
        heapq.heapify(heap)
        self._heaps[queue] = heap
