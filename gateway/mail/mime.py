"""Inbound email parsing: the raw bytes of one message in, one frozen :class:`ParsedEmail` out.

Pure (no IO, no clock, no logging), like ``protocol/``: the IMAP listener fetches the bytes and
decides what to do with the result; the REST API calls :func:`attachment` on the stored bytes.

Rules, in the order a message meets them:

* **Unusable** messages raise :class:`MimeError`, and the caller quarantines them (never drops
  them): empty input, no header section, no sender address (From, else Sender, else Reply-To,
  each needing ``local@domain``), or the email package failing on the structure.  Any other
  exception from the email package is wrapped, so ``parse`` raises nothing else.  The error text
  names the problem, never the body.  One broken *optional* header (To, Date, ...) does not
  make the message unusable: it falls back to its raw text.
* **Body**: the ``text/plain`` and ``text/html`` leaves that are not attachments.  Several of
  one kind (Apple Mail splits a body around an inline image) are joined in document order.
  Without a plain part, ``text`` is the HTML rendered as readable text (:func:`html_to_text`).
* **Attachments**: every other leaf, every part with a filename or ``Content-Disposition:
  attachment``, and every ``message/*`` part, kept whole (an attached email is named after its
  subject + ``.eml``).  Leaves of a ``multipart/alternative`` that are neither plain nor HTML
  (``text/enriched``, ``text/calendar``) are other renderings of the body and are skipped.
  ``index`` is the document order, so the same bytes always give the same indexes.
* **Charsets**: the declared one, read as its common superset (iso-8859-1 as windows-1252,
  gb2312 as gb18030, shift_jis as cp932: what mailers really send under those labels), then
  UTF-8, then the declared one with replacement characters, then latin-1, which cannot fail.
  Body line endings become ``\\n``.
* **Loop guard** (RFC 3834, ``shared/reference/domain.md`` §4.6): :func:`auto_reason`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC
from email import policy
from email.headerregistry import HeaderRegistry
from email.message import Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value, getaddresses, parsedate_to_datetime
from typing import Any

import msgspec

from gateway.mail.htmltext import html_to_text

#: Headers copied into :attr:`ParsedEmail.headers` (desktops see them as ``Header_<Name>``).
HEADER_NAMES = (
    "Message-ID",
    "Date",
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "MIME-Version",
    "Content-Type",
)
_MAX_DEPTH = 64
_SUPERSETS = {  # what mailers really send under these labels (as the WHATWG encoding spec)
    **dict.fromkeys(("us-ascii", "ascii", "iso-8859-1", "latin1", "latin-1"), "windows-1252"),
    **dict.fromkeys(("gb2312", "gbk", "x-gbk"), "gb18030"),
    **dict.fromkeys(("shift_jis", "shift-jis", "sjis", "x-sjis"), "cp932"),
    **dict.fromkeys(("euc-kr", "ks_c_5601-1987"), "cp949"),
    **{"iso-8859-9": "cp1254", "big5": "big5hkscs", "tis-620": "cp874"},
}
_EXTENSIONS = {
    "application/pdf": ".pdf",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "message/rfc822": ".eml",
    "message/delivery-status": ".txt",
}
_MSG_ID = re.compile(r"<[^<>]+>")
_PARSER = BytesParser(policy=policy.default)
_UNSTRUCTURED = HeaderRegistry(use_default_map=False)  # decodes encoded words, keeps the rest
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk", "auto_reply"})
_DAEMONS = frozenset({"mailer-daemon", "postmaster"})


class MimeError(ValueError):
    """The message cannot be used: the caller must quarantine it (never drop it)."""


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """One attachment's metadata; :func:`attachment` gives its bytes by ``index``."""

    index: int
    name: str
    content_type: str
    size: int
    content_id: str = ""
    inline: bool = False


class ParsedEmail(msgspec.Struct, frozen=True, kw_only=True):
    """What the gateway needs of one inbound email (addresses are plain ``local@domain``)."""

    message_id: str
    from_address: str
    from_personal: str
    sender_address: str
    to: list[str]
    cc: list[str]
    reply_to: list[str]
    subject: str
    date: str
    date_ms: int | None
    in_reply_to: str
    references: list[str]
    text: str
    html: str
    attachments: tuple[Attachment, ...]
    headers: dict[str, str]
    auto_reason: str | None
    size: int


def parse(raw: bytes) -> ParsedEmail:
    """Parse one message; raise :class:`MimeError` (and nothing else) when it is unusable."""
    msg = _message(raw)
    try:
        return _parse(raw, msg)
    except MimeError:
        raise
    except Exception as exc:  # the email package fails in many ways on odd input
        raise MimeError(f"unreadable message structure ({type(exc).__name__})") from exc


def attachment(raw: bytes, index: int) -> tuple[Attachment, bytes]:
    """The metadata and decoded bytes of attachment ``index`` of the stored message ``raw``.

    Raises :class:`LookupError` when there is no such attachment and :class:`MimeError` when
    ``raw`` cannot be parsed at all.
    """
    msg = _message(raw)
    try:
        parts = _collect(msg, in_alternative=False, depth=0).attachments
        if not 0 <= index < len(parts):
            raise LookupError(f"no attachment {index} (the message has {len(parts)})")
        return _describe(parts[index], index, _linesep(raw))
    except (LookupError, MimeError):
        raise
    except Exception as exc:
        raise MimeError(f"unreadable message structure ({type(exc).__name__})") from exc


def _message(raw: bytes) -> Message:
    """The email package's tree of ``raw``; MimeError when it has no header section."""
    if not raw.strip():
        raise MimeError("empty message")
    try:
        msg = _PARSER.parsebytes(raw)
        has_headers = bool(msg.keys())
    except Exception as exc:
        raise MimeError(f"unreadable message ({type(exc).__name__})") from exc
    if not has_headers:
        raise MimeError("no header section")
    return msg


def _parse(raw: bytes, msg: Message) -> ParsedEmail:
    headers = _raw_headers(msg)
    personal, address = _sender(headers)
    reply_to = [a for _, a in _addresses("Reply-To", headers.get("reply-to", ""))]
    found = _collect(msg, in_alternative=False, depth=0)
    linesep = _linesep(raw)
    attachments = tuple(_describe(p, i, linesep)[0] for i, p in enumerate(found.attachments))
    html = "\n".join(_text_of(p) for p in found.html)
    text = "\n".join(_text_of(p) for p in found.plain) if found.plain else html_to_text(html)
    date = _text(headers.get("date", ""))
    return ParsedEmail(
        message_id="".join(headers.get("message-id", "").split()),
        from_address=address,
        from_personal=personal,
        sender_address=reply_to[0] if reply_to else address,
        to=[a for _, a in _addresses("To", headers.get("to", ""))],
        cc=[a for _, a in _addresses("Cc", headers.get("cc", ""))],
        reply_to=reply_to,
        subject=" ".join(_text(headers.get("subject", "")).split()),
        date=date,
        date_ms=_epoch_ms(date),
        in_reply_to=next(iter(_message_ids(headers.get("in-reply-to", ""))), ""),
        references=list(dict.fromkeys(_message_ids(headers.get("references", "")))),
        text=text,
        html=html,
        attachments=attachments,
        headers={
            name: _text(headers[name.lower()]) for name in HEADER_NAMES if name.lower() in headers
        },
        auto_reason=auto_reason(msg),
        size=len(raw),
    )


# -- headers ---------------------------------------------------------------------------------


def _raw_headers(msg: Message) -> dict[str, str]:
    """The first occurrence of each header as stored (undecoded), by lower-case name."""
    found: dict[str, str] = {}
    for name, value in msg.raw_items():
        found.setdefault(name.lower(), str(value))
    return found


def _clean(text: str) -> str:
    """``text`` without the lone surrogates that stand for undecodable 8-bit header bytes.

    Raw UTF-8 (RFC 6532) is decoded as such; anything else is read as latin-1.  The result can
    be JSON-encoded, which a string with surrogates cannot.
    """
    if not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        chars = (chr(ord(c) - 0xDC00) if "\udc80" <= c <= "\udcff" else c for c in text)
        return "".join(chars).encode("utf-8", "replace").decode("utf-8")


def _text(raw: str) -> str:
    """A header's value as written, with encoded words decoded and folding undone.

    Every header is read as unstructured text: the structured parsers would re-render
    Content-Type and drop the comment of a Date, and desktops show what the sender wrote.
    """
    unfolded = re.sub(r"\r?\n|\r", "", _clean(raw))
    try:
        return str(_UNSTRUCTURED("X-Text", unfolded)).strip()
    except Exception:  # the header parser has crash bugs on odd input: keep the raw text
        return unfolded.strip()


def _addresses(name: str, raw: str) -> list[tuple[str, str]]:
    """``(display name, local@domain)`` of each usable address in an address header."""
    raw = _clean(raw)
    try:
        header = policy.default.header_fetch_parse(name, raw)
        pairs = [(a.display_name, a.addr_spec) for a in header.addresses]
    except Exception:  # fall back to the lenient legacy parser
        pairs = getaddresses([raw])
    found = []
    for personal, address in pairs:
        local, _, domain = address.strip().rpartition("@")
        if local and domain and "<" not in local:
            found.append((" ".join(personal.split()), f"{local}@{domain}"))
    return found


def _sender(headers: dict[str, str]) -> tuple[str, str]:
    """Display name and address of the author: From, else Sender, else Reply-To."""
    for name in ("From", "Sender", "Reply-To"):
        found = _addresses(name, headers.get(name.lower(), ""))
        if found:
            return found[0]
    raise MimeError("no usable sender address (From, Sender, Reply-To)")


def _message_ids(raw: str) -> list[str]:
    """The ``<id>`` tokens of In-Reply-To / References, in order; a bare ``id@host`` too."""
    ids = ["".join(m.split()) for m in _MSG_ID.findall(_clean(raw))]
    if not ids and "@" in raw and len(raw.split()) == 1:
        ids = [f"<{raw.strip()}>"]
    return ids


def _epoch_ms(date: str) -> int | None:
    """UTC epoch milliseconds of a Date header, or None when it does not parse."""
    try:
        when = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": the time is in UTC, the sender's zone unknown
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


# -- structure -------------------------------------------------------------------------------


@dataclass
class _Found:
    """The leaves of one message by role, in document order."""

    plain: list[Message] = field(default_factory=list)
    html: list[Message] = field(default_factory=list)
    attachments: list[Message] = field(default_factory=list)


def _collect(
    part: Message, *, in_alternative: bool, depth: int, found: _Found | None = None
) -> _Found:
    """File ``part`` and its children under plain body, HTML body or attachments."""
    found = _Found() if found is None else found
    if depth > _MAX_DEPTH:
        raise MimeError("MIME parts nested too deeply")
    ctype = part.get_content_type()
    children = _children(part)
    if children is not None and not ctype.startswith("message/"):
        for child in children:
            alternative = ctype == "multipart/alternative"
            _collect(child, in_alternative=alternative, depth=depth + 1, found=found)
        return found
    named = part.get_filename() is not None or part.get_content_disposition() == "attachment"
    if ctype in ("text/plain", "text/html") and not named:
        (found.plain if ctype == "text/plain" else found.html).append(part)
    elif ctype.startswith("multipart/"):  # its boundary is missing: the content is all we have
        found.plain.append(part)
    elif not (in_alternative and not named):  # else another rendering of the body: skip it
        found.attachments.append(part)
    return found


def _describe(part: Message, index: int, linesep: str) -> tuple[Attachment, bytes]:
    """Metadata and decoded bytes of the attachment ``part``."""
    ctype = part.get_content_type()
    data = _bytes(part, linesep)
    disposition = part.get_content_disposition()
    content_id = "".join(_clean(str(part.get("Content-ID", ""))).split()).strip("<>")
    meta = Attachment(
        index=index,
        name=_name(part, ctype, index),
        content_type=ctype,
        size=len(data),
        content_id=content_id,
        inline=disposition == "inline" or (disposition is None and bool(content_id)),
    )
    return meta, data


def _name(part: Message, ctype: str, index: int) -> str:
    """The attachment's file name, without any directory; made up when the sender gave none."""
    filename = part.get_filename()
    enclosed = _children(part) or []
    name = ""
    if filename:
        name = re.split(r"[/\\]", _clean(filename))[-1]
    elif ctype.startswith("message/") and enclosed:
        subject = _text(_raw_headers(enclosed[0]).get("subject", ""))
        name = re.sub(r"[/\\]", "_", subject) + ".eml" if subject else ""
    name = " ".join(name.split())
    extension = _EXTENSIONS.get(ctype, ".txt" if ctype.startswith("text/") else ".bin")
    return name or f"attachment-{index + 1}{extension}"


def _bytes(part: Message, linesep: str) -> bytes:
    """The decoded content of a leaf; an attached message is serialised as it came."""
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    keep = policy.default.clone(refold_source="none", linesep=linesep)
    return b"".join(m.as_bytes(policy=keep) for m in _children(part) or [])


def _children(part: Message) -> list[Message] | None:
    """The parts inside a multipart or ``message/*`` part; None for a leaf."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return None
    return [child for child in payload if isinstance(child, Message)]


def _linesep(raw: bytes) -> str:
    """The line ending ``raw`` uses (from its first line), for serialising attached messages."""
    return "\r\n" if raw.split(b"\n", 1)[0].endswith(b"\r") else "\n"


def _text_of(part: Message) -> str:
    """A text leaf decoded to ``str`` (see :func:`decode_text`), with ``\\n`` line endings."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    text = decode_text(data, part.get_content_charset())
    return text.replace("\r\n", "\n").replace("\r", "\n")


def decode_text(data: bytes, charset: str | None) -> str:
    """``data`` as text, never failing: declared charset (as its superset), UTF-8, latin-1."""
    declared = _SUPERSETS.get(charset, charset) if charset else None
    attempts = ((declared, "strict"), ("utf-8", "strict"), (declared, "replace"))
    for codec, errors in attempts:
        if codec is None:
            continue
        try:
            return data.decode(codec, errors)
        except (LookupError, ValueError):  # unknown, not a text codec, or not this charset
            continue
    return data.decode("windows-1252" if charset is None else "latin-1", "replace")


# -- HTML to text ----------------------------------------------------------------------------


def auto_reason(msg: Message) -> str | None:
    """Why ``msg`` was sent by a machine, or None for a person's email (the loop guard).

    RFC 3834 and common practice (``shared/reference/domain.md`` §4.6); the first rule that
    matches names the reason: ``auto-submitted`` (Auto-Submitted present and not ``no``),
    ``precedence`` (bulk, list, junk or auto_reply), ``x-autoreply`` (X-Autoreply not ``no``,
    or X-Autorespond), ``bounce`` (null Return-Path ``<>``, or a delivery-status report, or a
    report from MAILER-DAEMON / postmaster), ``list`` (List-Id or List-Unsubscribe).
    ``X-Auto-Response-Suppress`` asks *us* not to auto-reply; it is not a sign of a machine.
    """
    headers = _raw_headers(msg)
    if "auto-submitted" in headers and _keyword(headers["auto-submitted"]) != "no":
        return "auto-submitted"
    if _keyword(headers.get("precedence", "")) in _BULK_PRECEDENCE:
        return "precedence"
    if "x-autorespond" in headers or _keyword(headers.get("x-autoreply", "no")) != "no":
        return "x-autoreply"
    if _is_bounce(msg, headers):
        return "bounce"
    if "list-id" in headers or "list-unsubscribe" in headers:
        return "list"
    return None


def _keyword(value: str) -> str:
    """The leading keyword of a header value, without comments or parameters, lower case."""
    return re.sub(r"\([^()]*\)", "", value).split(";")[0].strip().lower()


def _is_bounce(msg: Message, headers: dict[str, str]) -> bool:
    """A delivery failure report: null return path or a ``multipart/report`` from a daemon."""
    if "".join(headers.get("return-path", "").split()) == "<>":
        return True
    if msg.get_content_type() != "multipart/report":
        return False
    if collapse_rfc2231_value(msg.get_param("report-type", "")).lower() == "delivery-status":
        return True
    author = _addresses("From", headers.get("from", ""))
    return bool(author) and author[0][1].rpartition("@")[0].lower() in _DAEMONS


def user_data(parsed: ParsedEmail, *, mailbox: str, auto_reply_count: int = 0) -> dict[str, Any]:
    """The interaction's userData as Genesys E-mail Server fills it (domain.md §1.7.4).

    Values are strings, except ``_AutoReplyCount``, an int as in the seed payloads.
    """
    names = [a.name for a in parsed.attachments]
    data: dict[str, Any] = {
        "Origination_Source": "Email",
        "Mailbox": mailbox,
        "FromAddress": parsed.from_address,
        "FromPersonal": parsed.from_personal,
        "EmailAddress": parsed.from_address,
        "To": ", ".join(parsed.to),
        "Subject": parsed.subject,
    }
    data.update({f"Header_{name}": value for name, value in parsed.headers.items()})
    data["_ContainsAttachment"] = "true" if names else "false"
    data["_AttachmentFileNames"] = ", ".join(names)
    data["_AttachmentsSize"] = str(sum(a.size for a in parsed.attachments))
    data["_AutoReplyCount"] = auto_reply_count
    return data
