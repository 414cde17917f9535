"""A real ``redis-server`` for the tests: started on a free loopback port in a temporary
directory, stopped by its PID.  No mock stands in for Redis anywhere in the suite."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["RedisServer", "redis_server"]

READY_TIMEOUT_S = 10.0


class RedisServer:
    def __init__(
        self,
        port: int,
        directory: Path,
        process: subprocess.Popen[bytes],
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port = port
        self.directory = directory
        self.process = process
        self.extra = extra

    def stop(self) -> None:
        """SIGTERM and wait: Redis writes its append-only file before it exits."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def start_again(self) -> None:
        """The same server (port, directory, options) once more, as after a restart."""
        self.process = _start(self.directory, *self.extra, port=self.port).process

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *args: str) -> str:
        """One command through redis-cli (for what a test checks from the outside)."""
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), "--raw", *args],
            check=True,
            capture_output=True,
            timeout=10,
        )
        return done.stdout.decode().strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(directory: Path, *extra: str, port: int = 0) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: `make test` installs it (Debian redis-server)")
    port = port or _free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return RedisServer(port, directory, process, extra)
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)


@contextlib.contextmanager
def redis_server(*extra: str) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` for the duration of the block (``extra``: its options)."""
    directory = Path(tempfile.mkdtemp(prefix="test-redis-"))
    server = _start(directory, *extra)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
