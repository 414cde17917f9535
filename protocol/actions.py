"""What the pure core asks the IO shell to do for one message.

Each action carries the reply to send once the shell has carried out its effect.  The shell may
still turn an action into an error reply (a security policy that denies, an engine failure),
using the same error table (:mod:`protocol.errors`).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestContext:
    """Where a message came from."""

    transport: str  # "long-polling" | "callback-polling" | "websocket"
    browser_id: str | None = None
    batch_size: int = 1

    @property
    def http(self) -> bool:
        return self.transport != "websocket"


@dataclass(frozen=True, slots=True, kw_only=True)
class Respond:
    """Answer with ``reply``; nothing else to do (errors, and no-op successes)."""

    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class Handshake:
    """Create ``session`` (after the security policy agrees), then answer ``reply``."""

    reply: Reply
    session: SessionRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    """Hold the connect up to ``hold_ms`` (0: answer at once) and answer ``reply``."""

    reply: Reply
    session: SessionRecord
    hold_ms: int
    ack: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe:
    """Record ``channels`` for the session (``/service/**`` ones are already left out)."""

    reply: Reply
    session: SessionRecord
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe:
    reply: Reply
    session: SessionRecord
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnect:
    reply: Reply
    session: SessionRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    """Deliver ``data`` on ``channel``: to subscribers, or to service handlers if ``service``."""

    reply: Reply
    session: SessionRecord
    channel: str
    data: Raw
    service: bool


Action = Respond | Handshake | Connect | Subscribe | Unsubscribe | Disconnect | Publish
