"""``/metrics``: the gateway's state and counters in the Prometheus text format.

Each app has its own :class:`prometheus_client.CollectorRegistry` (tests start many gateways in
one process; the global registry would mix them).  Nothing is counted twice: a collector reads
the hub's state and its ``stats`` counter at scrape time, so the hot paths keep incrementing one
``Counter`` and never touch prometheus_client.  Every sample carries a ``node`` label
(``app[NODE_ID]``).

Gauges: ``gateway_sessions`` and ``gateway_queued_events`` (as the engine holds them, read once
per scrape: with an engine shared by several nodes, the fleet's; absent while the engine does
not answer), ``gateway_held_connects`` and ``gateway_websockets`` (this node's).  Counters
(``_total``):
``gateway_published``, ``gateway_delivered``, ``gateway_queue_overflow``,
``gateway_sessions_opened``, ``gateway_sessions_closed{reason}``, ``gateway_handshakes_denied``,
``gateway_http_bad_requests``, ``gateway_http_client_gone``, ``gateway_http_errors``,
``gateway_engine_ping_failures``.  Histogram: ``gateway_engine_ping_seconds``, one observation
per engine round trip (every ``/readyz`` probe and every scrape).

There is no HTTP latency histogram: a held long-poll is answered when an event arrives or after
``advice.timeout`` (30 s), so request times would mostly measure how quiet the channels were.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sized

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.bayeux.hub import Census, Hub

__all__ = ["COUNTERS", "ENGINE_PING_TIMEOUT_S", "Metrics"]

#: ``hub.stats`` keys exported as counters: key -> (metric name, help).
COUNTERS: dict[str, tuple[str, str]] = {
    "published": ("gateway_published", "Messages published (by clients and server-side)"),
    "delivered": ("gateway_delivered", "Events handed out to clients"),
    "queue_overflow": (
        "gateway_queue_overflow",
        "Events that met a full session queue (queue.overflow policy applied)",
    ),
    "sessions_opened": ("gateway_sessions_opened", "Bayeux sessions opened by a handshake"),
    "handshakes_denied": ("gateway_handshakes_denied", "Handshakes the security policy denied"),
    "http_bad_requests": ("gateway_http_bad_requests", "HTTP requests refused as malformed"),
    "http_client_gone": ("gateway_http_client_gone", "Clients that hung up mid-request"),
    "http_errors": ("gateway_http_errors", "HTTP requests that failed on our side"),
}
_CLOSED = "sessions_closed_"

#: How long one engine round trip may take before readiness calls the engine unreachable.  A
#: Redis PING on a local network takes well under a millisecond; balancers' probes time out
#: after 1 s (Kubernetes' default), and the answer must leave before that.
ENGINE_PING_TIMEOUT_S = 0.5

# Seconds: from a local Redis (~0.1 ms) to the timeout.
_PING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)


class Metrics:
    """The app's registry, the engine round-trip histogram and the ``/metrics`` handler."""

    def __init__(self, hub: Hub, sockets: Sized, node: Callable[[], str]) -> None:
        self.hub = hub
        self.node = node
        self.registry = CollectorRegistry()
        self.ping_failures = 0
        self._pings = Histogram(
            "gateway_engine_ping_seconds",
            "Round trips to the engine (each readiness probe and scrape)",
            ["node"],
            buckets=_PING_BUCKETS,
            registry=self.registry,
        )
        self._state = _State(self, sockets)
        self.registry.register(self._state)
        self._export = make_aiohttp_handler(self.registry)

    async def ping_engine(self) -> float:
        """One round trip to the engine, observed; raises (and counts) when it fails or takes
        longer than :data:`ENGINE_PING_TIMEOUT_S`."""
        try:
            async with asyncio.timeout(ENGINE_PING_TIMEOUT_S):
                seconds = await self.hub.ping_engine()
        except Exception:
            self.ping_failures += 1
            raise
        self._pings.labels(node=self.node()).observe(seconds)
        return seconds

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /metrics``: values as of now (prometheus_client picks the format and, for
        clients that accept it, compression)."""
        with contextlib.suppress(Exception):  # counted; the scrape reports everything else
            await self.ping_engine()
        try:
            self._state.census = await self.hub.census()
        except Exception:
            self._state.census = None  # no stale figures: the two gauges are left out
        return await self._export(request)


class _State:
    """A prometheus_client collector: reads the hub's state and counters at each scrape."""

    def __init__(self, metrics: Metrics, sockets: Sized) -> None:
        self.metrics = metrics
        self.sockets = sockets
        self.census: Census | None = None  # the engine's, read by Metrics.handle

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        hub = metrics.hub
        node = [metrics.node()]
        gauges: list[tuple[str, str, float]] = [
            ("gateway_held_connects", "/meta/connect requests held on this node", hub.held_count),
            ("gateway_websockets", "Open websockets on this node", len(self.sockets)),
        ]
        census = self.census
        if census is not None:
            gauges.append(("gateway_sessions", "Bayeux sessions in the engine", census.sessions))
            gauges.append(
                ("gateway_queued_events", "Events waiting in session queues", census.queued)
            )
        for name, help_text, value in gauges:
            gauge = GaugeMetricFamily(name, help_text, labels=["node"])
            gauge.add_metric(node, value)
            yield gauge
        stats = hub.stats
        for key, (name, help_text) in COUNTERS.items():
            counter = CounterMetricFamily(name, help_text, labels=["node"])
            counter.add_metric(node, stats[key])
            yield counter
        closed = CounterMetricFamily(
            "gateway_sessions_closed", "Bayeux sessions ended, by reason", labels=["node", "reason"]
        )
        for key, count in sorted(stats.items()):
            if key.startswith(_CLOSED):
                closed.add_metric([*node, key[len(_CLOSED) :]], count)
        yield closed
        failures = CounterMetricFamily(
            "gateway_engine_ping_failures",
            "Engine round trips that failed or timed out",
            labels=["node"],
        )
        failures.add_metric(node, metrics.ping_failures)
        yield failures
