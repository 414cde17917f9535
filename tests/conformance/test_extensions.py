"""bayeux.md §10 "Extensions", items 46-48, over every transport."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import HUB

from .client import STEP_TIMEOUT
from .conftest import AT_ONCE_S, HOLD_MS, OpenClient, timed

HELD_TIMEOUT = HOLD_MS / 1000 + STEP_TIMEOUT


async def test_10_46_ack_extension(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    publisher = await open_client(gateway, transport)
    await publisher.open_session()

    shaken = await client.handshake(ext={"ack": True})
    assert shaken["successful"] is True
    assert shaken["ext"]["ack"] is True
    assert (await client.subscribe("/c46"))["successful"] is True

    async def connect(acked: int, **fields: Any) -> tuple[int, list[dict[str, Any]]]:
        """A connect acknowledging batch ``acked``; its batch number and events, in order."""
        response, elapsed = await timed(
            client.exchange(
                [client.connect_message(ext={"ack": acked}, **fields)], within=HELD_TIMEOUT
            )
        )
        assert elapsed < AT_ONCE_S, "connect with something to (re)send must return at once"
        *events, reply = response
        assert reply["channel"] == "/meta/connect"
        assert reply["successful"] is True
        batch = reply["ext"]["ack"]
        assert type(batch) is int
        client.take_events()
        return batch, events

    first, events = await connect(0)  # first connect: answered at once
    assert events == []
    m1 = {"channel": "/c46", "data": {"m": 1}}
    assert (await publisher.publish("/c46", {"m": 1}))["successful"] is True

    second, events = await connect(first)
    assert second == first + 1
    assert events == [m1]

    # The client did not get that response: it acknowledges the previous batch again.
    third, events = await connect(first)
    assert third == second + 1
    assert events == [m1], "an unacknowledged event must be re-sent"

    m2 = {"channel": "/c46", "data": {"m": 2}}
    assert (await publisher.publish("/c46", {"m": 2}))["successful"] is True
    fourth, events = await connect(third)
    assert fourth == third + 1
    assert events == [m2], "an acknowledged event must not be re-sent"

    fifth, events = await connect(fourth, advice={"timeout": 0})
    assert fifth == fourth + 1
    assert events == []


async def test_10_47_timesync(gateway: TestServer, open_client: OpenClient, transport: str) -> None:
    client = await open_client(gateway, transport)
    await client.open_session()
    tc = int(time.time() * 1000)
    reply = await client.connect(
        advice={"timeout": 0}, ext={"timesync": {"tc": tc, "l": 0, "o": 0}}
    )
    assert reply["successful"] is True
    sync = reply["ext"]["timesync"]
    assert sync["tc"] == tc
    assert type(sync["ts"]) is int
    assert abs(sync["ts"] - tc) < 60_000  # the server's wall clock, in ms
    assert type(sync["p"]) is int
    assert sync["p"] >= 0


UNKNOWN_EXT = {"com.acme.x": {"y": 1}}


@pytest.mark.parametrize(
    "operation",
    ["handshake", "connect", "subscribe", "publish", "unsubscribe", "disconnect"],
)
async def test_10_48_unknown_ext_ignored(
    gateway: TestServer, open_client: OpenClient, transport: str, operation: str
) -> None:
    client = await open_client(gateway, transport)
    if operation == "handshake":
        reply = await client.handshake(ext=UNKNOWN_EXT)
    else:
        await client.open_session()
        if operation == "connect":
            reply = await client.connect(ext=UNKNOWN_EXT, advice={"timeout": 0})
        elif operation == "subscribe":
            reply = await client.subscribe("/c48", ext=UNKNOWN_EXT)
        elif operation == "publish":
            reply = await client.publish("/c48", {"n": 1}, ext=UNKNOWN_EXT)
        elif operation == "unsubscribe":
            reply = await client.unsubscribe("/c48", ext=UNKNOWN_EXT)
        else:
            reply = await client.disconnect(ext=UNKNOWN_EXT)
    assert reply["successful"] is True, reply
    assert "com.acme.x" not in reply.get("ext", {})


async def test_a_client_that_never_acknowledges_is_bounded_by_its_queue(
    make_gateway: Any, transport: str, open_client: OpenClient
) -> None:
    """Events handed out wait for their acknowledgement, at most ``queue.max_messages`` of
    them; beyond that they stay queued and the overflow policy (disconnect) ends the session,
    so a client that connects and never acknowledges cannot grow the gateway."""
    server = await make_gateway(
        bayeux={"timeout_ms": 500},
        queue={"max_messages": 10, "overflow": "disconnect"},
    )
    hub = server.app[HUB]
    client = await open_client(server, transport)
    shaken = await client.handshake(ext={"ack": True})
    assert shaken["ext"]["ack"] is True
    assert (await client.subscribe("/c49"))["successful"] is True
    await client.exchange([client.connect_message(ext={"ack": 0})], within=HELD_TIMEOUT)
    client_id = client.client_id
    seen = 0
    for _ in range(10):
        for n in range(5):
            await hub.publish("/c49", {"n": n})
        if client_id not in await hub.session_ids():
            break
        response = await client.exchange(
            [client.connect_message(ext={"ack": 0}, advice={"timeout": 0})], within=HELD_TIMEOUT
        )
        client.take_events()
        *events, reply = response
        if not reply["successful"]:
            break
        seen = len(events)
        assert seen <= 10  # never more than the queue's limit outstanding
    assert client_id not in await hub.session_ids(), "the never-acknowledging session went on"
    assert seen == 10
    assert hub.stats["queue_overflow"] > 0
