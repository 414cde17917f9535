"""bayeux.md §10 "Handshake", items 1-8, over every transport that applies.

Over websocket, "the response" is the frame that answers the request frame (§3.5); the HTTP
status and Content-Type checks of #1 and the cookie of #5 are HTTP-only.
"""

from __future__ import annotations

import asyncio
import re
from http.cookies import SimpleCookie
from typing import Any

from aiohttp.test_utils import TestServer
from yarl import URL

from gateway.bayeux.security import Grant, Peer, SecurityPolicy
from protocol import Message

from .client import LongPollingClient, WebSocketClient
from .conftest import DEFAULT_CONFIG, HOLD_MS, OpenClient

COOKIE = "BAYEUX_BROWSER"


def handshake_request(transport: str, ident: Any = "1") -> dict[str, Any]:
    return {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": [transport],
        "id": ident,
    }


async def handshake_response(client: Any, transport: str) -> list[dict[str, Any]]:
    """The whole response to the §10 #1 handshake; checks the transport's envelope."""
    request = [handshake_request(transport)]
    if isinstance(client, LongPollingClient):
        http = await client.post(request)
        assert http.status == 200
        assert http.content_type == "application/json"
        body = http.json()
    else:
        assert isinstance(client, WebSocketClient)
        body = await client.exchange(request)
        assert isinstance(client.frames[-1], list), "a websocket frame must be a JSON array"
    assert isinstance(body, list)
    return body


async def test_10_01_handshake_reply(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    body = await handshake_response(client, transport)
    assert len(body) == 1
    reply = body[0]
    assert reply["channel"] == "/meta/handshake"
    assert reply["successful"] is True
    assert reply["id"] == "1"
    assert reply["version"] == "1.0"


async def test_10_02_client_id_alphanumeric_and_unique(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    limit = asyncio.Semaphore(25)

    async def one() -> str:
        async with limit:
            reply = await client.handshake()
        assert reply["successful"] is True, reply
        client_id = reply["clientId"]
        assert isinstance(client_id, str)
        assert client_id.isascii() and client_id.isalnum(), client_id
        assert len(client_id) >= 20, client_id
        return client_id

    ids = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(1000))), 60)
    assert len(set(ids)) == 1000


async def test_10_03_supported_connection_types(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    (reply,) = await handshake_response(client, transport)
    types = reply["supportedConnectionTypes"]
    assert isinstance(types, list)
    assert "long-polling" in types
    assert transport in types


async def test_10_04_handshake_advice(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    (reply,) = await handshake_response(client, transport)
    advice = reply["advice"]
    assert advice["reconnect"] == "retry"
    assert type(advice["interval"]) is int
    assert advice["interval"] == 0
    assert type(advice["timeout"]) is int
    assert advice["timeout"] > 0
    assert advice["timeout"] == HOLD_MS


async def test_10_05_browser_cookie(gateway: TestServer, open_client: OpenClient) -> None:
    client: LongPollingClient = await open_client(gateway, "long-polling")
    first = await client.post([handshake_request("long-polling")])
    assert first.status == 200
    cookies = [c for c in first.set_cookies if c.strip().startswith(COOKIE + "=")]
    assert len(cookies) == 1, first.set_cookies
    morsel = SimpleCookie(cookies[0])[COOKIE]
    assert morsel.value
    assert morsel["path"] == "/"
    assert morsel["httponly"], cookies[0]
    # The jar now holds the cookie and sends it with the next handshake.
    sent = client.jar.filter_cookies(URL(client.base_url))
    assert sent[COOKIE].value == morsel.value

    second = await client.post([handshake_request("long-polling", "2")])
    assert second.status == 200
    assert second.json()[0]["successful"] is True
    assert not [c for c in second.set_cookies if c.strip().startswith(COOKIE + "=")]


async def test_10_06_numeric_id_echoed_on_every_reply(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    seen: dict[str, dict[str, Any]] = {}
    seen["handshake"] = await client.handshake(id=7)
    seen["connect"] = await client.connect(id=7)
    seen["subscribe"] = await client.subscribe("/numeric/id", id=7)
    seen["publish"] = await client.publish("/numeric/other", {"n": 1}, id=7)
    seen["failed subscribe"] = await client.request(client.message("/meta/subscribe", id=7))
    seen["unsubscribe"] = await client.unsubscribe("/numeric/id", id=7)
    seen["disconnect"] = await client.disconnect(id=7)
    for kind, reply in seen.items():
        assert type(reply.get("id")) is int, (kind, reply)
        assert reply["id"] == 7, (kind, reply)
    assert seen["failed subscribe"]["successful"] is False
    assert all(r["successful"] is True for k, r in seen.items() if k != "failed subscribe")


async def test_10_07_no_common_connection_type(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    client = await open_client(gateway, transport)
    reply = await client.handshake(supportedConnectionTypes=["carrier-pigeon"])
    assert reply["successful"] is False
    assert re.match(r"^\d{3}:", reply["error"]), reply
    assert reply["error"] == "301:carrier-pigeon:connection_types_unsupported"
    assert reply["advice"]["reconnect"] == "none"
    assert "clientId" not in reply


class DenyHandshakes(SecurityPolicy):
    async def can_handshake(self, message: Message, peer: Peer) -> Grant:
        return Grant(allowed=False)


async def test_10_08_policy_denies_handshake(
    make_gateway: Any, open_client: OpenClient, transport: str
) -> None:
    server = await make_gateway(policy=DenyHandshakes(), **DEFAULT_CONFIG)
    client = await open_client(server, transport)
    reply = await client.handshake()
    assert reply["successful"] is False
    assert reply["error"] == "403::handshake_denied"
    assert reply["advice"]["reconnect"] == "none"
    assert "clientId" not in reply
