"""bayeux.md §10 "HTTP surface", items 35-42.

These are properties of the HTTP transports (long-polling, and JSONP for #40).  Where the
websocket transport has the same property it is tested too, with its own observable outcome:
a frame may be one message (#35); a frame that is not a Bayeux batch closes the socket with
1007 (#37) and one over ``server.max_body_bytes`` with 1009 (#42), as the gateway documents
(gateway/transports/websocket.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from gateway.app import HUB

from .client import STEP_TIMEOUT, LongPollingClient, WebSocketClient
from .conftest import (
    ALLOWED_ORIGIN,
    AT_ONCE_S,
    DEFAULT_CONFIG,
    HOLD_MS,
    OpenClient,
    wait_held,
)

HELD_TIMEOUT = HOLD_MS / 1000 + STEP_TIMEOUT


def handshake(ident: str = "1", transport: str = "long-polling") -> dict[str, Any]:
    return {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": [transport],
        "id": ident,
    }


def assert_error_body(body: bytes) -> None:
    """The gateway's documented HTTP error body: a JSON object with ``error`` and ``detail``."""
    decoded = json.loads(body)
    assert isinstance(decoded, dict)
    assert isinstance(decoded.get("error"), str)
    assert isinstance(decoded.get("detail"), str)


async def test_10_35_single_object_body(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    message = handshake(transport=transport)
    if isinstance(client, LongPollingClient):
        http = await client.post(message)  # an object, not an array
        assert http.status == 200
        body = http.json()
    else:
        assert isinstance(client, WebSocketClient)
        await client.exchange(message)
        body = client.frames[-1]
    assert isinstance(body, list)
    (reply,) = body
    assert reply["channel"] == "/meta/handshake"
    assert reply["successful"] is True
    assert reply["id"] == "1"


#: Characters that form encoding treats specially must survive it.
FORM_DATA = {"form": "a b+c&d=e%20\u00e9"}


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/x-www-form-urlencoded", id="form-urlencoded"),
        pytest.param("text/plain;charset=UTF-8", id="text-plain"),
    ],
)
async def test_10_36_form_bodies(
    gateway: TestServer, open_client: OpenClient, content_type: str
) -> None:
    client: LongPollingClient = await open_client(gateway, "long-polling")

    async def send(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        http = await client.post(
            urlencode({"message": json.dumps(messages)}), content_type=content_type
        )
        assert http.status == 200, http.body
        assert http.content_type == "application/json"
        body = http.json()
        assert isinstance(body, list)
        return body

    (shaken,) = await send([handshake()])
    assert shaken["successful"] is True
    client.client_id = shaken["clientId"]
    (connected,) = await send([client.connect_message()])
    assert connected["successful"] is True
    subscribe = client.message("/meta/subscribe", subscription="/c36")
    publish = client.message("/c36", data=FORM_DATA)
    replies = await send([subscribe, publish])
    # The publisher is subscribed: its own event may ride on this reply (piggy-back).
    events = [m for m in replies if "successful" not in m]
    acks = [m for m in replies if "successful" in m]
    assert [(m["id"], m["successful"]) for m in acks] == [
        (subscribe["id"], True),
        (publish["id"], True),
    ]
    assert events + await client.drain() == [{"channel": "/c36", "data": FORM_DATA}]

    # Several message= fields in one body, each one message.
    two = "&".join(
        "message=" + quote(json.dumps(client.message("/c36", data={"n": n}))) for n in range(2)
    )
    http = await client.post(two, content_type=content_type)
    assert http.status == 200
    acks = [m for m in http.json() if "successful" in m]
    assert [m["successful"] for m in acks] == [True, True]


#: Bodies that are not a Bayeux batch.
BAD_BODIES = [
    pytest.param(b"{not json", id="invalid-json"),
    pytest.param(b"[]", id="empty-array"),
    pytest.param(b'[{"channel": "/meta/handshake"', id="truncated"),
    pytest.param(b"5", id="json-number"),
    pytest.param(b'"text"', id="json-string"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff\xfe[{}]", id="not-utf8"),
]


@pytest.mark.parametrize("body", BAD_BODIES)
async def test_10_37_bad_body_rejected(
    gateway: TestServer, open_client: OpenClient, transport: str, body: bytes
) -> None:
    client = await open_client(gateway, transport)
    if isinstance(client, LongPollingClient):
        http = await client.post(body)
        assert http.status == 400
        assert http.content_type == "application/json"
        assert_error_body(http.body)
    else:
        assert isinstance(client, WebSocketClient)
        try:
            frame: str | bytes = body.decode()
        except UnicodeDecodeError:
            frame = body  # not text: sent as a binary frame
        await client.send_frame(frame)
        assert await client.wait_closed() == 1007
        assert client.frames == []
    # The server is still fine.
    fresh = await open_client(gateway, transport)
    assert (await fresh.handshake())["successful"] is True


PATHS = [
    pytest.param("", id="mount"),
    pytest.param("/", id="mount-slash"),
    pytest.param("/handshake", id="handshake"),
    pytest.param("/connect", id="connect"),
    pytest.param("/disconnect", id="disconnect"),
]


async def _flow(client: LongPollingClient, path: str) -> list[dict[str, Any]]:
    """Handshake, connect, subscribe, publish, unsubscribe, disconnect, all POSTed to ``path``;
    the replies with the clientId masked."""
    client.path = path
    replies = [
        await client.handshake(id="1"),
        await client.connect(id="2"),
        await client.subscribe("/c38", id="3"),
        await client.publish("/c38", {"n": 1}, id="4"),
        await client.connect(id="5", advice={"timeout": 0}),
        await client.unsubscribe("/c38", id="6"),
        await client.disconnect(id="7"),
        await client.connect(id="8"),
    ]
    events = client.take_events()
    masked = []
    for reply in replies:
        assert reply.pop("clientId", client.client_id) == client.client_id
        masked.append(reply)
    return [*masked, {"events": events}]


@pytest.mark.parametrize("path", PATHS)
async def test_10_38_suffixes_behave_alike(
    gateway: TestServer, open_client: OpenClient, path: str
) -> None:
    baseline = await _flow(await open_client(gateway, "long-polling"), "")
    observed = await _flow(await open_client(gateway, "long-polling"), path)
    assert observed == baseline
    assert baseline[0]["successful"] is True
    assert baseline[-2]["error"] == "402::session_unknown"  # connect after disconnect


@pytest.mark.parametrize("path", ["", "/handshake", "/connect"])
@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        pytest.param(ALLOWED_ORIGIN, True, id="allowed-origin"),
        pytest.param("https://evil.example", False, id="other-origin"),
    ],
)
async def test_10_39_cors_preflight(
    gateway: TestServer, open_client: OpenClient, path: str, origin: str, allowed: bool
) -> None:
    client: LongPollingClient = await open_client(gateway, "long-polling")
    http = await client.send_http(
        "OPTIONS",
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    # The request the preflight was for.
    post = await client.post([handshake()], path=path, headers={"Origin": origin})
    if not allowed:
        assert "Access-Control-Allow-Origin" not in http.headers
        assert "Access-Control-Allow-Origin" not in post.headers
        assert post.status == 403  # the gateway refuses cross-site requests it does not allow
        assert_error_body(post.body)
        return
    assert http.status == 200
    assert http.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert http.headers["Access-Control-Allow-Credentials"] == "true"
    methods = {m.strip().upper() for m in http.headers["Access-Control-Allow-Methods"].split(",")}
    assert "POST" in methods
    headers = {h.strip().lower() for h in http.headers["Access-Control-Allow-Headers"].split(",")}
    assert "content-type" in headers
    assert post.status == 200
    assert post.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert post.headers["Access-Control-Allow-Credentials"] == "true"
    assert post.json()[0]["successful"] is True


async def test_10_40_jsonp(gateway: TestServer, open_client: OpenClient) -> None:
    client: LongPollingClient = await open_client(gateway, "long-polling")
    message = json.dumps([handshake(transport="callback-polling")])
    http = await client.send_http("GET", params={"jsonp": "cb", "message": message})
    assert http.status == 200
    assert http.content_type == "text/javascript"
    text = http.body.decode()
    match = re.search(r"cb\((\[.*\])\)", text, re.DOTALL)
    assert match, text
    (reply,) = json.loads(match.group(1))
    assert reply["channel"] == "/meta/handshake"
    assert reply["successful"] is True

    bad = await client.send_http("GET", params={"jsonp": "alert(1)", "message": message})
    assert bad.status == 400


async def test_10_41_multiple_clients_per_browser(
    gateway: TestServer, open_client: OpenClient
) -> None:
    first: LongPollingClient = await open_client(gateway, "long-polling")
    second: LongPollingClient = await open_client(gateway, "long-polling")
    await first.open_session()
    # The second "tab" of the same browser: same BAYEUX_BROWSER cookie.
    url = URL(first.base_url)
    for morsel in first.jar.filter_cookies(url).values():
        second.jar.update_cookies({morsel.key: morsel.value}, response_url=url)
    await second.open_session()
    assert second.jar.filter_cookies(url)["BAYEUX_BROWSER"].value == (
        first.jar.filter_cookies(url)["BAYEUX_BROWSER"].value
    )

    held = asyncio.create_task(first.connect(within=HELD_TIMEOUT))
    await wait_held(gateway)
    start = time.monotonic()
    reply = await second.connect(within=HELD_TIMEOUT)
    elapsed = time.monotonic() - start
    assert not held.done(), "the first session's connect must still be held"
    assert elapsed < AT_ONCE_S
    assert reply["successful"] is True
    advice = reply["advice"]
    assert advice["multiple-clients"] is True
    assert advice["reconnect"] == "retry"
    assert advice["interval"] == 2000
    assert (await asyncio.wait_for(held, HELD_TIMEOUT))["successful"] is True


async def test_10_42_body_over_limit(
    make_gateway: Any, open_client: OpenClient, transport: str
) -> None:
    limit = 4096
    server = await make_gateway(server={"max_body_bytes": limit}, **DEFAULT_CONFIG)
    hub = server.app[HUB]
    subscriber = await open_client(server, "long-polling")
    await subscriber.open_session("/c42")
    sender = await open_client(server, transport)
    await sender.open_session()
    before = sorted(await hub.session_ids())

    big_publish = [sender.message("/c42", data={"pad": "x" * (limit + 1)})]
    big_handshake = [handshake(transport=transport) | {"ext": {"pad": "y" * (limit + 1)}}]
    if isinstance(sender, LongPollingClient):
        for body in (big_publish, big_handshake):
            http = await sender.post(body)
            assert http.status == 413
            assert_error_body(http.body)
        # Without Content-Length (chunked): the limit applies while reading.
        encoded = json.dumps(big_publish).encode()

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(encoded), 1000):
                yield encoded[start : start + 1000]

        http = await sender.send_http(
            "POST", data=chunks(), headers={"Content-Type": "application/json"}
        )
        assert http.status == 413
        assert_error_body(http.body)
    else:
        assert isinstance(sender, WebSocketClient)
        frames = len(sender.frames)
        await sender.send_frame(big_publish)
        assert await sender.wait_closed() == 1009
        assert len(sender.frames) == frames  # no reply

    assert sorted(await hub.session_ids()) == before  # no session created or removed
    assert await subscriber.drain() == []  # nothing delivered
    # The server still works, within the limit.
    small = await open_client(server, transport)
    await small.open_session()
    assert (await small.publish("/c42", {"pad": "z"}))["successful"] is True
    assert await subscriber.drain() == [{"channel": "/c42", "data": {"pad": "z"}}]
