"""Publishing: one Bayeux client publishing batches into POSTs or frames (:class:`Publisher`),
or every client publishing its own messages one per request (:class:`OwnPublishers`)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

import msgspec
from bayeux import (
    DECODER,
    ENCODE,
    Anomalies,
    BayeuxClient,
    Endpoint,
    LongPollClient,
    Msg,
    NullSink,
    WebSocketClient,
)
from wire import HttpConnection


class _AckCounter:
    """Counts the publish replies among received messages: acked, or failed (an anomaly)."""

    anomalies: Anomalies
    acked: int
    failed: int

    def _count_acks(self, msgs: list[Msg]) -> None:
        for m in msgs:
            if m.channel.startswith("/meta/") or m.data is not None:
                continue
            if m.successful:
                self.acked += 1
            else:
                self.failed += 1
                self.anomalies[f"publish failed: {m.error}"] += 1


class Publisher(_AckCounter):
    """Publishes lists of Bayeux publish messages; counts acks and failures.

    Long-polling: the session's connect loop runs on its own connection and publishes go over a
    pool of up to ``max_conns`` keep-alive connections carrying the same cookie, at most
    ``max_batch`` publishes per POST.  WebSocket: publishes are written as frames on the
    session's socket (no request/response lock-step).
    """

    def __init__(
        self,
        url: str,
        transport: str,
        anomalies: Anomalies,
        now: Any,
        max_batch: int = 100,
        max_conns: int = 8,
    ) -> None:
        endpoint = Endpoint(url)
        cls = LongPollClient if transport == "long-polling" else WebSocketClient
        self.client: BayeuxClient = cls(-1, endpoint, NullSink(), anomalies, now)
        self.endpoint = endpoint
        self.anomalies = anomalies
        self.max_batch = max_batch
        self.max_conns = max_conns
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self._backlog: deque[dict[str, Any]] = deque()
        self._free: list[HttpConnection] = []
        self._conns = 0
        self._opening = 0
        self._all: list[HttpConnection] = []

    @property
    def client_id(self) -> str:
        return self.client.client_id

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    async def start(self) -> None:
        await self.client.setup([])
        self.client.start()
        if isinstance(self.client, WebSocketClient):
            self.client.on_ack = self._count_acks

    def publish(self, messages: list[dict[str, Any]]) -> None:
        if isinstance(self.client, WebSocketClient):
            ws = self.client.ws
            for i in range(0, len(messages), self.max_batch):
                chunk = messages[i : i + self.max_batch]
                if ws is not None and ws.open:
                    ws.send_text(ENCODE(chunk))
                    self.sent += len(chunk)
                else:
                    self.failed += len(chunk)
            return
        self._backlog.extend(messages)
        self._pump()

    def _pump(self) -> None:
        while self._backlog and self._free:
            conn = self._free.pop()
            n = min(self.max_batch, len(self._backlog))
            batch = [self._backlog.popleft() for _ in range(n)]
            conn.post(ENCODE(batch))
            self.sent += n
        if self._backlog and self._conns + self._opening < self.max_conns:
            self._opening += 1
            asyncio.get_running_loop().create_task(self._open_conn())

    async def _open_conn(self) -> None:
        assert isinstance(self.client, LongPollClient)
        ep, jar = self.endpoint, self.client.jar
        holder: list[HttpConnection] = []

        def on_response(status: int, body: bytes) -> None:
            self._on_publish_response(holder[0], status, body)

        def on_close(exc: Exception | None) -> None:
            conn = holder[0]
            if conn.busy:
                self.anomalies["publish connection closed with a request in flight"] += 1
            if conn in self._free:
                self._free.remove(conn)
            self._conns -= 1
            self._pump()

        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                lambda: HttpConnection(ep.authority, ep.path, jar, on_response, on_close),
                ep.host,
                ep.port,
            )
        except OSError as exc:
            self.anomalies[f"publisher connect failed: {exc}"] += 1
            return
        finally:
            self._opening -= 1
        holder.append(conn)
        self._all.append(conn)
        self._conns += 1
        self._free.append(conn)
        self._pump()

    def _on_publish_response(self, conn: HttpConnection, status: int, body: bytes) -> None:
        if status != 200:
            self.anomalies[f"HTTP {status} on publish"] += 1
        else:
            try:
                self._count_acks(DECODER.decode(body))
            except msgspec.DecodeError:
                self.anomalies["undecodable publish response"] += 1
        self._free.append(conn)
        self._pump()

    def close(self) -> None:
        for conn in self._all:
            conn.on_close = None
            conn.close()
        if isinstance(self.client, LongPollClient | WebSocketClient):
            self.client.close()


class OwnPublishers(_AckCounter):
    """Every client publishes its own messages to its own channel, one message per request.

    Message ``s`` belongs to client ``s mod N`` (the rule :class:`metrics.StepTracker` checks
    deliveries against).  Long-polling: each client has a second keep-alive connection that
    carries its browser cookie, as the CometD JavaScript client does (one connection for the
    held ``/meta/connect``, one for everything else); one publish per POST, and a publish due
    while the previous POST is unanswered waits for it.  Events that come back in a publish
    response (a server may send the session's queue there) count as delivered.  WebSocket: one
    frame per publish on the client's socket.
    """

    def __init__(self, clients: list[BayeuxClient], anomalies: Anomalies, now: Any) -> None:
        self.clients = clients
        self.anomalies = anomalies
        self.now = now
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self._lanes: list[_Lane] = []

    @property
    def backlog(self) -> int:
        return sum(len(lane.waiting) for lane in self._lanes)

    async def start(self, concurrency: int = 100) -> None:
        """Open the long-polling clients' publishing connections (websocket: hook the acks)."""
        gate = asyncio.Semaphore(concurrency)

        async def open_lane(lane: _Lane) -> None:
            async with gate:
                await lane.open()

        for client in self.clients:
            if isinstance(client, WebSocketClient):
                client.on_ack = self._count_acks
        self._lanes = [_Lane(self, c) for c in self.clients if isinstance(c, LongPollClient)]
        await asyncio.gather(*(open_lane(lane) for lane in self._lanes))

    def publish(self, messages: list[dict[str, Any]]) -> None:
        n = len(self.clients)
        for message in messages:
            index = message["data"]["s"] % n
            if self._lanes:
                self._lanes[index].publish(message)
                continue
            ws = cast(WebSocketClient, self.clients[index]).ws
            if ws is not None and ws.open:
                ws.send_text(ENCODE([message]))
                self.sent += 1
            else:
                self.failed += 1

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()


class _Lane:
    """One long-polling client's publishing connection: one POST in flight, the rest wait."""

    __slots__ = ("client", "conn", "opening", "owner", "waiting")

    def __init__(self, owner: OwnPublishers, client: LongPollClient) -> None:
        self.owner = owner
        self.client = client
        self.conn: HttpConnection | None = None
        self.opening = False
        self.waiting: deque[dict[str, Any]] = deque()

    async def open(self) -> None:
        ep = self.client.endpoint
        self.opening = True
        try:
            _, self.conn = await asyncio.get_running_loop().create_connection(
                lambda: HttpConnection(
                    ep.authority, ep.path, self.client.jar, self._on_response, self._on_close
                ),
                ep.host,
                ep.port,
            )
        except OSError as exc:
            self.owner.anomalies[f"publisher connect failed: {exc}"] += 1
            return
        finally:
            self.opening = False
        self._send_next()

    def publish(self, message: dict[str, Any]) -> None:
        self.waiting.append(message)
        conn = self.conn
        if conn is not None and conn.open:
            if not conn.busy:
                self._send_next()
        elif not self.opening:
            self.conn = None
            self.owner.anomalies["publishing connection reopened"] += 1
            asyncio.get_running_loop().create_task(self.open())

    def _send_next(self) -> None:
        if self.waiting and self.conn is not None and self.conn.open:
            self.conn.post(ENCODE([self.waiting.popleft()]))
            self.owner.sent += 1

    def _on_response(self, status: int, body: bytes) -> None:
        owner = self.owner
        if status != 200:
            owner.anomalies[f"HTTP {status} on publish"] += 1
            owner.failed += 1
        else:
            try:
                msgs = DECODER.decode(body)
            except msgspec.DecodeError:
                owner.anomalies["undecodable publish response"] += 1
            else:
                owner._count_acks(msgs)
                self.client.sink.deliver(self.client.index, msgs, owner.now())
        self._send_next()

    def _on_close(self, exc: Exception | None) -> None:
        if self.conn is not None and self.conn.busy:
            self.owner.anomalies["publish connection closed with a request in flight"] += 1
        self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.on_close = None
            self.conn.close()
