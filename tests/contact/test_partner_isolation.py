"""Partners are isolated: each sees and acts on the interactions it created, unless
``partners.access_all`` names it; for any other it gets what an unknown id gets."""

from __future__ import annotations

from contact.conftest import Center, MakeCenter
from contact.desktop import Msg, Partner
from gateway.api.context import API

UNKNOWN = "0000NOSUCHTHING1"


def second_partner(center: Center) -> Partner:
    """Another partner, as ``gateway partners add crm2`` would make it (in the running app)."""
    token = center.gateway.app[API].directory.add_partner("crm2")
    return Partner(center.base, token)


async def attachments(partner: Partner, interaction_id: str, suffix: str = "") -> tuple[int, Msg]:
    url = f"{partner.base}/api/v2/interactions/{interaction_id}/attachments{suffix}"
    async with partner.http.get(url, headers=partner.headers) as r:
        return r.status, await r.json()


async def every_access(partner: Partner, interaction_id: str) -> list[tuple[int, Msg]]:
    return [
        await partner.get(interaction_id),
        await partner.say(interaction_id, "SendMessage", text="from the other partner"),
        await partner.say(interaction_id, "Leave"),
        await attachments(partner, interaction_id),
        await attachments(partner, interaction_id, "/0"),
    ]


async def test_another_partner_gets_404_for_everything_and_changes_nothing(
    make_center: MakeCenter,
) -> None:
    center = await make_center(names=("agent1",))
    agent = await center.desktop("agent1", "chat", "email")
    chat_id = await center.partner.chat(nickname="Ann")
    email_id = await center.partner.email()
    await center.partner.say(chat_id, "SendMessage", text="Hello?")
    other = second_partner(center)
    try:
        unknown = await every_access(other, UNKNOWN)
        assert all(status == 404 and body["statusCode"] == 6 for status, body in unknown)
        for interaction_id in (chat_id, email_id):
            # exactly the answers an id that does not exist gets: its existence is not revealed
            assert await every_access(other, interaction_id) == unknown

        # the owner still sees its chat, unchanged: no message, no Leave from the other one
        status, seen = await center.partner.get(chat_id)
        assert status == 200
        events = seen["interaction"]["chat_notifications"]
        assert [e["MessageType"] for e in events] == ["PARTY_JOINED", "NEW_MESSAGE"]
        assert events[1]["MessageText"] == "Hello?"
        invited = await agent.next_message(lambda d: d["id"] == chat_id)
        assert invited["state"] == "Invited"

        # and the other partner's own interactions are invisible to the first one
        own = await other.chat(nickname="Bob")
        status, mine = await other.get(own)
        assert status == 200 and mine["interaction"]["id"] == own
        status, body = await center.partner.get(own)
        assert (status, body["statusCode"]) == (404, 6)
    finally:
        await other.close()


async def test_a_partner_in_access_all_sees_and_acts_on_every_interaction(
    make_center: MakeCenter,
) -> None:
    center = await make_center(names=("agent1",), partners={"access_all": ["crm2"]})
    chat_id = await center.partner.chat(nickname="Ann")
    supervisor = second_partner(center)
    try:
        status, seen = await supervisor.get(chat_id)
        assert status == 200 and seen["interaction"]["id"] == chat_id
        status, body = await supervisor.say(chat_id, "SendMessage", text="Supervisor here")
        assert (status, body["statusCode"]) == (200, 0), body
        # crm is not in access_all: still only its own
        own = await supervisor.chat()
        status, _ = await center.partner.get(own)
        assert status == 404
    finally:
        await supervisor.close()
