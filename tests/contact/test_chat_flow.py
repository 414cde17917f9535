"""A chat from a partner's customer to an agent and back, in the seed's wire format."""

from __future__ import annotations

import pytest
from wire_shape import assert_same_shape

from contact.conftest import MakeCenter
from contact.test_email_flow import seed
from gateway.interactions.wire import EXTRA_KEYS

SEED_CHAT_DATA = seed("chat_invited")["userData"]


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
async def test_chat_invite_accept_messages_customer_leaves_complete(
    make_center: MakeCenter, transport: str
) -> None:
    center = await make_center()
    agent = await center.desktop("agent1", "chat", transport=transport)
    partner = center.partner
    chat_id = await partner.chat("CustomerName", **SEED_CHAT_DATA)
    for text in ("message 1", "message 2"):
        status, _ = await partner.say(chat_id, "SendMessage", text=text)
        assert status == 200

    invited = await agent.next_message(lambda d: d["state"] == "Invited")
    assert invited["id"] == chat_id and invited["channel"] == "chat"
    assert_same_shape(seed("chat_invited"), invited, extra_keys=EXTRA_KEYS)

    status, body = await agent.operate(chat_id, "Accept")
    assert status == 200
    accepted = await agent.next_message(lambda d: d["state"] == "Accepted")
    assert_same_shape(seed("chat_accepted"), accepted, extra_keys=EXTRA_KEYS)
    transcript = accepted["chat_notifications"]
    assert [(n["EventId"], n["MessageType"]) for n in transcript] == [
        (1, "PARTY_JOINED"),
        (2, "NEW_MESSAGE"),
        (3, "NEW_MESSAGE"),
        (4, "PARTY_JOINED"),
    ]
    assert transcript[0]["UserType"] == "Client" and transcript[0]["NickName"] == "CustomerName"
    assert transcript[1]["MessageText"] == "message 1"
    assert transcript[3]["UserType"] == "Agent"
    assert accepted["sessionId"] == chat_id and accepted["referenceId"] == body["referenceId"]

    await partner.say(chat_id, "SendMessage", text="message 3")
    news = await agent.next_message(lambda d: d.get("chat_notifications"))
    assert_same_shape(seed("chat_notifications"), news, extra_keys=EXTRA_KEYS)
    assert [(n["EventId"], n["MessageText"]) for n in news["chat_notifications"]] == [
        (5, "message 3")
    ]

    status, body = await agent.operate(chat_id, "SendMessage", text="Hello, how can I help?")
    assert status == 200
    echo = await agent.next_message(lambda d: d.get("referenceId") == body["referenceId"])
    assert echo["chat_notifications"][0]["MessageText"] == "Hello, how can I help?"
    _, seen = await partner.get(chat_id)
    assert seen["interaction"]["chat_notifications"][-1]["MessageText"] == "Hello, how can I help?"
    assert seen["interaction"]["agent"] == "agent1"

    await partner.say(chat_id, "Leave")
    left = await agent.next_message(lambda d: d.get("chat_notifications"))
    assert left["chat_notifications"][0]["MessageType"] == "PARTY_LEFT"
    assert left["state"] == "Accepted"  # the agent still completes it
    status, _ = await partner.say(chat_id, "SendMessage", text="too late")
    assert status == 409

    status, body = await agent.operate(chat_id, "Complete")
    assert status == 200
    done = await agent.next_message(lambda d: d["state"] == "Completed")
    assert done["id"] == chat_id
    _, seen = await partner.get(chat_id)
    assert seen["interaction"]["state"] == "Completed"


async def test_customer_leaving_before_accept_revokes_the_invitation(
    make_center: MakeCenter,
) -> None:
    center = await make_center()
    agent = await center.desktop("agent1", "chat")
    chat_id = await center.partner.chat(**SEED_CHAT_DATA)
    await agent.next_message(lambda d: d["state"] == "Invited")
    await center.partner.say(chat_id, "Leave")
    revoked = await agent.next_message(lambda d: d["id"] == chat_id)
    assert revoked["state"] == "Revoked" and revoked["capabilities"] == []
    assert_same_shape(seed("chat_revoked"), revoked, extra_keys=EXTRA_KEYS)
    _, seen = await center.partner.get(chat_id)
    assert seen["interaction"]["state"] == "Completed"


async def test_chat_capacity_counts_pending_invitations(make_center: MakeCenter) -> None:
    center = await make_center(names=("agent1",), capacity={"chat": 2})
    agent = await center.desktop("agent1", "chat")
    ids = [await center.partner.chat(f"c{i}") for i in range(3)]
    first = await agent.next_message(lambda d: d["state"] == "Invited")
    second = await agent.next_message(lambda d: d["state"] == "Invited")
    assert {first["id"], second["id"]} == set(ids[:2])
    assert await agent.quiet(0.3) == []  # the third waits: two invitations fill capacity
    await agent.operate(first["id"], "Reject")
    # The freed slot goes to the chat not yet refused, not back to the rejected one...
    third = await agent.next_message(lambda d: d["state"] == "Invited")
    assert third["id"] == ids[2]
    # ...which comes back when a slot frees and nobody else can take it.
    await agent.operate(second["id"], "Accept")
    await agent.operate(second["id"], "Complete")
    again = await agent.next_message(lambda d: d["state"] == "Invited")
    assert again["id"] == first["id"]
