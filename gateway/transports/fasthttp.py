"""A fast HTTP/1.1 path for Bayeux long-polling POSTs, in front of aiohttp on the same port.

Long-polling is one HTTP request per delivery cycle, so its cost per request bounds how many
events per second the gateway delivers.  aiohttp's general machinery (request objects,
routing, signals, response objects) costs several times what a Bayeux POST needs, so each
connection starts here:

* a ``POST`` to a Bayeux mount (or one suffix of it) with a ``Content-Length`` body is served
  directly: the same :func:`gateway.transports.http.long_polling` as the aiohttp route, with
  the same origin check, body limit, cookie and CORS headers;
* anything else — websocket upgrades, JSONP, CORS preflights, chunked bodies,
  ``Expect: 100-continue``, other paths, anything unusual — is handed, at that request's first
  byte, to aiohttp's own protocol, which keeps the connection from then on.

Requests on one connection are served in order (no pipelining overlap).  A connection closed by
the client while its connect is held cancels the hold; queued events stay for the next connect.
Idle keep-alive connections close after ``KEEPALIVE_S`` (checked by one sweep for all
connections), and a request head must arrive whole within that time too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import cast

import structlog

from gateway.eager import start_eagerly
from gateway.held import Outcome
from gateway.hub import Hub
from gateway.security import Peer
from gateway.transports.common import TransportOptions, error_body, origin_allowed
from gateway.transports.http import (
    FORBIDDEN_ORIGIN,
    Answer,
    answer_from,
    long_polling,
    too_large,
)

__all__ = ["FastHttpProtocol", "FastPath", "parse_cookies"]

log = structlog.get_logger("gateway.fasthttp")

KEEPALIVE_S = 75.0
MAX_HEAD = 16 * 1024
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    413: b"Payload Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
}
_JSON_HEAD = (
    b"Content-Type: application/json;charset=UTF-8\r\nCache-Control: no-cache, no-store\r\n"
)


class _Date:
    """The ``Date`` header, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def header(self) -> bytes:
        now = time.time()
        if int(now) != self._second:
            self._second = int(now)
            self._value = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._value


def parse_cookies(header: str) -> dict[str, str]:
    """A ``Cookie`` header → name/value (first occurrence wins, quotes removed)."""
    cookies: dict[str, str] = {}
    if header:
        for pair in header.split(";"):
            name, sep, value = pair.strip().partition("=")
            if sep and name and name not in cookies:
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                cookies[name] = value
    return cookies


class FastPath:
    """Shared by every connection of one listening socket."""

    def __init__(
        self,
        *,
        hub: Hub,
        options: TransportOptions,
        mounts: Iterable[str],
        fallback: Callable[[], asyncio.Protocol],
    ) -> None:
        self.hub = hub
        self.options = options
        self.fallback = fallback
        self._mounts = tuple(mounts)
        self.connections: set[FastHttpProtocol] = set()
        self.closing = False
        self.date = _Date()
        self._sweeper: asyncio.TimerHandle | None = None

    def protocol(self) -> FastHttpProtocol:
        if self._sweeper is None and not self.closing:
            self._sweep()
        return FastHttpProtocol(self)

    def _sweep(self) -> None:
        """Close connections idle (no request in progress) for longer than ``KEEPALIVE_S``."""
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - KEEPALIVE_S
        for connection in list(self.connections):
            if not connection.busy and connection.last_active < cutoff:
                connection.close()
        self._sweeper = loop.call_later(KEEPALIVE_S / 5, self._sweep) if not self.closing else None

    def serves(self, path: str) -> bool:
        for mount in self._mounts:
            if path == mount:
                return True
            if path.startswith(mount) and path[len(mount) : len(mount) + 1] == "/":
                return "/" not in path[len(mount) + 1 :]
        return False

    async def shutdown(self, timeout_s: float) -> None:
        """Close idle connections now; let busy ones finish their answer, up to ``timeout_s``."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        busy = []
        for connection in list(self.connections):
            if connection.task is not None:
                busy.append(connection.task)
            elif not connection.busy:
                connection.close()
        if busy:
            await asyncio.wait(busy, timeout=timeout_s)
        for connection in list(self.connections):
            connection.close()


class FastHttpProtocol(asyncio.Protocol):
    """One connection.  While its connect is held no task runs: the hub calls :meth:`respond`."""

    __slots__ = (
        "_buffer",
        "_held",
        "_remote",
        "_reply_to",
        "fast",
        "last_active",
        "task",
        "transport",
    )

    def __init__(self, fast: FastPath) -> None:
        self.fast = fast
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self._buffer = bytearray()
        self._remote: str | None = None
        self._held: str | None = None  # the session whose connect this request holds
        self._reply_to: tuple[str | None, bool] | None = None  # (Origin, keep-alive)
        self.last_active = asyncio.get_running_loop().time()

    @property
    def busy(self) -> bool:
        return self.task is not None or self._held is not None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = self.transport.get_extra_info("peername")
        self._remote = str(peer[0]) if isinstance(peer, tuple) else None
        self.fast.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self.busy:
            self._next_request()
        elif len(self._buffer) > MAX_HEAD + self.fast.options.max_body_bytes:
            self.close()  # a client flooding us while its request is being answered

    def connection_lost(self, exc: Exception | None) -> None:
        self.fast.connections.discard(self)
        if self.task is not None:
            self.task.cancel()
        if self._held is not None:
            self.fast.hub.abandon(self._held, self)
            self._held = None
        self.transport = None

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- requests -----------------------------------------------------------------------------

    def _next_request(self) -> None:
        if self.busy or self.transport is None:
            return  # one request at a time, answered in order
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                self._send_error(431, "header_too_large", "request head too large", close=True)
            return
        request = _parse_head(bytes(buffer[:end]))
        if request is None or not self.fast.serves(request.path):
            self._delegate()
            return
        if request.length > self.fast.options.max_body_bytes:
            self._answer(
                too_large(self.fast.options), request.headers.get("origin"), keep_alive=False
            )
            return
        total = end + 4 + request.length
        if len(buffer) < total:
            return
        body = bytes(buffer[end + 4 : total])
        del buffer[:total]
        self.task = start_eagerly(self._serve(request, body))

    async def _serve(self, request: _Head, body: bytes) -> None:
        keep_alive = request.keep_alive and not self.fast.closing
        origin = request.headers.get("origin")
        try:
            if not origin_allowed(origin, request.headers.get("host"), self.fast.options):
                answer: Answer | str = FORBIDDEN_ORIGIN
            else:
                answer = await long_polling(
                    self.fast.hub,
                    self.fast.options,
                    body,
                    _content_type(request),
                    self._peer(request),
                    self,
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("request_failed", path=request.path)
            answer = Answer(500, error_body("internal_error", "the request could not be served"))
            keep_alive = False
        finally:
            self.task = None
        if isinstance(answer, str):  # a held connect: the hub calls respond() later
            self._held = answer
            self._reply_to = (origin, keep_alive)
            return
        self._finish(answer, origin, keep_alive)

    def respond(self, outcome: Outcome) -> None:
        """The hub's answer to this connection's held connect."""
        reply_to = self._reply_to
        self._held = self._reply_to = None
        if reply_to is not None:
            self._finish(answer_from(outcome), *reply_to)

    def _peer(self, request: _Head) -> Peer:
        headers = request.headers
        return Peer(
            transport="long-polling",
            remote=self._remote,
            headers=headers,
            cookies=parse_cookies(headers.get("cookie", "")),
        )

    def _finish(self, answer: Answer, origin: str | None, keep_alive: bool) -> None:
        self._answer(answer, origin, keep_alive=keep_alive and not self.fast.closing)
        if self.transport is not None and not self.transport.is_closing():
            loop = asyncio.get_running_loop()
            self.last_active = loop.time()
            if self._buffer:  # a pipelined request: next loop turn, not deeper in this stack
                loop.call_soon(self._next_request)

    def _answer(self, answer: Answer, origin: str | None, *, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        head = [
            b"HTTP/1.1 %d %s\r\n" % (answer.status, _REASONS.get(answer.status, b"Error")),
            _JSON_HEAD,
            b"Content-Length: %d\r\n" % len(answer.body),
            self.fast.date.header(),
        ]
        if answer.set_cookie is not None:
            head.append(b"Set-Cookie: " + answer.set_cookie.encode("latin-1") + b"\r\n")
        if origin is not None and (
            self.fast.options.any_origin or origin in self.fast.options.allow_origins
        ):
            head.append(
                b"Access-Control-Allow-Origin: " + origin.encode("latin-1") + b"\r\n"
                b"Access-Control-Allow-Credentials: true\r\nVary: Origin\r\n"
            )
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        head.append(answer.body)
        transport.write(b"".join(head))
        if not keep_alive:
            transport.close()

    def _send_error(self, status: int, error: str, detail: str, *, close: bool) -> None:
        self._answer(Answer(status, error_body(error, detail)), None, keep_alive=not close)

    def _delegate(self) -> None:
        """Hand the connection, from this request on, to aiohttp's protocol."""
        transport = self.transport
        if transport is None:
            return
        protocol = self.fast.fallback()
        self.fast.connections.discard(self)
        data = bytes(self._buffer)
        self._buffer.clear()
        self.transport = None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(data)


class _Head:
    """The parts of a request head the fast path needs.  Header names are lower-case."""

    __slots__ = ("headers", "keep_alive", "length", "path")

    def __init__(self, path: str, headers: dict[str, str], length: int, keep_alive: bool) -> None:
        self.path = path
        self.headers = headers
        self.length = length
        self.keep_alive = keep_alive


_DELEGATED_HEADERS = ("transfer-encoding", "expect", "upgrade")


def _content_type(request: _Head) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def _parse_head(raw: bytes) -> _Head | None:
    """A POST head the fast path can serve, or ``None`` (aiohttp will deal with it)."""
    request_line, _, rest = raw.decode("latin-1").partition("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[0] != "POST" or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        return None
    headers: dict[str, str] = {}
    for line in rest.split("\r\n") if rest else ():
        name, sep, value = line.partition(":")
        if not sep or not name or not name.isascii() or " " in name or "\t" in name:
            return None
        key = name.lower()
        value = value.strip()
        if key not in headers:
            headers[key] = value
        elif key == "cookie":
            headers[key] += "; " + value
        elif key == "content-length":
            return None  # duplicate lengths: let aiohttp refuse it
        else:
            headers[key] += ", " + value
    if any(name in headers for name in _DELEGATED_HEADERS):
        return None
    length = headers.get("content-length", "0")
    if not length.isdigit():
        return None
    connection = headers.get("connection", "").lower()
    # HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only when asked to.
    http11 = parts[2] == "HTTP/1.1"
    keep_alive = "close" not in connection if http11 else "keep-alive" in connection
    return _Head(parts[1].partition("?")[0], headers, int(length), keep_alive)
