"""Load generator: N simulated Bayeux clients and their publishers, driven through rate steps.

Workloads: ``broadcast`` (everyone subscribes one channel) and ``agents`` (client i subscribes
its own channel) are published by one extra client, batched; ``self`` is the ``agents``
subscription with every client publishing its own messages to its own channel, one per request
or frame (bench/publisher.py).

Run by bench/run.py (pinned to core 1); prints one JSON object per line on stdout:
``{"event": "ready", ...}``, one ``{"event": "step", ...}`` per rate step, ``{"event": "done"}``.

Modes:
  ramp  subscribe clients, publish at each rate for --step-seconds, stop at the first step
        whose p99 latency exceeds --max-p99 or that loses a message.
  idle  hold --clients long-poll sessions (handshake + subscribe + held connect) until stdin
        closes or says "stop"; used for the memory-per-session measurement.
  queue --clients sessions handshake and subscribe (agents workload) and never connect; on
        "publish" from stdin one publisher sends --events messages round-robin to their
        channels, ``{"event": "queued"}`` once the server acknowledged them all; then hold until
        "stop".  Used for the Redis memory per queued event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bayeux import (
    Anomalies,
    BayeuxClient,
    Endpoint,
    LongPollClient,
    NullSink,
    Sink,
    WebSocketClient,
)
from metrics import StepTracker, add_server_figures, machine_busy_seconds, sample, self_cpu
from publisher import OwnPublishers, Publisher

from gateway.gcpolicy import GcPolicy

now = time.monotonic
TRANSPORTS = {"lp": "long-polling", "ws": "websocket"}
BROADCAST_CHANNEL = "/bench/all"


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Generator:
    """The simulated clients; points their event sink at the current step's tracker."""

    def __init__(self) -> None:
        self.clients: list[BayeuxClient] = []

    def attach(self, tracker: StepTracker | None) -> None:
        sink: Sink = tracker if tracker is not None else NullSink()
        for client in self.clients:
            client.sink = sink

    def connects(self) -> int:
        return sum(client.connects for client in self.clients)


def channels_for(args: argparse.Namespace, index: int) -> list[str]:
    if args.workload == "broadcast":
        return [BROADCAST_CHANNEL]
    return [f"/agents/{args.channel_offset + index}"]


async def open_clients(
    args: argparse.Namespace, gen: Generator, anomalies: Anomalies, connect: bool = True
) -> list[BayeuxClient]:
    """Handshake and subscribe every client, then start its connect loop (unless
    ``connect`` is false: the sessions then exist and never connect)."""
    endpoint = Endpoint(args.url)
    cls = LongPollClient if args.transport == "lp" else WebSocketClient
    clients: list[BayeuxClient] = [
        cls(i, endpoint, NullSink(), anomalies, now) for i in range(args.clients)
    ]
    gen.clients = clients
    gate = asyncio.Semaphore(args.setup_concurrency)
    failures: Counter[str] = Counter()

    async def setup(client: BayeuxClient) -> None:
        async with gate:
            for attempt in range(3):
                try:
                    # a reply that never comes fails the attempt, not the whole run
                    await asyncio.wait_for(client.setup(channels_for(args, client.index)), 30)
                    if connect:
                        client.start()
                    return
                except (OSError, ConnectionError, TimeoutError) as exc:
                    failures[str(exc)[:120] or type(exc).__name__] += 1
                    await asyncio.sleep(0.2 * (attempt + 1))
            raise ConnectionError(f"client {client.index} could not set up: {failures}")

    await asyncio.gather(*(setup(c) for c in clients))
    for reason, n in failures.items():
        anomalies[f"setup retry: {reason}"] += n
    return clients


def make_message_factory(
    args: argparse.Namespace, publisher: Publisher | OwnPublishers
) -> Callable[[int, float], dict[str, Any]]:
    n = args.clients
    if isinstance(publisher, OwnPublishers):
        off, clients = args.channel_offset, publisher.clients

        def make_own(seq: int, at: float) -> dict[str, Any]:
            return {
                "channel": f"/agents/{off + seq % n}",
                "clientId": clients[seq % n].client_id,  # read now: a re-handshake changes it
                "id": str(seq),
                "data": {"s": seq, "t": at},
            }

        return make_own
    client_id = publisher.client_id
    if args.workload == "broadcast":

        def make(seq: int, at: float) -> dict[str, Any]:
            return {
                "channel": BROADCAST_CHANNEL,
                "clientId": client_id,
                "id": str(seq),
                "data": {"s": seq, "t": at},
            }
    else:
        off = args.channel_offset

        def make(seq: int, at: float) -> dict[str, Any]:
            return {
                "channel": f"/agents/{off + seq % n}",
                "clientId": client_id,
                "id": str(seq),
                "data": {"s": seq, "t": at},
            }

    return make


async def publish_step(
    publisher: Publisher | OwnPublishers,
    rate: float,
    count: int,
    base: int,
    make: Callable[[int, float], dict[str, Any]],
    tick: float,
) -> None:
    """Publish ``count`` messages at ``rate``/s; each carries its *scheduled* send time, so
    time spent queued behind a slow server counts as latency (no coordinated omission)."""
    start = now()
    sent = 0
    while sent < count:
        due = min(count, int((now() - start) * rate) + 1)
        if due > sent:
            publisher.publish([make(base + i, start + i / rate) for i in range(sent, due)])
            sent = due
        await asyncio.sleep(tick)


async def run_step(
    args: argparse.Namespace,
    gen: Generator,
    publisher: Publisher | OwnPublishers,
    rate: float,
    seconds: float,
    base: int,
    anomalies: Anomalies,
) -> tuple[dict[str, Any], int]:
    count = max(1, round(rate * seconds))
    tracker = StepTracker(args.workload, args.clients, base, count)
    gen.attach(tracker)
    connects0 = gen.connects()
    before_anomalies = Counter(anomalies)
    failed0 = publisher.failed
    srv0 = sample(args.server_pid) if args.server_pid else None
    redis0 = sample(args.redis_pid) if args.redis_pid else None
    cpu0, busy0, t0 = self_cpu(), machine_busy_seconds(), now()
    make = make_message_factory(args, publisher)
    await publish_step(publisher, rate, count, base, make, args.tick)
    t_pub = now()
    deadline = t_pub + args.drain
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tracker.done.wait(), max(0.0, deadline - now()))
    t1, cpu1, busy1 = now(), self_cpu(), machine_busy_seconds()
    srv1 = sample(args.server_pid) if args.server_pid else None
    redis1 = sample(args.redis_pid) if args.redis_pid else None
    elapsed = t1 - t0
    lost = tracker.expected - tracker.delivered
    p99 = tracker.percentile(0.99)
    reasons = []
    if p99 > args.max_p99:
        reasons.append(f"p99 {p99 * 1000:.0f} ms > {args.max_p99 * 1000:.0f} ms")
    if lost:
        reasons.append(f"lost {lost}")
    new_anomalies = Counter(anomalies)
    new_anomalies.subtract(before_anomalies)
    result: dict[str, Any] = {
        "event": "step",
        "rate": rate,
        "published": count,
        "publish_seconds": t_pub - t0,
        "publish_failed": publisher.failed - failed0,
        "publisher_backlog": publisher.backlog,
        "expected": tracker.expected,
        "delivered": tracker.delivered,
        "lost": lost,
        "duplicates": tracker.duplicates,
        "misrouted": tracker.misrouted,
        "stale": tracker.stale,
        "deliveries_per_s": tracker.delivered / (t_pub - t0),
        "p50_ms": tracker.percentile(0.50) * 1000,
        "p99_ms": p99 * 1000,
        "max_ms": tracker.max_latency * 1000,
        "seconds": elapsed,
        "gen_cpu_pct": 100 * (cpu1 - cpu0) / elapsed,
        "connects_per_s": (gen.connects() - connects0) / elapsed,
        "held": not reasons,
        "reason": "; ".join(reasons),
        "anomalies": {k: v for k, v in new_anomalies.items() if v > 0},
    }
    redis = (redis0, redis1) if redis0 is not None and redis1 is not None else None
    add_server_figures(result, srv0, srv1, busy0, busy1, elapsed, redis)
    return result, base + count


async def ramp(args: argparse.Namespace) -> None:
    anomalies = Anomalies()
    gen = Generator()
    t_setup = now()
    clients = await open_clients(args, gen, anomalies)
    publisher: Publisher | OwnPublishers
    if args.workload == "self":
        publisher = OwnPublishers(clients, anomalies, now)
        await publisher.start(args.setup_concurrency)
    else:
        publisher = Publisher(
            args.url, TRANSPORTS[args.transport], anomalies, now, max_batch=args.max_batch
        )
        await publisher.start()
    await asyncio.sleep(0.5)  # let the first (immediate) connects come back and re-poll
    # The generator's own garbage collections over 10,000 clients' objects would stall it
    # for up to a second and show up as latency of whichever server is measured.
    gc_task = asyncio.create_task(GcPolicy(1.0, 0).run())
    emit(
        {
            "event": "ready",
            "clients": len(clients),
            "setup_seconds": now() - t_setup,
            "anomalies": dict(anomalies),
        }
    )
    rates = [float(r) for r in args.rates.split(",")]
    base = 0
    if args.warmup > 0:
        warm, base = await run_step(args, gen, publisher, rates[0], args.warmup, base, anomalies)
        emit({**warm, "event": "warmup"})
    deadline = now() + args.max_seconds
    for rate in rates:
        result, base = await run_step(
            args, gen, publisher, rate, args.step_seconds, base, anomalies
        )
        emit(result)
        if not result["held"] or now() > deadline:
            break
    gc_task.cancel()
    gen.attach(None)
    publisher.close()
    for c in clients:
        c.stop()
        c.close()
    emit({"event": "done", "anomalies": dict(anomalies)})


async def _command(expected: str) -> bool:
    """Wait for the line ``expected`` on stdin; False when stdin closes or says "stop"."""
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == expected:
            return True
        if not line or line == "stop":
            return False


async def idle(args: argparse.Namespace) -> None:
    anomalies = Anomalies()
    t_setup = now()
    clients = await open_clients(args, Generator(), anomalies)
    emit(
        {
            "event": "ready",
            "clients": len(clients),
            "setup_seconds": now() - t_setup,
            "anomalies": dict(anomalies),
        }
    )
    await _command("stop")
    connects = sum(c.connects for c in clients)
    for c in clients:
        c.stop()
        c.close()
    emit({"event": "done", "connects": connects, "anomalies": dict(anomalies)})


async def queue(args: argparse.Namespace) -> None:
    anomalies = Anomalies()
    t_setup = now()
    clients = await open_clients(args, Generator(), anomalies, connect=False)
    publisher = Publisher(args.url, TRANSPORTS["lp"], anomalies, now, max_batch=args.max_batch)
    await publisher.start()  # its own session is there before the "before" figure is read
    emit(
        {
            "event": "ready",
            "clients": len(clients),
            "setup_seconds": now() - t_setup,
            "anomalies": dict(anomalies),
        }
    )
    if await _command("publish"):
        make = make_message_factory(args, publisher)
        at = now()
        messages = [make(seq, at) for seq in range(args.events)]
        t0 = now()
        publisher.publish(messages)
        deadline = t0 + 60.0

        def pending() -> bool:
            return publisher.acked + publisher.failed < args.events and now() < deadline

        while pending():  # noqa: ASYNC110 - the publisher counts replies and has no event
            await asyncio.sleep(0.05)
        emit(
            {
                "event": "queued",
                "published": args.events,
                "acked": publisher.acked,
                "failed": publisher.failed,
                "seconds": now() - t0,
                "message_bytes": len(json.dumps(messages[-1], separators=(",", ":"))),
            }
        )
        await _command("stop")
    publisher.close()
    for c in clients:
        c.close()
    emit({"event": "done", "anomalies": dict(anomalies)})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("mode", choices=["ramp", "idle", "queue"])
    p.add_argument("--url", required=True, help="Bayeux URL, e.g. http://127.0.0.1:8000/faye")
    p.add_argument("--transport", choices=list(TRANSPORTS), default="lp")
    p.add_argument("--workload", choices=["broadcast", "agents", "self"], default="broadcast")
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument(
        "--channel-offset",
        type=int,
        default=0,
        help="first /agents/<i> index (several idle processes share a server)",
    )
    p.add_argument("--rates", default="10", help="comma-separated publish rates (msgs/s)")
    p.add_argument("--step-seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0, help="unreported warm-up seconds")
    p.add_argument(
        "--drain",
        type=float,
        default=3.0,
        help="seconds to wait after a step for late deliveries (then: lost)",
    )
    p.add_argument("--max-p99", type=float, default=1.0, help="p99 limit in seconds")
    p.add_argument("--max-seconds", type=float, default=300.0, help="stop ramp after this")
    p.add_argument(
        "--max-batch",
        type=int,
        default=100,
        help="publishes per POST/frame (the gateway refuses >100 by default)",
    )
    p.add_argument("--tick", type=float, default=0.002, help="publisher tick (s)")
    p.add_argument("--setup-concurrency", type=int, default=100)
    p.add_argument("--server-pid", type=int, default=0, help="sample this PID's CPU/RSS")
    p.add_argument(
        "--redis-pid",
        type=int,
        default=0,
        help="the redis-server of the server under test: its CPU is reported apart",
    )
    p.add_argument("--events", type=int, default=10_000, help="queue mode: messages published")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raise_nofile()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a gateway dependency
        runner: Any = asyncio.run
    else:
        runner = uvloop.run
    runner({"ramp": ramp, "idle": idle, "queue": queue}[args.mode](args))


if __name__ == "__main__":
    main()
