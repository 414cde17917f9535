"""A logged-in agent's CometD session, held by a real CometD client, through the email and chat
lifecycles: the official CometD JavaScript client (Node, ``tests/node/client.mjs --token``) and
aiocometd, each over long-polling and over websocket.

The agent logs in over REST (``GET /api/v2/me`` with HTTP Basic, as ``Desktop`` does) and works
its interactions over REST; the real client handshakes with the REST session id in
``ext.token`` (it does not share the REST cookie jar), subscribes ``/v2/me/interactions`` and
must see every state change of the agent's interactions, once each, in order. Without a token
the handshake is refused with ``403::handshake_denied`` and the client does not retry.

Host names: Node uses 127.0.0.1, aiocometd uses localhost (see test_aiocometd.py for why).

The deployment (users file, partner token, anonymous handshakes off) is ``contact.conftest``'s
``make_center``; the Node client comes from the interop conftest's ``node_client``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiocometd_noloop as aiocometd
import pytest
from contact.conftest import Center, MakeCenter, make_center  # noqa: F401 (fixture)
from contact.desktop import Desktop
from yarl import URL

from gateway.app import HUB

pytestmark = [
    pytest.mark.interop,
    pytest.mark.filterwarnings(
        "ignore:float parameter 'receive_timeout' is deprecated:DeprecationWarning"
    ),
]

Data = dict[str, Any]
Where = Callable[[Data], bool]

HOLD_MS = 2000  # /meta/connect hold, as in the other interop tests
STEP_TIMEOUT = 10.0  # one request/reply or one delivery
QUIET_PERIOD = HOLD_MS / 1000 + 0.5  # watching for something that must not happen
RECOVERY_TIMEOUT = HOLD_MS / 1000 + 13.0  # session expired -> handshake again (as in conftest)
MOUNT = "/api/v2/notifications"
INTERACTIONS = "/v2/me/interactions"
COOKIE = "JSESSIONID"

CLIENTS = [
    pytest.param("js", "long-polling", id="js-long-polling"),
    pytest.param("js", "websocket", id="js-websocket"),
    pytest.param("aiocometd", "long-polling", id="aiocometd-long-polling"),
    pytest.param("aiocometd", "websocket", id="aiocometd-websocket"),
]
CONNECTION_TYPES = {
    "long-polling": aiocometd.ConnectionType.LONG_POLLING,
    "websocket": aiocometd.ConnectionType.WEBSOCKET,
}


# --------------------------------------------------------------------------------------------
# the contact center: gateway, agents' REST desktops, the partner
# --------------------------------------------------------------------------------------------


async def session_ids(center: Center) -> list[str]:
    return list(await center.gateway.app[HUB].session_ids())


def session_token(desktop: Desktop) -> str:
    """The REST session id (the ``JSESSIONID`` cookie value), used as ``ext.token``."""
    cookie = desktop.http.cookie_jar.filter_cookies(URL(desktop.base)).get(COOKIE)
    assert cookie is not None and cookie.value, f"no {COOKIE} cookie after login"
    return cookie.value


@pytest.fixture
async def center(make_center: MakeCenter) -> Center:  # noqa: F811 (the imported fixture)
    """Agents agent1 and agent2, a partner, anonymous handshakes off, 2 s connect holds."""
    return await make_center(bayeux={"timeout_ms": HOLD_MS})


# --------------------------------------------------------------------------------------------
# the two real clients behind one interface
# --------------------------------------------------------------------------------------------


class Agent:
    """A real CometD client of one agent, subscribed to /v2/me/interactions."""

    name: str
    #: every /v2/me/interactions data message received, in order (for the final checks)
    received: list[Data]

    async def next(self, where: Where, within: float = STEP_TIMEOUT) -> Data:
        """The oldest not yet returned interaction message matching ``where``."""
        raise NotImplementedError

    async def recovered(self, old_id: str) -> str:
        """Wait until the client has handshaken again (after its session ``old_id`` expired)
        with the token and is subscribed again; the new clientId."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class JsAgent(Agent):
    def __init__(self, client: Any, client_id: str) -> None:
        self.name = "CometD JS"
        self.client = client
        self.client_id = client_id

    @property
    def received(self) -> list[Data]:  # type: ignore[override]
        return [
            e["data"]
            for e in self.client.events
            if e["event"] == "message" and e["channel"] == INTERACTIONS
        ]

    async def next(self, where: Where, within: float = STEP_TIMEOUT) -> Data:
        event = await self.client.expect(
            "message",
            within,
            where=lambda e: e["channel"] == INTERACTIONS and where(e["data"]),
        )
        return event["data"]  # type: ignore[no-any-return]

    async def recovered(self, old_id: str) -> str:
        handshake = await self.client.expect("handshake", RECOVERY_TIMEOUT)
        if not handshake["successful"]:
            self.client.fail(f"re-handshake refused: {handshake}")
        assert handshake["reestablish"] is True, handshake
        assert handshake["clientId"] != old_id, handshake
        subscribed = await self.client.expect("subscribed")
        assert subscribed["successful"] is True, subscribed
        assert subscribed["clientId"] == handshake["clientId"], subscribed
        sent = [
            json.loads(line)["message"]
            for line in self.client.stderr_tail
            if line.startswith('{"wire":"out"') and '"/meta/handshake"' in line
        ]
        assert len(sent) == 2, sent
        assert sent[0]["ext"] == sent[1]["ext"], sent
        self.client_id = handshake["clientId"]
        return self.client_id

    async def close(self) -> None:
        await self.client.send("disconnect")
        disconnected = await self.client.expect("disconnected")
        assert disconnected["successful"] is True, disconnected
        assert await self.client.wait_exit() == 0


class PyAgent(Agent):
    def __init__(self, client: Any, wire: Any) -> None:
        self.name = "aiocometd"
        self.client = client
        self.wire = wire
        self.received = []
        self._pending: list[Data] = []

    async def next(self, where: Where, within: float = STEP_TIMEOUT) -> Data:
        deadline = time.monotonic() + within
        while True:
            for i, data in enumerate(self._pending):
                if where(data):
                    return self._pending.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(
                    f"aiocometd: no matching message on {INTERACTIONS} within {within}s; "
                    f"received {self.received}\n{self.wire.describe()}",
                    pytrace=False,
                )
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(self.client.receive(), left)
                assert message["channel"] == INTERACTIONS, message
                self.received.append(message["data"])
                self._pending.append(message["data"])

    @property
    def client_id(self) -> str:
        # aiocometd has no public accessor for the clientId of the current session.
        client_id: str = self.client._transport.client_id
        return client_id

    async def recovered(self, old_id: str) -> str:
        # aiocometd handshakes again by itself and resends [connect, subscribe...]: wait for the
        # successful subscribe reply of the new session.
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while not (
            self.client_id != old_id
            and len(self.wire.messages("out", "/meta/handshake")) == 2
            and [m["successful"] for m in self.wire.messages("in", "/meta/subscribe")]
            == [True, True]
        ):
            if time.monotonic() > deadline:
                pytest.fail(f"aiocometd did not recover\n{self.wire.describe()}", pytrace=False)
            await asyncio.sleep(0.05)
        first, second = self.wire.messages("out", "/meta/handshake")
        assert second["ext"] == first["ext"], (first, second)
        return self.client_id

    async def close(self) -> None:
        await asyncio.wait_for(self.client.close(), STEP_TIMEOUT)
        disconnects = self.wire.messages("in", "/meta/disconnect")
        assert disconnects and disconnects[-1]["successful"] is True, self.wire.describe()


@dataclass
class HandshakeToken:
    """aiocometd extension: ``ext.token`` on every /meta/handshake (re-handshakes included)."""

    token: str

    async def outgoing(self, payload: Any, headers: Any) -> None:
        for message in payload:
            if message.get("channel") == "/meta/handshake":
                message.setdefault("ext", {})["token"] = self.token

    async def incoming(self, payload: Any, headers: Any = None) -> None:
        pass


aiocometd.Extension.register(HandshakeToken)


@pytest.fixture
def open_agent(
    center: Center, node_client: Any, aiocometd_client: Callable[..., Any]
) -> Callable[..., Any]:
    """``await open_agent(kind, transport, desktop)`` -> Agent: the real client handshakes with
    the desktop's session id as ``ext.token`` and is subscribed to /v2/me/interactions."""

    async def open_(kind: str, transport: str, desktop: Desktop) -> Agent:
        token = session_token(desktop)
        if kind == "js":
            url = f"http://127.0.0.1:{center.gateway.port}{MOUNT}"
            client = await node_client(url, transport, [INTERACTIONS], token=token)
            handshake = await client.expect("handshake")
            if not handshake["successful"]:
                client.fail(f"handshake with ext.token refused: {handshake}")
            assert handshake["transport"] == transport, handshake
            subscribed = await client.expect("subscribed")
            assert subscribed["successful"] is True, subscribed
            assert subscribed["channel"] == INTERACTIONS
            assert handshake["clientId"] in await session_ids(center)
            return JsAgent(client, handshake["clientId"])
        url = f"http://localhost:{center.gateway.port}{MOUNT}"
        connection_type = CONNECTION_TYPES[transport]
        client, wire = aiocometd_client(url, connection_type)
        # Before the wire recorder, so that the recorded handshake shows the token.
        client.extensions.insert(0, HandshakeToken(token))
        await asyncio.wait_for(client.open(), STEP_TIMEOUT)
        assert client.connection_type == connection_type
        await asyncio.wait_for(client.subscribe(INTERACTIONS), STEP_TIMEOUT)
        assert client.subscriptions == {INTERACTIONS}
        assert wire.messages("out", "/meta/handshake")[0]["ext"] == {"token": token}
        return PyAgent(client, wire)

    return open_


def of(interaction_id: str, state: str | None = None) -> Where:
    return lambda d: d.get("id") == interaction_id and (state is None or d.get("state") == state)


def assert_in_order_once(agent: Agent, interaction_id: str) -> list[str]:
    """Every message of the interaction arrived once, in the server's order; their states."""
    mine = [d for d in agent.received if d.get("id") == interaction_id]
    sequences = [d["sequence"] for d in mine]
    assert sequences == sorted(set(sequences)), (agent.name, mine)
    assert {d["messageType"] for d in mine} == {"InteractionStateMessage"}, mine
    return [d["state"] for d in mine]


# --------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "transport"), CLIENTS)
async def test_email_invite_accept_complete(
    center: Center, open_agent: Callable[..., Any], kind: str, transport: str
) -> None:
    desktop = await center.desktop("agent1", "email", bayeux=False)
    agent = await open_agent(kind, transport, desktop)
    email_id = await center.partner.email("Order 1234")

    invited = await agent.next(of(email_id, "Invited"))
    assert invited["messageType"] == "InteractionStateMessage"
    assert invited["channel"] == "email"
    assert invited["capabilities"] == ["Accept", "Reject"]

    status, body = await desktop.operate(email_id, "Accept")
    assert status == 200 and body["statusCode"] == 0, body
    accepted = await agent.next(of(email_id, "Accepted"))
    assert accepted["referenceId"] == body["referenceId"]
    assert accepted["email_object"]["text"] == "Where is my order?"
    assert accepted["email_object"]["fromAddress"] == "customer1@example.com"

    status, body = await desktop.operate(email_id, "Complete")
    assert status == 200 and body["statusCode"] == 0, body
    done = await agent.next(of(email_id, "Completed"))
    assert done["referenceId"] == body["referenceId"]
    assert done["capabilities"] == []

    assert assert_in_order_once(agent, email_id) == ["Invited", "Accepted", "Completed"]
    await agent.close()


@pytest.mark.parametrize(("kind", "transport"), CLIENTS)
async def test_chat_invite_accept_messages_leave_complete(
    center: Center, open_agent: Callable[..., Any], kind: str, transport: str
) -> None:
    desktop = await center.desktop("agent1", "chat", bayeux=False)
    agent = await open_agent(kind, transport, desktop)
    partner = center.partner
    chat_id = await partner.chat("CustomerName")
    status, _ = await partner.say(chat_id, "SendMessage", text="Hello, is anyone there?")
    assert status == 200

    invited = await agent.next(of(chat_id, "Invited"))
    assert invited["channel"] == "chat"
    assert invited["capabilities"] == ["Accept", "Reject"]

    status, body = await desktop.operate(chat_id, "Accept")
    assert status == 200 and body["statusCode"] == 0, body
    accepted = await agent.next(of(chat_id, "Accepted"))
    assert accepted["referenceId"] == body["referenceId"]
    transcript = accepted["chat_notifications"]
    # As in the seed, a NEW_MESSAGE names its sender by UserId only (UserType is null).
    joined = [n for n in transcript if n["MessageType"] == "PARTY_JOINED"]
    customer = next(n["UserId"] for n in joined if n["UserType"] == "Client")
    said = [n for n in transcript if n["MessageType"] == "NEW_MESSAGE"]
    assert [(n["UserId"], n["MessageText"]) for n in said] == [
        (customer, "Hello, is anyone there?")
    ], transcript
    last_event = max(n["EventId"] for n in transcript)

    status, _ = await partner.say(chat_id, "SendMessage", text="My order is late.")
    assert status == 200
    news = await agent.next(lambda d: of(chat_id)(d) and bool(d.get("chat_notifications")))
    assert [
        (n["EventId"], n["MessageType"], n["UserId"], n["MessageText"])
        for n in news["chat_notifications"]
    ] == [(last_event + 1, "NEW_MESSAGE", customer, "My order is late.")], news

    status, _ = await partner.say(chat_id, "Leave")
    assert status == 200
    left = await agent.next(lambda d: of(chat_id)(d) and bool(d.get("chat_notifications")))
    assert [(n["EventId"], n["MessageType"], n["UserId"]) for n in left["chat_notifications"]] == [
        (last_event + 2, "PARTY_LEFT", customer)
    ], left
    assert left["state"] == "Accepted"  # the agent still has to complete it

    status, body = await desktop.operate(chat_id, "Complete")
    assert status == 200 and body["statusCode"] == 0, body
    done = await agent.next(of(chat_id, "Completed"))
    assert done["referenceId"] == body["referenceId"]

    states = assert_in_order_once(agent, chat_id)
    assert states[:2] == ["Invited", "Accepted"] and states[-1] == "Completed", states
    await agent.close()


@pytest.mark.parametrize(("kind", "transport"), CLIENTS)
async def test_rehandshake_after_expiry_carries_the_token(
    center: Center, open_agent: Callable[..., Any], kind: str, transport: str
) -> None:
    desktop = await center.desktop("agent1", "email", bayeux=False)
    agent = await open_agent(kind, transport, desktop)
    old_id = agent.client_id
    # The CometD session expires (as after maxInterval): the client's next /meta/connect gets
    # 402 + reconnect=handshake and it handshakes again, which must carry the token again (the
    # REST session is still live), and subscribes /v2/me/interactions again.
    assert await center.gateway.app[HUB].expire_session(old_id) is True
    new_id = await agent.recovered(old_id)
    assert await session_ids(center) == [new_id]

    email_id = await center.partner.email("After recovery")
    invited = await agent.next(of(email_id, "Invited"))
    assert invited["capabilities"] == ["Accept", "Reject"]
    assert assert_in_order_once(agent, email_id) == ["Invited"]
    await agent.close()


@pytest.mark.parametrize(("kind", "transport"), CLIENTS)
async def test_handshake_without_token_is_refused(
    center: Center,
    node_client: Any,
    aiocometd_client: Callable[..., Any],
    kind: str,
    transport: str,
) -> None:
    # The agent is logged in, but the client does not say so (and has no JSESSIONID cookie).
    await center.desktop("agent1", "email", bayeux=False)
    if kind == "js":
        url = f"http://127.0.0.1:{center.gateway.port}{MOUNT}"
        client = await node_client(url, transport, [INTERACTIONS])
        handshake = await client.expect("handshake")
        assert handshake["successful"] is False, handshake
        assert handshake["error"] == "403::handshake_denied", handshake
        assert (handshake.get("advice") or {}).get("reconnect") == "none", handshake
        # The client gives up: no retry, no subscription, and it reports itself disconnected.
        await client.expect_none("handshake", QUIET_PERIOD)
        await client.send("status")
        status = await client.expect("status")
        assert status["status"] == "disconnected", status
        assert status["connected"] is False, status
        assert not any(e["event"] in ("subscribed", "connected") for e in client.events)
        handshakes = [
            line
            for line in client.stderr_tail
            if '"wire":"out"' in line and "/meta/handshake" in line
        ]
        assert len(handshakes) == 1, handshakes
    else:
        url = f"http://localhost:{center.gateway.port}{MOUNT}"
        client, wire = aiocometd_client(url, CONNECTION_TYPES[transport])
        with pytest.raises(aiocometd.exceptions.ServerError) as raised:
            await asyncio.wait_for(client.open(), STEP_TIMEOUT)
        assert raised.value.message == "Handshake request failed."
        assert raised.value.error == "403::handshake_denied", raised.value.response
        assert client.closed
        await asyncio.sleep(QUIET_PERIOD)
        assert len(wire.messages("out", "/meta/handshake")) == 1, wire.describe()
        assert wire.messages("out", "/meta/connect") == [], wire.describe()
    assert await session_ids(center) == []
