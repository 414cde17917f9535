"""The ``websocket`` transport (CometD ``WebSocketTransport``) on aiohttp's route.

With ``server.fast_http`` on (the default) upgrades to a Bayeux mount are taken by the edge
instead (:mod:`gateway.bayeux.transports.fastws`), with the same promises; this route serves them
when it is off.

The upgrade happens at the mount URL.  Each text frame carries one message or a JSON array of
them, in both directions.  Replies to a frame go back as one frame, with the session's queued
events ahead of them (as long-polling replies carry them); while a connect is held, queued
events are pushed at once, several in one frame when they arrive together, and the connect
reply follows at timeout.  A session may arrive here with a clientId obtained over
long-polling and go back; closing the socket does not end its sessions before
``interval + maxInterval``.

A frame that is not a Bayeux batch (not UTF-8 JSON, nested too deeply, too many messages)
closes the socket with 1007 and a reason; a frame over the size limit with 1009; a failure of
ours with 1011.

A client that does not read does not make the gateway buffer for it: above
``queue.ws_high_water_bytes`` of unsent data the socket gets no more frames of events (they wait
in the session's queue, bounded by ``queue.max_messages`` and its overflow policy) and none of
its own frames is read until it has drained.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Protocol

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from gateway.bayeux.eager import start_eagerly
from gateway.bayeux.engines.base import EngineUnavailable
from gateway.bayeux.hub import Hub
from gateway.bayeux.security import Peer
from gateway.bayeux.transports.common import (
    TransportOptions,
    error_response,
    request_origin_allowed,
)
from protocol import DecodeError, RequestContext, decode_batch, join_batch

__all__ = [
    "CLOSE_TIMEOUT_S",
    "ENGINE_DOWN_REASON",
    "TRY_AGAIN_LATER",
    "OpenSocket",
    "WebSocketPeer",
    "close_reason",
    "handle_websocket",
]

log = structlog.get_logger("gateway.websocket")

#: RFC 6455 §7.4.1 / IANA: "Try Again Later"; CometD clients reconnect after it.
TRY_AGAIN_LATER = 1013
ENGINE_DOWN_REASON = b"sessions cannot be reached: retry shortly"

#: How long a close may wait for a client that does not read before the socket is cut.
CLOSE_TIMEOUT_S = 2.0


class OpenSocket(Protocol):
    """An open websocket, on either path (aiohttp's here, the edge's in ``fastws``)."""

    sessions: set[str]

    @property
    def backed_up(self) -> bool: ...

    @property
    def buffered_bytes(self) -> int: ...

    async def close(
        self, code: int, message: bytes, timeout_s: float = CLOSE_TIMEOUT_S
    ) -> None: ...


class WebSocketPeer:
    """Sends frames in order, one writer at a time, from any task, with flow control.

    The socket's transport pauses writing above ``high_water`` unsent bytes (asyncio resumes
    it below a quarter of that).  While it is paused the peer is :attr:`backed_up`: frames
    already due (replies) wait in order in a small outbox, the hub pushes no events (they wait
    in the session's bounded queue, whose overflow policy applies) and the handler reads no
    further frame from the client.  ``on_drained`` is called once the backlog has gone out.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        *,
        high_water: int,
        on_drained: Callable[[WebSocketPeer], None],
    ) -> None:
        self.ws = ws
        self.sessions: set[str] = set()
        self._transport = transport
        self._on_drained = on_drained
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        if transport is not None:
            transport.set_write_buffer_limits(high=high_water)

    @property
    def closed(self) -> bool:
        return self.ws.closed

    @property
    def backed_up(self) -> bool:
        """The client is not reading fast enough: frames wait for the socket to drain."""
        return self._writer is not None

    @property
    def buffered_bytes(self) -> int:
        """Bytes given to this socket that the kernel has not taken yet."""
        transport = self._transport
        pending = transport.get_write_buffer_size() if transport is not None else 0
        return pending + self._outbox_bytes

    def send(self, parts: list[bytes]) -> None:
        if not parts or self.ws.closed:
            return
        frame = join_batch(parts)
        if self._writer is not None:
            self._outbox.append(frame)  # keep order behind a frame waiting for the socket
            self._outbox_bytes += len(frame)
            return
        # aiohttp writes a frame at once and only waits when the socket is backed up.
        self._writer = start_eagerly(self._write(frame))

    async def _write(self, frame: bytes) -> None:
        drained = False
        try:
            await self.ws.send_frame(frame, WSMsgType.TEXT)
            while self._outbox and not self.ws.closed:
                frame = self._outbox.popleft()
                self._outbox_bytes -= len(frame)
                await self.ws.send_frame(frame, WSMsgType.TEXT)
            drained = not self.ws.closed
        except (ConnectionError, RuntimeError):
            pass  # the socket is closing: its sessions expire unless the client comes back
        finally:
            self._outbox.clear()
            self._outbox_bytes = 0
            # Set only when this coroutine had to wait (it then runs as a task).
            waited, self._writer = self._writer is not None, None
        if waited and drained:
            self._on_drained(self)

    def unavailable(self) -> None:
        """The engine cannot be reached: close with 1013; the client reconnects."""
        start_eagerly(self.close(TRY_AGAIN_LATER, ENGINE_DOWN_REASON))

    async def drained(self) -> None:
        """Wait until the frames given so far have gone to the kernel (or the socket closed)."""
        writer = self._writer
        if writer is not None:
            await asyncio.wait([writer])

    async def close(self, code: int, message: bytes, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Close with ``code``; a client that reads nothing (not even this) is cut off."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ws.close(code=code, message=message), timeout_s)
        transport = self._transport
        if transport is not None and transport.get_write_buffer_size():
            transport.abort()  # a graceful close would wait for the client to read it all


async def handle_websocket(
    request: web.Request,
    hub: Hub,
    options: TransportOptions,
    sockets: set[OpenSocket],
) -> web.StreamResponse:
    if not request_origin_allowed(request, options):
        return error_response(403, "origin_forbidden", "this Origin is not allowed")
    # writer_limit=0: after every frame aiohttp waits while the transport is paused (above
    # the high-water mark), so the peer knows exactly when the socket is backed up.
    ws = web.WebSocketResponse(
        # aiohttp refuses a message of max_msg_size bytes or more; HTTP bodies and the edge's
        # websockets take one of exactly max_body_bytes.
        max_msg_size=options.max_body_bytes + 1,
        decode_text=False,
        autoping=True,
        writer_limit=0,
    )
    # aiohttp quotes a bad handshake header in its 400 and fails doing so when the value is not
    # ASCII (a 500): the handshake's headers are checked here first, and its refusals are ours.
    handshake = ("Connection", "Upgrade", "Sec-WebSocket-Key", "Sec-WebSocket-Version")
    if not all(request.headers.get(name, "").isascii() for name in handshake):
        return error_response(400, "invalid_websocket_handshake", "non-ASCII handshake header")
    try:
        await ws.prepare(request)
    except web.HTTPException as exc:
        detail = "the websocket handshake is malformed"
        return error_response(exc.status, "invalid_websocket_handshake", detail)
    peer = WebSocketPeer(
        ws,
        request.transport,
        high_water=options.ws_high_water_bytes,
        on_drained=hub.ws_drained,
    )
    sockets.add(peer)
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
                await peer.close(WSCloseCode.INVALID_TEXT, close_reason(exc))
                break
            ctx = RequestContext(transport="websocket", browser_id=browser, batch_size=len(batch))
            try:
                outcome = await hub.process(batch, ctx, who, ws=peer)
            except EngineUnavailable:  # logged by the engine, once per outage
                await peer.close(TRY_AGAIN_LATER, ENGINE_DOWN_REASON)
                break
            except Exception:
                # Our fault, not the client's: say so with a close frame, not a dropped socket.
                log.exception("websocket_failed", sessions=sorted(peer.sessions))
                await peer.close(WSCloseCode.INTERNAL_ERROR, b"internal error")
                break
            peer.send(outcome.parts)
            # A client that does not read its frames gets no further frame read either: what
            # it sends meanwhile waits in its own socket, not in our memory.
            await peer.drained()
    finally:
        sockets.discard(peer)
        hub.ws_closed(list(peer.sessions), peer)
    return ws


def close_reason(exc: Exception) -> bytes:
    """A close reason: at most 123 bytes (RFC 6455 §5.5), plain ASCII so it is valid UTF-8."""
    return str(exc).encode("ascii", "replace")[:123]
