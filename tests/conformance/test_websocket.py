"""bayeux.md §10 "WebSocket", items 43-45 (websocket only by nature; #45 starts over
long-polling)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import HUB

from .client import STEP_TIMEOUT, LongPollingClient, WebSocketClient
from .conftest import HOLD_MS, PROMPT_S, OpenClient, hold_window, section, wait_held

HELD_TIMEOUT = HOLD_MS / 1000 + STEP_TIMEOUT


@pytest.mark.parametrize(
    "mount",
    [
        pytest.param("/cometd", id="cometd"),
        pytest.param("/api/v2/notifications", id="api-v2-notifications"),
    ],
)
async def test_10_43_websocket_handshake(
    gateway: TestServer, open_client: OpenClient, mount: str
) -> None:
    client: WebSocketClient = await open_client(gateway, "websocket", mount=mount)
    request = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["websocket", "long-polling"],
        "id": "1",
    }
    await client.exchange([request])
    (frame,) = client.frames
    assert isinstance(frame, list)
    (reply,) = frame
    # The fields of #1-#4.
    assert reply["channel"] == "/meta/handshake"
    assert reply["successful"] is True
    assert reply["id"] == "1"
    assert reply["version"] == "1.0"
    client_id = reply["clientId"]
    assert isinstance(client_id, str) and client_id.isascii() and client_id.isalnum()
    assert len(client_id) >= 20
    assert "websocket" in reply["supportedConnectionTypes"]
    assert "long-polling" in reply["supportedConnectionTypes"]
    advice = reply["advice"]
    assert advice["reconnect"] == "retry"
    assert type(advice["interval"]) is int and advice["interval"] == 0
    assert type(advice["timeout"]) is int and advice["timeout"] > 0


async def test_10_44_websocket_push_while_connect_held(
    gateway: TestServer, open_client: OpenClient
) -> None:
    subscriber: WebSocketClient = await open_client(gateway, "websocket")
    publisher: WebSocketClient = await open_client(gateway, "websocket")
    await subscriber.open_session("/c44")
    await publisher.open_session()

    sent = time.monotonic()
    held = asyncio.create_task(subscriber.connect(within=HELD_TIMEOUT))
    await wait_held(gateway)
    frames = len(subscriber.frames)
    start = time.monotonic()
    assert (await publisher.publish("/c44", {"n": 1}))["successful"] is True
    pushed = await subscriber.wait_until(lambda: subscriber.frames[frames:], STEP_TIMEOUT)
    elapsed = time.monotonic() - start
    assert elapsed < PROMPT_S, f"the event arrived {elapsed:.3f}s after the publish"
    assert pushed == [[{"channel": "/c44", "data": {"n": 1}}]]  # its own frame
    assert not held.done(), "the connect must stay held after the push"

    reply = await asyncio.wait_for(held, HELD_TIMEOUT)
    held_for = time.monotonic() - sent
    low, high = hold_window(HOLD_MS)
    assert low <= held_for <= high, f"the connect reply came after {held_for:.3f}s"
    assert reply["successful"] is True
    assert subscriber.frames[-1] == [reply]  # the reply does not repeat the event


async def test_10_45_long_polling_session_on_new_websocket(
    make_gateway: Any, open_client: OpenClient
) -> None:
    max_interval_ms = 2000
    server = await make_gateway(**section(max_interval_ms=max_interval_ms))
    hub = server.app[HUB]
    http: LongPollingClient = await open_client(server, "long-polling")
    await http.open_session("/c45")
    publisher: LongPollingClient = await open_client(server, "long-polling")
    await publisher.open_session()

    # A new websocket, without the HTTP cookie (cometd-nodejs-client sends none).
    first: WebSocketClient = await open_client(server, "websocket")
    first.client_id = http.client_id
    reply = await first.connect(advice={"timeout": 0})
    assert reply["successful"] is True, reply
    held = asyncio.create_task(first.connect(within=HELD_TIMEOUT))
    await wait_held(server)
    await first.close()
    closed_at = time.monotonic()
    with pytest.raises(AssertionError, match="websocket closed"):
        await asyncio.wait_for(held, STEP_TIMEOUT)  # no reply: the socket is gone

    # Before interval + maxInterval: the session is still there, with its subscription.
    await asyncio.sleep(max_interval_ms / 1000 / 2)
    assert (await publisher.publish("/c45", {"after": "close"}))["successful"] is True
    second: WebSocketClient = await open_client(server, "websocket")
    second.client_id = http.client_id
    reply = await second.connect(advice={"timeout": 0})
    assert time.monotonic() - closed_at < max_interval_ms / 1000
    assert reply["successful"] is True, reply
    assert second.take_events() == [{"channel": "/c45", "data": {"after": "close"}}]
    assert http.client_id in await hub.session_ids()


async def test_busy_websocket_session_keeps_its_connect_held_and_gets_pushes(
    gateway: TestServer, open_client: OpenClient
) -> None:
    """A connect arriving while events wait, within the batching window of the session's last
    frame, is held and the events pushed: answering it would start a connect cycle that never
    returns to pushing under load (each reply finding new events waiting)."""
    subscriber: WebSocketClient = await open_client(gateway, "websocket")
    publisher: WebSocketClient = await open_client(gateway, "websocket")
    await subscriber.open_session("/busy")
    await publisher.open_session()
    held = asyncio.create_task(subscriber.connect(within=HELD_TIMEOUT))
    await wait_held(gateway)
    assert (await publisher.publish("/busy", {"n": 1}))["successful"] is True
    await subscriber.wait_until(lambda: len(subscriber.events) >= 1, STEP_TIMEOUT)
    # Within the window of that frame: more events, then a new connect replacing the held one.
    for n in (2, 3):
        assert (await publisher.publish("/busy", {"n": n}))["successful"] is True
    frames = len(subscriber.frames)
    await subscriber.send_frame([subscriber.connect_message()])
    await subscriber.wait_until(lambda: len(subscriber.events) >= 3, STEP_TIMEOUT)
    new_frames = subscriber.frames[frames:]
    assert [m["data"]["n"] for m in subscriber.events] == [1, 2, 3]
    assert not any(m.get("channel") == "/meta/connect" for frame in new_frames for m in frame), (
        f"the new connect was answered instead of held: {new_frames}"
    )
    held.cancel()
