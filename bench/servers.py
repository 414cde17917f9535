"""Processes the bench starts: the servers under test (Faye, cometd-nodejs-server and the
gateway, pinned to one core; Faye and the gateway also on one Redis, each with a redis-server
of its own on the same core) and load-generator processes.  Only processes started here are
stopped, by their PID.

The gateway runs as ``python -m gateway`` from the repository this bench belongs to, with the
interpreter running the bench: a checkout's own code is measured, not whatever an installed
``gateway`` script would import.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_client

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
FAYE_DIR = BENCH_DIR / "faye"
COMETD_DIR = BENCH_DIR / "cometd"
FAYE_REDIS_DIR = BENCH_DIR / "faye-redis"
# The Node peers: bench directory (server.js, package.json, package-lock.json) and the npm
# package whose version the report names.
NODE_PEERS = {
    "faye": (FAYE_DIR, "faye"),
    "cometd": (COMETD_DIR, "cometd-nodejs-server"),
    "faye-redis": (FAYE_REDIS_DIR, "faye-redis"),
}
# The packages a peer's version line names besides its own (faye-redis runs inside Faye).
PEER_ALSO = {"faye-redis": ("faye", "redis")}
GATEWAY_CMD = [sys.executable, "-m", "gateway"]
HOST = "127.0.0.1"
DATA_DIR_ENV = "GATEWAY_STORE__DATA_DIR"
ANONYMOUS_ENV = "GATEWAY_AGENTS__ALLOW_ANONYMOUS_BAYEUX"
ENGINE_ENV = "GATEWAY_ENGINE__KIND"
REDIS_URL_ENV = "GATEWAY_ENGINE__REDIS_URL"


@dataclass
class ServerSpec:
    name: str
    mount: str
    env: dict[str, str] = field(default_factory=dict)
    # ready when this path answers any HTTP status (default: an anonymous handshake succeeds)
    ready_path: str = ""
    # keeps its state in a redis-server that the bench starts with it (and stops after it)
    redis: bool = False
    # the gateway on Redis: a query appended to its Redis URL (redis-py's URL options)
    redis_query: str = ""

    @property
    def is_gateway(self) -> bool:
        return self.name not in NODE_PEERS

    def argv(self, port: int, redis_port: int = 0) -> list[str]:
        if self.name in NODE_PEERS:
            server_js = NODE_PEERS[self.name][0] / "server.js"
            redis = [str(redis_port), HOST] if self.redis else []
            return [shutil.which("node") or "node", str(server_js), str(port), HOST, *redis]
        return [*GATEWAY_CMD, "serve", "--host", HOST, "--port", str(port)]

    @property
    def cwd(self) -> Path:
        return NODE_PEERS[self.name][0] if self.name in NODE_PEERS else REPO_DIR


def faye_spec() -> ServerSpec:
    return ServerSpec("faye", "/faye")


def cometd_spec() -> ServerSpec:
    """cometd-nodejs-server: long-polling only (the package has no websocket transport)."""
    return ServerSpec("cometd", "/cometd")


def faye_redis_spec() -> ServerSpec:
    """Faye on the faye-redis engine, on a redis-server of its own."""
    return ServerSpec("faye-redis", "/faye", redis=True)


def gateway_spec(
    overrides: dict[str, str] | None = None, redis: bool = False, redis_query: str = ""
) -> ServerSpec:
    """The gateway on its memory engine, or (``redis``) on its Redis engine as
    ``gateway-redis``; the Redis URL (+ ``?redis_query``) is added when its redis-server has
    started."""
    # The Bayeux scenarios' clients handshake anonymously (no agent login): allowed here only.
    # All of them connect from 127.0.0.1 (10,000 and 19,900 in the big runs), over the default
    # cap of connections per client address.
    env = {
        "GATEWAY_LOG__LEVEL": "warning",
        ANONYMOUS_ENV: "true",
        "GATEWAY_SERVER__MAX_CONNECTIONS_PER_ADDRESS": "0",
    }
    if redis:
        env[ENGINE_ENV] = "redis"
    env.update(overrides or {})
    name = "gateway-redis" if redis else "gateway"
    return ServerSpec(name, "/cometd", env, redis=redis, redis_query=redis_query)


def ensure_node_peer_installed(name: str) -> None:
    """Install a Node peer (``faye``, ``cometd``) from its lock file when node_modules is
    missing."""
    directory, package = NODE_PEERS[name]
    if (directory / "node_modules" / package / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"npm not found: Node 20 + npm are needed for the {name} peer")
    print(f"installing {package} (npm ci) ...", flush=True)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=directory, check=True)


def _npm_version(directory: Path, package: str) -> str:
    meta = json.loads((directory / "node_modules" / package / "package.json").read_text())
    return f"{package} {meta['version']}"


def node_peer_version(name: str) -> str:
    directory, package = NODE_PEERS[name]
    try:
        own = _npm_version(directory, package)
        also = [_npm_version(directory, p) for p in PEER_ALSO.get(name, ())]
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
        return own + (f" ({', '.join(also)})" if also else "") + f" on node {node.stdout.strip()}"
    except (OSError, ValueError, KeyError):
        return f"{package} (version unknown)"


def redis_server_version() -> str:
    """``redis-server 7.0.15``, or why there is none."""
    binary = shutil.which("redis-server")
    if binary is None:
        return "redis-server not found"
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    version = next((w[2:] for w in done.stdout.split() if w.startswith("v=")), "?")
    return f"redis-server {version}"


def gateway_available() -> tuple[bool, str]:
    try:
        done = subprocess.run(
            [*GATEWAY_CMD, "serve", "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=REPO_DIR,
        )
    except subprocess.TimeoutExpired:
        return False, "gateway serve --help timed out"
    if done.returncode != 0:
        return False, f"gateway serve --help exited {done.returncode}: {done.stderr[-300:]}"
    return True, "gateway"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _handshake_ok(url: str) -> bool:
    body = json.dumps(
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
            }
        ]
    ).encode()
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status == 200 and b'"successful":true' in resp.read().replace(b" ", b"")
    except (OSError, urllib.error.URLError):
        return False


def _answers(url: str) -> bool:
    """Whether an HTTP server answers ``GET url`` at all (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            resp.read()
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, urllib.error.URLError):
        return False


class RedisServer:
    """A redis-server started by the bench for one server under test: a free loopback port, a
    temporary directory, no persistence, pinned with ``taskset -c CORE``; stopped by its PID."""

    def __init__(self, core: int, log_path: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found (Debian: apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.directory = tempfile.mkdtemp(prefix="bench-redis-")
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        # started by the bench, for one scenario: nothing is saved, nothing survives it
        options = ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        where = ["--port", str(self.port), "--bind", HOST, "--dir", self.directory]
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(core), binary, *where, *options],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.client = redis_client.Redis(host=HOST, port=self.port, socket_timeout=10)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            with contextlib.suppress(redis_client.RedisError, OSError):
                if self.client.ping():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server not answering on port {self.port}")

    def memory(self) -> dict[str, Any]:
        """``INFO memory`` and the number of connected clients."""
        info: dict[str, Any] = self.client.info("memory")
        info["connected_clients"] = self.client.info("clients")["connected_clients"]
        return info

    def list_entries(self) -> int:
        """Entries in all the lists of the database (the queued events, for both engines)."""
        return sum(
            int(self.client.llen(key)) for key in self.client.scan_iter(count=1000, _type="list")
        )

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class RunningServer:
    """A server process started by the bench, pinned with ``taskset -c CORE``; for a spec
    with ``redis``, its redis-server first, on the same core."""

    def __init__(self, spec: ServerSpec, core: int, log_path: Path) -> None:
        self.spec = spec
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.url = self.base + spec.mount
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.redis: RedisServer | None = None
        if spec.redis:
            self.redis = RedisServer(core, log_path.with_name(f"redis-{log_path.name}"))
            try:
                self.redis.wait_ready()
            except RuntimeError:
                self.redis.stop()
                raise
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **spec.env}
        if self.redis is not None and spec.is_gateway:
            query = f"?{spec.redis_query}" if spec.redis_query else ""
            env[REDIS_URL_ENV] = self.redis.url + query
        # Every gateway run gets its own data directory (SQLite store, users file), removed in
        # stop(), unless the spec names one (then whoever made it removes it).
        self._data_dir: str | None = None
        if spec.is_gateway and DATA_DIR_ENV not in spec.env:
            self._data_dir = tempfile.mkdtemp(prefix="bench-gateway-")
            env[DATA_DIR_ENV] = self._data_dir
        redis_port = self.redis.port if self.redis is not None else 0
        try:
            self.proc = subprocess.Popen(
                ["taskset", "-c", str(core), *spec.argv(self.port, redis_port)],
                cwd=spec.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal Ctrl-C reaches run.py only; it stops us
            )
        except OSError:
            self._log.close()
            if self.redis is not None:
                self.redis.stop()
            raise
        self.pid = self.proc.pid  # taskset execs the server: same PID

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.spec.name} exited with {self.proc.returncode}; see {self.log_path}"
                )
            path = self.spec.ready_path
            if _answers(self.base + path) if path else _handshake_ok(self.url):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.spec.name} not answering at {self.url}; see {self.log_path}")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; its redis-server after it; returns the server's
        exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        if self.redis is not None:
            self.redis.stop()
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
        return self.proc.returncode


def established_connections(port: int) -> int:
    """Count ESTABLISHED TCP sockets whose local port is ``port`` (server side)."""
    hexport = f":{port:04X}"
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split(None, 4)
                    if parts[1].endswith(hexport) and parts[3] == "01":
                        count += 1
        except OSError:
            continue
    return count


class LoadGen:
    """A load-generator process; its JSON events are read on a thread so waits can time out."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
            )
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self._events.put(json.loads(line))
        self._events.put(None)

    def next_event(self, deadline: float) -> dict[str, Any] | None:
        """The next event; None at end of output or at ``deadline`` (time.monotonic)."""
        try:
            return self._events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None

    def wait_for(self, name: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while (event := self.next_event(deadline)) is not None:
            if event.get("event") == name:
                return event
        return None

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def finish(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode
