"""Mail over REST: attachments of an email interaction, and the mail side's status.

* ``GET /api/v2/me/interactions/{id}/attachments`` lists an agent's email's attachments
  (``index``, ``name``, ``size``, ``contentType``, ``uri``); ``.../attachments/{index}`` gives
  one, as it was sent.  Notifications carry only names and sizes (``userData``).
* ``GET /api/v2/interactions/{id}/attachments[/{index}]``: the same for partners, of the
  interactions they may see (:func:`gateway.api.partners.partner_interaction`).
* ``GET /api/v2/mail`` (partners): each source's connection, what was received (offered,
  auto-replies not offered, quarantined), duplicates skipped, and the outbox by status with
  the failed replies and why.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api.common import gws, ok
from gateway.api.me import agent_session
from gateway.api.partners import partner_interaction, partner_of
from gateway.interactions.model import GwsError, Interaction, Status
from gateway.mail import mime
from gateway.mail.runtime import MAIL

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    me = "/api/v2/me/interactions/{id}/attachments"
    partner = "/api/v2/interactions/{id}/attachments"
    app.router.add_get(me, gws(agent_list))
    app.router.add_get(me + "/{index}", gws(agent_one))
    app.router.add_get(partner, gws(partner_list))
    app.router.add_get(partner + "/{index}", gws(partner_one))
    app.router.add_get("/api/v2/mail", gws(status))


async def _agent_interaction(request: web.Request) -> Interaction:
    ctx, session = agent_session(request, csrf=False)
    ix = await ctx.service.get(request.match_info["id"])
    if ix is None or ix.agent != session.username:
        raise GwsError(Status.NOT_FOUND, "no such interaction for this agent")
    return ix


async def _partner_interaction(request: web.Request) -> Interaction:
    _, _, ix = await partner_interaction(request)
    return ix


def _raw(request: web.Request, ix: Interaction) -> bytes:
    store = request.app[MAIL].store
    inbound = store.inbound_of(ix.id) if store is not None else None
    if inbound is None:
        raise GwsError(Status.NOT_FOUND, "this interaction has no received email")
    return inbound.raw


def _listing(request: web.Request, ix: Interaction) -> web.Response:
    parsed = mime.parse(_raw(request, ix))
    base = request.path.rstrip("/")
    items: list[dict[str, Any]] = [
        {
            "index": a.index,
            "name": a.name,
            "size": a.size,
            "contentType": a.content_type,
            "uri": f"{base}/{a.index}",
        }
        for a in parsed.attachments
    ]
    return ok({"attachments": items})


def _one(request: web.Request, ix: Interaction) -> web.Response:
    try:
        index = int(request.match_info["index"])
        found, data = mime.attachment(_raw(request, ix), index)
    except (ValueError, LookupError):
        raise GwsError(Status.NOT_FOUND, "no such attachment") from None
    name = found.name.replace('"', "").replace("\\", "")
    return web.Response(
        body=data,
        content_type=found.content_type or "application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def agent_list(request: web.Request) -> web.StreamResponse:
    return _listing(request, await _agent_interaction(request))


async def agent_one(request: web.Request) -> web.StreamResponse:
    return _one(request, await _agent_interaction(request))


async def partner_list(request: web.Request) -> web.StreamResponse:
    return _listing(request, await _partner_interaction(request))


async def partner_one(request: web.Request) -> web.StreamResponse:
    return _one(request, await _partner_interaction(request))


async def status(request: web.Request) -> web.StreamResponse:
    partner_of(request)
    runtime = request.app[MAIL]
    if runtime.store is None:
        raise GwsError(Status.INTERNAL, "mail is not running")
    return ok({"mail": runtime.status()})
