"""The HTTP/1.1 edge: every connection starts here, on llhttp (httptools), in front of aiohttp.

Long-polling is one HTTP request per delivery cycle, so its cost per request bounds how many
events per second the gateway delivers.  aiohttp's general machinery (request objects,
routing, signals, response objects) costs several times what a Bayeux POST needs, so:

* every request head is parsed and checked by llhttp, the parser of Node and uvicorn, in its
  strict mode (RFC 9112): Content-Length with Transfer-Encoding, repeated or invalid
  Content-Length, bare CR or LF, control bytes, obs-fold and non-ASCII targets are refused with
  400 and the connection closes.  Heads over ``MAX_HEAD`` get 431;
* a ``POST`` with a ``Content-Length`` body to a Bayeux mount (or one suffix of it) is served
  here: the same :func:`gateway.bayeux.transports.http.long_polling` as the aiohttp route, the same
  origin check and body limit, and the same answer headers (:func:`answer_headers`);
* a websocket upgrade to a Bayeux mount stays here: the connection carries the frames of a
  :class:`gateway.bayeux.transports.fastws.FastWebSocket` from then on;
* anything else (JSONP, CORS preflights, chunked bodies, ``Expect: 100-continue``, other
  paths) is handed, from that request's first byte, to aiohttp's
  own protocol, which keeps the connection from then on.  This protocol stays in front of it:
  a second llhttp parser watches the bytes aiohttp gets, so the time limits below hold there too
  and a request llhttp refuses never reaches aiohttp.

Limits, for every client however it behaves:

* a request's head and body must arrive within ``request_timeout_s`` of its first byte (408
  and close; a connection handed to aiohttp is closed);
* one request at a time, answered in order; while an answer waits to be written
  (``pause_writing``) or a request is being served, at most ``MAX_HEAD + max_body_bytes`` are
  buffered, then reading stops until the client has read its answers;
* at most ``max_connections_per_address`` connections per client address (429 and close);
* idle keep-alive connections close after ``KEEPALIVE_S``.

A connection closed by the client while its connect is held releases the hold; queued events
stay for the next connect.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, cast

import httptools
import structlog

from gateway.bayeux.connects import Outcome
from gateway.bayeux.eager import start_eagerly
from gateway.bayeux.security import Peer
from gateway.bayeux.transports.common import answer_headers, error_body, origin_allowed
from gateway.bayeux.transports.fastws import FastWebSocket, handshake
from gateway.bayeux.transports.heads import REASONS, Refused, RequestHead, parse_cookies, reason
from gateway.bayeux.transports.http import (
    FORBIDDEN_ORIGIN,
    Answer,
    answer_from,
    long_polling,
    too_large,
)

if TYPE_CHECKING:
    from gateway.bayeux.transports.edge import FastPath

__all__ = ["KEEPALIVE_S", "MAX_HEAD", "FastHttpProtocol"]

log = structlog.get_logger("gateway.fasthttp")
http_log = structlog.get_logger("gateway.http")

KEEPALIVE_S = 75.0
MAX_HEAD = 16 * 1024
_HEAD_END = b"\r\n\r\n"


class _Watcher:
    """llhttp over the bytes of a connection handed to aiohttp: request deadlines, strictness."""

    __slots__ = ("connection", "parser")

    def __init__(self, connection: FastHttpProtocol) -> None:
        self.connection = connection
        self.parser = httptools.HttpRequestParser(self)

    def on_message_begin(self) -> None:
        self.connection.start_deadline()

    def on_message_complete(self) -> None:
        self.connection.deadline = None


class FastHttpProtocol(asyncio.Protocol):
    """One connection.  While its connect is held no task runs: the hub calls :meth:`respond`."""

    __slots__ = (
        "_buffer",
        "_delegate",
        "_fed",
        "_head_end",
        "_headers",
        "_held",
        "_parser",
        "_read_paused",
        "_remote",
        "_reply_to",
        "_request",
        "_url",
        "_watcher",
        "_write_paused",
        "_ws",
        "deadline",
        "fast",
        "last_active",
        "task",
        "transport",
    )

    def __init__(self, fast: FastPath) -> None:
        self.fast = fast
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.deadline: float | None = None  # by when the request under way must have arrived
        self._parser = httptools.HttpRequestParser(self)
        self._buffer = bytearray()
        self._fed = 0  # bytes at the start of the buffer the parser has seen
        self._head_end = 0  # where the body of the request under way starts, once known
        self._url = b""
        self._headers: dict[str, str] = {}
        self._request: RequestHead | None = None
        self._remote: str | None = None
        self._held: str | None = None  # the session whose connect this request holds
        self._reply_to: RequestHead | None = None
        self._delegate: asyncio.Protocol | None = None
        self._watcher: _Watcher | None = None
        self._ws: FastWebSocket | None = None  # the websocket this connection was upgraded to
        self._read_paused = False
        self._write_paused = False
        self.last_active = asyncio.get_running_loop().time()

    @property
    def busy(self) -> bool:
        return self.task is not None or self._held is not None

    @property
    def delegated(self) -> bool:
        """No longer an HTTP/1.1 connection of this protocol: aiohttp's, or a websocket."""
        return self._delegate is not None or self._ws is not None

    def idle_since(self, cutoff: float) -> bool:
        return not self.busy and not self.delegated and self.last_active < cutoff

    def start_deadline(self) -> None:
        self.deadline = asyncio.get_running_loop().time() + self.fast.request_timeout_s

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = self.transport.get_extra_info("peername")
        self._remote = str(peer[0]) if isinstance(peer, tuple) else None
        self.fast.connections.add(self)
        if not self.fast.admit(self._remote):
            log.info("connection_refused", reason="too_many_connections", remote=self._remote)
            detail = "too many connections from this address"
            self._send_error(429, "too_many_connections", detail)

    def data_received(self, data: bytes) -> None:
        if self._ws is not None:
            self._ws.data_received(data)
            return
        if self._delegate is not None:
            if self._write_paused:  # aiohttp would read on and queue answers without limit
                self._buffer += data
                self._limit_buffer()
            else:
                self._watch(data)
            return
        if not self._buffer and self.deadline is None and not self.busy and not self._write_paused:
            self.start_deadline()
        self._buffer += data
        if not self.busy and not self._write_paused:
            self._next_request()  # serves one request; pipelined ones follow, a turn each
        self._limit_buffer()

    def eof_received(self) -> bool | None:
        if self._ws is not None:
            self._ws.eof_received()
            return None
        if self._delegate is not None:
            return self._delegate.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.fast.connections.discard(self)
        self.fast.release(self._remote)
        self._remote = None
        self.deadline = None
        if self.task is not None:
            self.task.cancel()
        if self._held is not None:
            self.fast.hub.abandon(self._held, self)
            self._held = None
        self.transport = None
        if self._ws is not None:
            self._ws.connection_lost()
        if self._delegate is not None:
            self._delegate.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._ws is not None:
            self._ws.pause_writing()
            return
        self._write_paused = True
        self.deadline = None  # what waits now waits for the client to read, not to send
        if self._delegate is not None:
            self._delegate.pause_writing()

    def resume_writing(self) -> None:
        if self._ws is not None:
            self._ws.resume_writing()
            return
        self._write_paused = False
        if self._delegate is not None:
            self._delegate.resume_writing()
            if self._buffer:  # what arrived while the client was not reading
                data = bytes(self._buffer)
                self._buffer.clear()
                self._resume_reading()
                self._watch(data)
        elif self._buffer and not self.busy:
            asyncio.get_running_loop().call_soon(self._next_request)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def timed_out(self) -> None:
        self.deadline = None
        log.info("request_timed_out", remote=self._remote, delegated=self.delegated)
        if self._delegate is not None:
            self.close()  # aiohttp may be writing: no answer of ours on its connection
        else:
            detail = f"the request did not arrive within {self.fast.request_timeout_s:g} s"
            self._send_error(408, "request_timeout", detail)

    # -- llhttp callbacks (the request under way) ---------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self._headers
        if key not in headers:
            headers[key] = text
        elif key == "cookie":
            headers[key] += "; " + text
        elif key == "host":
            raise Refused("more than one Host header")
        else:
            headers[key] += ", " + text

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._request = RequestHead(
            method=parser.get_method(),
            url=self._url,
            headers=self._headers,
            version=parser.get_http_version(),
            keep_alive=parser.should_keep_alive(),
            upgrade=parser.should_upgrade(),
        )

    # -- requests -----------------------------------------------------------------------------

    def _limit_buffer(self) -> None:
        """Stop reading while what waits behind the request under way exceeds one request.

        Each time, not once: aiohttp, on a connection handed to it, resumes reading for its own
        flow control without knowing that this buffer is full."""
        if (
            self.transport is not None
            and len(self._buffer) > MAX_HEAD + self.fast.options.max_body_bytes
        ):
            self._read_paused = True
            self.transport.pause_reading()

    def pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        self._resume_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()

    def _next_request(self) -> None:
        transport = self.transport
        if self.busy or self._write_paused or transport is None or transport.is_closing():
            return
        buffer = self._buffer
        if len(buffer) <= MAX_HEAD + self.fast.options.max_body_bytes:
            self._resume_reading()
        if not buffer:
            self.deadline = None
            return
        if self.deadline is None:
            self.start_deadline()
        if not self._head_end and not self._read_head():
            return
        request = self._request
        assert request is not None
        total = self._head_end + request.length
        if len(buffer) < total:
            return
        if request.length:
            try:  # to the parser too, which then expects the next request
                self._parser.feed_data(bytes(buffer[self._head_end : total]))
            except httptools.HttpParserError:
                self._refuse(400, "invalid_http_request", "the request body is malformed")
                return
        body = bytes(buffer[self._head_end : total])
        del buffer[:total]
        self._fed = self._head_end = 0
        self._url = b""
        self._headers = {}
        self._request = None
        self.deadline = None
        self.task = start_eagerly(self._serve(request, body), eager=self.fast.hub.eager)

    def _read_head(self) -> bool:
        """Feed llhttp the head of the request under way; ``True`` once it is whole and ours."""
        buffer = self._buffer
        while True:
            end = buffer.find(_HEAD_END, max(0, self._fed - 3))
            stop = end + 4 if end >= 0 else len(buffer)
            if stop > MAX_HEAD:
                self._refuse(431, "header_too_large", "request head too large")
                return False
            try:
                if stop > self._fed:
                    self._parser.feed_data(bytes(buffer[self._fed : stop]))
            except httptools.HttpParserUpgrade:
                pass  # an upgrade request, whole: aiohttp's (below)
            except (httptools.HttpParserError, Refused) as exc:
                self._refuse(400, "invalid_http_request", reason(exc))
                return False
            self._fed = stop
            if end < 0:
                return False
            if self._request is not None:
                break
            del buffer[:stop]  # empty lines before a request line (RFC 9112 §2.2)
            self._fed = 0
        request = self._request
        self._head_end = stop
        if request.version not in ("1.1", "1.0"):
            self._refuse(505, "http_version_not_supported", "only HTTP/1.1 and 1.0 are served")
            return False
        if request.version == "1.1" and "host" not in request.headers:
            self._refuse(400, "invalid_http_request", "an HTTP/1.1 request needs a Host header")
            return False
        if request.method == b"GET" and self._wants_websocket(request):
            self._upgrade(request)
            return False
        if (
            request.method != b"POST"
            or request.upgrade
            or "transfer-encoding" in request.headers
            or "expect" in request.headers
            or not self.fast.serves(request.path)
        ):
            self._hand_over()
            return False
        if request.length > self.fast.options.max_body_bytes:
            self._answer(too_large(self.fast.options), request, keep_alive=False)
            return False
        return True

    async def _serve(self, request: RequestHead, body: bytes) -> None:
        keep_alive = request.keep_alive and not self.fast.closing
        try:
            if not origin_allowed(request.origin, request.headers.get("host"), self.fast.options):
                answer: Answer | str = FORBIDDEN_ORIGIN
            else:
                answer = await long_polling(
                    self.fast.hub,
                    self.fast.options,
                    body,
                    request.content_type,
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
            self._reply_to = request
            return
        self._finish(answer, request, keep_alive)

    def respond(self, outcome: Outcome) -> None:
        """The hub's answer to this connection's held connect."""
        request = self._reply_to
        self._held = self._reply_to = None
        if request is not None:
            self._finish(answer_from(outcome), request, request.keep_alive)

    def _peer(self, request: RequestHead) -> Peer:
        headers = request.headers
        return Peer(
            transport="long-polling",
            remote=self._remote,
            headers=headers,
            cookies=parse_cookies(headers.get("cookie", "")),
        )

    def _finish(self, answer: Answer, request: RequestHead, keep_alive: bool) -> None:
        self._answer(answer, request, keep_alive=keep_alive and not self.fast.closing)
        if self.transport is not None and not self.transport.is_closing():
            loop = asyncio.get_running_loop()
            self.last_active = loop.time()
            if self._buffer:  # a pipelined request: next loop turn, not deeper in this stack
                loop.call_soon(self._next_request)

    def _answer(self, answer: Answer, request: RequestHead | None, *, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        origin = request.origin if request is not None else None
        head = [b"HTTP/1.1 %d %s\r\n" % (answer.status, REASONS.get(answer.status, b"Error"))]
        for name, value in answer_headers(answer, origin, self.fast.options):
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        head.append(b"Content-Length: %d\r\n" % len(answer.body))
        head.append(self.fast.date.header())
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        head.append(answer.body)
        transport.write(b"".join(head))
        if not keep_alive:
            transport.close()
        if self.fast.access_log:
            self._log_access(answer, request)

    def _log_access(self, answer: Answer, request: RequestHead | None) -> None:
        """The same ``http_request`` event as aiohttp's requests get (gateway.logs.AccessLog)."""
        started = request.started if request is not None else None
        http_log.info(
            "http_request",
            method=request.method.decode() if request is not None else None,
            path=request.path.partition(";")[0] if request is not None else None,
            status=answer.status,
            size=len(answer.body),
            ms=None if started is None else round((time.monotonic() - started) * 1000, 1),
            remote=self._remote,
        )

    def _send_error(self, status: int, error: str, detail: str) -> None:
        self._answer(Answer(status, error_body(error, detail)), self._request, keep_alive=False)

    def _refuse(self, status: int, error: str, detail: str) -> None:
        """A client's fault in the framing: answer once, close, one counted line."""
        self.fast.hub.stats["http_bad_requests"] += 1
        http_log.info("http_bad_request", status=status, error=error, remote=self._remote)
        self._buffer.clear()
        self._send_error(status, error, detail)

    def _wants_websocket(self, request: RequestHead) -> bool:
        upgrade = request.headers.get("upgrade")
        return (
            upgrade is not None
            and upgrade.strip().lower() == "websocket"
            and self.fast.serves(request.path)
        )

    def _upgrade(self, request: RequestHead) -> None:
        """A websocket on a Bayeux mount: this connection carries its frames from now on."""
        transport = self.transport
        if transport is None:
            return
        fast = self.fast
        options = fast.options
        if fast.closing:
            self._send_error(503, "shutting_down", "the gateway is stopping")
            return
        if not origin_allowed(request.origin, request.headers.get("host"), options):
            self._answer(FORBIDDEN_ORIGIN, request, keep_alive=False)
            return
        response, problem = handshake(request.path, request.headers)
        if response.status_code != 101:
            self._refuse(response.status_code, "invalid_websocket_handshake", problem)
            return
        head = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        for name, value in response.headers.raw_items():
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        head.append(fast.date.header())
        head.append(b"\r\n")
        transport.write(b"".join(head))
        cookies = parse_cookies(request.headers.get("cookie", ""))
        ws = FastWebSocket(
            transport=transport,
            connection=self,
            hub=fast.hub,
            options=options,
            who=Peer(
                transport="websocket",
                remote=self._remote,
                headers=request.headers,
                cookies=cookies,
            ),
            browser=cookies.get(options.cookie.name),
            on_gone=fast.sockets.discard,
            access_path=request.path.partition(";")[0] if fast.access_log else None,
        )
        self._ws = ws
        fast.sockets.add(ws)
        self.deadline = None
        rest = bytes(self._buffer[self._head_end :])
        self._buffer.clear()
        self._parser = None  # type: ignore[assignment]  # no HTTP on this connection any more
        if rest:
            ws.data_received(rest)

    def _hand_over(self) -> None:
        """Give the connection, from this request on, to aiohttp's protocol; keep watching."""
        transport = self.transport
        if transport is None:
            return
        protocol = self.fast.fallback()
        data = bytes(self._buffer)
        self._buffer.clear()
        self._delegate = protocol
        self._watcher = _Watcher(self)
        self.deadline = None
        protocol.connection_made(transport)
        if self._write_paused:
            protocol.pause_writing()
        self._watch(data)

    def _watch(self, data: bytes) -> None:
        """Bytes for aiohttp: llhttp sees them first (deadlines, and nothing it refuses passes)."""
        delegate = self._delegate
        assert delegate is not None
        watcher = self._watcher
        if watcher is not None:
            try:
                watcher.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                self._watcher = None  # a websocket (or another protocol) from here on
                self.deadline = None
            except httptools.HttpParserError as exc:
                self.fast.hub.stats["http_bad_requests"] += 1
                http_log.info(
                    "http_bad_request", status=400, error=reason(exc), remote=self._remote
                )
                self._watcher = None
                self.deadline = None
                if self.transport is not None:
                    self.transport.abort()
                return
        delegate.data_received(data)
