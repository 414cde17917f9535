"""What the mail side keeps, in the interactions' SQLite file.

* ``mail_folders``: per source and folder, the UIDVALIDITY and the last UID claimed, so that a
  restart searches only what is new (and starts over, guarded by Message-ID, when the server
  says UIDVALIDITY changed).
* ``mail_in``: every message taken from a mailbox, with its raw bytes and what became of it
  (``offered``: an interaction; ``auto``: an auto-reply, bounce or list mail, not offered;
  ``quarantined``: it could not be parsed).  The key is the source and the Message-ID (a hash
  of the bytes when there is none): the last guard against taking a message twice.  The
  interaction is created in the same transaction as this row.
* ``mail_ids``: Message-IDs we know (customers' and our own replies') with their interaction
  and thread, for threading a customer's follow-up.
* ``mail_out``: the outbox.  A reply is written here in the same transaction as its draft's
  Sending state, with the exact bytes to send, and stays until the SMTP server takes it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Folder",
    "Inbound",
    "InboundWrite",
    "MailStore",
    "Outgoing",
    "OutgoingWrite",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mail_folders (
    source TEXT NOT NULL,
    folder TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL,
    PRIMARY KEY (source, folder)
);
CREATE TABLE IF NOT EXISTS mail_in (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    interaction_id TEXT,
    thread_id TEXT,
    from_address TEXT NOT NULL,
    subject_key TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    raw BLOB NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE INDEX IF NOT EXISTS mail_in_interaction ON mail_in (interaction_id);
CREATE INDEX IF NOT EXISTS mail_in_subject ON mail_in (source, from_address, subject_key);
CREATE TABLE IF NOT EXISTS mail_ids (
    message_id TEXT PRIMARY KEY,
    interaction_id TEXT NOT NULL,
    thread_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mail_out (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    interaction_id TEXT NOT NULL,
    source TEXT NOT NULL,
    sender TEXT NOT NULL,
    message_id TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    rcpts TEXT NOT NULL,
    raw BLOB NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    next_ms INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    done_ms INTEGER
);
CREATE INDEX IF NOT EXISTS mail_out_due ON mail_out (status, next_ms);
"""

OFFERED, AUTO, QUARANTINED = "offered", "auto", "quarantined"
QUEUED, SENT, FAILED = "queued", "sent", "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Folder:
    uidvalidity: int
    last_uid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Inbound:
    """A message taken from a mailbox, and what became of it."""

    source: str
    key: str
    outcome: str  # offered | auto | quarantined
    reason: str  # why not offered ("" when offered)
    interaction_id: str | None
    thread_id: str | None
    from_address: str
    subject_key: str
    received_ms: int
    raw: bytes
    message_ids: tuple[str, ...] = ()  # its Message-ID, to thread follow-ups


@dataclass(frozen=True, slots=True)
class InboundWrite:
    """Records an inbound message in the transaction that creates its interaction."""

    inbound: Inbound

    def apply(self, db: sqlite3.Connection) -> None:
        m = self.inbound
        db.execute(
            "INSERT OR IGNORE INTO mail_in VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                m.source,
                m.key,
                m.outcome,
                m.reason,
                m.interaction_id,
                m.thread_id,
                m.from_address,
                m.subject_key,
                m.received_ms,
                m.raw,
            ),
        )
        if m.interaction_id is not None and m.thread_id is not None:
            _remember_ids(db, m.message_ids, m.interaction_id, m.thread_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """A message in the outbox: the exact bytes, to whom, and how sending went."""

    id: str
    kind: str  # reply | ack
    interaction_id: str
    source: str  # the mail source it answers ("" when none is known): its Sent folder
    sender: str  # the configured sender that sends it ("" when none is configured)
    message_id: str
    mail_from: str
    rcpts: tuple[str, ...]
    raw: bytes
    status: str = QUEUED
    attempts: int = 0
    created_ms: int = 0
    next_ms: int = 0
    last_error: str = ""
    done_ms: int | None = None
    thread_id: str = ""


@dataclass(frozen=True, slots=True)
class OutgoingWrite:
    """Puts a message in the outbox in the transaction that marks its draft Sending."""

    outgoing: Outgoing

    def apply(self, db: sqlite3.Connection) -> None:
        o = self.outgoing
        db.execute(
            "INSERT OR REPLACE INTO mail_out VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                o.id,
                o.kind,
                o.interaction_id,
                o.source,
                o.sender,
                o.message_id,
                o.mail_from,
                json.dumps(list(o.rcpts)),
                o.raw,
                o.status,
                o.attempts,
                o.created_ms,
                o.next_ms,
                o.last_error,
                o.done_ms,
            ),
        )
        if o.thread_id:
            _remember_ids(db, (o.message_id,), o.interaction_id, o.thread_id)


def _remember_ids(
    db: sqlite3.Connection, message_ids: tuple[str, ...], interaction_id: str, thread_id: str
) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO mail_ids VALUES (?, ?, ?)",
        [(mid, interaction_id, thread_id) for mid in message_ids if mid],
    )


class MailStore:
    """Reads and small updates; runs on the event loop thread like the interactions store."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(_SCHEMA)

    # -- folders ------------------------------------------------------------------------------

    def folder(self, source: str, folder: str) -> Folder | None:
        row = self.db.execute(
            "SELECT uidvalidity, last_uid FROM mail_folders WHERE source = ? AND folder = ?",
            (source, folder),
        ).fetchone()
        return None if row is None else Folder(uidvalidity=row[0], last_uid=row[1])

    def set_folder(self, source: str, folder: str, state: Folder) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO mail_folders VALUES (?, ?, ?, ?)",
            (source, folder, state.uidvalidity, state.last_uid),
        )

    # -- inbound ------------------------------------------------------------------------------

    def inbound(self, source: str, key: str) -> Inbound | None:
        row = self.db.execute(
            "SELECT * FROM mail_in WHERE source = ? AND key = ?", (source, key)
        ).fetchone()
        return None if row is None else _inbound(row)

    def inbound_of(self, interaction_id: str) -> Inbound | None:
        row = self.db.execute(
            "SELECT * FROM mail_in WHERE interaction_id = ?", (interaction_id,)
        ).fetchone()
        return None if row is None else _inbound(row)

    def counts(self) -> dict[str, int]:
        """How many messages each outcome had (``offered``, ``auto``, ``quarantined``)."""
        rows = self.db.execute("SELECT outcome, COUNT(*) FROM mail_in GROUP BY outcome")
        return {outcome: n for outcome, n in rows}

    def thread_by_ids(self, message_ids: list[str]) -> tuple[str, str] | None:
        """(interaction id, thread id) of the first of these Message-IDs we know."""
        for mid in message_ids:
            row = self.db.execute(
                "SELECT interaction_id, thread_id FROM mail_ids WHERE message_id = ?", (mid,)
            ).fetchone()
            if row is not None:
                return row[0], row[1]
        return None

    def thread_by_subject(
        self, source: str, from_address: str, subject_key: str, since_ms: int
    ) -> tuple[str, str] | None:
        """The latest offered message of this sender with this subject key, since then."""
        row = self.db.execute(
            "SELECT interaction_id, thread_id FROM mail_in WHERE source = ? AND "
            "from_address = ? AND subject_key = ? AND outcome = ? AND received_ms >= ? "
            "ORDER BY received_ms DESC LIMIT 1",
            (source, from_address, subject_key, OFFERED, since_ms),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    # -- outbox -------------------------------------------------------------------------------

    def outgoing(self, outgoing_id: str) -> Outgoing | None:
        row = self.db.execute("SELECT * FROM mail_out WHERE id = ?", (outgoing_id,)).fetchone()
        return None if row is None else _outgoing(row)

    def due(self, now_ms: int) -> list[Outgoing]:
        rows = self.db.execute(
            "SELECT * FROM mail_out WHERE status = ? AND next_ms <= ? ORDER BY next_ms, id",
            (QUEUED, now_ms),
        )
        return [_outgoing(row) for row in rows]

    def next_due_ms(self) -> int | None:
        row = self.db.execute(
            "SELECT MIN(next_ms) FROM mail_out WHERE status = ?", (QUEUED,)
        ).fetchone()
        return None if row is None else row[0]

    def outbox_counts(self) -> dict[str, int]:
        """How many outbox messages are in each status (``queued``, ``sent``, ``failed``)."""
        rows = self.db.execute("SELECT status, COUNT(*) FROM mail_out GROUP BY status")
        return {status: n for status, n in rows}

    def failures(self) -> list[tuple[str, str, str]]:
        """(id, interaction id, error) of every message the SMTP server refused for good."""
        rows = self.db.execute(
            "SELECT id, interaction_id, last_error FROM mail_out WHERE status = ? "
            "ORDER BY created_ms, id",
            (FAILED,),
        )
        return [(row[0], row[1], row[2]) for row in rows]

    def update_outgoing(
        self,
        outgoing_id: str,
        *,
        status: str,
        attempts: int,
        next_ms: int,
        last_error: str,
        done_ms: int | None,
    ) -> None:
        self.db.execute(
            "UPDATE mail_out SET status = ?, attempts = ?, next_ms = ?, last_error = ?, "
            "done_ms = ? WHERE id = ?",
            (status, attempts, next_ms, last_error, done_ms, outgoing_id),
        )


def _inbound(row: tuple[Any, ...]) -> Inbound:
    source, key, outcome, reason, interaction_id, thread_id, address, subject, at, raw = row
    return Inbound(
        source=source,
        key=key,
        outcome=outcome,
        reason=reason,
        interaction_id=interaction_id,
        thread_id=thread_id,
        from_address=address,
        subject_key=subject,
        received_ms=at,
        raw=raw,
    )


def _outgoing(row: tuple[Any, ...]) -> Outgoing:
    (id_, kind, ix_id, source, sender, mid, mail_from, rcpts, raw, status, attempts, created,
     next_ms, error, done) = row  # fmt: skip
    return Outgoing(
        id=id_,
        kind=kind,
        interaction_id=ix_id,
        source=source,
        sender=sender,
        message_id=mid,
        mail_from=mail_from,
        rcpts=tuple(json.loads(rcpts)),
        raw=raw,
        status=status,
        attempts=attempts,
        created_ms=created,
        next_ms=next_ms,
        last_error=error,
        done_ms=done,
    )
