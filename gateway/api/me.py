"""The agent's REST API (GWS ``/api/v2/me``): login, contact-center session, channels, work.

* ``GET /api/v2/me`` with HTTP Basic logs in: a session cookie, the user object, and the CSRF
  token in ``X-CSRF-HEADER`` / ``X-CSRF-TOKEN``.  With ``?subresources=*`` the user object also
  carries ``channels`` and ``interactions``, everything a desktop needs to resync.
* ``POST /api/v2/me`` ``StartContactCenterSession`` / ``EndContactCenterSession``.
* ``POST /api/v2/me`` ``LogOut``, or ``DELETE /api/v2/me``: the login ends at once.  Its cookie
  and ``ext.token`` stop working (401, status 20; a handshake gets ``403::handshake_denied``),
  the CometD sessions it granted end (their next connect gets ``402::session_unknown``), and
  when it was the agent's last login the contact-center session ends as
  ``EndContactCenterSession`` does (invitations are revoked).
* ``POST /api/v2/me/channels/{email|chat}`` ``Ready`` / ``NotReady`` (``reason`` optional).
* ``GET /api/v2/me/interactions`` (``?fields=*`` for whole objects) and
  ``POST /api/v2/me/interactions/{id}`` with an ``operationName``.

Every POST and DELETE needs the session's CSRF token.  Operations answer ``{"statusCode": 0,
"referenceId": n}``; their result arrives on ``/v2/me/*`` carrying the same ``referenceId``.
Refusals use GWS status codes and change nothing.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import structlog
from aiohttp import web

from gateway.agents.sessions import ApiSession
from gateway.api.common import gws, ok, read_object, refused, text_param
from gateway.api.context import API, ApiContext
from gateway.interactions.model import GwsError, Status
from gateway.interactions.wire import channel_list, resource
from gateway.logs import pseudonym

__all__ = ["add_routes", "agent_session"]

log = structlog.get_logger("gateway.api.me")

CSRF_HEADER = "X-CSRF-TOKEN"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v2/me", gws(get_me))
    app.router.add_post("/api/v2/me", gws(post_me))
    app.router.add_delete("/api/v2/me", gws(delete_me))
    app.router.add_get("/api/v2/me/channels", gws(get_channels))
    app.router.add_post("/api/v2/me/channels/{channel}", gws(post_channel))
    app.router.add_get("/api/v2/me/interactions", gws(get_interactions))
    app.router.add_get("/api/v2/me/interactions/{id}", gws(get_interaction))
    app.router.add_post("/api/v2/me/interactions/{id}", gws(post_interaction))


def _basic(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8: all ValueErrors
        raise GwsError(Status.NOT_AUTHENTICATED, "malformed Basic credentials") from None
    if not sep:
        raise GwsError(Status.NOT_AUTHENTICATED, "malformed Basic credentials")
    return username, password


def agent_session(request: web.Request, *, csrf: bool) -> tuple[ApiContext, ApiSession]:
    ctx = request.app[API]
    session = ctx.sessions.get(request.cookies.get(ctx.cookie_name), ctx.clock_ms())
    if session is None:
        raise GwsError(Status.NOT_AUTHENTICATED, "not logged in: GET /api/v2/me with Basic auth")
    if csrf and not session.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise GwsError(Status.FORBIDDEN, "Missing or invalid Csrf token")
    return ctx, session


def _user_object(ctx: ApiContext, username: str) -> dict[str, Any]:
    user = ctx.directory.get(username)
    user_id = user.id if user is not None else username
    return {
        "id": user_id,
        "userName": username,
        "firstName": user.first_name if user is not None else "",
        "lastName": user.last_name if user is not None else "",
        "roles": list(user.roles) if user is not None else ["ROLE_AGENT"],
        "enabled": True,
        "changePasswordOnFirstLogin": False,
        "uri": f"/api/v2/users/{user_id}",
        "path": f"/users/{user_id}",
    }


async def get_me(request: web.Request) -> web.StreamResponse:
    ctx = request.app[API]
    credentials = _basic(request)
    headers: dict[str, str] = {}
    if credentials is not None:
        username, password = credentials
        loop = asyncio.get_running_loop()
        user = await loop.run_in_executor(None, ctx.directory.authenticate, username, password)
        if user is None:
            if ctx.directory.get(username) is not None:
                log.info("login_failed", agent=username)  # a real agent, a wrong password
            else:  # maybe a password typed into the user name field: never log the text
                log.info("login_failed", unknown_user=pseudonym(username))
            return refused(
                Status.NOT_AUTHENTICATED,
                "Access denied: wrong user name or password",
                **{"WWW-Authenticate": 'Basic realm="gateway"'},
            )
        ctx.register(user)
        session = ctx.sessions.create(user.username, ctx.clock_ms())
        log.info("login", agent=user.username)
        fresh = True
    else:
        found = ctx.sessions.get(request.cookies.get(ctx.cookie_name), ctx.clock_ms())
        if found is None:
            return refused(
                Status.NOT_AUTHENTICATED,
                "Access denied: log in with HTTP Basic",
                **{"WWW-Authenticate": 'Basic realm="gateway"'},
            )
        session, fresh = found, False
    headers["X-CSRF-HEADER"] = CSRF_HEADER
    headers[CSRF_HEADER] = session.csrf_token
    user_object = _user_object(ctx, session.username)
    if request.query.get("subresources"):
        view = ctx.service.center.agent_view(session.username)
        user_object["channels"] = channel_list(view)
        user_object["interactions"] = _interactions(ctx, session.username)
        user_object["settings"] = {"capacity": dict(view.capacity)}
    response = ok({"user": user_object}, **headers)
    if fresh:
        response.set_cookie(ctx.cookie_name, session.id, httponly=True, path="/", samesite="Lax")
    return response


async def post_me(request: web.Request) -> web.StreamResponse:
    ctx, session = agent_session(request, csrf=True)
    body = await read_object(request)
    operation = text_param(body, "operationName")
    if operation == "LogOut":
        return await _log_out(ctx, session)
    center, now = ctx.service.center, ctx.clock_ms()
    if operation == "StartContactCenterSession":
        channels = body.get("channels", [])
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise GwsError(Status.INVALID_INPUT, "channels must be a list of channel names")
        effects = center.start_session(session.username, channels, now)
    elif operation == "EndContactCenterSession":
        effects = center.end_session(session.username, now)
    else:
        raise GwsError(Status.INVALID_INPUT, f"unknown operation {operation!r}")
    await ctx.service.apply(effects)
    log.info("contact_center_session", agent=session.username, operation=operation)
    return ok({"referenceId": effects.reference_id})


async def delete_me(request: web.Request) -> web.StreamResponse:
    ctx, session = agent_session(request, csrf=True)
    return await _log_out(ctx, session)


async def _log_out(ctx: ApiContext, session: ApiSession) -> web.StreamResponse:
    await ctx.end_login(session)
    log.info("logout", agent=session.username)
    response = ok()
    response.del_cookie(ctx.cookie_name, path="/")
    return response


async def get_channels(request: web.Request) -> web.StreamResponse:
    ctx, session = agent_session(request, csrf=False)
    view = ctx.service.center.agent_view(session.username)
    return ok({"channels": channel_list(view)})


async def post_channel(request: web.Request) -> web.StreamResponse:
    ctx, session = agent_session(request, csrf=True)
    body = await read_object(request)
    operation = text_param(body, "operationName")
    if operation not in ("Ready", "NotReady"):
        raise GwsError(Status.INVALID_INPUT, f"unknown operation {operation!r}: Ready | NotReady")
    reason = text_param(body, "reason", required=False)
    effects = ctx.service.center.set_channel(
        session.username,
        request.match_info["channel"],
        operation == "Ready",
        reason,
        ctx.clock_ms(),
    )
    await ctx.service.apply(effects)
    return ok({"referenceId": effects.reference_id})


def _interactions(ctx: ApiContext, username: str) -> list[dict[str, Any]]:
    center = ctx.service.center
    return [resource(ix, center.queues.get(ix.queue)) for ix in center.interactions_of(username)]


async def get_interactions(request: web.Request) -> web.StreamResponse:
    ctx, session = agent_session(request, csrf=False)
    if request.query.get("fields"):
        return ok({"interactions": _interactions(ctx, session.username)})
    ids = [ix.id for ix in ctx.service.center.interactions_of(session.username)]
    return ok({"uris": [f"/api/v2/me/interactions/{i}" for i in ids]})


async def get_interaction(request: web.Request) -> web.StreamResponse:
    ctx, session = agent_session(request, csrf=False)
    ix = ctx.service.center.active.get(request.match_info["id"])
    if ix is None or ix.agent != session.username:
        raise GwsError(Status.NOT_FOUND, "no such interaction for this agent")
    return ok({"interaction": resource(ix, ctx.service.center.queues.get(ix.queue))})


async def post_interaction(request: web.Request) -> web.StreamResponse:
    ctx, session = agent_session(request, csrf=True)
    body = await read_object(request)
    operation = text_param(body, "operationName")
    assert operation is not None
    interaction_id = request.match_info["id"]
    effects = ctx.service.center.operate(
        session.username, interaction_id, operation, body, ctx.clock_ms()
    )
    await ctx.service.apply(effects)
    log.info(
        "operation",
        agent=session.username,
        interaction_id=interaction_id,
        operation=operation,
        reference_id=effects.reference_id,
    )
    answer: dict[str, object] = {"referenceId": effects.reference_id}
    if effects.created is not None:  # Reply / ReplyAll: the draft, without a second lookup
        answer["id"] = effects.created.id
        answer["uri"] = f"/api/v2/me/interactions/{effects.created.id}"
    return ok(answer)
