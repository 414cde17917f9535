"""The embedded engine: everything in this process's memory.

Subscriptions are indexed by pattern, so a publication looks up only the handful of patterns
that match its channel (:func:`protocol.expand`) instead of scanning every session, and only the
channel itself while no pattern is subscribed at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.bayeux.engines.base import EngineListener, OverflowPolicy, QueueLimits
from protocol import AckState, SessionRecord, expand, is_wildcard

__all__ = ["MemoryEngine"]


class _Entry:
    """One session.  Its queue is a list that exists only while something is queued: most
    sessions are idle, and a drain hands the whole list over instead of copying it."""

    __slots__ = ("ack", "channels", "expires_ms", "queue", "record")

    def __init__(self, record: SessionRecord, expires_ms: int) -> None:
        self.record = record
        self.queue: list[bytes] | None = None
        self.channels: set[str] = set()
        self.expires_ms: int | None = expires_ms
        self.ack: AckState | None = None  # the ack extension's batches, once one is handed out


class MemoryEngine:
    suspends = False  # every call completes without waiting

    def __init__(self, limits: QueueLimits | None = None) -> None:
        self.limits = limits or QueueLimits()
        self._sessions: dict[str, _Entry] = {}
        self._subscribers: dict[str, set[str]] = {}
        self._wildcards = 0  # how many keys of _subscribers are patterns
        self._listener: EngineListener | None = None

    def attach(self, listener: EngineListener) -> None:
        self._listener = listener

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._sessions.clear()
        self._subscribers.clear()
        self._wildcards = 0

    async def ping(self) -> float:
        return 0.0  # nothing between the hub and these dicts

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(self, record: SessionRecord, expires_ms: int) -> None:
        self._sessions[record.client_id] = _Entry(record, expires_ms)

    async def get_session(self, client_id: str) -> SessionRecord | None:
        entry = self._sessions.get(client_id)
        return entry.record if entry is not None else None

    async def update_session(self, record: SessionRecord) -> None:
        entry = self._sessions.get(record.client_id)
        if entry is not None:
            entry.record = record

    async def destroy_session(self, client_id: str) -> SessionRecord | None:
        return self._remove(client_id)

    async def session_ids(self) -> list[str]:
        return list(self._sessions)

    async def census(self) -> tuple[int, int]:
        queued = sum(len(e.queue) for e in self._sessions.values() if e.queue)
        return len(self._sessions), queued

    def _remove(self, client_id: str) -> SessionRecord | None:
        entry = self._sessions.pop(client_id, None)
        if entry is None:
            return None
        for channel in entry.channels:
            self._drop_subscriber(channel, client_id)
        entry.queue = None
        return entry.record

    # -- subscriptions ----------------------------------------------------------------------

    async def subscribe(self, client_id: str, channels: Iterable[str]) -> bool:
        entry = self._sessions.get(client_id)
        if entry is None:
            return False
        for channel in channels:
            entry.channels.add(channel)
            members = self._subscribers.get(channel)
            if members is None:
                members = self._subscribers[channel] = set()
                self._wildcards += is_wildcard(channel)
            members.add(client_id)
        return True

    async def unsubscribe(self, client_id: str, channels: Iterable[str]) -> bool:
        entry = self._sessions.get(client_id)
        if entry is None:
            return False
        for channel in channels:
            entry.channels.discard(channel)
            self._drop_subscriber(channel, client_id)
        return True

    def _drop_subscriber(self, channel: str, client_id: str) -> None:
        members = self._subscribers.get(channel)
        if members is not None:
            members.discard(client_id)
            if not members:
                del self._subscribers[channel]
                self._wildcards -= is_wildcard(channel)

    async def subscriptions(self, client_id: str) -> set[str]:
        entry = self._sessions.get(client_id)
        return set(entry.channels) if entry is not None else set()

    # -- queues -----------------------------------------------------------------------------

    async def publish(self, channel: str, frame: bytes) -> int:
        targets: Iterable[str]
        if not self._wildcards:  # the usual case: only the channel itself can match
            members = self._subscribers.get(channel)
            if not members:
                return 0
            targets = list(members)  # an overflow may unsubscribe while we deliver
        else:
            groups = [m for p in expand(channel) if (m := self._subscribers.get(p))]
            if not groups:
                return 0
            # A session subscribed to several matching patterns gets the message once.
            targets = list(groups[0]) if len(groups) == 1 else set().union(*groups)
        # The common case inline (a broadcast to thousands of sessions is this loop); the first
        # message of a queue wakes its holder, a full queue takes the overflow policy.
        sessions, limit, listener = self._sessions, self.limits.max_messages, self._listener
        count = 0
        for client_id in targets:
            entry = sessions.get(client_id)
            if entry is None:
                continue
            queue = entry.queue
            if not queue:
                entry.queue = [frame]
                if listener is not None:
                    listener.wake(client_id)
            elif len(queue) < limit:
                queue.append(frame)
            elif not self._enqueue(client_id, frame):
                continue
            count += 1
        return count

    async def deliver(self, client_id: str, frame: bytes) -> bool:
        return self._enqueue(client_id, frame)

    def _enqueue(self, client_id: str, frame: bytes) -> bool:
        entry = self._sessions.get(client_id)
        if entry is None:
            return False
        queue = entry.queue
        if queue is None:
            queue = entry.queue = []
        elif len(queue) >= self.limits.max_messages:
            policy = self.limits.overflow
            if self._listener is not None:
                self._listener.overflowed(client_id, policy, 1)
            if policy is OverflowPolicy.DROP_NEWEST:
                return False
            if policy is OverflowPolicy.DISCONNECT:
                record = self._remove(client_id)
                if self._listener is not None and record is not None:
                    self._listener.closed(record, "overflow")
                return False
            del queue[0]  # only on overflow: O(n) in a bounded queue
        queue.append(frame)
        # Wake on the empty -> non-empty step only: with events already queued, the session's
        # holder (a held connect, a scheduled push) has been told, or there is none.
        if len(queue) == 1 and self._listener is not None:
            self._listener.wake(client_id)
        return True

    async def has_messages(self, client_id: str) -> bool:
        entry = self._sessions.get(client_id)
        return entry is not None and bool(entry.queue or (entry.ack and entry.ack.pending))

    async def acknowledge(self, client_id: str, batch: int) -> None:
        entry = self._sessions.get(client_id)
        if entry is not None and entry.ack is not None:
            entry.ack.acknowledge(batch)

    async def hand_out(
        self, client_id: str, extra: list[bytes], limit: int
    ) -> tuple[list[bytes], int]:
        entry = self._sessions.get(client_id)
        if entry is None:
            return [], 0
        if entry.ack is None:
            entry.ack = AckState()
        room = max(0, limit - len(entry.ack.unacked) - len(extra))
        return entry.ack.send(extra + await self.drain(client_id, room))

    async def queued(self, client_id: str) -> int:
        entry = self._sessions.get(client_id)
        return len(entry.queue) if entry is not None and entry.queue else 0

    async def drain(self, client_id: str, limit: int | None = None) -> list[bytes]:
        entry = self._sessions.get(client_id)
        if entry is None or not entry.queue:
            return []
        if limit is not None and limit < len(entry.queue):
            frames = entry.queue[:limit]
            del entry.queue[:limit]
            return frames
        frames, entry.queue = entry.queue, None
        return frames

    # -- expiry -----------------------------------------------------------------------------

    async def hold(self, client_id: str) -> None:
        entry = self._sessions.get(client_id)
        if entry is not None:
            entry.expires_ms = None

    async def release(self, client_id: str, expires_ms: int) -> None:
        entry = self._sessions.get(client_id)
        if entry is not None:
            entry.expires_ms = expires_ms

    async def touch(self, client_id: str, at_least_ms: int) -> None:
        entry = self._sessions.get(client_id)
        if entry is not None and entry.expires_ms is not None:
            entry.expires_ms = max(entry.expires_ms, at_least_ms)

    async def expire(self, now_ms: int) -> list[SessionRecord]:
        expired = [
            client_id
            for client_id, entry in self._sessions.items()
            if entry.expires_ms is not None and entry.expires_ms <= now_ms
        ]
        return [record for client_id in expired if (record := self._remove(client_id))]
