"""Two gateway nodes on one Redis: no sticky sessions.

Every request of one session goes to whichever node the test picks (a handshake on A, a
subscribe on B, a connect held on A, a publish on B, a websocket on B), as a balancer without
stickiness would send them; nothing answers ``402``, and an event published on one node reaches
the connect held on the other.  The nodes are two gateways in this process (each with its own
store), sharing a real redis-server the test starts.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from redisproc import RedisServer, redis_server

from gateway.server import RunningGateway

WAIT_S = 5.0  # far below the hold (20 s): an answer before this was woken, not timed out


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


async def two_nodes(make_gateway: Any, redis: RedisServer) -> tuple[RunningGateway, ...]:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    nodes = []
    for name in ("a", "b"):
        nodes.append(
            await make_gateway(
                engine={
                    "kind": "redis",
                    "redis_url": redis.url,
                    "node_id": name,
                    "key_prefix": prefix,
                },
                bayeux={"timeout_ms": 20_000},
            )
        )
    return tuple(nodes)


class Hopper:
    """One Bayeux long-polling client whose requests go to the node each call names.

    One cookie jar for both nodes (a browser keeps ``BAYEUX_BROWSER`` per host, whatever the
    port), so the session's cookie travels with it from node to node."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.client_id = ""
        self.next_id = 0

    async def send(self, node: RunningGateway, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        batch = []
        for message in messages:
            self.next_id += 1
            batch.append({"id": str(self.next_id), "clientId": self.client_id, **message})
        async with self.http.post(node.make_url("/cometd"), json=batch) as response:
            assert response.status == 200, await response.text()
            replies: list[dict[str, Any]] = await response.json()
        for reply in replies:
            assert reply.get("error") is None, reply
        return replies

    async def handshake(self, node: RunningGateway) -> None:
        (reply,) = await self.send(
            node,
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling", "websocket"],
            },
        )
        assert reply["successful"] is True
        self.client_id = reply["clientId"]

    async def connect(self, node: RunningGateway) -> list[dict[str, Any]]:
        return await self.send(node, {"channel": "/meta/connect", "connectionType": "long-polling"})


def events(replies: list[dict[str, Any]], channel: str) -> list[Any]:
    return [r["data"] for r in replies if r.get("channel") == channel and "data" in r]


async def test_every_request_on_another_node(make_gateway: Any, redis: RedisServer) -> None:
    a, b = await two_nodes(make_gateway, redis)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        agent, partner = Hopper(http), Hopper(http)
        await agent.handshake(a)
        (subscribed,) = await agent.send(
            b, {"channel": "/meta/subscribe", "subscription": "/chat/room"}
        )
        assert subscribed["successful"] is True
        first = await agent.connect(a)  # the first connect is answered at once
        assert first[-1]["successful"] is True

        held = asyncio.create_task(agent.connect(b))
        await asyncio.sleep(0.2)  # the connect is held on B
        assert not held.done()
        await partner.handshake(b)
        (published,) = await partner.send(a, {"channel": "/chat/room", "data": {"n": 1}})
        assert published["successful"] is True
        replies = await asyncio.wait_for(held, WAIT_S)
        assert events(replies, "/chat/room") == [{"n": 1}]

        # And back: held on A, published on B.
        held = asyncio.create_task(agent.connect(a))
        await asyncio.sleep(0.2)
        await partner.send(b, {"channel": "/chat/room", "data": {"n": 2}})
        assert events(await asyncio.wait_for(held, WAIT_S), "/chat/room") == [{"n": 2}]


async def test_events_wait_in_redis_for_the_next_connect_on_any_node(
    make_gateway: Any, redis: RedisServer
) -> None:
    a, b = await two_nodes(make_gateway, redis)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        agent = Hopper(http)
        await agent.handshake(a)
        await agent.send(a, {"channel": "/meta/subscribe", "subscription": "/chat/room"})
        await agent.connect(a)
        partner = Hopper(http)
        await partner.handshake(b)
        for n in range(3):  # no connect held anywhere: they queue
            await partner.send(b, {"channel": "/chat/room", "data": {"n": n}})
        assert events(await agent.connect(b), "/chat/room") == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_a_long_polling_session_continues_on_a_websocket_of_the_other_node(
    make_gateway: Any, redis: RedisServer
) -> None:
    a, b = await two_nodes(make_gateway, redis)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        agent = Hopper(http)
        await agent.handshake(a)
        await agent.send(a, {"channel": "/meta/subscribe", "subscription": "/chat/room"})
        partner = Hopper(http)
        await partner.handshake(a)
        async with http.ws_connect(b.make_url("/cometd")) as ws:
            connect = {"channel": "/meta/connect", "clientId": agent.client_id}
            await ws.send_str(json.dumps([{**connect, "connectionType": "websocket", "id": "c1"}]))
            first = await ws.receive_json(timeout=WAIT_S)
            assert first[-1]["successful"] is True
            await ws.send_str(json.dumps([{**connect, "connectionType": "websocket", "id": "c2"}]))
            await asyncio.sleep(0.2)  # held on B, over the websocket
            await partner.send(a, {"channel": "/chat/room", "data": {"n": 7}})
            pushed = await ws.receive_json(timeout=WAIT_S)
            assert events(pushed, "/chat/room") == [{"n": 7}]


async def test_ack_extension_resends_on_another_node_what_was_not_acknowledged(
    make_gateway: Any, redis: RedisServer
) -> None:
    """CometD's ack extension across nodes: a connect reply lost on its way (the client
    acknowledges an older batch) is re-sent by the other node; acknowledged events never
    come twice."""
    a, b = await two_nodes(make_gateway, redis)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        agent, partner = Hopper(http), Hopper(http)
        (shaken,) = await agent.send(
            a,
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
                "ext": {"ack": True},
            },
        )
        assert shaken["ext"]["ack"] is True
        agent.client_id = shaken["clientId"]
        await agent.send(b, {"channel": "/meta/subscribe", "subscription": "/chat/room"})
        await partner.handshake(b)
        for n in range(2):
            await partner.send(b, {"channel": "/chat/room", "data": {"n": n}})

        def connect(acked: int) -> dict[str, Any]:
            return {
                "channel": "/meta/connect",
                "connectionType": "long-polling",
                "ext": {"ack": acked},
            }

        got = await agent.send(a, connect(0))
        assert events(got, "/chat/room") == [{"n": 0}, {"n": 1}]
        first_batch = got[-1]["ext"]["ack"]
        # That reply "was lost": the client acknowledges nothing, on the other node.
        again = await agent.send(b, connect(0))
        assert events(again, "/chat/room") == [{"n": 0}, {"n": 1}]
        batch = again[-1]["ext"]["ack"]
        assert batch > first_batch
        # Acknowledged: a new event comes alone, on the first node again.
        await partner.send(a, {"channel": "/chat/room", "data": {"n": 2}})
        last = await agent.send(a, connect(batch))
        assert events(last, "/chat/room") == [{"n": 2}]


async def test_a_node_that_stops_hands_its_clients_to_the_other(
    make_gateway: Any, redis: RedisServer
) -> None:
    """A graceful stop answers the held connect at once; the client's next connect, on the
    other node, continues the session and gets what was published meanwhile."""
    a, b = await two_nodes(make_gateway, redis)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        agent, partner = Hopper(http), Hopper(http)
        await agent.handshake(a)
        await agent.send(a, {"channel": "/meta/subscribe", "subscription": "/chat/room"})
        await agent.connect(a)
        held = asyncio.create_task(agent.connect(a))
        await asyncio.sleep(0.2)
        closing = asyncio.create_task(a.close())
        (answer,) = await asyncio.wait_for(held, WAIT_S)  # not the 20 s hold
        assert answer["successful"] is True
        assert answer.get("advice", {}).get("reconnect", "retry") == "retry"
        await asyncio.wait_for(closing, 10)
        await partner.handshake(b)
        await partner.send(b, {"channel": "/chat/room", "data": {"n": 1}})
        assert events(await agent.connect(b), "/chat/room") == [{"n": 1}]


async def test_a_connect_on_another_node_replaces_the_one_held_here(
    make_gateway: Any, redis: RedisServer
) -> None:
    """A client whose held connect on A it gave up (a network glitch, a balancer's time-out)
    connects again on B: A answers its old connect as replaced at once, and the next event goes
    to B's connect only, never into A's connection, which nobody reads any more."""
    a, b = await two_nodes(make_gateway, redis)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        agent, partner = Hopper(http), Hopper(http)
        await agent.handshake(a)
        await agent.send(a, {"channel": "/meta/subscribe", "subscription": "/chat/room"})
        await agent.connect(a)
        connect = [
            {
                "channel": "/meta/connect",
                "clientId": agent.client_id,
                "connectionType": "long-polling",
                "id": "old",
            }
        ]
        old = asyncio.create_task(http.post(a.make_url("/cometd"), json=connect))
        await asyncio.sleep(0.2)
        assert not old.done()
        new = asyncio.create_task(agent.connect(b))
        replaced = await asyncio.wait_for(old, WAIT_S)  # not the 20 s hold
        assert replaced.status == 500  # bayeux.duplicate_connect_status
        assert (await replaced.json())["error"] == "connect_replaced"
        await asyncio.sleep(0.2)
        await partner.handshake(a)
        await partner.send(a, {"channel": "/chat/room", "data": {"n": 1}})
        assert events(await asyncio.wait_for(new, WAIT_S), "/chat/room") == [{"n": 1}]
