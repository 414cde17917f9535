"""A raw Bayeux client for the conformance suite, over long-polling and over websocket.

It does what a client puts on the wire and nothing more: no retries, no advice handling, no
extension logic.  Every helper returns the reply exactly as decoded from the wire (a ``dict``),
so a test asserts what a real client would observe.

* :class:`LongPollingClient` — one ``aiohttp.ClientSession`` with its own
  ``CookieJar(unsafe=True)``: aiohttp's default jar refuses cookies for IP hosts, and the gateway
  binds HTTP sessions to the ``BAYEUX_BROWSER`` cookie (bayeux.md §3.2).
  :meth:`LongPollingClient.post` sends any body with any headers and returns the raw HTTP reply.
* :class:`WebSocketClient` — one websocket; every frame received is kept in order
  (:attr:`WebSocketClient.frames`); replies are matched to requests by ``id``.
  :meth:`WebSocketClient.send_frame` sends any text or bytes.

Both record the events (messages without ``successful``) they see in :attr:`BayeuxClient.events`.
Every wait is bounded: a reply that should come at once must come within ``STEP_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

__all__ = [
    "ABSENT",
    "STEP_TIMEOUT",
    "BayeuxClient",
    "HttpReply",
    "LongPollingClient",
    "WebSocketClient",
    "is_event",
    "same_id",
]

Msg = dict[str, Any]

#: Upper bound on anything that should happen "at once" (a reply that is not held).  Generous:
#: a loaded 2-core CI machine; a correct server answers in a few milliseconds.
STEP_TIMEOUT = 5.0


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


#: Leave a field out of the message (as opposed to sending ``null``).
ABSENT: Any = _Absent()


def is_event(message: Msg) -> bool:
    """A delivered message: it has no ``successful`` (every reply to a request has one)."""
    return "successful" not in message


def same_id(a: Any, b: Any) -> bool:
    """Equal ids of the same JSON type (``7`` and ``"7"`` differ, as for ``===`` in JS)."""
    return type(a) is type(b) and a == b


def _body(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload).encode()


@dataclass(frozen=True, slots=True)
class HttpReply:
    """One HTTP response as received."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type, without parameters."""
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def set_cookies(self) -> list[str]:
        return list(self.headers.getall("Set-Cookie", []))


class BayeuxClient:
    """What both transports share: ids, message builders, meta helpers, recorded events."""

    transport: str = ""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.client_id: str | None = None
        #: Every event seen, in order of arrival (until :meth:`take_events`).
        self.events: list[Msg] = []
        self._ids = itertools.count(1)

    # -- what each transport implements ----------------------------------------------------

    async def exchange(self, payload: Any, *, within: float = STEP_TIMEOUT) -> list[Msg]:
        """Send one request (a message, a list of messages, or raw text) and return every
        message of its response, in order."""
        raise NotImplementedError

    async def request(self, message: Msg, *, within: float = STEP_TIMEOUT) -> Msg:
        """Send one message alone and return its reply (matched by ``id``)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    # -- building messages -----------------------------------------------------------------

    def next_id(self) -> str:
        return str(next(self._ids))

    def message(self, channel: Any, **fields: Any) -> Msg:
        """``{"channel": channel, "id": <next>, "clientId": <ours>, **fields}``; a field given
        as :data:`ABSENT` is left out."""
        msg: Msg = {"channel": channel, "id": self.next_id()}
        if self.client_id is not None:
            msg["clientId"] = self.client_id
        msg.update(fields)
        return {k: v for k, v in msg.items() if v is not ABSENT}

    def handshake_message(self, **fields: Any) -> Msg:
        base: Msg = {
            "channel": "/meta/handshake",
            "id": self.next_id(),
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": [self.transport],
        }
        base.update(fields)
        return {k: v for k, v in base.items() if v is not ABSENT}

    def connect_message(self, **fields: Any) -> Msg:
        return self.message("/meta/connect", connectionType=self.transport, **fields)

    # -- meta helpers: each returns the raw reply ---------------------------------------------

    async def handshake(self, *, within: float = STEP_TIMEOUT, **fields: Any) -> Msg:
        reply = await self.request(self.handshake_message(**fields), within=within)
        if reply.get("successful") is True and isinstance(reply.get("clientId"), str):
            self.client_id = reply["clientId"]
        return reply

    async def connect(self, *, within: float = STEP_TIMEOUT, **fields: Any) -> Msg:
        """One ``/meta/connect``; ``within`` must cover the hold if the server may hold it."""
        return await self.request(self.connect_message(**fields), within=within)

    async def subscribe(self, subscription: Any, **fields: Any) -> Msg:
        return await self.request(
            self.message("/meta/subscribe", subscription=subscription, **fields)
        )

    async def unsubscribe(self, subscription: Any, **fields: Any) -> Msg:
        return await self.request(
            self.message("/meta/unsubscribe", subscription=subscription, **fields)
        )

    async def publish(self, channel: str, data: Any = ABSENT, **fields: Any) -> Msg:
        return await self.request(self.message(channel, data=data, **fields))

    async def disconnect(self, **fields: Any) -> Msg:
        return await self.request(self.message("/meta/disconnect", **fields))

    async def open_session(self, *subscriptions: str) -> Msg:
        """Handshake, first connect (answered at once) and subscriptions, each asserted ok."""
        reply = await self.handshake()
        assert reply.get("successful") is True, reply
        connected = await self.connect()
        assert connected.get("successful") is True, connected
        for subscription in subscriptions:
            subscribed = await self.subscribe(subscription)
            assert subscribed.get("successful") is True, subscribed
        return reply

    def take_events(self) -> list[Msg]:
        events, self.events = self.events, []
        return events

    async def drain(self) -> list[Msg]:
        """Everything queued for us now: a connect with ``advice.timeout: 0`` (answered at once
        with the queued events, bayeux.md §3.1 step 3) plus the events already seen."""
        reply = await self.connect(advice={"timeout": 0})
        assert reply.get("successful") is True, reply
        return self.take_events()

    # -- shared ------------------------------------------------------------------------------

    def _record(self, messages: Sequence[Msg]) -> None:
        self.events.extend(m for m in messages if isinstance(m, dict) and is_event(m))

    @staticmethod
    def _reply_for(message: Msg, messages: Sequence[Msg]) -> Msg | None:
        for reply in messages:
            if (
                isinstance(reply, dict)
                and "successful" in reply
                and "id" in message
                and same_id(reply.get("id"), message["id"])
            ):
                return reply
        return None


class LongPollingClient(BayeuxClient):
    """Bayeux over HTTP POST, with a cookie jar that accepts cookies from ``127.0.0.1``."""

    transport = "long-polling"

    def __init__(self, base_url: str, *, cookies: bool = True) -> None:
        super().__init__(base_url)
        #: Appended to ``base_url`` for every request unless a ``path`` is given
        #: (``"/handshake"``, ``"/"`` ...: the CometD JS client's ``appendMessageTypeToURL``).
        self.path = ""
        jar: aiohttp.abc.AbstractCookieJar = (
            aiohttp.CookieJar(unsafe=True) if cookies else aiohttp.DummyCookieJar()
        )
        self.http = aiohttp.ClientSession(cookie_jar=jar)

    @property
    def jar(self) -> aiohttp.abc.AbstractCookieJar:
        return self.http.cookie_jar

    async def post(
        self,
        body: Any,
        *,
        path: str | None = None,
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
        within: float = STEP_TIMEOUT,
    ) -> HttpReply:
        """POST ``body`` (bytes, text, or anything JSON-encodable) to ``base_url + path``."""
        all_headers = dict(headers or {})
        if content_type is not None:
            all_headers.setdefault("Content-Type", content_type)
        return await self.send_http(
            "POST",
            self.path if path is None else path,
            data=_body(body),
            headers=all_headers,
            within=within,
        )

    async def send_http(
        self,
        method: str,
        path: str = "",
        *,
        within: float = STEP_TIMEOUT,
        **kwargs: Any,
    ) -> HttpReply:
        """Any HTTP request to ``base_url + path``; the whole response, within ``within`` s."""

        async def go() -> HttpReply:
            async with self.http.request(method, self.base_url + path, **kwargs) as response:
                body = await response.read()
                return HttpReply(response.status, response.headers, body)

        return await asyncio.wait_for(go(), within)

    async def exchange(
        self, payload: Any, *, within: float = STEP_TIMEOUT, path: str | None = None
    ) -> list[Msg]:
        reply = await self.post(payload, path=path, within=within)
        assert reply.status == 200, f"HTTP {reply.status}: {reply.body[:500]!r}"
        messages = reply.json()
        assert isinstance(messages, list), messages
        self._record(messages)
        return messages

    async def request(self, message: Msg, *, within: float = STEP_TIMEOUT) -> Msg:
        messages = await self.exchange([message], within=within)
        reply = self._reply_for(message, messages)
        assert reply is not None, f"no reply with id {message.get('id')!r} in {messages}"
        return reply

    async def close(self) -> None:
        await self.http.close()


class WebSocketClient(BayeuxClient):
    """Bayeux over one websocket.  A background task keeps every frame received."""

    transport = "websocket"

    def __init__(self, base_url: str, *, http: aiohttp.ClientSession | None = None) -> None:
        super().__init__(base_url)
        self._own_http = http is None
        self.http = http or aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        #: Every text frame received, decoded, in order.
        self.frames: list[Any] = []
        #: Every message of those frames, in order.
        self.log: list[Msg] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = asyncio.Event()
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http")

    async def open(self, *, within: float = STEP_TIMEOUT, **kwargs: Any) -> None:
        self.ws = await asyncio.wait_for(self.http.ws_connect(self.ws_url, **kwargs), within)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            while True:
                frame = await self.ws.receive()
                if frame.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    decoded = json.loads(frame.data)
                    messages = decoded if isinstance(decoded, list) else [decoded]
                    async with self._changed:
                        self.frames.append(decoded)
                        self.log.extend(messages)
                        self._record(messages)
                        self._changed.notify_all()
                    continue
                if frame.type is aiohttp.WSMsgType.CLOSE:
                    self.close_code = frame.data
                    self.close_reason = frame.extra
                break
        finally:
            if self.close_code is None and self.ws.close_code is not None:
                self.close_code = self.ws.close_code
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], Any], within: float) -> Any:
        """Wait (at most ``within`` s) until ``predicate()`` is truthy; return its value."""

        async def go() -> Any:
            async with self._changed:
                while True:
                    value = predicate()
                    if value:
                        return value
                    if self.closed.is_set():
                        raise AssertionError(
                            f"websocket closed ({self.close_code} {self.close_reason!r}) "
                            f"while waiting; frames: {self.frames}"
                        )
                    await self._changed.wait()

        return await asyncio.wait_for(go(), within)

    async def send_frame(self, payload: Any) -> None:
        """Send ``payload`` as one text frame (bytes are sent as a binary frame)."""
        assert self.ws is not None
        if isinstance(payload, bytes):
            await self.ws.send_bytes(payload)
        elif isinstance(payload, str):
            await self.ws.send_str(payload)
        else:
            await self.ws.send_str(json.dumps(payload))

    async def exchange(self, payload: Any, *, within: float = STEP_TIMEOUT) -> list[Msg]:
        """Send one frame; return the first later frame that holds a reply (``successful``).

        The gateway answers a frame with one frame; a held connect alone is answered when it
        ends.  Frames of pushed events in between are skipped (they land in ``events``).
        """
        start = len(self.frames)
        await self.send_frame(payload)

        def answered() -> list[Msg] | None:
            for frame in self.frames[start:]:
                messages = frame if isinstance(frame, list) else [frame]
                if any(isinstance(m, dict) and not is_event(m) for m in messages):
                    return messages
            return None

        result: list[Msg] = await self.wait_until(answered, within)
        return result

    async def request(self, message: Msg, *, within: float = STEP_TIMEOUT) -> Msg:
        start = len(self.log)
        await self.send_frame([message])
        result: Msg = await self.wait_until(
            lambda: self._reply_for(message, self.log[start:]), within
        )
        return result

    def replies_with_id(self, ident: Any) -> list[Msg]:
        return [m for m in self.log if not is_event(m) and same_id(m.get("id"), ident)]

    async def wait_closed(self, within: float = STEP_TIMEOUT) -> int | None:
        await asyncio.wait_for(self.closed.wait(), within)
        return self.close_code

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), STEP_TIMEOUT)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._own_http:
            await self.http.close()
