"""Redis memory per idle session and per queued event, for the servers that keep their state
in Redis (faye-redis, gateway-redis); see bench/README.md, "Redis memory".

Both figures come from ``INFO memory`` of the server's own redis-server, read before and after:

* idle sessions: ``--clients`` long-poll sessions handshake, subscribe to a channel of their own
  and hold a connect (bench/loadgen.py ``idle``);
* queued events: sessions handshake and subscribe and never connect; one publisher sends events
  round-robin to their channels (bench/loadgen.py ``queue``), which wait in Redis.

``keys`` counts ``used_memory - mem_clients_normal - used_memory_scripts``: the data, without
the buffers of the nodes' connections to Redis (how many a node opens is its own business, and
shown apart) nor the Lua script cache.  Each measurement gets a fresh server and redis-server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from servers import LoadGen, RedisServer, RunningServer, ServerSpec, established_connections

# A session that never connects must outlive the measurement: the gateway expires it
# max_interval after its handshake (10 s by default), Faye after 1.6 x its 30 s timeout.
GATEWAY_QUEUE_ENV = {"GATEWAY_BAYEUX__MAX_INTERVAL_MS": "300000"}

StartServer = Callable[[ServerSpec, str], RunningServer]
GenCmd = Callable[..., list[str]]


def keys_bytes(info: dict[str, Any]) -> int:
    return int(info["used_memory"]) - int(info["mem_clients_normal"]) - scripts_bytes(info)


def scripts_bytes(info: dict[str, Any]) -> int:
    return int(info.get("used_memory_scripts", info.get("used_memory_scripts_eval", 0)))


def _figures(before: dict[str, Any], after: dict[str, Any], count: int) -> dict[str, Any]:
    return {
        "used_before": int(before["used_memory"]),
        "used_after": int(after["used_memory"]),
        "keys_before": keys_bytes(before),
        "keys_after": keys_bytes(after),
        "keys_per_item": (keys_bytes(after) - keys_bytes(before)) / max(1, count),
        "used_per_item": (int(after["used_memory"]) - int(before["used_memory"])) / max(1, count),
        "redis_clients": int(after["connected_clients"]),
    }


def _redis(server: RunningServer) -> RedisServer:
    assert server.redis is not None, f"{server.spec.name} has no redis-server"
    return server.redis


def idle_sessions(
    spec: ServerSpec, sessions: int, start: StartServer, gen_cmd: GenCmd, log_dir: Path
) -> dict[str, Any]:
    label = f"{spec.name}-redis-idle"
    server = start(spec, label)
    gen: LoadGen | None = None
    try:
        before = _settled_memory(_redis(server))
        cmd = gen_cmd(server, "idle", "--workload=agents", f"--clients={sessions}")
        gen = LoadGen(cmd, log_dir / f"loadgen-{label}.log")
        ready = gen.wait_for("ready", timeout=180)
        # the first connects come back (gateway) and are held again; buffers shrink
        after = _settled_memory(_redis(server))
        held = established_connections(server.port)
        died = not server.alive
        gen.tell("stop")
        done = gen.wait_for("done", timeout=60)
    finally:
        if gen is not None:
            gen.finish()
        server.stop()
    result = {
        "sessions": sessions,
        "held_connections": held,
        "ok": ready is not None and not died,
        "anomalies": _anomalies(ready, done, died),
        **_figures(before, after, sessions),
    }
    print(
        f"  [{label}] {sessions} sessions, {held} connections held: "
        f"{result['keys_per_item']:,.0f} B/session in keys, "
        f"{result['used_per_item']:,.0f} B/session in used_memory, "
        f"{result['redis_clients']} Redis connections",
        flush=True,
    )
    return result


def queued_events(
    spec: ServerSpec,
    sessions: int,
    events: int,
    start: StartServer,
    gen_cmd: GenCmd,
    log_dir: Path,
) -> dict[str, Any]:
    label = f"{spec.name}-redis-queue"
    if spec.is_gateway:
        spec = replace(spec, env={**spec.env, **GATEWAY_QUEUE_ENV})
    server = start(spec, label)
    gen: LoadGen | None = None
    queued: dict[str, Any] | None = None
    try:
        cmd = gen_cmd(
            server, "queue", "--workload=agents", f"--clients={sessions}", f"--events={events}"
        )
        gen = LoadGen(cmd, log_dir / f"loadgen-{label}.log")
        ready = gen.wait_for("ready", timeout=120)
        redis = _redis(server)
        before = _settled_memory(redis)
        if ready is not None:
            gen.tell("publish")
            queued = gen.wait_for("queued", timeout=90)
        # Faye acknowledges a publish before its engine has queued it: wait for the lists
        in_redis = _settle(redis, events)
        after = _settled_memory(redis)
        died = not server.alive
        gen.tell("stop")
        done = gen.wait_for("done", timeout=60)
    finally:
        if gen is not None:
            gen.finish()
        server.stop()
    anomalies = _anomalies(ready, done, died)
    if queued is None:
        anomalies["publisher never saw every publish acknowledged"] = 1
    elif queued["failed"]:
        anomalies["publish failed"] = queued["failed"]
    result = {
        "sessions": sessions,
        "events": events,
        "in_redis": in_redis,
        "message_bytes": queued["message_bytes"] if queued else 0,
        "ok": queued is not None and in_redis == events and not died,
        "anomalies": anomalies,
        **_figures(before, after, in_redis or events),
    }
    print(
        f"  [{label}] {events:,} events to {sessions} sessions that never connect, "
        f"{in_redis:,} in Redis lists: {result['keys_per_item']:,.0f} B/event in keys",
        flush=True,
    )
    return result


def _settle(redis: RedisServer, wanted: int, timeout: float = 15.0) -> int:
    """The entries in Redis lists once they reach ``wanted`` or stop changing for 1 s."""
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_in = redis.list_entries()
        if now_in >= wanted:
            return now_in
        if now_in != last:
            last, stable_since = now_in, time.monotonic()
        elif time.monotonic() - stable_since >= 1.0:
            return now_in
        time.sleep(0.2)
    return last


def _settled_memory(redis: RedisServer, timeout: float = 15.0) -> dict[str, Any]:
    """``INFO memory`` once the connections' buffers stopped changing: Redis shrinks an idle
    connection's query buffer after 2 s (clientsCron), and a node that just opened a hundred
    connections in a burst holds megabytes in them until then."""
    time.sleep(3.0)
    deadline = time.monotonic() + timeout
    info = redis.memory()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        again = redis.memory()
        if again["mem_clients_normal"] == info["mem_clients_normal"]:
            return again
        info = again
    return info


def _anomalies(
    ready: dict[str, Any] | None, done: dict[str, Any] | None, died: bool
) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in (ready, done):
        for k, v in (e or {}).get("anomalies", {}).items():
            out[k] = out.get(k, 0) + v
    if ready is None:
        out["the load generator never became ready"] = 1
    if died:
        out["server died"] = 1
    return out


def run(
    spec: ServerSpec,
    sessions: int,
    queue_sessions: int,
    events: int,
    start: StartServer,
    gen_cmd: GenCmd,
    log_dir: Path,
) -> dict[str, Any]:
    return {
        "idle": idle_sessions(spec, sessions, start, gen_cmd, log_dir),
        "queue": queued_events(spec, queue_sessions, events, start, gen_cmd, log_dir),
    }
