"""What the HTTP edge knows of a request head, and the framing of its answers."""

from __future__ import annotations

import time
from email.utils import formatdate

import httptools

__all__ = ["REASONS", "Date", "Refused", "RequestHead", "parse_cookies", "reason"]

REASONS = {
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    505: b"HTTP Version Not Supported",
}


class Date:
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


class Refused(Exception):
    """A head llhttp accepts that the gateway does not."""


def reason(exc: BaseException) -> str:
    cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else None
    return str(cause or exc) or "malformed request"


class RequestHead:
    """What the fast path needs of a request head.  Header names are lower-case."""

    __slots__ = (
        "content_type",
        "headers",
        "keep_alive",
        "length",
        "method",
        "origin",
        "path",
        "started",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        *,
        method: bytes,
        url: bytes,
        headers: dict[str, str],
        version: str,
        keep_alive: bool,
        upgrade: bool,
    ) -> None:
        self.started = time.monotonic()
        self.method = method
        self.path = url.partition(b"?")[0].decode("ascii")  # llhttp lets only ASCII through
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.origin = headers.get("origin")
        # llhttp has checked the digits and refused repeats; absent means no body.
        self.length = int(headers.get("content-length", "0"))
        self.content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
