"""Email from creation to reply, as an agent desktop sees it, in the seed's wire format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from wire_shape import assert_same_shape

from contact.conftest import MakeCenter
from gateway.interactions.wire import EXTRA_KEYS

SEED = Path(__file__).resolve().parents[2] / "fixtures" / "seed"

SEED_USER_DATA = json.loads((SEED / "email_invited.json").read_text())[0]["data"]["userData"]


def seed(name: str) -> dict[str, Any]:
    return json.loads((SEED / f"{name}.json").read_text())[0]["data"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
async def test_email_invite_accept_reply_send_complete(
    make_center: MakeCenter, transport: str
) -> None:
    center = await make_center()
    agent = await center.desktop("agent1", "email", transport=transport)
    interaction_id = await center.partner.email(**SEED_USER_DATA)

    invited = await agent.next_message(lambda d: d["state"] == "Invited")
    assert invited["id"] == interaction_id
    assert invited["capabilities"] == ["Accept", "Reject"]
    assert_same_shape(seed("email_invited"), invited, extra_keys=EXTRA_KEYS)

    status, body = await agent.operate(interaction_id, "Accept")
    assert status == 200 and body["statusCode"] == 0
    accepted = await agent.next_message(lambda d: d["state"] == "Accepted")
    assert accepted["referenceId"] == body["referenceId"]
    assert accepted["email_object"]["text"] == "Where is my order?"
    assert accepted["email_object"]["fromAddress"] == "customer1@example.com"
    assert_same_shape(seed("email_accepted"), accepted, extra_keys=EXTRA_KEYS)
    assert accepted["sequence"] > invited["sequence"]

    status, body = await agent.operate(interaction_id, "Reply", bodyAsPlainText="On its way.")
    assert status == 200
    draft = await agent.next_message(lambda d: d["state"] == "Composing")
    # The answer names the draft, so a client needs no lookup to Send it.
    assert body["id"] == draft["id"]
    assert body["uri"] == f"/api/v2/me/interactions/{draft['id']}"
    assert draft["referenceId"] == body["referenceId"]
    assert draft["parentInteractionId"] == interaction_id
    assert draft["email_object"]["subject"] == "Re: Order 1234"
    assert draft["email_object"]["toAddress"] == "customer1@example.com"
    assert draft["capabilities"] == ["Send", "Cancel", "UpdateProperties"]

    status, body = await agent.operate(draft["id"], "Send")
    assert status == 200
    sent = await agent.next_message(lambda d: d["id"] == draft["id"])
    assert sent["state"] == "Completed" and sent["capabilities"] == []

    status, body = await agent.operate(interaction_id, "Complete")
    assert status == 200
    done = await agent.next_message(lambda d: d["id"] == interaction_id)
    assert done["state"] == "Completed" and done["referenceId"] == body["referenceId"]

    status, listed = await agent.get("/api/v2/me/interactions?fields=*")
    assert status == 200 and listed["interactions"] == []


async def test_unanswered_invitation_is_revoked_and_offered_to_the_next_agent(
    make_center: MakeCenter,
) -> None:
    center = await make_center(interactions={"invite_timeout_s": 1.0})
    first = await center.desktop("agent1", "email")
    interaction_id = await center.partner.email(**SEED_USER_DATA)
    await first.next_message(lambda d: d["state"] == "Invited")
    second = await center.desktop("agent2", "email")

    revoked = await first.next_message(lambda d: d["state"] == "Revoked", within=5)
    assert revoked["id"] == interaction_id and revoked["capabilities"] == []
    assert_same_shape(seed("email_revoked"), revoked, extra_keys=EXTRA_KEYS)
    offered = await second.next_message(lambda d: d["state"] == "Invited", within=5)
    assert offered["id"] == interaction_id


async def test_rejected_email_goes_to_another_agent_not_back(make_center: MakeCenter) -> None:
    center = await make_center()
    first = await center.desktop("agent1", "email")
    interaction_id = await center.partner.email()
    await first.next_message(lambda d: d["state"] == "Invited")
    second = await center.desktop("agent2", "email", bayeux=True)
    status, _ = await first.operate(interaction_id, "Reject")
    assert status == 200
    rejected = await first.next_message(lambda d: d["id"] == interaction_id)
    assert rejected["state"] == "Rejected" and rejected["capabilities"] == []
    offered = await second.next_message(lambda d: d["state"] == "Invited")
    assert offered["id"] == interaction_id
    status, _ = await second.operate(interaction_id, "Reject")
    # agent2 rejected too: nobody else is Ready, so agent1 may have it again
    again = await first.next_message(lambda d: d["state"] == "Invited")
    assert again["id"] == interaction_id


async def test_not_ready_revokes_pending_invites_but_keeps_accepted_work(
    make_center: MakeCenter,
) -> None:
    center = await make_center(capacity={"email": 2})
    agent = await center.desktop("agent1", "email")
    kept = await center.partner.email("first")
    await agent.next_message(lambda d: d["id"] == kept and d["state"] == "Invited")
    await agent.operate(kept, "Accept")
    pending = await center.partner.email("second")
    await agent.next_message(lambda d: d["id"] == pending and d["state"] == "Invited")
    await agent.ready("email", False)
    revoked = await agent.next_message(lambda d: d["id"] == pending)
    assert revoked["state"] == "Revoked"
    _, listed = await agent.get("/api/v2/me/interactions?fields=*")
    assert [i["id"] for i in listed["interactions"]] == [kept]
    assert listed["interactions"][0]["state"] == "Accepted"
