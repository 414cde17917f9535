"""The messages we send (pure), and XOAUTH2 tokens from a URL or a command."""

from __future__ import annotations

import json
import shlex
import sys
from email import message_from_bytes, policy

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.interactions.model import EmailContent
from gateway.mail import compose
from gateway.mail.oauth import TokenError, TokenSource, xoauth2_string

REPLY = EmailContent(
    subject="Re: Where is my order?\r\nBcc: victim@example.org",
    text="Your parcel left today.\n\nRegards,\nAnn",
    html="<p>Your parcel left <b>today</b>.</p>",
    from_address="support@shop.example",
    to=["Jane Doe <jane@customer.example>"],
    cc=["boss@customer.example"],
    in_reply_to="<m1@customer.example>",
    references=["<m0@customer.example>", "<m1@customer.example>"],
)


def parsed(raw: bytes):  # type: ignore[no-untyped-def]
    return message_from_bytes(raw, policy=policy.default)


def test_reply_has_every_header_a_mail_program_threads_by() -> None:
    msg_id = compose.message_id("0000ABC", "shop.example")
    raw = compose.build_reply(
        REPLY, mail_from="support@shop.example", from_name="Shop Support", msg_id=msg_id,
        date_ms=1_700_000_000_000,
    )  # fmt: skip
    msg = parsed(raw)
    assert msg["From"] == "Shop Support <support@shop.example>"
    assert msg["To"] == "Jane Doe <jane@customer.example>"
    assert msg["Cc"] == "boss@customer.example"
    assert msg["Message-ID"] == msg_id and msg_id.startswith("<0000ABC.")
    assert msg_id.endswith("@shop.example>")
    assert msg["In-Reply-To"] == "<m1@customer.example>"
    assert msg["References"] == "<m0@customer.example> <m1@customer.example>"
    assert msg["Date"].datetime.timestamp() == 1_700_000_000
    # the agent's line break cannot smuggle in a header
    assert msg["Subject"] == "Re: Where is my order? Bcc: victim@example.org"
    assert msg["Bcc"] is None
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.rstrip("\n") == REPLY.text
    assert "<b>today</b>" in msg.get_body(("html",)).get_content()
    assert b"\r\n" in raw and b"\n\n" not in raw.replace(b"\r\n", b"")


def test_non_ascii_names_and_text_are_encoded() -> None:
    email = EmailContent(subject="Re: Größe", text="Grüße aus Köln", to=["jürgen@example.de"])
    raw = compose.build_reply(
        email, mail_from="s@shop.example", from_name="Kundendienst Müller", msg_id="<x@y>",
        date_ms=0,
    )  # fmt: skip
    raw.decode("ascii")  # 7-bit on the wire
    msg = parsed(raw)
    assert msg["Subject"] == "Re: Größe"
    assert msg["From"].addresses[0].display_name == "Kundendienst Müller"
    assert msg.get_content().strip() == "Grüße aus Köln"


def test_acknowledgement_tells_robots_not_to_answer() -> None:
    original = EmailContent(
        subject="Help", from_address="jane@customer.example", message_id="<q@customer.example>"
    )
    raw = compose.build_ack(
        original, mail_from="support@shop.example", text="We got it.", msg_id="<a@shop.example>",
        date_ms=0,
    )  # fmt: skip
    msg = parsed(raw)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["To"] == "jane@customer.example"
    assert msg["Subject"] == "Re: Help"
    assert msg["In-Reply-To"] == "<q@customer.example>"


def test_xoauth2_string_is_the_documented_format() -> None:
    assert xoauth2_string("a@b.c", "tok") == "user=a@b.c\x01auth=Bearer tok\x01\x01"


async def test_token_from_url_is_reused_until_near_expiry() -> None:
    calls = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(1)
        return web.json_response({"access_token": f"t{len(calls)}", "expires_in": 3600})

    app = web.Application()
    app.router.add_get("/token", handler)
    now = [1000.0]
    async with TestServer(app, host="127.0.0.1") as server:
        source = TokenSource(url=str(server.make_url("/token")), clock=lambda: now[0])
        assert await source.token() == "t1"
        now[0] += 3000  # still 600 s left: over the refresh margin
        assert await source.token() == "t1"
        now[0] += 400  # 200 s left: refreshed before expiry
        assert await source.token() == "t2"
        source.invalidate()  # a refused login asks again
        assert await source.token() == "t3"


async def test_token_from_a_command_bare_or_json() -> None:
    bare = TokenSource(command=f"{sys.executable} -c \"print('abc123')\"")
    assert await bare.token() == "abc123"
    payload = json.dumps({"access_token": "xyz", "expires_at": 4102444800})
    as_json = TokenSource(command=f"printf '%s' {shlex.quote(payload)}")
    assert await as_json.token() == "xyz"


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("exit 3", "exited with status 3"),
        ("echo", "holds no token"),
        ("echo '{not json'", "not valid JSON"),
    ],
)
async def test_token_command_failures_say_why_without_a_token(command: str, reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        await TokenSource(command=command).token()


async def test_token_url_errors_are_token_errors() -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=401, text="no")

    app = web.Application()
    app.router.add_get("/token", refuse)
    async with TestServer(app, host="127.0.0.1") as server:
        with pytest.raises(TokenError, match="HTTP 401"):
            await TokenSource(url=str(server.make_url("/token"))).token()
