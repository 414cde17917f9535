"""Whatever bytes a client sends, the gateway answers as promised and goes on.

Over long-polling (through the fast HTTP path and through aiohttp's route,
``server.fast_http = false``): never a 5xx, always a JSON body — a Bayeux reply array (200) or
``{"error", "detail"}`` (4xx).  Over websocket: a frame of Bayeux replies, or a close frame
1007 with a reason; never a socket dropped without one.  After every request a valid
handshake still succeeds.

A failure of ours (here a security policy that raises) closes a websocket with 1011.

Bodies are arbitrary bytes and valid batches with a few bytes inserted, replaced or deleted
(invalid UTF-8, broken JSON, wrong field types: what a fuzzer finds first).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, quote_from_bytes

import aiohttp
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mutations import mutate
from structlog.testing import capture_logs

from gateway.bayeux.security import AllowAll
from gateway.server import RunningGateway

from .client import STEP_TIMEOUT, LongPollingClient, WebSocketClient
from .conftest import DEFAULT_CONFIG, OpenClient

FIELD_VALUES: dict[str, Any] = {
    "id": st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    "clientId": st.text(max_size=8),
    "data": st.none() | st.integers() | st.text(max_size=8) | st.dictionaries(st.text(), st.none()),
    "subscription": st.sampled_from(["/chat/demo", "/a/*", "/meta/x", ""]) | st.integers(),
    "ext": st.dictionaries(st.sampled_from(["ack", "timesync", "x"]), st.integers() | st.none()),
    "advice": st.dictionaries(st.sampled_from(["timeout", "interval"]), st.integers()),
    "version": st.sampled_from(["1.0", "2"]) | st.integers(),
    "supportedConnectionTypes": st.lists(st.sampled_from(["long-polling", "websocket", "x"])),
    "connectionType": st.sampled_from(["long-polling", "websocket"]) | st.integers(),
}
CHANNELS = st.sampled_from(
    ["/meta/handshake", "/meta/connect", "/meta/subscribe", "/meta/disconnect", "/chat/demo"]
)
MESSAGES = st.fixed_dictionaries({"channel": CHANNELS}, optional=FIELD_VALUES)
BATCHES = st.lists(MESSAGES, min_size=1, max_size=3).map(lambda b: json.dumps(b).encode())


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid batch with up to three bytes inserted, replaced or deleted."""
    return mutate(draw, draw(BATCHES))


BODIES = st.binary(max_size=300) | mutated()
#: Found by hand before the fuzzer: an invalid UTF-8 key together with a mistyped id, and
#: nesting beyond msgspec's limit.
ISSUE_BODY = b'[{"\xff":1,"channel":"/meta/connect","id":1.5}]'
DEEP_BODY = b"[" * 100_000
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
async def fuzzed(make_gateway: Any, fast_http: bool) -> RunningGateway:
    """One gateway per test, shared by all its examples: each must leave it working."""
    server: RunningGateway = await make_gateway(**DEFAULT_CONFIG, server={"fast_http": fast_http})
    return server


@pytest.mark.parametrize("fast_http", [True, False], ids=["fast-http", "aiohttp"])
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
@FUZZ
@given(body=BODIES)
@example(body=ISSUE_BODY)
@example(body=DEEP_BODY)
@example(body=b"message=" + ISSUE_BODY)
async def test_long_polling_answers_any_body(
    fuzzed: RunningGateway, open_client: OpenClient, content_type: str, body: bytes
) -> None:
    client: LongPollingClient = await open_client(fuzzed, "long-polling")
    reply = await client.post(body, content_type=content_type)
    assert reply.status < 500, (reply.status, reply.body[:300])
    assert reply.content_type == "application/json", reply.headers
    decoded = reply.json()
    if reply.status == 200:
        assert isinstance(decoded, list) and decoded, decoded
        assert all("successful" in m for m in decoded), decoded
    else:
        assert reply.status in (400, 413), reply.status
        assert set(decoded) == {"error", "detail"}, decoded
    assert (await client.handshake())["successful"] is True
    await client.close()


@pytest.mark.parametrize("fast_http", [True], ids=["default-server"])
@FUZZ
@given(body=BODIES, callback=st.sampled_from(["cb", "jQuery_1.x", "a b", "", "1x"]))
@example(body=ISSUE_BODY, callback="cb")
@example(body=DEEP_BODY, callback="cb")
async def test_callback_polling_answers_any_message(
    fuzzed: RunningGateway, open_client: OpenClient, body: bytes, callback: str
) -> None:
    """JSONP: the body percent-encoded as ``message=``, with good and bad callbacks."""
    client: LongPollingClient = await open_client(fuzzed, "long-polling")
    query = f"jsonp={quote(callback)}&message={quote_from_bytes(body)}"
    reply = await client.send_http("GET", f"?{query}", allow_redirects=False)
    assert reply.status < 500, (reply.status, reply.body[:300])
    if reply.status == 200:
        assert reply.body.startswith(f"/**/{callback}(".encode()), reply.body[:300]
        decoded = json.loads(reply.body[len(callback) + 5 : -2])
        assert all("successful" in m for m in decoded), decoded
    else:
        assert reply.status in (400, 413, 431), reply.status  # 431: the query makes the head
        assert set(reply.json()) == {"error", "detail"}, reply.body[:300]
    assert (await client.handshake())["successful"] is True
    await client.close()


@pytest.mark.parametrize("fast_http", [True], ids=["default-server"])
@FUZZ
@given(body=BODIES)
@example(body=ISSUE_BODY)
@example(body=DEEP_BODY)
async def test_websocket_answers_any_frame(
    fuzzed: RunningGateway, open_client: OpenClient, body: bytes
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{fuzzed.port}/cometd") as ws,
    ):
        await ws.send_frame(body, aiohttp.WSMsgType.TEXT)  # the raw bytes, as a text frame
        answer = await ws.receive(timeout=STEP_TIMEOUT)
        if answer.type is aiohttp.WSMsgType.TEXT:
            decoded = json.loads(answer.data)
            assert isinstance(decoded, list) and decoded, decoded
            assert all("successful" in m for m in decoded), decoded
        else:
            assert answer.type is aiohttp.WSMsgType.CLOSE, answer
            assert answer.data == aiohttp.WSCloseCode.INVALID_TEXT, answer
            assert answer.extra, "a close frame without a reason"
    fresh: WebSocketClient = await open_client(fuzzed, "websocket")
    assert (await fresh.handshake())["successful"] is True
    await fresh.close()


class _BrokenPolicy(AllowAll):
    async def can_publish(self, session: Any, channel: str, message: Any) -> bool:
        raise RuntimeError("a policy bug")


async def test_a_failure_of_ours_closes_the_websocket_with_1011(
    make_gateway: Any, open_client: OpenClient
) -> None:
    server = await make_gateway(policy=_BrokenPolicy(), **DEFAULT_CONFIG)
    client: WebSocketClient = await open_client(server, "websocket")
    await client.open_session()
    with capture_logs() as logs:
        await client.send_frame([client.message("/boom", data=1)])
        assert await client.wait_closed() == aiohttp.WSCloseCode.INTERNAL_ERROR
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["websocket_failed"]
    fresh: WebSocketClient = await open_client(server, "websocket")
    assert (await fresh.handshake())["successful"] is True
