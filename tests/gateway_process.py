"""``gateway serve`` as a child process on a loopback port with its own data directory, for
tests that kill it (``kill -9``, or a ``GATEWAY_FAILPOINT``) and start it again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Process:
    """``gateway serve`` in a child process on a loopback port, with its own data dir."""

    def __init__(self, data_dir: Path, config: Path | None = None) -> None:
        self.data_dir = data_dir
        self.config = config
        self.port = 0  # the first start binds a free port itself; restarts reuse it
        self.proc: subprocess.Popen[str] | None = None

    def log(self) -> str:
        """What the process logged (JSON lines), for a failing test's report."""
        path = self.data_dir / "gateway.log"
        return path.read_text() if path.exists() else ""

    def start(self, **env_extra: str) -> None:
        env = {
            **os.environ,
            "GATEWAY_STORE__DATA_DIR": str(self.data_dir),
            "GATEWAY_LOG__FORMAT": "json",
            **env_extra,
        }
        config = ["--config", str(self.config)] if self.config else []
        with (self.data_dir / "gateway.log").open("a") as log:  # the child keeps its copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), *config],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "gateway ready" in line, line + self.log()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found is not None, line
        self.port = int(found.group(1))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_exit(self, timeout: float = 30) -> int:
        """The exit status, once the process ends by itself (a failpoint)."""
        assert self.proc is not None
        status = self.proc.wait(timeout=timeout)
        self._close_pipe()
        return status

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self._close_pipe()
