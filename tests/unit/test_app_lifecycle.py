"""The app is assembled in one order: the engine starts before the contact center and mail that
publish through it, and closes after them."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.bayeux.engines.memory import MemoryEngine
from gateway.config import load_config
from gateway.interactions.service import InteractionService
from gateway.server import start


class RecordingEngine(MemoryEngine):
    def __init__(self, order: list[str]) -> None:
        super().__init__()
        self.order = order

    async def start(self) -> None:
        self.order.append("engine started")
        await super().start()

    async def close(self) -> None:
        self.order.append("engine closed")
        await super().close()


async def test_the_engine_starts_first_and_closes_last(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    real_start, real_stop = InteractionService.start, InteractionService.stop

    async def started(self: InteractionService) -> None:
        order.append("contact center started")
        await real_start(self)

    async def stopped(self: InteractionService) -> None:
        order.append("contact center stopped")
        await real_stop(self)

    monkeypatch.setattr(InteractionService, "start", started)
    monkeypatch.setattr(InteractionService, "stop", stopped)
    config = load_config(
        None,
        env={
            "GATEWAY_STORE__DATA_DIR": str(tmp_path),
            "GATEWAY_SERVER__HOST": "127.0.0.1",
            "GATEWAY_SERVER__PORT": "0",
        },
    )
    app = create_app(config, engine=RecordingEngine(order))
    running = await start(app, "127.0.0.1", 0)
    await running.close()
    assert order == [
        "engine started",
        "contact center started",
        "contact center stopped",
        "engine closed",
    ]
