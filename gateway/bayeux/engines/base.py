"""The engine interface: where sessions, subscriptions and per-client queues live.

Transports never hold session state; the hub asks the engine.  An engine for one process
(:mod:`gateway.bayeux.engines.memory`) and one shared by several nodes
(:mod:`gateway.bayeux.engines.redis`) sit behind the same narrow async interface and pass the
same contract suite (``tests/unit/test_engine_contract.py``).

Queued items are already-encoded event frames (``bytes``): a broadcast is encoded once and the
same bytes are queued for every subscriber.

The engine tells the hub two things through :class:`EngineListener`:

* ``wake(client_id)`` — a session's queue went from empty to non-empty (wake its held
  connect, push to its websocket); further events queued before the next drain do not wake
  again;
* ``closed(record, reason)`` — the engine ended a session by itself (``expired``, or
  ``overflow`` under the ``disconnect`` queue policy).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from protocol import SessionRecord

__all__ = ["Engine", "EngineListener", "EngineUnavailable", "OverflowPolicy", "QueueLimits"]


class EngineUnavailable(Exception):
    """The engine's store cannot be reached (a network engine during an outage).

    Clients get a clear, retryable error (HTTP 503 ``engine_unavailable``, websocket close
    1013); the engine logs the outage once when it begins and once when it ends, never a
    traceback per request.  At start it is one line and exit status 2."""


class OverflowPolicy(enum.Enum):
    """What happens when a session's queue is full and another message arrives.

    * ``disconnect`` (default): the session is ended; its client gets ``402::session_unknown``
      on its next request, re-handshakes and resynchronises.  No message is silently lost.
    * ``drop_oldest``: the oldest queued message is discarded to make room.
    * ``drop_newest``: the new message is discarded (CometD's ``QueueMaxedListener`` default).

    Every overflow is logged and counted by the hub, whatever the policy.
    """

    DISCONNECT = "disconnect"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLimits:
    max_messages: int = 1000
    overflow: OverflowPolicy = OverflowPolicy.DISCONNECT


class EngineListener(Protocol):
    def wake(self, client_id: str) -> None: ...

    def closed(self, record: SessionRecord, reason: str) -> None: ...

    def overflowed(self, client_id: str, policy: OverflowPolicy, dropped: int) -> None: ...

    def taken(self, client_id: str) -> None:
        """Another node now holds this session's connect (a shared engine): end this node's
        hold without taking the session's events, which are the new holder's."""
        ...


class Engine(Protocol):
    """Sessions, subscriptions and queues.  Times are wall-clock milliseconds: the nodes
    sharing an engine have no other clock in common.

    ``suspends``: its calls wait on I/O (a network store), so the hub's work on it runs as
    tasks; ``False`` (memory) lets transports run it eagerly, in the callback that read it."""

    suspends: bool

    def attach(self, listener: EngineListener) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> float:
        """One round trip to where the sessions live, in seconds; raises when it cannot be
        reached.  Readiness (``/readyz``) and ``/metrics`` call it; an engine in this process
        answers 0.0."""
        ...

    async def create_session(self, record: SessionRecord, expires_ms: int) -> None: ...

    async def get_session(self, client_id: str) -> SessionRecord | None: ...

    async def update_session(self, record: SessionRecord) -> None: ...

    async def destroy_session(self, client_id: str) -> SessionRecord | None:
        """Remove the session, its subscriptions and its queue; return what was removed."""
        ...

    async def session_ids(self) -> list[str]: ...

    async def census(self) -> tuple[int, int]:
        """How many sessions there are and how many events wait in their queues, in one call
        (``/metrics``; with a shared engine, the whole cluster's)."""
        ...

    async def subscribe(self, client_id: str, channels: Iterable[str]) -> bool:
        """Record subscriptions; ``False`` if the session is gone."""
        ...

    async def unsubscribe(self, client_id: str, channels: Iterable[str]) -> bool: ...

    async def subscriptions(self, client_id: str) -> set[str]: ...

    async def publish(self, channel: str, frame: bytes) -> int:
        """Queue ``frame`` once for every session subscribed to a pattern matching ``channel``."""
        ...

    async def deliver(self, client_id: str, frame: bytes) -> bool:
        """Queue ``frame`` for one session; ``False`` if it does not exist."""
        ...

    async def has_messages(self, client_id: str) -> bool:
        """Events queued, or handed out and not acknowledged yet (the ``ack`` extension)."""
        ...

    async def queued(self, client_id: str) -> int:
        """How many frames wait in the session's queue (0 if it does not exist)."""
        ...

    async def drain(self, client_id: str, limit: int | None = None) -> list[bytes]:
        """Take the session's queued frames, oldest first: all, or the oldest ``limit``."""
        ...

    async def acknowledge(self, client_id: str, batch: int) -> None:
        """``ack`` extension: the client has every event of the batches up to ``batch``."""
        ...

    async def hand_out(
        self, client_id: str, extra: list[bytes], limit: int
    ) -> tuple[list[bytes], int]:
        """``ack`` extension, a connect reply: ``extra``, then queued events, join the events
        handed out and not acknowledged (at most ``limit`` of those in all; the rest stay
        queued) under a new batch number.  Return every unacknowledged event, oldest first, and
        that batch number (0 when the session is gone).  Stored with the session, so that any
        node re-sends what the client did not acknowledge."""
        ...

    async def hold(self, client_id: str) -> None:
        """A connect of this session is held: it must not expire meanwhile."""
        ...

    async def release(self, client_id: str, expires_ms: int) -> None:
        """The held connect was answered: expire at ``expires_ms`` unless it connects again."""
        ...

    async def touch(self, client_id: str, at_least_ms: int) -> None:
        """Activity: push expiry to at least ``at_least_ms`` (unless a connect is held)."""
        ...

    async def expire(self, now_ms: int) -> list[SessionRecord]:
        """End every session whose expiry has passed; return what was removed."""
        ...
