"""A client publishing to its own channel gets the event in the publish response (long-polling)
or the publish reply frame (websocket), and its held connect stays held: no empty connect
answer, no separate push per publish."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.bayeux.connects import Outcome
from gateway.bayeux.engines.memory import MemoryEngine
from gateway.bayeux.hub import Hub
from gateway.bayeux.security import Peer
from protocol import RequestContext, Settings, decode_batch

BROWSER = "b" * 32
PEER = Peer(transport="long-polling")


class Recorder:
    """The responder of a held long-poll: keeps what it was answered."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def respond(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


async def send(hub: Hub, *messages: dict[str, Any], responder: Recorder | None = None) -> Outcome:
    batch = decode_batch(json.dumps(list(messages)).encode(), max_messages=100)
    ctx = RequestContext(transport="long-polling", browser_id=BROWSER, batch_size=len(batch))
    return await hub.process(batch, ctx, PEER, responder=responder)


def parsed(outcome: Outcome) -> list[dict[str, Any]]:
    return [json.loads(part) for part in outcome.parts]


async def session(hub: Hub, channel: str) -> tuple[str, Recorder]:
    """Handshake, subscribe to ``channel``, connect once (answered at once), then hold."""
    shake = parsed(await send(hub, {"channel": "/meta/handshake", "version": "1.0"}))
    client_id = shake[0]["clientId"]
    await send(hub, {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel})
    connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
    await send(hub, connect)
    held = Recorder()
    outcome = await send(hub, connect, responder=held)
    assert outcome.held == client_id
    return client_id, held


def publish(client_id: str, channel: str, n: int) -> dict[str, Any]:
    return {"channel": channel, "clientId": client_id, "id": str(n), "data": {"n": n}}


async def settle() -> None:
    for _ in range(3):  # ended holds are answered a loop turn later
        await asyncio.sleep(0)


def hub() -> Hub:
    return Hub(settings=Settings(max_sessions_per_browser=4), engine=MemoryEngine())


async def test_own_event_rides_on_the_publish_response_and_the_connect_stays_held() -> None:
    h = hub()
    me, held = await session(h, "/agents/1")
    for n in range(3):
        reply = parsed(await send(h, publish(me, "/agents/1", n)))
        assert reply == [
            {"channel": "/agents/1", "data": {"n": n}},
            {"channel": "/agents/1", "id": str(n), "successful": True},
        ]
    await settle()
    assert held.outcomes == []
    assert h.held_count == 1


async def test_another_clients_publish_still_wakes_the_held_connect() -> None:
    h = hub()
    _, held = await session(h, "/agents/1")
    other, _ = await session(h, "/agents/2")
    reply = parsed(await send(h, publish(other, "/agents/1", 7)))
    assert reply == [{"channel": "/agents/1", "id": "7", "successful": True}]
    await settle()
    assert [parsed(o)[0] for o in held.outcomes] == [{"channel": "/agents/1", "data": {"n": 7}}]


async def test_events_the_response_does_not_take_wake_the_held_connect() -> None:
    """Two sessions of one browser publish in one request: the response takes the queue of
    the last one only, so the first one's held connect is woken for its event."""
    h = hub()
    first, first_held = await session(h, "/agents/1")
    last, last_held = await session(h, "/agents/2")
    reply = parsed(await send(h, publish(first, "/agents/1", 1), publish(last, "/agents/2", 2)))
    assert {"channel": "/agents/2", "data": {"n": 2}} in reply
    assert {"channel": "/agents/1", "data": {"n": 1}} not in reply
    await settle()
    assert [parsed(o)[0] for o in first_held.outcomes] == [
        {"channel": "/agents/1", "data": {"n": 1}}
    ]
    assert last_held.outcomes == []


class FakeSocket:
    """A websocket peer that keeps the frames sent to it."""

    def __init__(self) -> None:
        self.sessions: set[str] = set()
        self.frames: list[list[bytes]] = []
        self.closed = False
        self.backed_up = False  # a client that reads

    def send(self, parts: list[bytes]) -> None:
        self.frames.append(parts)


async def send_ws(hub: Hub, ws: FakeSocket, *messages: dict[str, Any]) -> list[dict[str, Any]]:
    batch = decode_batch(json.dumps(list(messages)).encode(), max_messages=100)
    ctx = RequestContext(transport="websocket", batch_size=len(batch))
    return parsed(await hub.process(batch, ctx, Peer(transport="websocket"), ws=ws))


async def test_over_websocket_the_own_event_rides_on_the_publish_reply_frame() -> None:
    h = Hub(settings=Settings(), engine=MemoryEngine(), batch_window_ms=250)
    ws = FakeSocket()
    shake = await send_ws(h, ws, {"channel": "/meta/handshake", "version": "1.0"})
    me = shake[0]["clientId"]
    await send_ws(h, ws, {"channel": "/meta/subscribe", "clientId": me, "subscription": "/a"})
    connect = {"channel": "/meta/connect", "clientId": me, "connectionType": "websocket"}
    await send_ws(h, ws, connect)
    assert await send_ws(h, ws, connect) == []  # held
    for n in range(3):  # within one batching window: no push waits for the window's end
        assert await send_ws(h, ws, publish(me, "/a", n)) == [
            {"channel": "/a", "data": {"n": n}},
            {"channel": "/a", "id": str(n), "successful": True},
        ]
    await settle()
    assert ws.frames == []  # nothing pushed besides the replies
    assert h.held_count == 1
