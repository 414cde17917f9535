"""Turn the collected events into the side-by-side text table (see bench/README.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from targets import TRANSPORT_NAMES, Held, ramp_targets, verdict

GEN_BUSY_PCT = 75.0  # load generator CPU at or above this: it adds some queueing latency
GEN_SATURATED_PCT = 90.0  # load generator CPU at or above this: its numbers are suspect
OTHER_BUSY_PCT = 15.0  # CPU used by other processes during a step: results are noisy


@dataclass
class Results:
    quick: bool
    servers: list[str]
    notes: list[str]
    peer_versions: list[str]
    started: str
    clients: int
    step_seconds: float
    big_clients: int
    big_rate: float
    big_seconds: float
    ramps: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    big: dict[str, dict[str, Any]] = field(default_factory=dict)
    idle: dict[str, dict[str, Any]] = field(default_factory=dict)
    invites: dict[str, dict[str, Any]] = field(default_factory=dict)
    mail: dict[str, dict[str, Any]] = field(default_factory=dict)  # by IMAP server (bench/mail.py)
    redis_memory: dict[str, dict[str, Any]] = field(default_factory=dict)  # bench/redismem.py
    redis_version: str = ""  # the servers on Redis ran: the redis-server they ran on
    elapsed: float = 0.0
    drain: float = 3.0
    big_drain: float = 10.0

    def to_json(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "servers": self.servers,
            "notes": self.notes,
            "started": self.started,
            "elapsed_s": self.elapsed,
            "ramps": {"/".join(k): v for k, v in self.ramps.items()},
            "big": self.big,
            "idle": self.idle,
            "invites": self.invites,
            "mail": self.mail,
            "redis_memory": self.redis_memory,
        }


def _steps(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == "step"]


def best_step(events: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The highest step held before the first failure, and what stopped the ramp."""
    best = None
    for step in _steps(events):
        if not step["held"]:
            return best, f"{_rate(step['rate'])}/s: {step['reason']}"
        best = step
    errors = [e["message"] for e in events if e.get("event") == "error"]
    if errors:
        return best, "load generator error"
    return best, "ramp top reached" if best else "no step ran"


def _gen_peak(events: list[dict[str, Any]]) -> float:
    return max((s["gen_cpu_pct"] for s in _steps(events)), default=0.0)


def _get(step: dict[str, Any] | None, key: str) -> float | None:
    return None if step is None or key not in step else float(step[key])


def _other_peak(events: list[dict[str, Any]]) -> float:
    return max((s.get("other_cpu_pct", 0.0) for s in _steps(events)), default=0.0)


def _fmt(v: float | None, spec: str = ",.0f") -> str:
    return "-" if v is None else format(v, spec)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append(
            "  ".join(
                c.ljust(w) if i < 3 or i == len(r) - 1 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return out


def render_ramps(res: Results, targets: list[str]) -> list[str]:
    out = [
        f"1. Rate ramp, {res.clients:,} clients, {res.step_seconds:g} s steps: highest step "
        "held with p99 <= 1 s and no loss",
        "   (broadcast: rate = publishes/s to all clients; agents: rate = msgs/s, one client each,",
        "   published by one client in batches of up to 100; self: rate = msgs/s, each client",
        "   publishing its own to its own channel, one per POST or frame;",
        f"   lost = not delivered within {res.drain:g} s after the step's last publish)",
        *(
            ["   (srv CPU% of a server on Redis: the server + its redis-server, both on core 0)"]
            if res.redis_version
            else []
        ),
        "",
    ]
    header = [
        "workload",
        "transport",
        "server",
        "rate/s",
        "deliv/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "srv CPU%",
        "peak RSS MiB",
        "gen CPU% (max)",
        "stopped at",
    ]
    rows: list[list[str]] = []
    for workload in ("broadcast", "agents", "self"):
        for transport in ("lp", "ws"):
            held: dict[str, Held] = {}
            for name in res.servers:
                run = res.ramps.get((workload, transport, name))
                if run is None:
                    continue
                best, stop = best_step(run["events"])
                # before the notes below are added to ``stop``: a busy machine does not
                # make the top of the ramp a failure
                at_top = stop == "ramp top reached" and not run.get("died")
                gen = _gen_peak(run["events"])
                gen_s = f"{gen:.0f}" + (" SATURATED" if gen >= GEN_SATURATED_PCT else "")
                if run.get("died"):
                    stop += f"; SERVER DIED (exit code {run['exit']})"
                dups = sum(s["duplicates"] for s in _steps(run["events"]))
                wrong = sum(s["misrouted"] for s in _steps(run["events"]))
                if dups or wrong:
                    stop += f"; {dups} duplicates, {wrong} misrouted"
                busy = _other_peak(run["events"])
                if busy >= OTHER_BUSY_PCT:
                    stop += f" [machine busy: other {busy:.0f}%]"
                # compare nominal delivery rates of the steps held (rate x fan-out), so that
                # publish-timing jitter in the measured deliv/s cannot flip the verdict
                fanout = res.clients if workload == "broadcast" else 1
                first = next(iter(_steps(run["events"])), None)
                held[name] = Held(
                    best["rate"] * fanout if best else 0.0,
                    at_top,
                    first["rate"] * fanout if first and not best else 0.0,
                )
                rows.append(
                    [
                        workload,
                        TRANSPORT_NAMES[transport],
                        name,
                        _rate(_get(best, "rate")),
                        _fmt(_get(best, "deliveries_per_s")),
                        _fmt(_get(best, "p50_ms")),
                        _fmt(_get(best, "p99_ms")),
                        _fmt(_get(best, "max_ms")),
                        _server_cpu(best),
                        _fmt(_get(best, "server_hwm_mib")),
                        gen_s,
                        stop,
                    ]
                )
            targets += ramp_targets(workload, transport, held)
    return out + _table(header, rows)


def _rate(v: float | None) -> str:
    return _fmt(v, ",.1f" if v is not None and v < 9.95 else ",.0f")


def _server_cpu(step: dict[str, Any] | None) -> str:
    """The server's CPU %, and its redis-server's after a ``+``."""
    cpu = _fmt(_get(step, "server_cpu_pct"))
    redis = _get(step, "redis_cpu_pct")
    return cpu if redis is None else f"{cpu}+{redis:.0f}"


def render_big(res: Results, targets: list[str]) -> list[str]:
    out = [
        f"2. {res.big_clients:,} clients, {res.big_rate:g} broadcasts/s for "
        f"{res.big_seconds:g} s, over each transport",
        "",
    ]
    header = [
        "server",
        "transport",
        "",
        "deliv/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        f"lost (>{res.big_drain:g} s)",
        "dup",
        "connects/s",
        "srv CPU%",
        "peak RSS MiB",
        "gen CPU%",
        "verdict (no loss, p99 < 1 s)",
    ]
    rows = []
    keys = [(t, n) for t in ("lp", "ws") for n in res.servers if f"{t}:{n}" in res.big]
    for transport, name in keys:
        run = res.big[f"{transport}:{name}"]
        steps = _steps(run["events"])
        s = steps[0] if steps else None
        ok = None if s is None else (s["lost"] == 0 and s["p99_ms"] < 1000)
        err = next((e["message"][:60] for e in run["events"] if e.get("event") == "error"), "")
        if run.get("died"):
            err = f"SERVER DIED (exit code {run['exit']})"
        elif s is not None and s.get("other_cpu_pct", 0.0) >= OTHER_BUSY_PCT:
            err = f"machine busy: other {s['other_cpu_pct']:.0f}%"
        rows.append(
            [
                name,
                TRANSPORT_NAMES[transport],
                "",
                _fmt(_get(s, "deliveries_per_s")),
                _fmt(_get(s, "p50_ms")),
                _fmt(_get(s, "p99_ms")),
                _fmt(_get(s, "max_ms")),
                _fmt(_get(s, "lost")),
                _fmt(_get(s, "duplicates")),
                _fmt(_get(s, "connects_per_s")),
                _fmt(_get(s, "server_cpu_pct")),
                _fmt(_get(s, "server_hwm_mib")),
                _fmt(_get(s, "gen_cpu_pct")),
                verdict(ok) + (f" ({err})" if err else ""),
            ]
        )
        if name == "gateway":
            targets.append(
                f"{res.big_clients:,} clients at {res.big_rate:g} broadcasts/s over "
                f"{TRANSPORT_NAMES[transport]}: gateway {verdict(ok)}"
            )
    return out + _table(header, rows)


def render_idle(res: Results, targets: list[str]) -> list[str]:
    out = [
        "3. Idle long-poll sessions (handshake + subscribe + held connect), one server process",
        "",
    ]
    header = [
        "server",
        "",
        "",
        "sessions",
        "held conns",
        "RSS before MiB",
        "RSS after MiB",
        "KiB/session",
        "setup s",
        "anomalies",
    ]
    rows, per = [], {}
    for name in res.servers:
        r = res.idle.get(name)
        if r is None:
            continue
        kib = (r["rss_after_kib"] - r["rss_before_kib"]) / max(1, r["sessions"])
        per[name] = kib
        rows.append(
            [
                name,
                "",
                "",
                f"{r['sessions']:,}",
                f"{r['held_connections']:,}",
                f"{r['rss_before_kib'] / 1024:,.1f}",
                f"{r['rss_after_kib'] / 1024:,.1f}",
                f"{kib:.2f}",
                f"{r['setup_seconds']:.1f}",
                ", ".join(f"{k}: {v}" for k, v in r["anomalies"].items()) or "-",
            ]
        )
    out += _table(header, rows)
    first = next(iter(res.idle.values()), None)
    if first and first["sessions"] < first["target"]:
        out.append(
            f"   note: {first['sessions']:,} instead of {first['target']:,} sessions: "
            f"RLIMIT_NOFILE hard limit is {first['fd_limit']:,} here and the server "
            "needs one socket per session plus its own files"
        )
    if "faye" in per and "gateway" in per and per["faye"] > 0:
        ratio = per["gateway"] / per["faye"]
        targets.append(
            f"idle memory: gateway {per['gateway']:.2f} vs faye {per['faye']:.2f} "
            f"KiB/session = {ratio:.2f}x (target <= 0.5x): {verdict(ratio <= 0.5)}"
        )
    return out


def render_invites(res: Results, targets: list[str]) -> list[str]:
    """Contact-center invitations, one row per rate step (the gateway only)."""
    out: list[str] = []
    header = [
        "server",
        "agents",
        "",
        "rate/s",
        "created/s",
        "invites/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "lost",
        "accepted/s",
        "completed/s",
        "create p99 ms",
        "srv CPU%",
        "peak RSS MiB",
        "gen CPU%",
        "result",
    ]
    for name, run in res.invites.items():
        ready = next((e for e in run["events"] if e.get("event") == "ready"), None)
        out += [
            f"4. Contact-center invitations: {run['agents']:,} agents Ready on email (capacity 1), "
            f"each with a CometD websocket session; a partner creates email interactions at each "
            f"rate for {run['step_seconds']:g} s",
            "   latency = Invited message read by the agent - scheduled creation time (the POST "
            "is sent then unless the partner's connections are all busy); the agent then Accepts "
            "and Completes over REST;",
            f"   lost = created but no Invited within {run['drain']:g} s after the step's last "
            "creation; create p99 = the partner's POST round trip; x/s = count / (step start "
            "to the last one, at least the step)",
        ]
        if ready is not None:
            out.append(
                f"   setup: {ready['clients']:,} of {ready['wanted']:,} agents logged in, "
                f"contact-center session started, subscribed and Ready in "
                f"{ready['setup_seconds']:.1f} s"
                + (
                    f" (server CPU {ready['server_cpu_seconds']:.1f} s, RSS after "
                    f"{ready['server_rss_mib']:.0f} MiB)"
                    if "server_cpu_seconds" in ready
                    else ""
                )
            )
        out.append("")
        rows = []
        for s in _steps(run["events"]):
            result = "held" if s["held"] else f"FAILED: {s['reason']}"
            if s["duplicates"] or s["op_failed"]:
                result += f"; {s['duplicates']} duplicate invites, {s['op_failed']} ops failed"
            if s.get("other_cpu_pct", 0.0) >= OTHER_BUSY_PCT:
                result += f" [machine busy: other {s['other_cpu_pct']:.0f}%]"
            rows.append(
                [
                    name,
                    f"{s['agents']:,}",
                    "",
                    _fmt(s["rate"]),
                    _fmt(s["created_per_s"]),
                    _fmt(s["invites_per_s"]),
                    _fmt(s["p50_ms"], ",.1f"),
                    _fmt(s["p99_ms"], ",.1f"),
                    _fmt(s["max_ms"], ",.1f"),
                    _fmt(s["lost"]),
                    _fmt(s["accepted_per_s"]),
                    _fmt(s["completed_per_s"]),
                    _fmt(s["create_p99_ms"], ",.1f"),
                    _fmt(s.get("server_cpu_pct")),
                    _fmt(s.get("server_hwm_mib")),
                    _fmt(s["gen_cpu_pct"]),
                    result,
                ]
            )
        out += _table(header, rows)
        best, stop = best_step(run["events"])
        if run.get("died"):
            stop += f"; SERVER DIED (exit code {run['exit']})"
        held = (
            f"highest step held {best['rate']:,.0f} interactions/s "
            f"({best['invites_per_s']:,.0f} invites/s, p99 {best['p99_ms']:,.1f} ms)"
            if best
            else "no step held"
        )
        targets.append(
            f"invitations, {run['agents']:,} agents: {name} {held}; stopped: {stop}. "
            "No Faye peer (Faye has no contact center): figures only, no verdict"
        )
    return out


def _ms(d: dict[str, float] | None, key: str) -> str:
    return "-" if d is None else f"{d[key]:,.1f}"


def _span(values: list[float]) -> str:
    low, high = f"{min(values):,.0f}", f"{max(values):,.0f}"
    return low if low == high else f"{low}-{high}"


def render_mail(mail: dict[str, dict[str, Any]], targets: list[str]) -> list[str]:
    """Mail latency (bench/mail.py), one row per IMAP server; used by bench/mail.py alone too."""
    quiet = "/".join(sorted({str(r["quiet_ms"]) for r in mail.values() if r["quiet_ms"]})) or "-"
    out = [
        "5. Mail: a customer's email to the agent's screen, and the agent's reply to SMTP, one "
        "message at a time; the gateway, agent, clients and embedded pymap share one process "
        "(core 1)",
        "   IMAP notify = APPEND sent -> EXISTS read by a plain aioimaplib client in IDLE on "
        "another mailbox of the same server (the server's own notification delay);",
        "   to screen = APPEND sent -> Invited read off the agent's CometD websocket; "
        "created = APPEND sent -> the gateway's mail_offered; ->Invited = mail_offered -> "
        "Invited read;",
        "   Send->SMTP = the agent's Send request issued -> the SMTP sink has the message "
        "(then it answers 250); one unmeasured warm-up round first;",
        f"   before each mail the agent's session is quiet for {quiet} ms (bayeux.batch_window_ms "
        "+ 50): an event less than a window after the previous one waits for the window's end",
        "",
    ]
    header = [
        "IMAP server",
        "",
        "",
        "msgs",
        "notify p50 ms",
        "notify p99 ms",
        "to screen p50 ms",
        "p99 ms",
        "max ms",
        "screen-notify p50 ms",
        "created p50 ms",
        "->Invited p50 ms",
        "Send->SMTP p50 ms",
        "p99 ms",
        "max ms",
        "anomalies",
    ]
    rows = []
    for r in mail.values():
        notes = [f"{k}: {v}" for k, v in r["log_warnings"].items()]
        if r["imap_connects"] > 1:
            notes.append(f"listener connected {r['imap_connects']} times")
        if r["error"]:
            notes.append(f"ERROR {r['error']}")
        over = r["screen_over_notify_ms"]
        rows.append(
            [
                r["label"],
                "",
                "",
                f"{r['measured']}/{r['wanted']}",
                _ms(r["notify_ms"], "p50"),
                _ms(r["notify_ms"], "p99"),
                _ms(r["screen_ms"], "p50"),
                _ms(r["screen_ms"], "p99"),
                _ms(r["screen_ms"], "max"),
                "-" if over is None else f"{over:+,.1f}",
                _ms(r["offered_ms"], "p50"),
                _ms(r["to_agent_ms"], "p50"),
                _ms(r["send_ms"], "p50"),
                _ms(r["send_ms"], "p99"),
                _ms(r["send_ms"], "max"),
                "; ".join(notes) or "-",
            ]
        )
        if over is not None:
            targets.append(
                f"mail-to-screen, {r['label']}: p50 {_ms(r['screen_ms'], 'p50')} ms = IMAP "
                f"notification p50 {_ms(r['notify_ms'], 'p50')} ms {over:+,.1f} ms "
                f"(target <= +50 ms): {verdict(r['screen_ok'])}"
            )
        else:
            targets.append(f"mail-to-screen, {r['label']}: no figures: {verdict(None)}")
        if r["send_ms"] is not None:
            targets.append(
                f"Send -> SMTP accepted (run with {r['server']}): p50 "
                f"{_ms(r['send_ms'], 'p50')} ms (target < 50 ms): {verdict(r['send_ok'])}"
            )
    out += _table(header, rows)
    screen = [r["screen_ms"]["p50"] for r in mail.values() if r["screen_ms"]]
    send = [r["send_ms"]["p50"] for r in mail.values() if r["send_ms"]]
    if screen and send:
        out += [
            "",
            "   vs the one-minute timers of the products replaced: Engage's IMAP listener waits "
            "up to SyncMaxWaitTime (default 60 s) unless 10 messages",
            f"   arrive first (batches of 10): here mail reaches the screen in p50 "
            f"{_span(screen)} ms; Cisco CAD checks the Outbox every 60 s (average wait 30 s): "
            f"here a reply reaches SMTP in p50 {_span(send)} ms",
        ]
    return out


def render_redis_memory(res: Results, targets: list[str]) -> list[str]:
    """Redis memory per idle session and per queued event (bench/redismem.py)."""
    runs = [(name, res.redis_memory[name]) for name in res.servers if name in res.redis_memory]
    idle = runs[0][1]["idle"]
    queue = runs[0][1]["queue"]
    out = [
        "6. Redis memory: INFO memory of the server's own redis-server, before and after; keys = "
        "used_memory - mem_clients_normal - used_memory_scripts",
        "   (the data alone: without the buffers of the server's connections to Redis, counted "
        "in used_memory, nor the Lua script cache)",
        f"   idle: {idle['sessions']:,} long-poll sessions, each subscribed to a channel of its "
        f"own and holding a connect; queued: {queue['events']:,} events of "
        f"{queue['message_bytes']} bytes (as published)",
        f"   round-robin to the channels of {queue['sessions']:,} sessions that handshook, "
        "subscribed and never connect; Redis conns = connected_clients after",
        "",
    ]
    header = [
        "server",
        "",
        "",
        "idle sessions",
        "keys B/session",
        "used B/session",
        "Redis conns",
        "events in Redis",
        "keys B/event",
        "used B/event",
        "Redis conns ",
        "anomalies",
    ]
    rows = []
    for name, run in runs:
        i, q = run["idle"], run["queue"]
        notes = [f"{k}: {v}" for k, v in {**i["anomalies"], **q["anomalies"]}.items()]
        if q["in_redis"] != q["events"]:
            notes.append(f"{q['in_redis']:,} of {q['events']:,} events in Redis")
        rows.append(
            [
                name,
                "",
                "",
                f"{i['sessions']:,}",
                f"{i['keys_per_item']:,.0f}",
                f"{i['used_per_item']:,.0f}",
                f"{i['redis_clients']}",
                f"{q['in_redis']:,}",
                f"{q['keys_per_item']:,.0f}",
                f"{q['used_per_item']:,.0f}",
                f"{q['redis_clients']}",
                "; ".join(notes) or "-",
            ]
        )
        targets.append(
            f"Redis memory, {name}: {i['keys_per_item']:,.0f} B per idle session, "
            f"{q['keys_per_item']:,.0f} B per queued event ({q['message_bytes']} B published): "
            "figures only, no target"
        )
    return out + _table(header, rows)


def render_anomalies(res: Results) -> list[str]:
    lines = []
    for (workload, transport, name), run in res.ramps.items():
        for e in run["events"]:
            if e.get("event") == "done" and e.get("anomalies"):
                lines.append(f"   {name} {workload}/{TRANSPORT_NAMES[transport]}: {e['anomalies']}")
            if e.get("event") == "error":
                lines.append(
                    f"   {name} {workload}/{TRANSPORT_NAMES[transport]}: {e['message'][:300]}"
                )
    for name, run in res.big.items():
        for e in run["events"]:
            if e.get("event") in ("done", "error") and (e.get("anomalies") or e.get("message")):
                lines.append(
                    f"   {name} {res.big_clients} clients: "
                    f"{e.get('anomalies') or e.get('message', '')[:300]}"
                )
    for name, run in res.invites.items():
        for e in run["events"]:
            if e.get("event") in ("done", "error") and (e.get("anomalies") or e.get("message")):
                lines.append(
                    f"   {name} invites: {e.get('anomalies') or e.get('message', '')[:300]}"
                )
    return [
        "Protocol anomalies seen by the clients (failed replies, re-handshakes, HTTP errors):",
        *(lines or ["   none"]),
    ]


def all_steps(res: Results) -> list[dict[str, Any]]:
    runs = [*res.ramps.values(), *res.big.values(), *res.invites.values()]
    return [s for r in runs for s in _steps(r["events"])]


def render(res: Results) -> str:
    mode = "QUICK smoke run (short steps, reduced sizes)" if res.quick else "full run"
    out = [
        f"Bayeux benchmark, {res.started}, {mode}, {res.elapsed / 60:.1f} min",
        "server pinned to core 0 (taskset -c 0); load generator pinned to core 1 (taskset -c 1)",
        f"peers: {', '.join(res.peer_versions) or 'none'}; gateway: "
        "python -m gateway serve (GATEWAY_LOG__LEVEL=warning)",
        "engines: in memory"
        + (
            f"; faye-redis and gateway-redis (GATEWAY_ENGINE__KIND=redis) on a fresh "
            f"{res.redis_version} per scenario, pinned to core 0 with the server"
            if res.redis_version
            else ""
        ),
        *[f"NOTE: {n}" for n in res.notes],
        "",
    ]
    targets: list[str] = []
    if res.ramps or not (res.invites or res.mail):  # no (empty) ramp table without a ramp
        out += [*render_ramps(res, targets), ""]
    if res.big:
        out += [*render_big(res, targets), ""]
    if res.idle:
        out += [*render_idle(res, targets), ""]
    if res.invites:
        out += [*render_invites(res, targets), ""]
    if res.mail:
        out += [*render_mail(res.mail, targets), ""]
    if res.redis_memory:
        out += [*render_redis_memory(res, targets), ""]
    out += [*render_anomalies(res), ""]
    gen_peak = max(
        [
            _gen_peak(r["events"])
            for r in [*res.ramps.values(), *res.big.values(), *res.invites.values()]
        ]
        or [0.0]
    )
    other = max((s.get("other_cpu_pct", 0.0) for s in all_steps(res)), default=0.0)
    if other >= OTHER_BUSY_PCT:
        out.append(
            f"WARNING: other processes used up to {other:.0f}% of a core during a step: "
            "the machine was not idle, numbers are not reliable; rerun on an idle machine"
        )
    if gen_peak >= GEN_SATURATED_PCT:
        verdict = " -- SATURATED: rates near the top may be limited by the generator"
    elif gen_peak >= GEN_BUSY_PCT:
        verdict = " (busy: latency at those steps includes some generator queueing)"
    else:
        verdict = " (not the bottleneck)"
    if res.ramps or res.big or res.invites:  # the mail section runs no load generator
        out.append(f"Load generator peak CPU: {gen_peak:.0f}% of core 1{verdict}")
    out += ["", "Targets:", *[f"   {t}" for t in targets or ["(need both servers)"]]]
    return "\n".join(out) + "\n"
