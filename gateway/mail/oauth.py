"""XOAUTH2 bearer tokens for IMAP and SMTP, from a URL or a command, refreshed before expiry.

The token comes from whatever the operator already runs to get one (UCS points its mail
sources at ``http://127.0.0.1:8080/api/v1.0/auth/token/2``; a script around ``msal`` or
``oauth2l`` does as well).  The answer is either the bare token or JSON with ``access_token``
and ``expires_in`` (seconds) or ``expires_at`` (epoch seconds).  A token is reused until
:data:`REFRESH_MARGIN_S` before it expires; without an expiry it is kept for
:data:`DEFAULT_LIFETIME_S`.  A failed login calls :meth:`TokenSource.invalidate`, so the next
connection asks again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import aiohttp

__all__ = ["TokenError", "TokenSource", "xoauth2_string"]

REFRESH_MARGIN_S = 300.0
DEFAULT_LIFETIME_S = 3000.0


class TokenError(Exception):
    """No token could be had (the message never contains a token)."""


def xoauth2_string(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response before base64 (domain.md §4.7)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


class TokenSource:
    def __init__(
        self,
        *,
        url: str = "",
        command: str = "",
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if bool(url) == bool(command):
            raise ValueError("give exactly one of url and command")
        self.url = url
        self.command = command
        self.timeout_s = timeout_s
        self.clock = clock
        self._token = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token and self.clock() < self._expires - REFRESH_MARGIN_S:
                return self._token
            text = await (self._from_url() if self.url else self._from_command())
            self._token, lifetime = _parse(text, self.clock())
            self._expires = self.clock() + lifetime
            return self._token

    def invalidate(self) -> None:
        self._token = ""

    async def _from_url(self) -> str:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.url) as response,
            ):
                body = await response.text()
                if response.status != 200:
                    raise TokenError(f"token URL answered HTTP {response.status}")
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TokenError(f"token URL failed: {type(exc).__name__}") from None

    async def _from_command(self) -> str:
        proc = await asyncio.create_subprocess_shell(
            self.command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TokenError("token command timed out") from None
        if proc.returncode != 0:
            raise TokenError(f"token command exited with status {proc.returncode}")
        return out.decode("utf-8", "replace")


def _parse(text: str, now: float) -> tuple[str, float]:
    """(token, lifetime in seconds) from a bare token or a JSON answer."""
    text = text.strip()
    lifetime = DEFAULT_LIFETIME_S
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise TokenError("token answer is not valid JSON") from None
        token = data.get("access_token") or data.get("token") or ""
        if isinstance(data.get("expires_in"), int | float):
            lifetime = float(data["expires_in"])
        elif isinstance(data.get("expires_at"), int | float):
            lifetime = float(data["expires_at"]) - now
    else:
        token = text
    if not isinstance(token, str) or not token or any(c.isspace() for c in token):
        raise TokenError("token answer holds no token")
    return token, lifetime
