"""Whatever bytes arrive on the port, the gateway answers as promised and goes on.

Raw requests — arbitrary bytes, and valid requests of every kind the port serves (a Bayeux
POST, a REST GET and POST, a JSONP GET, a websocket upgrade) with a few bytes inserted,
replaced or deleted — are written on a fresh connection, which is then half-closed.  Whatever
comes back is HTTP/1.x answers and nothing else: never a 5xx but 505 (a version the gateway
does not speak), every answer of the edge itself a JSON body; then the gateway still serves a
handshake.  On both HTTP paths.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mutations import ANY_BYTE, mutate
from rawhttp import HANDSHAKE

from gateway.server import RunningGateway

from .test_http_edge import post, still_serves

VALID = [
    post(),
    post(b"message=" + HANDSHAKE, "Origin: https://desk.example").replace(
        b"application/json", b"application/x-www-form-urlencoded"
    ),
    b"GET /api/v2/me HTTP/1.1\r\nHost: t\r\nAuthorization: Basic YWdlbnQxOmFnZW50MQ==\r\n\r\n",
    b"POST /api/v2/me HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b'Content-Length: 45\r\n\r\n{"operationName":"StartContactCenterSession"}',
    b"GET /cometd?jsonp=cb&message=%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%7D%5D "
    b"HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /cometd HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"POST /cometd HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4b\r\n" + HANDSHAKE + b"\r\n0\r\n\r\n",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid request (or two, pipelined) with up to three bytes inserted, replaced or
    deleted; bytes that framing rules are about come up often."""
    data = b"".join(draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=2)))
    return mutate(draw, data, st.sampled_from([0, 10, 13, 32, 58, 127, 0xA0, 0xFF]) | ANY_BYTE)


REQUESTS = st.binary(max_size=400) | mutated()


def _exchange(port: int, data: bytes) -> bytes:
    """Write ``data``, half-close, read until the gateway closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the gateway refused and closed while we wrote: what it said is below
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def _statuses(answer: bytes) -> list[int]:
    """The status of each HTTP answer at the start of ``answer`` (websocket frames after a 101
    are not looked into)."""
    statuses = []
    rest = answer
    while rest.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, answer[:300]
        status = int(head[9:12])
        statuses.append(status)
        if status == 101:
            break
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        }
        if b"content-length" in headers:
            rest = rest[int(headers[b"content-length"]) :]
        elif headers.get(b"transfer-encoding") == b"chunked":
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                rest = rest[size + 2 :]
                if size == 0:
                    break
    assert not rest or statuses[-1:] == [101], answer[:300]
    return statuses


@pytest.fixture
async def server(make_gateway: Any, fast_http: bool) -> RunningGateway:
    """One gateway per test, shared by its examples: each must leave it working."""
    running: RunningGateway = await make_gateway(
        server={"fast_http": fast_http, "request_timeout_s": 1.0},
        cors={"allow_origins": ["*"]},
    )
    return running


@pytest.mark.parametrize("fast_http", [True, False], ids=["fast", "aiohttp"])
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=REQUESTS)
@example(data=b"POST /cometd HTTP/1.1\r\nHost: t\r\nContent-Length: \xb2\r\n\r\n")
@example(data=b"POST /cometd HTTP/1.1\r\nContent-Length: " + b"9" * 4400 + b"\r\n\r\n")
@example(data=b"GET /api/v2/me HTTP/1.1\r\n" + b"X: y\r\n" * 100 + b"\r\n")
async def test_any_bytes_get_http_answers_and_the_gateway_goes_on(
    server: RunningGateway, data: bytes
) -> None:
    answer = await asyncio.to_thread(_exchange, server.port, data)
    for status in _statuses(answer):
        assert status < 500 or status == 505, answer[:400]
    await still_serves(server)
