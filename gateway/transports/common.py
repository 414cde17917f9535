"""What every transport shares: limits, origin checks, error bodies."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from aiohttp import web

from gateway.config import CookieConfig

__all__ = ["JSON_HEADERS", "TransportOptions", "error_response", "origin_allowed", "read_body"]

JSON_HEADERS = {
    "Content-Type": "application/json;charset=UTF-8",
    "Cache-Control": "no-cache, no-store",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportOptions:
    max_body_bytes: int
    max_batch: int
    cookie: CookieConfig
    allow_origins: frozenset[str]

    @property
    def any_origin(self) -> bool:
        return "*" in self.allow_origins


def error_response(status: int, error: str, detail: str) -> web.Response:
    body = msgspec.json.encode({"error": error, "detail": detail})
    return web.Response(status=status, body=body, headers=JSON_HEADERS)


def origin_allowed(request: web.Request, options: TransportOptions) -> bool:
    """Cross-site requests (and websocket upgrades) only from configured origins.

    No ``Origin`` header (non-browser clients) and same-origin requests are always allowed.
    """
    origin = request.headers.get("Origin")
    if origin is None or options.any_origin or origin in options.allow_origins:
        return True
    host = request.headers.get("Host")
    return host is not None and origin in (f"http://{host}", f"https://{host}")


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
