"""What every transport shares: limits, origin checks, error bodies."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from aiohttp import web

from gateway.config import CookieConfig

__all__ = [
    "JSON_HEADERS",
    "Answer",
    "TransportOptions",
    "answer_headers",
    "cors_headers",
    "error_body",
    "error_response",
    "origin_allowed",
    "read_body",
    "request_origin_allowed",
    "set_cookie_value",
]

JSON_HEADERS = {
    "Content-Type": "application/json;charset=UTF-8",
    "Cache-Control": "no-cache, no-store",
}


class Answer(msgspec.Struct, frozen=True):
    """An HTTP answer to a Bayeux request: status, JSON body, and maybe a new browser cookie."""

    status: int
    body: bytes
    set_cookie: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportOptions:
    max_body_bytes: int
    max_batch: int
    cookie: CookieConfig
    allow_origins: frozenset[str]
    allow_headers: tuple[str, ...] = ()
    preflight_max_age_s: int = 0
    ws_high_water_bytes: int = 64 * 1024

    @property
    def any_origin(self) -> bool:
        return "*" in self.allow_origins


def cors_headers(origin: str | None, options: TransportOptions) -> list[tuple[str, str]]:
    """What a Bayeux answer adds for a cross-origin request from an allowed origin."""
    if origin is None or not (options.any_origin or origin in options.allow_origins):
        return []
    return [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Credentials", "true"),
        ("Vary", "Origin"),
    ]


def answer_headers(
    answer: Answer, origin: str | None, options: TransportOptions
) -> list[tuple[str, str]]:
    """The headers of a Bayeux HTTP answer, on both HTTP paths (the server adds the framing)."""
    headers = [
        ("Content-Type", "application/json;charset=UTF-8"),
        ("Cache-Control", "no-cache, no-store"),
    ]
    if answer.set_cookie is not None:
        headers.append(("Set-Cookie", answer.set_cookie))
    headers.extend(cors_headers(origin, options))
    return headers


def error_response(status: int, error: str, detail: str) -> web.Response:
    return web.Response(status=status, body=error_body(error, detail), headers=JSON_HEADERS)


def origin_allowed(origin: str | None, host: str | None, options: TransportOptions) -> bool:
    """Cross-site requests (and websocket upgrades) only from configured origins.

    No ``Origin`` header (non-browser clients) and same-origin requests are always allowed.
    """
    if origin is None or options.any_origin or origin in options.allow_origins:
        return True
    return host is not None and origin in (f"http://{host}", f"https://{host}")


def request_origin_allowed(request: web.Request, options: TransportOptions) -> bool:
    return origin_allowed(request.headers.get("Origin"), request.headers.get("Host"), options)


def error_body(error: str, detail: str) -> bytes:
    return msgspec.json.encode({"error": error, "detail": detail})


def set_cookie_value(cookie: CookieConfig, value: str) -> str:
    """The ``Set-Cookie`` header for the browser cookie (``Path=/``, ``HttpOnly`` ...)."""
    parts = [f"{cookie.name}={value}", "Path=/"]
    if cookie.http_only:
        parts.append("HttpOnly")
    if cookie.secure:
        parts.append("Secure")
    if cookie.same_site:
        parts.append(f"SameSite={cookie.same_site}")
    if cookie.domain:
        parts.append(f"Domain={cookie.domain}")
    if cookie.max_age_s is not None:
        parts.append(f"Max-Age={cookie.max_age_s}")
    return "; ".join(parts)


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or ``None`` if it is larger than ``limit`` (nothing is processed then)."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
