"""Bayeux clients for the load generator: one simulated browser per client.

Each client owns its connection(s) and its own cookie jar (the gateway binds HTTP sessions to
the BAYEUX_BROWSER cookie).  Setup (handshake, subscribe) is awaited; after that the client
runs its /meta/connect loop from protocol callbacks and hands delivered events to a ``Sink``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Protocol
from urllib.parse import urlsplit

import msgspec
from wire import CookieJar, HttpConnection, WebSocketConnection


class Payload(msgspec.Struct):
    s: int  # global sequence number
    t: float  # scheduled publish time, time.monotonic() (CLOCK_MONOTONIC, system wide)


class Msg(msgspec.Struct):
    channel: str = ""
    data: Payload | None = None
    successful: bool | None = None
    clientId: str | None = None  # Bayeux field name
    error: str | None = None
    advice: dict[str, Any] | None = None


DECODER = msgspec.json.Decoder(list[Msg])
ENCODE = msgspec.json.encode
CONNECT = "/meta/connect"


class Sink(Protocol):
    def deliver(self, client: int, msgs: list[Msg], now: float) -> None: ...


class NullSink:
    """Discards events (clients outside a measured step, the publisher)."""

    def deliver(self, client: int, msgs: list[Msg], now: float) -> None:
        return None


class Anomalies(Counter[str]):
    """Counts protocol surprises (failed replies, re-handshakes, HTTP errors) by kind."""


class Endpoint:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.authority = f"{self.host}:{self.port}"


class BayeuxClient:
    """Transport-independent part: message ids, setup replies, connect-reply handling."""

    transport_name = ""

    def __init__(
        self, index: int, endpoint: Endpoint, sink: Sink, anomalies: Anomalies, now: Any
    ) -> None:
        self.index = index
        self.endpoint = endpoint
        self.sink = sink
        self.anomalies = anomalies
        self.now = now  # time source, time.monotonic
        self.client_id = ""
        self.channels: list[str] = []
        self.polling = False
        self.connects = 0
        self._next_id = 0
        self._connect_prefix: bytes | None = None  # pre-encoded connect without its id
        self._pending: asyncio.Future[list[Msg]] | None = None

    def _id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def _handshake_msg(self) -> dict[str, Any]:
        return {
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": [self.transport_name],
            "id": self._id(),
        }

    def _connect_body(self) -> bytes:
        self.connects += 1
        self._next_id += 1
        if self._connect_prefix is None:
            self._connect_prefix = (
                ENCODE(
                    {
                        "channel": CONNECT,
                        "clientId": self.client_id,
                        "connectionType": self.transport_name,
                    }
                )[:-1]
                + b',"id":"'
            )
        return b'[%s%d"}]' % (self._connect_prefix, self._next_id)

    async def _exchange(self, messages: list[dict[str, Any]]) -> list[Msg]:
        raise NotImplementedError

    def _send_connect(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    async def setup(self, channels: list[str]) -> None:
        """Handshake and subscribe; raise on failure."""
        self.channels = channels
        reply = await self._exchange([self._handshake_msg()])
        hs = next((m for m in reply if m.channel == "/meta/handshake"), None)
        if hs is None or not hs.successful or not hs.clientId:
            raise ConnectionError(f"handshake failed: {hs}")
        self.client_id = hs.clientId
        self._connect_prefix = None
        subs = [
            {
                "channel": "/meta/subscribe",
                "clientId": self.client_id,
                "subscription": ch,
                "id": self._id(),
            }
            for ch in channels
        ]
        if subs:
            reply = await self._exchange(subs)
            bad = [m for m in reply if m.channel == "/meta/subscribe" and not m.successful]
            if bad:
                raise ConnectionError(f"subscribe failed: {bad[0]}")

    def start(self) -> None:
        self.polling = True
        self._send_connect()

    def stop(self) -> None:
        self.polling = False

    def _handle(self, msgs: list[Msg], now: float) -> None:
        """Process one response/frame: events go to the sink; a connect reply re-polls."""
        self.sink.deliver(self.index, msgs, now)
        for m in msgs:
            if m.channel != CONNECT:
                continue
            if not m.successful:
                self.anomalies[f"connect failed: {m.error} advice={m.advice}"] += 1
            elif m.advice and m.advice.get("multiple-clients"):
                self.anomalies["multiple-clients advice"] += 1
            if not self.polling:
                return
            advice = m.advice or {}
            if advice.get("reconnect") == "handshake":
                self.anomalies["re-handshake"] += 1
                asyncio.get_running_loop().create_task(self._rehandshake())
            elif advice.get("reconnect") == "none":
                self.anomalies["advice reconnect=none"] += 1
                self.polling = False
            elif advice.get("interval"):
                delay = float(advice["interval"]) / 1000.0
                asyncio.get_running_loop().call_later(delay, self._send_connect)
            else:
                self._send_connect()
            return

    async def _rehandshake(self) -> None:
        try:
            await self.setup(self.channels)
        except (ConnectionError, OSError) as exc:
            self.anomalies[f"re-handshake failed: {exc}"] += 1
            self.polling = False
            return
        self._send_connect()


class LongPollClient(BayeuxClient):
    """Long-polling over one keep-alive connection: setup requests, then held connects."""

    transport_name = "long-polling"

    def __init__(
        self, index: int, endpoint: Endpoint, sink: Sink, anomalies: Anomalies, now: Any
    ) -> None:
        super().__init__(index, endpoint, sink, anomalies, now)
        self.jar = CookieJar()
        self.conn: HttpConnection | None = None
        self._reply: asyncio.Future[tuple[int, bytes]] | None = None

    async def _open(self) -> HttpConnection:
        loop = asyncio.get_running_loop()
        ep = self.endpoint
        _, conn = await loop.create_connection(
            lambda: HttpConnection(
                ep.authority, ep.path, self.jar, self._on_response, self._on_close
            ),
            ep.host,
            ep.port,
        )
        self.conn = conn
        return conn

    async def _exchange(self, messages: list[dict[str, Any]]) -> list[Msg]:
        conn = self.conn if self.conn is not None and self.conn.open else await self._open()
        self._reply = asyncio.get_running_loop().create_future()
        conn.post(ENCODE(messages))
        status, body = await self._reply
        if status != 200:
            raise ConnectionError(f"HTTP {status}: {body[:200]!r}")
        return DECODER.decode(body)

    def _send_connect(self) -> None:
        if self.conn is not None and self.conn.open:
            self.conn.post(self._connect_body())
        elif self.polling:
            asyncio.get_running_loop().create_task(self._reopen_and_connect())

    async def _reopen_and_connect(self) -> None:
        self.anomalies["long-poll connection reopened"] += 1
        try:
            await self._open()
        except OSError as exc:
            self.anomalies[f"reconnect failed: {exc}"] += 1
            return
        self._send_connect()

    def _on_response(self, status: int, body: bytes) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_result((status, body))
            return
        now = self.now()
        if status != 200:
            self.anomalies[f"HTTP {status} on connect"] += 1
            if self.polling:
                asyncio.get_running_loop().call_later(0.5, self._send_connect)
            return
        try:
            msgs = DECODER.decode(body)
        except msgspec.DecodeError:
            self.anomalies["undecodable response"] += 1
            return
        self._handle(msgs, now)

    def _on_close(self, exc: Exception | None) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(exc or ConnectionResetError())
        elif self.polling:
            self.anomalies["server closed a long-poll connection"] += 1
            asyncio.get_running_loop().call_soon(self._send_connect)

    def close(self) -> None:
        self.polling = False
        if self.conn is not None:
            self.conn.on_close = None
            self.conn.close()


class WebSocketClient(BayeuxClient):
    """Bayeux over one WebSocket; events arrive as frames while the connect is held."""

    transport_name = "websocket"

    def __init__(
        self, index: int, endpoint: Endpoint, sink: Sink, anomalies: Anomalies, now: Any
    ) -> None:
        super().__init__(index, endpoint, sink, anomalies, now)
        self.ws: WebSocketConnection | None = None
        self.on_ack: Any = None  # publisher hook: called with the list of replies

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        ep = self.endpoint
        _, ws = await loop.create_connection(
            lambda: WebSocketConnection(ep.authority, ep.path, self._on_text, self._on_close),
            ep.host,
            ep.port,
        )
        await ws.upgraded
        self.ws = ws

    async def _exchange(self, messages: list[dict[str, Any]]) -> list[Msg]:
        if self.ws is None or not self.ws.open:  # a server may close it on an error: retry anew
            await self.open()
        assert self.ws is not None
        self._pending = asyncio.get_running_loop().create_future()
        self._waiting_for = messages[0]["channel"]
        self.ws.send_text(ENCODE(messages))
        return await self._pending

    def _send_connect(self) -> None:
        if self.ws is not None and self.ws.open:
            self.ws.send_text(self._connect_body())

    def _on_text(self, payloads: list[bytes | memoryview]) -> None:
        now = self.now()
        batch: list[Msg] = []
        for payload in payloads:
            try:
                msgs = DECODER.decode(payload)
            except msgspec.DecodeError:
                self.anomalies["undecodable frame"] += 1
                continue
            pending = self._pending
            waited = pending is not None and not pending.done()
            if waited and any(m.channel == self._waiting_for for m in msgs):
                pending.set_result(msgs)  # type: ignore[union-attr]
                continue
            batch += msgs
        if self.on_ack is not None:
            self.on_ack(batch)
        if batch:
            self._handle(batch, now)

    def _on_close(self, exc: Exception | None) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(exc or ConnectionResetError())
        if self.polling:
            self.anomalies["server closed a websocket"] += 1
            self.polling = False

    def close(self) -> None:
        self.polling = False
        if self.ws is not None:
            self.ws.on_close = None
            self.ws.close()
