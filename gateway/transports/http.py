"""Long-polling (POST) and callback-polling (JSONP over GET) — Bayeux §3.3, §3.4.

Bodies: ``application/json`` is JSON (one message or an array).  Anything else is read as a
form with one or more ``message=`` fields (what faye's cross-origin transport sends as
``text/plain``, and the spec's ``application/x-www-form-urlencoded``); failing that, as JSON.

Responses are HTTP 200 with a JSON array and ``Cache-Control: no-cache, no-store``.  Bad bodies
(not JSON, ``[]``, too many messages) get HTTP 400, a body over the limit 413, a disallowed
origin 403, each with a JSON body ``{"error": ..., "detail": ...}`` and no side effect.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from urllib.parse import parse_qs

from aiohttp import web

from gateway.hub import Hub
from gateway.security import Peer
from gateway.transports.common import (
    JSON_HEADERS,
    TransportOptions,
    error_response,
    origin_allowed,
    read_body,
)
from protocol import DecodeError, Malformed, Message, RequestContext, decode_batch, join_batch

__all__ = ["handle_jsonp", "handle_post"]

_CALLBACK_RE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*$")
_MAX_CALLBACK = 64
JSONP_HEADERS = {
    "Content-Type": "text/javascript;charset=UTF-8",
    "Cache-Control": "no-cache, no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Disposition": "attachment; filename=f.txt",
}


def decode_form(values: Sequence[str], max_messages: int) -> list[Message | Malformed]:
    """Every ``message=`` value is one message or an array; keep them in order."""
    batch: list[Message | Malformed] = []
    for value in values:
        batch.extend(decode_batch(value, max_messages=max_messages))
        if len(batch) > max_messages:
            raise DecodeError(f"more than {max_messages} messages in one request")
    if not batch:
        raise DecodeError("no message in the request")
    return batch


def _decode_body(body: bytes, content_type: str, max_messages: int) -> list[Message | Malformed]:
    if content_type != "application/json":
        stripped = body.lstrip()
        if stripped.startswith(b"message="):
            try:
                text = stripped.decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError("form body is not UTF-8") from None
            return decode_form(
                parse_qs(text, keep_blank_values=True).get("message", []), max_messages
            )
    return decode_batch(body, max_messages=max_messages)


def _has_handshake(batch: Sequence[Message | Malformed]) -> bool:
    return any(isinstance(m, Message) and m.channel == "/meta/handshake" for m in batch)


def _peer(request: web.Request, transport: str) -> Peer:
    return Peer(
        transport=transport, remote=request.remote, headers=request.headers, cookies=request.cookies
    )


async def _respond(
    request: web.Request,
    hub: Hub,
    options: TransportOptions,
    batch: list[Message | Malformed],
    transport: str,
) -> tuple[int, bytes, str | None]:
    browser = request.cookies.get(options.cookie.name)
    new_browser = None
    if browser is None and _has_handshake(batch):
        browser = new_browser = secrets.token_hex(16)
    ctx = RequestContext(transport=transport, browser_id=browser, batch_size=len(batch))
    outcome = await hub.process(batch, ctx, _peer(request, transport))
    return outcome.status, join_batch(outcome.parts), new_browser


def _set_cookie(response: web.StreamResponse, options: TransportOptions, value: str) -> None:
    cookie = options.cookie
    response.set_cookie(
        cookie.name,
        value,
        path="/",
        httponly=cookie.http_only,
        secure=cookie.secure or None,
        samesite=cookie.same_site or None,
        domain=cookie.domain or None,
        max_age=cookie.max_age_s,
    )


async def handle_post(request: web.Request, hub: Hub, options: TransportOptions) -> web.Response:
    if not origin_allowed(request, options):
        return error_response(403, "origin_forbidden", "this Origin is not allowed")
    body = await read_body(request, options.max_body_bytes)
    if body is None:
        return error_response(
            413, "body_too_large", f"request body exceeds {options.max_body_bytes} bytes"
        )
    try:
        batch = _decode_body(body, request.content_type, options.max_batch)
    except DecodeError as exc:
        return error_response(400, "invalid_bayeux_request", str(exc))
    status, payload, new_browser = await _respond(request, hub, options, batch, "long-polling")
    if status != 200:
        return error_response(
            status, "connect_replaced", "a newer /meta/connect of this session replaced this one"
        )
    response = web.Response(body=payload, headers=JSON_HEADERS)
    if new_browser is not None:
        _set_cookie(response, options, new_browser)
    return response


async def handle_jsonp(request: web.Request, hub: Hub, options: TransportOptions) -> web.Response:
    query = request.query
    names = query.getall("jsonp", []) or query.getall("jsonpcallback", [])
    if len(names) != 1:
        return error_response(
            400, "unknown_transport", "GET needs a websocket upgrade or exactly one jsonp= callback"
        )
    callback = names[0]
    if len(callback) > _MAX_CALLBACK or not _CALLBACK_RE.match(callback):
        return error_response(
            400, "invalid_callback", "the jsonp callback must be a JavaScript identifier path"
        )
    if not origin_allowed(request, options):
        return error_response(403, "origin_forbidden", "this Origin is not allowed")
    try:
        batch = decode_form(query.getall("message", []), options.max_batch)
    except DecodeError as exc:
        return error_response(400, "invalid_bayeux_request", str(exc))
    status, payload, new_browser = await _respond(request, hub, options, batch, "callback-polling")
    if status != 200:
        return error_response(
            status, "connect_replaced", "a newer /meta/connect of this session replaced this one"
        )
    # U+2028/U+2029 are valid in JSON but end a line in older JavaScript.
    payload = payload.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")
    script = b"/**/" + callback.encode() + b"(" + payload + b");"
    response = web.Response(body=script, headers=JSONP_HEADERS)
    if new_browser is not None:
        _set_cookie(response, options, new_browser)
    return response
