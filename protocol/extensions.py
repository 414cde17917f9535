"""The extension pipeline (Bayeux §8; CometD ``BayeuxServer.Extension``; faye ``Extensible``).

Incoming messages pass through the extensions in order, outgoing replies in reverse order.  A
hook that returns ``None`` drops the message: an incoming one is answered with
``404::message_deleted``, an outgoing one is not sent.  Unknown ``ext`` keys are ignored and the
client's ``ext`` is never echoed.

Delivered events are encoded once for all subscribers and do not pass through per-session
hooks; the ``ack`` extension works on them through :class:`protocol.session.AckState`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeGuard

import msgspec

from protocol.messages import Message, Reply

__all__ = ["AckExtension", "Extension", "Pipeline", "TimesyncExtension", "wants_ack"]


class Extension:
    """Base class: override what you need.

    An extension that only looks at messages carrying ``ext`` sets ``only_with_ext``: the
    pipeline then skips it for the (many) messages without one.
    """

    only_with_ext = False

    def incoming(self, message: Message, now_ms: int) -> Message | None:
        return message

    def outgoing(self, reply: Reply, request: Message, now_ms: int) -> Reply | None:
        return reply


def _with_ext(reply: Reply, key: str, value: Any) -> Reply:
    ext = dict(reply.ext) if reply.ext else {}
    ext[key] = value
    return msgspec.structs.replace(reply, ext=ext)


def wants_ack(message: Message) -> bool:
    """The client asked for the ``ack`` extension in its handshake (``ext.ack: true``)."""
    return bool(message.ext) and message.ext.get("ack") is True  # type: ignore[union-attr]


class AckExtension(Extension):
    """Negotiation half of CometD's acknowledge extension.

    A handshake with ``ext.ack: true`` gets ``ext.ack: true`` back; connect replies then carry
    the batch number (added by the shell, which owns the queue).
    """

    only_with_ext = True

    def outgoing(self, reply: Reply, request: Message, now_ms: int) -> Reply | None:
        if reply.channel == "/meta/handshake" and reply.successful is True and wants_ack(request):
            return _with_ext(reply, "ack", True)
        return reply


def _finite(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class TimesyncExtension(Extension):
    """CometD's timesync: ``ext.timesync = {tc, l, o}`` in, ``{tc, ts, p, a}`` out.

    ``ts`` is the server time when the request arrived; ``p`` the processing time; ``a`` the
    client's accuracy estimate ``tc + o + l - ts``.  The reply stamp is sent when the client's
    lag is 0 (first samples) or its accuracy is off by more than ``accuracy_ms`` (CometD: 25).
    """

    only_with_ext = True

    def __init__(self, accuracy_ms: int = 25) -> None:
        self.accuracy_ms = accuracy_ms

    def incoming(self, message: Message, now_ms: int) -> Message | None:
        sync = message.ext.get("timesync") if message.ext else None
        if isinstance(sync, dict):
            # Stamp the arrival time on the request itself: the reply may come much later.
            ext = dict(message.ext)  # type: ignore[arg-type]
            ext["timesync"] = {**sync, "ts": now_ms}
            return msgspec.structs.replace(message, ext=ext)
        return message

    def outgoing(self, reply: Reply, request: Message, now_ms: int) -> Reply | None:
        sync = request.ext.get("timesync") if request.ext else None
        if not isinstance(sync, dict):
            return reply
        ts = sync.get("ts", now_ms)
        tc = sync.get("tc")
        if not _finite(tc):
            return reply
        stamp: dict[str, Any] = {"tc": tc, "ts": ts, "p": max(0, now_ms - ts)}
        lag, offset = sync.get("l"), sync.get("o")
        if _finite(lag) and _finite(offset):
            estimate = tc + offset + lag - ts
            if not math.isfinite(estimate):
                return reply
            accuracy = int(estimate)
            if lag != 0 and abs(accuracy) < self.accuracy_ms:
                return reply
            stamp["a"] = accuracy
        return _with_ext(reply, "timesync", stamp)


class Pipeline:
    """Extensions applied in order on the way in, in reverse order on the way out."""

    def __init__(self, extensions: Sequence[Extension] = ()) -> None:
        self._incoming = list(extensions)
        self._outgoing = list(reversed(extensions))
        # For messages without ``ext`` (nearly all of them): only these run.
        self._incoming_plain = [e for e in self._incoming if not e.only_with_ext]
        self._outgoing_plain = [e for e in self._outgoing if not e.only_with_ext]

    def incoming(self, message: Message, now_ms: int) -> Message | None:
        for extension in self._incoming if message.ext else self._incoming_plain:
            result = extension.incoming(message, now_ms)
            if result is None:
                return None
            message = result
        return message

    def outgoing(self, reply: Reply, request: Message, now_ms: int) -> Reply | None:
        for extension in self._outgoing if request.ext else self._outgoing_plain:
            result = extension.outgoing(reply, request, now_ms)
            if result is None:
                return None
            reply = result
        return reply
