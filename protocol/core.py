"""The sans-IO Bayeux server: one message and the session it names in, one action out.

The shell looks the session up (it lives in an engine), calls :meth:`BayeuxCore.handle` with the
current time, carries out the returned action and sends the reply through
:meth:`BayeuxCore.outgoing`.  Checks common to every message come first (Bayeux §3, CometD
``validateMessageFields``):

1. a batch entry that does not fit the schema → its field's error (``405::channel_invalid``,
   ``405::message_id_invalid``, ``403::subscription_invalid``, ``400::message_invalid``);
2. no ``channel`` → ``400::channel_missing``;
3. a string ``id`` that is not alphanumeric → ``405::message_id_invalid``;
4. a channel name that is not valid → ``405::channel_invalid``;
5. for everything but a handshake: no session for ``clientId``, or (over HTTP) a session that
   is not bound to the request's ``BAYEUX_BROWSER`` cookie → ``402::session_unknown``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from protocol import errors
from protocol.actions import (
    Action,
    Connect,
    Disconnect,
    Handshake,
    Publish,
    RequestContext,
    Respond,
    Subscribe,
    Unsubscribe,
)
from protocol.channels import ChannelKind, channel_kind, classify, normalize
from protocol.extensions import Extension, Pipeline, wants_ack
from protocol.messages import UNSET, Advice, Malformed, Message, MessageId, Reply
from protocol.session import SessionRecord, Settings

__all__ = ["BayeuxCore"]

HANDSHAKE = "/meta/handshake"
CONNECT = "/meta/connect"
SUBSCRIBE = "/meta/subscribe"
UNSUBSCRIBE = "/meta/unsubscribe"
DISCONNECT = "/meta/disconnect"

_META, _SERVICE = ChannelKind.META, ChannelKind.SERVICE

RECONNECT_NONE = Advice(reconnect="none")
RECONNECT_HANDSHAKE = Advice(reconnect="handshake", interval=0)


def _valid_id(ident: MessageId) -> bool:
    return not isinstance(ident, str) or (ident.isascii() and (ident.isalnum() or ident == ""))


class BayeuxCore:
    """Pure protocol logic.  ``new_id`` makes client ids; ``now_ms`` is always passed in."""

    def __init__(
        self,
        settings: Settings,
        new_id: Callable[[], str],
        extensions: Sequence[Extension] = (),
    ) -> None:
        self.settings = settings
        self._new_id = new_id
        self.pipeline = Pipeline(extensions)
        self.handshake_advice = Advice(
            reconnect="retry", interval=settings.interval_ms, timeout=settings.timeout_ms
        )
        self._handlers: dict[
            str, Callable[[Message, SessionRecord | None, RequestContext, int], Action]
        ] = {
            HANDSHAKE: self.handshake,
            CONNECT: self.connect,
            SUBSCRIBE: self.subscribe,
            UNSUBSCRIBE: self.unsubscribe,
            DISCONNECT: self.disconnect,
        }

    # -- entry points -----------------------------------------------------------------------

    def incoming(self, message: Message, now_ms: int) -> Message | None:
        return self.pipeline.incoming(message, now_ms)

    def outgoing(self, reply: Reply, request: Message, now_ms: int) -> Reply | None:
        return self.pipeline.outgoing(reply, request, now_ms)

    def handle(
        self,
        message: Message | Malformed,
        session: SessionRecord | None,
        ctx: RequestContext,
        now_ms: int,
    ) -> Action:
        """Validate ``message`` and decide what to do with it."""
        if isinstance(message, Malformed):
            spec = errors.FIELD_ERRORS.get(message.field or "", errors.MESSAGE_INVALID)
            return self._fail(message.channel, message.id, spec.error())
        channel = message.channel
        if channel is UNSET:
            return self._fail(None, message.id, errors.CHANNEL_MISSING.error())
        if message.id is not UNSET and self.settings.validate_ids and not _valid_id(message.id):
            return self._fail(channel, None, errors.MESSAGE_ID_INVALID.error())
        handler = self._handlers.get(channel)
        if handler is not None:
            return handler(message, session, ctx, now_ms)
        return self.publish(message, session, ctx, now_ms)

    def error_reply(self, message: Message, error: errors.BayeuxError) -> Reply:
        """The reply for ``message`` when the shell (policy, engine) refuses it."""
        channel = message.channel if isinstance(message.channel, str) else None
        advice = error.advice
        if (
            advice is None
            and error.spec is errors.SESSION_UNKNOWN
            and channel
            in (
                HANDSHAKE,
                CONNECT,
            )
        ):
            advice = RECONNECT_HANDSHAKE
        reply = Reply(
            channel=channel if channel is not None else UNSET,
            id=message.id,
            successful=False,
            error=error.wire,
            advice=advice if advice is not None else UNSET,
        )
        if channel in (SUBSCRIBE, UNSUBSCRIBE) and message.subscription is not UNSET:
            reply = msgspec.structs.replace(reply, subscription=message.subscription)
        return reply

    def deny_handshake(self, message: Message, advice: Advice | None = None) -> Reply:
        """``403::handshake_denied``, ``reconnect: none`` unless the policy advised otherwise."""
        return self.error_reply(
            message, errors.HANDSHAKE_DENIED.error(advice=advice or RECONNECT_NONE)
        )

    # -- meta handlers ----------------------------------------------------------------------

    def handshake(
        self, message: Message, session: SessionRecord | None, ctx: RequestContext, now_ms: int
    ) -> Action:
        """``/meta/handshake`` (Bayeux §4.1).

        MUST: ``channel``, ``version``, ``supportedConnectionTypes``; MAY: ``minimumVersion``,
        ``ext``, ``id``.  Like CometD we do not reject a missing version.  A client whose
        connection types share none with ours gets ``301::connection_types_unsupported`` and
        ``reconnect: none``.  The reply MUST carry ``clientId``, ``version``,
        ``supportedConnectionTypes`` and ``successful``; we always add full advice.
        """
        offered = message.supported_connection_types
        types = self.settings.connection_types
        if offered is not UNSET and not set(offered) & set(types):
            return Respond(
                reply=self.error_reply(
                    message,
                    errors.CONNECTION_TYPES_UNSUPPORTED.error(
                        ",".join(offered), advice=RECONNECT_NONE
                    ),
                )
            )
        client_id = self._new_id()
        ack = self.settings.ack_extension and wants_ack(message)
        record = SessionRecord(
            client_id=client_id,
            browser_id=ctx.browser_id,
            created_ms=now_ms,
            ack=ack,
            transport=ctx.transport,
        )
        reply = Reply(
            channel=HANDSHAKE,
            id=message.id,
            successful=True,
            client_id=client_id,
            version="1.0",
            minimum_version="1.0",
            supported_connection_types=list(types),
            advice=self.handshake_advice,
        )
        return Handshake(reply=reply, session=record)

    def connect(
        self, message: Message, session: SessionRecord | None, ctx: RequestContext, now_ms: int
    ) -> Action:
        """``/meta/connect`` (Bayeux §4.2).

        MUST: ``clientId``, ``connectionType``.  The connect is answered at once when it is the
        session's first, when it shares its request with other messages, or when the client's
        advice asks for ``timeout: 0``; otherwise it is held up to the advised timeout (client
        advice, capped, wins for this request only).  The reply always carries full advice, as
        the seed payloads show.
        """
        failure = self._check_session(message, session, ctx)
        if failure is not None:
            return failure
        assert session is not None
        timeout = self.settings.timeout_ms
        client_advice = message.advice
        if client_advice:
            wanted = client_advice.get("timeout")
            if isinstance(wanted, int) and not isinstance(wanted, bool) and wanted >= 0:
                timeout = min(wanted, self.settings.max_client_timeout_ms)
        immediate = not session.connected or ctx.batch_size > 1 or timeout == 0
        ack: int | None = None
        if session.ack and message.ext:
            value = message.ext.get("ack")
            if isinstance(value, int) and not isinstance(value, bool):
                ack = value
        if not session.connected or session.transport != ctx.transport:
            session = msgspec.structs.replace(session, connected=True, transport=ctx.transport)
        reply = Reply(channel=CONNECT, id=message.id, successful=True, advice=self.handshake_advice)
        return Connect(reply=reply, session=session, hold_ms=0 if immediate else timeout, ack=ack)

    def multiple_clients_reply(self, reply: Reply) -> Reply:
        """A connect answered at once because the browser already holds its allowed polls."""
        interval = self.settings.multi_session_interval_ms
        if interval > 0:
            advice = Advice(
                reconnect="retry",
                interval=interval,
                timeout=self.settings.timeout_ms,
                multiple_clients=True,
            )
            return msgspec.structs.replace(reply, advice=advice)
        return msgspec.structs.replace(
            reply,
            successful=False,
            error=errors.MULTIPLE_CLIENTS.error().wire,
            advice=Advice(reconnect="none", multiple_clients=True),
        )

    def closed_reply(self, reply: Reply) -> Reply:
        """A held connect released because the session was disconnected."""
        return msgspec.structs.replace(reply, advice=RECONNECT_NONE)

    def subscribe(
        self, message: Message, session: SessionRecord | None, ctx: RequestContext, now_ms: int
    ) -> Action:
        """``/meta/subscribe`` (Bayeux §4.4).

        MUST: ``clientId``, ``subscription`` (a name or pattern, or an array of them).  The
        reply echoes ``subscription`` exactly as received.  ``/meta/**`` is refused;
        ``/service/**`` succeeds without being recorded (CometD).
        """
        checked = self._subscription(message, session, ctx)
        if not isinstance(checked, tuple):
            return checked
        record, names = checked
        for name in names:
            if channel_kind(name) is ChannelKind.META:
                return self._fail(
                    SUBSCRIBE,
                    message.id,
                    errors.SUBSCRIBE_DENIED.error(errors.DENIED_BY_POLICY),
                    message.subscription,
                )
        kept = tuple(n for n in names if channel_kind(n) is ChannelKind.BROADCAST)
        return Subscribe(reply=self._ok(message), session=record, channels=kept)

    def unsubscribe(
        self, message: Message, session: SessionRecord | None, ctx: RequestContext, now_ms: int
    ) -> Action:
        """``/meta/unsubscribe`` (Bayeux §4.5): same fields and echo as subscribe.

        Unsubscribing from a channel the session is not subscribed to still succeeds.
        """
        checked = self._subscription(message, session, ctx)
        if not isinstance(checked, tuple):
            return checked
        record, names = checked
        kept = tuple(n for n in names if channel_kind(n) is ChannelKind.BROADCAST)
        return Unsubscribe(reply=self._ok(message), session=record, channels=kept)

    def disconnect(
        self, message: Message, session: SessionRecord | None, ctx: RequestContext, now_ms: int
    ) -> Action:
        """``/meta/disconnect`` (Bayeux §4.3).  MUST: ``clientId``.  Ends the session."""
        failure = self._check_session(message, session, ctx)
        if failure is not None:
            return failure
        assert session is not None
        return Disconnect(reply=self._ok(message), session=session)

    def publish(
        self, message: Message, session: SessionRecord | None, ctx: RequestContext, now_ms: int
    ) -> Action:
        """Publish (Bayeux §5.1).  MUST: ``channel``, ``data``; MAY: ``clientId``, ``id``.

        Publishing needs a session.  Wildcards cannot be published to (``405``); ``/meta/**``
        is refused (``403:…:channel_create_denied``); ``/service/**`` goes to server-side
        handlers only.  The acknowledgement carries no ``data``.
        """
        channel = message.channel
        assert isinstance(channel, str)
        info = classify(channel)
        if info is None:
            return self._fail(channel, message.id, errors.CHANNEL_INVALID.error())
        name, kind, wildcard = info
        if kind is _META:
            return self._fail(
                channel, message.id, errors.CHANNEL_CREATE_DENIED.error(errors.DENIED_BY_POLICY)
            )
        if wildcard:
            return self._fail(channel, message.id, errors.CHANNEL_INVALID.error())
        failure = self._check_session(message, session, ctx)
        if failure is not None:
            return failure
        assert session is not None
        if message.data is UNSET:
            return self._fail(channel, message.id, errors.DATA_MISSING.error())
        return Publish(
            reply=self._ok(message),
            session=session,
            channel=name,
            data=message.data,
            service=kind is _SERVICE,
        )

    # -- helpers ----------------------------------------------------------------------------

    def _ok(self, message: Message) -> Reply:
        assert isinstance(message.channel, str)
        return Reply(
            channel=message.channel,
            id=message.id,
            successful=True,
            subscription=message.subscription,
        )

    def _fail(
        self,
        channel: str | None,
        ident: MessageId | Any | None,
        error: errors.BayeuxError,
        subscription: Any = UNSET,
    ) -> Respond:
        request = Message(
            channel=channel if channel is not None else UNSET,
            id=ident if ident is not None else UNSET,
            subscription=subscription,
        )
        return Respond(reply=self.error_reply(request, error))

    def _check_session(
        self, message: Message, session: SessionRecord | None, ctx: RequestContext
    ) -> Respond | None:
        if session is None or session.client_id != message.client_id:
            return Respond(reply=self.error_reply(message, errors.SESSION_UNKNOWN.error()))
        if (
            ctx.http
            and not self.settings.trust_client_session
            and (session.browser_id is None or session.browser_id != ctx.browser_id)
        ):
            return Respond(reply=self.error_reply(message, errors.SESSION_UNKNOWN.error()))
        return None

    def _subscription(
        self, message: Message, session: SessionRecord | None, ctx: RequestContext
    ) -> tuple[SessionRecord, list[str]] | Respond:
        failure = self._check_session(message, session, ctx)
        if failure is not None:
            return failure
        assert session is not None
        raw = message.subscription
        if raw is UNSET:
            return Respond(reply=self.error_reply(message, errors.SUBSCRIPTION_MISSING.error()))
        items = [raw] if isinstance(raw, str) else raw
        names = [normalize(item) for item in items]
        if not names or any(name is None for name in names):
            return Respond(reply=self.error_reply(message, errors.SUBSCRIPTION_INVALID.error()))
        return session, [name for name in names if name is not None]
