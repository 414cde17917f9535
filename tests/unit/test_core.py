"""The pure core: decisions for one message, with time and ids passed in (no server, no clock)."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest

from protocol import (
    AckState,
    BayeuxCore,
    Connect,
    Handshake,
    Message,
    Publish,
    RequestContext,
    Respond,
    SessionRecord,
    Settings,
    Subscribe,
    TimesyncExtension,
    decode_batch,
    encode,
)

LP = RequestContext(transport="long-polling", browser_id="B")
WS = RequestContext(transport="websocket")


def core(**settings: Any) -> BayeuxCore:
    counter = itertools.count(1)
    return BayeuxCore(Settings(**settings), lambda: f"client{next(counter):020d}")


def msg(**fields: Any) -> Message:
    (message,) = decode_batch(msgspec.json.encode(fields), max_messages=1)
    assert isinstance(message, Message)
    return message


def wire(reply: Any) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.json.decode(encode(reply))
    return result


SESSION = SessionRecord(client_id="c1", browser_id="B", created_ms=0, connected=True)


def test_handshake_creates_a_session_bound_to_the_browser() -> None:
    action = core().handle(
        msg(
            channel="/meta/handshake",
            version="1.0",
            supportedConnectionTypes=["long-polling"],
            id=7,
        ),
        None,
        LP,
        123,
    )
    assert isinstance(action, Handshake)
    assert action.session.browser_id == "B" and action.session.created_ms == 123
    reply = wire(action.reply)
    assert reply["id"] == 7 and reply["clientId"] == action.session.client_id
    assert reply["advice"] == {"reconnect": "retry", "interval": 0, "timeout": 30000}


@pytest.mark.parametrize(
    ("session", "request_fields", "ctx", "hold"),
    [
        (SESSION, {}, LP, 30000),
        (msgspec.structs.replace(SESSION, connected=False), {}, LP, 0),
        (SESSION, {"advice": {"timeout": 0}}, LP, 0),
        (SESSION, {"advice": {"timeout": 5000}}, LP, 5000),
        (SESSION, {"advice": {"timeout": 120_000}}, LP, 60000),
        (SESSION, {"advice": {"timeout": 10**9}}, LP, 60000),
        (SESSION, {}, RequestContext(transport="long-polling", browser_id="B", batch_size=2), 0),
        (SESSION, {}, WS, 30000),
    ],
    ids=[
        "held",
        "first-connect",
        "client-timeout-0",
        "client-timeout",
        "capped-120s",
        "capped",
        "batched",
        "websocket-no-cookie-needed",
    ],
)
def test_connect_hold_decision(
    session: SessionRecord, request_fields: dict[str, Any], ctx: RequestContext, hold: int
) -> None:
    action = core().handle(
        msg(
            channel="/meta/connect", clientId="c1", connectionType="long-polling", **request_fields
        ),
        session,
        ctx,
        0,
    )
    assert isinstance(action, Connect)
    assert action.hold_ms == hold
    assert action.session.connected


@pytest.mark.parametrize(
    ("session", "ctx", "trust"),
    [
        (None, LP, False),
        (SESSION, RequestContext(transport="long-polling", browser_id="other"), False),
        (SESSION, RequestContext(transport="long-polling", browser_id=None), False),
    ],
    ids=["unknown", "other-cookie", "no-cookie"],
)
def test_unknown_session_on_connect_advises_handshake(
    session: SessionRecord | None, ctx: RequestContext, trust: bool
) -> None:
    action = core(trust_client_session=trust).handle(
        msg(channel="/meta/connect", clientId="c1", id="2"), session, ctx, 0
    )
    assert isinstance(action, Respond)
    assert wire(action.reply) == {
        "channel": "/meta/connect",
        "id": "2",
        "successful": False,
        "error": "402::session_unknown",
        "advice": {"reconnect": "handshake", "interval": 0},
    }


def test_trust_client_session_accepts_a_missing_cookie() -> None:
    ctx = RequestContext(transport="long-polling", browser_id=None)
    action = core(trust_client_session=True).handle(
        msg(channel="/meta/connect", clientId="c1"), SESSION, ctx, 0
    )
    assert isinstance(action, Connect)


def test_unknown_session_on_publish_has_no_handshake_advice() -> None:
    action = core().handle(msg(channel="/a", clientId="zz", data=1, id="3"), None, LP, 0)
    assert wire(action.reply) == {
        "channel": "/a",
        "id": "3",
        "successful": False,
        "error": "402::session_unknown",
    }


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"channel": "/meta/subscribe"}, "403::subscription_missing"),
        ({"channel": "/meta/subscribe", "subscription": "foo"}, "403::subscription_invalid"),
        ({"channel": "/meta/subscribe", "subscription": []}, "403::subscription_invalid"),
        (
            {"channel": "/meta/subscribe", "subscription": "/meta/connect"},
            "403:denied_by_security_policy:subscribe_denied",
        ),
        (
            {"channel": "/meta/foo", "data": {}},
            "403:denied_by_security_policy:channel_create_denied",
        ),
        ({"channel": "/a/*", "data": {}}, "405::channel_invalid"),
        ({"channel": "/a//b", "data": {}}, "405::channel_invalid"),
        ({"channel": "/a"}, "400::data_missing"),
        ({"channel": "/a", "data": 1, "id": "a-b"}, "405::message_id_invalid"),
        ({"data": 1}, "400::channel_missing"),
    ],
)
def test_error_table(fields: dict[str, Any], error: str) -> None:
    action = core().handle(msg(clientId="c1", **fields), SESSION, LP, 0)
    assert isinstance(action, Respond)
    assert wire(action.reply)["error"] == error
    assert wire(action.reply)["successful"] is False


def test_subscribe_echoes_and_drops_service_channels() -> None:
    action = core().handle(
        msg(
            channel="/meta/subscribe", clientId="c1", subscription=["/a/", "/service/echo", "/b/**"]
        ),
        SESSION,
        LP,
        0,
    )
    assert isinstance(action, Subscribe)
    assert action.channels == ("/a", "/b/**")
    assert wire(action.reply)["subscription"] == ["/a/", "/service/echo", "/b/**"]


def test_publish_to_service_is_marked_for_handlers() -> None:
    action = core().handle(
        msg(channel="/service/echo", clientId="c1", data={"x": 1}), SESSION, LP, 0
    )
    assert isinstance(action, Publish) and action.service
    assert "data" not in wire(action.reply)


def test_ack_state_resends_until_acknowledged() -> None:
    ack = AckState()
    sent, batch = ack.send([b"m1"])
    assert (sent, batch) == ([b"m1"], 1)
    ack.acknowledge(0)  # reply 1 lost: the client still acknowledges 0
    sent, batch = ack.send([b"m2"])
    assert (sent, batch) == ([b"m1", b"m2"], 2)
    ack.acknowledge(2)
    assert not ack.pending
    assert ack.send([]) == ([], 3)


def test_timesync_stamps_arrival_and_processing_time() -> None:
    ext = TimesyncExtension()
    request = ext.incoming(
        msg(channel="/meta/connect", ext={"timesync": {"tc": 1000, "l": 0, "o": 0}}), 5000
    )
    assert request is not None
    reply = ext.outgoing(core().handle(request, SESSION, LP, 5000).reply, request, 5040)
    assert reply is not None and reply.ext
    assert reply.ext["timesync"] == {"tc": 1000, "ts": 5000, "p": 40, "a": -4000}
