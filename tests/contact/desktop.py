"""An agent desktop and a partner as tests drive them: real HTTP, real CometD sessions."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from argon2 import PasswordHasher
from conformance.client import BayeuxClient, LongPollingClient, WebSocketClient, is_event

from gateway.agents.users import Directory

Msg = dict[str, Any]

CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "s3cret-pass"


def write_users(data_dir: Path, agents: list[str], **capacity: int) -> tuple[Directory, str]:
    """A users file with ``agents`` (password :data:`PASSWORD`) and a partner; its token."""
    directory = Directory()
    for name in agents:
        directory.add_user(
            name,
            PASSWORD,
            first_name=name.title(),
            capacity=dict(capacity) or None,
            hasher=CHEAP,
        )
    token = directory.add_partner("crm")
    directory.save(data_dir / "users.json")
    return directory, token


class Desktop:
    """One agent: REST with cookie + CSRF, and a CometD session over ``transport``."""

    def __init__(self, base: str, username: str, transport: str = "long-polling") -> None:
        self.base = base
        self.username = username
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""
        self.transport = transport
        self.bayeux: BayeuxClient | None = None
        self.messages: list[Msg] = []

    async def login(self, password: str = PASSWORD) -> tuple[int, Msg]:
        auth = base64.b64encode(f"{self.username}:{password}".encode()).decode()
        async with self.http.get(
            self.base + "/api/v2/me", headers={"Authorization": f"Basic {auth}"}
        ) as r:
            self.csrf = r.headers.get("X-CSRF-TOKEN", "")
            return r.status, await r.json()

    async def get(self, path: str) -> tuple[int, Msg]:
        async with self.http.get(self.base + path) as r:
            return r.status, await r.json()

    async def post(self, path: str, body: Any, *, csrf: bool = True) -> tuple[int, Msg]:
        headers = {"X-CSRF-TOKEN": self.csrf} if csrf else {}
        async with self.http.post(self.base + path, json=body, headers=headers) as r:
            return r.status, await r.json()

    async def start(self, *channels: str) -> None:
        status, body = await self.post(
            "/api/v2/me",
            {"operationName": "StartContactCenterSession", "channels": list(channels)},
        )
        assert status == 200 and body["statusCode"] == 0, body
        for channel in channels:
            await self.ready(channel)

    async def ready(self, channel: str, ready: bool = True) -> Msg:
        status, body = await self.post(
            f"/api/v2/me/channels/{channel}", {"operationName": "Ready" if ready else "NotReady"}
        )
        assert status == 200, body
        return body

    async def operate(self, interaction_id: str, operation: str, **params: Any) -> tuple[int, Msg]:
        return await self.post(
            f"/api/v2/me/interactions/{interaction_id}", {"operationName": operation, **params}
        )

    async def connect_bayeux(self, *subscriptions: str) -> Msg:
        mount = self.base + "/api/v2/notifications"
        if self.transport == "websocket":
            ws = WebSocketClient(mount, http=self.http)
            await ws.open()
            self.bayeux = ws
        else:
            client = LongPollingClient(mount)
            await client.http.close()
            client.http = self.http  # the REST session cookie goes with the handshake
            self.bayeux = client
        reply = await self.bayeux.handshake()
        if reply.get("successful"):
            await self.bayeux.connect()
            for channel in subscriptions or ("/v2/me/interactions", "/v2/me/channels"):
                sub = await self.bayeux.subscribe(channel)
                assert sub["successful"] is True, sub
            if isinstance(self.bayeux, WebSocketClient):  # a held connect: events are pushed
                await self.bayeux.send_frame([self.bayeux.connect_message()])
        return reply

    async def next_message(
        self,
        where: Callable[[Msg], bool] = lambda m: True,
        *,
        channel: str = "/v2/me/interactions",
        within: float = 10.0,
    ) -> Msg:
        """The next data message on ``channel`` matching ``where`` (others are kept)."""
        assert self.bayeux is not None
        deadline = asyncio.get_running_loop().time() + within
        while True:
            for i, message in enumerate(self.messages):
                if message["channel"] == channel and where(message["data"]):
                    return self.messages.pop(i)["data"]  # type: ignore[no-any-return]
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no matching message on {channel} within {within} s")
            self.messages.extend(await self._poll(left))

    async def _poll(self, within: float) -> list[Msg]:
        assert self.bayeux is not None
        if isinstance(self.bayeux, WebSocketClient):
            ws = self.bayeux
            with contextlib.suppress(TimeoutError, AssertionError):
                await ws.wait_until(lambda: any(is_event(m) for m in ws.events), within)
        else:
            await self.bayeux.connect(
                within=within + 5, advice={"timeout": int(min(within, 2) * 1000)}
            )
        return self.bayeux.take_events()

    async def quiet(self, seconds: float) -> list[Msg]:
        """Everything that arrives within ``seconds`` on /v2/me/interactions (for negatives)."""
        assert self.bayeux is not None
        await asyncio.sleep(seconds)
        self.messages.extend(await self._poll(0.2))
        got = [m["data"] for m in self.messages if m["channel"] == "/v2/me/interactions"]
        self.messages = [m for m in self.messages if m["channel"] != "/v2/me/interactions"]
        return got

    async def close(self) -> None:
        if self.bayeux is not None and not isinstance(self.bayeux, LongPollingClient):
            await self.bayeux.close()
        await self.http.close()


class Partner:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession()
        self.headers = {"Authorization": f"Bearer {token}"}

    async def create(self, body: Msg) -> tuple[int, Msg]:
        async with self.http.post(
            self.base + "/api/v2/interactions", json=body, headers=self.headers
        ) as r:
            return r.status, await r.json()

    async def email(self, subject: str = "Order 1234", **user_data: Any) -> str:
        status, body = await self.create(
            {
                "channel": "email",
                "userData": user_data,
                "email": {
                    "from": "customer1@example.com",
                    "fromPersonal": "Customer One",
                    "to": ["support@example.com"],
                    "subject": subject,
                    "text": "Where is my order?",
                    "messageId": "<m1@example.com>",
                },
            }
        )
        assert status == 200, body
        return str(body["id"])

    async def chat(self, nickname: str = "Customer", **user_data: Any) -> str:
        status, body = await self.create(
            {"channel": "chat", "nickname": nickname, "userData": user_data}
        )
        assert status == 200, body
        return str(body["id"])

    async def get(self, interaction_id: str) -> tuple[int, Msg]:
        async with self.http.get(
            self.base + f"/api/v2/interactions/{interaction_id}", headers=self.headers
        ) as r:
            return r.status, await r.json()

    async def say(self, interaction_id: str, operation: str, **params: Any) -> tuple[int, Msg]:
        async with self.http.post(
            self.base + f"/api/v2/interactions/{interaction_id}",
            json={"operationName": operation, **params},
            headers=self.headers,
        ) as r:
            return r.status, await r.json()

    async def close(self) -> None:
        await self.http.close()
