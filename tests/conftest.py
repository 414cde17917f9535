"""Shared fixtures: a real gateway on a loopback port, started exactly as ``gateway serve`` does
(the fast long-polling path in front of aiohttp), from a validated configuration."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway.app import create_app
from gateway.bayeux.engines.base import Engine
from gateway.bayeux.security import SecurityPolicy
from gateway.config import load_config
from gateway.server import RunningGateway, start

MakeGateway = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def make_gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MakeGateway]:
    """``await make_gateway(bayeux={"timeout_ms": 2000}, policy=..., with_engine=...)`` → a
    started gateway.

    ``with_engine``: an engine object instead of the one the configuration makes.  Other
    keyword arguments are configuration sections (as in the TOML file, ``engine={...}``
    included); the process environment is ignored so a developer's GATEWAY_* variables cannot
    change a test.  The result has ``app``, ``host``, ``port`` and ``make_url(path)``; it is
    closed at teardown.
    """
    started: list[RunningGateway] = []

    async def make(
        policy: SecurityPolicy | None = None,
        with_engine: Engine | None = None,
        **sections: Any,
    ) -> RunningGateway:
        # Bayeux suites handshake anonymously unless a test says otherwise; each gateway
        # gets its own data directory (SQLite store, users file).
        sections.setdefault("agents", {}).setdefault("allow_anonymous_bayeux", True)
        sections.setdefault("store", {}).setdefault(
            "data_dir", str(tmp_path_factory.mktemp("gateway-data"))
        )
        config = load_config(env={}, overrides=sections)
        running = await start(create_app(config, policy=policy, engine=with_engine), "127.0.0.1", 0)
        started.append(running)
        return running

    yield make
    for running in reversed(started):
        await running.close()
