"""Who may use CometD: logged-in agents, and anonymous clients only where configured.

* A handshake is granted to a live REST session, found by ``ext.token`` or else by its cookie;
  the CometD session is bound to that agent (``SessionRecord.user``).
* A presented credential is always checked: an ``ext.token`` or a REST session cookie that names
  no live session (expired, logged out, made up) is refused with ``403::handshake_denied`` and
  advice ``reconnect: none``, even where anonymous sessions are allowed.  An agent desktop
  whose login ended learns it at once instead of continuing as an anonymous session that
  silently gets no ``/v2/me`` events.
* A handshake that presents no credential is refused the same way unless
  ``agents.allow_anonymous_bayeux`` is set (generic publish/subscribe, partners' own channels,
  protocol conformance testing).
* ``/v2/me/**`` means "this session's agent": only a bound session may subscribe there, and
  nobody may publish there (the gateway delivers those messages to each agent's own sessions).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.agents.sessions import Sessions
from gateway.bayeux.security import Grant, Peer, SecurityPolicy
from protocol import Advice, Message, SessionRecord

__all__ = ["AgentPolicy", "is_personal"]

PERSONAL_ROOT = "/v2/me"


def is_personal(channel: str) -> bool:
    """``/v2/me`` and everything under it, wildcards included (names arrive normalized)."""
    return channel.startswith(PERSONAL_ROOT) and (
        len(channel) == len(PERSONAL_ROOT) or channel[len(PERSONAL_ROOT)] == "/"
    )


_DENIED = Grant(allowed=False, advice=Advice(reconnect="none"))


def _now_ms() -> int:
    return int(time.time() * 1000)


class AgentPolicy(SecurityPolicy):
    def __init__(
        self,
        sessions: Sessions,
        cookie_name: str,
        *,
        allow_anonymous: bool,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.sessions = sessions
        self.cookie_name = cookie_name
        self.allow_anonymous = allow_anonymous
        self.clock_ms = clock_ms

    async def can_handshake(self, message: Message, peer: Peer) -> Grant:
        ext = message.ext if isinstance(message.ext, dict) else None
        presented: object = ext.get("token") if ext is not None else None
        if presented is None or presented == "":
            presented = peer.cookies.get(self.cookie_name) or None  # "": a cleared cookie
        if presented is None:
            return Grant(allowed=True) if self.allow_anonymous else _DENIED
        if not isinstance(presented, str):
            return _DENIED  # a token that is not a string names no session either
        session = self.sessions.get(presented, self.clock_ms())
        if session is None:
            return _DENIED
        return Grant(allowed=True, user=session.username, login=session.login_id)

    async def can_subscribe(self, session: SessionRecord, channel: str, message: Message) -> bool:
        return session.user is not None or not is_personal(channel)

    async def can_publish(self, session: SessionRecord, channel: str, message: Message) -> bool:
        return not is_personal(channel)
