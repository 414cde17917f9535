"""Shared fixtures: a real gateway on a loopback port, built from a validated configuration."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.config import load_config
from gateway.security import SecurityPolicy

MakeGateway = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def make_gateway(aiohttp_server: Any) -> MakeGateway:
    """``await make_gateway(bayeux={"timeout_ms": 2000}, policy=...)`` → a started TestServer.

    Keyword arguments are configuration sections (as in the TOML file); the process
    environment is ignored so a developer's GATEWAY_* variables cannot change a test.
    """

    async def make(policy: SecurityPolicy | None = None, **sections: Any) -> TestServer:
        config = load_config(env={}, overrides=sections)
        server: TestServer = await aiohttp_server(
            create_app(config, policy=policy), host="127.0.0.1"
        )
        return server

    return make
