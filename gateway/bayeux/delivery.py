"""Held connects, pushes and batching: how events leave the gateway.

The hub hands every ``/meta/connect`` to :meth:`Delivery.connect`, which answers it at once or
holds it; the engine's wake-ups come here through the hub.  Long-polling holds are answered
through their request's :class:`~gateway.bayeux.connects.Responder`, websocket ones through
the socket, where events are also pushed while the connect stays held.  A session gets at most one
response or frame of events per batching window; the window widens when the whole server
sends more than its budget of flushes per second, and sessions then flush in slots spread over
it rather than all at once (still about one flush per window each).

Events leave a session's queue for a websocket only while that socket keeps up: while it is
backed up (its client does not read) they stay queued, bounded by ``queue.max_messages`` and
its overflow policy, exactly as for a long-polling client that does not come back; when it has
drained, :meth:`Delivery.drained` wakes its sessions again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import msgspec
import structlog

from gateway.bayeux.connects import End, Held, Outcome, Responder, WsPeer
from gateway.bayeux.engines.base import Engine, EngineUnavailable
from gateway.bayeux.pushes import PushGroups
from protocol import (
    BayeuxCore,
    Connect,
    Message,
    Reply,
    RequestContext,
    Settings,
    encode,
    errors,
)

__all__ = ["Delivery"]

log = structlog.get_logger("gateway.bayeux.delivery")


class Delivery:
    def __init__(
        self,
        *,
        engine: Engine,
        core: BayeuxCore,
        settings: Settings,
        stats: Counter[str],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        clock_ms: Callable[[], int],
        wall_ms: Callable[[], int],
        deliver_only_on_connect: bool,
        duplicate_connect_status: int,
        batch_window_ms: int,
        max_flushes_per_s: int,
        max_batch_window_ms: int,
        max_unacked: int = 1000,
    ) -> None:
        self.engine = engine
        self.max_unacked = max_unacked
        self.core = core
        self.settings = settings
        self.stats = stats
        self._spawn = spawn
        self._clock_ms = clock_ms
        self._wall_ms = wall_ms
        self.deliver_only_on_connect = deliver_only_on_connect
        self.duplicate_connect_status = duplicate_connect_status
        self.base_window_ms = batch_window_ms
        self.batch_window_ms = batch_window_ms  # the window in force (adapts to load)
        self.max_flushes_per_s = max_flushes_per_s
        self.max_batch_window_ms = max(max_batch_window_ms, batch_window_ms)
        self._flush_count = 0
        self._window_since_ms = clock_ms()
        self._flushed: dict[str, int] = {}
        self._held: dict[str, Held] = {}
        self._arming: set[str] = set()  # connects between their engine hold and ours
        self._rang: set[str] = set()  # woken while arming
        self._browser_polls: Counter[str] = Counter()
        self._pushing: set[str] = set()
        self._pushes: PushGroups[str] = PushGroups(self._push, spawn)
        self._ended: PushGroups[tuple[Held, End]] = PushGroups(self._deliver_all, spawn)

    @property
    def held_count(self) -> int:
        return len(self._held)

    def deadline(self, client_id: str) -> float | None:
        """When the session's held connect will be answered at the latest (loop time)."""
        held = self._held.get(client_id)
        return held.deadline if held is not None else None

    def take(self, client_id: str) -> Held | None:
        """Remove the session's hold (the caller ends it)."""
        return self._held.pop(client_id, None)

    def drop(self, client_id: str) -> None:
        """The session vanished server-side: its hold answers ``402::session_unknown``."""
        self._flushed.pop(client_id, None)
        held = self._held.pop(client_id, None)
        if held is not None:
            held.end(End.GONE)

    async def drain(self, client_id: str, limit: int | None = None) -> list[bytes]:
        """Take the session's queued events for its client: every event handed out leaves
        through here, and is counted (``delivered``)."""
        events = await self.engine.drain(client_id, limit)
        if events:
            self.stats["delivered"] += len(events)
        return events

    def end_all(self) -> None:
        """Shutdown: answer every held connect now."""
        for held in list(self._held.values()):
            held.end(End.TIMEOUT)

    def wake(self, client_id: str) -> None:
        held = self._held.get(client_id)
        if held is None and client_id in self._arming:
            self._rang.add(client_id)  # its connect is being held: see connect()
            return
        if held is None or _backed_up(held.ws):
            return  # a backed-up socket: woken again when it has drained
        if held.push:
            if client_id not in self._pushing:
                self._pushing.add(client_id)
                self._pushes.schedule(client_id, self._flush_delay_ms(client_id))
            return
        delay = self._flush_delay_ms(client_id)
        if delay:
            held.wake_after(delay / 1000)
        else:
            held.end(End.WAKE)

    def _flush_delay_ms(self, client_id: str) -> int:
        """Batching: a session gets at most one response or frame of events per window.

        The first events after a quiet window go out at once; during a burst the next
        flush waits for the window to pass, so events gather into one response.
        """
        last = self._flushed.get(client_id)
        window = self.batch_window_ms
        if last is None or not window:
            return 0
        now = self._clock_ms()
        due = last + window
        if due <= now:
            return 0
        if window > self.base_window_ms:
            # Under load (the window has widened) sessions flush in their own slot of the
            # window, not all together: a broadcast reaches every session at once, and left in
            # step they would all flush in the same instant, window after window, each burst
            # queueing behind itself.  A session's slots are a window apart; it takes the slot
            # nearest to one window after its last flush, so a flush that went out a little
            # late keeps the session in its slot instead of skipping to the next one.
            start = due - window // 2
            due = start + (hash(client_id) - start) % window
        return max(0, due - now)

    async def connect(
        self,
        action: Connect,
        message: Message,
        ctx: RequestContext,
        ws: WsPeer | None,
        responder: Responder | None,
    ) -> tuple[list[bytes], bytes] | None:
        """Answer a connect now, or hold it (``None``) and answer it when the hold ends."""
        session = action.session
        client_id = session.client_id
        await self.engine.update_session(session)
        previous = self._held.pop(client_id, None)
        if previous is not None:
            self._uncount(previous)  # now, not when its answer is written: the new one may hold
            previous.end(End.SUPERSEDED)
        ack = session.ack  # the ack extension: its batches live in the engine, for any node
        if ack and action.ack is not None:
            await self.engine.acknowledge(client_id, action.ack)
        reply = action.reply
        hold_ms = action.hold_ms
        browser = ctx.browser_id if ctx.http else None
        push = ws is not None and not self.deliver_only_on_connect and not session.ack
        backed_up = _backed_up(ws)
        waiting = False
        if hold_ms:
            # The hold is registered in the engine before the queue is looked at: an event
            # published meanwhile on any node then rings this node.  A wake-up arriving before
            # the hold is registered here too is kept (_rang).
            self._arming.add(client_id)
            try:
                await self.engine.hold(client_id)
                # has_messages counts what was handed out and not acknowledged too
                waiting = not backed_up and await self.engine.has_messages(client_id)
            finally:
                self._arming.discard(client_id)
            if client_id in self._rang:
                self._rang.discard(client_id)
                waiting = not backed_up
        # From here to the registration of the hold nothing waits: no wake-up can slip by.
        delay = self._flush_delay_ms(client_id) if waiting else 0
        if waiting and (not push or not delay):
            hold_ms = delay  # events waiting: the connect takes them (batched)
            waiting = False
        elif (
            hold_ms
            and browser is not None
            and (self._browser_polls[browser] >= self.settings.max_sessions_per_browser)
        ):
            reply = self.core.multiple_clients_reply(reply)
            hold_ms = 0
        if not hold_ms:
            return await self._answer(client_id, reply, message, [], drain=not backed_up, ack=ack)
        held = Held(
            client_id=client_id,
            reply=reply,
            request=message,
            browser_id=browser,
            ws=ws,
            responder=responder if ws is None else None,
            push=push,
            ack=ack,
        )
        self._held[client_id] = held
        if ws is not None:
            ws.sessions.add(client_id)
        elif browser is not None:
            self._browser_polls[browser] += 1
            held.counted = True
        held.start(hold_ms / 1000, self._hold_ended)
        if waiting:
            # A busy websocket session (it had a frame within the batching window) keeps its
            # connect held and gets the waiting events pushed when the window ends.  Answering
            # the connect instead would start a connect cycle that, under load, never returns
            # to pushing: each reply finds new events waiting.
            self.wake(client_id)
        return None

    def _uncount(self, held: Held) -> None:
        """This held poll no longer counts against its browser's limit."""
        if held.counted and held.browser_id is not None:
            held.counted = False
            self._browser_polls[held.browser_id] -= 1
            if self._browser_polls[held.browser_id] <= 0:
                del self._browser_polls[held.browser_id]

    def _hold_ended(self, held: Held, reason: End) -> None:
        if self._held.get(held.client_id) is held:
            del self._held[held.client_id]
        self._uncount(held)
        # Answered in this loop turn, together with every other hold that ends in it.
        self._ended.schedule((held, reason), 0)

    async def _deliver_all(self, ended: list[tuple[Held, End]]) -> None:
        for held, reason in ended:
            await self._deliver(held, reason)

    async def _deliver(self, held: Held, reason: End) -> None:
        """Compute the reply of a held connect and hand it to its socket or request."""
        try:
            answer = await self._finish(held, reason)
        except EngineUnavailable:  # logged by the engine, once per outage
            # The client hears it (503, or close 1013) and retries; its events stay queued.
            if held.ws is not None:
                held.ws.unavailable()
            elif held.responder is not None:
                held.responder.respond(Outcome(status=503))
            return
        if held.ws is not None:
            if answer is not None and not held.ws.closed:
                events, reply = answer
                held.ws.send([*events, reply])
        elif held.responder is not None:
            if answer is None:
                held.responder.respond(Outcome(status=self.duplicate_connect_status))
            else:
                events, reply = answer
                held.responder.respond(Outcome(parts=[*events, reply]))

    def taken(self, client_id: str) -> None:
        """The session's newer connect is held on another node: answer this one as replaced
        (``duplicate_connect_status``), leaving the session's events and hold to that node."""
        held = self._held.get(client_id)
        if held is not None:
            held.end(End.SUPERSEDED)

    def abandon(self, client_id: str, responder: Responder) -> None:
        """The client of a held long-poll hung up: stop holding; events stay for later."""
        held = self._held.get(client_id)
        if held is None or held.responder is not responder:
            return
        self._release(held)

    def _release(self, held: Held) -> None:
        del self._held[held.client_id]
        self._uncount(held)
        held.on_end = None
        held.end(End.SUPERSEDED)
        expiry = self.settings.expiry_after_connect(self._wall_ms())
        self._spawn(self.engine.release(held.client_id, expiry))

    async def _finish(self, held: Held, reason: End) -> tuple[list[bytes], bytes] | None:
        if reason is End.SUPERSEDED:
            return None
        if reason is End.GONE:
            failed = self.core.error_reply(held.request, errors.SESSION_UNKNOWN.error())
            return held.events, encode(failed)
        if reason is End.CLOSED:
            return held.events, encode(self.core.closed_reply(held.reply))
        drain = not _backed_up(held.ws)
        return await self._answer(
            held.client_id, held.reply, held.request, held.events, drain=drain, ack=held.ack
        )

    async def _answer(
        self,
        client_id: str,
        reply: Reply,
        request: Message,
        events: list[bytes],
        *,
        drain: bool = True,
        ack: bool = False,
    ) -> tuple[list[bytes], bytes]:
        """The connect reply, with the queued events unless its socket is backed up."""
        if ack:
            # With the ack extension, events handed out wait for their acknowledgement (in the
            # engine, so that any node re-sends them); at most max_unacked of them: the rest
            # stay queued, where the overflow policy applies to a client that connects and
            # never acknowledges.
            limit = self.max_unacked if drain else 0
            events, batch = await self.engine.hand_out(client_id, events, limit)
            self.stats["delivered"] += len(events)  # re-sent ones too: they leave again
            ext = dict(reply.ext) if reply.ext else {}
            ext["ack"] = batch
            reply = msgspec.structs.replace(reply, ext=ext)
        elif drain:
            events = events + await self.drain(client_id)
        if events:
            self._flushed[client_id] = self._clock_ms()
            self._flush_count += 1
        final = self.core.outgoing(reply, request, self._wall_ms()) or reply
        await self.engine.release(client_id, self.settings.expiry_after_connect(self._wall_ms()))
        return events, encode(final)

    async def _push(self, group: list[str]) -> None:
        """Websocket: send each session's queued events as one frame; connects stay held.

        The session's *current* hold is used: the one the push was scheduled for may have
        ended and been replaced meanwhile, and nothing else would wake the new one.
        """
        now = self._clock_ms()
        for client_id in group:
            self._pushing.discard(client_id)
            held = self._held.get(client_id)
            ws = held.ws if held is not None and held.push else None
            if ws is None or ws.closed:
                continue  # events wait for the next connect, which takes them at once
            if ws.backed_up:
                continue  # they wait in the queue until the socket has drained
            events = await self.drain(client_id)
            if events:
                self._flushed[client_id] = now
                self._flush_count += 1
                ws.send(events)

    def drained(self, ws: WsPeer) -> None:
        """A backed-up socket has drained: wake its held sessions that have events waiting."""
        client_ids = [
            client_id
            for client_id in ws.sessions
            if (held := self._held.get(client_id)) is not None and held.ws is ws
        ]
        if client_ids:
            self._spawn(self._wake_queued(client_ids))

    async def _wake_queued(self, client_ids: list[str]) -> None:
        for client_id in client_ids:
            if await self.engine.has_messages(client_id):
                self.wake(client_id)

    def ws_closed(self, client_ids: Sequence[str], ws: WsPeer) -> None:
        """The socket is gone: stop holding its connects; sessions expire unless it returns."""
        for client_id in client_ids:
            held = self._held.get(client_id)
            if held is not None and held.ws is ws:
                self._release(held)

    # -- housekeeping -------------------------------------------------------------------------

    def adapt_window(self) -> None:
        """Widen the batching window when the server sends more flushes than its budget.

        Busy sessions each get about one flush per window, so flushes/s x window is roughly
        the number of busy sessions: scaling the window by measured/budget brings the rate back
        to the budget in one step.  Below the budget the configured window applies again.  A
        flush is a long-poll response or a websocket frame of events.
        """
        now = self._clock_ms()
        elapsed = now - self._window_since_ms
        if elapsed <= 0:
            return
        rate = self._flush_count * 1000 / elapsed
        self._flush_count = 0
        self._window_since_ms = now
        if not self.max_flushes_per_s or not self.base_window_ms:
            return
        wanted = self.batch_window_ms * rate / self.max_flushes_per_s
        wanted = min(max(wanted, self.base_window_ms), self.max_batch_window_ms)
        window = int((self.batch_window_ms + wanted) / 2)  # smoothed
        if (window > self.base_window_ms) != (self.batch_window_ms > self.base_window_ms):
            log.info("batch_window_changed", window_ms=window, flushes_per_s=int(rate))
        self.stats["batch_window_ms"] = window
        self.batch_window_ms = window


def _backed_up(ws: WsPeer | None) -> bool:
    return ws is not None and ws.backed_up
