"""aiocometd against the gateway, over long-polling and over websocket.

We use the maintained PyPI fork ``aiocometd-noloop`` 0.4.9 (import name ``aiocometd_noloop``):
aiocometd 0.4.5 passes ``loop=`` to asyncio APIs that no longer accept it on Python 3.10+.

Host name: the client connects to ``http://localhost:PORT/...`` although the server listens on
127.0.0.1. aiocometd uses aiohttp's default ``CookieJar``, which silently refuses cookies from IP
hosts; against ``127.0.0.1`` the ``BAYEUX_BROWSER`` cookie would never be sent back and CometD-style
session/cookie binding would answer every long-polling ``/meta/connect`` with 402 (a re-handshake
loop). With ``localhost`` the cookie round-trips, as it does for real deployments with a DNS name.
We do not relax the server (no trust-client-session option) for these tests.

aiocometd quirks these tests accommodate:
* it always handshakes over long-polling, then (for WEBSOCKET) opens a websocket and sends its
  first ``/meta/connect`` there with the clientId obtained over HTTP;
* ``Client.open()`` returns only after the reply to its first ``/meta/connect``;
* after a failed connect with ``reconnect: handshake`` it handshakes again on the transport it is
  using (over the websocket itself for WEBSOCKET) and resends ``[connect, subscribe...]`` for every
  channel it was subscribed to;
* its websocket transport passes ``receive_timeout=`` to ``aiohttp.ClientSession.ws_connect``,
  which aiohttp >= 3.10 deprecates; pyproject turns warnings into errors, so that one warning is
  ignored here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiocometd_noloop as aiocometd
import pytest

pytestmark = [
    pytest.mark.interop,
    pytest.mark.filterwarnings(
        "ignore:float parameter 'receive_timeout' is deprecated:DeprecationWarning"
    ),
]

CONNECTION_TYPES = [
    pytest.param(aiocometd.ConnectionType.LONG_POLLING, id="long-polling"),
    pytest.param(aiocometd.ConnectionType.WEBSOCKET, id="websocket"),
]
CHANNEL = "/chat/demo"


def _client_id(client: Any) -> str:
    # aiocometd has no public accessor for the clientId of the current session.
    transport = client._transport
    assert transport is not None
    client_id = transport.client_id
    assert isinstance(client_id, str)
    assert client_id
    return client_id


async def _open(gateway: Any, client: Any, connection_type: Any) -> str:
    await asyncio.wait_for(client.open(), gateway.step_timeout)
    assert client.connection_type == connection_type
    client_id = _client_id(client)
    assert await gateway.session_ids() == [client_id]
    return client_id


async def _receive(gateway: Any, client: Any) -> dict[str, Any]:
    message: dict[str, Any] = await asyncio.wait_for(client.receive(), gateway.step_timeout)
    return message


@pytest.mark.parametrize("mount", ["/cometd", "/api/v2/notifications"])
@pytest.mark.parametrize("connection_type", CONNECTION_TYPES)
async def test_subscribe_receive_unsubscribe_disconnect(
    gateway: Any, aiocometd_client: Any, connection_type: Any, mount: str
) -> None:
    client, wire = aiocometd_client(gateway.url(host="localhost", mount=mount), connection_type)
    client_id = await _open(gateway, client, connection_type)

    await asyncio.wait_for(client.subscribe(CHANNEL), gateway.step_timeout)
    assert client.subscriptions == {CHANNEL}

    payloads = [
        {"text": "hi"},
        {"text": "ünïcødé ✓", "n": 2, "nested": {"list": [1, 2.5, None, True]}},
        {"text": "third", "n": 3},
    ]
    for payload in payloads:
        assert await gateway.hub.publish(CHANNEL, payload) == 1
    received = [await _receive(gateway, client) for _ in payloads]
    assert [m["data"] for m in received] == payloads
    assert {m["channel"] for m in received} == {CHANNEL}
    # Broadcast events do not leak clientIds.
    assert all("clientId" not in m for m in received), received

    # The session survives several hold cycles: no 402 / re-handshake loop (this is what breaks
    # when the BAYEUX_BROWSER cookie does not round-trip).
    await asyncio.sleep(2.5 * gateway.hold_ms / 1000)
    assert _client_id(client) == client_id
    assert await gateway.session_ids() == [client_id]
    assert client.connection_type == connection_type
    assert len(wire.messages("out", "/meta/handshake")) == 1, wire.describe()

    await asyncio.wait_for(client.unsubscribe(CHANNEL), gateway.step_timeout)
    assert client.subscriptions == set()
    assert await gateway.hub.publish(CHANNEL, {"text": "after unsubscribe"}) == 0
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.receive(), gateway.quiet_period)

    await asyncio.wait_for(client.close(), gateway.step_timeout)
    assert client.closed
    await gateway.wait_sessions(lambda ids: client_id not in ids)
    disconnects = wire.messages("in", "/meta/disconnect")
    assert disconnects, wire.describe()
    assert disconnects[-1]["successful"] is True, wire.describe()


@pytest.mark.parametrize("connection_type", CONNECTION_TYPES)
async def test_recovers_from_expired_session(
    gateway: Any, aiocometd_client: Any, connection_type: Any
) -> None:
    client, wire = aiocometd_client(gateway.url(host="localhost"), connection_type)
    old_id = await _open(gateway, client, connection_type)
    await asyncio.wait_for(client.subscribe(CHANNEL), gateway.step_timeout)

    assert await gateway.hub.publish(CHANNEL, {"text": "before expiry"}) == 1
    assert (await _receive(gateway, client))["data"] == {"text": "before expiry"}

    # Drop the session server-side. The held /meta/connect returns (at once, or at the latest at
    # the hold timeout), the next connect gets 402::session_unknown with reconnect=handshake,
    # aiocometd handshakes again and resubscribes automatically (it sends [connect, subscribe]
    # with the new clientId).
    assert await gateway.hub.expire_session(old_id) is True
    ids = await gateway.wait_sessions(
        lambda ids: len(ids) == 1 and ids[0] != old_id, within=gateway.recovery_timeout
    )
    new_id = ids[0]

    # Wait until the automatic resubscribe has reached the server: publish until the hub queues
    # the message for a session. Unsubscribed sessions get nothing (publish returns 0), so exactly
    # one message is delivered.
    deadline = time.monotonic() + gateway.step_timeout
    attempt = 0
    while await gateway.hub.publish(CHANNEL, {"text": "after recovery", "attempt": attempt}) != 1:
        if time.monotonic() > deadline:
            pytest.fail(f"aiocometd did not resubscribe after re-handshake\n{wire.describe()}")
        attempt += 1
        await asyncio.sleep(0.05)
    after = await _receive(gateway, client)
    assert after["data"] == {"text": "after recovery", "attempt": attempt}
    assert after["channel"] == CHANNEL

    assert _client_id(client) == new_id != old_id
    assert client.connection_type == connection_type
    assert client.subscriptions == {CHANNEL}

    # The re-handshake was caused by a 402 + reconnect=handshake on /meta/connect.
    failed_connects = [m for m in wire.messages("in", "/meta/connect") if not m["successful"]]
    assert failed_connects, wire.describe()
    assert failed_connects[0]["error"].startswith("402:"), failed_connects[0]
    assert failed_connects[0]["advice"]["reconnect"] == "handshake", failed_connects[0]

    # Nothing else arrived (no duplicates).
    assert not client.has_pending_messages

    await asyncio.wait_for(client.close(), gateway.step_timeout)
    await gateway.wait_sessions(lambda ids: new_id not in ids)
