"""The publishing Bayeux client: its own session, publishes batched into POSTs or frames."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

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


class Publisher:
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

    def _count_acks(self, msgs: list[Msg]) -> None:
        for m in msgs:
            if m.channel.startswith("/meta/") or m.data is not None:
                continue
            if m.successful:
                self.acked += 1
            else:
                self.failed += 1
                self.anomalies[f"publish failed: {m.error}"] += 1

    def close(self) -> None:
        for conn in self._all:
            conn.on_close = None
            conn.close()
        if isinstance(self.client, LongPollClient | WebSocketClient):
            self.client.close()
