"""The mail side inside the app: listeners, the outbox, the demo servers, their lifecycle.

:func:`install` registers a lifecycle that runs after the contact center's (whose store it
shares): it opens the mail tables, gives the interaction service its outbox, starts the
outbox sender and one listener per ``[[mail.sources]]``, and stops them on shutdown.  With
``mail.demo`` it first starts the embedded demo servers and adds their source and sender.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
import structlog
from aiohttp import web

from gateway.config import Config, MailConfig, MailSender, MailSource
from gateway.interactions.service import InteractionService
from gateway.interactions.store import SqliteStore
from gateway.mail.imap import Listener
from gateway.mail.intake import Intake
from gateway.mail.oauth import TokenSource
from gateway.mail.smtp import Outbox, secret
from gateway.mail.store import MailStore

__all__ = ["MAIL", "MailRuntime", "install"]

log = structlog.get_logger("gateway.mail")


@dataclass(slots=True)
class MailRuntime:
    config: MailConfig
    service: InteractionService
    store: MailStore | None = None
    outbox: Outbox | None = None
    intake: Intake | None = None
    listeners: dict[str, Listener] = field(default_factory=dict)
    demo: object | None = None  # the embedded demo servers, when mail.demo is on
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def status(self) -> dict[str, object]:
        """What ``GET /api/v2/mail`` shows operators."""
        assert self.store is not None and self.intake is not None
        return {
            "sources": [
                {
                    "name": name,
                    "connected": listener.ready.is_set(),
                    "connects": listener.connects,
                    "lastError": listener.last_error,
                }
                for name, listener in self.listeners.items()
            ],
            "received": self.store.counts(),
            "duplicates": self.intake.duplicates,
            "outbox": self.store.outbox_counts(),
            "failed": [
                {"id": id_, "interactionId": interaction_id, "error": error}
                for id_, interaction_id, error in self.store.failures()
            ],
        }


MAIL = web.AppKey("mail", MailRuntime)


def install(app: web.Application, config: Config, service: InteractionService) -> MailRuntime:
    runtime = MailRuntime(config.mail, service)
    app[MAIL] = runtime
    app.cleanup_ctx.append(_lifecycle)
    return runtime


def _tokens(config: MailConfig) -> dict[str, TokenSource]:
    tokens: dict[str, TokenSource] = {}
    servers: list[tuple[str, MailSource | MailSender]] = [
        *(("source:" + s.name, s) for s in config.sources),
        *(("sender:" + s.name, s) for s in config.senders),
    ]
    for key, server in servers:
        if server.oauth_token_url or server.oauth_token_command:
            tokens[key] = TokenSource(
                url=server.oauth_token_url,
                command=server.oauth_token_command,
                timeout_s=config.timeout_s,
            )
    return tokens


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    runtime = app[MAIL]
    service = runtime.service
    assert isinstance(service.store, SqliteStore)
    async with contextlib.AsyncExitStack() as stack:
        if runtime.config.demo:
            from gateway.mail.demo import DemoMail  # imports pymap only when asked for

            demo = await stack.enter_async_context(DemoMail(runtime.config))
            runtime.demo = demo
            runtime.config = msgspec.structs.replace(
                runtime.config,
                sources=[*runtime.config.sources, demo.source],
                senders=[*runtime.config.senders, demo.sender],
            )
        _start(runtime, service, service.store)
        try:
            yield
        finally:
            await _stop(runtime)


def _start(runtime: MailRuntime, service: InteractionService, sqlite: SqliteStore) -> None:
    config = runtime.config
    store = MailStore(sqlite.db)
    tokens = _tokens(config)
    outbox = Outbox(config, store, service, tokens=tokens)
    service.outbox = outbox
    intake = Intake(service, store, new_id=service.center.new_id, ack=outbox.acknowledge)
    runtime.store, runtime.outbox, runtime.intake = store, outbox, intake
    runtime.tasks.append(asyncio.create_task(outbox.run(), name="mail-outbox"))
    for source in config.sources:
        listener = Listener(
            source,
            config,
            intake,
            store,
            tokens=tokens.get("source:" + source.name),
            password=secret(source),
        )
        runtime.listeners[source.name] = listener
        runtime.tasks.append(asyncio.create_task(listener.run(), name=f"mail-{source.name}"))
    log.info("mail_started", sources=len(config.sources), senders=len(config.senders))


async def _stop(runtime: MailRuntime) -> None:
    for task in runtime.tasks:
        task.cancel()
    if runtime.tasks:
        _, pending = await asyncio.wait(runtime.tasks, timeout=runtime.config.timeout_s + 5)
        for task in pending:
            log.error("mail_task_did_not_stop", task=task.get_name())
    runtime.tasks.clear()
    if runtime.service.outbox is runtime.outbox:
        runtime.service.outbox = None
