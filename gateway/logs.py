"""structlog set-up: JSON lines, or a readable console format on a terminal; and aiohttp's own
log records, turned into the gateway's events.

Context (``client_id``, ``agent``, ``interaction_id``) is bound through contextvars by the
callers.  Nothing here ever logs a password, a token or a message body; the processors below
also drop such keys should a caller pass one by mistake.

aiohttp logs a request it cannot parse, or one whose client hung up, as an ERROR with the
exception's traceback, and the exception's text quotes the offending bytes: a malformed
``Authorization`` header with its bearer token, a piece of a body.  Every connection a client
abandons would add such a traceback.  :class:`EdgeLog` (aiohttp's server logger for this app)
and :class:`AccessLog` (``server.access_log``) turn them into one-line events that carry no
bytes of the request:

* ``http_bad_request`` (info): a request aiohttp could not read; the exception's type and the
  status only.  Counted in the hub's stats as ``http_bad_requests``.
* ``http_client_gone`` (debug): the client closed the connection mid-request; not an error.
  Counted as ``http_client_gone``.
* ``http_request_failed`` (error, with the traceback): anything else, which is our fault.
  Counted as ``http_errors``.
* ``http_request`` (info, with ``server.access_log``): method, path without its query string
  (JSONP carries whole messages there, and clients put tokens there), status, size, time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import sys
from collections import Counter
from collections.abc import MutableMapping
from typing import Any

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["AccessLog", "EdgeLog", "configure_logging", "pseudonym"]

http_log = structlog.get_logger("gateway.http")

_SECRET_KEYS = frozenset({"password", "token", "authorization", "cookie", "body", "data"})


def _drop_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in _SECRET_KEYS.intersection(event):
        event[key] = "[redacted]"
    return event


_PSEUDONYM_KEY = secrets.token_bytes(32)  # per process: pseudonyms cannot be looked up offline


def pseudonym(text: str) -> str:
    """What to log instead of text that may be a secret (a password typed as the user name):
    12 hex digits of an HMAC-SHA256 under a per-process key.  The same text gives the same
    pseudonym for the life of the process, so repeated attempts can be correlated."""
    return hmac.new(_PSEUDONYM_KEY, text.encode(), hashlib.sha256).hexdigest()[:12]


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=max(numeric, logging.WARNING),
        stream=sys.stderr,
        format="%(levelname)s %(name)s %(message)s",
    )


# A request the client got wrong: aiohttp's parser refused it, or its body did not decode.
_BAD_REQUEST = (HttpProcessingError, web.RequestPayloadError)
# The client went away mid-request (aiohttp's ClientConnectionResetError is a
# ConnectionResetError; a handler is cancelled when its connection is lost).
_GONE = (ConnectionError, asyncio.CancelledError)


def _exception(exc_info: object) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        found = exc_info[1]
        return found if isinstance(found, BaseException) else None
    if exc_info:
        return sys.exc_info()[1]
    return None


class EdgeLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger for this app (``web.Application(handler_args={"logger": ...})``):
    each of its records becomes one gateway event without the request's bytes (see above)."""

    def __init__(self, stats: Counter[str]) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.stats = stats

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = _exception(kwargs.get("exc_info"))
        # Only aiohttp's own message template: its arguments may come from the request.
        remote = args[0] if msg == "Error handling request from %s" and args else None
        if isinstance(exc, _BAD_REQUEST):
            self.stats["http_bad_requests"] += 1
            status = exc.code if isinstance(exc, HttpProcessingError) else 400
            http_log.info(
                "http_bad_request", error=type(exc).__name__, status=status, remote=remote
            )
        elif isinstance(exc, _GONE):
            self.stats["http_client_gone"] += 1
            http_log.debug("http_client_gone", error=type(exc).__name__, remote=remote)
        elif exc is not None and level >= logging.ERROR:
            self.stats["http_errors"] += 1
            http_log.error("http_request_failed", remote=remote, exc_info=exc)
        else:
            error = type(exc).__name__ if exc is not None else None
            http_log.log(level, "http_server", detail=str(msg), error=error)


class AccessLog(AbstractAccessLogger):
    """``server.access_log``: one ``http_request`` event per request aiohttp answered.  No
    header, no query string, no ``;jsessionid=``-style path parameter."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        http_log.info(
            "http_request",
            method=request.method,
            path=request.path.partition(";")[0],
            status=response.status,
            size=response.body_length,
            ms=round(time * 1000, 1),
            remote=request.remote,
        )
