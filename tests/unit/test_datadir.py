"""One gateway per data directory: a second one on the same directory refuses to start."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_process import ROOT, Process

from gateway.datadir import LOCK_FILE, DataDirInUse, DataDirLock


@pytest.fixture
def first(tmp_path: Path) -> Iterator[Process]:
    process = Process(tmp_path)
    yield process
    process.stop()


def second_gateway(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", "--log-format", "json"],
        cwd=ROOT,
        env={**os.environ, "GATEWAY_STORE__DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_second_gateway_on_the_same_data_dir_refuses_in_one_line(
    first: Process, tmp_path: Path
) -> None:
    first.start()
    assert first.proc is not None
    second = second_gateway(tmp_path)
    assert second.returncode != 0
    assert "gateway ready" not in second.stdout
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("gateway: data directory ")
    assert str(tmp_path) in lines[0] and f"PID {first.proc.pid}" in lines[0]
    assert first.proc.poll() is None  # the first one runs on, untouched


def test_the_lock_dies_with_its_holder_even_after_kill_9(first: Process) -> None:
    first.start()
    first.kill9()
    first.start()  # no stale lock to clear by hand


def test_the_lock_in_process(tmp_path: Path) -> None:
    held = DataDirLock(tmp_path / "new")  # made if missing
    held.acquire()
    try:
        assert (tmp_path / "new" / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        in_use = rf"new is in use by another gateway \(PID {os.getpid()}\)"
        with pytest.raises(DataDirInUse, match=in_use):
            DataDirLock(tmp_path / "new").acquire()
    finally:
        held.release()
    assert (tmp_path / "new" / LOCK_FILE).read_text() == ""  # no PID names a holder any more
    again = DataDirLock(tmp_path / "new")
    again.acquire()
    again.release()
