"""bayeux.md §10 "Connect / long-polling", items 9-21, over every transport that applies.

Durations are measured with ``time.monotonic()`` only where §10 states one.  "While a connect
is held" is made true by waiting until the gateway holds it (``wait_held``); every assertion is
on what the clients receive.

Websocket differences, by design (bayeux.md §3.5): an event for a session whose connect is
held is pushed as its own frame and the connect stays held (#44), so #12 runs over websocket
with ``deliver_only_on_connect`` (the mode in which a held websocket connect "returns" with its
events, as CometD does with the ack extension); a superseded websocket connect gets no reply
(#15); #18 (cookie binding) is HTTP-only.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import HUB

from .client import STEP_TIMEOUT, LongPollingClient, WebSocketClient, is_event
from .conftest import (
    AT_ONCE_S,
    DEFAULT_CONFIG,
    HOLD_MS,
    PROMPT_S,
    OpenClient,
    hold_window,
    section,
    timed,
    wait_held,
)

HOLD_S = HOLD_MS / 1000
#: Bound on a connect that may be held for the default hold.
HELD_TIMEOUT = HOLD_S + STEP_TIMEOUT
SESSION_UNKNOWN = "402::session_unknown"


async def test_10_09_first_connect_returns_at_once(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    assert (await client.handshake())["successful"] is True
    request = client.connect_message()
    reply, elapsed = await timed(client.request(request, within=HELD_TIMEOUT))
    assert elapsed < AT_ONCE_S
    assert reply["channel"] == "/meta/connect"
    assert reply["successful"] is True
    assert reply["id"] == request["id"]


async def test_10_10_connect_with_timeout_zero_advice(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    await client.open_session()
    reply, elapsed = await timed(client.connect(advice={"timeout": 0}, within=HELD_TIMEOUT))
    assert elapsed < AT_ONCE_S
    assert reply["successful"] is True
    advice = reply["advice"]
    assert advice["reconnect"] == "retry"
    assert type(advice["interval"]) is int
    assert advice["interval"] == 0
    assert type(advice["timeout"]) is int
    assert advice["timeout"] == HOLD_MS


async def test_10_11_connect_held_for_timeout(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    await client.open_session()
    reply, elapsed = await timed(client.connect(within=HELD_TIMEOUT))
    low, high = hold_window(HOLD_MS)
    assert low <= elapsed <= high, f"held {elapsed:.3f}s, advice.timeout is {HOLD_S}s"
    assert reply["successful"] is True
    assert client.take_events() == []


@pytest.mark.parametrize(
    ("transport", "bayeux"),
    [
        pytest.param("long-polling", {}, id="long-polling"),
        pytest.param(
            "websocket", {"deliver_only_on_connect": True}, id="websocket-deliver-only-on-connect"
        ),
    ],
)
async def test_10_12_publish_wakes_held_connect(
    make_gateway: Any, open_client: OpenClient, transport: str, bayeux: dict[str, Any]
) -> None:
    server = await make_gateway(**section(**bayeux))
    subscriber = await open_client(server, transport)
    publisher = await open_client(server, transport)
    await subscriber.open_session("/c12")
    await publisher.open_session()

    held = asyncio.create_task(
        subscriber.exchange([subscriber.connect_message()], within=HELD_TIMEOUT)
    )
    await wait_held(server)
    start = time.monotonic()
    ack = await publisher.publish("/c12", {"n": 1})
    response = await asyncio.wait_for(held, HELD_TIMEOUT)
    elapsed = time.monotonic() - start
    assert ack["successful"] is True
    assert elapsed < PROMPT_S, f"the held connect returned {elapsed:.3f}s after the publish"
    *events, last = response
    assert events == [{"channel": "/c12", "data": {"n": 1}}]
    assert last["channel"] == "/meta/connect"
    assert last["successful"] is True


async def test_10_13_connect_with_queued_events_returns_at_once(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    subscriber = await open_client(gateway, transport)
    publisher = await open_client(gateway, transport)
    await subscriber.open_session("/c13")
    await publisher.open_session()
    for n in range(3):
        assert (await publisher.publish("/c13", {"n": n}))["successful"] is True

    response, elapsed = await timed(
        subscriber.exchange([subscriber.connect_message()], within=HELD_TIMEOUT)
    )
    assert elapsed < AT_ONCE_S
    *events, last = response
    assert events == [{"channel": "/c13", "data": {"n": n}} for n in range(3)]
    assert last["channel"] == "/meta/connect"
    assert last["successful"] is True


async def test_10_14_batched_connect_answered_at_once(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    await client.open_session()
    connect = client.connect_message()
    subscribe = client.message("/meta/subscribe", subscription="/c14")
    response, elapsed = await timed(client.exchange([connect, subscribe], within=HELD_TIMEOUT))
    assert elapsed < AT_ONCE_S
    replies = {m["channel"]: m for m in response}
    assert replies["/meta/connect"]["successful"] is True
    assert replies["/meta/connect"]["id"] == connect["id"]
    assert replies["/meta/subscribe"]["successful"] is True


async def test_10_15_duplicate_connect(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    await client.open_session()
    low, high = hold_window(HOLD_MS)

    if isinstance(client, LongPollingClient):
        old = asyncio.create_task(client.post([client.connect_message()], within=HELD_TIMEOUT))
        await wait_held(gateway)
        sent = time.monotonic()
        new = asyncio.create_task(client.post([client.connect_message()], within=HELD_TIMEOUT))
        old_reply = await asyncio.wait_for(old, HELD_TIMEOUT)
        assert time.monotonic() - sent < AT_ONCE_S, "the replaced connect was not released"
        assert old_reply.status == 500
        if new.done():
            early = new.result()
            pytest.fail(f"the newer connect was not held: HTTP {early.status} {early.body!r}")
        new_reply = await asyncio.wait_for(new, HELD_TIMEOUT)
        elapsed = time.monotonic() - sent
        assert new_reply.status == 200
        (connect_reply,) = new_reply.json()
        assert connect_reply["successful"] is True
        assert connect_reply.get("advice", {}).get("multiple-clients") is None, connect_reply
        assert low <= elapsed <= high, f"the newer connect was held {elapsed:.3f}s"
        return

    assert isinstance(client, WebSocketClient)
    old_request = client.connect_message()
    await client.send_frame([old_request])
    await wait_held(gateway)
    new_request = client.connect_message()
    reply, elapsed = await timed(client.request(new_request, within=HELD_TIMEOUT))
    assert reply["successful"] is True
    assert low <= elapsed <= high, f"the newer connect was held {elapsed:.3f}s"
    # The old connect's own timeout passed before the newer one's: it would have been answered.
    assert client.replies_with_id(old_request["id"]) == []


async def test_10_16_connect_unknown_client(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    client.client_id = "0123456789abcdef0123456789abcdef"
    reply = await client.connect()
    assert reply["channel"] == "/meta/connect"
    assert reply["successful"] is False
    assert reply["error"] == SESSION_UNKNOWN
    assert reply["advice"] == {"reconnect": "handshake", "interval": 0}


@pytest.mark.parametrize("operation", ["publish", "subscribe", "unsubscribe"])
async def test_10_17_unknown_client_without_handshake_advice(
    gateway: TestServer, open_client: OpenClient, transport: str, operation: str
) -> None:
    client = await open_client(gateway, transport)
    await client.open_session()  # a real session and cookie: only the clientId is wrong
    client.client_id = "0123456789abcdef0123456789abcdef"
    if operation == "publish":
        reply = await client.publish("/c17", {"n": 1})
    elif operation == "subscribe":
        reply = await client.subscribe("/c17")
    else:
        reply = await client.unsubscribe("/c17")
    assert reply["successful"] is False
    assert reply["error"] == SESSION_UNKNOWN
    assert reply.get("advice", {}).get("reconnect") != "handshake", reply


@pytest.mark.parametrize(
    ("trust_client_session", "other_cookie", "successful"),
    [
        pytest.param(False, False, False, id="binding-on-no-cookie"),
        pytest.param(False, True, False, id="binding-on-another-browsers-cookie"),
        pytest.param(True, False, True, id="trust-client-session-no-cookie"),
    ],
)
async def test_10_18_cookie_binding(
    make_gateway: Any,
    open_client: OpenClient,
    trust_client_session: bool,
    other_cookie: bool,
    successful: bool,
) -> None:
    server = await make_gateway(**section(trust_client_session=trust_client_session))
    owner: LongPollingClient = await open_client(server, "long-polling")
    await owner.open_session()
    stranger: LongPollingClient = await open_client(server, "long-polling")
    if other_cookie:
        assert (await stranger.handshake())["successful"] is True  # gets its own cookie
    stranger.client_id = owner.client_id
    reply = await stranger.connect(advice={"timeout": 0})
    if successful:
        assert reply["successful"] is True, reply
    else:
        assert reply["successful"] is False
        assert reply["error"] == SESSION_UNKNOWN
    # The owner, with its cookie, is unaffected.
    assert (await owner.connect(advice={"timeout": 0}))["successful"] is True


async def test_10_19_session_expires_without_connect(
    make_gateway: Any, open_client: OpenClient, transport: str
) -> None:
    interval_ms, max_interval_ms = 0, 1000
    server = await make_gateway(
        **section(timeout_ms=HOLD_MS, interval_ms=interval_ms, max_interval_ms=max_interval_ms)
    )
    client = await open_client(server, transport)
    await client.open_session()  # ends with a connect reply
    await asyncio.sleep((interval_ms + max_interval_ms) / 1000 + 2)
    reply = await client.connect()
    assert reply["successful"] is False
    assert reply["error"] == SESSION_UNKNOWN
    assert reply["advice"]["reconnect"] == "handshake"


async def test_10_20_held_session_does_not_expire(
    make_gateway: Any, open_client: OpenClient, transport: str
) -> None:
    hold_ms, max_interval_ms = 2500, 1000
    server = await make_gateway(**section(timeout_ms=hold_ms, max_interval_ms=max_interval_ms))
    client = await open_client(server, transport)
    await client.open_session()
    reply, elapsed = await timed(client.connect(within=hold_ms / 1000 + STEP_TIMEOUT))
    assert elapsed > max_interval_ms / 1000 + 1  # held past maxInterval and a sweep
    assert reply["successful"] is True
    after = await client.connect(advice={"timeout": 0})
    assert after["successful"] is True, after


async def test_10_21_disconnect_releases_held_connect(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    await client.open_session("/c21")
    held = asyncio.create_task(client.connect(within=HELD_TIMEOUT))
    await wait_held(gateway)
    start = time.monotonic()
    reply = await client.disconnect()
    released = await asyncio.wait_for(held, HELD_TIMEOUT)
    elapsed = time.monotonic() - start
    assert reply["channel"] == "/meta/disconnect"
    assert reply["successful"] is True
    assert elapsed < AT_ONCE_S, f"the held connect returned {elapsed:.3f}s after the disconnect"
    assert released["advice"]["reconnect"] == "none"

    later = [
        await client.connect(),
        await client.subscribe("/c21/b"),
        await client.publish("/c21", {"n": 1}),
    ]
    for message in later:
        assert message["successful"] is False, message
        assert message["error"] == SESSION_UNKNOWN
    assert [m for m in client.take_events() if is_event(m)] == []


async def test_client_timeout_is_held_at_most_the_ceiling_by_default(
    make_gateway: Any, open_client: OpenClient, transport: str
) -> None:
    """A client's ``advice.timeout`` of two minutes is held one minute at most (the default
    ``bayeux.max_client_timeout_ms``): seen on the hold's deadline, not by waiting for it."""
    server = await make_gateway()  # the built-in bayeux defaults
    hub = server.app[HUB]
    client = await open_client(server, transport)
    await client.open_session()
    held = asyncio.create_task(client.connect(advice={"timeout": 120_000}, within=120))
    try:
        await wait_held(server)
        deadline = hub.hold_deadline(client.client_id)
        assert deadline is not None
        remaining = deadline - asyncio.get_running_loop().time()
        assert 60 - STEP_TIMEOUT < remaining <= 60, remaining
    finally:
        held.cancel()


async def test_client_timeout_above_the_ceiling_is_held_for_the_ceiling(
    make_gateway: Any, open_client: OpenClient, transport: str
) -> None:
    ceiling_ms = 600
    server = await make_gateway(**section(timeout_ms=300, max_client_timeout_ms=ceiling_ms))
    client = await open_client(server, transport)
    await client.open_session()
    reply, elapsed = await timed(client.connect(advice={"timeout": 120_000}, within=HELD_TIMEOUT))
    low, high = hold_window(ceiling_ms)
    assert low <= elapsed <= high, f"held {elapsed:.3f}s, the ceiling is {ceiling_ms} ms"
    assert reply["successful"] is True


def test_config_defaults_used_here() -> None:
    """The suite relies on these defaults of the gateway's configuration."""
    from gateway.config import load_config

    config = load_config(env={}, overrides=DEFAULT_CONFIG)
    assert config.bayeux.duplicate_connect_status == 500
    assert config.bayeux.trust_client_session is False
    assert config.bayeux.interval_ms == 0
