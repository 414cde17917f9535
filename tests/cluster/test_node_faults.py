"""What a node's death and sessions' ends leave behind in Redis.

* ``kill -9`` of the node holding a session's connect: the client's next connect goes to the
  other node and continues the same session (no ``402``, no re-handshake), and the events
  published meanwhile are there.
* No Redis key outlives its session: 1,000 sessions come and go (disconnected, abandoned
  mid-poll, or simply left), and once they have expired nothing of theirs is left.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_process import Process
from redisproc import RedisServer, redis_server

WAIT_S = 5.0


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def node_env(redis: RedisServer, node: str, prefix: str) -> dict[str, str]:
    return {
        "GATEWAY_ENGINE__KIND": "redis",
        "GATEWAY_ENGINE__REDIS_URL": redis.url,
        "GATEWAY_ENGINE__NODE_ID": node,
        "GATEWAY_ENGINE__KEY_PREFIX": prefix,
        "GATEWAY_AGENTS__ALLOW_ANONYMOUS_BAYEUX": "true",
        "GATEWAY_BAYEUX__TIMEOUT_MS": "20000",
    }


async def bayeux(
    http: aiohttp.ClientSession, base: str, client_id: str, *messages: dict[str, Any]
) -> list[dict[str, Any]]:
    batch = [{"clientId": client_id, "id": str(i), **m} for i, m in enumerate(messages)]
    async with http.post(f"{base}/cometd", json=batch) as response:
        assert response.status == 200, await response.text()
        replies: list[dict[str, Any]] = await response.json()
    return replies


async def handshake(http: aiohttp.ClientSession, base: str) -> str:
    (reply,) = await bayeux(
        http,
        base,
        "",
        {
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["long-polling"],
        },
    )
    assert reply["successful"] is True, reply
    return str(reply["clientId"])


CONNECT = {"channel": "/meta/connect", "connectionType": "long-polling"}


async def test_kill_9_of_the_node_holding_a_connect(tmp_path: Path, redis: RedisServer) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    a, b = Process(tmp_path / "a"), Process(tmp_path / "b")
    for node, name in ((a, "a"), (b, "b")):
        node.data_dir.mkdir()
        node.start(**node_env(redis, name, prefix))
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            agent = await handshake(http, a.base)
            await bayeux(
                http, a.base, agent, {"channel": "/meta/subscribe", "subscription": "/chat/r"}
            )
            await bayeux(http, a.base, agent, CONNECT)
            held = asyncio.create_task(bayeux(http, a.base, agent, CONNECT))
            await asyncio.sleep(0.3)
            assert not held.done()
            a.kill9()  # mid-poll
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(held, WAIT_S)

            partner = await handshake(http, b.base)
            for n in range(3):
                (ok,) = await bayeux(
                    http, b.base, partner, {"channel": "/chat/r", "data": {"n": n}}
                )
                assert ok["successful"] is True
            # The client retries on the node that is left: the same session, every event.
            replies = await asyncio.wait_for(bayeux(http, b.base, agent, CONNECT), WAIT_S)
            assert [r.get("error") for r in replies] == [None] * len(replies)
            assert [r["data"] for r in replies if r.get("channel") == "/chat/r"] == [
                {"n": 0},
                {"n": 1},
                {"n": 2},
            ]
            assert replies[-1]["channel"] == "/meta/connect" and replies[-1]["successful"]
    finally:
        a.stop()
        b.stop()


async def test_no_key_outlives_its_session(make_gateway: Any, redis: RedisServer) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    engine = {"kind": "redis", "redis_url": redis.url, "key_prefix": prefix}
    # Sessions expire 300 ms after their last connect (interval 0 + maxInterval 300).
    timing = {"timeout_ms": 500, "max_interval_ms": 300, "interval_ms": 0}
    nodes = [await make_gateway(engine={**engine, "node_id": n}, bayeux=timing) for n in "ab"]
    gone: list[asyncio.Task[Any]] = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:

        async def one(i: int) -> None:
            base = str(nodes[i % 2].make_url("")).rstrip("/")
            other = str(nodes[(i + 1) % 2].make_url("")).rstrip("/")
            cid = await handshake(http, base)
            await bayeux(
                http, other, cid, {"channel": "/meta/subscribe", "subscription": f"/c/{i}"}
            )
            await bayeux(http, base, cid, {"channel": f"/c/{i % 7}", "data": {"i": i}})
            if i % 3 == 0:
                await bayeux(http, other, cid, {"channel": "/meta/disconnect"})
            elif i % 3 == 1:  # abandoned mid-poll: the request is cut while held
                poll = asyncio.create_task(bayeux(http, base, cid, CONNECT, CONNECT))
                gone.append(poll)
            # else: left alone, never connected

        for start in range(0, 1000, 100):
            await asyncio.gather(*(one(i) for i in range(start, start + 100)))
        await asyncio.sleep(0.1)
        for poll in gone:
            poll.cancel()
        await asyncio.gather(*gone, return_exceptions=True)

    # Every node sweeps each second; held polls end at the 500 ms timeout, then expire.
    left: list[str] = []
    for _ in range(50):
        await asyncio.sleep(0.2)
        left = [k for k in redis.command("--scan", "--pattern", prefix + "*").split() if k]
        if not left:
            break
    assert left == []
