"""The security policy: who may handshake, subscribe and publish.

The default policy grants everything the protocol allows (``/meta/**`` is refused by the
protocol itself).  Later work binds sessions to logged-in agents by overriding these hooks: a
granted handshake can name the session's ``user``, and ``can_subscribe`` / ``can_publish``
can keep clients out of ``/v2/me/**``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from protocol import Advice, Message, SessionRecord

__all__ = ["AllowAll", "Grant", "Peer", "SecurityPolicy"]


class Peer(msgspec.Struct, frozen=True, kw_only=True):
    """What the transport knows about the requester (never logged as a whole).

    Look ``headers`` up by lower-case name (aiohttp's are case-insensitive, the fast path's
    are stored lower-case).
    """

    transport: str
    remote: str | None = None
    headers: Mapping[str, str] = msgspec.field(default_factory=dict)
    cookies: Mapping[str, str] = msgspec.field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """A handshake decision.  ``user`` and ``login`` (which of the user's logins granted it,
    so that ending that login can end its sessions) are attached to the session."""

    allowed: bool
    user: str | None = None
    login: str | None = None
    advice: Advice | None = None
    ext: Mapping[str, object] | None = None


class SecurityPolicy:
    """Override any hook; each may be async because real checks do IO."""

    async def can_handshake(self, message: Message, peer: Peer) -> Grant:
        return Grant(allowed=True)

    async def can_subscribe(self, session: SessionRecord, channel: str, message: Message) -> bool:
        return True

    async def can_publish(self, session: SessionRecord, channel: str, message: Message) -> bool:
        return True


class AllowAll(SecurityPolicy):
    """The default."""
