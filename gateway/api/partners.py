"""The partners' REST API: create interactions, follow them, speak for a chat customer.

Every call needs ``Authorization: Bearer <partner token>`` (``gateway partners add``).

Partners are isolated from each other: an interaction records the partner that created it, and
only that partner sees and acts on it (``GET``, chat ``SendMessage`` / ``Leave``, attachments).
Any other partner gets the answer an unknown id gets (404, status 6), so it cannot even learn
that the interaction exists.  Partners named in ``partners.access_all`` (a supervisor's CRM)
see and act on every interaction, those that came in by mail included.

* ``POST /api/v2/interactions`` ``{"channel": "email"|"chat", "queue"?, "userData"?,
  "email"?: {"from", "fromPersonal", "to", "cc", "subject", "text", "messageId"},
  "nickname"?}`` creates an interaction in its queue (the first queue of its channel when
  none is named) and answers ``{"statusCode": 0, "id", "uri"}``.
* ``GET /api/v2/interactions/{id}`` gives its state, agent and chat transcript.
* ``POST /api/v2/interactions/{id}`` ``{"operationName": "SendMessage", "text"}`` posts a
  customer's chat message; ``{"operationName": "Leave"}`` (or ``EndChat``) ends the chat on the
  customer's side.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from gateway.agents.users import Partner
from gateway.api.common import gws, ok, read_object, text_param
from gateway.api.context import API, ApiContext
from gateway.interactions.machine import Kind
from gateway.interactions.model import EmailContent, GwsError, Interaction, Status
from gateway.interactions.wire import resource, transcript

__all__ = ["add_routes", "partner_interaction", "partner_of"]

log = structlog.get_logger("gateway.api.partners")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v2/interactions", gws(create))
    app.router.add_get("/api/v2/interactions/{id}", gws(get_one))
    app.router.add_post("/api/v2/interactions/{id}", gws(operate))


def partner_of(request: web.Request) -> tuple[ApiContext, Partner]:
    ctx = request.app[API]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    partner = ctx.directory.partner_for_token(token.strip()) if scheme.lower() == "bearer" else None
    if partner is None:
        raise GwsError(
            Status.NOT_AUTHENTICATED,
            "this partner token is not valid (unknown or revoked)"
            if scheme.lower() == "bearer" and token.strip()
            else "a partner token is required (Authorization: Bearer <token>)",
        )
    return ctx, partner


async def partner_interaction(request: web.Request) -> tuple[ApiContext, Partner, Interaction]:
    """The interaction of the URL, if this request's partner may see it; else 404 (status 6),
    the same as for an id that does not exist."""
    ctx, partner = partner_of(request)
    ix = await ctx.service.get(request.match_info["id"])
    if ix is None or not (ix.partner == partner.name or partner.name in ctx.partners.access_all):
        raise GwsError(Status.NOT_FOUND, "no such interaction")
    return ctx, partner, ix


def _addresses(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise GwsError(Status.INVALID_INPUT, f"email.{name} must be an address or a list of them")


def _email(body: dict[str, Any]) -> EmailContent:
    email = body.get("email", {})
    if not isinstance(email, dict):
        raise GwsError(Status.INVALID_INPUT, "email must be an object")
    fields: dict[str, str] = {}
    for key, name in (
        ("from", "from_address"),
        ("fromPersonal", "from_personal"),
        ("subject", "subject"),
        ("text", "text"),
        ("html", "html"),
        ("messageId", "message_id"),
    ):
        value = email.get(key, "")
        if not isinstance(value, str):
            raise GwsError(Status.INVALID_INPUT, f"email.{key} must be a string")
        fields[name] = value
    if not fields["from_address"]:
        raise GwsError(Status.MISSING_PARAMETER, "email.from is required")
    return EmailContent(
        subject=fields["subject"],
        text=fields["text"],
        html=fields["html"],
        from_address=fields["from_address"],
        from_personal=fields["from_personal"],
        message_id=fields["message_id"],
        to=_addresses(email.get("to"), "to"),
        cc=_addresses(email.get("cc"), "cc"),
    )


def _user_data(body: dict[str, Any], email: EmailContent | None) -> dict[str, Any]:
    data = body.get("userData", {})
    if not isinstance(data, dict):
        raise GwsError(Status.INVALID_INPUT, "userData must be an object")
    if email is None:
        return dict(data)
    defaults: dict[str, Any] = {
        "Origination_Source": "Email",
        "FromAddress": email.from_address,
        "FromPersonal": email.from_personal,
        "EmailAddress": email.from_address,
        "To": ", ".join(email.to),
        "Subject": email.subject,
        "_AutoReplyCount": 0,
        "_ContainsAttachment": "false",
        "_AttachmentFileNames": "",
        "_AttachmentsSize": "0",
    }
    return {**defaults, **data}


async def create(request: web.Request) -> web.StreamResponse:
    ctx, partner = partner_of(request)
    body = await read_object(request)
    channel = text_param(body, "channel")
    if channel not in ("email", "chat"):
        raise GwsError(Status.INVALID_INPUT, "channel must be email or chat")
    kind = Kind.CHAT if channel == "chat" else Kind.EMAIL
    center = ctx.service.center
    queue = text_param(body, "queue", required=False) or next(
        (q.name for q in center.queues.values() if q.channel == channel), None
    )
    if queue is None:
        raise GwsError(Status.NOT_FOUND, f"no queue for {channel}")
    email = _email(body) if kind is Kind.EMAIL else None
    nickname = text_param(body, "nickname", required=False) or "Customer"
    effects = center.create(
        kind=kind,
        queue=queue,
        now=ctx.clock_ms(),
        user_data=_user_data(body, email),
        email=email,
        customer_nickname=nickname,
        partner=partner.name,
    )
    await ctx.service.apply(effects)
    created = effects.created
    assert created is not None
    log.info("interaction_created", interaction_id=created.id, partner=partner.name, queue=queue)
    return ok({"id": created.id, "uri": f"/api/v2/interactions/{created.id}"})


def _partner_view(ctx: ApiContext, ix: Interaction) -> dict[str, Any]:
    view = resource(ix, ctx.service.center.queues.get(ix.queue))
    view["state"] = ix.state.value
    view["agent"] = ix.agent
    if ix.kind is Kind.CHAT:
        view["chat_notifications"] = transcript(ix)
    return view


async def get_one(request: web.Request) -> web.StreamResponse:
    ctx, _, ix = await partner_interaction(request)
    return ok({"interaction": _partner_view(ctx, ix)})


async def operate(request: web.Request) -> web.StreamResponse:
    ctx, partner, ix = await partner_interaction(request)
    body = await read_object(request)
    operation = text_param(body, "operationName")
    interaction_id = ix.id
    center = ctx.service.center
    if operation == "SendMessage":
        text = text_param(body, "text")
        assert text is not None
        if not text:
            raise GwsError(Status.INVALID_INPUT, "text must not be empty")
        effects = center.customer_message(interaction_id, text, ctx.clock_ms())
    elif operation in ("Leave", "EndChat"):
        effects = center.customer_left(interaction_id, ctx.clock_ms())
    else:
        raise GwsError(
            Status.INVALID_INPUT, f"unknown operation {operation!r}: SendMessage | Leave"
        )
    await ctx.service.apply(effects)
    log.info(
        "partner_operation",
        partner=partner.name,
        interaction_id=interaction_id,
        operation=operation,
    )
    return ok()
