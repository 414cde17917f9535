"""An idle REST session ends like EndContactCenterSession; a live CometD session keeps it."""

from __future__ import annotations

import asyncio

from contact.conftest import MakeCenter


async def test_idle_session_expires_and_its_invitations_go_elsewhere(
    make_center: MakeCenter,
) -> None:
    center = await make_center(agents={"session_idle_timeout_s": 1.0})
    gone = await center.desktop("agent1", "email", bayeux=False)  # REST only, then silent
    interaction_id = await center.partner.email()
    _, seen = await center.partner.get(interaction_id)
    assert seen["interaction"]["agent"] == "agent1"
    stays = await center.desktop("agent2", "email")  # keeps a CometD session open

    offered = await stays.next_message(lambda d: d["state"] == "Invited", within=10)
    assert offered["id"] == interaction_id
    status, body = await gone.get("/api/v2/me")
    assert status == 401 and body["statusCode"] == 20
    await asyncio.sleep(1.5)  # longer than the idle timeout: the CometD session counts
    status, _ = await stays.get("/api/v2/me")
    assert status == 200
