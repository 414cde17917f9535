"""A gateway with agents, a partner and its own data directory, as a deployment would have."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from contact.desktop import Desktop, Partner, write_users

if TYPE_CHECKING:
    from conftest import MakeGateway
from gateway.server import RunningGateway


@dataclass
class Center:
    gateway: RunningGateway
    base: str
    token: str
    data_dir: Path
    desktops: list[Desktop]
    partner: Partner

    async def desktop(
        self, name: str, *channels: str, transport: str = "long-polling", bayeux: bool = True
    ) -> Desktop:
        """A logged-in agent, Ready on ``channels``, subscribed to /v2/me/interactions."""
        d = Desktop(self.base, name, transport)
        self.desktops.append(d)
        status, body = await d.login()
        assert status == 200, body
        if bayeux:
            reply = await d.connect_bayeux()
            assert reply["successful"] is True, reply
        if channels:
            await d.start(*channels)
        return d


MakeCenter = Callable[..., Awaitable[Center]]


@pytest.fixture
async def make_center(make_gateway: MakeGateway, tmp_path: Path) -> AsyncIterator[MakeCenter]:
    made: list[Center] = []

    async def make(
        names: tuple[str, ...] = ("agent1", "agent2"),
        capacity: dict[str, int] | None = None,
        **sections: Any,
    ) -> Center:
        data_dir = tmp_path / f"data{len(made)}"
        data_dir.mkdir()
        _, token = write_users(data_dir, list(names), **(capacity or {}))
        sections.setdefault("agents", {}).setdefault("allow_anonymous_bayeux", False)
        sections.setdefault("store", {})["data_dir"] = str(data_dir)
        gateway = await make_gateway(**sections)
        base = f"http://127.0.0.1:{gateway.port}"
        center = Center(gateway, base, token, data_dir, [], Partner(base, token))
        made.append(center)
        return center

    yield make
    for center in made:
        for d in center.desktops:
            await d.close()
        await center.partner.close()
