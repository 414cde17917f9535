"""The HTTP edge on raw sockets: llhttp's strict framing, limits, time-outs and backpressure.

Every case runs on both HTTP paths (``fast_http`` on: Bayeux POSTs served by the lean protocol;
off: everything answered by aiohttp behind it), since a client chooses neither.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from rawhttp import HANDSHAKE, read_response
from rawhttp import post as raw_post
from structlog.testing import capture_logs

from gateway.app import HUB
from gateway.server import RunningGateway

FAST = pytest.mark.parametrize("fast_http", [True, False], ids=["fast", "aiohttp"])


def post(body: bytes = HANDSHAKE, *extra: str) -> bytes:
    """A Bayeux POST to ``/cometd``."""
    return raw_post("/cometd", body, *extra)


async def closed(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection (reads what is left, then EOF)."""
    try:
        while await asyncio.wait_for(reader.read(65536), 10):
            pass
    except ConnectionResetError:
        pass
    return True


async def still_serves(server: RunningGateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(post())
        status, _, body = await read_response(reader)
        assert status == 200
        assert json.loads(body)[0]["successful"] is True
    finally:
        writer.close()


async def exchange(server: RunningGateway, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data``; the one answer, after which the server must have closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        answer = await read_response(reader)
        assert await closed(reader)
        return answer
    finally:
        writer.close()


HEAD = b"POST /cometd HTTP/1.1\r\nHost: t\r\n"
MALFORMED = {
    "content-length-superscript-two": HEAD + b"Content-Length: \xb2\r\n\r\n[]",
    "content-length-4300-digits": HEAD + b"Content-Length: " + b"9" * 4300 + b"\r\n\r\n",
    "content-length-trailing-nbsp": HEAD + b"Content-Length: 2\xa0\r\n\r\n[]",
    "content-length-trailing-vt": HEAD + b"Content-Length: 2\x0b\r\n\r\n[]",
    "content-length-repeated": HEAD + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n[]",
    "content-length-list": HEAD + b"Content-Length: 2, 2\r\n\r\n[]",
    "content-length-and-chunked": HEAD
    + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bare-lf-in-value": HEAD + b"Origin: https://a\nX: y\r\nContent-Length: 2\r\n\r\n[]",
    "bare-cr-in-value": HEAD + b"Origin: https://a\rX: y\r\nContent-Length: 2\r\n\r\n[]",
    "bare-lf-lines": b"POST /cometd HTTP/1.1\nHost: t\nContent-Length: 2\n\n[]",
    "nul-in-value": HEAD + b"X: a\x00b\r\nContent-Length: 2\r\n\r\n[]",
    "control-byte-in-value": HEAD + b"X: a\x01b\r\nContent-Length: 2\r\n\r\n[]",
    "obs-fold": HEAD + b"X: a\r\n b\r\nContent-Length: 2\r\n\r\n[]",
    "space-before-colon": HEAD + b"Content-Length : 2\r\n\r\n[]",
    "non-ascii-path": b"POST /comet\xc3\xa9d HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n[]",
    "control-in-path": b"POST /com\x01etd HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n[]",
    "two-hosts": HEAD + b"Host: u\r\nContent-Length: 2\r\n\r\n[]",
    "no-host": b"POST /cometd HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]",
    "rest-get-bare-lf": b"GET /api/v2/me HTTP/1.1\nHost: t\n\n",
}


@FAST
@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_framing_gets_400_and_close(
    make_gateway: Any, fast_http: bool, data: bytes
) -> None:
    server = await make_gateway(server={"fast_http": fast_http})
    status, headers, body = await exchange(server, data)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"] == "invalid_http_request"
    assert await server.app[HUB].session_ids() == []  # nothing was served
    await still_serves(server)


@FAST
async def test_http_versions_other_than_1x_get_505(make_gateway: Any, fast_http: bool) -> None:
    server = await make_gateway(server={"fast_http": fast_http})
    status, _, body = await exchange(server, post().replace(b"HTTP/1.1", b"HTTP/2.0", 1))
    assert status == 505
    assert json.loads(body)["error"] == "http_version_not_supported"


SMUGGLED = post(b"[]").replace(b"Content-Length: 2", b"Content-Length: 0") + post()


@FAST
@pytest.mark.parametrize(
    "data",
    [
        # A body that is itself a request: the second request is answered only if the first's
        # length says it ends where the second begins.
        HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n" + post(),
        HEAD
        + b"Content-Length: 0\r\nContent-Length: "
        + str(len(post())).encode()
        + b"\r\n\r\n"
        + post(),
        HEAD + b"Content-Length: 0\r\nX: y\nContent-Length: 80\r\n\r\n" + post(),
        HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n" + post(),
        HEAD + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + post(),
        HEAD + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + post(),
        HEAD + b"Content-Length: +0\r\n\r\n" + post(),
    ],
    ids=["cl-te", "cl-cl", "lf-cl", "te-te", "te-space", "te-xchunked", "cl-plus"],
)
async def test_no_request_is_smuggled_inside_another(
    make_gateway: Any, fast_http: bool, data: bytes
) -> None:
    server = await make_gateway(server={"fast_http": fast_http})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        status, _, _ = await read_response(reader)
        assert status == 400
        assert await closed(reader)  # and no second answer before the close
    finally:
        writer.close()
    assert await server.app[HUB].session_ids() == []


@FAST
async def test_origin_with_bare_lf_is_never_reflected(make_gateway: Any, fast_http: bool) -> None:
    server = await make_gateway(server={"fast_http": fast_http}, cors={"allow_origins": ["*"]})
    data = post(HANDSHAKE, "Origin: https://a.example\nSet-Cookie: evil=1")
    status, headers, _ = await exchange(server, data)
    assert status == 400
    assert "set-cookie" not in headers
    assert "access-control-allow-origin" not in headers


@FAST
async def test_head_over_16_kib_in_one_read_gets_431(make_gateway: Any, fast_http: bool) -> None:
    server = await make_gateway(server={"fast_http": fast_http})
    status, _, body = await exchange(server, post(HANDSHAKE, "X-Big: " + "a" * 20_000))
    assert status == 431
    assert json.loads(body)["error"] == "header_too_large"
    await still_serves(server)


# -- time-outs ------------------------------------------------------------------------------

SLOW = {
    "head": b"POST /cometd HTTP/1.1\r\nHost: t\r\nContent-Le",
    "fast-path-body": HEAD + b"Content-Length: 100\r\n\r\n[{",
    "rest-head": b"GET /api/v2/me HTTP/1.1\r\nHo",
}


@pytest.mark.parametrize(
    ("fast_http", "data"),
    [
        *(pytest.param(True, data, id=f"fast-{name}") for name, data in SLOW.items()),
        # With fast_http off a Bayeux body is aiohttp's: see the test below.
        *(
            pytest.param(False, data, id=f"aiohttp-{name}")
            for name, data in SLOW.items()
            if name != "fast-path-body"
        ),
    ],
)
async def test_unfinished_request_gets_408_and_close(
    make_gateway: Any, fast_http: bool, data: bytes
) -> None:
    server = await make_gateway(server={"fast_http": fast_http, "request_timeout_s": 0.3})
    status, _, body = await exchange(server, data)
    assert status == 408
    assert json.loads(body)["error"] == "request_timeout"
    assert not server.fast.connections or all(c.deadline is None for c in server.fast.connections)


@FAST
@pytest.mark.parametrize(
    "data",
    [
        HEAD + b'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[{"ch',
        b"POST /api/v2/me HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50\r\n\r\n{",
    ],
    ids=["chunked-bayeux-post", "rest-post-body"],
)
async def test_unfinished_body_handed_to_aiohttp_is_closed(
    make_gateway: Any, fast_http: bool, data: bytes
) -> None:
    server = await make_gateway(server={"fast_http": fast_http, "request_timeout_s": 0.3})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        assert await closed(reader)
    finally:
        writer.close()
    for _ in range(100):
        if not server.fast.connections:
            break
        await asyncio.sleep(0.02)
    assert not server.fast.connections


@FAST
async def test_a_held_connect_is_not_timed_out(make_gateway: Any, fast_http: bool) -> None:
    """The request limit is for arriving bytes; a held long-poll waits its own hold."""
    server = await make_gateway(
        server={"fast_http": fast_http, "request_timeout_s": 0.2},
        bayeux={"timeout_ms": 1000, "trust_client_session": True},
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(post())
        client_id = json.loads((await read_response(reader))[2])[0]["clientId"]
        connect = json.dumps(
            [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}]
        ).encode()
        writer.write(post(connect))
        await read_response(reader)  # the first connect returns at once
        writer.write(post(connect))  # held for 1 s, five request time-outs
        status, _, body = await read_response(reader)
        assert status == 200
        assert json.loads(body)[-1]["successful"] is True
    finally:
        writer.close()


# -- connections per address ----------------------------------------------------------------


@FAST
async def test_connections_per_address_are_capped(make_gateway: Any, fast_http: bool) -> None:
    server = await make_gateway(server={"fast_http": fast_http, "max_connections_per_address": 3})
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        status, _, body = await read_response(reader)
        assert status == 429
        assert json.loads(body)["error"] == "too_many_connections"
        assert await closed(reader)
        writer.close()
        held.pop()[1].close()
        for _ in range(100):
            if server.fast.per_address.get("127.0.0.1") == 2:
                break
            await asyncio.sleep(0.02)
        await still_serves(server)
    finally:
        for _, writer in held:
            writer.close()


# -- backpressure ---------------------------------------------------------------------------


def _flood(port: int, request: bytes) -> tuple[socket.socket, int]:
    """Pipeline ``request`` until the gateway stops taking more for a second (no reads)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect(("127.0.0.1", port))
    sock.settimeout(1.0)
    sent = 0
    batch = request * 100
    try:
        while sent < 1_000_000:
            sock.sendall(batch)
            sent += 100
    except TimeoutError:
        pass  # the gateway stopped reading (a batch may be cut: its whole requests count below)
    return sock, sent


def _read_answers(sock: socket.socket, at_least: int) -> int:
    sock.settimeout(10)
    stream = sock.makefile("rb")
    answers = 0
    while answers < at_least:
        status = stream.readline()
        assert status.startswith(b"HTTP/1.1 200 "), status
        length = 0
        while (line := stream.readline()) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        assert json.loads(stream.read(length))[0]["id"] == "x"
        answers += 1
    return answers


@FAST
async def test_pipelining_client_that_never_reads_is_bounded(
    make_gateway: Any, fast_http: bool
) -> None:
    """Requests keep coming, answers are never read: the gateway stops reading, its buffers stay
    bounded, and once the client reads, every answer is there, in order."""
    server = await make_gateway(server={"fast_http": fast_http, "max_body_bytes": 4096})
    request = post(b'[{"channel":"/meta/connect","clientId":"nope","id":"x"}]')
    sock, sent = await asyncio.to_thread(_flood, server.port, request)
    try:
        assert sent < 1_000_000, "the gateway never stopped reading"
        buffered = sum(
            len(c._buffer) + (c.transport.get_write_buffer_size() if c.transport else 0)
            for c in server.fast.connections
        )
        assert buffered < 1024 * 1024
        assert await asyncio.to_thread(_read_answers, sock, sent - 100) >= sent - 100
    finally:
        sock.close()


# -- one answer writer ----------------------------------------------------------------------


async def _answer_headers(make_gateway: Any, fast_http: bool) -> dict[str, str]:
    server = await make_gateway(
        server={"fast_http": fast_http}, cors={"allow_origins": ["https://desk.example"]}
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(post(HANDSHAKE, "Origin: https://desk.example"))
        status, headers, _ = await read_response(reader)
        assert status == 200
        return headers
    finally:
        writer.close()


async def test_both_paths_send_the_same_answer_headers(make_gateway: Any) -> None:
    fast = await _answer_headers(make_gateway, True)
    slow = await _answer_headers(make_gateway, False)
    framing = {"date", "server", "content-length", "set-cookie"}
    assert {k: v for k, v in fast.items() if k not in framing} == {
        k: v for k, v in slow.items() if k not in framing
    }
    assert fast["access-control-allow-origin"] == "https://desk.example"
    assert fast["access-control-allow-credentials"] == "true"
    assert fast["set-cookie"].startswith("BAYEUX_BROWSER=")
    assert slow["set-cookie"].startswith("BAYEUX_BROWSER=")


@FAST
async def test_bayeux_posts_get_an_access_log_line(make_gateway: Any, fast_http: bool) -> None:
    server = await make_gateway(server={"fast_http": fast_http, "access_log": True})
    with capture_logs() as events:
        await still_serves(server)
        for _ in range(50):
            if any(e["event"] == "http_request" for e in events):
                break
            await asyncio.sleep(0.02)
    lines = [e for e in events if e["event"] == "http_request"]
    assert len(lines) == 1
    assert lines[0]["method"] == "POST"
    assert lines[0]["path"] == "/cometd"
    assert lines[0]["status"] == 200


WS_HEAD = b"GET /cometd HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"


@FAST
@pytest.mark.parametrize(
    "data",
    [
        WS_HEAD + b"Connection:\xa0Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        WS_HEAD + b"Connection: Upgrade\r\nSec-WebSocket-Key: \xff\xfe\r\n\r\n",
        WS_HEAD + b"Connection: Upgrade\r\n\r\n",
    ],
    ids=["nbsp-in-connection", "non-ascii-key", "no-key"],
)
async def test_malformed_websocket_handshake_is_a_400(
    make_gateway: Any, fast_http: bool, data: bytes
) -> None:
    """Found by the edge's fuzzer: aiohttp's own 400 failed on a non-ASCII header (a 500)."""
    server = await make_gateway(server={"fast_http": fast_http})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        status, _, body = await read_response(reader)
    finally:
        writer.close()
    assert status == 400
    assert json.loads(body)["error"] == "invalid_websocket_handshake"
    await still_serves(server)
