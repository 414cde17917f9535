"""``/livez``, ``/readyz`` and ``/healthz``: what orchestrators and balancers probe.

* ``/livez``: 200 ``{"status":"ok"}`` while the process serves HTTP.  It checks nothing else:
  an engine that is down is no reason to restart the process.
* ``/readyz``: 200 ``{"status":"ok"}`` when the engine answers a ping (within
  :data:`gateway.metrics.ENGINE_PING_TIMEOUT_S`) and the interactions store a query; otherwise
  503 ``{"status":"unavailable","detail":"engine: TimeoutError"}``.  From the moment the
  shutdown begins (the first ``on_shutdown`` hook), 503 ``{"status":"draining"}``, also to a
  probe that was under way then, so a balancer sends nothing more.
* ``/healthz``: the same as ``/readyz``, for balancers configured with the older name
  (deprecated).

Each is cheap (one engine round trip and a ``SELECT 1`` at most), needs no login, and is served
by aiohttp on both HTTP paths: the edge hands every request that is not a Bayeux POST or
websocket upgrade to aiohttp.  The detail names the dependency and the exception's type, never
its text (it may name hosts, or quote a URL); the text is logged when readiness changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from aiohttp import web

__all__ = ["Health"]

log = structlog.get_logger("gateway.health")

Check = Callable[[], Awaitable[Any]]

_NO_STORE = {"Cache-Control": "no-store"}


def _answer(status: int, body: dict[str, str]) -> web.Response:
    return web.Response(
        status=status,
        body=msgspec.json.encode(body),
        content_type="application/json",
        headers=_NO_STORE,
    )


class Health:
    """Readiness checks and the draining flag; the three handlers."""

    def __init__(self, *, engine: Check, store: Check) -> None:
        self.checks: tuple[tuple[str, Check], ...] = (("engine", engine), ("store", store))
        self.draining = False
        self._ready: bool | None = None  # the last answer, to log changes only

    async def begin_draining(self, app: web.Application) -> None:
        """``on_shutdown``, first: readiness answers ``draining`` from now on."""
        self.draining = True
        log.info("draining")

    async def problems(self) -> list[str]:
        """What keeps the gateway from being ready (``"engine: TimeoutError"``); none: ready."""
        found: list[str] = []
        errors: list[str] = []
        for name, check in self.checks:
            try:
                await check()
            except Exception as exc:
                found.append(f"{name}: {type(exc).__name__}")
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
        ready = not found
        if ready != self._ready:
            if ready:
                log.info("ready")
            else:
                log.warning("not_ready", errors=errors)
            self._ready = ready
        return found

    async def livez(self, request: web.Request) -> web.Response:
        return _answer(200, {"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.draining:
            return _answer(503, {"status": "draining"})
        problems = await self.problems()
        if self.draining:  # the shutdown began while the checks ran
            return _answer(503, {"status": "draining"})
        if problems:
            return _answer(503, {"status": "unavailable", "detail": "; ".join(problems)})
        return _answer(200, {"status": "ok"})
