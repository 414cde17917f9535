"""Long-polling (POST) and callback-polling (JSONP over GET) — Bayeux §3.3, §3.4.

Bodies: ``application/json`` is JSON (one message or an array).  Anything else is read as a
form with one or more ``message=`` fields (what faye's cross-origin transport sends as
``text/plain``, and the spec's ``application/x-www-form-urlencoded``); failing that, as JSON.

Responses are HTTP 200 with a JSON array and ``Cache-Control: no-cache, no-store``.  Bad bodies
(not JSON, ``[]``, too many messages) get HTTP 400, a body over the limit 413, a disallowed
origin 403, each with a JSON body ``{"error": ..., "detail": ...}`` and no side effect.

:func:`long_polling` is the transport-neutral part, shared by the aiohttp handler below and by
the fast HTTP path (:mod:`gateway.bayeux.transports.fasthttp`, behind
:mod:`gateway.bayeux.transports.edge`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from urllib.parse import parse_qs

from aiohttp import web
from multidict import CIMultiDict

from gateway.bayeux.connects import Outcome, Responder
from gateway.bayeux.engines.base import EngineUnavailable
from gateway.bayeux.hub import Hub
from gateway.bayeux.security import Peer
from gateway.bayeux.transports.common import (
    Answer,
    TransportOptions,
    answer_headers,
    cors_headers,
    error_body,
    error_response,
    read_body,
    request_origin_allowed,
    set_cookie_value,
)
from protocol import DecodeError, Malformed, Message, RequestContext, decode_batch, join_batch

__all__ = [
    "Answer",
    "answer_from",
    "handle_jsonp",
    "handle_post",
    "handle_preflight",
    "long_polling",
]

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


def decode_body(body: bytes, content_type: str, max_messages: int) -> list[Message | Malformed]:
    if content_type != "application/json":
        stripped = body.lstrip()
        if stripped.startswith(b"message="):
            try:
                text = stripped.decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError("form body is not UTF-8") from None
            values = parse_qs(text, keep_blank_values=True).get("message", [])
            return decode_form(values, max_messages)
    return decode_batch(body, max_messages=max_messages)


def _has_handshake(batch: Sequence[Message | Malformed]) -> bool:
    return any(isinstance(m, Message) and m.channel == "/meta/handshake" for m in batch)


ENGINE_UNAVAILABLE = Answer(
    503, error_body("engine_unavailable", "sessions cannot be reached right now: retry shortly")
)


def answer_from(outcome: Outcome, set_cookie: str | None = None) -> Answer:
    if outcome.status == 503:
        return ENGINE_UNAVAILABLE
    if outcome.status != 200:
        detail = "a newer /meta/connect of this session replaced this one"
        return Answer(outcome.status, error_body("connect_replaced", detail))
    return Answer(200, join_batch(outcome.parts), set_cookie)


async def _run(
    hub: Hub,
    options: TransportOptions,
    batch: list[Message | Malformed],
    peer: Peer,
    responder: Responder | None = None,
) -> Answer | str:
    browser = peer.cookies.get(options.cookie.name)
    new_browser = None
    if browser is None and _has_handshake(batch):
        browser = new_browser = secrets.token_hex(16)
    ctx = RequestContext(transport=peer.transport, browser_id=browser, batch_size=len(batch))
    try:
        outcome = await hub.process(batch, ctx, peer, responder=responder)
    except EngineUnavailable:  # logged by the engine, once per outage
        return ENGINE_UNAVAILABLE
    if outcome.held is not None:
        return outcome.held
    cookie = set_cookie_value(options.cookie, new_browser) if new_browser else None
    return answer_from(outcome, cookie)


async def long_polling(
    hub: Hub,
    options: TransportOptions,
    body: bytes,
    content_type: str,
    peer: Peer,
    responder: Responder | None = None,
) -> Answer | str:
    """One long-polling POST, from its body to its answer.

    With a ``responder``, a held connect returns the id of its session at once and its answer
    goes to ``responder.respond()`` when the hold ends; without one it is awaited.
    """
    try:
        batch = decode_body(body, content_type, options.max_batch)
    except DecodeError as exc:
        return Answer(400, error_body("invalid_bayeux_request", str(exc)))
    return await _run(hub, options, batch, peer, responder)


def too_large(options: TransportOptions) -> Answer:
    detail = f"request body exceeds {options.max_body_bytes} bytes"
    return Answer(413, error_body("body_too_large", detail))


FORBIDDEN_ORIGIN = Answer(403, error_body("origin_forbidden", "this Origin is not allowed"))


def _peer(request: web.Request, transport: str) -> Peer:
    return Peer(
        transport=transport, remote=request.remote, headers=request.headers, cookies=request.cookies
    )


def _response(answer: Answer, request: web.Request, options: TransportOptions) -> web.Response:
    """The same headers as the fast path's (:func:`answer_headers`); aiohttp adds the framing."""
    headers = CIMultiDict(answer_headers(answer, request.headers.get("Origin"), options))
    return web.Response(status=answer.status, body=answer.body, headers=headers)


async def handle_post(request: web.Request, hub: Hub, options: TransportOptions) -> web.Response:
    if not request_origin_allowed(request, options):
        return _response(FORBIDDEN_ORIGIN, request, options)
    try:
        body = await read_body(request, options.max_body_bytes)
    except web.RequestPayloadError:  # the client's fault (a broken chunked body), not ours
        return error_response(400, "invalid_body", "the request body is malformed")
    if body is None:
        return _response(too_large(options), request, options)
    answer = await long_polling(
        hub, options, body, request.content_type, _peer(request, "long-polling")
    )
    assert isinstance(answer, Answer)  # no responder: a held connect was awaited
    return _response(answer, request, options)


async def handle_preflight(request: web.Request, options: TransportOptions) -> web.Response:
    """A CORS preflight for a Bayeux mount: allowed origins, POST/GET, the configured headers."""
    origin = request.headers.get("Origin")
    method = request.headers.get("Access-Control-Request-Method", "").upper()
    asked = [
        h.strip().lower()
        for h in request.headers.get("Access-Control-Request-Headers", "").split(",")
        if h.strip()
    ]
    allowed = {h.lower() for h in options.allow_headers}
    cors = cors_headers(origin, options)
    if not cors or method not in ("POST", "GET") or not set(asked) <= allowed:
        return error_response(403, "cors_forbidden", "this cross-origin request is not allowed")
    headers = CIMultiDict(cors)
    headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
    if asked:
        headers["Access-Control-Allow-Headers"] = ", ".join(asked)
    headers["Access-Control-Max-Age"] = str(options.preflight_max_age_s)
    return web.Response(status=200, headers=headers)


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
    if not request_origin_allowed(request, options):
        return _response(FORBIDDEN_ORIGIN, request, options)
    try:
        batch = decode_form(query.getall("message", []), options.max_batch)
    except DecodeError as exc:
        return error_response(400, "invalid_bayeux_request", str(exc))
    answer = await _run(hub, options, batch, _peer(request, "callback-polling"))
    assert isinstance(answer, Answer)  # no responder: a held connect was awaited
    if answer.status != 200:
        return _response(answer, request, options)
    # U+2028/U+2029 are valid in JSON but end a line in older JavaScript.
    payload = answer.body.replace("\u2028".encode(), b"\\u2028")
    payload = payload.replace("\u2029".encode(), b"\\u2029")
    script = b"/**/" + callback.encode() + b"(" + payload + b");"
    response = _response(Answer(200, script, answer.set_cookie), request, options)
    response.headers.update(JSONP_HEADERS)
    return response
