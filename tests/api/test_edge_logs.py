"""What clients' faults leave in the logs: one counted line each, never their bytes.

Raw sockets send what no HTTP client library would: a bearer token in a header with invalid
bytes, bodies in malformed chunk framing, requests abandoned halfway, a password typed as the
user name, a JSONP message with a token in the query string.  Neither the gateway's events
nor anything on a real ``gateway serve``'s stderr may contain those secrets, and a client's
fault is never an error with a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from contact.desktop import write_users
from gateway_process import Process
from structlog.testing import capture_logs

from gateway.app import HUB
from gateway.bayeux.security import Grant, Peer, SecurityPolicy
from protocol import Message

SECRETS = ("SECRET123", "BODYSECRET", "Hunter2Password", "TOKSECRET")
JSONP_MESSAGE = quote('[{"channel":"/meta/handshake","ext":{"token":"TOKSECRET"}}]')


def raw_requests(partner_token: str) -> list[bytes]:
    """Requests aiohttp refuses or that carry secrets; each on its own connection."""
    bearer = f"Authorization: Bearer {partner_token}\r\n".encode()
    return [
        # a malformed Authorization header: aiohttp's error quotes the whole line
        b"GET /api/v2/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer SECRET123\x01\xff\r\n\r\n",
        # a token in a request line that is not HTTP
        b"G\x01T /api/v2/me?token=TOKSECRET HTTP/1.1\r\nHost: t\r\n\r\n",
        # on a kept connection the second bad request line is no longer "first traffic"
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\nG\x01T /?token=TOKSECRET HTTP/1.1\r\nHost: t\r\n\r\n",
        # two lengths, a body
        b"POST /api/v2/interactions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer SECRET123\r\n"
        b"Content-Length: 12\r\nContent-Length: 13\r\n\r\n{BODYSECRET}",
        # the body where a chunk size belongs: the parser's error quotes it
        b"POST /cometd HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b'[{"channel":"/meta/handshake","ext":{"token":"BODYSECRET"}}]\r\n',
        # a chunk longer than announced, to the REST API (the handler is reading the body)
        b"POST /api/v2/interactions HTTP/1.1\r\nHost: t\r\n" + bearer + b"Content-Type: "
        b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{BODYSECRET}\r\n0\r\n\r\n",
        # a malformed JSON body, well framed
        b"POST /api/v2/interactions HTTP/1.1\r\nHost: t\r\n" + bearer + b"Content-Type: "
        b"application/json\r\nContent-Length: 12\r\n\r\n{BODYSECRET",
        # a password typed as the user name
        b"GET /api/v2/me HTTP/1.1\r\nHost: t\r\nAuthorization: Basic "
        + base64.b64encode(b"Hunter2Password:x")
        + b"\r\n\r\n",
        # a JSONP message (with a token) in the query string: the access log
        f"GET /cometd?jsonp=cb&message={JSONP_MESSAGE} HTTP/1.1\r\nHost: t\r\n\r\n".encode(),
    ]


def abandoned_requests(partner_token: str) -> list[bytes]:
    """Requests their clients give up on while the gateway reads the body."""
    return [
        # a chunked Bayeux POST, cut off inside its first chunk
        b"POST /cometd HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n100\r\n[{"channel":"/meta/handshake","x":"BODYSECRET',
        # a Bayeux POST that aiohttp reads (Expect: 100-continue), cut off inside its body
        b"POST /cometd HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b'Expect: 100-continue\r\nContent-Length: 500\r\n\r\n[{"x":"BODYSECRET',
        # a partner's POST, cut off inside its announced body
        b"POST /api/v2/interactions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {partner_token}\r\n".encode()
        + b'Content-Length: 500\r\n\r\n{"channel":"chat","nickname":"BODYSECRET',
    ]


async def misbehave(port: int, partner_token: str) -> None:
    for request in raw_requests(partner_token):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(65536), 2)  # an answer, or the server closing
        writer.close()
    for request in abandoned_requests(partner_token):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        await asyncio.sleep(0.2)  # the handler is reading the body
        writer.transport.abort()  # RST: the client is gone
    await asyncio.sleep(0.3)


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


async def test_client_faults_are_one_counted_line_without_secrets(
    make_gateway: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, token = write_users(tmp_path, ["agent1"])
    server = await make_gateway(store={"data_dir": str(tmp_path)}, server={"access_log": True})
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events:
        await misbehave(server.port, token)

    assert [leaks(repr(e)) for e in events if leaks(repr(e))] == []
    records = [f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.exc_info}" for r in caplog.records]
    assert [leaks(r) for r in records if leaks(r)] == []
    # a client's fault is not an error of ours, and carries no traceback
    assert [e for e in events if e["log_level"] in ("warning", "error", "critical")] == []
    assert [e for e in events if "exc_info" in e or "exception" in e] == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []

    bad = [e for e in events if e["event"] == "http_bad_request"]
    assert len(bad) >= 5 and all(e["log_level"] == "info" for e in bad)
    assert {e["status"] for e in bad} == {400}
    gone = [e for e in events if e["event"] == "http_client_gone"]
    assert len(gone) >= 2 and all(e["log_level"] == "debug" for e in gone)
    stats = server.app[HUB].stats
    assert stats["http_bad_requests"] == len(bad) and stats["http_client_gone"] == len(gone)
    assert stats["http_errors"] == 0

    (failed,) = [e for e in events if e["event"] == "login_failed"]
    assert set(failed) >= {"unknown_user"} and len(failed["unknown_user"]) == 12
    (jsonp,) = [
        e
        for e in events
        if e["event"] == "http_request" and e["method"] == "GET" and e["path"] == "/cometd"
    ]
    assert jsonp["status"] == 200


async def test_a_real_gateway_writes_no_secret_and_no_traceback_to_stderr(
    tmp_path: Path,
) -> None:
    _, token = write_users(tmp_path, ["agent1"])
    process = Process(tmp_path)
    process.start(GATEWAY_SERVER__ACCESS_LOG="true", GATEWAY_LOG__LEVEL="debug")
    try:
        await misbehave(process.port, token)
    finally:
        process.stop()
    log = process.log()
    assert leaks(log) == [], log
    assert "Traceback" not in log and "ERROR" not in log, log
    assert "http_bad_request" in log and "login_failed" in log  # the events are there


class BrokenPolicy(SecurityPolicy):
    async def can_handshake(self, message: Message, peer: Peer) -> Grant:
        raise RuntimeError("a bug of ours")


async def test_our_own_failures_stay_errors_with_their_traceback(make_gateway: Any) -> None:
    server = await make_gateway(policy=BrokenPolicy())
    with capture_logs() as events:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"GET /cometd?jsonp=cb&message={JSONP_MESSAGE} HTTP/1.1\r\n".encode())
        writer.write(b"Host: t\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(65536), 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 500 ")
    (failed,) = [e for e in events if e["event"] == "http_request_failed"]
    assert failed["log_level"] == "error" and isinstance(failed["exc_info"], RuntimeError)
    assert server.app[HUB].stats["http_errors"] == 1


@pytest.mark.parametrize("fast_http", [True, False], ids=["fast", "aiohttp"])
async def test_a_websocket_is_one_access_line_when_it_ends(
    make_gateway: Any, fast_http: bool
) -> None:
    """The upgrade is logged once, with its status (101) and how long the socket lived; the
    path without its query string.  The edge also counts the bytes it sent (aiohttp: 0)."""
    server = await make_gateway(server={"access_log": True, "fast_http": fast_http})
    url = f"ws://127.0.0.1:{server.port}/cometd?token=TOKSECRET"
    handshake = (
        '[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["websocket"]}]'
    )
    with capture_logs() as events:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_str(handshake)
            reply = await ws.receive_json(timeout=5)
            assert reply[0]["successful"] is True
        for _ in range(100):  # the line is written when the server sees the socket end
            if any(e["event"] == "http_request" for e in events):
                break
            await asyncio.sleep(0.02)
    (line,) = [e for e in events if e["event"] == "http_request"]
    assert (line["method"], line["path"], line["status"]) == ("GET", "/cometd", 101)
    assert line["size"] >= (len('[{"channel":"/meta/handshake"') if fast_http else 0)
    assert line["ms"] >= 0
    assert leaks(repr(events)) == []
