"""Contact-center invitations: time from an interaction's creation to its Invited message.

Run by bench/run.py (``--only invites``, gateway only: Faye has no contact center), pinned to
core 1, against a gateway whose data directory holds the users file :func:`write_users` made.
Prints one JSON object per line on stdout: ``{"event": "ready", ...}``, one
``{"event": "step", ...}`` per rate step, ``{"event": "done", ...}``.

Setup, every agent, at most ``--setup-concurrency`` at a time: ``GET /api/v2/me`` with HTTP
Basic (session cookie + CSRF token), ``StartContactCenterSession`` on email, a CometD session
over websocket (handshake with ``ext.token`` = the session id, subscribe
``/v2/me/interactions``, a held ``/meta/connect``), then ``Ready`` on email.

Load: a partner creates email interactions (``POST /api/v2/interactions``, Bearer token) at
each rate for ``--step-seconds``; each carries its sequence number and *scheduled* creation
time (``time.time()``) in ``userData``, which the Invited message carries back, so latency =
Invited read off the agent's socket - scheduled creation time (equal to the moment the POST is
written, unless the partner's connections are all busy: then the wait counts too).  On Invited
the agent Accepts and then Completes it over REST (its own keep-alive connection), which frees
its capacity.  A step fails when p99 > ``--max-p99`` or when an interaction created in it has
no Invited within ``--drain`` seconds after its last creation (lost).

Every client here speaks HTTP/1.1 and WebSocket directly (bench/wire.py) rather than through
aiohttp: the generator has one core for 1,000 agents' REST calls and sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import resource
import secrets
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import msgspec
from metrics import add_server_figures, machine_busy_seconds, sample, self_cpu
from wire import WebSocketConnection

from gateway.gcpolicy import GcPolicy

wall = time.time  # one clock for creation and receipt: same machine, same process
INTERACTIONS = "/v2/me/interactions"
CONNECT = "/meta/connect"
ACCEPT = b'{"operationName":"Accept"}'
COMPLETE = b'{"operationName":"Complete"}'
OK_PREFIX = b'{"statusCode":0'
SECRETS_FILE = "bench-secrets.json"

# Reply to one HTTP request: status (0 = no response: the connection failed), head, body.
Reply = Callable[[int, bytes, bytes], None]


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


# -- the users file (written by the orchestrator, before the server starts) ---------------------


def write_users(data_dir: Path, agents: int, prefix: str = "agent") -> Path:
    """Write ``users.json`` with ``agents`` agents (cheap argon2 hashes, so logins are fast)
    and one partner; return the file (mode 0600) holding their password and the token."""
    from argon2 import PasswordHasher

    from gateway.agents.users import Directory

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    password = secrets.token_urlsafe(16)
    directory = Directory()
    for i in range(agents):
        directory.add_user(f"{prefix}{i}", password, hasher=cheap)
    token = directory.add_partner("bench")
    directory.save(data_dir / "users.json")
    path = data_dir / SECRETS_FILE
    path.touch(mode=0o600)
    path.write_text(
        json.dumps({"agents": agents, "prefix": prefix, "password": password, "token": token})
    )
    return path


# -- wire messages ------------------------------------------------------------------------------


class BenchData(msgspec.Struct):
    bench_s: int = -1
    bench_t: float = 0.0


class Interaction(msgspec.Struct):
    id: str = ""
    state: str = ""
    userData: BenchData | None = None  # GWS field name


class Msg(msgspec.Struct):
    channel: str = ""
    data: Interaction | None = None
    successful: bool | None = None
    clientId: str | None = None  # Bayeux field name
    error: str | None = None
    advice: dict[str, Any] | None = None


DECODER = msgspec.json.Decoder(list[Msg])
ENCODE = msgspec.json.encode


def _ok(status: int, body: bytes) -> bool:
    return status == 200 and body.startswith(OK_PREFIX)


def _why(status: int, body: bytes) -> str:
    if status == 0:
        return "no response"
    try:
        reply = msgspec.json.decode(body)
        return f"HTTP {status} statusCode {reply.get('statusCode')}: {reply.get('statusMessage')}"
    except (msgspec.DecodeError, AttributeError):
        return f"HTTP {status}: {body[:80]!r}"


def _header(head: bytes, name: bytes) -> list[str]:
    """Values of header ``name`` (lower case) in a response head."""
    out = []
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            out.append(value.strip().decode("latin-1"))
    return out


# -- HTTP/1.1 keep-alive REST client ------------------------------------------------------------


class _RestProtocol(asyncio.Protocol):
    """One TCP connection; parses Content-Length responses and hands them to its client."""

    def __init__(self, client: RestClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._head = b""
        self._status = 0
        self._need = -1  # body bytes expected (-1: reading a head)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.client.lost(self)

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while True:
            if self._need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end])
                del buf[: end + 4]
                low = head.lower()
                if b"\r\ntransfer-encoding:" in low:
                    self.client.anomalies["chunked REST response (unsupported)"] += 1
                    if self.transport is not None:
                        self.transport.close()
                    return
                at = low.find(b"\r\ncontent-length:")
                length = 0
                if at >= 0:
                    stop = low.find(b"\r\n", at + 2)
                    length = int(low[at + 17 : stop if stop >= 0 else len(low)])
                self._head, self._status, self._need = head, int(head[9:12]), length
            if len(buf) < self._need:
                return
            body = bytes(buf[: self._need])
            del buf[: self._need]
            self._need = -1
            self.client.response(self._status, self._head, body)


class RestClient:
    """A keep-alive HTTP/1.1 connection carrying one request at a time; later requests wait in
    order.  Reopened when the server closes it (idle keep-alive timeout)."""

    def __init__(
        self, host: str, port: int, headers: bytes, anomalies: Counter[str], what: str
    ) -> None:
        self.host, self.port = host, port
        self.headers = headers  # Host and whatever else every request carries
        self.anomalies = anomalies
        self.what = what  # "agent" | "partner", for anomaly names
        self.queue: deque[tuple[bytes, Reply]] = deque()
        self.inflight: tuple[bytes, Reply] | None = None
        self.proto: _RestProtocol | None = None
        self.opened = 0
        self._opening = False

    @property
    def idle(self) -> bool:
        return self.inflight is None and not self.queue

    def request(
        self, method: str, path: str, body: bytes | None, reply: Reply, extra: bytes = b""
    ) -> None:
        head = b"%s %s HTTP/1.1\r\n%s%s" % (method.encode(), path.encode(), self.headers, extra)
        if body is None:
            data = head + b"\r\n"
        else:
            data = b"%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
                head,
                len(body),
                body,
            )
        self.queue.append((data, reply))
        self._pump()

    async def call(
        self, method: str, path: str, body: bytes | None = None, extra: bytes = b""
    ) -> tuple[int, bytes, bytes]:
        done: asyncio.Future[tuple[int, bytes, bytes]] = asyncio.get_running_loop().create_future()

        def reply(status: int, head: bytes, data: bytes) -> None:
            if not done.done():
                done.set_result((status, head, data))

        self.request(method, path, body, reply, extra)
        return await done

    def _pump(self) -> None:
        if self.inflight is not None or not self.queue:
            return
        proto = self.proto
        if proto is None or proto.transport is None or not proto.open:
            if not self._opening:
                self._opening = True
                asyncio.get_running_loop().create_task(self._open())
            return
        self.inflight = self.queue.popleft()
        proto.transport.write(self.inflight[0])

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await loop.create_connection(
                lambda: _RestProtocol(self), self.host, self.port
            )
        except OSError as exc:
            self._opening = False
            self.anomalies[f"{self.what} REST connect failed: {exc}"] += 1
            failed, self.queue = self.queue, deque()
            for _, reply in failed:
                reply(0, b"", b"")
            return
        if self.opened:
            self.anomalies[f"{self.what} REST connection reopened"] += 1
        self.opened += 1
        self.proto = proto
        self._opening = False
        self._pump()

    def response(self, status: int, head: bytes, body: bytes) -> None:
        done, self.inflight = self.inflight, None
        if b"\r\nconnection: close" in head.lower() and self.proto is not None:
            self.proto.client = _Detached()
            if self.proto.transport is not None:
                self.proto.transport.close()
            self.proto = None
        self._pump()
        if done is not None:
            done[1](status, head, body)

    def lost(self, proto: _RestProtocol) -> None:
        if proto is not self.proto:
            return
        self.proto = None
        if self.inflight is not None:
            _, reply = self.inflight
            self.inflight = None
            self.anomalies[f"{self.what} REST connection closed under a request"] += 1
            reply(0, b"", b"")
        self._pump()

    def close(self) -> None:
        self.queue.clear()
        if self.proto is not None and self.proto.transport is not None:
            self.proto.client = _Detached()
            self.proto.transport.close()
        self.proto = None


class _Detached(RestClient):
    """Stands in for the client of a connection it gave up (its late events are ignored)."""

    def __init__(self) -> None:
        super().__init__("", 0, b"", Counter(), "")

    def response(self, status: int, head: bytes, body: bytes) -> None:
        return None

    def lost(self, proto: _RestProtocol) -> None:
        return None


# -- measurement --------------------------------------------------------------------------------


class Step:
    """The interactions created in one rate step: sequence numbers ``base .. base+count-1``."""

    def __init__(self, rate: float, base: int, count: int) -> None:
        self.rate, self.base, self.count = rate, base, count
        self.created_ok = bytearray(count)
        self.seen = bytearray(count)
        self.latencies: list[float] = []
        self.create_rtts: list[float] = []
        self.created = self.create_failed = 0
        self.duplicates = 0
        self.accepted = self.completed = self.op_failed = 0
        self.pub_lag_max = 0.0
        # time.monotonic() of the last creation answered, Invited read, Accept/Complete answered
        self.last_created = self.last_invited = self.last_accepted = self.last_completed = 0.0
        self.publishing = True
        self.done = asyncio.Event()  # every creation answered, invited and completed

    @property
    def invited(self) -> int:
        return len(self.latencies)

    def check(self) -> None:
        answered = self.created + self.create_failed
        ops = self.accepted + self.completed + self.op_failed
        if (
            not self.publishing
            and answered >= self.count
            and self.invited >= self.created
            and ops >= 2 * self.invited
        ):
            self.done.set()

    def lost(self) -> int:
        return sum(
            1 for ok, seen in zip(self.created_ok, self.seen, strict=True) if ok and not seen
        )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Bench:
    """The steps so far; finds the step of a sequence number."""

    def __init__(self, anomalies: Counter[str]) -> None:
        self.anomalies = anomalies
        self.steps: list[Step] = []

    def step_of(self, seq: int) -> tuple[Step, int] | None:
        for step in reversed(self.steps):
            k = seq - step.base
            if 0 <= k < step.count:
                return step, k
        return None

    def created(self, seq: int, ok: bool, rtt: float, why: str) -> None:
        found = self.step_of(seq)
        if found is None:
            return
        step, k = found
        if ok:
            step.created += 1
            step.created_ok[k] = 1
            step.last_created = time.monotonic()
            step.create_rtts.append(rtt)
        else:
            step.create_failed += 1
            self.anomalies[f"create failed: {why}"] += 1
        step.check()

    def invited(self, seq: int, latency: float) -> Step | None:
        found = self.step_of(seq)
        if found is None:
            self.anomalies["Invited for an interaction the bench did not create"] += 1
            return None
        step, k = found
        if step.seen[k]:
            step.duplicates += 1
            return None
        step.seen[k] = 1
        step.latencies.append(latency)
        step.last_invited = time.monotonic()
        return step


# -- agents -------------------------------------------------------------------------------------


class AgentSocket:
    """The agent's CometD session over one websocket: events are pushed while a connect is
    held, and a new connect goes out as soon as the previous one returns."""

    def __init__(self, agent: Agent, host: str, port: int, path: str) -> None:
        self.agent = agent
        self.host, self.port, self.path = host, port, path
        self.ws: WebSocketConnection | None = None
        self.client_id = ""
        self.polling = False
        self.connects = 0
        self._next_id = 0
        self._pending: asyncio.Future[list[Msg]] | None = None
        self._waiting_for = ""

    def _id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    async def setup(self, token: str) -> None:
        loop = asyncio.get_running_loop()
        authority = f"{self.host}:{self.port}"
        _, ws = await loop.create_connection(
            lambda: WebSocketConnection(authority, self.path, self._on_text, self._on_close),
            self.host,
            self.port,
        )
        await ws.upgraded
        self.ws = ws
        handshake = {
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["websocket"],
            "id": self._id(),
            "ext": {"token": token},
        }
        reply = await self._exchange([handshake])
        hs = next((m for m in reply if m.channel == "/meta/handshake"), None)
        if hs is None or not hs.successful or not hs.clientId:
            raise ConnectionError(f"handshake failed: {hs}")
        self.client_id = hs.clientId
        sub = {
            "channel": "/meta/subscribe",
            "clientId": self.client_id,
            "subscription": INTERACTIONS,
            "id": self._id(),
        }
        reply = await self._exchange([sub])
        if not any(m.channel == "/meta/subscribe" and m.successful for m in reply):
            raise ConnectionError(f"subscribe failed: {reply}")
        self.polling = True
        self._send_connect()

    async def _exchange(self, messages: list[dict[str, Any]]) -> list[Msg]:
        assert self.ws is not None
        self._pending = asyncio.get_running_loop().create_future()
        self._waiting_for = messages[0]["channel"]
        self.ws.send_text(ENCODE(messages))
        return await asyncio.wait_for(self._pending, 30)

    def _send_connect(self) -> None:
        if self.ws is None or not self.ws.open:
            return
        self.connects += 1
        message = {
            "channel": CONNECT,
            "clientId": self.client_id,
            "connectionType": "websocket",
            "id": self._id(),
        }
        self.ws.send_text(ENCODE([message]))

    def _on_text(self, payloads: list[bytes | memoryview]) -> None:
        now = wall()
        anomalies = self.agent.anomalies
        for payload in payloads:
            try:
                msgs = DECODER.decode(payload)
            except msgspec.DecodeError:
                anomalies["undecodable frame"] += 1
                continue
            pending = self._pending
            if (
                pending is not None
                and not pending.done()
                and any(m.channel == self._waiting_for for m in msgs)
            ):
                pending.set_result(msgs)
                continue
            for m in msgs:
                if m.channel == CONNECT:
                    self._connect_reply(m)
                elif m.data is not None and m.channel == INTERACTIONS:
                    self.agent.on_interaction(m.data, now)

    def _connect_reply(self, m: Msg) -> None:
        anomalies = self.agent.anomalies
        advice = m.advice or {}
        if not m.successful:
            anomalies[f"connect failed: {m.error} advice={m.advice}"] += 1
        if not self.polling:
            return
        if advice.get("reconnect") in ("handshake", "none"):
            anomalies[f"connect advice reconnect={advice['reconnect']}"] += 1
            self.polling = False  # the agent is gone for this run: its invites show as lost
        elif advice.get("interval"):
            loop = asyncio.get_running_loop()
            loop.call_later(float(advice["interval"]) / 1000.0, self._send_connect)
        else:
            self._send_connect()

    def _on_close(self, exc: Exception | None) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(exc or ConnectionResetError())
        if self.polling:
            self.agent.anomalies["server closed an agent's websocket"] += 1
            self.polling = False

    def close(self) -> None:
        self.polling = False
        if self.ws is not None:
            self.ws.on_close = None
            self.ws.close()


class Agent:
    """One agent desktop: REST over its own keep-alive connection (cookie + CSRF token) and a
    CometD session over websocket; Accepts then Completes every interaction it is invited to."""

    def __init__(
        self,
        username: str,
        host: str,
        port: int,
        mount: str,
        bench: Bench,
        cookie_name: str,
        anomalies: Counter[str],
    ) -> None:
        self.username = username
        self.bench = bench
        self.cookie_name = cookie_name
        self.anomalies = anomalies
        self.rest = RestClient(host, port, f"Host: {host}:{port}\r\n".encode(), anomalies, "agent")
        self.socket = AgentSocket(self, host, port, mount)
        self.session_id = ""

    async def setup(self, password: str) -> None:
        basic = base64.b64encode(f"{self.username}:{password}".encode()).decode()
        status, head, body = await self.rest.call(
            "GET", "/api/v2/me", extra=f"Authorization: Basic {basic}\r\n".encode()
        )
        if status != 200:
            raise ConnectionError(f"login: {_why(status, body)}")
        prefix = self.cookie_name + "="
        cookie = next((c for c in _header(head, b"set-cookie") if c.startswith(prefix)), "")
        self.session_id = cookie.split(";", 1)[0][len(prefix) :]
        csrf = _header(head, b"x-csrf-token")
        if not self.session_id or not csrf:
            raise ConnectionError("login: no session cookie or no X-CSRF-TOKEN")
        self.rest.headers += (
            f"Cookie: {self.cookie_name}={self.session_id}\r\nX-CSRF-TOKEN: {csrf[0]}\r\n".encode()
        )
        start = {"operationName": "StartContactCenterSession", "channels": ["email"]}
        await self._post("/api/v2/me", start)
        await self.socket.setup(self.session_id)
        await self._post("/api/v2/me/channels/email", {"operationName": "Ready"})

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        status, _, reply = await self.rest.call("POST", path, ENCODE(body))
        if not _ok(status, reply):
            raise ConnectionError(f"POST {path} {body.get('operationName')}: {_why(status, reply)}")

    def on_interaction(self, data: Interaction, now: float) -> None:
        if data.state != "Invited":
            if data.state == "Revoked":
                self.anomalies["invitation revoked"] += 1
            return
        bench = data.userData
        if bench is None or bench.bench_s < 0:
            self.anomalies["Invited without bench userData"] += 1
            return
        step = self.bench.invited(bench.bench_s, now - bench.bench_t)
        if step is None:
            return
        path = f"/api/v2/me/interactions/{data.id}"

        def accepted(status: int, head: bytes, body: bytes) -> None:
            self._answered(step, "Accept", status, body)

        def completed(status: int, head: bytes, body: bytes) -> None:
            self._answered(step, "Complete", status, body)

        self.rest.request("POST", path, ACCEPT, accepted)
        self.rest.request("POST", path, COMPLETE, completed)

    def _answered(self, step: Step, operation: str, status: int, body: bytes) -> None:
        if not _ok(status, body):
            step.op_failed += 1
            self.anomalies[f"{operation} failed: {_why(status, body)}"] += 1
        elif operation == "Accept":
            step.accepted += 1
            step.last_accepted = time.monotonic()
        else:
            step.completed += 1
            step.last_completed = time.monotonic()
        step.check()

    def close(self) -> None:
        self.socket.close()
        self.rest.close()


# -- the partner --------------------------------------------------------------------------------


class Partner:
    """Creates email interactions over a pool of keep-alive connections (opened as needed, at
    most ``max_conns``); creations wait in order while every connection is busy."""

    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        bench: Bench,
        anomalies: Counter[str],
        max_conns: int,
    ) -> None:
        self.host, self.port = host, port
        self.headers = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n".encode()
        self.bench = bench
        self.anomalies = anomalies
        self.max_conns = max_conns
        self.clients: list[RestClient] = []
        self.free: list[RestClient] = []
        self.backlog: deque[tuple[int, float]] = deque()
        self.max_backlog = 0

    def create(self, seq: int, scheduled: float) -> None:
        self.backlog.append((seq, scheduled))
        self.max_backlog = max(self.max_backlog, len(self.backlog))
        self._pump()

    def _client(self) -> RestClient | None:
        if self.free:
            return self.free.pop()
        if len(self.clients) < self.max_conns:
            client = RestClient(self.host, self.port, self.headers, self.anomalies, "partner")
            self.clients.append(client)
            return client
        return None

    def _pump(self) -> None:
        while self.backlog:
            client = self._client()
            if client is None:
                return
            seq, scheduled = self.backlog.popleft()
            body = (
                b'{"channel":"email","email":{"from":"c@example.com",'
                b'"to":["support@example.com"],"subject":"s","text":"t"},'
                b'"userData":{"bench_s":%d,"bench_t":%.6f}}' % (seq, scheduled)
            )
            sent = wall()
            found = self.bench.step_of(seq)
            if found is not None:
                found[0].pub_lag_max = max(found[0].pub_lag_max, sent - scheduled)
            client.request("POST", "/api/v2/interactions", body, self._reply(client, seq, sent))

    def _reply(self, client: RestClient, seq: int, sent: float) -> Reply:
        def reply(status: int, head: bytes, body: bytes) -> None:
            ok = _ok(status, body)
            self.bench.created(seq, ok, wall() - sent, "" if ok else _why(status, body))
            self.free.append(client)
            self._pump()

        return reply

    def close(self) -> None:
        for client in self.clients:
            client.close()


# -- the run ------------------------------------------------------------------------------------


async def setup_agents(
    args: argparse.Namespace, agents: list[Agent], password: str, anomalies: Counter[str]
) -> list[Agent]:
    """Set every agent up; return those that made it (failures are counted as anomalies)."""
    gate = asyncio.Semaphore(args.setup_concurrency)
    ready: list[Agent] = []

    async def one(agent: Agent) -> None:
        async with gate:
            try:
                await agent.setup(password)
            except (OSError, ConnectionError, TimeoutError) as exc:
                anomalies[f"agent setup failed: {str(exc)[:120]}"] += 1
                agent.close()
                return
            ready.append(agent)

    await asyncio.gather(*(one(a) for a in agents))
    return ready


async def run_step(
    args: argparse.Namespace,
    bench: Bench,
    partner: Partner,
    agents: list[Agent],
    rate: float,
    seconds: float,
    base: int,
    anomalies: Counter[str],
) -> tuple[dict[str, Any], int]:
    count = max(1, round(rate * seconds))
    step = Step(rate, base, count)
    bench.steps.append(step)
    before = Counter(anomalies)
    connects0 = sum(a.socket.connects for a in agents)
    partner.max_backlog = 0
    srv0 = sample(args.server_pid) if args.server_pid else None
    cpu0, busy0, t0 = self_cpu(), machine_busy_seconds(), time.monotonic()
    start = wall()
    sent = 0
    while sent < count:  # creations carry their scheduled time: no coordinated omission
        due = min(count, int((wall() - start) * rate) + 1)
        for i in range(sent, due):
            partner.create(base + i, start + i / rate)
        sent = due
        await asyncio.sleep(args.tick)
    t_pub = time.monotonic()
    step.publishing = False
    step.check()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(step.done.wait(), args.drain)
    t1, cpu1, busy1 = time.monotonic(), self_cpu(), machine_busy_seconds()
    srv1 = sample(args.server_pid) if args.server_pid else None
    elapsed, pub_s = t1 - t0, t_pub - t0
    lost = step.lost()
    unanswered = count - step.created - step.create_failed
    p99 = percentile(step.latencies, 0.99)
    reasons = []
    if p99 > args.max_p99:
        reasons.append(f"p99 {p99 * 1000:.0f} ms > {args.max_p99 * 1000:.0f} ms")
    if lost:
        reasons.append(f"lost {lost}")
    if step.create_failed or unanswered:
        reasons.append(f"{step.create_failed} creates failed, {unanswered} unanswered")
    new = Counter(anomalies)
    new.subtract(before)
    result: dict[str, Any] = {
        "event": "step",
        "rate": rate,
        "agents": len(agents),
        "count": count,
        "created": step.created,
        "create_failed": step.create_failed,
        "create_unanswered": unanswered,
        "invited": step.invited,
        "lost": lost,
        "duplicates": step.duplicates,
        "accepted": step.accepted,
        "completed": step.completed,
        "op_failed": step.op_failed,
        "publish_seconds": pub_s,
        "seconds": elapsed,
        # per second of the step: from its start to its last such event (at least its
        # creation time), so events that trail behind a slow server do not inflate the rate
        "created_per_s": step.created / max(pub_s, step.last_created - t0),
        "invites_per_s": step.invited / max(pub_s, step.last_invited - t0),
        "accepted_per_s": step.accepted / max(pub_s, step.last_accepted - t0),
        "completed_per_s": step.completed / max(pub_s, step.last_completed - t0),
        "p50_ms": percentile(step.latencies, 0.50) * 1000,
        "p99_ms": p99 * 1000,
        "max_ms": max(step.latencies, default=0.0) * 1000,
        "create_p50_ms": percentile(step.create_rtts, 0.50) * 1000,
        "create_p99_ms": percentile(step.create_rtts, 0.99) * 1000,
        "pub_lag_max_ms": step.pub_lag_max * 1000,
        "partner_backlog_max": partner.max_backlog,
        "partner_conns": len(partner.clients),
        "connects_per_s": (sum(a.socket.connects for a in agents) - connects0) / elapsed,
        "gen_cpu_pct": 100 * (cpu1 - cpu0) / elapsed,
        "held": not reasons,
        "reason": "; ".join(reasons),
        "anomalies": {k: v for k, v in new.items() if v > 0},
    }
    add_server_figures(result, srv0, srv1, busy0, busy1, elapsed)
    return result, base + count


async def run(args: argparse.Namespace, creds: dict[str, Any]) -> None:
    t_begin = time.monotonic()
    parts = urlsplit(args.url)
    host, port, mount = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    anomalies: Counter[str] = Counter()
    bench = Bench(anomalies)
    n = min(args.agents, int(creds["agents"]))
    everyone = [
        Agent(f"{creds['prefix']}{i}", host, port, mount, bench, args.cookie, anomalies)
        for i in range(n)
    ]
    t_setup = time.monotonic()
    srv0 = sample(args.server_pid) if args.server_pid else None
    try:
        agents = await asyncio.wait_for(
            setup_agents(args, everyone, creds["password"], anomalies), args.setup_timeout
        )
    except TimeoutError:
        emit({"event": "error", "message": f"agent setup took over {args.setup_timeout} s"})
        for a in everyone:
            a.close()
        return
    setup_s = time.monotonic() - t_setup
    srv1 = sample(args.server_pid) if args.server_pid else None
    partner = Partner(host, port, creds["token"], bench, anomalies, args.partner_conns)
    gc_task = asyncio.create_task(GcPolicy(1.0, 0).run())  # no generator GC stalls
    await asyncio.sleep(0.5)
    ready: dict[str, Any] = {
        "event": "ready",
        "clients": len(agents),
        "wanted": n,
        "setup_seconds": setup_s,
        "anomalies": dict(anomalies),
    }
    if srv0 is not None and srv1 is not None:
        ready["server_cpu_seconds"] = srv1.cpu_seconds - srv0.cpu_seconds
        ready["server_rss_mib"] = srv1.rss_kib / 1024
    emit(ready)
    base = 0
    if agents and args.warmup > 0:
        rates0 = float(args.rates.split(",")[0])
        warm, base = await run_step(
            args, bench, partner, agents, rates0, args.warmup, base, anomalies
        )
        emit({**warm, "event": "warmup"})
    for rate in (float(r) for r in args.rates.split(",")) if agents else ():
        result, base = await run_step(
            args, bench, partner, agents, rate, args.step_seconds, base, anomalies
        )
        emit(result)
        if not result["held"] or time.monotonic() - t_begin > args.max_seconds:
            break
    gc_task.cancel()
    partner.close()
    for a in everyone:
        a.close()
    emit({"event": "done", "anomalies": dict(anomalies)})


def progress(label: str, e: dict[str, Any]) -> None:
    """One line per event, for bench/run.py."""
    if e["event"] == "ready":
        print(
            f"  [{label}] {e['clients']}/{e['wanted']} agents logged in, Ready on email and "
            f"subscribed over websocket in {e['setup_seconds']:.1f} s",
            flush=True,
        )
    elif e["event"] == "step":
        flag = "held" if e["held"] else f"FAILED: {e['reason']}"
        print(
            f"  [{label}] {e['rate']:>5.0f}/s  invites/s {e['invites_per_s']:>5.0f}  "
            f"p50 {e['p50_ms']:>6.1f}  p99 {e['p99_ms']:>6.1f}  max {e['max_ms']:>6.1f} ms  "
            f"lost {e['lost']}  acc/s {e['accepted_per_s']:>4.0f}  "
            f"cmpl/s {e['completed_per_s']:>4.0f}  create p99 {e['create_p99_ms']:>5.1f} ms  "
            f"partner lag max {e['pub_lag_max_ms']:>5.0f} ms  "
            f"srv {e.get('server_cpu_pct', 0):>3.0f}%  gen {e['gen_cpu_pct']:>3.0f}%  "
            f"other {e.get('other_cpu_pct', 0):>3.0f}%  {flag}",
            flush=True,
        )
    elif e["event"] == "error":
        print(f"  [{label}] ERROR: {e['message']}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", required=True, help="CometD URL, http://127.0.0.1:PORT/api/v2/...")
    p.add_argument("--secrets", required=True, help=f"the {SECRETS_FILE} write_users made")
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--rates", default="50,100,200,400,800", help="creations/s, one per step")
    p.add_argument("--step-seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0, help="unreported warm-up seconds")
    p.add_argument(
        "--drain",
        type=float,
        default=5.0,
        help="seconds after a step's last creation for its Invited messages (then: lost)",
    )
    p.add_argument("--max-p99", type=float, default=1.0, help="p99 limit in seconds")
    p.add_argument("--max-seconds", type=float, default=150.0, help="no new step after this")
    p.add_argument("--setup-timeout", type=float, default=90.0)
    p.add_argument("--setup-concurrency", type=int, default=50)
    p.add_argument("--partner-conns", type=int, default=32)
    p.add_argument("--cookie", default="JSESSIONID", help="the REST session cookie's name")
    p.add_argument("--tick", type=float, default=0.002, help="partner tick (s)")
    p.add_argument("--server-pid", type=int, default=0, help="sample this PID's CPU/RSS")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a gateway dependency
        runner: Any = asyncio.run
    else:
        runner = uvloop.run
    runner(run(args, json.loads(Path(args.secrets).read_text())))


if __name__ == "__main__":
    sys.exit(main())
