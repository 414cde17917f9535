"""REST sessions of logged-in agents: the session cookie, its CSRF token, idle expiry.

``GET /api/v2/me`` with HTTP Basic creates a session; the cookie (``agents.session_cookie``,
``JSESSIONID`` as GWS names it) carries its id, and every POST/PUT/DELETE must send the
session's token in ``X-CSRF-TOKEN``.  The same id works as ``ext.token`` in a CometD
handshake, for clients that cannot share cookies between REST and CometD.  A session ends after
``agents.session_idle_timeout_s`` with neither a request nor a live CometD session, or at once
when the agent logs out.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ApiSession", "Sessions"]


@dataclass(slots=True)
class ApiSession:
    id: str  # the secret: the cookie value, also accepted as a handshake's ext.token
    username: str
    csrf_token: str
    last_seen_ms: int
    login_id: str  # names this login where the id must not appear (CometD session records)

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf_token)


class Sessions:
    def __init__(self, idle_timeout_ms: int) -> None:
        self.idle_timeout_ms = idle_timeout_ms
        self._by_id: dict[str, ApiSession] = {}

    def create(self, username: str, now_ms: int) -> ApiSession:
        session = ApiSession(
            id=secrets.token_urlsafe(32),
            username=username,
            csrf_token=secrets.token_urlsafe(24),
            last_seen_ms=now_ms,
            login_id=secrets.token_hex(8),
        )
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None, now_ms: int) -> ApiSession | None:
        """The live session with this id, marked as used now."""
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        if now_ms - session.last_seen_ms > self.idle_timeout_ms:
            return None  # expired: the sweep ends it
        session.last_seen_ms = now_ms
        return session

    def drop(self, session_id: str) -> ApiSession | None:
        return self._by_id.pop(session_id, None)

    def of_user(self, username: str) -> list[ApiSession]:
        return [s for s in self._by_id.values() if s.username == username]

    def expire(self, now_ms: int, alive: Callable[[str], bool]) -> list[ApiSession]:
        """Remove and return idle sessions; a user with a live CometD session is not idle."""
        ended = []
        for session in list(self._by_id.values()):
            if alive(session.username):
                session.last_seen_ms = now_ms
            elif now_ms - session.last_seen_ms > self.idle_timeout_ms:
                ended.append(self._by_id.pop(session.id))
        return ended
