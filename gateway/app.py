"""The aiohttp application, assembled in one place: the Bayeux server and the contact center.

``create_app(config)`` builds everything from one validated configuration.  Bayeux is served at
each configured mount (by default ``/cometd`` and ``/api/v2/notifications``): POST for
long-polling on the mount and on any one suffix (``/cometd/handshake``, ``/cometd/connect``,
``/cometd/``), GET for websocket upgrades and JSONP.  The contact center (agents,
interactions, their store, the REST APIs and mail) is built on the hub's server-side API.

Lifecycles (``cleanup_ctx``) start in this order and stop in the reverse one: the engine and
its session sweeper, the contact center (store, restored interactions, the REST-session
sweeper), mail.  So the contact center never runs on an engine that is not started or
already closed.  On shutdown, first ``/readyz`` turns to ``draining``, then held connects are
released and websockets closed with GOING_AWAY.

The fleet endpoints (:mod:`gateway.health`, :mod:`gateway.metrics`): ``/livez``, ``/readyz``,
``/healthz`` and, with ``server.metrics``, ``/metrics``; without CORS and without a login.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_cors
import structlog
from aiohttp import WSCloseCode, web

from gateway.agents.policy import AgentPolicy
from gateway.agents.sessions import Sessions
from gateway.agents.users import ReloadingDirectory, users_path
from gateway.api import mail as mail_api
from gateway.api import me, partners
from gateway.api.context import API, ApiContext
from gateway.bayeux.engines.base import Engine, EngineUnavailable, OverflowPolicy, QueueLimits
from gateway.bayeux.engines.memory import MemoryEngine
from gateway.bayeux.engines.redis import RedisEngine
from gateway.bayeux.hub import Hub
from gateway.bayeux.security import SecurityPolicy
from gateway.bayeux.transports.common import TransportOptions
from gateway.bayeux.transports.http import handle_jsonp, handle_post, handle_preflight
from gateway.bayeux.transports.websocket import OpenSocket, handle_websocket
from gateway.config import Config
from gateway.health import Health
from gateway.interactions.center import Center, QueueInfo
from gateway.interactions.service import InteractionService
from gateway.interactions.store import SqliteStore
from gateway.logs import AccessLog, EdgeLog
from gateway.mail import runtime as mail_runtime
from gateway.metrics import Metrics
from protocol import Settings

__all__ = [
    "CONFIG",
    "HUB",
    "NODE_ID",
    "OPTIONS",
    "SOCKETS",
    "create_app",
    "default_node_id",
    "make_engine",
    "new_interaction_id",
    "settings_from",
]

log = structlog.get_logger("gateway.app")

HUB = web.AppKey("hub", Hub)
CONFIG = web.AppKey("config", Config)
OPTIONS = web.AppKey("transport_options", TransportOptions)
#: The open websockets (their flow-controlled senders).
SOCKETS: web.AppKey[set[OpenSocket]] = web.AppKey("sockets")
#: This node's name in ``/metrics`` (the ``node`` label); set it before the app starts.
NODE_ID = web.AppKey("node_id", str)

SWEEP_INTERVAL_S = 1.0


def settings_from(config: Config) -> Settings:
    b = config.bayeux
    return Settings(
        timeout_ms=b.timeout_ms,
        interval_ms=b.interval_ms,
        max_interval_ms=b.max_interval_ms,
        max_client_timeout_ms=b.max_client_timeout_ms,
        connection_types=tuple(b.connection_types),
        trust_client_session=b.trust_client_session,
        max_sessions_per_browser=b.max_sessions_per_browser,
        multi_session_interval_ms=b.multi_session_interval_ms,
        ack_extension=b.ack_extension,
        validate_ids=b.validate_ids,
    )


def default_node_id() -> str:
    """``host-pid``: unique among the processes of one fleet."""
    return f"{socket.gethostname()}-{os.getpid()}"


def make_engine(config: Config) -> Engine:
    limits = QueueLimits(
        max_messages=config.queue.max_messages,
        overflow=OverflowPolicy(config.queue.overflow),
    )
    engine = config.engine
    if engine.kind == "redis":
        return RedisEngine(
            engine.redis_url,
            node_id=engine.node_id or None,
            limits=limits,
            prefix=engine.key_prefix,
            # a node that dies mid-hold: its sessions expire this long after, like any other
            hold_lease_ms=config.bayeux.max_client_timeout_ms + config.bayeux.max_interval_ms,
        )
    return MemoryEngine(limits)


def create_app(
    config: Config,
    *,
    policy: SecurityPolicy | None = None,
    engine: Engine | None = None,
) -> web.Application:
    sessions = Sessions(int(config.agents.session_idle_timeout_s * 1000))
    if policy is None:
        policy = AgentPolicy(
            sessions,
            config.agents.session_cookie,
            allow_anonymous=config.agents.allow_anonymous_bayeux,
        )
    hub = Hub(
        settings=settings_from(config),
        engine=engine or make_engine(config),
        policy=policy,
        deliver_only_on_connect=config.bayeux.deliver_only_on_connect,
        duplicate_connect_status=config.bayeux.duplicate_connect_status,
        batch_window_ms=config.bayeux.batch_window_ms,
        max_flushes_per_s=config.bayeux.max_flushes_per_s,
        max_batch_window_ms=config.bayeux.max_batch_window_ms,
        max_unacked=config.queue.max_messages,
    )
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        # aiohttp's error and access records without the request's bytes (gateway.logs)
        handler_args={"logger": EdgeLog(hub.stats), "access_log_class": AccessLog},
    )
    app[HUB] = hub
    app[CONFIG] = config
    app[SOCKETS] = set()
    app[NODE_ID] = default_node_id()
    options = TransportOptions(
        max_body_bytes=config.server.max_body_bytes,
        max_batch=config.server.max_batch,
        cookie=config.cookie,
        allow_origins=frozenset(config.cors.allow_origins),
        allow_headers=tuple(config.cors.allow_headers),
        preflight_max_age_s=config.cors.max_age_s,
        ws_high_water_bytes=config.queue.ws_high_water_bytes,
    )
    app[OPTIONS] = options

    async def post(request: web.Request) -> web.StreamResponse:
        return await handle_post(request, hub, options)

    async def get(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await handle_websocket(request, hub, options, app[SOCKETS])
        return await handle_jsonp(request, hub, options)

    async def preflight(request: web.Request) -> web.StreamResponse:
        return await handle_preflight(request, options)

    # Bayeux answers carry the fast path's headers (transports.common.answer_headers), on both
    # HTTP paths, so aiohttp_cors stays off these routes.
    for mount in config.server.mounts:
        for path in (mount, mount + "/", mount + "/{suffix:[^/]+}"):
            resource = app.router.add_resource(path)
            resource.add_route("POST", post)
            resource.add_route("GET", get)
            resource.add_route("OPTIONS", preflight)
    bayeux_routes = set(app.router.routes())
    cors = aiohttp_cors.setup(app, defaults=_cors_defaults(config))
    app.cleanup_ctx.append(_lifecycle)  # first in, last out: the engine outlives its users
    contact = _install_contact_center(app, config, hub, sessions)
    for route in list(app.router.routes()):
        if route not in bayeux_routes and route.method in ("GET", "POST", "DELETE"):
            cors.add(route)  # the REST APIs, for desktops served from another origin
    health = _install_fleet_endpoints(app, config, hub, contact.service)
    app.on_shutdown.append(health.begin_draining)  # first: balancers stop sending
    app.on_shutdown.append(_release_clients)
    return app


def _install_fleet_endpoints(
    app: web.Application, config: Config, hub: Hub, service: InteractionService
) -> Health:
    """``/livez``, ``/readyz``, ``/healthz`` (its deprecated name) and, with
    ``server.metrics``, ``/metrics``."""
    metrics = Metrics(hub, app[SOCKETS], lambda: app[NODE_ID])
    health = Health(engine=metrics.ping_engine, store=service.ping)
    app.router.add_get("/livez", health.livez)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/healthz", health.readyz)
    if config.server.metrics:
        app.router.add_get("/metrics", metrics.handle)
    return health


def _cors_defaults(config: Config) -> dict[str, aiohttp_cors.ResourceOptions]:
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=True,
        expose_headers="*",
        allow_headers=tuple(config.cors.allow_headers),
        allow_methods=["POST", "GET", "DELETE", "OPTIONS"],
        max_age=config.cors.max_age_s,
    )
    return {origin: options for origin in config.cors.allow_origins}


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB]
    await hub.engine.start()
    sweeper = asyncio.create_task(_sweep(hub))
    yield
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper
    await hub.engine.close()


async def _release_clients(app: web.Application) -> None:
    """Shutdown, before aiohttp waits for handlers: answer held connects, close websockets."""
    await app[HUB].close()
    # Together, and each bounded: a client that reads nothing cannot hold up the shutdown.
    sockets = app[SOCKETS]
    await asyncio.gather(
        *(peer.close(WSCloseCode.GOING_AWAY, b"server shutdown") for peer in list(sockets))
    )


async def _sweep(hub: Hub) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            await hub.sweep()
        except EngineUnavailable:
            pass  # an outage: the engine logs it when it starts and when it ends
        except Exception:
            log.exception("sweep_failed")


# -- the contact center ----------------------------------------------------------------------

contact_log = structlog.get_logger("gateway.contact")

_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


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


def _install_contact_center(
    app: web.Application, config: Config, hub: Hub, sessions: Sessions
) -> ApiContext:
    """Agents, interactions, their store and REST APIs; mail after them (it shares the store).

    The REST-session sweeper ends a session idle past ``agents.session_idle_timeout_s`` as a
    logout does (:meth:`ApiContext.end_login`)."""
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
    app.cleanup_ctx.append(_contact_lifecycle)
    mail_runtime.install(app, config, service)  # after: it shares the store _lifecycle opens
    return ctx


async def _contact_lifecycle(app: web.Application) -> AsyncIterator[None]:
    ctx = app[API]
    if not ctx.directory.users:
        contact_log.warning("no_agents", hint="add one with: gateway users add NAME")
    await ctx.service.start()
    sweeper = asyncio.create_task(_sweep_logins(ctx))
    yield
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper
    await ctx.service.stop()


async def _sweep_logins(ctx: ApiContext) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            await end_idle_sessions(ctx)
        except Exception:
            contact_log.exception("session_sweep_failed")


async def end_idle_sessions(ctx: ApiContext) -> None:
    for session in ctx.sessions.expire(ctx.clock_ms(), ctx.service.has_bayeux_session):
        contact_log.info("rest_session_expired", agent=session.username)
        await ctx.end_login(session)
