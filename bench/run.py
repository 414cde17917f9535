"""Bayeux benchmark: the same loads against Faye, cometd-nodejs-server and the gateway, printed
side by side.

    .venv/bin/python bench/run.py            # full run, about 22 minutes, under ~30
    .venv/bin/python bench/run.py --quick    # smoke version, a few minutes
    .venv/bin/python bench/run.py --servers gateway --only invites   # contact center, ~1 min
    .venv/bin/python bench/run.py --only mail     # mail latency (Dovecot, pymap), ~1.5 min
    .venv/bin/python bench/run.py --only cluster  # on Redis: gateway-redis, faye-redis, 10-25 min

Each scenario gets a fresh server pinned to core 0 (``taskset -c 0``), and the servers on Redis
(faye-redis, gateway-redis) a fresh redis-server pinned to the same core; the load generator
(bench/loadgen.py) runs pinned to core 1.  Traffic goes to 127.0.0.1 only.  The table is
printed and written to bench/results/latest.txt (raw numbers: latest.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import invites as invites_gen
import mailbench as mail_bench
import redismem
from metrics import machine_busy_seconds, sample
from report import Results, render
from servers import (
    ANONYMOUS_ENV,
    BENCH_DIR,
    DATA_DIR_ENV,
    LoadGen,
    RunningServer,
    ServerSpec,
    cometd_spec,
    ensure_node_peer_installed,
    established_connections,
    faye_redis_spec,
    faye_spec,
    gateway_available,
    gateway_spec,
    node_peer_version,
    redis_server_version,
)

SERVER_CORE, GEN_CORE = 0, 1
RESULTS_DIR = BENCH_DIR / "results"
LOG_DIR = RESULTS_DIR / "logs"
RAMPS = [(w, t) for w in ("broadcast", "agents", "self") for t in ("lp", "ws")]
# cometd-nodejs-server has no websocket transport: it runs the long-polling ramps only.
LONG_POLLING_ONLY = {"cometd"}
SERVERS = ("faye", "cometd", "gateway", "gateway-redis", "faye-redis")  # the table's order
DEFAULT_SERVERS = ("faye", "cometd", "gateway")
# --only cluster: the servers on one Redis against their peers (bench/README.md, "Cluster").
# Not in the default run: the two servers on Redis in all six ramps would take it past 30 min.
CLUSTER = ("ramp:broadcast", "ramp:agents", "redis-memory")
CLUSTER_SERVERS = ("gateway", "gateway-redis", "faye-redis")


@dataclass
class Plan:
    quick: bool
    clients: int = 1000
    step_seconds: float = 5.0
    warmup: float = 1.0
    factor: float = 2**0.5
    broadcast_rates: tuple[float, float] = (10, 640)  # first, last publish rate (msgs/s)
    agents_rates: tuple[float, float] = (1000, 128000)
    self_rates: tuple[float, float] = (1000, 64000)  # every client publishing its own
    big_clients: int = 10_000
    big_rate: float = 10
    big_seconds: float = 20.0
    idle_sessions: int = 20_000
    idle_procs: int = 2
    drain: float = 3.0  # wait after each step for stragglers; missing after that = lost
    big_drain: float = 10.0
    invite_agents: int = 1000
    invite_rates: tuple[int, ...] = (50, 100, 200, 400, 800)  # interactions created/s
    invite_seconds: float = 5.0
    invite_drain: float = 5.0  # no Invited this long after the step's last creation = lost
    mail_messages: int = 50  # per IMAP server (mailbench.py)
    # The servers on Redis start their ramps this many steps lower (broadcast from 1.2/s,
    # agents from 125/s), so that a server slower than the first step still shows a figure.
    redis_lower_steps: int = 6
    redis_sessions: int = 1000  # idle sessions, Redis memory per session
    redis_queue_sessions: int = 100  # sessions that never connect, and the events queued for
    redis_events: int = 10_000  # them (100 each): Redis memory per queued event

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            step_seconds=1.5,
            warmup=0.5,
            drain=2.0,
            big_drain=5.0,
            factor=2.0,
            broadcast_rates=(20, 640),
            agents_rates=(2000, 64000),
            self_rates=(2000, 64000),
            big_clients=2000,
            big_seconds=5.0,
            idle_sessions=4000,
            invite_agents=200,
            invite_rates=(50, 100, 200),
            invite_seconds=2.0,
            mail_messages=10,
            redis_lower_steps=3,
            redis_sessions=200,
            redis_queue_sessions=20,
            redis_events=2000,
        )

    def rates(self, workload: str, lower: int = 0) -> list[float]:
        """The ramp's publish rates; ``lower``: starting that many steps below the first
        (on the same grid; rates under 10/s with one decimal)."""
        first, last = {
            "broadcast": self.broadcast_rates,
            "agents": self.agents_rates,
            "self": self.self_rates,
        }[workload]
        out: list[float] = []
        r = first / self.factor**lower
        while r <= last * 1.001:
            out.append(round(r, 1) if r < 9.95 else round(r))
            r *= self.factor
        return out


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    return hard


def other_load(seconds: float = 1.0) -> float:
    """CPU % (of one core) used by processes on the machine over ``seconds``."""
    before = machine_busy_seconds()
    time.sleep(seconds)
    return 100 * (machine_busy_seconds() - before) / seconds


def loadgen_cmd(server: RunningServer, *args: str) -> list[str]:
    redis = ["--redis-pid", str(server.redis.pid)] if server.redis is not None else []
    return [
        "taskset",
        "-c",
        str(GEN_CORE),
        sys.executable,
        str(BENCH_DIR / "loadgen.py"),
        *args,
        "--url",
        server.url,
        "--server-pid",
        str(server.pid),
        *redis,
    ]


def run_loadgen(
    cmd: list[str],
    label: str,
    timeout: float,
    show: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run one load-generator ramp, echo its progress, return its JSON events."""
    events: list[dict[str, Any]] = []
    gen = LoadGen(cmd, LOG_DIR / f"loadgen-{label}.log")
    deadline = time.monotonic() + timeout
    while (event := gen.next_event(deadline)) is not None:
        events.append(event)
        (show or progress)(label, event)
        if event.get("event") == "done":
            break
    if time.monotonic() >= deadline:
        print(f"  [{label}] time limit reached, stopping the load generator")
    code = gen.finish()
    if not any(e["event"] == "done" for e in events):
        tail = gen.log.read_text(errors="replace")[-800:]
        events.append({"event": "error", "message": f"load generator exited {code}: {tail}"})
        print(f"  [{label}] load generator failed, see {gen.log}")
    return events


def progress(label: str, e: dict[str, Any]) -> None:
    if e["event"] == "ready":
        print(f"  [{label}] {e['clients']} clients ready in {e['setup_seconds']:.1f} s")
    elif e["event"] == "step":
        flag = "held" if e["held"] else f"FAILED: {e['reason']}"
        redis = f"+{e['redis_cpu_pct']:.0f}" if "redis_cpu_pct" in e else ""
        print(
            f"  [{label}] {e['rate']:>7g}/s  deliv/s {e['deliveries_per_s']:>9,.0f}  "
            f"p50 {e['p50_ms']:>6.0f}  p99 {e['p99_ms']:>6.0f}  max {e['max_ms']:>6.0f} ms  "
            f"srv {e.get('server_cpu_pct', 0):>3.0f}{redis}%  gen {e['gen_cpu_pct']:>3.0f}%  "
            f"other {e.get('other_cpu_pct', 0):>3.0f}%  "
            f"conn/s {e['connects_per_s']:>6,.0f}  {flag}",
            flush=True,
        )


def start_server(spec: ServerSpec, label: str) -> RunningServer:
    server = RunningServer(spec, SERVER_CORE, LOG_DIR / f"server-{label}.log")
    try:
        server.wait_ready()
    except RuntimeError:
        server.stop()
        raise
    return server


def drive(spec: ServerSpec, label: str, timeout: float, **options: object) -> dict[str, Any]:
    """Fresh server, one load-generator ramp against it, server stopped again."""
    server = start_server(spec, label)
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    try:
        events = run_loadgen(loadgen_cmd(server, "ramp", *argv), label, timeout)
    finally:
        died = not server.alive  # crashed during the run (not stopped by us)
        code = server.stop()
    if died:
        print(f"  [{label}] SERVER DIED during the run, exit code {code}; see {server.log_path}")
    return {"events": events, "died": died, "exit": code}


def ramp(spec: ServerSpec, plan: Plan, workload: str, transport: str) -> dict[str, Any]:
    lower = plan.redis_lower_steps if spec.redis else 0
    rates = ",".join(str(r) for r in plan.rates(workload, lower))
    return drive(
        spec,
        f"{spec.name}-{workload}-{transport}",
        240,
        transport=transport,
        workload=workload,
        clients=plan.clients,
        rates=rates,
        step_seconds=plan.step_seconds,
        warmup=plan.warmup,
        drain=plan.drain,
    )


BIG_TRANSPORTS = ("lp", "ws")


def big_broadcast(spec: ServerSpec, plan: Plan, transport: str) -> dict[str, Any]:
    return drive(
        spec,
        f"{spec.name}-{plan.big_clients}-clients-{transport}",
        300,
        transport=transport,
        workload="broadcast",
        clients=plan.big_clients,
        rates=plan.big_rate,
        step_seconds=plan.big_seconds,
        warmup=2,
        drain=plan.big_drain,
    )


def idle_memory(spec: ServerSpec, plan: Plan, fd_limit: int) -> dict[str, Any]:
    """Hold idle long-poll sessions; RSS per session = (after - before) / sessions."""
    label = f"{spec.name}-idle"
    sessions = min(plan.idle_sessions, fd_limit - 100)
    server = start_server(spec, label)
    gens: list[LoadGen] = []
    try:
        time.sleep(1.0)
        before = sample(server.pid)
        per_proc = sessions // plan.idle_procs
        t0 = time.monotonic()
        for i in range(plan.idle_procs):
            n = per_proc if i < plan.idle_procs - 1 else sessions - per_proc * i
            cmd = loadgen_cmd(
                server,
                "idle",
                "--workload=agents",
                f"--clients={n}",
                f"--channel-offset={i * per_proc}",
            )
            gens.append(LoadGen(cmd, LOG_DIR / f"loadgen-{label}-{i}.log"))
        ready = [g.wait_for("ready", timeout=240) for g in gens]
        setup = time.monotonic() - t0
        time.sleep(5.0)  # first connects return (gateway) and are re-held; let the heap settle
        after = sample(server.pid)
        held = established_connections(server.port)
        died = not server.alive
        print(
            f"  [{label}] {sessions} sessions in {setup:.1f} s, {held} connections held, "
            f"RSS {before.rss_kib / 1024:.0f} -> {after.rss_kib / 1024:.0f} MiB"
            + (" SERVER DIED" if died else ""),
            flush=True,
        )
        for g in gens:
            g.tell("stop")
        done = [g.wait_for("done", timeout=60) for g in gens]
    finally:
        for g in gens:
            g.finish()
        server.stop()
    anomalies: dict[str, int] = {}
    for e in [*ready, *done]:
        for k, v in (e or {}).get("anomalies", {}).items():
            anomalies[k] = anomalies.get(k, 0) + v
    if not all(ready):
        anomalies["a load generator never became ready"] = 1
    if died:
        anomalies["server died"] = 1
    return {
        "sessions": sessions,
        "target": plan.idle_sessions,
        "fd_limit": fd_limit,
        "rss_before_kib": before.rss_kib,
        "rss_after_kib": after.rss_kib,
        "held_connections": held,
        "setup_seconds": setup,
        "ok": all(ready) and not died,
        "anomalies": anomalies,
    }


def invites(spec: ServerSpec, plan: Plan) -> dict[str, Any]:
    """Contact-center invitations: agents logged in and Ready on email, a partner creating
    interactions at each rate (bench/invites.py).  The gateway gets a fresh data directory with
    a users file, and refuses anonymous CometD handshakes as it does by default."""
    label = f"{spec.name}-invites"
    with tempfile.TemporaryDirectory(prefix="bench-invites-") as tmp:
        t0 = time.monotonic()
        secrets_file = invites_gen.write_users(Path(tmp), plan.invite_agents)
        users_s = time.monotonic() - t0
        print(f"  [{label}] users file with {plan.invite_agents} agents in {users_s:.1f} s")
        env = {k: v for k, v in spec.env.items() if k != ANONYMOUS_ENV}
        env[DATA_DIR_ENV] = tmp
        server = start_server(
            ServerSpec(spec.name, "/api/v2/notifications", env, ready_path="/api/v2/me"), label
        )
        cmd = [
            "taskset",
            "-c",
            str(GEN_CORE),
            sys.executable,
            str(BENCH_DIR / "invites.py"),
            "--url",
            server.url,
            "--server-pid",
            str(server.pid),
            "--secrets",
            str(secrets_file),
            f"--agents={plan.invite_agents}",
            f"--rates={','.join(str(r) for r in plan.invite_rates)}",
            f"--step-seconds={plan.invite_seconds}",
            f"--drain={plan.invite_drain}",
            f"--warmup={1.0 if not plan.quick else 0.5}",
        ]
        try:
            events = run_loadgen(cmd, label, 170, show=invites_gen.progress)
        finally:
            died = not server.alive
            code = server.stop()
    if died:
        print(f"  [{label}] SERVER DIED during the run, exit code {code}; see {server.log_path}")
    return {
        "events": events,
        "died": died,
        "exit": code,
        "agents": plan.invite_agents,
        "step_seconds": plan.invite_seconds,
        "drain": plan.invite_drain,
        "users_seconds": users_s,
    }


def picked(selected: list[str], section: str, runs: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The runs of ``section`` that ``--only`` names: ``ramp`` is all of them, ``ramp:agents``
    those of one workload, ``ramp:agents:ws`` one."""
    wanted = [item.split(":")[1:] for item in selected if item.split(":")[0] == section]
    return [run for run in runs if any(list(run[: len(w)]) == w for w in wanted)]


def expand_cluster(selected: list[str], servers: str | None) -> tuple[list[str], list[str]]:
    """``--only`` with ``cluster`` spelled out, and the servers to run: ``--servers``, or by
    default faye, cometd and the gateway, with the servers on Redis when ``cluster`` is asked
    for (and only gateway, gateway-redis and faye-redis when nothing else is)."""
    default = list(DEFAULT_SERVERS)
    if "cluster" in selected:
        others = [item for item in selected if item != "cluster"]
        selected = [*others, *(item for item in CLUSTER if item not in others)]
        extra = [name for name in CLUSTER_SERVERS if name not in default]
        default = [*default, *extra] if others else list(CLUSTER_SERVERS)
    return selected, servers.split(",") if servers else default


def server_specs(
    wanted: list[str], only: set[str], args: argparse.Namespace, notes: list[str]
) -> list[ServerSpec]:
    """The servers to run, in the table's order, their Node peers installed if needed."""
    specs: list[ServerSpec] = []
    bayeux_sections = only & {"ramp", "big", "idle", "invites"}  # mail starts its own servers
    # on Redis: the ramps and the Redis memory section only
    redis_sections = only & {"ramp", "redis-memory"}
    redis_names = [n for n in ("faye-redis", "gateway-redis") if n in wanted]
    if redis_names and redis_sections and shutil.which("redis-server") is None:
        notes.append(f"{', '.join(redis_names)} not run: redis-server not found")
        redis_sections = set()
    gateway_ok, why = (
        gateway_available() if {"gateway", "gateway-redis"} & set(wanted) else (False, "")
    )
    overrides = dict(kv.split("=", 1) for kv in args.gateway_env)
    if args.redis_url_query and "gateway-redis" in wanted:
        notes.append(f"gateway-redis's Redis URL ends in ?{args.redis_url_query}")
    for name in SERVERS:
        if name not in wanted:
            continue
        if name == "faye" and bayeux_sections:
            ensure_node_peer_installed("faye")
            specs.append(faye_spec())
        elif name == "cometd" and "ramp" in only:  # long-polling ramps only (LONG_POLLING_ONLY)
            ensure_node_peer_installed("cometd")
            specs.append(cometd_spec())
        elif name == "faye-redis" and redis_sections:
            ensure_node_peer_installed("faye-redis")
            specs.append(faye_redis_spec())
        elif name in ("gateway", "gateway-redis"):
            on_redis = name == "gateway-redis"
            if not (redis_sections if on_redis else bayeux_sections):
                continue
            if gateway_ok:
                query = args.redis_url_query if on_redis else ""
                specs.append(gateway_spec(overrides, redis=on_redis, redis_query=query))
            else:
                notes.append(f"{name} not run: {why}")
    return specs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="short smoke version")
    p.add_argument(
        "--servers",
        default=None,
        help=f"comma-separated subset of {', '.join(SERVERS)} (default: "
        f"{','.join(DEFAULT_SERVERS)}; with --only cluster: {','.join(CLUSTER_SERVERS)})",
    )
    p.add_argument(
        "--only",
        default="ramp,big,idle,invites,mail",
        help="comma-separated subset of: ramp, big, idle, invites, mail, redis-memory, cluster; "
        "a ramp or big run can be narrowed with colons: ramp:agents:ws, ramp:self:lp, "
        "ramp:broadcast, big:lp; cluster = ramp:broadcast,ramp:agents,redis-memory",
    )
    p.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra GATEWAY_* environment override (repeatable)",
    )
    p.add_argument(
        "--redis-url-query",
        default="",
        metavar="QUERY",
        help="appended to gateway-redis's Redis URL after '?', e.g. max_connections=2000 "
        "(redis-py's URL options; default: none, the gateway as shipped)",
    )
    args = p.parse_args(argv)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {GEN_CORE})  # keep the orchestrator off the server's core
    plan = Plan.make(args.quick)
    fd_limit = raise_nofile()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    selected, wanted = expand_cluster(args.only.split(","), args.servers)
    only = {item.split(":")[0] for item in selected}
    known = {"ramp", "big", "idle", "invites", "mail", "redis-memory", "cluster"}
    known |= {f"big:{t}" for t in BIG_TRANSPORTS}
    known |= {f"ramp:{w}" for w, _ in RAMPS} | {f"ramp:{w}:{t}" for w, t in RAMPS}
    unknown = [item for item in selected if item not in known]
    if unknown:
        p.error(f"--only: unknown {', '.join(unknown)} (choose from {', '.join(sorted(known))})")
    strangers = [name for name in wanted if name not in SERVERS]
    if strangers:
        p.error(f"--servers: unknown {', '.join(strangers)} (choose from {', '.join(SERVERS)})")
    notes: list[str] = []
    busy = other_load()
    if busy >= 10:
        notes.append(
            f"other processes were using {busy:.0f}% of a core when the run started: "
            "results need an otherwise idle machine"
        )
        print(f"WARNING: {notes[-1]}", flush=True)
    specs = server_specs(wanted, only, args, notes)
    if "invites" in only and not any(s.name == "gateway" for s in specs):
        notes.append("invites not run: it needs the gateway (Faye has no contact center)")
    results = Results(
        quick=plan.quick,
        servers=[s.name for s in specs],
        notes=notes,
        peer_versions=[node_peer_version(s.name) for s in specs if not s.is_gateway],
        redis_version=redis_server_version() if any(s.redis for s in specs) else "",
        started=time.strftime("%Y-%m-%d %H:%M:%S"),
        clients=plan.clients,
        step_seconds=plan.step_seconds,
        big_clients=plan.big_clients,
        big_rate=plan.big_rate,
        big_seconds=plan.big_seconds,
        drain=plan.drain,
        big_drain=plan.big_drain,
    )
    t0 = time.monotonic()
    print(
        f"server on core {SERVER_CORE} (taskset -c {SERVER_CORE}), load generator on core "
        f"{GEN_CORE} (taskset -c {GEN_CORE}); servers: {', '.join(results.servers)}",
        flush=True,
    )
    for workload, transport in picked(selected, "ramp", RAMPS):
        for spec in specs:
            if transport == "lp" or spec.name not in LONG_POLLING_ONLY:
                results.ramps[(workload, transport, spec.name)] = ramp(
                    spec, plan, workload, transport
                )
    # cometd-nodejs-server joins the ramps only: the 10,000-client and idle runs compare the
    # gateway with Faye, as before.
    baseline = [s for s in specs if s.name in ("faye", "gateway")]
    # The issue does not fix the transport of this target: both are run and reported.
    for (transport,) in picked(selected, "big", [(t,) for t in BIG_TRANSPORTS]):
        for spec in baseline:
            results.big[f"{transport}:{spec.name}"] = big_broadcast(spec, plan, transport)
    for spec in baseline if "idle" in only else []:
        results.idle[spec.name] = idle_memory(spec, plan, fd_limit)
    for spec in [s for s in specs if s.redis] if "redis-memory" in only else []:
        results.redis_memory[spec.name] = redismem.run(
            spec,
            plan.redis_sessions,
            plan.redis_queue_sessions,
            plan.redis_events,
            start_server,
            loadgen_cmd,
            LOG_DIR,
        )
    # Faye has no contact center: this scenario runs against the gateway only.
    for spec in [s for s in specs if s.name == "gateway"] if "invites" in only else []:
        results.invites[spec.name] = invites(spec, plan)
    # In this process: a gateway per IMAP server (Dovecot, then pymap), see mailbench.py.
    if "mail" in only:
        print(
            "mail: Dovecot pinned to core 0; gateway, agent and clients here on core 1", flush=True
        )
        results.mail = mail_bench.run(
            plan.quick, messages=plan.mail_messages, imap_core=SERVER_CORE
        )
    results.elapsed = time.monotonic() - t0
    text = render(results)
    print()
    print(text)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "latest.txt").write_text(text)
    (RESULTS_DIR / "latest.json").write_text(json.dumps(results.to_json(), indent=1))
    print(f"written to {RESULTS_DIR / 'latest.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
