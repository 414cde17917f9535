"""Transfer, PlaceInQueue, UpdateUserData and channel notifications, end to end."""

from __future__ import annotations

from contact.conftest import MakeCenter


async def test_transfer_to_an_agent_invites_them_and_ends_it_for_the_sender(
    make_center: MakeCenter,
) -> None:
    center = await make_center()
    one = await center.desktop("agent1", "email")
    interaction_id = await center.partner.email()
    await one.next_message(lambda d: d["state"] == "Invited")
    await one.operate(interaction_id, "Accept")
    await one.next_message(lambda d: d["state"] == "Accepted")
    two = await center.desktop("agent2", "email")

    status, body = await one.operate(interaction_id, "Transfer", userName="agent2")
    assert status == 200
    gone = await one.next_message(lambda d: d["id"] == interaction_id)
    assert gone["state"] == "Completed" and gone["referenceId"] == body["referenceId"]
    offered = await two.next_message(lambda d: d["state"] == "Invited")
    assert offered["id"] == interaction_id
    status, _ = await two.operate(interaction_id, "Accept")
    assert status == 200
    _, seen = await center.partner.get(interaction_id)
    assert (seen["interaction"]["state"], seen["interaction"]["agent"]) == ("Accepted", "agent2")


async def test_transfer_to_an_agent_who_cannot_take_it_changes_nothing(
    make_center: MakeCenter,
) -> None:
    center = await make_center()
    one = await center.desktop("agent1", "email")
    await center.desktop("agent2")  # logged in, not Ready
    interaction_id = await center.partner.email()
    await one.next_message(lambda d: d["state"] == "Invited")
    await one.operate(interaction_id, "Accept")
    status, body = await one.operate(interaction_id, "Transfer", userName="agent2")
    assert status == 409 and body["statusCode"] == 2
    status, body = await one.operate(interaction_id, "Transfer", userName="nobody")
    assert status == 404 and body["statusCode"] == 6
    _, listed = await one.get("/api/v2/me/interactions?fields=*")
    assert [(i["id"], i["state"]) for i in listed["interactions"]] == [(interaction_id, "Accepted")]


async def test_place_in_queue_routes_it_again_through_that_queue(make_center: MakeCenter) -> None:
    queues = [
        {"name": "Sales", "channel": "email"},
        {"name": "Support", "channel": "email"},
    ]
    center = await make_center(
        interactions={"queues": queues}, agents={"default_queues": ["Sales", "Support"]}
    )
    one = await center.desktop("agent1", "email")
    interaction_id = (
        await center.partner.create(
            {"channel": "email", "queue": "Sales", "email": {"from": "c@example.com"}}
        )
    )[1]["id"]
    await one.next_message(lambda d: d["state"] == "Invited" and d["currentQueue"] == "Sales")
    await one.operate(interaction_id, "Accept")
    await one.next_message(lambda d: d["state"] == "Accepted")
    status, _ = await one.operate(interaction_id, "PlaceInQueue", queueName="Support")
    assert status == 200
    assert (await one.next_message(lambda d: d["id"] == interaction_id))["state"] == "Completed"
    again = await one.next_message(lambda d: d["state"] == "Invited")
    assert again["id"] == interaction_id and again["currentQueue"] == "Support"


async def test_update_user_data_merges_and_is_notified(make_center: MakeCenter) -> None:
    center = await make_center()
    agent = await center.desktop("agent1", "email")
    interaction_id = await center.partner.email(CustomerSegment="gold")
    await agent.next_message(lambda d: d["state"] == "Invited")
    await agent.operate(interaction_id, "Accept")
    await agent.next_message(lambda d: d["state"] == "Accepted")
    status, body = await agent.operate(
        interaction_id, "UpdateUserData", userData={"DISP_KEY": "resolved"}
    )
    assert status == 200
    updated = await agent.next_message(lambda d: d.get("referenceId") == body["referenceId"])
    assert updated["userData"]["DISP_KEY"] == "resolved"
    assert updated["userData"]["CustomerSegment"] == "gold"


async def test_ready_and_not_ready_are_notified_on_v2_me_channels(
    make_center: MakeCenter,
) -> None:
    center = await make_center()
    agent = await center.desktop("agent1")
    await agent.start("email")
    await agent.post("/api/v2/me/channels/email", {"operationName": "NotReady", "reason": "Lunch"})
    seen = []
    while True:
        message = await agent.next_message(channel="/v2/me/channels")
        assert message["messageType"] == "ChannelStateChangeMessageV2"
        (email,) = message["channels"]
        seen.append(email["userState"])
        if email["userState"]["state"] == "NotReady" and email["userState"].get("reason"):
            break
    assert [s["state"] for s in seen] == ["NotReady", "Ready", "NotReady"]
    assert seen[-1]["reason"] == "Lunch"
