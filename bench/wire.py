"""Minimal asyncio client protocols: HTTP/1.1 keep-alive POST and WebSocket (RFC 6455).

The load generator has one core.  aiohttp's client spends far more CPU per request than the
server under test spends answering it, so these protocols speak the wire format directly and
call back synchronously from ``data_received`` (no task or future per response).  Only what
Bayeux over HTTP and WebSocket needs is implemented: one request in flight per connection,
Content-Length or chunked responses, Set-Cookie capture, unmasked server frames,
fragmentation, ping/pong and close.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from typing import cast

OnResponse = Callable[[int, bytes], None]
OnText = Callable[[list[bytes | memoryview]], None]
OnClose = Callable[[Exception | None], None]


class CookieJar:
    """One simulated browser's cookies (name -> value); Path/Expiry are ignored."""

    __slots__ = ("header", "values")

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.header = b""

    def store(self, set_cookie: str) -> None:
        pair = set_cookie.split(";", 1)[0]
        name, _, value = pair.partition("=")
        self.values[name.strip()] = value.strip()
        joined = "; ".join(f"{k}={v}" for k, v in self.values.items())
        self.header = f"Cookie: {joined}\r\n".encode()


def _parse_head(head: bytes, jar: CookieJar | None) -> tuple[int, int, bool, bool]:
    """Return (status, content_length or -1, chunked, close) and store cookies into ``jar``.

    Hot path (one call per long-poll response): look only for the headers that matter."""
    status = int(head[9:12])
    low = head.lower()
    length, chunked, close = -1, False, False
    at = low.find(b"\r\ncontent-length:")
    if at >= 0:
        end = low.find(b"\r\n", at + 2)
        length = int(low[at + 17 : end if end >= 0 else len(low)])
    if b"\r\ntransfer-encoding:" in low:
        chunked = b"chunked" in _header_values(low, b"transfer-encoding")[0]
    if b"\r\nconnection:" in low:
        close = _header_values(low, b"connection")[0].strip() == b"close"
    if jar is not None and b"\r\nset-cookie:" in low:
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"set-cookie":
                jar.store(value.decode("latin-1").strip())
    return status, length, chunked, close


def _header_values(low_head: bytes, name: bytes) -> list[bytes]:
    return [
        line.partition(b":")[2]
        for line in low_head.split(b"\r\n")[1:]
        if line.partition(b":")[0].strip() == name
    ]


class HttpConnection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection carrying one POST at a time.

    ``post`` writes a request; the response is reported to ``on_response(status, body)``.
    """

    def __init__(
        self,
        host: str,
        path: str,
        jar: CookieJar | None,
        on_response: OnResponse,
        on_close: OnClose | None = None,
    ) -> None:
        self._prefix = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json;charset=UTF-8\r\nAccept: application/json\r\n"
        ).encode()
        self.jar = jar
        self.on_response = on_response
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self._buf = bytearray()
        self._status = 0
        self._need = -1  # body bytes still expected (-1: reading the head)
        self._chunked = False
        self._close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.on_close is not None:
            self.on_close(exc or ConnectionResetError("server closed the connection"))

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def post(self, body: bytes) -> None:
        assert self.transport is not None, "connection is closed"
        self.busy = True
        cookie = self.jar.header if self.jar is not None else b""
        self.transport.write(
            b"%s%sContent-Length: %d\r\n\r\n%s" % (self._prefix, cookie, len(body), body)
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while True:
            if self._need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                status, length, chunked, close = _parse_head(bytes(buf[:end]), self.jar)
                del buf[: end + 4]
                self._status, self._chunked, self._close_after = status, chunked, close
                self._need = 0 if chunked else max(length, 0)
            if self._chunked:
                body = self._take_chunked()
                if body is None:
                    return
            else:
                if len(buf) < self._need:
                    return
                body = bytes(buf[: self._need])
                del buf[: self._need]
            self._need = -1
            self.busy = False
            self.on_response(self._status, body)
            if self._close_after:
                self.close()
                return

    def _take_chunked(self) -> bytes | None:
        """Return the whole de-chunked body once every chunk has arrived, else None."""
        buf, pos, parts = self._buf, 0, list[bytes]()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
            start = eol + 2
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", eol)
                if trailer_end < 0:
                    return None
                del buf[: trailer_end + 4]
                return b"".join(parts)
            if len(buf) < start + size + 2:
                return None
            parts.append(bytes(buf[start : start + size]))
            pos = start + size + 2


def mask_payload(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` (fast for large payloads)."""
    n = len(data)
    if n == 0:
        return data
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        n, "little"
    )


class WebSocketConnection(asyncio.Protocol):
    """A WebSocket client connection; the text messages of each read are reported together
    to ``on_text(payloads)``."""

    def __init__(
        self,
        host: str,
        path: str,
        on_text: OnText,
        on_close: OnClose | None = None,
        jar: CookieJar | None = None,
    ) -> None:
        self._host, self._path, self._jar = host, path, jar
        self.on_text = on_text
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buf = bytearray()
        self._open = False  # upgrade completed
        self._fragments: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        key = base64.b64encode(os.urandom(16)).decode()
        cookie = self._jar.header.decode() if self._jar is not None else ""
        self.transport.write(
            (
                f"GET {self._path} HTTP/1.1\r\nHost: {self._host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{cookie}\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        err = exc or ConnectionResetError("websocket closed")
        if not self.upgraded.done():
            self.upgraded.set_exception(err)
        if self.on_close is not None:
            self.on_close(err)

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send_text(self, payload: bytes) -> None:
        self._send_frame(0x1, payload)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is None:
            return
        n = len(payload)
        if n < 126:
            header = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        key = os.urandom(4)
        self.transport.write(header + key + mask_payload(payload, key))

    def data_received(self, data: bytes) -> None:
        if not self._open or self._buf:
            self._buf += data
            if not self._open and not self._finish_upgrade():
                return
            data = bytes(self._buf)
            self._buf.clear()
        texts = self._parse_frames(data)
        if texts:
            self.on_text(texts)

    def _finish_upgrade(self) -> bool:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        status, _, _, _ = _parse_head(bytes(buf[:end]), self._jar)
        del buf[: end + 4]
        if status != 101:
            self.upgraded.set_exception(ConnectionError(f"upgrade refused: HTTP {status}"))
            self.close()
            return False
        self._open = True
        self.upgraded.set_result(None)
        return True

    def _parse_frames(self, data: bytes) -> list[bytes | memoryview]:
        """Split ``data`` into frames; return the complete text messages (views, no copies)
        and keep an incomplete tail for the next read."""
        view, pos, size = memoryview(data), 0, len(data)
        texts: list[bytes | memoryview] = []
        while size - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = data[pos + 2] << 8 | data[pos + 3], 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
            if b1 & 0x80:  # servers must not mask, but tolerate it
                head += 4
            if size - pos < head + length:
                break
            payload: bytes | memoryview = view[pos + head : pos + head + length]
            if b1 & 0x80:
                payload = mask_payload(bytes(payload), data[pos + head - 4 : pos + head])
            pos += head + length
            if b0 == 0x81:  # the usual case: a whole text frame
                texts.append(payload)
            else:
                self._other_frame(b0 & 0x80 != 0, b0 & 0x0F, bytes(payload), texts)
        if pos < size:
            self._buf += view[pos:]
        return texts

    def _other_frame(
        self, fin: bool, opcode: int, payload: bytes, texts: list[bytes | memoryview]
    ) -> None:
        if opcode in (0x0, 0x1, 0x2):
            self._fragments.append(payload)
            if fin:
                texts.append(b"".join(self._fragments))
                self._fragments = []
        elif opcode == 0x9:
            self._send_frame(0xA, payload)
        elif opcode == 0x8:
            self._send_frame(0x8, payload[:2])
            self.close()
