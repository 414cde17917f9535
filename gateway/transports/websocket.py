"""The ``websocket`` transport (CometD ``WebSocketTransport``).

The upgrade happens at the mount URL.  Each text frame carries one message or a JSON array of
them, in both directions.  Replies to a frame go back as one frame, with the session's queued
events ahead of them (as long-polling replies carry them); while a connect is held, queued
events are pushed at once, several in one frame when they arrive together, and the connect
reply follows at timeout.  A session may arrive here with a clientId obtained over
long-polling and go back; closing the socket does not end its sessions before
``interval + maxInterval``.

A frame that is not a Bayeux batch closes the socket with 1007 and a reason; a frame over the
size limit with 1009.
"""

from __future__ import annotations

import asyncio
from collections import deque

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from gateway.eager import start_eagerly
from gateway.hub import Hub
from gateway.security import Peer
from gateway.transports.common import TransportOptions, error_response, request_origin_allowed
from protocol import DecodeError, RequestContext, decode_batch, join_batch

__all__ = ["WebSocketPeer", "handle_websocket"]

log = structlog.get_logger("gateway.websocket")


class WebSocketPeer:
    """Sends frames in order, one writer at a time, from any task."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.sessions: set[str] = set()
        self._outbox: deque[bytes] = deque()
        self._writer: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self.ws.closed

    def send(self, parts: list[bytes]) -> None:
        if not parts or self.ws.closed:
            return
        frame = join_batch(parts)
        if self._writer is not None:
            self._outbox.append(frame)  # keep order behind a frame waiting for the socket
            return
        # aiohttp writes a frame at once and only waits when the socket is backed up.
        self._writer = start_eagerly(self._write(frame))

    async def _write(self, frame: bytes) -> None:
        try:
            await self.ws.send_frame(frame, WSMsgType.TEXT)
            while self._outbox and not self.ws.closed:
                await self.ws.send_frame(self._outbox.popleft(), WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            pass  # the socket is closing: its sessions expire unless the client comes back
        finally:
            self._outbox.clear()
            self._writer = None


async def handle_websocket(
    request: web.Request,
    hub: Hub,
    options: TransportOptions,
    sockets: set[web.WebSocketResponse],
) -> web.StreamResponse:
    if not request_origin_allowed(request, options):
        return error_response(403, "origin_forbidden", "this Origin is not allowed")
    ws = web.WebSocketResponse(
        max_msg_size=options.max_body_bytes, decode_text=False, autoping=True
    )
    await ws.prepare(request)
    sockets.add(ws)
    peer = WebSocketPeer(ws)
    who = Peer(
        transport="websocket",
        remote=request.remote,
        headers=request.headers,
        cookies=request.cookies,
    )
    browser = request.cookies.get(options.cookie.name)
    try:
        async for frame in ws:
            if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            try:
                batch = decode_batch(frame.data, max_messages=options.max_batch)
            except DecodeError as exc:
                await ws.close(code=WSCloseCode.INVALID_TEXT, message=str(exc)[:120].encode())
                break
            ctx = RequestContext(transport="websocket", browser_id=browser, batch_size=len(batch))
            outcome = await hub.process(batch, ctx, who, ws=peer)
            peer.send(outcome.parts)
    finally:
        sockets.discard(ws)
        hub.ws_closed(list(peer.sessions), peer)
    return ws
