"""bayeux.md §10 "Subscribe / publish / channels", items 22-34, over every transport.

Who receives what is read with ``drain()``: a ``/meta/connect`` with ``advice.timeout: 0``,
which the gateway answers at once with everything queued for the session (§3.1 step 3), plus
any event already seen (replies to other messages carry queued events too: piggy-back).  A
publish is queued before its acknowledgement is sent, so nothing here waits on a clock.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from .client import ABSENT
from .conftest import OpenClient


async def sessions(
    server: TestServer, open_client: OpenClient, transport: str, n: int
) -> list[Any]:
    clients = []
    for _ in range(n):
        client = await open_client(server, transport)
        await client.open_session()
        clients.append(client)
    return clients


async def test_10_22_subscribe_string(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    (client,) = await sessions(gateway, open_client, transport, 1)
    request = client.message("/meta/subscribe", subscription="/c22/a")
    reply = await client.request(request)
    assert reply["channel"] == "/meta/subscribe"
    assert reply["successful"] is True
    assert reply["subscription"] == "/c22/a"
    assert reply["id"] == request["id"]


async def test_10_23_subscribe_array(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    subscriber, publisher = await sessions(gateway, open_client, transport, 2)
    channels = ["/c23/a", "/c23/b", "/c23/c/**"]
    reply = await subscriber.subscribe(channels)
    assert reply["successful"] is True
    assert reply["subscription"] == channels
    for channel in ("/c23/a", "/c23/b", "/c23/c/d"):
        assert (await publisher.publish(channel, {"on": channel}))["successful"] is True
    events = await subscriber.drain()
    assert sorted(e["channel"] for e in events) == ["/c23/a", "/c23/b", "/c23/c/d"]


@pytest.mark.parametrize(
    ("subscription", "error"),
    [
        pytest.param(ABSENT, "403::subscription_missing", id="missing"),
        pytest.param("foo", "403::subscription_invalid", id="no-leading-slash"),
    ],
)
async def test_10_24_subscribe_bad_subscription(
    gateway: TestServer, open_client: OpenClient, transport: str, subscription: Any, error: str
) -> None:
    (client,) = await sessions(gateway, open_client, transport, 1)
    reply = await client.subscribe(subscription)
    assert reply["channel"] == "/meta/subscribe"
    assert reply["successful"] is False
    assert reply["error"] == error


@pytest.mark.parametrize("channel", ["/meta/connect", "/meta/foo"])
async def test_10_25_subscribe_meta_refused(
    gateway: TestServer, open_client: OpenClient, transport: str, channel: str
) -> None:
    (client,) = await sessions(gateway, open_client, transport, 1)
    reply = await client.subscribe(channel)
    assert reply["successful"] is False
    assert reply["error"].startswith("403:"), reply


async def test_10_26_service_subscribe_not_recorded(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    subscriber, caller = await sessions(gateway, open_client, transport, 2)
    reply = await subscriber.subscribe("/service/echo")
    assert reply["successful"] is True
    assert reply["subscription"] == "/service/echo"
    ack = await caller.publish("/service/echo", {"ping": 1})
    assert ack["successful"] is True
    assert await subscriber.drain() == []


#: Channels published in #27, in order.
PUBLISHED = ("/a", "/a/b", "/a/b/c", "/ab", "/ab/c")
#: What each subscription receives of them (bayeux.md §4.2).
WILDCARDS = [
    pytest.param("/a/*", {"/a/b"}, id="one-star"),
    pytest.param("/a/**", {"/a/b", "/a/b/c"}, id="two-stars"),
    pytest.param("/**", set(PUBLISHED), id="root-two-stars"),
    pytest.param("/a/b", {"/a/b"}, id="exact"),
]


@pytest.mark.parametrize(("pattern", "receives"), WILDCARDS)
async def test_10_27_wildcard_delivery(
    gateway: TestServer, open_client: OpenClient, transport: str, pattern: str, receives: set[str]
) -> None:
    subscriber, publisher = await sessions(gateway, open_client, transport, 2)
    assert (await subscriber.subscribe(pattern))["successful"] is True
    for channel in PUBLISHED:
        assert (await publisher.publish(channel, {"on": channel}))["successful"] is True
    events = await subscriber.drain()
    assert [e["channel"] for e in events] == [c for c in PUBLISHED if c in receives]
    assert all(e["data"] == {"on": e["channel"]} for e in events)


async def test_10_28_one_copy_for_overlapping_subscriptions(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    subscriber, publisher = await sessions(gateway, open_client, transport, 2)
    for pattern in ("/a/b", "/a/*", "/a/**", "/**"):
        assert (await subscriber.subscribe(pattern))["successful"] is True
    assert (await publisher.publish("/a/b", {"once": True}))["successful"] is True
    assert await subscriber.drain() == [{"channel": "/a/b", "data": {"once": True}}]


async def test_10_29_unsubscribe(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    subscriber, publisher = await sessions(gateway, open_client, transport, 2)
    assert (await subscriber.subscribe("/c29"))["successful"] is True
    request = subscriber.message("/meta/unsubscribe", subscription="/c29")
    reply = await subscriber.request(request)
    assert reply["channel"] == "/meta/unsubscribe"
    assert reply["successful"] is True
    assert reply["subscription"] == "/c29"
    assert reply["id"] == request["id"]
    assert (await publisher.publish("/c29", {"n": 1}))["successful"] is True
    assert await subscriber.drain() == []
    again = await subscriber.unsubscribe("/c29")
    assert again["successful"] is True
    assert again["subscription"] == "/c29"


async def test_10_30_publish_ack(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    (publisher,) = await sessions(gateway, open_client, transport, 1)
    request = publisher.message("/c30", data={"n": 1})
    ack = await publisher.request(request)
    assert ack["channel"] == "/c30"
    assert ack["id"] == request["id"]
    assert ack["successful"] is True
    assert "data" not in ack


#: Payloads a publish may carry; each must reach the subscriber unchanged.
PAYLOADS = [
    pytest.param(None, id="null"),
    pytest.param({"text": "hi", "nested": {"list": [1, 2.5, None, True]}}, id="object"),
    pytest.param([1, "two", None], id="array"),
    pytest.param("text \u00e9\u2028", id="string"),
    pytest.param(0, id="zero"),
    pytest.param(False, id="false"),
]


@pytest.mark.parametrize("data", PAYLOADS)
async def test_10_31_delivered_event_fields(
    gateway: TestServer, open_client: OpenClient, transport: str, data: Any
) -> None:
    subscriber, publisher = await sessions(gateway, open_client, transport, 2)
    assert (await subscriber.subscribe("/c31"))["successful"] is True
    ack = await publisher.publish("/c31", data, id="publisher7")
    assert ack["successful"] is True
    (event,) = await subscriber.drain()
    assert event["channel"] == "/c31"
    assert "data" in event
    assert event["data"] == data
    assert type(event["data"]) is type(data)
    assert "clientId" not in event
    assert "id" not in event


async def test_10_32_publisher_receives_own_message(
    gateway: TestServer, open_client: OpenClient, transport: str
) -> None:
    (client,) = await sessions(gateway, open_client, transport, 1)
    assert (await client.subscribe("/c32"))["successful"] is True
    assert (await client.publish("/c32", {"mine": True}))["successful"] is True
    assert await client.drain() == [{"channel": "/c32", "data": {"mine": True}}]


#: Publishes that must fail; the gateway's exact strings are its documented design.
BAD_PUBLISHES = [
    pytest.param("/c33/a", ABSENT, "400::data_missing", id="no-data"),
    pytest.param(
        "/meta/x", {"n": 1}, "403:denied_by_security_policy:channel_create_denied", id="meta"
    ),
    pytest.param("/c33/*", {"n": 1}, "405::channel_invalid", id="wildcard-one-star"),
    pytest.param("/c33/**", {"n": 1}, "405::channel_invalid", id="wildcard-two-stars"),
]


@pytest.mark.parametrize(("channel", "data", "error"), BAD_PUBLISHES)
async def test_10_33_bad_publish_not_delivered(
    gateway: TestServer,
    open_client: OpenClient,
    transport: str,
    channel: str,
    data: Any,
    error: str,
) -> None:
    subscriber, publisher = await sessions(gateway, open_client, transport, 2)
    for pattern in ("/**", "/c33/*", "/c33/**", "/c33/a"):
        assert (await subscriber.subscribe(pattern))["successful"] is True
    reply = await publisher.publish(channel, data)
    assert reply["successful"] is False
    assert re.match(r"^4\d\d:", reply["error"]), reply
    assert reply["error"] == error
    assert await subscriber.drain() == []
    assert await publisher.drain() == []


@pytest.mark.parametrize(
    ("fields", "error", "echo_id"),
    [
        pytest.param(
            {"channel": ABSENT, "id": "c34"}, "400::channel_missing", True, id="no-channel"
        ),
        pytest.param(
            {"channel": "/c34", "id": "c-34", "data": {}},
            "405::message_id_invalid",
            False,
            id="id-with-dash",
        ),
        pytest.param(
            {"channel": "/meta/subscribe", "id": "c-34", "subscription": "/c34"},
            "405::message_id_invalid",
            False,
            id="id-with-dash-on-meta",
        ),
    ],
)
async def test_10_34_message_validation(
    gateway: TestServer,
    open_client: OpenClient,
    transport: str,
    fields: dict[str, Any],
    error: str,
    echo_id: bool,
) -> None:
    (client,) = await sessions(gateway, open_client, transport, 1)
    message = client.message(**fields)
    (reply,) = await client.exchange([message])
    assert reply["successful"] is False
    assert reply["error"] == error
    if echo_id:
        assert reply["id"] == message["id"]
