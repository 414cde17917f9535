"""Who may do what: login, CSRF, CometD binding to agents, /v2/me/** isolation, bad input."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conformance.client import LongPollingClient
from yarl import URL

from contact.conftest import MakeCenter
from contact.desktop import PASSWORD, Desktop

ROOT = Path(__file__).resolve().parents[2]


async def test_login_sets_cookie_and_csrf_and_returns_the_user(make_center: MakeCenter) -> None:
    center = await make_center()
    d = Desktop(center.base, "agent1")
    center.desktops.append(d)
    status, body = await d.login()
    assert status == 200 and body["statusCode"] == 0
    assert body["user"]["userName"] == "agent1" and body["user"]["roles"] == ["ROLE_AGENT"]
    assert d.csrf and len(d.csrf) > 20
    assert any(c.key == "JSESSIONID" for c in d.http.cookie_jar)
    status, body = await d.get("/api/v2/me?subresources=*")
    assert status == 200 and body["user"]["channels"] == [] and body["user"]["interactions"] == []
    await d.start("email", "chat")
    _, body = await d.get("/api/v2/me?subresources=*")
    states = {c["channel"]: c["userState"]["state"] for c in body["user"]["channels"]}
    assert states == {"email": "Ready", "chat": "Ready"}


async def test_wrong_password_and_no_credentials_are_refused(make_center: MakeCenter) -> None:
    center = await make_center()
    d = Desktop(center.base, "agent1")
    center.desktops.append(d)
    status, body = await d.login("wrong")
    assert status == 401 and body["statusCode"] == 20
    status, body = await d.get("/api/v2/me")
    assert status == 401 and body["statusCode"] == 20
    status, body = await d.post("/api/v2/me/channels/email", {"operationName": "Ready"})
    assert status == 401 and body["statusCode"] == 20


async def test_every_post_needs_the_csrf_token_and_changes_nothing_without(
    make_center: MakeCenter,
) -> None:
    center = await make_center()
    d = Desktop(center.base, "agent1")
    center.desktops.append(d)
    await d.login()
    status, body = await d.post(
        "/api/v2/me", {"operationName": "StartContactCenterSession"}, csrf=False
    )
    assert status == 403 and body == {
        "statusCode": 3,
        "statusMessage": "Missing or invalid Csrf token",
    }
    _, me = await d.get("/api/v2/me?subresources=*")
    assert me["user"]["channels"] == []  # no session was started


async def test_handshake_needs_a_logged_in_session_or_token(make_center: MakeCenter) -> None:
    center = await make_center()
    anonymous = LongPollingClient(center.base + "/api/v2/notifications")
    try:
        reply = await anonymous.handshake()
        assert reply["successful"] is False
        assert reply["error"] == "403::handshake_denied"
        assert reply["advice"]["reconnect"] == "none"
        # the session id as ext.token works without the cookie
        d = Desktop(center.base, "agent1")
        center.desktops.append(d)
        await d.login()
        cookie = next(c.value for c in d.http.cookie_jar if c.key == "JSESSIONID")
        reply = await anonymous.handshake(ext={"token": cookie})
        assert reply["successful"] is True
    finally:
        await anonymous.close()


async def test_agents_see_only_their_own_messages_and_nobody_publishes_to_v2_me(
    make_center: MakeCenter,
) -> None:
    center = await make_center(names=("agent1", "agent2"))
    one = await center.desktop("agent1", "email")
    two = await center.desktop("agent2")
    assert two.bayeux is not None
    wildcard = await two.bayeux.subscribe("/v2/me/**")
    assert wildcard["successful"] is True
    everything = await two.bayeux.subscribe("/**")
    assert everything["successful"] is True
    interaction_id = await center.partner.email()
    invited = await one.next_message(lambda d: d["state"] == "Invited")
    assert invited["id"] == interaction_id
    assert await two.quiet(0.3) == []
    published = await two.bayeux.publish("/v2/me/interactions", {"state": "Invited"})
    assert published["successful"] is False and published["error"].startswith("403")
    assert await one.quiet(0.3) == []


async def test_anonymous_sessions_when_allowed_stay_out_of_v2_me(make_center: MakeCenter) -> None:
    center = await make_center(agents={"allow_anonymous_bayeux": True})
    anonymous = LongPollingClient(center.base + "/cometd")
    try:
        assert (await anonymous.handshake())["successful"] is True
        denied = await anonymous.subscribe("/v2/me/interactions")
        assert denied["successful"] is False and denied["error"].startswith("403")
        allowed = await anonymous.subscribe("/partner/news")
        assert allowed["successful"] is True
    finally:
        await anonymous.close()


async def test_a_presented_credential_must_be_valid_even_when_anonymous_is_allowed(
    make_center: MakeCenter,
) -> None:
    """Anonymous means "no credential": a token or session cookie that names no live login
    (made up, or expired) is refused instead of silently becoming an anonymous session."""
    center = await make_center(
        agents={"allow_anonymous_bayeux": True, "session_idle_timeout_s": 0.5}
    )
    mount = center.base + "/api/v2/notifications"
    d = Desktop(center.base, "agent1")
    center.desktops.append(d)
    await d.login()
    expired = next(c.value for c in d.http.cookie_jar if c.key == "JSESSIONID")
    await asyncio.sleep(0.8)  # past the idle timeout: this login has ended
    by_cookie = LongPollingClient(mount)
    by_cookie.jar.update_cookies({"JSESSIONID": "not-a-session"}, URL(center.base))
    plain = LongPollingClient(mount)
    try:
        for client, ext in (
            (plain, {"token": "not-a-session"}),
            (plain, {"token": expired}),
            (plain, {"token": 12345}),
            (by_cookie, None),
        ):
            reply = await client.handshake(ext=ext) if ext else await client.handshake()
            assert reply["successful"] is False, (ext, reply)
            assert reply["error"] == "403::handshake_denied"
            assert reply["advice"]["reconnect"] == "none"
        assert (await plain.handshake())["successful"] is True  # no credential: anonymous
    finally:
        await by_cookie.close()
        await plain.close()


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/api/v2/me", {"operationName": "Dance"}, 400, 10),
        ("/api/v2/me", {}, 400, 1),
        ("/api/v2/me", {"operationName": 5}, 400, 10),
        ("/api/v2/me", [1, 2], 400, 10),
        ("/api/v2/me", "not json{", 400, 10),
        ("/api/v2/me/channels/voice", {"operationName": "Ready"}, 404, 6),
        ("/api/v2/me/channels/email", {"operationName": "Lunch"}, 400, 10),
        ("/api/v2/me/channels/email", {"operationName": "NotReady", "reason": 7}, 400, 10),
        ("/api/v2/me/interactions/0000NOSUCHTHING1", {"operationName": "Accept"}, 404, 6),
    ],
)
async def test_bad_agent_requests_get_their_status_code(
    make_center: MakeCenter, path: str, body: Any, status: int, code: int
) -> None:
    center = await make_center()
    d = await center.desktop("agent1", "email", bayeux=False)
    headers = {"X-CSRF-TOKEN": d.csrf, "Content-Type": "application/json"}
    raw = body if isinstance(body, str) else aiohttp.payload.JsonPayload(body)
    async with d.http.post(center.base + path, data=raw, headers=headers) as r:
        answer = await r.json()
        assert (r.status, answer["statusCode"]) == (status, code), answer
        assert isinstance(answer["statusMessage"], str) and answer["statusMessage"]
    _, me = await d.get("/api/v2/me?subresources=*")
    assert {c["channel"]: c["userState"]["state"] for c in me["user"]["channels"]} == {
        "email": "Ready"
    }


async def test_operations_in_the_wrong_state_change_nothing(make_center: MakeCenter) -> None:
    center = await make_center()
    agent = await center.desktop("agent1", "email")
    interaction_id = await center.partner.email()
    await agent.next_message(lambda d: d["state"] == "Invited")
    for operation in ("Complete", "Reply", "Send", "Dance"):
        status, body = await agent.operate(interaction_id, operation)
        assert status in (400, 409) and body["statusCode"] in (2, 10), (operation, body)
    status, body = await agent.operate(interaction_id, "Transfer")
    assert body["statusCode"] in (1, 2)
    await agent.operate(interaction_id, "Accept")
    status, body = await agent.operate(interaction_id, "Accept")
    assert status == 409 and body["statusCode"] == 2
    status, body = await agent.operate(interaction_id, "UpdateUserData", userData="x")
    assert status == 400 and body["statusCode"] == 1
    status, body = await agent.operate(interaction_id, "Transfer", queueName="NoSuchQueue")
    assert status == 404 and body["statusCode"] == 6
    _, listed = await agent.get("/api/v2/me/interactions?fields=*")
    (only,) = listed["interactions"]
    assert only["state"] == "Accepted" and only["userData"].get("x") is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, 1),
        ({"channel": "fax"}, 10),
        ({"channel": "email"}, 1),
        ({"channel": "email", "email": {"from": 5}}, 10),
        ({"channel": "email", "email": {"from": "a@b"}, "userData": []}, 10),
        ({"channel": "chat", "queue": "SimpleEmailInQueue"}, 10),
        ({"channel": "chat", "queue": "Nope"}, 6),
    ],
)
async def test_bad_partner_requests_get_their_status_code(
    make_center: MakeCenter, body: dict[str, Any], code: int
) -> None:
    center = await make_center()
    status, answer = await center.partner.create(body)
    assert answer["statusCode"] == code and status >= 400, answer


async def test_partner_api_needs_a_partner_token(make_center: MakeCenter) -> None:
    center = await make_center()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            center.base + "/api/v2/interactions",
            json={"channel": "chat"},
            headers={"Authorization": "Bearer wrong"},
        ) as r,
    ):
        assert r.status == 401 and (await r.json())["statusCode"] == 20


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Authorization": "Bearer stale-token"}, "this partner token is not valid"),
        ({}, "a partner token is required"),
        ({"Authorization": "Basic YTpi"}, "a partner token is required"),
    ],
    ids=["unknown-token", "no-header", "not-bearer"],
)
async def test_partner_refusal_says_whether_the_token_is_missing_or_not_valid(
    make_center: MakeCenter, headers: dict[str, str], message: str
) -> None:
    center = await make_center()
    async with (
        aiohttp.ClientSession() as http,
        http.get(center.base + "/api/v2/interactions/0000X", headers=headers) as r,
    ):
        body = await r.json()
    assert r.status == 401 and body["statusCode"] == 20
    assert body["statusMessage"].startswith(message), body


async def test_an_agent_added_while_the_gateway_runs_logs_in_without_a_restart(
    make_center: MakeCenter,
) -> None:
    center = await make_center()
    added = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "users",
        "add",
        "newcomer",
        "--password-stdin",
        cwd=ROOT,
        env={**os.environ, "GATEWAY_STORE__DATA_DIR": str(center.data_dir)},
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    _, err = await added.communicate(PASSWORD.encode() + b"\n")
    assert added.returncode == 0, err
    d = Desktop(center.base, "newcomer")
    center.desktops.append(d)
    status, body = await d.login()
    assert status == 200 and body["user"]["userName"] == "newcomer", body


@pytest.mark.parametrize(
    "credentials",
    [b"\xa0M", b"YWdlbnQx\xff", b"not base64!", b"/w==", b"YWdlbnQx"],
    ids=["nbsp", "non-ascii", "not-base64", "not-utf8", "no-colon"],
)
async def test_malformed_basic_credentials_are_a_401(
    make_center: MakeCenter, credentials: bytes
) -> None:
    """Found by the edge's fuzzer: a non-ASCII Basic credential was a 500."""
    center = await make_center()
    url = URL(center.base)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(
            b"GET /api/v2/me HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Authorization: Basic " + credentials + b"\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b'"statusCode":20' in answer
