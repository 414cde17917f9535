"""The fleet endpoints, as a balancer, an orchestrator and Prometheus use them: ``/livez``,
``/readyz`` (and ``/healthz``, its old name) and ``/metrics``, over both HTTP paths."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from conformance.client import LongPollingClient
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

import gateway.metrics
from gateway.api.context import API
from gateway.app import HUB, NODE_ID, default_node_id
from gateway.bayeux.engines.memory import MemoryEngine

FAST = pytest.mark.parametrize("fast_http", [True, False], ids=["fast", "aiohttp"])
PROBES = ("/livez", "/readyz", "/healthz")
STEP_S = 10.0


async def get(server: Any, path: str, **headers: str) -> tuple[int, str, Any]:
    """One GET on a fresh connection, without cookies: status, content type, JSON or text."""
    async with (
        asyncio.timeout(STEP_S),
        aiohttp.ClientSession() as http,
        http.get(server.make_url(path), headers=headers) as response,
    ):
        text = await response.text()
        body = json.loads(text) if response.content_type == "application/json" else text
        return response.status, response.headers.get("Content-Type", ""), body


async def probe(server: Any, path: str) -> tuple[int, Any]:
    """A probe's status and JSON body."""
    status, _, body = await get(server, path)
    return status, body


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(server: Any) -> Samples:
    """``/metrics`` parsed as Prometheus parses it: {(sample name, labels): value}.  Every
    sample of the gateway's must carry this node's label."""
    status, content_type, text = await get(server, "/metrics")
    assert status == 200, text
    assert content_type.startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels.get("node") == server.app[NODE_ID], sample
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "node"))
            samples[(sample.name, labels)] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for a server-side condition (synchronisation only; assertions are on the wire)."""
    async with asyncio.timeout(STEP_S):
        while not predicate():  # noqa: ASYNC110 - the hub exposes no event for this
            await asyncio.sleep(0.01)


class FlakyEngine(MemoryEngine):
    """A memory engine whose round trip fails with ``failure`` while it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.failure: Exception | None = None

    async def ping(self) -> float:
        if self.failure is not None:
            raise self.failure
        return await super().ping()


class GatedEngine(MemoryEngine):
    """A memory engine whose round trip, once ``gate`` is set, waits for the test to open it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None
        self.pinging = asyncio.Event()

    async def ping(self) -> float:
        if self.gate is not None:
            self.pinging.set()
            await self.gate.wait()
        return await super().ping()


# -- probes -----------------------------------------------------------------------------------


@FAST
async def test_probes_answer_ok_without_a_login(make_gateway: Any, fast_http: bool) -> None:
    server = await make_gateway(
        server={"fast_http": fast_http}, agents={"allow_anonymous_bayeux": False}
    )
    for path in PROBES:
        status, content_type, body = await get(server, path)
        assert (status, body) == (200, {"status": "ok"}), path
        assert content_type == "application/json"


@FAST
async def test_readyz_is_unavailable_while_the_engine_fails(
    make_gateway: Any, fast_http: bool
) -> None:
    engine = FlakyEngine()
    server = await make_gateway(server={"fast_http": fast_http}, with_engine=engine)
    engine.failure = ConnectionError("Error 111 connecting to redis.internal:6379")
    for path in ("/readyz", "/healthz"):
        status, body = await probe(server, path)
        assert status == 503, path
        # The dependency and the exception's type; its text (a host name here) stays in the log.
        assert body == {"status": "unavailable", "detail": "engine: ConnectionError"}
    assert await probe(server, "/livez") == (200, {"status": "ok"})  # no dependencies
    assert value(await scrape(server), "gateway_engine_ping_failures_total") == 3  # + the scrape
    engine.failure = None
    assert await probe(server, "/readyz") == (200, {"status": "ok"})


async def test_readyz_gives_up_on_an_engine_that_does_not_answer(make_gateway: Any) -> None:
    engine = GatedEngine()
    server = await make_gateway(with_engine=engine)
    engine.gate = asyncio.Event()  # never opened
    assert await probe(server, "/readyz") == (
        503,
        {"status": "unavailable", "detail": "engine: TimeoutError"},
    )


async def test_readyz_is_unavailable_while_the_store_fails(
    make_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await make_gateway()
    store = server.app[API].service.store

    async def broken() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "ping", broken)
    assert await probe(server, "/readyz") == (
        503,
        {"status": "unavailable", "detail": "store: OperationalError"},
    )


@FAST
async def test_readyz_says_draining_once_the_shutdown_begins(
    make_gateway: Any, fast_http: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe under way when the shutdown begins is answered ``draining``.

    Deterministic: the probe waits in the engine's ping (a gate the test holds) while the
    shutdown starts with a connect held; the held connect's end shows the shutdown hooks have
    run; then the probe goes on and the shutdown waits for it (``shutdown_timeout_s``)."""
    monkeypatch.setattr(gateway.metrics, "ENGINE_PING_TIMEOUT_S", 60.0)
    engine = GatedEngine()
    server = await make_gateway(
        server={"fast_http": fast_http, "shutdown_timeout_s": 60.0},
        bayeux={"timeout_ms": 60_000},
        with_engine=engine,
    )
    client = LongPollingClient(str(server.make_url("/cometd")))
    try:
        await client.open_session("/chat/demo")
        held = asyncio.create_task(client.connect(within=60))
        await until(lambda: server.app[HUB].held_count == 1)
        assert await probe(server, "/readyz") == (200, {"status": "ok"})

        engine.gate = asyncio.Event()
        underway = asyncio.create_task(probe(server, "/readyz"))
        await asyncio.wait_for(engine.pinging.wait(), STEP_S)
        closing = asyncio.create_task(server.close())
        # The held connect ends (answered, or its connection closed) in the shutdown hooks.
        await asyncio.wait_for(asyncio.wait([held]), STEP_S)
        assert not underway.done()
        engine.gate.set()
        assert await asyncio.wait_for(underway, STEP_S) == (503, {"status": "draining"})
        await asyncio.wait_for(closing, STEP_S)
    finally:
        held.cancel()
        with contextlib.suppress(BaseException):
            await held
        await client.close()


# -- metrics ----------------------------------------------------------------------------------


@FAST
async def test_metrics_follow_a_client(make_gateway: Any, fast_http: bool) -> None:
    """Handshake, subscribe, a held connect, a publish: each shows in /metrics."""
    server = await make_gateway(server={"fast_http": fast_http}, bayeux={"timeout_ms": 60_000})
    assert server.app[NODE_ID] == default_node_id()
    before = await scrape(server)
    assert value(before, "gateway_sessions") == 0
    assert value(before, "gateway_held_connects") == 0
    assert value(before, "gateway_published_total") == 0
    assert value(before, "gateway_delivered_total") == 0

    client = LongPollingClient(str(server.make_url("/cometd")))
    held: asyncio.Task[Any] | None = None
    try:
        await client.open_session("/chat/demo")
        held = asyncio.create_task(client.connect(within=60))
        await until(lambda: server.app[HUB].held_count == 1)
        reply = await client.publish("/chat/demo", {"text": "hi"})
        assert reply["successful"] is True
        assert client.take_events() == [{"channel": "/chat/demo", "data": {"text": "hi"}}]

        after = await scrape(server)
        assert value(after, "gateway_sessions") == 1
        assert value(after, "gateway_held_connects") == 1
        assert value(after, "gateway_queued_events") == 0
        assert value(after, "gateway_published_total") >= 1
        assert value(after, "gateway_delivered_total") >= 1
        assert value(after, "gateway_sessions_opened_total") == 1
        # One engine round trip per scrape, and one per readiness probe.
        pings = value(after, "gateway_engine_ping_seconds_count")
        await get(server, "/readyz")
        assert value(await scrape(server), "gateway_engine_ping_seconds_count") == pings + 2
    finally:
        if held is not None:
            held.cancel()
            with contextlib.suppress(BaseException):
                await held
        await client.close()


async def test_queue_overflow_and_queued_events_show_in_metrics(make_gateway: Any) -> None:
    server = await make_gateway(queue={"max_messages": 2})  # overflow: disconnect
    reader = LongPollingClient(str(server.make_url("/cometd")))  # subscribes, never connects
    writer = LongPollingClient(str(server.make_url("/cometd")))
    try:
        await reader.open_session("/chat/demo")
        await writer.open_session()
        for n in range(2):
            assert (await writer.publish("/chat/demo", {"n": n}))["successful"] is True
        full = await scrape(server)
        assert value(full, "gateway_queued_events") == 2
        assert value(full, "gateway_queue_overflow_total") == 0

        assert (await writer.publish("/chat/demo", {"n": 2}))["successful"] is True
        after = await scrape(server)
        assert value(after, "gateway_queue_overflow_total") == 1
        assert value(after, "gateway_sessions_closed_total", reason="overflow") == 1
        assert value(after, "gateway_sessions") == 1  # the reader's session ended
        assert value(after, "gateway_queued_events") == 0
    finally:
        await reader.close()
        await writer.close()


async def test_metrics_negotiate_the_exposition_format(make_gateway: Any) -> None:
    server = await make_gateway()
    _, plain, _ = await get(server, "/metrics")
    assert plain == "text/plain; version=0.0.4; charset=utf-8"  # what every scraper reads
    _, latest, _ = await get(server, "/metrics", Accept="text/plain; version=1.0.0")
    assert latest.startswith(CONTENT_TYPE_LATEST)


@FAST
async def test_metrics_can_be_turned_off(make_gateway: Any, fast_http: bool) -> None:
    server = await make_gateway(server={"fast_http": fast_http, "metrics": False})
    assert (await get(server, "/metrics"))[0] == 404
    for path in PROBES:
        assert await probe(server, path) == (200, {"status": "ok"}), path
