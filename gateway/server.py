"""Listening and running: one socket, the fast long-polling path in front of aiohttp.

:func:`start` is used by ``gateway serve`` and by the tests alike, so tests exercise exactly the
production stack.  :func:`run` adds signal handling and a bounded graceful drain.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from aiohttp import web
from yarl import URL

from gateway.agents.demo import Demo, prepare_demo
from gateway.app import CONFIG, HUB, OPTIONS, SOCKETS, create_app
from gateway.bayeux.engines.base import EngineUnavailable
from gateway.bayeux.transports.edge import FastPath
from gateway.config import Config, MailConfig
from gateway.gcpolicy import GcPolicy
from gateway.logs import configure_logging

__all__ = ["RunningGateway", "run", "start"]

log = structlog.get_logger("gateway.server")


class RunningGateway:
    """A started gateway: ``app``, ``host``, ``port``, ``make_url(path)``, ``close()``."""

    def __init__(
        self,
        app: web.Application,
        runner: web.AppRunner,
        server: asyncio.Server,
        fast: FastPath,
        host: str,
    ) -> None:
        self.app = app
        self.runner = runner
        self.server = server
        self.fast = fast
        self.host = host
        self.port: int = server.sockets[0].getsockname()[1]

    def make_url(self, path: str) -> URL:
        return URL.build(scheme="http", host=self.host, port=self.port, path=path)

    async def close(self) -> None:
        """Stop listening, answer held connects, close connections, then clean up."""
        self.server.close()
        self.fast.closing = True
        await self.runner.cleanup()


async def start(app: web.Application, host: str, port: int) -> RunningGateway:
    config = app[CONFIG]
    runner = web.AppRunner(
        app,
        access_log=_access_log(config),
        handle_signals=False,
        shutdown_timeout=config.server.shutdown_timeout_s,
    )
    # Every connection starts on llhttp (the edge's limits hold on both paths); with
    # fast_http off it hands every request to aiohttp.
    fast = FastPath(
        hub=app[HUB],
        options=app[OPTIONS],
        mounts=config.server.mounts if config.server.fast_http else (),
        fallback=lambda: _aiohttp_protocol(runner),
        request_timeout_s=config.server.request_timeout_s,
        max_connections_per_address=config.server.max_connections_per_address,
        access_log=config.server.access_log,
        sockets=app[SOCKETS],
    )
    # After the hub has answered held connects (registered by create_app).
    app.on_shutdown.append(_fast_drain(fast, config.server.shutdown_timeout_s))
    await runner.setup()
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(
            fast.protocol, host, port, reuse_address=True, backlog=1024
        )
    except OSError:
        await runner.cleanup()
        raise
    return RunningGateway(app, runner, server, fast, host)


async def run(config: Config) -> int:
    configure_logging(config.log.level, config.log.format)
    demo = prepare_demo(config) if config.agents.demo else None
    app = create_app(config)
    try:
        running = await start(app, config.server.host, config.server.port)
    except EngineUnavailable as exc:  # a wrong or unreachable Redis: one line, like a bad option
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # ours, or one with its own message (the demo mail servers' ports)
        where = f"{config.server.host}:{config.server.port}"
        print(
            f"gateway: cannot listen on {where}: {exc.strerror}"
            if exc.strerror
            else f"gateway: {exc}",
            file=sys.stderr,
        )
        return 2
    # Before "ready" is printed: a SIGTERM from then on is a graceful stop.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    base = f"http://{config.server.host}:{running.port}"
    for mount in config.server.mounts:
        log.info("listening", url=base + mount, engine=config.engine.kind)
    others = ", ".join(base + m for m in config.server.mounts[1:])
    print(
        f"gateway ready: connect a CometD client to {base}{config.server.mounts[0]}"
        + (f" (also {others})" if others else ""),
        flush=True,
    )
    if demo is not None:
        _print_demo(demo, base)
    if config.mail.demo:
        _print_demo_mail(app)
    gc_policy = GcPolicy(config.server.gc_freeze_interval_s, config.server.gc_full_interval_s)
    gc_task = asyncio.create_task(gc_policy.run())
    await stop.wait()
    log.info("stopping")
    gc_task.cancel()
    await running.close()
    return 0


def _print_demo(demo: Demo, base: str) -> None:
    password = demo.password or "(the password you set)"
    print(
        "demo agent:   "
        f"{demo.agent} / {password}  (log in: curl -u {demo.agent}:{password} {base}/api/v2/me)\n"
        f"demo partner: Authorization: Bearer {demo.partner_token}\n"
        f"              (the same at every start, kept in {demo.token_file}; "
        "create an email: README, 'Try it')",
        flush=True,
    )


def _print_demo_mail(app: web.Application) -> None:
    from gateway.mail.demo import CUSTOMER_ADDRESS, SUPPORT_ADDRESS, DemoMail  # imports pymap
    from gateway.mail.runtime import MAIL

    runtime = app.get(MAIL)
    mail = runtime.demo if runtime is not None else None
    if not isinstance(mail, DemoMail):
        return
    defaults = MailConfig()
    smtp = f" --smtp-port {mail.smtp_port}" if mail.smtp_port != defaults.demo_smtp_port else ""
    imap = f" --imap-port {mail.imap_port}" if mail.imap_port != defaults.demo_imap_port else ""
    gateway = gateway_command()
    print(
        f"demo mail:    {SUPPORT_ADDRESS} feeds the email queue "
        f"(IMAP 127.0.0.1:{mail.imap_port}, login support / support)\n"
        f"              SMTP 127.0.0.1:{mail.smtp_port} takes mail for it and for "
        f"{CUSTOMER_ADDRESS} (IMAP login customer / customer)\n"
        f"              a customer writes:  {gateway} demo send-mail{smtp} [--subject S --text T]\n"
        f"              replies arrive:     {gateway} demo inbox{imap}",
        flush=True,
    )


def gateway_command() -> str:
    """The ``gateway`` command as the user can type it where they started this one: the script
    as it was run (``.venv/bin/gateway`` under ``make run``, which is not on PATH), or this
    interpreter with ``-m gateway``."""
    script = Path(sys.argv[0])
    if script.name == "gateway" and script.is_file():
        return shlex.quote(sys.argv[0])
    return f"{shlex.quote(sys.executable)} -m gateway"


def _aiohttp_protocol(runner: web.AppRunner) -> asyncio.Protocol:
    assert runner.server is not None
    return runner.server()


def _fast_drain(fast: FastPath, timeout_s: float) -> Callable[[web.Application], Awaitable[None]]:
    async def drain(app: web.Application) -> None:
        await fast.shutdown(timeout_s)

    return drain


def _access_log(config: Config) -> logging.Logger | None:
    if not config.server.access_log:
        return None
    logger = logging.getLogger("aiohttp.access")
    logger.setLevel(logging.INFO)
    return logger
