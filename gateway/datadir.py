"""One gateway per data directory: ``gateway serve`` holds ``DATA_DIR/gateway.lock`` for its life.

Two gateways on one data directory would both restore the same interactions from the SQLite
file, both offer them, and both claim the same mail.  The second one must not start.

The lock is an ``fcntl.flock`` on the file, held until the process ends: the kernel releases
it however the process ends (``kill -9`` included), so a stale file never blocks a restart.
The file holds the PID of the gateway holding the lock, only to name it in the refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["LOCK_FILE", "DataDirInUse", "DataDirLock"]

LOCK_FILE = "gateway.lock"


class DataDirInUse(Exception):
    """Another process holds the data directory; the message is one line naming it and the PID."""


class DataDirLock:
    """Between ``acquire()`` and ``release()``, this process is the only gateway on ``data_dir``."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = Path(data_dir).absolute() / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DataDirInUse`; an OSError if the file cannot be made."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(
                f"data directory {self.path.parent} is in use by another gateway"
                + (f" (PID {holder})" if holder else "")
                + "; stop it, or give this one another store.data_dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # the PID no longer names a holder
            os.close(fd)  # closing the last descriptor releases the flock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
