"""A gateway whose mail side watches a real Dovecot mailbox and sends through an SMTP sink."""

from __future__ import annotations

import asyncio
import uuid
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiohttp
from aiohttp import web
from mailservers import Mailbox, SmtpSink

from gateway.mail.runtime import MAIL, MailRuntime

QUEUE = "SimpleEmailInQueue"


def source(mailbox: Mailbox, **options: Any) -> dict[str, Any]:
    """A ``[[mail.sources]]`` entry for ``mailbox`` on the plain port."""
    return {
        "name": "support",
        "queue": QUEUE,
        "host": mailbox.host,
        "port": mailbox.imap_port,
        "tls": "none",
        "username": mailbox.user,
        "password": mailbox.password,
        "address": f"{mailbox.user}@example.test",
        **options,
    }


def sender(sink: SmtpSink, **options: Any) -> dict[str, Any]:
    return {"name": "out", "host": sink.host, "port": sink.port, "tls": "none", **options}


def mail_section(
    mailbox: Mailbox, sink: SmtpSink | None = None, *, sources: list[dict[str, Any]] | None = None,
    **options: Any,
) -> dict[str, Any]:  # fmt: skip
    """The ``mail`` configuration section: quick reconnects and retries for tests."""
    section: dict[str, Any] = {
        "sources": sources if sources is not None else [source(mailbox)],
        "senders": [sender(sink)] if sink is not None else [],
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.5,
        "retry_min_s": 0.2,
        "retry_max_s": 1.0,
        "timeout_s": 5.0,
    }
    section.update(options)
    return section


def customer_mail(
    subject: str = "Where is my order?",
    text: str = "Hello, my order 1234 has not arrived.",
    *,
    sender: str = "Jane Doe <jane@customer.example>",
    to: str = "support@example.test",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
    attachment: tuple[str, bytes] | None = None,
) -> tuple[bytes, str]:
    """A customer's email as bytes, and its Message-ID."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id or f"<{uuid.uuid4()}@customer.example>"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text)
    if attachment is not None:
        name, data = attachment
        msg.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    return msg.as_bytes(), str(msg["Message-ID"])


def runtime(app: web.Application) -> MailRuntime:
    return app[MAIL]


async def wait_ready(app: web.Application, name: str = "support", within: float = 10) -> None:
    """Until the listener is connected, caught up and waiting for mail."""
    listener = runtime(app).listeners[name]
    await asyncio.wait_for(listener.ready.wait(), within)


async def wait_until(predicate: Any, within: float = 10, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.02)


def state(name: str, interaction_id: str | None = None) -> Any:
    """Matches a /v2/me/interactions message in state ``name`` (of that interaction)."""
    return lambda m: m.get("state") == name and interaction_id in (None, m.get("id"))


async def agent_and_mail(
    make_center: Any,
    mailbox: Mailbox,
    sink: SmtpSink | None = None,
    *,
    sources: list[dict[str, Any]] | None = None,
    transport: str = "long-polling",
) -> tuple[Any, Any]:
    """A gateway watching ``mailbox`` (sending through ``sink``), its listener caught up,
    and agent1 logged in and Ready on email: ``(center, desktop)``."""
    center = await make_center(names=("agent1",), mail=mail_section(mailbox, sink, sources=sources))
    await wait_ready(center.gateway.app)
    desk = await center.desktop("agent1", "email", transport=transport)
    return center, desk


async def reply_to_next(desk: Any, text: str) -> tuple[str, str]:
    """The agent's next Invited email: Accept, Reply and Send ``text`` as the draft's body.
    Returns ``(interaction id, draft id)``."""
    ix: str = (await desk.next_message(state("Invited"), within=5))["id"]
    await desk.operate(ix, "Accept")
    await desk.operate(ix, "Reply")
    draft: str = (await desk.next_message(state("Composing")))["id"]
    status, _ = await desk.operate(draft, "Send", bodyAsPlainText=text)
    assert status == 200
    return ix, draft


async def mail_status(base: str, token: str) -> dict[str, Any]:
    """``GET /api/v2/mail`` with a partner token."""
    async with aiohttp.ClientSession() as http:
        response = await http.get(
            f"{base}/api/v2/mail", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 200, await response.text()
        body = await response.json()
    return body["mail"]  # type: ignore[no-any-return]
