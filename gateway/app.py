"""The aiohttp application: routes, CORS, lifecycle.

``create_app(config)`` builds everything from one validated configuration.  Bayeux is served at
each configured mount (by default ``/cometd`` and ``/api/v2/notifications``): POST for
long-polling on the mount and on any one suffix (``/cometd/handshake``, ``/cometd/connect``,
``/cometd/``), GET for websocket upgrades and JSONP.  Background work (the session sweeper)
lives in ``cleanup_ctx``; on shutdown held connects are released and websockets closed with
GOING_AWAY.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp_cors
import structlog
from aiohttp import WSCloseCode, web

from gateway import contact
from gateway.agents.policy import AgentPolicy
from gateway.agents.sessions import Sessions
from gateway.config import Config
from gateway.engines.base import Engine, OverflowPolicy, QueueLimits
from gateway.engines.memory import MemoryEngine
from gateway.hub import Hub
from gateway.logs import AccessLog, EdgeLog
from gateway.security import SecurityPolicy
from gateway.transports.common import TransportOptions
from gateway.transports.http import handle_jsonp, handle_post, handle_preflight
from gateway.transports.websocket import OpenSocket, handle_websocket
from protocol import Settings

__all__ = ["CONFIG", "HUB", "OPTIONS", "SOCKETS", "create_app", "make_engine", "settings_from"]

log = structlog.get_logger("gateway.app")

HUB = web.AppKey("hub", Hub)
CONFIG = web.AppKey("config", Config)
OPTIONS = web.AppKey("transport_options", TransportOptions)
#: The open websockets (their flow-controlled senders).
SOCKETS: web.AppKey[set[OpenSocket]] = web.AppKey("sockets")

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


def make_engine(config: Config) -> Engine:
    limits = QueueLimits(
        max_messages=config.queue.max_messages,
        overflow=OverflowPolicy(config.queue.overflow),
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
    contact.install(app, config, hub, sessions)
    for route in list(app.router.routes()):
        if route not in bayeux_routes and route.method in ("GET", "POST", "DELETE"):
            cors.add(route)  # the REST APIs, for desktops served from another origin
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_release_clients)
    return app


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
        except Exception:
            log.exception("sweep_failed")
