"""The messages we send, built with the standard library's ``email`` package.  Pure.

A reply carries From (the mailbox), To, Cc, the Subject with its reply prefix (the center
adds it), Date, our own Message-ID, and In-Reply-To / References pointing at the customer's
message, so the customer's mail program threads it and their next mail threads back to us.
An acknowledgement also carries ``Auto-Submitted: auto-replied`` (RFC 3834) and
``X-Auto-Response-Suppress: All``, so other robots do not answer it.
"""

from __future__ import annotations

import secrets
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr

from gateway.interactions.model import EmailContent

__all__ = ["build_ack", "build_reply", "domain_of", "message_id", "one_line"]

_SMTP = policy.SMTP


def one_line(value: str) -> str:
    """A header value with no line breaks (no header injection from an agent's subject)."""
    return " ".join(value.split())


def message_id(interaction_id: str, domain: str) -> str:
    """Our Message-ID for a message about ``interaction_id``: unique, and readable in logs."""
    return f"<{interaction_id}.{secrets.token_hex(6)}@{domain or 'gateway.invalid'}>"


def domain_of(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2].lower()


def build_reply(
    email: EmailContent,
    *,
    mail_from: str,
    from_name: str = "",
    msg_id: str,
    date_ms: int,
) -> bytes:
    msg = _headers(mail_from, from_name, email.to, email.cc, email.subject, msg_id, date_ms)
    _thread(msg, email.in_reply_to, email.references)
    _body(msg, email.text, email.html)
    return msg.as_bytes(policy=_SMTP)


def build_ack(
    original: EmailContent,
    *,
    mail_from: str,
    text: str,
    msg_id: str,
    date_ms: int,
) -> bytes:
    subject = original.subject
    msg = _headers(
        mail_from, "", [original.from_address], [], f"Re: {subject}".strip(), msg_id, date_ms
    )
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    references = [*original.references, original.message_id] if original.message_id else []
    _thread(msg, original.message_id, references)
    _body(msg, text, "")
    return msg.as_bytes(policy=_SMTP)


def _headers(
    mail_from: str,
    from_name: str,
    to: list[str],
    cc: list[str],
    subject: str,
    msg_id: str,
    date_ms: int,
) -> EmailMessage:
    msg = EmailMessage(policy=_SMTP)
    msg["From"] = _address(from_name, mail_from)
    msg["To"] = ", ".join(_address("", a) for a in to)
    if cc:
        msg["Cc"] = ", ".join(_address("", a) for a in cc)
    msg["Subject"] = one_line(subject)
    msg["Date"] = formatdate(date_ms / 1000, usegmt=True)
    msg["Message-ID"] = msg_id
    return msg


def _address(name: str, address: str) -> str:
    """One address as a header value; a display name is encoded when it needs it."""
    display, addr = parseaddr(one_line(address))
    addr = addr or one_line(address)
    display = one_line(name) or display
    if not display:
        return addr
    try:
        return str(Address(display_name=display, addr_spec=addr))
    except (ValueError, IndexError):
        return formataddr((display, addr))


def _thread(msg: EmailMessage, in_reply_to: str, references: list[str]) -> None:
    if in_reply_to:
        msg["In-Reply-To"] = one_line(in_reply_to)
    refs = [one_line(r) for r in references if r]
    if refs:
        msg["References"] = " ".join(refs)


def _body(msg: EmailMessage, text: str, html: str) -> None:
    msg.set_content(text or "", cte="quoted-printable")
    if html:
        msg.add_alternative(html, subtype="html", cte="quoted-printable")
