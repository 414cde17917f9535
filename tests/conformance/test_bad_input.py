"""Bad input beyond bayeux.md §10 that a production server must survive, over every transport.

* Each malformed field is answered with its Bayeux error (protocol/errors.py ``FIELD_ERRORS``,
  ``400::message_invalid`` for the rest) while the other messages of the same batch are still
  answered (protocol/messages.py: "a single message that does not fit the schema becomes a
  Malformed entry ... so the rest of the batch is still answered").
* A websocket frame over ``server.max_body_bytes`` closes the socket with 1009; a batch over
  ``server.max_batch`` is HTTP 400 / websocket close 1007.
* After each, the next valid request works: nothing crashed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from .client import ABSENT, LongPollingClient, WebSocketClient, same_id
from .conftest import DEFAULT_CONFIG, OpenClient

#: The placeholder for the sender's clientId in the table below.
CID = "<clientId>"
#: The placeholder for the sender's connection type.
TYPE = "<connectionType>"

#: A valid publish, and valid subscribe / connect / handshake messages, to spoil one field of.
PUB = {"channel": "/bad", "id": "bad", "clientId": CID, "data": {}}
SUB = {"channel": "/meta/subscribe", "id": "bad", "clientId": CID, "subscription": "/s"}
CON = {"channel": "/meta/connect", "id": "bad", "clientId": CID, "connectionType": TYPE}
HS = {
    "channel": "/meta/handshake",
    "id": "bad",
    "version": "1.0",
    "supportedConnectionTypes": [TYPE],
}
CHANNEL_INVALID = "405::channel_invalid"
ID_INVALID = "405::message_id_invalid"
SUBSCRIPTION_INVALID = "403::subscription_invalid"
MESSAGE_INVALID = "400::message_invalid"

#: (case, bad message, its error, whether its reply echoes its id)
MALFORMED_ROWS: list[tuple[str, Any, str, bool]] = [
    ("channel-number", {**PUB, "channel": 5}, CHANNEL_INVALID, True),
    ("channel-null", {**PUB, "channel": None}, CHANNEL_INVALID, True),
    ("channel-array", {**PUB, "channel": ["/a"]}, CHANNEL_INVALID, True),
    ("channel-empty", {**PUB, "channel": ""}, CHANNEL_INVALID, True),
    ("channel-empty-segment", {**PUB, "channel": "/a//b"}, CHANNEL_INVALID, True),
    ("channel-inner-wildcard", {**PUB, "channel": "/a/**/b"}, CHANNEL_INVALID, True),
    (
        "channel-absent",
        {k: v for k, v in PUB.items() if k != "channel"},
        "400::channel_missing",
        True,
    ),
    ("id-object", {**PUB, "id": {"x": 1}}, ID_INVALID, False),
    ("id-array", {**PUB, "id": [1]}, ID_INVALID, False),
    ("id-float", {**PUB, "id": 1.5}, ID_INVALID, False),
    ("id-boolean", {**PUB, "id": True}, ID_INVALID, False),
    ("id-with-space", {**PUB, "id": "a b"}, ID_INVALID, False),
    ("subscription-number", {**SUB, "subscription": 5}, SUBSCRIPTION_INVALID, True),
    ("subscription-numbers", {**SUB, "subscription": [1, 2]}, SUBSCRIPTION_INVALID, True),
    ("subscription-empty-array", {**SUB, "subscription": []}, SUBSCRIPTION_INVALID, True),
    ("subscription-null", {**SUB, "subscription": None}, SUBSCRIPTION_INVALID, True),
    (
        "unsubscribe-subscription-object",
        {**SUB, "channel": "/meta/unsubscribe", "subscription": {"a": 1}},
        SUBSCRIPTION_INVALID,
        True,
    ),
    ("ext-string", {**PUB, "ext": "x"}, MESSAGE_INVALID, True),
    ("ext-array", {**PUB, "ext": [1]}, MESSAGE_INVALID, True),
    ("data-absent", {k: v for k, v in PUB.items() if k != "data"}, "400::data_missing", True),
    ("clientId-number", {**PUB, "clientId": 5}, "402::session_unknown", True),
    (
        "clientId-absent",
        {k: v for k, v in PUB.items() if k != "clientId"},
        "402::session_unknown",
        True,
    ),
    ("connect-advice-string", {**CON, "advice": "x"}, MESSAGE_INVALID, True),
    ("connect-connectionType-number", {**CON, "connectionType": 7}, MESSAGE_INVALID, True),
    (
        "handshake-types-string",
        {**HS, "supportedConnectionTypes": "long-polling"},
        MESSAGE_INVALID,
        True,
    ),
    ("handshake-version-number", {**HS, "version": 1}, MESSAGE_INVALID, True),
    ("message-number", 5, MESSAGE_INVALID, False),
    ("message-string", "x", MESSAGE_INVALID, False),
    ("message-null", None, MESSAGE_INVALID, False),
    ("message-array", [{"channel": "/bad"}], MESSAGE_INVALID, False),
]
MALFORMED = [pytest.param(bad, error, echo, id=case) for case, bad, error, echo in MALFORMED_ROWS]


def fill(value: Any, client_id: str, transport: str) -> Any:
    if value == CID:
        return client_id
    if value == TYPE:
        return transport
    if isinstance(value, dict):
        return {k: fill(v, client_id, transport) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, client_id, transport) for v in value]
    return value


@pytest.mark.parametrize(("bad", "error", "echo_id"), MALFORMED)
async def test_malformed_field_answered_in_batch(
    gateway: TestServer,
    open_client: OpenClient,
    transport: str,
    bad: Any,
    error: str,
    echo_id: bool,
) -> None:
    client = await open_client(gateway, transport)
    await client.open_session()
    bad = fill(bad, client.client_id, transport)
    before = client.message("/good", data={"n": 1})
    after = client.message("/good", data={"n": 2})
    replies = await client.exchange([before, bad, after])

    assert len(replies) == 3, replies
    good = [r for r in replies if r.get("id") in (before["id"], after["id"])]
    assert [(r["id"], r["successful"]) for r in good] == [(before["id"], True), (after["id"], True)]
    (answer,) = [r for r in replies if r not in good]
    assert answer["successful"] is False
    assert answer["error"] == error
    if echo_id:
        assert same_id(answer.get("id"), bad["id"]), answer
    else:
        assert "id" not in answer, answer  # an invalid id is not echoed
    if isinstance(bad, dict) and isinstance(bad.get("channel"), str):
        assert answer.get("channel") == bad["channel"]

    # Nothing crashed: the same client and a new one still work.
    assert (await client.publish("/good", {"n": 3}))["successful"] is True
    fresh = await open_client(gateway, transport)
    assert (await fresh.handshake())["successful"] is True


async def test_data_null_is_a_payload_and_absent_is_not(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    subscriber = await open_client(gateway, transport)
    await subscriber.open_session("/d")
    publisher = await open_client(gateway, transport)
    await publisher.open_session()
    with_null = publisher.message("/d", data=None)
    without = publisher.message("/d", data=ABSENT)
    assert "data" in with_null and "data" not in without
    replies = await publisher.exchange([with_null, without])
    by_id = {r["id"]: r for r in replies}
    assert by_id[with_null["id"]]["successful"] is True
    assert by_id[without["id"]]["successful"] is False
    assert by_id[without["id"]]["error"] == "400::data_missing"
    assert await subscriber.drain() == [{"channel": "/d", "data": None}]


async def test_websocket_frame_over_limit(make_gateway: Any, open_client: OpenClient) -> None:
    limit = 4096
    server = await make_gateway(server={"max_body_bytes": limit}, **DEFAULT_CONFIG)
    client: WebSocketClient = await open_client(server, "websocket")
    await client.open_session()
    frames = len(client.frames)
    await client.send_frame(json.dumps([client.message("/big", data="x" * (limit + 1))]))
    assert await client.wait_closed() == 1009
    assert len(client.frames) == frames
    # A frame just under the limit on a new socket, for the same session, still works.
    again: WebSocketClient = await open_client(server, "websocket")
    again.client_id = client.client_id
    assert (await again.publish("/big", "y" * (limit - 200)))["successful"] is True


@pytest.mark.parametrize(
    ("count", "accepted"),
    [
        pytest.param(5, True, id="at-max-batch"),
        pytest.param(6, False, id="over-max-batch"),
        pytest.param(500, False, id="far-over-max-batch"),
    ],
)
async def test_batch_size_limit(
    make_gateway: Any, open_client: OpenClient, transport: str, count: int, accepted: bool
) -> None:
    server = await make_gateway(server={"max_batch": 5}, **DEFAULT_CONFIG)
    client = await open_client(server, transport)
    await client.open_session()
    batch = [client.message("/many", data={"n": n}) for n in range(count)]
    if accepted:
        replies = await client.exchange(batch)
        assert [r["successful"] for r in replies] == [True] * count
    elif isinstance(client, LongPollingClient):
        http = await client.post(batch)
        assert http.status == 400
        decoded = http.json()
        assert isinstance(decoded["error"], str) and isinstance(decoded["detail"], str)
    else:
        assert isinstance(client, WebSocketClient)
        frames = len(client.frames)
        await client.send_frame(batch)
        assert await client.wait_closed() == 1007
        assert len(client.frames) == frames
    fresh = await open_client(server, transport)
    await fresh.open_session()
    assert (await fresh.publish("/many", {"ok": True}))["successful"] is True


#: Whole bodies/frames that are hostile rather than merely wrong.
HOSTILE = [
    pytest.param("[" * 5_000 + "]" * 5_000, id="deeply-nested-arrays"),
    pytest.param(
        '[{"channel":"/x","data":' + "[" * 5_000 + "]" * 5_000 + "}]", id="deeply-nested-data"
    ),
    pytest.param('[{"channel": "/meta/handshake", "id": "1", "id": "2"}]', id="duplicate-keys"),
    pytest.param('[{"channel": "/x", "data": 1e999999}]', id="huge-number"),
    pytest.param(
        '[{"channel": "/x", "id": 123456789012345678901234567890, "data": 1}]', id="huge-integer-id"
    ),
    pytest.param('[{"channel": "/x\\u0000", "data": 1}]', id="nul-in-channel"),
    pytest.param(
        '[{"channel": "/meta/handshake", "ext": {"ack": "\\ud800"}}]', id="lone-surrogate"
    ),
]


@pytest.mark.parametrize("body", HOSTILE)
async def test_hostile_body_survived(
    gateway: TestServer, open_client: OpenClient, transport: str, body: str
) -> None:
    client = await open_client(gateway, transport)
    if isinstance(client, LongPollingClient):
        http = await client.post(body)
        assert http.status in (200, 400), (http.status, http.body[:300])
        decoded = http.json()
        if http.status == 200:
            assert isinstance(decoded, list) and decoded
            assert all("successful" in m for m in decoded)
        else:
            assert set(decoded) == {"error", "detail"}
    else:
        assert isinstance(client, WebSocketClient)
        await client.send_frame(body)
        answered = await client.wait_until(lambda: client.frames or client.closed.is_set(), 5)
        if client.closed.is_set() and not client.frames:
            assert client.close_code == 1007, client.close_code
        else:
            assert answered
            assert all("successful" in m for m in client.log)
    fresh = await open_client(gateway, transport)
    await fresh.open_session()
    assert (await fresh.publish("/after", {"ok": True}))["successful"] is True


#: ``ext`` values a client controls that the server's extensions compute with.
HOSTILE_EXT = [
    pytest.param({"timesync": {"tc": 1e308, "l": 1e308, "o": 1e308}}, id="timesync-float-overflow"),
    pytest.param(
        {"timesync": {"tc": -1e308, "l": 0, "o": -1e308}}, id="timesync-negative-overflow"
    ),
    pytest.param({"timesync": {"tc": 10**30, "l": 10**30, "o": 0}}, id="timesync-huge-integers"),
    pytest.param({"timesync": {"tc": "x", "l": None, "o": [1]}}, id="timesync-wrong-types"),
    pytest.param({"timesync": "x"}, id="timesync-string"),
    pytest.param({"ack": 1e308}, id="ack-huge-float"),
    pytest.param({"ack": 10**30}, id="ack-huge-integer"),
    pytest.param({"ack": -1}, id="ack-negative"),
]


@pytest.mark.parametrize("operation", ["handshake", "connect", "subscribe"])
@pytest.mark.parametrize("ext", HOSTILE_EXT)
async def test_hostile_ext_values_answered(
    gateway: TestServer, open_client: OpenClient, transport: str, operation: str, ext: Any
) -> None:
    client = await open_client(gateway, transport)
    if operation == "handshake":
        message = client.handshake_message(ext=ext)
    else:
        shaken = await client.handshake(ext={"ack": True})
        assert shaken["successful"] is True
        if operation == "connect":
            message = client.connect_message(ext=ext, advice={"timeout": 0})
        else:
            message = client.message("/meta/subscribe", subscription="/h", ext=ext)
    if isinstance(client, LongPollingClient):
        http = await client.post([message])
        assert http.status == 200, (http.status, http.body[:300])
        replies = http.json()
    else:
        replies = await client.exchange([message])
    (reply,) = [r for r in replies if same_id(r.get("id"), message["id"])]
    assert reply["successful"] is True, reply
    # Nothing crashed: the same client and a new one still work.
    if operation != "handshake":
        assert (await client.connect(advice={"timeout": 0}))["successful"] is True
    fresh = await open_client(gateway, transport)
    await fresh.open_session()
