"""Where interactions live: a narrow async interface, and the embedded SQLite store.

The service saves every change before it tells anyone about it, in one transaction together
with the agents' message sequence numbers, so a ``kill -9`` at any point loses nothing that
an agent or partner has been told.  SQLite runs in WAL mode with ``synchronous=NORMAL``: a
committed transaction survives the process being killed (a power cut of the machine would
need ``synchronous=FULL``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import msgspec

from gateway.interactions.machine import State
from gateway.interactions.model import Interaction

__all__ = ["SqliteStore", "Store", "Write"]

_TERMINAL = (State.COMPLETED.value, State.CANCELED.value)


class Write(Protocol):
    """A change another part of the gateway commits together with interactions (the mail
    intake's record of a claimed message, an outgoing reply in the outbox)."""

    def apply(self, db: sqlite3.Connection) -> None: ...


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise unless the store answers a trivial query (readiness)."""
        ...

    async def load_active(self) -> list[Interaction]:
        """Every interaction not yet Completed or Canceled."""
        ...

    async def get(self, interaction_id: str) -> Interaction | None: ...

    async def save(
        self,
        interactions: Iterable[Interaction],
        sequences: Mapping[str, int],
        writes: Sequence[Write] = (),
    ) -> None:
        """Store these interactions, agents' last sequence numbers and the other writes, all
        or nothing."""
        ...

    async def sequences(self) -> dict[str, int]: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS interactions (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    agent TEXT,
    queue TEXT NOT NULL,
    parent_id TEXT,
    created_ms INTEGER NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS interactions_state ON interactions (state);
CREATE TABLE IF NOT EXISTS agent_sequences (
    agent TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL
);
"""


class SqliteStore:
    """One SQLite file; calls are short and run on the event loop thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Interaction)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def ping(self) -> None:
        self.db.execute("SELECT 1").fetchone()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def load_active(self) -> list[Interaction]:
        rows = self.db.execute(
            "SELECT record FROM interactions WHERE state NOT IN (?, ?) ORDER BY created_ms, id",
            _TERMINAL,
        )
        return [self._decoder.decode(row[0]) for row in rows]

    async def get(self, interaction_id: str) -> Interaction | None:
        row = self.db.execute(
            "SELECT record FROM interactions WHERE id = ?", (interaction_id,)
        ).fetchone()
        return None if row is None else self._decoder.decode(row[0])

    async def save(
        self,
        interactions: Iterable[Interaction],
        sequences: Mapping[str, int],
        writes: Sequence[Write] = (),
    ) -> None:
        rows = [
            (
                ix.id,
                ix.state.value,
                ix.agent,
                ix.queue,
                ix.parent_id,
                ix.created_ms,
                self._encoder.encode(ix),
            )
            for ix in interactions
        ]
        if not rows and not sequences and not writes:
            return
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO interactions VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.executemany(
                "INSERT OR REPLACE INTO agent_sequences VALUES (?, ?)", list(sequences.items())
            )
            for write in writes:
                write.apply(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def sequences(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT agent, sequence FROM agent_sequences").fetchall())
