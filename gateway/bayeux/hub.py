"""The hub: drives the pure protocol core against an engine, for every transport.

A transport decodes a request into messages and calls :meth:`Hub.process`; the hub looks up
sessions, asks :class:`protocol.BayeuxCore` what to do, carries it out (security policy, engine,
service handlers), hands connects to :class:`gateway.bayeux.delivery.Delivery`, and returns
the encoded response in CometD's order: handshake reply, queued events, other replies in
request order, the connect reply last.

The hub is also the server-side API for the rest of the gateway: :meth:`publish`,
:meth:`deliver`, :meth:`disconnect`, :meth:`add_service` and session lifecycle listeners.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog

from gateway.bayeux.connects import End, Outcome, Responder, WsPeer
from gateway.bayeux.delivery import Delivery
from gateway.bayeux.eager import start_eagerly
from gateway.bayeux.engines.base import Engine, OverflowPolicy
from gateway.bayeux.security import AllowAll, Peer, SecurityPolicy
from protocol import (
    AckExtension,
    BayeuxCore,
    Connect,
    Disconnect,
    Event,
    Extension,
    Handshake,
    Malformed,
    Message,
    Publish,
    Raw,
    Reply,
    RequestContext,
    Respond,
    SessionRecord,
    Settings,
    Subscribe,
    TimesyncExtension,
    Unsubscribe,
    classify,
    encode,
    encode_frame,
    errors,
)
from protocol import ChannelKind as Kind

__all__ = ["Census", "Hub", "Outcome", "ServiceHandler"]

log = structlog.get_logger("gateway.bayeux.hub")

ServiceHandler = Callable[[SessionRecord, Any], Awaitable[Any]]
SessionListener = Callable[[SessionRecord, str], None]


def new_client_id() -> str:
    """128 random bits, lower-case hex: alphanumeric and 32 characters long."""
    return secrets.token_hex(16)


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


def _wall_ms() -> int:
    return int(time.time() * 1000)


_NO_MESSAGE = Message()  # what a malformed batch entry's reply is built against
# Transports whose replies also carry the session's queued events (callback-polling: no)
_PIGGYBACK = frozenset({"long-polling", "websocket"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Census:
    """What the engine holds at one moment (a shared engine: the whole fleet's sessions)."""

    sessions: int
    queued: int


class _Waiter:
    """A responder for callers that await the answer of a held long-poll."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    def respond(self, outcome: Outcome) -> None:
        if not self.future.done():
            self.future.set_result(outcome)


class Hub:
    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        policy: SecurityPolicy | None = None,
        deliver_only_on_connect: bool = False,
        duplicate_connect_status: int = 500,
        batch_window_ms: int = 0,
        max_flushes_per_s: int = 0,
        max_batch_window_ms: int = 1000,
        max_unacked: int = 1000,
        extensions: Sequence[Extension] = (),
        new_id: Callable[[], str] = new_client_id,
        clock_ms: Callable[[], int] = _monotonic_ms,
        wall_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.policy = policy or AllowAll()
        self.core = BayeuxCore(settings, new_id, [AckExtension(), TimesyncExtension(), *extensions])
        self.deliver_only_on_connect = deliver_only_on_connect
        self._clock_ms = clock_ms
        self._wall_ms = wall_ms
        self._services: dict[str, ServiceHandler] = {}
        self._opened: list[SessionListener] = []
        self._closed: list[SessionListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._hushed: dict[str, int] = {}  # session -> requests holding its wake-ups back
        self._woken: set[str] = set()  # hushed sessions that something was queued for
        self.stats: Counter[str] = Counter()
        self.delivery = Delivery(
            engine=engine,
            core=self.core,
            settings=settings,
            stats=self.stats,
            spawn=self._spawn,
            clock_ms=clock_ms,
            wall_ms=wall_ms,
            deliver_only_on_connect=deliver_only_on_connect,
            duplicate_connect_status=duplicate_connect_status,
            batch_window_ms=batch_window_ms,
            max_flushes_per_s=max_flushes_per_s,
            max_batch_window_ms=max_batch_window_ms,
            max_unacked=max_unacked,
        )
        engine.attach(self)

    # -- server-side API ----------------------------------------------------------------------

    async def publish(self, channel: str, data: Any) -> int:
        """Publish ``data`` on a broadcast channel; return how many sessions it was queued for."""
        name = self._broadcast_name(channel)
        self.stats["published"] += 1
        return await self.engine.publish(name, encode_frame(name, data))

    async def deliver(self, client_id: str, channel: str, data: Any) -> bool:
        """Queue ``data`` on ``channel`` for one session only (per-agent ``/v2/me/*`` channels)."""
        name = self._broadcast_name(channel)
        return await self.engine.deliver(client_id, encode_frame(name, data))

    async def disconnect(self, client_id: str) -> bool:
        """End a session from the server side; its held connect returns ``reconnect: none``."""
        return await self._end_session(client_id, "server")

    async def expire_session(self, client_id: str) -> bool:
        """Drop a session as if ``maxInterval`` had passed: the client's next message gets 402."""
        record = await self.engine.destroy_session(client_id)
        if record is None:
            return False
        self.closed(record, "expired")
        return True

    async def session_ids(self) -> list[str]:
        return await self.engine.session_ids()

    async def get_session(self, client_id: str) -> SessionRecord | None:
        return await self.engine.get_session(client_id)

    async def ping_engine(self) -> float:
        """One round trip to the engine, in seconds; raises when it cannot be reached."""
        return await self.engine.ping()

    async def census(self) -> Census:
        """Sessions and queued events as the engine holds them now (``/metrics``), in one
        engine call."""
        sessions, queued = await self.engine.census()
        return Census(sessions=sessions, queued=queued)

    def add_service(self, channel: str, handler: ServiceHandler) -> None:
        """Answer publishes to ``/service/...`` ``channel``: a non-``None`` result is sent back
        to the caller as ``{"channel", "id", "successful": true, "data"}``."""
        info = classify(channel)
        if info is None or info.kind is not Kind.SERVICE or info.wildcard:
            raise ValueError(f"not a service channel: {channel!r}")
        self._services[info.name] = handler

    def on_session_opened(self, listener: SessionListener) -> None:
        self._opened.append(listener)

    def on_session_closed(self, listener: SessionListener) -> None:
        self._closed.append(listener)

    @staticmethod
    def _broadcast_name(channel: str) -> str:
        info = classify(channel)  # the same cached lookup as a client's publish
        if info is None or info.wildcard or info.kind is Kind.META:
            raise ValueError(f"cannot publish on {channel!r}")
        return info.name

    # -- engine listener ----------------------------------------------------------------------

    def wake(self, client_id: str) -> None:
        if client_id in self._hushed:
            self._woken.add(client_id)
            return
        self.delivery.wake(client_id)

    def closed(self, record: SessionRecord, reason: str) -> None:
        client_id = record.client_id
        self.delivery.drop(client_id)
        self.stats[f"sessions_closed_{reason}"] += 1
        log.info("session_closed", client_id=client_id, reason=reason)
        for listener in self._closed:
            listener(record, reason)

    def taken(self, client_id: str) -> None:
        self.delivery.taken(client_id)

    def overflowed(self, client_id: str, policy: OverflowPolicy, dropped: int) -> None:
        self.stats["queue_overflow"] += dropped
        log.warning("queue_overflow", client_id=client_id, policy=policy.value, dropped=dropped)

    # -- requests -----------------------------------------------------------------------------

    async def process(
        self,
        batch: Sequence[Message | Malformed],
        ctx: RequestContext,
        peer: Peer,
        ws: WsPeer | None = None,
        responder: Responder | None = None,
    ) -> Outcome:
        """Handle one request (an HTTP body or a websocket frame) and build its response.

        A held connect is answered later: over websocket through ``ws``, over long-polling
        through ``responder`` (the returned outcome then names the held session in ``held``).
        Without a responder, a held long-poll is awaited here.
        """
        now = self._wall_ms()
        head: list[bytes] = []
        replies: list[bytes] = []
        connects: list[tuple[Connect, Message]] = []
        # Sessions publishing in a request whose response takes their events back: the
        # wake-ups of their held connects wait for that response (see _hush).
        hushed: list[str] = []
        drained: list[bytes] = []
        try:
            piggyback = await self._handle_all(
                batch, ctx, peer, now, head, replies, connects, hushed
            )
            if (
                not connects
                and piggyback is not None
                and self._piggyback(piggyback, ctx)
                and not (ws is not None and ws.backed_up)  # they wait in the bounded queue
            ):
                drained = await self.delivery.drain(piggyback.client_id)
        finally:
            for client_id in self._unhush(hushed) if hushed else ():
                if await self.engine.has_messages(client_id):
                    self.delivery.wake(client_id)
        outcome = Outcome(parts=head)
        tail: list[bytes] = []
        for action, message in connects:
            waiter = _Waiter() if ws is None and responder is None else None
            answer = await self.delivery.connect(action, message, ctx, ws, responder or waiter)
            if answer is None:
                # Held: only a connect alone in its request is held, so nothing else is due.
                if waiter is not None:
                    return await waiter.future
                if ws is None:
                    return Outcome(held=action.session.client_id)
                continue
            events, encoded = answer
            outcome.parts.extend(events)
            tail.append(encoded)
        outcome.parts.extend(drained)  # piggy-back: only in a request without a connect
        outcome.parts.extend(replies)
        outcome.parts.extend(tail)
        return outcome

    async def _handle_all(
        self,
        batch: Sequence[Message | Malformed],
        ctx: RequestContext,
        peer: Peer,
        now: int,
        head: list[bytes],
        replies: list[bytes],
        connects: list[tuple[Connect, Message]],
        hushed: list[str],
    ) -> SessionRecord | None:
        """Carry out every message but the connects (collected in ``connects``); encoded replies
        go to ``head`` (handshake) and ``replies``.  Return the session whose queue the
        response may take (the last one that published or (un)subscribed)."""
        piggyback: SessionRecord | None = None
        core, engine = self.core, self.engine
        last: SessionRecord | None = None  # the session of the previous publish or (un)subscribe
        published = 0
        for item in batch:
            message = _NO_MESSAGE
            session = None
            if type(item) is Message:
                kept = core.incoming(item, now)
                if kept is None:
                    self._out(
                        replies, core.error_reply(item, errors.MESSAGE_DELETED.error()), item, now
                    )
                    continue
                request: Message | Malformed = kept
                message = kept
                client_id = message.client_id
                if type(client_id) is str:
                    # A batch of publishes names one session: look it up once.
                    if last is not None and last.client_id == client_id:
                        session = last
                    else:
                        session = await engine.get_session(client_id)
            else:
                request = item
            action = core.handle(request, session, ctx, now)
            last = None
            if type(action) is Publish:
                if action.service:
                    for reply in await self._publish_service(action, message):
                        self._out(replies, reply, message, now)
                else:
                    if self._piggyback(action.session, ctx):
                        self._hush(action.session.client_id, hushed)
                    reply = await self._publish(action, message)
                    published += reply is action.reply
                    self._out(replies, reply, message, now)
                piggyback = last = action.session
            elif type(action) is Connect:
                connects.append((action, message))
            elif type(action) is Respond:
                reply = action.reply
                self._out(
                    head if reply.channel == "/meta/handshake" else replies, reply, message, now
                )
            elif type(action) is Handshake:
                self._out(head, await self._handshake(action, message, peer), message, now)
            else:
                assert isinstance(action, Subscribe | Unsubscribe | Disconnect)
                self._out(replies, await self._execute(action, message), message, now)
                if type(action) is not Disconnect:
                    piggyback = last = action.session
        if published:
            self.stats["published"] += published
        if piggyback is not None:  # activity: once per request, not once per message
            await self.engine.touch(
                piggyback.client_id, self.settings.expiry_after_activity(self._wall_ms())
            )
        return piggyback

    def _hush(self, client_id: str, hushed: list[str]) -> None:
        """Hold the session's wake-ups back until this request's response has taken its events.

        A client publishing to a channel it subscribes itself gets the event back in the
        publish response (piggy-back).  Waking its held connect too would answer that connect
        with nothing and cost a whole HTTP cycle per publish; CometD likewise batches the
        request and wakes the connect only for what the response left.
        """
        if client_id not in hushed:
            hushed.append(client_id)
            self._hushed[client_id] = self._hushed.get(client_id, 0) + 1

    def _unhush(self, hushed: list[str]) -> list[str]:
        """The response is built: the sessions something was queued for meanwhile (their held
        connects are woken if the response left them anything)."""
        woken = []
        for client_id in hushed:
            left = self._hushed.pop(client_id) - 1
            if left:  # another request of the session is still running: its end wakes
                self._hushed[client_id] = left
            elif client_id in self._woken:
                self._woken.discard(client_id)
                woken.append(client_id)
        return woken

    def _out(self, target: list[bytes], reply: Reply, request: Message, now: int) -> None:
        final = self.core.outgoing(reply, request, now)
        if final is not None:
            target.append(encode(final))

    def _piggyback(self, session: SessionRecord, ctx: RequestContext) -> bool:
        return ctx.transport in _PIGGYBACK and not self.deliver_only_on_connect and not session.ack

    async def _handshake(self, action: Handshake, message: Message, peer: Peer) -> Reply:
        grant = await self.policy.can_handshake(message, peer)
        if not grant.allowed:
            self.stats["handshakes_denied"] += 1
            denied = self.core.deny_handshake(message, grant.advice)
            if grant.ext:
                denied = msgspec.structs.replace(denied, ext=dict(grant.ext))
            return denied
        record = action.session
        if grant.user is not None:
            record = msgspec.structs.replace(record, user=grant.user, login=grant.login)
        expires = self.settings.expiry_after_connect(self._wall_ms())
        await self.engine.create_session(record, expires)
        self.stats["sessions_opened"] += 1
        log.info(
            "session_opened",
            client_id=record.client_id,
            transport=record.transport,
            user=record.user,
        )
        for listener in self._opened:
            listener(record, "handshake")
        reply = action.reply
        if grant.ext:
            reply = msgspec.structs.replace(reply, ext=dict(grant.ext))
        return reply

    async def _execute(
        self, action: Subscribe | Unsubscribe | Disconnect, message: Message
    ) -> Reply:
        session = action.session
        client_id = session.client_id
        if isinstance(action, Subscribe):
            for channel in action.channels:
                if not await self.policy.can_subscribe(session, channel, message):
                    return self.core.error_reply(
                        message, errors.SUBSCRIBE_DENIED.error(errors.DENIED_BY_POLICY)
                    )
            if not await self.engine.subscribe(client_id, action.channels):
                return self.core.error_reply(message, errors.SESSION_UNKNOWN.error())
            return action.reply
        if isinstance(action, Unsubscribe):
            if not await self.engine.unsubscribe(client_id, action.channels):
                return self.core.error_reply(message, errors.SESSION_UNKNOWN.error())
            return action.reply
        await self._end_session(client_id, "disconnect")
        return action.reply

    async def _publish(self, action: Publish, message: Message) -> Reply:
        if not await self.policy.can_publish(action.session, action.channel, message):
            return self.core.error_reply(
                message, errors.PUBLISH_DENIED.error(errors.DENIED_BY_POLICY)
            )
        await self.engine.publish(
            action.channel, encode(Event(channel=action.channel, data=action.data))
        )
        return action.reply

    async def _publish_service(self, action: Publish, message: Message) -> list[Reply]:
        if not await self.policy.can_publish(action.session, action.channel, message):
            return [
                self.core.error_reply(message, errors.PUBLISH_DENIED.error(errors.DENIED_BY_POLICY))
            ]
        return [action.reply, *await self._call_service(action, message)]

    async def _call_service(self, action: Publish, message: Message) -> list[Reply]:
        handler = self._services.get(action.channel)
        if handler is None:
            return []
        try:
            result = await handler(action.session, msgspec.json.decode(action.data))
        except Exception:
            log.exception(
                "service_failed", client_id=action.session.client_id, channel=action.channel
            )
            return [self.core.error_reply(message, errors.SERVICE_FAILED.error())]
        if result is None:
            return []
        return [
            Reply(
                channel=action.channel,
                id=message.id,
                successful=True,
                data=Raw(msgspec.json.encode(result)),
            )
        ]

    async def _end_session(self, client_id: str, reason: str) -> bool:
        held = self.delivery.take(client_id)
        events = await self.delivery.drain(client_id) if held is not None else []
        record = await self.engine.destroy_session(client_id)
        if held is not None:
            held.end(End.CLOSED, events)
        if record is None:
            return False
        self.closed(record, reason)
        return True

    async def sweep(self) -> list[SessionRecord]:
        """End expired sessions and adapt the batching window (called about once a second)."""
        self.delivery.adapt_window()
        expired = await self.engine.expire(self._wall_ms())
        for record in expired:
            self.closed(record, "expired")
        return expired

    async def close(self, timeout_s: float = 2.0) -> None:
        """Shutdown: answer every held connect now, give the answers a moment to go out."""
        self.delivery.end_all()
        # Ended holds are answered together in the next loop turn (delivery's PushGroups):
        # let it come, so that their answers exist (or are tasks) before the edge closes.
        await asyncio.sleep(0)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` at once; track it as a task only if it has to wait."""
        task = start_eagerly(coro, eager=self.eager)
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def eager(self) -> bool:
        """Whether transports may run a request's work in the callback that read it."""
        return not self.engine.suspends

    @property
    def held_count(self) -> int:
        return self.delivery.held_count

    def hold_deadline(self, client_id: str) -> float | None:
        """When the session's held connect is answered at the latest (``loop.time()``)."""
        return self.delivery.deadline(client_id)

    def abandon(self, client_id: str, responder: Responder) -> None:
        """The client of a held long-poll hung up: stop holding; events stay for later."""
        self.delivery.abandon(client_id, responder)

    def ws_drained(self, ws: WsPeer) -> None:
        """A socket that was backed up has drained: its sessions' queued events may go."""
        self.delivery.drained(ws)

    def ws_closed(self, client_ids: Sequence[str], ws: WsPeer) -> None:
        """The socket is gone: stop holding its connects; sessions expire unless it returns."""
        self.delivery.ws_closed(client_ids, ws)
