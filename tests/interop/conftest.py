"""Shared fixtures for the interop tests.

* ``gateway``: the gateway app, in-process, on a real loopback port (127.0.0.1), with a short
  ``/meta/connect`` hold so that the expiry / 402 recovery paths run in a few seconds.
* ``node_client``: starts ``tests/node/client.mjs`` (the official CometD JavaScript client run by
  Node) and talks to it line by line over stdin/stdout JSON.
* ``aiocometd_client``: builds ``aiocometd_noloop.Client`` objects that record the wire traffic and
  are always closed at teardown.

Nothing here skips: a missing ``node`` binary or ``tests/node/node_modules`` is a test error with
the command that fixes it (the Makefile runs ``npm ci --prefix tests/node``).

On a failing test, pytest shows the captured stdout of the teardown: every Node client prints its
events and the tail of its stderr (CometD log + one ``{"wire": ...}`` line per Bayeux message), and
every aiocometd client prints the payloads it sent and received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
NODE_CLIENT_SCRIPT = NODE_DIR / "client.mjs"
NODE_PACKAGES = ("cometd", "cometd-nodejs-client")
NODE_FIX = "run `npm ci --prefix tests/node` (the Makefile does it)"

#: /meta/connect hold used by the interop server (bayeux.timeout_ms). Short, so that a held
#: connect of an expired session returns quickly and the client gets its 402.
HOLD_MS = 2000
#: Upper bound for "the client notices the expired session and handshakes again":
#: one hold + the client's reaction + generous slack for a loaded 2-core CI machine.
RECOVERY_TIMEOUT = HOLD_MS / 1000 + 13.0
#: Upper bound for one request/reply or one delivery.
STEP_TIMEOUT = 10.0
#: How long to watch for a message that must NOT arrive (e.g. after unsubscribe). Longer than
#: one hold, so that a long-polling client would have completed at least one connect cycle.
QUIET_PERIOD = HOLD_MS / 1000 + 0.5

# --------------------------------------------------------------------------------------------
# the gateway
# --------------------------------------------------------------------------------------------


@dataclass
class Gateway:
    server: Any  # aiohttp.test_utils.TestServer
    hub: Any

    # Timing bounds for the tests (class attributes, so test modules need not import conftest).
    hold_ms = HOLD_MS
    recovery_timeout = RECOVERY_TIMEOUT
    step_timeout = STEP_TIMEOUT
    quiet_period = QUIET_PERIOD

    @property
    def port(self) -> int:
        return int(self.server.port)

    def url(self, host: str = "127.0.0.1", mount: str = "/cometd") -> str:
        return f"http://{host}:{self.port}{mount}"

    async def session_ids(self) -> list[str]:
        return list(await self.hub.session_ids())

    async def wait_sessions(
        self, predicate: Callable[[list[str]], bool], within: float = STEP_TIMEOUT
    ) -> list[str]:
        """Poll ``hub.session_ids()`` until ``predicate`` holds; fail after ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            ids = await self.session_ids()
            if predicate(ids):
                return ids
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {within}s waiting on hub.session_ids(): last {ids}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def gateway(make_gateway: Any) -> Gateway:
    from gateway.app import HUB

    server = await make_gateway(bayeux={"timeout_ms": HOLD_MS})
    return Gateway(server=server, hub=server.app[HUB])


# --------------------------------------------------------------------------------------------
# the CometD JavaScript client, run by Node
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"`node` (Node.js >= 20) is not on PATH; install it, then {NODE_FIX}")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if not match or int(match.group(1)) < 20:
        # cometd-nodejs-client 2.x needs >= 18; the proxy-agent versions locked with it need 20.
        pytest.fail(f"Node.js >= 20 is required by tests/node, found {version!r}")
    modules = NODE_DIR / "node_modules"
    missing = [p for p in NODE_PACKAGES if not (modules / p / "package.json").is_file()]
    if missing:
        pytest.fail(f"npm packages {missing} are not installed in {NODE_DIR}; {NODE_FIX}")
    return node


class NodeClient:
    """One ``client.mjs`` process. Events are the JSON lines it prints on stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, argv: list[str]) -> None:
        self.proc = proc
        self.argv = argv
        self.events: list[dict[str, Any]] = []  # every event, in order
        self.stderr_tail: deque[str] = deque(maxlen=300)
        self.noise: list[str] = []  # stdout lines that are not JSON (should stay empty)
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._unconsumed: list[dict[str, Any]] = []  # read from the queue, not yet expected
        self._readers = [
            asyncio.ensure_future(self._read_stdout()),
            asyncio.ensure_future(self._read_stderr()),
        ]

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            text = line.decode("utf-8", "replace").strip()
            if not text:
                continue
            try:
                event = json.loads(text)
            except ValueError:
                self.noise.append(text)
                continue
            self.events.append(event)
            await self._queue.put(event)
        await self._queue.put(None)  # EOF

    async def _read_stderr(self) -> None:
        # Always drained: Node writes stderr synchronously and would block on a full pipe.
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.stderr_tail.append(line.decode("utf-8", "replace").rstrip())

    # -- diagnostics -------------------------------------------------------------------------

    def describe(self, stderr: bool = True) -> str:
        text = (
            f"node client {self.argv[1:]} (pid {self.proc.pid}, rc {self.proc.returncode})\n"
            "--- events ---\n" + "\n".join(json.dumps(e) for e in self.events)
        )
        if self.noise:
            text += "\n--- non-JSON stdout ---\n" + "\n".join(self.noise)
        if stderr:
            text += "\n--- stderr tail (CometD log, wire) ---\n" + "\n".join(self.stderr_tail)
        return text

    def fail(self, reason: str) -> NoReturn:
        # The full stderr (wire log) is printed at teardown ("Captured stdout teardown").
        pytest.fail(f"{reason}\n{self.describe(stderr=False)}", pytrace=False)

    # -- commands and events -----------------------------------------------------------------

    async def send(self, cmd: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        await asyncio.wait_for(self.proc.stdin.drain(), STEP_TIMEOUT)

    async def _next(self, within: float) -> dict[str, Any] | None:
        """The next event from the process, or None on timeout. Fails on EOF and ``fatal``."""
        try:
            got = await asyncio.wait_for(self._queue.get(), max(within, 0.0))
        except TimeoutError:
            return None
        if got is None:
            await self._queue.put(None)  # keep EOF visible to later calls
            self.fail("node client exited")
        assert got is not None
        if got.get("event") == "fatal":
            self.fail("node client reported a fatal error")
        return got

    async def expect(
        self,
        event: str,
        within: float = STEP_TIMEOUT,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Return the oldest not yet consumed event named ``event`` (and matching ``where``),
        waiting up to ``within`` seconds for it.

        Each event is returned at most once; events of one name come out in the order the client
        printed them, but events of different names may be consumed in any order (e.g. over
        long-polling the reply to a subscribe can arrive before or after a /meta/connect reply).
        Fails on timeout, on a ``fatal`` event and when the process ends.
        """

        def matches(got: dict[str, Any]) -> bool:
            return got.get("event") == event and (where is None or where(got))

        for index, got in enumerate(self._unconsumed):
            if matches(got):
                return self._unconsumed.pop(index)
        deadline = time.monotonic() + within
        while True:
            got = await self._next(deadline - time.monotonic())
            if got is None:
                self.fail(f"timed out after {within}s waiting for event {event!r}")
            if matches(got):
                return got
            self._unconsumed.append(got)

    async def expect_none(self, event: str, period: float = QUIET_PERIOD) -> None:
        """Fail if an event named ``event`` is pending or arrives within ``period`` seconds."""
        for got in self._unconsumed:
            if got.get("event") == event:
                self.fail(f"unexpected event {event!r}: {got}")
        deadline = time.monotonic() + period
        while (got := await self._next(deadline - time.monotonic())) is not None:
            if got.get("event") == event:
                self.fail(f"unexpected event {event!r}: {got}")
            self._unconsumed.append(got)

    async def wait_exit(self, within: float = STEP_TIMEOUT) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            pass
        self.fail(f"node client did not exit within {within}s")

    async def close(self) -> None:
        """Kill the process (by its PID) if it is still running, and reap it."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), STEP_TIMEOUT)
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


NodeClientFactory = Callable[..., Awaitable[NodeClient]]


@pytest.fixture
async def node_client(node_executable: str) -> AsyncIterator[NodeClientFactory]:
    """Factory: ``await node_client(url, transport, channels=[...], token=None)`` -> running
    NodeClient; ``token`` goes in the handshake's ``ext.token`` (``client.mjs --token``).

    ``max_runtime_ms`` makes the script exit by itself even if pytest never talks to it again.
    """
    clients: list[NodeClient] = []

    async def start(
        url: str,
        transport: str,
        channels: Iterable[str] = (),
        max_runtime_ms: int = 90_000,
        log_level: str = "info",
        token: str | None = None,
    ) -> NodeClient:
        argv = [
            node_executable,
            str(NODE_CLIENT_SCRIPT),
            "--url",
            url,
            "--transport",
            transport,
            "--max-runtime-ms",
            str(max_runtime_ms),
            "--log-level",
            log_level,
        ]
        for channel in channels:
            argv += ["--channel", channel]
        if token is not None:
            # one argument: a token starting with "-" would otherwise read as an option
            argv.append(f"--token={token}")
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=NODE_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        client = NodeClient(proc, argv)
        clients.append(client)
        return client

    try:
        yield start
    finally:
        for client in clients:
            await client.close()
            print(client.describe())


# --------------------------------------------------------------------------------------------
# aiocometd (PyPI fork aiocometd-noloop, import name aiocometd_noloop)
# --------------------------------------------------------------------------------------------


@dataclass
class WireRecorder:
    """aiocometd extension that records every payload (copied) it sends and receives."""

    log: list[tuple[float, str, Any]] = field(default_factory=list)
    start: float = field(default_factory=time.monotonic)

    async def outgoing(self, payload: Any, headers: Any) -> None:
        self.log.append((time.monotonic() - self.start, "out", json.loads(json.dumps(payload))))

    async def incoming(self, payload: Any, headers: Any = None) -> None:
        self.log.append((time.monotonic() - self.start, "in", json.loads(json.dumps(payload))))

    def messages(self, direction: str, channel: str) -> list[dict[str, Any]]:
        """The recorded messages sent ("out") or received ("in") on ``channel``."""
        return [
            m
            for _, d, payload in self.log
            if d == direction
            for m in payload
            if m.get("channel") == channel
        ]

    def describe(self) -> str:
        return "\n".join(f"{t:7.3f} {d:>3} {json.dumps(p)}" for t, d, p in self.log)


@pytest.fixture
async def aiocometd_client() -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``aiocometd_client(url, connection_type)`` -> (client, wire recorder).

    The client is not opened here; the test opens it (bounded by asyncio.wait_for).
    """
    import aiocometd_noloop as aiocometd

    made: list[tuple[Any, WireRecorder]] = []

    def make(url: str, connection_type: Any) -> tuple[Any, WireRecorder]:
        recorder = WireRecorder()
        # aiocometd_noloop.Extension is an ABC; register the recorder as a virtual subclass.
        aiocometd.Extension.register(WireRecorder)
        # ssl=True is aiohttp's default verification mode (no effect on http:// URLs); aiocometd's
        # own default, ssl=None, makes aiohttp >= 3.10 warn (DeprecationWarning -> error here).
        client = aiocometd.Client(url, connection_type, ssl=True, extensions=[recorder])
        made.append((client, recorder))
        return client, recorder

    try:
        yield make
    finally:
        for client, recorder in made:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_shutdown_aiocometd(client), STEP_TIMEOUT)
            print(f"--- aiocometd wire log ({client.url}) ---\n{recorder.describe()}")


async def _shutdown_aiocometd(client: Any) -> None:
    if not client.closed:
        await client.close()
        return
    # open() failed (e.g. its first /meta/connect got a 402): aiocometd then considers itself
    # closed, so close() is a no-op, yet its transport keeps following the server's advice
    # (a re-handshake loop with interval 0). Stop that transport explicitly.
    transport = client._transport
    if transport is not None:
        await transport.disconnect()
        await transport.close()
    await client._close_http_session()
