"""Logout ends a login at once: REST, its CometD sessions, the agent's pending invitations."""

from __future__ import annotations

import asyncio

import pytest
from conformance.client import LongPollingClient

from contact.conftest import MakeCenter
from contact.desktop import Desktop, Msg


async def log_out(d: Desktop, how: str) -> tuple[int, Msg]:
    if how == "LogOut":
        return await d.post("/api/v2/me", {"operationName": "LogOut"})
    async with d.http.delete(d.base + "/api/v2/me", headers={"X-CSRF-TOKEN": d.csrf}) as r:
        return r.status, await r.json()


def session_token(d: Desktop) -> str:
    return next(c.value for c in d.http.cookie_jar if c.key == "JSESSIONID")


@pytest.mark.parametrize("how", ["LogOut", "DELETE"])
async def test_logout_ends_the_login_its_cometd_sessions_and_invitations(
    make_center: MakeCenter, how: str
) -> None:
    center = await make_center(names=("agent1", "agent2"))
    agent = await center.desktop("agent1", "email")
    assert agent.bayeux is not None
    token = session_token(agent)
    interaction_id = await center.partner.email()
    await agent.next_message(lambda d: d["state"] == "Invited")
    other = await center.desktop("agent2", "email")
    held = asyncio.create_task(agent.bayeux.connect(within=15, advice={"timeout": 10_000}))
    await asyncio.sleep(0.2)  # the connect is held

    status, body = await log_out(agent, how)
    assert (status, body["statusCode"]) == (200, 0), body

    # the held connect is released at once, telling the client not to come back
    released = await asyncio.wait_for(held, 5)
    assert released["advice"]["reconnect"] == "none", released
    # the cookie no longer opens REST (the client would keep it: send it explicitly)
    agent.http.cookie_jar.update_cookies({"JSESSIONID": token})
    status, body = await agent.get("/api/v2/me?subresources=*")
    assert (status, body["statusCode"]) == (401, 20), body
    status, body = await agent.post("/api/v2/me/channels/email", {"operationName": "Ready"})
    assert (status, body["statusCode"]) == (401, 20), body
    # the CometD session is gone, and the token no longer grants a new one
    again = await agent.bayeux.connect()
    assert again["successful"] is False and again["error"] == "402::session_unknown", again
    fresh = LongPollingClient(center.base + "/api/v2/notifications")
    try:
        denied = await fresh.handshake(ext={"token": token})
        assert denied["successful"] is False and denied["error"] == "403::handshake_denied"
    finally:
        await fresh.close()
    # the pending invitation was revoked and offered to the next Ready agent
    offered = await other.next_message(lambda d: d["state"] == "Invited")
    assert offered["id"] == interaction_id


async def test_logging_out_one_desktop_leaves_the_agents_other_login_alone(
    make_center: MakeCenter,
) -> None:
    center = await make_center(names=("agent1",))
    first = await center.desktop("agent1", "email")
    second = await center.desktop("agent1")
    assert first.bayeux is not None and second.bayeux is not None

    status, _ = await log_out(first, "LogOut")
    assert status == 200
    gone = await first.bayeux.connect()
    assert gone["successful"] is False and gone["error"] == "402::session_unknown", gone

    # the other login keeps its REST session, its CometD session and the agent's Ready state
    status, me = await second.get("/api/v2/me?subresources=*")
    assert status == 200
    assert [c["userState"]["state"] for c in me["user"]["channels"]] == ["Ready"]
    interaction_id = await center.partner.email()
    invited = await second.next_message(lambda d: d["state"] == "Invited")
    assert invited["id"] == interaction_id


async def test_logout_needs_the_csrf_token_and_changes_nothing_without(
    make_center: MakeCenter,
) -> None:
    center = await make_center(names=("agent1",))
    agent = await center.desktop("agent1", "email", bayeux=False)
    status, body = await agent.post("/api/v2/me", {"operationName": "LogOut"}, csrf=False)
    assert (status, body["statusCode"]) == (403, 3)
    async with agent.http.delete(agent.base + "/api/v2/me") as r:
        assert r.status == 403
    status, _ = await agent.get("/api/v2/me")
    assert status == 200
