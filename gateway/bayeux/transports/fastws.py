"""The ``websocket`` transport on the edge's own connection (no aiohttp in the frame path).

A websocket frame of one publish is the cheapest Bayeux request there is, so what the gateway
spends per frame around the hub bounds how many publishes per second it takes.  aiohttp's
websocket (a reader queue, a handler task woken per frame, a writer coroutine per frame) costs
more than the hub itself; here the frames of a connection upgraded on the edge
(:class:`gateway.bayeux.transports.fasthttp.FastHttpProtocol`) are handled in ``data_received``:

* the opening handshake is checked by `websockets`' ``ServerProtocol.accept`` (RFC 6455
  §4.2.1: method, ``Upgrade``, ``Connection``, key, version), after the same Origin check as the
  aiohttp route; a refusal is a JSON answer (``invalid_websocket_handshake``) and a close;
* frames are parsed, unmasked, size-checked and answered (ping, close) by `websockets`' sans-I/O
  protocol, a well-kept parser; fragmented messages are joined here;
* each message is decoded and given to the hub in arrival order; the hub's work is run eagerly
  and becomes a task only when it has to wait (then the next messages wait behind it).

What the aiohttp route promises holds here too (:mod:`gateway.bayeux.transports.websocket`):
replies to a frame go back as one frame; a frame that is not a Bayeux batch closes with 1007,
an oversized one with 1009, a failure of ours with 1011; above ``queue.ws_high_water_bytes``
of unsent data the socket gets no frames of events (they wait in the session's bounded queue)
and none of the client's frames is read until it has drained; a close waits at most
``CLOSE_TIMEOUT_S`` for a client that does not read, then the connection is cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol, cast

import structlog
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from gateway.bayeux.eager import start_eagerly
from gateway.bayeux.engines.base import EngineUnavailable
from gateway.bayeux.hub import Hub
from gateway.bayeux.security import Peer
from gateway.bayeux.transports.common import TransportOptions
from gateway.bayeux.transports.websocket import (
    CLOSE_TIMEOUT_S,
    ENGINE_DOWN_REASON,
    TRY_AGAIN_LATER,
    close_reason,
)
from protocol import DecodeError, RequestContext, decode_batch, join_batch

__all__ = ["FastWebSocket", "Upgrading", "handshake", "text_frame"]

log = structlog.get_logger("gateway.websocket")
http_log = structlog.get_logger("gateway.http")

#: Messages read ahead of the one the hub is working on, before reading stops.
MAX_WAITING = 16


class Upgrading(Protocol):
    """The connection a websocket runs on (the edge's protocol)."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (RFC 6455 §5.2), as a server sends it.

    Written here rather than by ``ServerProtocol.send_text``, which builds the same bytes
    through a general serializer (masks, extensions, checks) at several times the cost: this
    is the one frame the gateway sends per answer."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 0x10000:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


def handshake(path: str, headers: dict[str, str]) -> tuple[Response, str]:
    """The answer to an upgrade request (101 when it is a valid RFC 6455 handshake), and
    what is wrong with it otherwise."""
    request = Request(path, Headers((name, value) for name, value in headers.items()))
    checker = ServerProtocol()
    response = checker.accept(request)
    del response.headers["Date"]  # the edge's own (cached) Date goes on every answer
    problem = str(checker.handshake_exc or "the websocket handshake is malformed")
    return response, problem


class FastWebSocket:
    """One upgraded connection: the hub's :class:`~gateway.bayeux.connects.WsPeer` and the
    frame loop."""

    __slots__ = (
        "_browser",
        "_closer",
        "_connection",
        "_fragments",
        "_gone",
        "_hub",
        "_in_read",
        "_on_gone",
        "_options",
        "_out",
        "_protocol",
        "_reading",
        "_sent",
        "_shut",
        "_started",
        "_stash",
        "_task",
        "_waiting",
        "_who",
        "_write_paused",
        "access_path",
        "remote",
        "sessions",
        "transport",
    )

    def __init__(
        self,
        *,
        transport: asyncio.Transport,
        connection: Upgrading,
        hub: Hub,
        options: TransportOptions,
        who: Peer,
        browser: str | None,
        on_gone: Callable[[FastWebSocket], None],
        access_path: str | None,
    ) -> None:
        self.transport: asyncio.Transport | None = transport
        self.sessions: set[str] = set()
        self.remote = who.remote
        self.access_path = access_path  # logged (http_request, 101) when the socket ends
        self._connection = connection
        self._hub = hub
        self._options = options
        self._who = who
        self._browser = browser
        self._on_gone = on_gone
        self._protocol = ServerProtocol(state=State.OPEN, max_size=options.max_body_bytes)
        self._fragments: list[bytes] = []
        self._out: list[bytes] = []  # frames of ours not written yet (see text_frame)
        self._waiting: deque[bytes] = deque()  # whole messages not yet given to the hub
        self._task: asyncio.Task[None] | None = None
        self._write_paused = False
        self._in_read = False  # frames being handled: their answers go out in one write
        self._reading = True  # False once a close frame (theirs or ours) or a bad frame is seen
        self._shut = False  # True once websockets' end of stream has been written
        # websockets' close frame, held back while messages read before it are handled
        self._stash: list[bytes] = []
        self._closer: asyncio.TimerHandle | None = None
        self._gone: list[asyncio.Future[None]] = []  # close() calls waiting for the end
        self._started = time.monotonic()
        self._sent = 0  # bytes written, for the access log
        transport.set_write_buffer_limits(high=options.ws_high_water_bytes)

    # -- the hub's side (gateway.bayeux.connects.WsPeer) ----------------------------------------

    @property
    def closed(self) -> bool:
        return self.transport is None or self._protocol.state is not State.OPEN

    @property
    def backed_up(self) -> bool:
        """The client is not reading fast enough: the kernel and the transport are full."""
        return self._write_paused

    @property
    def buffered_bytes(self) -> int:
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def send(self, parts: list[bytes]) -> None:
        # Not ``closed``: the answers to messages read before a close frame still go out,
        # ahead of the close.  The hub pushes nothing once ``closed``.
        if not parts or self._shut or self.transport is None:
            return
        self._out.append(text_frame(join_batch(parts)))
        if not self._in_read:
            self._flush()

    def unavailable(self) -> None:
        self._close(TRY_AGAIN_LATER, ENGINE_DOWN_REASON)

    async def close(self, code: int, message: bytes, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Close with ``code``; wait for the client's close frame at most ``timeout_s``."""
        self._close(code, message, timeout_s)
        if self.transport is not None:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._gone.append(waiter)
            await waiter

    # -- the connection's side ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        protocol = self._protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            frame = cast(Frame, event)  # a server protocol opened in State.OPEN yields frames
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
                payload = bytes(frame.data)  # the same object when it is bytes already
                if not frame.fin:
                    self._fragments.append(payload)
                    continue
                if self._fragments:
                    self._fragments.append(payload)
                    payload = b"".join(self._fragments)
                    self._fragments.clear()
                if self._reading:
                    self._waiting.append(payload)
            elif opcode is Opcode.CLOSE:
                self._stop_reading()
        if protocol.parser_exc is not None:  # websockets has queued its close (1002, 1009)
            self._stop_reading()
        # Messages read before a close frame or a bad frame are still handled, in order, and
        # answered ahead of the close (as they would be, had they come in an earlier read).
        self._run()

    def eof_received(self) -> None:
        self._protocol.receive_eof()
        self._flush()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._connection.pause_reading()  # nothing more is read until the client reads

    def resume_writing(self) -> None:
        self._write_paused = False
        self._run()
        if not self._write_paused:
            self._hub.ws_drained(self)
        if not self._write_paused and len(self._waiting) < MAX_WAITING:
            self._connection.resume_reading()

    def connection_lost(self) -> None:
        self.transport = None
        self._waiting.clear()
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._on_gone(self)
        self._hub.ws_closed(list(self.sessions), self)
        for waiter in self._gone:
            if not waiter.done():
                waiter.set_result(None)
        self._gone.clear()
        if self.access_path is not None:
            http_log.info(
                "http_request",
                method="GET",
                path=self.access_path,
                status=101,
                size=self._sent,
                ms=round((time.monotonic() - self._started) * 1000, 1),
                remote=self.remote,
            )

    # -- frames -------------------------------------------------------------------------------

    def _run(self) -> None:
        """Give the waiting messages to the hub, in order, while the client reads its answers.

        Their answers (and pongs, the close handshake, a protocol error's close) leave in one
        write: a client sending faster than the gateway answers costs one system call per read,
        not one per frame."""
        waiting = self._waiting
        self._in_read = True
        try:
            while waiting and self._task is None and not self._write_paused and not self._shut:
                self._task = start_eagerly(self._handle(waiting.popleft()), eager=self._hub.eager)
                if self._task is not None:
                    self._task.add_done_callback(self._handled)
        finally:
            self._in_read = False
        self._flush()
        if len(waiting) >= MAX_WAITING:
            self._connection.pause_reading()

    def _handled(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None
            self._run()
            if not self._write_paused and len(self._waiting) < MAX_WAITING:
                self._connection.resume_reading()

    async def _handle(self, payload: bytes) -> None:
        try:
            batch = decode_batch(payload, max_messages=self._options.max_batch)
        except DecodeError as exc:
            self._close(CloseCode.INVALID_DATA, close_reason(exc))
            return
        ctx = RequestContext(transport="websocket", browser_id=self._browser, batch_size=len(batch))
        try:
            outcome = await self._hub.process(batch, ctx, self._who, ws=self)
        except EngineUnavailable:  # logged by the engine, once per outage
            self._close(TRY_AGAIN_LATER, ENGINE_DOWN_REASON)
            return
        except Exception:
            # Our fault, not the client's: say so with a close frame, not a dropped socket.
            log.exception("websocket_failed", sessions=sorted(self.sessions))
            self._close(CloseCode.INTERNAL_ERROR, b"internal error")
            return
        self.send(outcome.parts)

    def _close(self, code: int, message: bytes, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        transport = self.transport
        if transport is None:
            return
        self._waiting.clear()
        self._reading = False
        with contextlib.suppress(InvalidState):  # closing already
            self._protocol.send_close(code, message.decode("utf-8", "replace"))
        if not self._in_read:
            self._flush()
        if self._closer is None and self.transport is not None:
            self._closer = asyncio.get_running_loop().call_later(timeout_s, self._cut)

    def _stop_reading(self) -> None:
        """A close frame or a bad frame: no message after it; the connection ends within
        ``CLOSE_TIMEOUT_S`` even if the client reads nothing of what precedes the close."""
        self._reading = False
        if self._closer is None and self.transport is not None:
            self._closer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self._cut)

    def _cut(self) -> None:
        """The client has not answered the close frame in time (or does not read at all)."""
        self._closer = None
        if self.transport is not None:
            self.transport.abort()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        # Ours first: websockets' own frames (pongs, a close) may follow data, never precede it.
        theirs = self._protocol.data_to_send()
        if self._stash or (theirs and not self._reading):
            if self._waiting or self._task is not None:  # the close waits for their answers
                self._stash += theirs
                theirs = []
            else:
                theirs = self._stash + theirs
                self._stash = []
        writes = self._out + theirs if self._out else theirs
        self._out = []
        if not writes:
            return
        end = not writes[-1]  # websockets' end of stream: the close handshake is over (or failed)
        if end:
            writes.pop()
        if writes:
            data = writes[0] if len(writes) == 1 else b"".join(writes)
            self._sent += len(data)
            transport.write(data)
        if end:
            # What is buffered goes out first, for at most CLOSE_TIMEOUT_S to a client that reads.
            self._shut = True
            transport.close()
            if transport.get_write_buffer_size() and self._closer is None:
                self._closer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self._cut)
