"""The examples in examples/ run against a real gateway, as a newcomer would run them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.app import HUB
from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_is_valid_and_matches_the_defaults() -> None:
    assert load_config(ROOT / "examples" / "gateway.toml", env={}) == load_config(env={})


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
async def test_subscribe_example_prints_published_messages(
    make_gateway: Any, transport: str
) -> None:
    server = await make_gateway()
    url = f"http://localhost:{server.port}/cometd"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "ignore",
        str(ROOT / "examples" / "subscribe.py"),
        url,
        "/chat/demo",
        "--count",
        "2",
        "--transport",
        transport,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert json.loads(first) == {"subscribed": "/chat/demo"}
        hub = server.app[HUB]
        await hub.publish("/chat/demo", {"text": "hello"})
        await hub.publish("/chat/demo", {"text": "again"})
        lines = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 20)) for _ in range(2)]
        assert lines == [{"text": "hello"}, {"text": "again"}]
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
