"""kill -9 and restart: every interaction is back; invitations are offered again, accepted
work stays with its agent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_process import Process

from contact.desktop import Desktop, Partner, write_users

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def process(tmp_path: Path) -> Iterator[Process]:
    p = Process(tmp_path)
    yield p
    p.stop()


async def test_kill_9_loses_nothing(process: Process) -> None:
    _, token = write_users(process.data_dir, ["agent1"], email=3)
    process.start()
    base = f"http://127.0.0.1:{process.port}"
    partner = Partner(base, token)
    agent = Desktop(base, "agent1")
    try:
        await agent.login()
        await agent.connect_bayeux()
        await agent.start("email")
        accepted_id = await partner.email("kept")
        await agent.next_message(lambda d: d["id"] == accepted_id and d["state"] == "Invited")
        status, _ = await agent.operate(accepted_id, "Accept")
        assert status == 200
        done_id = await partner.email("done")
        await agent.next_message(lambda d: d["id"] == done_id and d["state"] == "Invited")
        await agent.operate(done_id, "Accept")
        await agent.operate(done_id, "Complete")
        invited_id = await partner.email("pending")
        await agent.next_message(lambda d: d["id"] == invited_id and d["state"] == "Invited")

        process.kill9()
        await agent.close()
        process.start()

        agent = Desktop(base, "agent1")
        status, _ = await agent.login()
        assert status == 200
        _, listed = await agent.get("/api/v2/me/interactions?fields=*")
        assert [(i["id"], i["state"]) for i in listed["interactions"]] == [
            (accepted_id, "Accepted")
        ]
        for interaction_id, state, owner in (
            (accepted_id, "Accepted", "agent1"),
            (done_id, "Completed", "agent1"),
            (invited_id, "Queued", None),
        ):
            _, seen = await partner.get(interaction_id)
            assert (seen["interaction"]["state"], seen["interaction"]["agent"]) == (state, owner)

        await agent.connect_bayeux()
        await agent.start("email")
        again = await agent.next_message(lambda d: d["state"] == "Invited")
        assert again["id"] == invited_id
        status, _ = await agent.operate(accepted_id, "Complete")
        assert status == 200
    finally:
        await agent.close()
        await partner.close()
