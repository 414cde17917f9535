"""The fast long-polling path: raw HTTP/1.1 edge cases on real sockets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from rawhttp import HANDSHAKE, post, read_response

from gateway.app import HUB


async def connection(server: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def test_keep_alive_connection_serves_fast_then_aiohttp_requests(make_gateway: Any) -> None:
    server = await make_gateway(bayeux={"trust_client_session": True})
    reader, writer = await connection(server)
    try:
        writer.write(post("/cometd/handshake", HANDSHAKE))
        status, headers, body = await read_response(reader)
        assert status == 200
        assert headers["content-type"] == "application/json;charset=UTF-8"
        assert headers["set-cookie"].startswith("BAYEUX_BROWSER=")
        assert "date" in headers
        assert json.loads(body)[0]["successful"] is True
        # A JSONP GET on the same connection: aiohttp takes over and answers it.
        query = "jsonp=cb&message=%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%7D%5D"
        writer.write(f"GET /cometd?{query} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        status, headers, body = await read_response(reader)
        assert status == 200
        assert body.startswith(b"/**/cb([")
        # ...and keeps serving Bayeux POSTs on it.
        writer.write(post("/cometd", HANDSHAKE))
        status, _, body = await read_response(reader)
        assert status == 200
        assert json.loads(body)[0]["channel"] == "/meta/handshake"
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order(make_gateway: Any) -> None:
    server = await make_gateway()
    reader, writer = await connection(server)
    try:
        first = b'[{"channel":"/meta/handshake","id":"1"}]'
        second = b'[{"channel":"/meta/handshake","id":"2"}]'
        writer.write(post("/cometd", first) + post("/cometd/handshake", second))
        ids = [json.loads((await read_response(reader))[2])[0]["id"] for _ in range(2)]
        assert ids == ["1", "2"]
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "closes"),
    [
        (post("/cometd", HANDSHAKE, version="HTTP/1.0"), True),
        (post("/cometd", HANDSHAKE, "Connection: keep-alive", version="HTTP/1.0"), False),
        (post("/cometd", HANDSHAKE, "Connection: close"), True),
        (post("/cometd", HANDSHAKE), False),
    ],
    ids=["http10", "http10-keep-alive", "http11-close", "http11"],
)
async def test_connection_persistence(
    make_gateway: Any, request_bytes: bytes, closes: bool
) -> None:
    server = await make_gateway()
    reader, writer = await connection(server)
    try:
        writer.write(request_bytes)
        status, headers, _ = await read_response(reader)
        assert status == 200
        assert (headers.get("connection") == "close") is closes
        if closes:
            assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()


async def test_oversized_head_gets_431_and_close(make_gateway: Any) -> None:
    server = await make_gateway()
    reader, writer = await connection(server)
    try:
        writer.write(b"POST /cometd HTTP/1.1\r\nX-Big: " + b"a" * 20_000)
        status, _, body = await read_response(reader)
        assert status == 431
        assert json.loads(body)["error"] == "header_too_large"
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()


async def test_body_over_limit_is_refused_before_it_is_read(make_gateway: Any) -> None:
    server = await make_gateway(server={"max_body_bytes": 2048})
    reader, writer = await connection(server)
    try:
        writer.write(
            b"POST /cometd HTTP/1.1\r\nHost: t\r\nContent-Length: 999999\r\n\r\n" + b"[" * 100
        )
        status, _, body = await read_response(reader)
        assert status == 413
        assert json.loads(body)["error"] == "body_too_large"
        assert await server.app[HUB].session_ids() == []
    finally:
        writer.close()


async def test_client_hanging_up_during_a_hold_keeps_its_events(make_gateway: Any) -> None:
    server = await make_gateway(bayeux={"timeout_ms": 5000, "trust_client_session": True})
    hub = server.app[HUB]
    reader, writer = await connection(server)
    writer.write(post("/cometd", HANDSHAKE))
    client_id = json.loads((await read_response(reader))[2])[0]["clientId"]

    def msg(**fields: Any) -> bytes:
        return json.dumps([{"clientId": client_id, **fields}]).encode()

    writer.write(post("/cometd", msg(channel="/meta/subscribe", subscription="/a")))
    await read_response(reader)
    connect = msg(channel="/meta/connect", connectionType="long-polling")
    writer.write(post("/cometd", connect))
    await read_response(reader)  # first connect: at once
    writer.write(post("/cometd", connect))  # this one is held
    for _ in range(100):
        if hub.held_count:
            break
        await asyncio.sleep(0.02)
    assert hub.held_count == 1
    writer.close()  # the client goes away while held
    for _ in range(100):
        if not hub.held_count:
            break
        await asyncio.sleep(0.02)
    assert hub.held_count == 0
    await hub.publish("/a", {"n": 1})
    reader, writer = await connection(server)
    try:
        writer.write(post("/cometd", connect))
        _, _, body = await read_response(reader)
        messages = json.loads(body)
        assert messages[0] == {"channel": "/a", "data": {"n": 1}}
        assert messages[-1]["successful"] is True
    finally:
        writer.close()


async def test_other_paths_and_methods_go_to_aiohttp(make_gateway: Any) -> None:
    server = await make_gateway()
    reader, writer = await connection(server)
    try:
        writer.write(post("/nowhere", b"{}"))
        status, _, _ = await read_response(reader)
        assert status == 404
        writer.write(post("/cometd/a/b", HANDSHAKE))  # two suffix segments: not a Bayeux path
        status, _, _ = await read_response(reader)
        assert status == 404
    finally:
        writer.close()


@pytest.mark.parametrize("fast_http", [True, False], ids=["fast-path", "aiohttp-only"])
async def test_held_connect_flows_on_both_http_paths(make_gateway: Any, fast_http: bool) -> None:
    """Wake, supersede and timeout of a held long-poll, whichever HTTP path serves it."""
    from conformance.client import LongPollingClient

    server = await make_gateway(server={"fast_http": fast_http}, bayeux={"timeout_ms": 1500})
    hub = server.app[HUB]
    client = LongPollingClient(str(server.make_url("/cometd")))
    try:
        await client.open_session("/a")
        held = asyncio.create_task(client.connect(timeout=10))
        await _until(lambda: hub.held_count == 1)
        await hub.publish("/a", {"n": 1})
        assert (await asyncio.wait_for(held, 5))["successful"] is True
        assert client.take_events() == [{"channel": "/a", "data": {"n": 1}}]
        first = asyncio.create_task(client.post([client.connect_message()], within=10))
        await _until(lambda: hub.held_count == 1)
        second = asyncio.create_task(client.connect(timeout=10))
        assert (await asyncio.wait_for(first, 5)).status == 500
        reply = await asyncio.wait_for(second, 5)  # held to the timeout, then answered
        assert reply["successful"] is True
    finally:
        await client.close()


async def _until(predicate: Any, within: float = 5.0) -> None:
    """Poll a server-side condition (synchronisation only; assertions stay on the wire)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - the hub exposes no event for this
            await asyncio.sleep(0.01)
