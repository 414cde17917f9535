"""The server-side API the rest of the gateway builds on, exercised through real clients."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conformance.client import LongPollingClient, WebSocketClient
from structlog.testing import capture_logs

from gateway.app import HUB
from gateway.bayeux.security import Grant, Peer, SecurityPolicy
from protocol import Message, SessionRecord

TRANSPORTS = ["long-polling", "websocket"]
FAST = {"bayeux": {"timeout_ms": 2000, "max_interval_ms": 3000}}


async def open_client(server: Any, transport: str) -> LongPollingClient | WebSocketClient:
    base = str(server.make_url("/cometd"))
    if transport == "websocket":
        client = WebSocketClient(base)
        await client.open()
        return client
    return LongPollingClient(base)


class AgentsOnly(SecurityPolicy):
    """Handshake needs ext.token; /private/** is not for subscribers; nobody publishes /ro/**."""

    async def can_handshake(self, message: Message, peer: Peer) -> Grant:
        token = (message.ext or {}).get("token") if isinstance(message.ext, dict) else None
        if token == "secret":
            return Grant(allowed=True, user="agent1")
        return Grant(allowed=False, ext={"reason": "bad token"})

    async def can_subscribe(self, session: SessionRecord, channel: str, message: Message) -> bool:
        return not channel.startswith("/private")

    async def can_publish(self, session: SessionRecord, channel: str, message: Message) -> bool:
        return not channel.startswith("/ro/")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_security_policy_hooks(make_gateway: Any, transport: str) -> None:
    server = await make_gateway(policy=AgentsOnly(), **FAST)
    client = await open_client(server, transport)
    try:
        denied = await client.handshake(ext={"token": "wrong"})
        assert denied["successful"] is False
        assert denied["error"] == "403::handshake_denied"
        assert denied["advice"] == {"reconnect": "none"}
        assert "clientId" not in denied
        assert denied["ext"] == {"reason": "bad token"}
        ok = await client.handshake(ext={"token": "secret"})
        assert ok["successful"] is True
        record = await server.app[HUB].get_session(ok["clientId"])
        assert record is not None and record.user == "agent1"
        sub = await client.subscribe("/private/x")
        assert sub["error"] == "403:denied_by_security_policy:subscribe_denied"
        assert sub["subscription"] == "/private/x"
        pub = await client.publish("/ro/x", {"a": 1})
        assert pub["error"] == "403:denied_by_security_policy:publish_denied"
        assert (await client.publish("/rw/x", {"a": 1}))["successful"] is True
    finally:
        await client.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_service_handler_answers_the_caller_only(make_gateway: Any, transport: str) -> None:
    server = await make_gateway(**FAST)
    hub = server.app[HUB]
    calls: list[tuple[str, Any]] = []

    async def echo(session: SessionRecord, data: Any) -> Any:
        calls.append((session.client_id, data))
        return {"echo": data}

    hub.add_service("/service/echo", echo)
    client = await open_client(server, transport)
    other = await open_client(server, transport)
    try:
        await client.open_session("/service/echo")
        await other.open_session("/service/echo")
        replies = await client.exchange([client.message("/service/echo", data={"n": 1})])
        assert [r for r in replies if r.get("data") == {"echo": {"n": 1}}]
        assert [r for r in replies if r.get("successful") is True and "data" not in r]
        assert calls and calls[0][1] == {"n": 1}
        assert other.take_events() == []
    finally:
        await client.close()
        await other.close()


async def test_lifecycle_listeners_and_server_disconnect(make_gateway: Any) -> None:
    server = await make_gateway(**FAST)
    hub = server.app[HUB]
    opened: list[str] = []
    closed: list[tuple[str, str]] = []
    hub.on_session_opened(lambda record, reason: opened.append(record.client_id))
    hub.on_session_closed(lambda record, reason: closed.append((record.client_id, reason)))
    client = LongPollingClient(str(server.make_url("/cometd")))
    try:
        await client.open_session("/a")
        client_id = client.client_id
        assert client_id is not None
        assert opened == [client_id]
        held = asyncio.create_task(client.connect(timeout=10))
        await asyncio.sleep(0.2)
        with capture_logs() as logs:
            assert await hub.disconnect(client_id)
        answer = await asyncio.wait_for(held, 5)
        assert answer["successful"] is True
        assert answer["advice"]["reconnect"] == "none"
        assert closed == [(client_id, "server")]
        assert {
            "event": "session_closed",
            "client_id": client_id,
            "reason": "server",
            "log_level": "info",
        } in logs
        after = await client.publish("/a", 1)
        assert after["error"] == "402::session_unknown"
    finally:
        await client.close()


async def test_overflow_disconnect_is_logged_counted_and_the_client_rehandshakes(
    make_gateway: Any,
) -> None:
    server = await make_gateway(queue={"max_messages": 3, "overflow": "disconnect"}, **FAST)
    hub = server.app[HUB]
    client = LongPollingClient(str(server.make_url("/cometd")))
    try:
        await client.open_session("/flood")
        with capture_logs() as logs:
            for i in range(4):
                await hub.publish("/flood", i)
        assert hub.stats["queue_overflow"] == 1
        assert any(e["event"] == "queue_overflow" and e["policy"] == "disconnect" for e in logs)
        reply = await client.connect()
        assert reply["error"] == "402::session_unknown"
        assert reply["advice"] == {"reconnect": "handshake", "interval": 0}
    finally:
        await client.close()


async def test_publish_api_rejects_meta_and_wildcards(make_gateway: Any) -> None:
    hub = (await make_gateway()).app[HUB]
    for bad in ("/meta/connect", "/a/*", "/a/**", "nope", "/a//b"):
        with pytest.raises(ValueError, match="cannot publish"):
            await hub.publish(bad, 1)
    with pytest.raises(ValueError, match="not a service channel"):
        hub.add_service("/chat/x", lambda s, d: asyncio.sleep(0))  # type: ignore[arg-type,return-value]


async def test_websocket_push_reaches_a_hold_that_replaced_the_scheduled_one(
    make_gateway: Any,
) -> None:
    """A push is scheduled for a hold that then times out; the next hold still gets pushes."""
    server = await make_gateway(bayeux={"timeout_ms": 5000, "batch_window_ms": 250})
    hub = server.app[HUB]
    client = WebSocketClient(str(server.make_url("/cometd")))
    await client.open()
    try:
        await client.open_session("/a")
        # A short hold (client advice), so it times out while a push is pending.
        await client.send_frame([client.connect_message(advice={"timeout": 150})])
        await _held(hub)
        await hub.publish("/a", 1)  # pushed at once: the window was quiet
        await client.wait_until(lambda: len(client.events) >= 1, 5)
        await hub.publish("/a", 2)  # within the window: its push waits ~250 ms
        await client.wait_until(lambda: len(client.events) >= 2, 5)
        await client.send_frame([client.connect_message()])  # the next hold (5 s)
        await _held(hub)
        await hub.publish("/a", 3)  # while the push scheduled for the old hold is pending
        await client.wait_until(lambda: len(client.events) >= 3, 1.5)  # not at the 5 s timeout
        assert [e["data"] for e in client.take_events()] == [1, 2, 3]
    finally:
        await client.close()


async def _held(hub: Any) -> None:
    """Wait until the gateway holds a connect (synchronisation only)."""
    async with asyncio.timeout(2):
        while hub.held_count != 1:  # noqa: ASYNC110 - the hub exposes no event for this
            await asyncio.sleep(0.005)
