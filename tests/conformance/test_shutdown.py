"""A graceful stop answers every held connect at once (so that clients move, with their
session, to another node or wait for this one), over both HTTP paths and websocket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.app import HUB

from .client import LongPollingClient, WebSocketClient

FAST = pytest.mark.parametrize("fast_http", [True, False], ids=["fast", "aiohttp"])


async def until(condition: Any) -> None:
    deadline = asyncio.get_running_loop().time() + 5.0
    while not condition():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)


@FAST
@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
async def test_a_stop_answers_held_connects_at_once(
    make_gateway: Any, fast_http: bool, transport: str
) -> None:
    server = await make_gateway(server={"fast_http": fast_http}, bayeux={"timeout_ms": 60_000})
    url = str(server.make_url("/cometd"))
    client = LongPollingClient(url) if transport == "long-polling" else WebSocketClient(url)
    try:
        if isinstance(client, WebSocketClient):
            await client.open()
        await client.open_session("/chat/demo")
        held = asyncio.create_task(client.connect(within=60))
        await until(lambda: server.app[HUB].held_count == 1)
        closing = asyncio.create_task(server.close())
        reply = await asyncio.wait_for(held, 5)  # not the 60 s hold
        assert reply["channel"] == "/meta/connect"
        assert reply["successful"] is True
        assert reply.get("advice", {}).get("reconnect", "retry") == "retry"
        await asyncio.wait_for(closing, 10)
    finally:
        await client.close()
