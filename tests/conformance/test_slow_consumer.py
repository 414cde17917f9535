"""A websocket client that stops reading costs the gateway a bounded amount of memory.

Events wait in one place only, the session's queue (``queue.max_messages``): once the socket's
write buffer is above ``queue.ws_high_water_bytes`` no frame of events is pushed to it, events
stay queued and the ``queue.overflow`` policy applies, as it does for long-polling.  Other
clients are not held back, and pushing resumes when the socket drains.

The silent client is a plain aiohttp websocket that stops calling ``receive()``: aiohttp then
stops reading the TCP socket, and the kernel's buffers fill up as with a stalled browser.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from gateway.app import HUB, SOCKETS
from gateway.bayeux.transports.websocket import CLOSE_TIMEOUT_S
from gateway.server import RunningGateway

from .client import STEP_TIMEOUT, LongPollingClient, WebSocketClient
from .conftest import DEFAULT_CONFIG, OpenClient, base_url, wait_held

CHANNEL = "/slow"
PAYLOAD = "x" * 8_000
MAX_MESSAGES = 50
HIGH_WATER = 16 * 1024
BURST = 10
#: 2,000 events of 8 kB, 16 MB: far more than the kernel's buffers of a loopback socket hold.
BURSTS = 200
#: A connect held longer than the test: nothing but a push can bring events to the client.
LONG_HOLD_MS = 60_000

#: What one event costs on the wire, with its JSON framing.
EVENT_BYTES = len(json.dumps({"channel": CHANNEL, "data": {"n": 10_000, "p": PAYLOAD}}))
#: What the gateway may hold for one silent socket: its write buffer up to the high-water mark,
#: plus the one frame of events that took it over (at most a full queue), plus a few replies.
BUFFER_BOUND = HIGH_WATER + MAX_MESSAGES * EVENT_BYTES + 4096


def slow_config(policy: str) -> dict[str, Any]:
    """Small queues, pushes at once (no batching window), connects held longer than a test."""
    return {
        **DEFAULT_CONFIG,
        "bayeux": {**DEFAULT_CONFIG["bayeux"], "timeout_ms": LONG_HOLD_MS, "batch_window_ms": 0},
        "queue": {
            "max_messages": MAX_MESSAGES,
            "overflow": policy,
            "ws_high_water_bytes": HIGH_WATER,
        },
    }


class SilentSocket:
    """A websocket session that reads only when told to."""

    def __init__(self, url: str) -> None:
        self.url = "ws" + url.removeprefix("http")
        self.http = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.client_id = ""

    async def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.ws is not None
        await self.ws.send_json([message])
        frame = await asyncio.wait_for(self.ws.receive_json(), STEP_TIMEOUT)
        (reply,) = [m for m in frame if m.get("id") == message["id"]]
        assert reply["successful"] is True, reply
        return dict(reply)

    async def open(self, server: Any) -> None:
        """Handshake, first connect, subscribe; then a connect is left held (not read)."""
        self.ws = await self.http.ws_connect(self.url)
        shaken = await self._ask(
            {
                "channel": "/meta/handshake",
                "id": "1",
                "version": "1.0",
                "supportedConnectionTypes": ["websocket"],
            }
        )
        self.client_id = shaken["clientId"]
        await self._ask(self._message("/meta/connect", "2", connectionType="websocket"))
        await self._ask(self._message("/meta/subscribe", "3", subscription=CHANNEL))
        held = server.app[HUB].held_count
        await self.ws.send_json([self._message("/meta/connect", "4", connectionType="websocket")])
        await wait_held(server, held + 1)

    def _message(self, channel: str, ident: str, **fields: Any) -> dict[str, Any]:
        return {"channel": channel, "id": ident, "clientId": self.client_id, **fields}

    async def read_until(self, done: Any, within: float = STEP_TIMEOUT) -> list[dict[str, Any]]:
        """Start reading again: every message received until ``done(message)`` is true."""
        assert self.ws is not None
        seen: list[dict[str, Any]] = []

        async def go() -> None:
            assert self.ws is not None
            while True:
                for message in await self.ws.receive_json():
                    seen.append(message)
                    if done(message):
                        return

        await asyncio.wait_for(go(), within)
        return seen

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.http.close()


async def publish_bursts(
    server: RunningGateway, readers: list[WebSocketClient | LongPollingClient]
) -> int:
    """Publish ``BURSTS`` bursts of events; after each, wait until every reading client has had
    them all (so only a client that does not read can fall behind).  Return the count."""
    hub = server.app[HUB]
    count = 0
    for _ in range(BURSTS):
        for _ in range(BURST):
            await hub.publish(CHANNEL, {"n": count, "p": PAYLOAD})
            count += 1
        deadline = time.monotonic() + STEP_TIMEOUT
        while any(len(reader.events) < count for reader in readers):
            assert time.monotonic() < deadline, "a reading client stopped getting events"
            await asyncio.sleep(0.001)
    return count


def buffered_bytes(server: RunningGateway, client_id: str) -> int:
    """What the gateway holds in the socket(s) of this session, not yet taken by the kernel."""
    return sum(peer.buffered_bytes for peer in server.app[SOCKETS] if client_id in peer.sessions)


async def wait_queue_empty(server: RunningGateway, client_id: str) -> None:
    hub = server.app[HUB]
    deadline = time.monotonic() + STEP_TIMEOUT
    while await hub.engine.queued(client_id):
        assert time.monotonic() < deadline, "the queue was not pushed after the socket drained"
        await asyncio.sleep(0.01)


async def keep_polling(client: LongPollingClient) -> None:
    while True:
        reply = await client.connect(within=LONG_HOLD_MS / 1000 + STEP_TIMEOUT)
        assert reply["successful"] is True, reply


@pytest.mark.parametrize("policy", ["disconnect", "drop_oldest", "drop_newest"])
async def test_websocket_that_does_not_read_is_bounded_by_its_queue(
    make_gateway: Any, open_client: OpenClient, policy: str
) -> None:
    server = await make_gateway(**slow_config(policy))
    hub = server.app[HUB]
    reader: WebSocketClient = await open_client(server, "websocket")
    await reader.open_session(CHANNEL)
    poller: LongPollingClient = await open_client(server, "long-polling")
    await poller.open_session(CHANNEL)
    polling = asyncio.create_task(keep_polling(poller))
    reader_hold = asyncio.create_task(reader.connect(within=LONG_HOLD_MS / 1000))
    silent = SilentSocket(base_url(server))
    try:
        await silent.open(server)
        await wait_held(server, 3)
        with capture_logs() as logs:
            published = await publish_bursts(server, [reader, poller])
        cid = silent.client_id

        # The overflow policy was applied to the silent session, logged and counted.
        overflows = [e for e in logs if e["event"] == "queue_overflow"]
        assert overflows, "the silent websocket's queue never overflowed"
        assert {(e["client_id"], e["policy"]) for e in overflows} == {(cid, policy)}
        assert hub.stats["queue_overflow"] >= 1
        # What the gateway keeps for it is bounded by its queue and the socket's high-water
        # mark, not by what was published (16 MB).
        assert buffered_bytes(server, cid) <= BUFFER_BOUND, (buffered_bytes(server, cid), published)
        assert await hub.engine.queued(cid) <= MAX_MESSAGES

        # The clients that read got everything, in order.
        for client in (reader, poller):
            assert [e["data"]["n"] for e in client.take_events()] == list(range(published))

        if policy == "disconnect":
            closed = [e for e in logs if e["event"] == "session_closed"]
            assert {(e["client_id"], e["reason"]) for e in closed} == {(cid, "overflow")}
            assert await hub.get_session(cid) is None
            # Reading again, the client learns that its session is gone: nothing silently lost.
            seen = await silent.read_until(lambda m: m.get("id") == "4")
            assert seen[-1]["successful"] is False
            assert seen[-1]["error"] == "402::session_unknown"
        else:
            assert await hub.engine.queued(cid) == MAX_MESSAGES
            # Reading again, the client gets what its queue kept, pushed while its connect
            # stays held (for a minute: only a push can bring them now).  A last event,
            # published once the queue is empty, marks the end.
            reading = asyncio.create_task(
                silent.read_until(lambda m: m.get("data", {}).get("n") == published)
            )
            await wait_queue_empty(server, cid)
            await hub.publish(CHANNEL, {"n": published, "p": ""})
            numbers = [m["data"]["n"] for m in await reading if "data" in m]
            assert numbers[-1] == published
            kept = numbers[:-1]
            assert len(kept) < published
            assert kept == sorted(kept)
            if policy == "drop_newest":
                assert kept == list(range(len(kept)))  # the first ones, then nothing
            else:
                assert kept[-MAX_MESSAGES:] == list(range(published - MAX_MESSAGES, published))

        # The gateway goes on: a new client works.
        fresh: WebSocketClient = await open_client(server, "websocket")
        await fresh.open_session()
        assert (await fresh.publish("/after", {"ok": True}))["successful"] is True
    finally:
        polling.cancel()
        reader_hold.cancel()
        await silent.close()


async def test_shutdown_is_not_held_up_by_a_websocket_that_does_not_read(
    make_gateway: Any,
) -> None:
    server = await make_gateway(**slow_config("drop_oldest"))
    hub = server.app[HUB]
    silent = SilentSocket(base_url(server))
    try:
        await silent.open(server)
        (peer,) = server.app[SOCKETS]
        deadline = time.monotonic() + STEP_TIMEOUT
        while not peer.backed_up:
            assert time.monotonic() < deadline, "the socket never backed up"
            for _ in range(BURST):
                await hub.publish(CHANNEL, {"p": PAYLOAD})
            await asyncio.sleep(0.001)
        # The close frame cannot reach a client that reads nothing: the socket is cut instead.
        await asyncio.wait_for(server.close(), CLOSE_TIMEOUT_S + STEP_TIMEOUT)
        assert not server.app[SOCKETS]
    finally:
        await silent.close()
