"""Running the application until SIGINT/SIGTERM, with a bounded graceful drain."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import structlog
from aiohttp import web

from gateway.app import create_app
from gateway.config import Config
from gateway.logs import configure_logging

__all__ = ["run"]

log = structlog.get_logger("gateway.server")


async def run(config: Config) -> int:
    configure_logging(config.log.level, config.log.format)
    app = create_app(config)
    runner = web.AppRunner(
        app,
        access_log=_access_log(config),
        handle_signals=False,
        shutdown_timeout=config.server.shutdown_timeout_s,
    )
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        print(
            f"gateway: cannot listen on {config.server.host}:{config.server.port}: {exc.strerror}",
            file=sys.stderr,
        )
        await runner.cleanup()
        return 2
    port = _bound_port(runner) or config.server.port
    base = f"http://{config.server.host}:{port}"
    for mount in config.server.mounts:
        log.info("listening", url=base + mount, engine=config.engine.kind)
    print(
        f"gateway ready: connect a CometD client to {base}{config.server.mounts[0]}"
        f" (also {', '.join(base + m for m in config.server.mounts[1:])})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await runner.cleanup()
    return 0


def _access_log(config: Config) -> logging.Logger | None:
    if not config.server.access_log:
        return None
    logger = logging.getLogger("aiohttp.access")
    logger.setLevel(logging.INFO)
    return logger


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None
