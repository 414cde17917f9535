"""Redis paused or restarted under the gateway: clear errors meanwhile, recovery by itself.

While Redis does not answer, a Bayeux request gets ``503`` ``engine_unavailable`` in bounded
time (a websocket a close 1013): clients retry.  The outage is two log lines per node (when it
starts, when it ends), no traceback.  Once Redis is back, without a restart of the gateway,
sessions go on and an event published on one node wakes a connect held on the other again
(the doorbell connection re-subscribed by itself).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from redisproc import RedisServer, redis_server
from structlog.testing import capture_logs

from gateway.server import RunningGateway

from .test_two_nodes import Hopper, events

BOUND_S = 8.0  # a request during an outage is answered within this (command time-outs: 2 s)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server("--appendonly", "yes") as server:  # this test's own: it is stopped
        yield server


async def two_nodes(make_gateway: Any, redis: RedisServer) -> list[RunningGateway]:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    return [
        await make_gateway(
            engine={"kind": "redis", "redis_url": redis.url, "node_id": n, "key_prefix": prefix},
            bayeux={"timeout_ms": 20_000},
        )
        for n in "ab"
    ]


async def post(http: aiohttp.ClientSession, node: RunningGateway, message: dict[str, Any]) -> Any:
    async with http.post(node.make_url("/cometd"), json=[message]) as response:
        return response.status, await response.json()


async def still_works(http: aiohttp.ClientSession, a: RunningGateway, b: RunningGateway) -> None:
    """A session made before the outage: held on A, woken by a publish on B."""
    agent, partner = Hopper(http), Hopper(http)
    await agent.handshake(a)
    await agent.send(b, {"channel": "/meta/subscribe", "subscription": "/chat/room"})
    await agent.connect(a)
    yield_held = asyncio.create_task(agent.connect(a))
    await asyncio.sleep(0.3)
    await partner.handshake(b)
    await partner.send(b, {"channel": "/chat/room", "data": {"after": True}})
    assert events(await asyncio.wait_for(yield_held, 5), "/chat/room") == [{"after": True}]


def outage_lines(logs: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    noted = [e["event"] for e in logs if e["event"].startswith("redis_")]
    bad = [e for e in logs if e["log_level"] in ("error", "critical") or "exc_info" in e]
    return noted, bad


async def test_a_paused_redis(make_gateway: Any, redis: RedisServer) -> None:
    a, b = await two_nodes(make_gateway, redis)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        before = Hopper(http)
        await before.handshake(a)
        with capture_logs() as logs:
            os.kill(redis.process.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                status, body = await asyncio.wait_for(
                    post(http, b, {"channel": "/meta/handshake", "version": "1.0"}), BOUND_S
                )
                assert (status, body["error"]) == (503, "engine_unavailable")
                assert time.monotonic() - started < BOUND_S
                status, body = await asyncio.wait_for(
                    post(
                        http,
                        a,
                        {
                            "channel": "/meta/connect",
                            "clientId": before.client_id,
                            "connectionType": "long-polling",
                        },
                    ),
                    BOUND_S,
                )
                assert (status, body["error"]) == (503, "engine_unavailable")
            finally:
                os.kill(redis.process.pid, signal.SIGCONT)
            await still_works(http, a, b)
            (reply,) = await before.connect(b)  # the session from before the outage goes on
            assert reply["successful"] is True
        noted, bad = outage_lines(logs)
        assert bad == []
        assert "redis_unavailable" in noted and "redis_recovered" in noted
        assert len(noted) <= 4  # per node: one when it starts, one when it ends


async def test_a_restarted_redis(make_gateway: Any, redis: RedisServer) -> None:
    a, b = await two_nodes(make_gateway, redis)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        before = Hopper(http)
        await before.handshake(a)
        await before.send(a, {"channel": "/meta/subscribe", "subscription": "/chat/old"})
        with capture_logs() as logs:
            redis.stop()
            try:
                status, body = await asyncio.wait_for(
                    post(http, b, {"channel": "/meta/handshake", "version": "1.0"}), BOUND_S
                )
                assert (status, body["error"]) == (503, "engine_unavailable")
            finally:
                redis.start_again()
            # The append-only file kept the session and its subscription; the doorbells of
            # both nodes re-subscribe by themselves.
            partner = Hopper(http)
            for _ in range(50):  # until the nodes' connections are back
                try:
                    await partner.handshake(b)
                    break
                except AssertionError:
                    await asyncio.sleep(0.1)
            await before.connect(b)
            held = asyncio.create_task(before.connect(a))
            await asyncio.sleep(0.3)
            await partner.send(b, {"channel": "/chat/old", "data": {"kept": True}})
            assert events(await asyncio.wait_for(held, 5), "/chat/old") == [{"kept": True}]
            await still_works(http, a, b)
        noted, bad = outage_lines(logs)
        assert bad == []
        assert "redis_recovered" in noted
