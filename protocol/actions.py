"""What the pure core asks the IO shell to do for one message.

Each action carries the reply to send once the shell has carried out its effect.  The shell may
still turn an action into an error reply (a security policy that denies, an engine failure),
using the same error table (:mod:`protocol.errors`).
"""

from __future__ import annotations

import msgspec

from protocol.messages import Raw, Reply
from protocol.session import SessionRecord

__all__ = [
    "Action",
    "Connect",
    "Disconnect",
    "Handshake",
    "Publish",
    "RequestContext",
    "Respond",
    "Subscribe",
    "Unsubscribe",
]


class RequestContext(msgspec.Struct, frozen=True, kw_only=True):
    """Where a message came from."""

    transport: str  # "long-polling" | "callback-polling" | "websocket"
    browser_id: str | None = None
    batch_size: int = 1

    @property
    def http(self) -> bool:
        return self.transport != "websocket"


class Respond(msgspec.Struct, frozen=True, kw_only=True):
    """Answer with ``reply``; nothing else to do (errors, and no-op successes)."""

    reply: Reply


class Handshake(msgspec.Struct, frozen=True, kw_only=True):
    """Create ``session`` (after the security policy agrees), then answer ``reply``."""

    reply: Reply
    session: SessionRecord


class Connect(msgspec.Struct, frozen=True, kw_only=True):
    """Hold the connect up to ``hold_ms`` (0: answer at once) and answer ``reply``."""

    reply: Reply
    session: SessionRecord
    hold_ms: int
    ack: int | None = None


class Subscribe(msgspec.Struct, frozen=True, kw_only=True):
    """Record ``channels`` for the session (``/service/**`` ones are already left out)."""

    reply: Reply
    session: SessionRecord
    channels: tuple[str, ...]


class Unsubscribe(msgspec.Struct, frozen=True, kw_only=True):
    reply: Reply
    session: SessionRecord
    channels: tuple[str, ...]


class Disconnect(msgspec.Struct, frozen=True, kw_only=True):
    reply: Reply
    session: SessionRecord


class Publish(msgspec.Struct, frozen=True, kw_only=True):
    """Deliver ``data`` on ``channel``: to subscribers, or to service handlers if ``service``."""

    reply: Reply
    session: SessionRecord
    channel: str
    data: Raw
    service: bool


Action = Respond | Handshake | Connect | Subscribe | Unsubscribe | Disconnect | Publish
