"""The contact center inside the app: agents, interactions, their store and REST APIs.

:func:`install` builds the pure center from the configuration, opens the store, restores
what it holds (invitations go back to their queues), mounts ``/api/v2/me`` and
``/api/v2/interactions``, and runs the REST-session sweeper: a session idle past
``agents.session_idle_timeout_s`` ends as a logout does (:meth:`ApiContext.end_login`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web

from gateway.agents.sessions import Sessions
from gateway.agents.users import ReloadingDirectory, users_path
from gateway.api import mail as mail_api
from gateway.api import me, partners
from gateway.api.context import API, ApiContext
from gateway.config import Config
from gateway.hub import Hub
from gateway.interactions.center import Center, QueueInfo
from gateway.interactions.service import InteractionService
from gateway.interactions.store import SqliteStore
from gateway.mail import runtime as mail_runtime

__all__ = ["install", "new_interaction_id"]

log = structlog.get_logger("gateway.contact")

_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SWEEP_INTERVAL_S = 1.0


def new_interaction_id() -> str:
    """Ids shaped like Genesys ones (``0000Ja8V814907JM``): 16 characters, 12 of them random."""
    n = int.from_bytes(secrets.token_bytes(8))  # one random read, 64 bits for 12 base-36 digits
    digits = []
    for _ in range(12):
        n, d = divmod(n, 36)
        digits.append(_ID_ALPHABET[d])
    return "0000" + "".join(digits)


def _wall_ms() -> int:
    return int(time.time() * 1000)


def install(app: web.Application, config: Config, hub: Hub, sessions: Sessions) -> ApiContext:
    queues = [
        QueueInfo(
            name=q.name,
            channel=q.channel,
            in_queues=tuple(q.in_queues),
            out_queues=tuple(q.out_queues),
        )
        for q in config.interactions.queues
    ]
    center = Center(
        queues,
        invite_timeout_ms=int(config.interactions.invite_timeout_s * 1000),
        new_id=new_interaction_id,
    )
    store = SqliteStore(Path(config.store.data_dir) / "interactions.sqlite3")
    service = InteractionService(center, store, hub, clock_ms=_wall_ms)
    ctx = ApiContext(
        service=service,
        sessions=sessions,
        directory=ReloadingDirectory(users_path(config)),
        agents=config.agents,
        partners=config.partners,
        clock_ms=_wall_ms,
    )
    app[API] = ctx
    me.add_routes(app)
    partners.add_routes(app)
    mail_api.add_routes(app)
    app.cleanup_ctx.append(_lifecycle)
    mail_runtime.install(app, config, service)  # after: it shares the store _lifecycle opens
    return ctx


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    ctx = app[API]
    if not ctx.directory.users:
        log.warning("no_agents", hint="add one with: gateway users add NAME")
    await ctx.service.start()
    sweeper = asyncio.create_task(_sweep(ctx))
    yield
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper
    await ctx.service.stop()


async def _sweep(ctx: ApiContext) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            await end_idle_sessions(ctx)
        except Exception:
            log.exception("session_sweep_failed")


async def end_idle_sessions(ctx: ApiContext) -> None:
    for session in ctx.sessions.expire(ctx.clock_ms(), ctx.service.has_bayeux_session):
        log.info("rest_session_expired", agent=session.username)
        await ctx.end_login(session)
