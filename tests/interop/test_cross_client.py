"""The CometD JavaScript client and aiocometd talk to each other through the gateway: each one
publishes, both receive (the publisher gets its own message too, CometD's broadcastToPublisher
default). Each pairing mixes the two transports. Client-side publish is the path these tests add
over the server-publish tests: the publish ack must not carry ``data`` (the JS client would take
it for an event) and must carry ``successful``.

Host names: Node uses 127.0.0.1, aiocometd uses localhost (see test_aiocometd.py for why).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiocometd_noloop as aiocometd
import pytest

pytestmark = [
    pytest.mark.interop,
    pytest.mark.filterwarnings(
        "ignore:float parameter 'receive_timeout' is deprecated:DeprecationWarning"
    ),
]

ROOM = "/chat/room"


@pytest.mark.parametrize(
    ("js_transport", "py_connection_type"),
    [
        pytest.param("websocket", aiocometd.ConnectionType.LONG_POLLING, id="js-ws+py-lp"),
        pytest.param("long-polling", aiocometd.ConnectionType.WEBSOCKET, id="js-lp+py-ws"),
    ],
)
async def test_js_and_aiocometd_exchange_messages(
    gateway: Any,
    node_client: Any,
    aiocometd_client: Any,
    js_transport: str,
    py_connection_type: Any,
) -> None:
    js = await node_client(gateway.url(), js_transport, channels=[ROOM])
    handshake = await js.expect("handshake")
    assert handshake["successful"] is True, handshake
    assert handshake["transport"] == js_transport
    assert (await js.expect("subscribed"))["successful"] is True

    py, _wire = aiocometd_client(gateway.url(host="localhost"), py_connection_type)
    await asyncio.wait_for(py.open(), gateway.step_timeout)
    assert py.connection_type == py_connection_type
    await asyncio.wait_for(py.subscribe(ROOM), gateway.step_timeout)

    # aiocometd publishes.
    ack = await asyncio.wait_for(py.publish(ROOM, {"from": "py", "n": 1}), gateway.step_timeout)
    assert ack["successful"] is True, ack
    assert ack["channel"] == ROOM
    assert "data" not in ack, ack
    from_py = await js.expect("message")
    assert from_py["channel"] == ROOM
    assert from_py["data"] == {"from": "py", "n": 1}
    own = await asyncio.wait_for(py.receive(), gateway.step_timeout)
    assert own["data"] == {"from": "py", "n": 1}

    # The JS client publishes.
    await js.send("publish", channel=ROOM, data={"from": "js", "n": 2})
    published = await js.expect("published")
    assert published["successful"] is True, published
    from_js = await asyncio.wait_for(py.receive(), gateway.step_timeout)
    assert from_js["channel"] == ROOM
    assert from_js["data"] == {"from": "js", "n": 2}
    assert "clientId" not in from_js, from_js
    own_js = await js.expect("message")
    assert own_js["data"] == {"from": "js", "n": 2}

    # Exactly one copy each.
    assert [e["data"] for e in js.events if e["event"] == "message"] == [
        {"from": "py", "n": 1},
        {"from": "js", "n": 2},
    ]
    await js.expect_none("message", 0.5)
    assert not py.has_pending_messages

    await js.send("disconnect")
    assert (await js.expect("disconnected"))["successful"] is True
    assert await js.wait_exit() == 0
    await asyncio.wait_for(py.close(), gateway.step_timeout)
    await gateway.wait_sessions(lambda ids: ids == [])
