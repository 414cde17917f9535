"""Mail latency: a customer's email to the agent's screen, and the agent's reply to SMTP.

Run by bench/run.py (``--only mail``) or alone::

    .venv/bin/python bench/mailbench.py            # 50 messages per IMAP server, under ~1.5 min
    .venv/bin/python bench/mailbench.py --quick    # 10 messages per IMAP server

For each IMAP server, a real Dovecot (tests/mailservers.py, its own temp dir, pinned to core 0)
and the embedded pymap of ``gateway serve --demo`` (gateway/mail/demo.py, in this process), the
bench starts a gateway in this process (``gateway.server.start``, as the tests do, plus the
garbage-collector policy ``gateway serve`` runs) with its own temp data directory, one agent
(email capacity 100) and ``mail.sources`` pointing at one mailbox (plain IMAP), and an SMTP sink
(tests/mailservers.py) as its sender.  The agent logs in over REST, holds a CometD websocket
session subscribed to ``/v2/me/interactions`` and goes Ready on email.  Then, one message at a
time (one unmeasured warm-up round first):

1. **IMAP notification delay**: APPEND into a second mailbox of the same server, which a plain
   aioimaplib client watches in IDLE; APPEND sent -> ``EXISTS`` read by the watcher.  (The
   gateway's listener moves what it claims, so the watcher cannot share its mailbox.)
2. **Mail to screen**: APPEND into the gateway's mailbox from another connection; APPEND sent ->
   the agent's Invited read off its websocket.  The gateway's ``mail_offered`` log event splits
   it in two (APPEND -> interaction created; created -> Invited read).  Before each mail the
   agent's session has been quiet for ``bayeux.batch_window_ms`` + 50 ms: an event that follows
   another within the window waits for the window's end (up to 250 ms by default), which would
   measure the previous round's events rather than this mail.
3. **Send to SMTP**: the agent Accepts, Replies and Sends; the Send request issued -> the sink
   has the whole message (after DATA, before its 250).  Then the original is Completed.

Targets (issue): mail-to-screen p50 within 50 ms of the IMAP server's own notification delay
(Dovecot delays IDLE notifications by a fixed ~500 ms, NOTIFY_DELAY_MSECS); Send -> SMTP p50
under 50 ms.  Everything listens on 127.0.0.1; every server, process and temp dir started here
is stopped or removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import structlog
from invites import percentile
from report import render_mail

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.append(str(TESTS_DIR))

import aioimaplib  # noqa: E402
from conformance.client import WebSocketClient, is_event  # noqa: E402
from contact.desktop import Desktop, write_users  # noqa: E402
from mail.gateway import customer_mail  # noqa: E402
from mail.gateway import sender as mail_sender  # noqa: E402
from mail.gateway import source as mail_source  # noqa: E402
from mailservers import HOST, Dovecot, ImapProbe, ReceivedMessage, SmtpSink, find_exe  # noqa: E402

from gateway.app import CONFIG, create_app  # noqa: E402
from gateway.config import MailConfig, load_config  # noqa: E402
from gateway.gcpolicy import GcPolicy  # noqa: E402
from gateway.mail.runtime import MAIL  # noqa: E402
from gateway.server import RunningGateway, start  # noqa: E402

INTERACTIONS = "/v2/me/interactions"
AGENT = "agent1"
SOURCE = "support"
SCREEN_MARGIN_MS = 50.0  # target: mail-to-screen p50 <= notification p50 + this
SEND_TARGET_MS = 50.0  # target: Send -> SMTP accepted p50 < this
WITHIN = 10.0  # longest wait for any one step of a round
QUIET_MARGIN_MS = 50  # the agent's session is quiet for its batch window + this before a mail
SERVERS = ("dovecot", "pymap")

Stamped = tuple[float, dict[str, Any]]


class RoundFailed(Exception):
    """A step of a round did not happen in time, or an operation was refused."""


# -- clients --------------------------------------------------------------------------------------


class StampedWebSocket(WebSocketClient):
    """The agent's CometD websocket: each event is kept with the time it was read, and once
    :meth:`hold` is called a new ``/meta/connect`` goes out whenever the held one is answered
    (the server answers it after ``bayeux.timeout_ms``; without one the session would expire)."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.stamped: list[Stamped] = []
        self.last_read = 0.0  # time.perf_counter() when the last event was read
        self._holding = False
        self._sends: set[asyncio.Task[None]] = set()

    def _record(self, messages: Any) -> None:
        now = time.perf_counter()
        for m in messages:
            if not isinstance(m, dict):
                continue
            if is_event(m):
                self.stamped.append((now, m))
                self.last_read = now
            elif self._holding and m.get("channel") == "/meta/connect" and m.get("successful"):
                self.hold()

    def hold(self) -> None:
        self._holding = True
        task = asyncio.get_running_loop().create_task(self.send_frame([self.connect_message()]))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def next_event(
        self, where: Callable[[dict[str, Any]], bool], within: float = WITHIN
    ) -> Stamped:
        """The first interaction event matching ``where`` (removed) and when it was read."""

        def pick() -> Stamped | None:
            for k, (t, m) in enumerate(self.stamped):
                data = m.get("data")
                if m.get("channel") == INTERACTIONS and isinstance(data, dict) and where(data):
                    del self.stamped[k]
                    return t, data
            return None

        try:
            found: Stamped = await self.wait_until(pick, within)
        except TimeoutError:
            raise RoundFailed(f"no matching event within {within:g} s") from None
        return found


class Agent:
    """One agent desktop: REST (cookie + CSRF) and a held websocket session."""

    def __init__(self, base: str) -> None:
        self.desk = Desktop(base, AGENT, "websocket")
        self.ws = StampedWebSocket(base + "/api/v2/notifications", http=self.desk.http)
        self.last = ""  # the interaction Completed last: its event ends the agent's round

    async def open(self) -> None:
        status, body = await self.desk.login()
        if status != 200:
            raise RuntimeError(f"agent login: HTTP {status} {body}")
        await self.ws.open()
        self.desk.bayeux = self.ws  # closed with the desktop
        for reply in (await self.ws.handshake(), await self.ws.connect()):
            if not reply.get("successful"):
                raise RuntimeError(f"CometD session: {reply}")
        sub = await self.ws.subscribe(INTERACTIONS)
        if not sub.get("successful"):
            raise RuntimeError(f"subscribe: {sub}")
        self.ws.hold()
        await self.desk.start("email")

    async def operate(self, interaction_id: str, operation: str, **params: Any) -> None:
        status, body = await self.desk.operate(interaction_id, operation, **params)
        if status != 200 or body.get("statusCode") != 0:
            raise RoundFailed(f"{operation}: HTTP {status} {body}")

    async def draft_of(self, interaction_id: str) -> str:
        """The id of the reply being composed to ``interaction_id``."""
        status, body = await self.desk.get("/api/v2/me/interactions?fields=*")
        for data in body.get("interactions", []) if status == 200 else []:
            if data.get("parentInteractionId") == interaction_id and data["state"] == "Composing":
                return str(data["id"])
        raise RoundFailed(f"no draft in Composing for {interaction_id}: HTTP {status} {body}")

    async def settle(self, quiet_s: float) -> None:
        """Until the last round's final event has been read and nothing came for ``quiet_s``:
        then the gateway sends the next event at once, not at the end of a batch window."""
        if self.last:
            last = self.last
            await self.ws.next_event(lambda d: d.get("state") == "Completed" and d["id"] == last)
        await asyncio.sleep(max(0.0, self.ws.last_read + quiet_s - time.perf_counter()))
        self.ws.stamped.clear()

    async def close(self) -> None:
        await self.desk.close()


class IdleWatcher:
    """A plain aioimaplib client in IDLE on a mailbox's INBOX; stamps each EXISTS it reads."""

    def __init__(self, probe: ImapProbe) -> None:
        self.probe = probe
        self.seen: asyncio.Queue[float] = asyncio.Queue()
        self._idle: asyncio.Future[Any] | None = None
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, port: int, user: str, password: str) -> IdleWatcher:
        probe = await ImapProbe.connect(port, user, password)
        watcher = cls(probe)
        try:
            if (await probe.client.select("INBOX")).result != "OK":
                raise RuntimeError(f"SELECT INBOX refused for {user}")
            watcher._idle = await probe.client.idle_start(timeout=600)
        except BaseException:
            await probe.close()
            raise
        watcher._reader = asyncio.create_task(watcher._read())
        return watcher

    async def _read(self) -> None:
        client = self.probe.client
        while True:
            push = await client.wait_server_push(timeout=600)
            now = time.perf_counter()
            if push == aioimaplib.STOP_WAIT_SERVER_PUSH:
                return
            if any(isinstance(x, bytes) and x.endswith(b" EXISTS") for x in push):
                self.seen.put_nowait(now)

    def forget(self) -> None:
        while not self.seen.empty():
            self.seen.get_nowait()

    async def next_exists(self, within: float = WITHIN) -> float:
        try:
            return await asyncio.wait_for(self.seen.get(), within)
        except TimeoutError:
            raise RoundFailed(f"the IDLE watcher saw no EXISTS within {within:g} s") from None

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._idle is not None and not self._idle.done():
            self.probe.client.idle_done()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._idle, 2)
        await self.probe.close()


class StampedSink(SmtpSink):
    """The SMTP sink, noting when each message was received (whole DATA, before the 250)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: asyncio.Queue[float] = asyncio.Queue()

    async def _received(self, message: ReceivedMessage) -> None:
        self.arrivals.put_nowait(time.perf_counter())
        await super()._received(message)

    async def next_arrival(self, within: float = WITHIN) -> float:
        try:
            return await asyncio.wait_for(self.arrivals.get(), within)
        except TimeoutError:
            raise RoundFailed(f"the SMTP sink received nothing within {within:g} s") from None


class LogEvents:
    """structlog set to keep every event dict in memory (stamped) and print nothing."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, _: Any, level: str, event: dict[str, Any]) -> dict[str, Any]:
        event["t"] = time.perf_counter()
        event["level"] = level
        self.events.append(event)
        raise structlog.DropEvent

    @contextlib.contextmanager
    def installed(self) -> Iterator[LogEvents]:
        structlog.configure(
            processors=[structlog.contextvars.merge_contextvars, self],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.ReturnLoggerFactory(),
            cache_logger_on_first_use=False,
        )
        try:
            yield self
        finally:
            structlog.reset_defaults()

    def offered_at(self, interaction_id: str, after: int = 0) -> float | None:
        for e in self.events[after:]:
            if e.get("event") == "mail_offered" and e.get("interaction_id") == interaction_id:
                return float(e["t"])
        return None


# -- one IMAP server ------------------------------------------------------------------------------


def numbered_mail(n: int, to: str, what: str) -> bytes:
    raw, _ = customer_mail(
        f"Order {n} has not arrived ({what})",
        f"Hello,\nmy order {n} has not arrived.",
        sender=f"Customer {n} <customer{n}@customer.example>",
        to=to,
    )
    return raw


def dovecot_version() -> str:
    exe = find_exe("dovecot")
    if exe is None:
        return "Dovecot"
    done = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return f"Dovecot {done.stdout.split()[0]}" if done.stdout.strip() else "Dovecot"


def _start_pinned(dovecot: Dovecot, core: int | None) -> bool:
    """Start Dovecot from this (worker) thread pinned to ``core``, which its processes
    inherit; whether the pinning worked."""
    before = os.sched_getaffinity(0)
    pinned = False
    if core is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {core})
            pinned = True
    try:
        dovecot.start()
    finally:
        os.sched_setaffinity(0, before)
    return pinned


@dataclass(frozen=True, kw_only=True)
class Mailboxes:
    """Where one IMAP server's two mailboxes are: the gateway's and the watcher's."""

    label: str
    port: int
    source: dict[str, Any]  # the [[mail.sources]] entry (the gateway's mailbox)
    probe_user: str
    probe_password: str


async def start_imap(
    kind: str, stack: contextlib.AsyncExitStack, imap_core: int | None
) -> Mailboxes:
    if kind == "dovecot":
        dovecot = Dovecot()
        stack.push_async_callback(asyncio.to_thread, dovecot.close)
        pinned = await asyncio.to_thread(_start_pinned, dovecot, imap_core)
        gw, probe = dovecot.new_mailbox("gw"), dovecot.new_mailbox("probe")
        source = mail_source(gw, name=SOURCE)
        where = f"core {imap_core}" if pinned else "not pinned"
        return Mailboxes(
            label=f"{await asyncio.to_thread(dovecot_version)} ({where})",
            port=dovecot.imap_port,
            source=source,
            probe_user=probe.user,
            probe_password=probe.password,
        )
    from gateway.mail.demo import CUSTOMER, PASSWORDS, DemoMail  # imports pymap

    demo = await stack.enter_async_context(DemoMail(MailConfig(demo_imap_port=0, demo_smtp_port=0)))
    source = msgspec.to_builtins(demo.source)
    source.update(name=SOURCE, sender="")  # replies go to our sink, not the demo SMTP server
    return Mailboxes(
        label=f"pymap {importlib.metadata.version('pymap')} (embedded)",
        port=demo.imap_port,
        source=source,
        probe_user=CUSTOMER,
        probe_password=PASSWORDS[CUSTOMER],
    )


async def start_gateway(data_dir: Path, source: dict[str, Any], sink: SmtpSink) -> RunningGateway:
    write_users(data_dir, [AGENT], email=100)  # every message can be offered
    sections: dict[str, Any] = {
        "agents": {"allow_anonymous_bayeux": False},
        "store": {"data_dir": str(data_dir)},
        "mail": {
            "sources": [source],
            "senders": [mail_sender(sink)],
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
            "timeout_s": 5.0,
        },
    }
    config = load_config(env={}, overrides=sections)
    return await start(create_app(config), HOST, 0)


def gc_policy(gateway: RunningGateway) -> GcPolicy:
    """The garbage-collector policy ``gateway serve`` runs next to the gateway."""
    server = gateway.app[CONFIG].server
    return GcPolicy(server.gc_freeze_interval_s, server.gc_full_interval_s)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Series:
    """The per-round figures of one server, in ms."""

    def __init__(self) -> None:
        self.notify: list[float] = []
        self.screen: list[float] = []
        self.offered: list[float] = []  # APPEND sent -> interaction created (mail_offered)
        self.to_agent: list[float] = []  # interaction created -> Invited read
        self.send: list[float] = []


@dataclass(frozen=True, kw_only=True)
class Rig:
    """What a round uses: the watcher and its APPEND connection, the gateway's APPEND
    connection, the agent, the sink and the gateway's log events."""

    watcher: IdleWatcher
    probe_in: ImapProbe
    gw_in: ImapProbe
    agent: Agent
    sink: StampedSink
    logs: LogEvents
    address: str  # the gateway mailbox's address (the customers' To)
    quiet_s: float  # the agent's session is quiet this long before each mail (batch window)


async def one_round(rig: Rig, n: int, series: Series | None) -> None:
    """One message each way; figures go to ``series`` (None: warm-up)."""
    watcher, agent, sink, logs = rig.watcher, rig.agent, rig.sink, rig.logs
    # 1. the IMAP server's own notification delay, on the watcher's mailbox (meanwhile the
    #    agent's session gets the previous round's last events)
    watcher.forget()
    t0 = time.perf_counter()
    await rig.probe_in.append(numbered_mail(n, rig.address, "probe"))
    notify = await watcher.next_exists() - t0
    await agent.settle(rig.quiet_s)

    # 2. mail to screen, on the gateway's mailbox
    mark = len(logs.events)
    t0 = time.perf_counter()
    await rig.gw_in.append(numbered_mail(n, rig.address, "gateway"))
    t_invited, invited = await agent.ws.next_event(lambda d: d.get("state") == "Invited")
    ix = str(invited["id"])
    t_offered = logs.offered_at(ix, mark)

    # 3. Accept, Reply, Send -> the sink has it; then Complete the original.  The draft's id
    #    comes by REST: its Composing event waits for the session's next batch window.
    await agent.operate(ix, "Accept")
    await agent.operate(ix, "Reply")
    draft = await agent.draft_of(ix)
    body = {"bodyAsPlainText": f"Your parcel {n} left today.", "body": "<p>On its way</p>"}
    t0_send = time.perf_counter()
    await agent.operate(draft, "Send", email=body)
    send = await sink.next_arrival() - t0_send
    await agent.operate(ix, "Complete")
    agent.last = ix

    if series is not None:
        series.notify.append(1000 * notify)
        series.screen.append(1000 * (t_invited - t0))
        if t_offered is not None:
            series.offered.append(1000 * (t_offered - t0))
            series.to_agent.append(1000 * (t_invited - t_offered))
        series.send.append(1000 * send)


def stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99), "max": max(values)}


def summarize(
    kind: str,
    label: str,
    wanted: int,
    s: Series,
    logs: LogEvents,
    *,
    error: str,
    seconds: float,
    quiet_ms: int,
) -> dict[str, Any]:
    notify, screen, send = stats(s.notify), stats(s.screen), stats(s.send)
    over = screen["p50"] - notify["p50"] if screen and notify else None
    warnings = Counter(
        str(e["event"]) for e in logs.events if e.get("level") in ("warning", "error", "critical")
    )
    return {
        "server": kind,
        "label": label,
        "wanted": wanted,
        "measured": len(s.screen),
        "notify_ms": notify,
        "screen_ms": screen,
        "offered_ms": stats(s.offered),
        "to_agent_ms": stats(s.to_agent),
        "send_ms": send,
        "screen_over_notify_ms": over,
        "screen_ok": None if over is None else over <= SCREEN_MARGIN_MS,
        "send_ok": None if send is None else send["p50"] < SEND_TARGET_MS,
        "imap_connects": sum(1 for e in logs.events if e.get("event") == "imap_connected"),
        "log_warnings": dict(warnings),
        "error": error,
        "seconds": seconds,
        "quiet_ms": quiet_ms,
        "raw_ms": {
            "notify": s.notify,
            "screen": s.screen,
            "offered": s.offered,
            "send": s.send,
        },
    }


async def measure(
    kind: str, messages: int, time_limit: float, imap_core: int | None
) -> dict[str, Any]:
    """Everything for one IMAP server, set up and torn down; the summary."""
    series = Series()
    logs = LogEvents()
    label, error, quiet_ms = kind, "", 0
    t_start = time.monotonic()
    with logs.installed(), tempfile.TemporaryDirectory(prefix="bench-mail-") as tmp:
        try:
            async with contextlib.AsyncExitStack() as stack:
                boxes = await start_imap(kind, stack, imap_core)
                label = boxes.label
                sink = StampedSink()
                await sink.start()
                stack.push_async_callback(sink.stop)
                gateway = await start_gateway(Path(tmp), boxes.source, sink)
                stack.push_async_callback(gateway.close)
                stack.push_async_callback(_cancel, asyncio.create_task(gc_policy(gateway).run()))
                quiet_ms = gateway.app[CONFIG].bayeux.batch_window_ms + QUIET_MARGIN_MS
                listener = gateway.app[MAIL].listeners[SOURCE]
                await asyncio.wait_for(listener.ready.wait(), WITHIN)
                agent = Agent(f"http://{HOST}:{gateway.port}")
                stack.push_async_callback(agent.close)
                await agent.open()
                watcher = await IdleWatcher.start(
                    boxes.port, boxes.probe_user, boxes.probe_password
                )
                stack.push_async_callback(watcher.close)
                source = boxes.source
                gw_in = await ImapProbe.connect(boxes.port, source["username"], source["password"])
                stack.push_async_callback(gw_in.close)
                probe_in = await ImapProbe.connect(
                    boxes.port, boxes.probe_user, boxes.probe_password
                )
                stack.push_async_callback(probe_in.close)
                rig = Rig(
                    watcher=watcher,
                    probe_in=probe_in,
                    gw_in=gw_in,
                    agent=agent,
                    sink=sink,
                    logs=logs,
                    address=source["address"],
                    quiet_s=quiet_ms / 1000,
                )
                await one_round(rig, 0, None)  # warm-up: first SMTP connection, caches
                deadline = time.monotonic() + time_limit
                for n in range(1, messages + 1):
                    if time.monotonic() > deadline:
                        error = f"time limit ({time_limit:g} s) reached after {n - 1} messages"
                        break
                    await one_round(rig, n, series)
        except Exception as exc:  # reported in the table; the run goes on
            error = f"{type(exc).__name__}: {exc}"[:300]
    seconds = time.monotonic() - t_start
    return summarize(
        kind, label, messages, series, logs, error=error, seconds=seconds, quiet_ms=quiet_ms
    )


def progress(r: dict[str, Any]) -> None:
    def ms(d: dict[str, float] | None, key: str = "p50") -> str:
        return "-" if d is None else f"{d[key]:.1f}"

    over = r["screen_over_notify_ms"]
    print(
        f"  [mail-{r['server']}] {r['measured']}/{r['wanted']} messages in "
        f"{r['seconds']:.1f} s: IMAP notify p50 {ms(r['notify_ms'])} ms, mail-to-screen p50 "
        f"{ms(r['screen_ms'])} ms (p99 {ms(r['screen_ms'], 'p99')}, "
        f"{'-' if over is None else f'{over:+.1f}'} over notify), Send->SMTP p50 "
        f"{ms(r['send_ms'])} ms (p99 {ms(r['send_ms'], 'p99')})"
        + (f"  ERROR: {r['error']}" if r["error"] else ""),
        flush=True,
    )


def run(quick: bool, *, messages: int | None = None, imap_core: int | None = 0) -> dict[str, Any]:
    """The whole section: both IMAP servers one after the other; results by server name."""
    count = messages if messages is not None else (10 if quick else 50)
    limit = 25.0 if quick else 60.0  # per server: the section stays well under 2 minutes
    core = imap_core if imap_core is not None and (os.cpu_count() or 1) > 1 else None
    out: dict[str, Any] = {}
    for kind in SERVERS:
        out[kind] = asyncio.run(measure(kind, count, limit, core))
        progress(out[kind])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="10 messages per server instead of 50")
    p.add_argument("--messages", type=int, default=None, help="messages per server")
    args = p.parse_args(argv)
    with contextlib.suppress(OSError):
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(0, {1})  # as under bench/run.py: Dovecot on core 0, us on 1
    results = run(args.quick, messages=args.messages)
    targets: list[str] = []
    print()
    print("\n".join(render_mail(results, targets)))
    print("\nTargets:\n" + "\n".join(f"   {t}" for t in targets))
    return 0 if all(r["screen_ok"] and r["send_ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
