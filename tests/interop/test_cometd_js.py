"""The official CometD JavaScript client (npm ``cometd`` 9 + ``cometd-nodejs-client`` 2, run by
Node) against the gateway, over long-polling and over websocket.

The client process is ``tests/node/client.mjs`` (see its header for the line protocol). It
subscribes the ``--channel`` channels in its ``/meta/handshake`` listener, on every successful
handshake, like a real CometD application.

The Node client connects to ``127.0.0.1``: cometd-nodejs-client keeps its own per-process cookie
jar keyed by host name and accepts cookies for IP hosts, so the ``BAYEUX_BROWSER`` cookie
round-trips.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.interop

TRANSPORTS = ("long-polling", "websocket")
MOUNTS = ("/cometd", "/api/v2/notifications")
CHANNEL = "/chat/demo"


async def _handshake_and_subscribe(gateway: Any, client: Any, transport: str) -> str:
    handshake = await client.expect("handshake")
    if not handshake["successful"]:
        client.fail(f"handshake failed: {handshake}")
    # The client really uses the transport under test (with websocket, a failed upgrade would
    # make it fall back to long-polling silently).
    assert handshake["transport"] == transport, handshake
    client_id = handshake["clientId"]
    assert isinstance(client_id, str)
    assert client_id
    assert client_id in await gateway.session_ids()

    subscribed = await client.expect("subscribed")
    assert subscribed["successful"] is True, subscribed
    assert subscribed["channel"] == CHANNEL
    assert subscribed["clientId"] == client_id
    return client_id


@pytest.mark.parametrize("mount", MOUNTS)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_subscribe_receive_unsubscribe_disconnect(
    gateway: Any, node_client: Any, transport: str, mount: str
) -> None:
    client = await node_client(gateway.url(mount=mount), transport, channels=[CHANNEL])
    client_id = await _handshake_and_subscribe(gateway, client, transport)

    # Server-published messages arrive, unchanged and in order.
    payloads = [
        {"text": "hi"},
        {"text": "ünïcødé ✓ \u2028", "n": 2, "nested": {"list": [1, 2.5, None, True]}},
        {"text": "third", "n": 3},
    ]
    for payload in payloads:
        assert await gateway.hub.publish(CHANNEL, payload) == 1
    received = [await client.expect("message") for _ in payloads]
    assert [m["data"] for m in received] == payloads
    assert {m["channel"] for m in received} == {CHANNEL}
    assert {m["clientId"] for m in received} == {client_id}
    assert {m["transport"] for m in received} == {transport}

    # Still the same transport once connected (no fallback after the first connect).
    await client.send("status")
    status = await client.expect("status")
    assert status["connected"] is True, status
    assert status["status"] in ("connected", "connecting"), status
    assert status["transport"] == transport
    assert status["clientId"] == client_id

    # Unsubscribe: acknowledged, and a later publish is not delivered.
    await client.send("unsubscribe", channel=CHANNEL)
    unsubscribed = await client.expect("unsubscribed")
    assert unsubscribed["successful"] is True, unsubscribed
    assert unsubscribed["subscription"] == CHANNEL
    assert await gateway.hub.publish(CHANNEL, {"text": "after unsubscribe"}) == 0
    await client.expect_none("message", gateway.quiet_period)

    # Disconnect: acknowledged, the script exits cleanly and the session is gone server-side.
    await client.send("disconnect")
    disconnected = await client.expect("disconnected")
    assert disconnected["successful"] is True, disconnected
    assert await client.wait_exit() == 0
    await gateway.wait_sessions(lambda ids: client_id not in ids)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_recovers_from_expired_session(
    gateway: Any, node_client: Any, transport: str
) -> None:
    client = await node_client(gateway.url(), transport, channels=[CHANNEL])
    old_id = await _handshake_and_subscribe(gateway, client, transport)
    await client.expect("connected")

    assert await gateway.hub.publish(CHANNEL, {"text": "before expiry"}) == 1
    before = await client.expect("message")
    assert before["data"] == {"text": "before expiry"}

    # Drop the session server-side, as if maxInterval had passed. The held /meta/connect returns
    # (the gateway wakes it at once; at the latest it returns at the hold timeout), the next one
    # gets 402::session_unknown + reconnect=handshake, and the client handshakes again
    # (reestablish=true) and resubscribes in its handshake listener.
    assert await gateway.hub.expire_session(old_id) is True
    assert old_id not in await gateway.session_ids()

    rehandshake = await client.expect("handshake", within=gateway.recovery_timeout)
    if not rehandshake["successful"]:
        client.fail(f"re-handshake failed: {rehandshake}")
    assert rehandshake["reestablish"] is True, rehandshake
    new_id = rehandshake["clientId"]
    assert new_id != old_id
    assert rehandshake["transport"] == transport

    # What made the client re-handshake: a failed /meta/connect answered with 402 and
    # reconnect=handshake (not, say, a transport error).
    failures = [e for e in client.events if e["event"] == "connect_failed"]
    assert failures, "the client re-handshook without a failed /meta/connect"
    assert str(failures[-1].get("error", "")).startswith("402:"), failures[-1]
    assert (failures[-1].get("advice") or {}).get("reconnect") == "handshake", failures[-1]

    resubscribed = await client.expect("subscribed")
    assert resubscribed["successful"] is True, resubscribed
    assert resubscribed["clientId"] == new_id

    assert await gateway.hub.publish(CHANNEL, {"text": "after recovery"}) == 1
    after = await client.expect("message")
    assert after["data"] == {"text": "after recovery"}
    assert after["clientId"] == new_id
    assert after["transport"] == transport

    ids = await gateway.session_ids()
    assert new_id in ids
    assert old_id not in ids

    # Exactly one delivery per publish, before and after recovery.
    assert [e["data"] for e in client.events if e["event"] == "message"] == [
        {"text": "before expiry"},
        {"text": "after recovery"},
    ]

    await client.send("disconnect")
    assert (await client.expect("disconnected"))["successful"] is True
    assert await client.wait_exit() == 0
