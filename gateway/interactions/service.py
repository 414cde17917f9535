"""The interaction service: drives the pure center, stores its changes, notifies agents.

Order of every change: the center decides (synchronously), the store commits the changed
interactions and the agents' sequence numbers in one transaction, and only then do
notifications go out, to each of the agent's CometD sessions subscribed to a matching channel
(``/v2/me/interactions``, ``/v2/me/*``, ``/v2/me/**``, ...).  Nothing is published on a
broadcast channel, so no session can see another agent's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog

from gateway.bayeux.hub import Hub
from gateway.interactions.center import Center, Effects, SendEmail
from gateway.interactions.model import Interaction
from gateway.interactions.store import Store, Write
from gateway.interactions.wire import channel_message, interaction_message
from protocol import SessionRecord, matches

__all__ = ["InteractionService", "Outbox"]

log = structlog.get_logger("gateway.interactions")

INTERACTIONS_CHANNEL = "/v2/me/interactions"
CHANNELS_CHANNEL = "/v2/me/channels"


class Outbox(Protocol):
    """Where sent drafts go: recorded in the same transaction as the draft's Completed state,
    then sent by the mail sender, which :meth:`wake` tells that there is work."""

    def prepare(self, email: SendEmail) -> Write: ...

    def wake(self) -> None: ...


def _now_ms() -> int:
    return int(time.time() * 1000)


class InteractionService:
    def __init__(
        self,
        center: Center,
        store: Store,
        hub: Hub,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.center = center
        self.store = store
        self.hub = hub
        self.clock_ms = clock_ms
        self.outbox: Outbox | None = None
        self._sequences: dict[str, int] = {}
        self._bayeux: dict[str, set[str]] = defaultdict(set)  # agent -> CometD client ids
        self._lock = asyncio.Lock()
        self._timer_changed = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        hub.on_session_opened(self._session_opened)
        hub.on_session_closed(self._session_closed)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        self._sequences = await self.store.sequences()
        active = await self.store.load_active()
        effects = self.center.restore(active, self.clock_ms())
        await self.apply(effects)
        log.info("interactions_restored", active=len(active), requeued=len(effects.saved))
        self._timer = asyncio.create_task(self._run_timer())

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        await self.store.close()

    async def ping(self) -> None:
        """Raise unless the store answers (readiness)."""
        await self.store.ping()

    # -- applying the center's decisions ------------------------------------------------------

    async def apply(self, effects: Effects, writes: Sequence[Write] = ()) -> Effects:
        """Commit the center's decision (with ``writes`` in the same transaction), then tell
        the agents, then hand emails to send to the outbox."""
        async with self._lock:
            messages: list[tuple[str, str, dict[str, Any]]] = []
            for notice in effects.notices:
                ix = notice.interaction
                data = interaction_message(
                    ix,
                    notice.shown,
                    self.center.queues.get(ix.queue),
                    sequence=self._next_sequence(notice.agent),
                    reference_id=notice.reference_id,
                    chat_from=notice.chat_from,
                    error=notice.error,
                )
                messages.append((notice.agent, INTERACTIONS_CHANNEL, data))
            for changed in effects.channels:
                view = self.center.agent_view(changed.agent)
                data = channel_message(view, sequence=self._next_sequence(changed.agent))
                messages.append((changed.agent, CHANNELS_CHANNEL, data))
            touched = {agent for agent, _, _ in messages}
            if effects.emails:
                writes = [*writes, *self._outgoing(effects.emails)]
            await self.store.save(
                effects.saved.values(), {a: self._sequences[a] for a in touched}, writes
            )
            for ix in effects.saved.values():
                log.info(
                    "interaction_changed",
                    interaction_id=ix.id,
                    state=ix.state.value,
                    agent=ix.agent,
                    queue=ix.queue,
                )
            for agent, channel, data in messages:
                await self._deliver(agent, channel, data)
        if effects.emails and self.outbox is not None:
            self.outbox.wake()
        self._timer_changed.set()
        return effects

    def _outgoing(self, emails: Sequence[SendEmail]) -> list[Write]:
        if self.outbox is None:
            for email in emails:
                log.error("reply_not_sent", interaction_id=email.draft.id, reason="no outbox")
            return []
        return [self.outbox.prepare(email) for email in emails]

    def _next_sequence(self, agent: str) -> int:
        value = self._sequences.get(agent, 0) + 1
        self._sequences[agent] = value
        return value

    async def _deliver(self, agent: str, channel: str, data: dict[str, Any]) -> None:
        for client_id in list(self._bayeux.get(agent, ())):
            subscriptions = await self.hub.engine.subscriptions(client_id)
            if any(matches(pattern, channel) for pattern in subscriptions):
                await self.hub.deliver(client_id, channel, data)

    # -- CometD sessions of agents ------------------------------------------------------------

    def _session_opened(self, record: SessionRecord, reason: str) -> None:
        if record.user is not None:
            self._bayeux[record.user].add(record.client_id)

    def _session_closed(self, record: SessionRecord, reason: str) -> None:
        if record.user is not None:
            sessions = self._bayeux.get(record.user)
            if sessions is not None:
                sessions.discard(record.client_id)
                if not sessions:
                    del self._bayeux[record.user]

    def has_bayeux_session(self, agent: str) -> bool:
        return bool(self._bayeux.get(agent))

    async def disconnect_agent(self, agent: str, *, login: str | None = None) -> None:
        """End the agent's CometD sessions: all of them, or those one login granted."""
        for client_id in list(self._bayeux.get(agent, ())):
            if login is not None:
                record = await self.hub.get_session(client_id)
                if record is None or record.login != login:
                    continue
            await self.hub.disconnect(client_id)

    # -- queries ------------------------------------------------------------------------------

    async def get(self, interaction_id: str) -> Interaction | None:
        active = self.center.active.get(interaction_id)
        if active is not None:
            return active
        return await self.store.get(interaction_id)

    # -- the invite timer ---------------------------------------------------------------------

    async def _run_timer(self) -> None:
        while True:
            deadline = self.center.next_deadline()
            self._timer_changed.clear()
            if deadline is None:
                await self._timer_changed.wait()
                continue
            delay = (deadline - self.clock_ms()) / 1000
            if delay > 0:
                try:
                    await asyncio.wait_for(self._timer_changed.wait(), delay)
                    continue
                except TimeoutError:
                    pass
            try:
                await self.apply(self.center.tick(self.clock_ms()))
            except Exception:
                log.exception("invite_timer_failed")
                await asyncio.sleep(1)
