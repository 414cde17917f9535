"""What every REST endpoint shares: GWS-shaped JSON answers and errors, body parsing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from aiohttp import web

from gateway.interactions.model import GwsError, Status

__all__ = ["Handler", "gws", "ok", "read_object", "refused"]

log = structlog.get_logger("gateway.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_encoder = msgspec.json.Encoder()
MAX_BODY = 1024 * 1024


def ok(body: dict[str, Any] | None = None, **headers: str) -> web.Response:
    payload = {"statusCode": Status.OK, **(body or {})}
    return web.Response(
        body=_encoder.encode(payload),
        content_type="application/json",
        headers={"Cache-Control": "no-store", **headers},
    )


def refused(status: int, message: str, **headers: str) -> web.Response:
    """A GWS error: ``{"statusCode": n, "statusMessage": "..."}`` with a matching HTTP status."""
    return web.Response(
        status=Status.HTTP.get(status, 400),
        body=_encoder.encode({"statusCode": status, "statusMessage": message}),
        content_type="application/json",
        headers={"Cache-Control": "no-store", **headers},
    )


def gws(handler: Handler) -> Handler:
    """Turn :class:`GwsError` into its JSON answer; never let an exception become a 500 page."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except GwsError as exc:
            return refused(exc.status, exc.message)
        except (web.HTTPException, ConnectionError):
            raise  # a client that hung up is no failure of ours: aiohttp's edge log counts it
        except Exception:
            log.exception("api_failed", path=request.path, method=request.method)
            return refused(Status.INTERNAL, "internal error")

    return wrapped


async def read_object(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body, or :class:`GwsError` 10 saying what is wrong."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise GwsError(Status.INVALID_INPUT, f"body over {MAX_BODY} bytes")
    try:
        raw = await request.content.read(MAX_BODY + 1)
    except web.RequestPayloadError:  # e.g. a chunked body that breaks off mid-chunk
        raise GwsError(Status.INVALID_INPUT, "the request body is malformed") from None
    if len(raw) > MAX_BODY:
        raise GwsError(Status.INVALID_INPUT, f"body over {MAX_BODY} bytes")
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise GwsError(Status.INVALID_INPUT, "body must be a JSON object") from None
    except RecursionError:  # msgspec's answer to deep nesting (about 1,000 levels)
        raise GwsError(Status.INVALID_INPUT, "body is nested too deeply") from None
    if not isinstance(body, dict):
        raise GwsError(Status.INVALID_INPUT, "body must be a JSON object")
    return body


def text_param(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise GwsError(Status.MISSING_PARAMETER, f"{name} is required")
        return None
    if not isinstance(value, str):
        raise GwsError(Status.INVALID_INPUT, f"{name} must be a string")
    return value
