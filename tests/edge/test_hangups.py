"""A client that hangs up mid-answer never stops ``gateway serve`` (a real child process).

The answers below are written to sockets whose peer has already closed: the first write draws
a reset, the next one fails with EPIPE.  With SIGPIPE at its default action that failed write
killed the process (exit -13) without a log line.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from gateway_process import Process

HANDSHAKE = json.dumps(
    [{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}]
).encode()

_HANDSHAKE_WS = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "supportedConnectionTypes": ["websocket"],
}


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Process]:
    process = Process(tmp_path)
    process.start(GATEWAY_AGENTS__ALLOW_ANONYMOUS_BAYEUX="true")
    yield process
    process.stop()


def _post(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _send_and_vanish(port: int, data: bytes, *, reset: bool) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        if reset:  # close with RST at once, not FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _still_serving(process: Process) -> None:
    assert process.proc is not None
    assert process.proc.poll() is None, f"gateway exited {process.proc.returncode}\n{process.log()}"
    request = urllib.request.Request(
        process.base + "/cometd",
        data=HANDSHAKE,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert json.loads(answer.read())[0]["successful"] is True


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_pipelined_posts_then_close(child: Process, reset: bool) -> None:
    for _ in range(10):
        _send_and_vanish(child.port, _post("/cometd", HANDSHAKE) * 2, reset=reset)
    _still_serving(child)


def test_pipelined_rest_requests_then_close(tmp_path: Path) -> None:
    process = Process(tmp_path)
    process.start(GATEWAY_SERVER__FAST_HTTP="false", GATEWAY_AGENTS__ALLOW_ANONYMOUS_BAYEUX="true")
    try:
        request = b"GET /api/v2/me HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        for _ in range(5):
            _send_and_vanish(process.port, request * 100, reset=False)
        _still_serving(process)
    finally:
        process.stop()


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_websocket_subscribers_vanish_while_events_flow(child: Process, reset: bool) -> None:
    """Subscribers that drop their socket without a close frame while a publisher keeps going."""

    async def subscriber(url: str) -> aiohttp.ClientSession:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(url)
        await ws.send_json([_HANDSHAKE_WS])
        client_id = json.loads((await ws.receive()).data)[0]["clientId"]
        subscribe = {"channel": "/meta/subscribe", "clientId": client_id}
        connect = {"channel": "/meta/connect", "clientId": client_id}
        await ws.send_json(
            [
                {**subscribe, "subscription": "/hangup/all"},
                {**connect, "connectionType": "websocket", "advice": {"timeout": 0}},
            ]
        )
        await ws.receive()
        await ws.send_json([{**connect, "connectionType": "websocket"}])  # held from now on
        if reset:
            raw = ws.get_extra_info("socket")
            assert raw is not None
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return http

    async def scenario() -> None:
        url = child.base + "/cometd"
        subscribers = [await subscriber(url) for _ in range(20)]
        publish = [{"channel": "/hangup/all", "data": {"text": "x" * 2000}}] * 50
        stop = asyncio.Event()

        async def publish_until_stopped() -> None:
            async with aiohttp.ClientSession() as publisher:
                while not stop.is_set():
                    async with publisher.post(url, json=publish) as answer:
                        assert answer.status == 200

        pumping = asyncio.create_task(publish_until_stopped())
        for http in subscribers:
            await asyncio.sleep(0.02)
            await http.close()  # the socket goes without a close frame, events still flowing
        await asyncio.sleep(0.2)
        stop.set()
        await pumping

    asyncio.run(scenario())
    _still_serving(child)


def test_sigterm_right_after_ready_is_a_graceful_stop(tmp_path: Path) -> None:
    """The signal handler is installed before "ready" is printed: a supervisor that stops the
    gateway as soon as it is up gets a clean exit 0, not death by signal."""
    process = Process(tmp_path)
    process.start()
    assert process.proc is not None
    process.proc.terminate()
    assert process.proc.wait(timeout=15) == 0
    process.stop()
