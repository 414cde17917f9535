"""Per-client session rules: settings, the session record, expiry and the ack batch state.

Time is passed in as integer milliseconds (``now_ms``); nothing here reads a clock.

Expiry (CometD ``ServerSessionImpl``, Bayeux §7.1 "act as if a disconnect was received"):

* after a handshake, a session that never connects expires ``interval + maxInterval`` later;
* while a ``/meta/connect`` is held, the session does not expire;
* when a connect reply is written, expiry is ``now + interval + maxInterval``;
* any other message pushes expiry to at least ``now + maxInterval``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

__all__ = ["AckState", "SessionRecord", "Settings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The protocol knobs; defaults are CometD 8's (timeout as in the seed payloads)."""

    timeout_ms: int = 30_000
    interval_ms: int = 0
    max_interval_ms: int = 10_000
    max_client_timeout_ms: int = 60_000
    connection_types: tuple[str, ...] = ("websocket", "long-polling", "callback-polling")
    trust_client_session: bool = False
    max_sessions_per_browser: int = 1
    multi_session_interval_ms: int = 2_000
    ack_extension: bool = True
    validate_ids: bool = True

    def expiry_after_connect(self, now_ms: int) -> int:
        return now_ms + self.interval_ms + self.max_interval_ms

    def expiry_after_activity(self, now_ms: int) -> int:
        return now_ms + self.max_interval_ms


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the engine stores about a session; serialisable so a shared engine can hold it."""

    client_id: str
    browser_id: str | None
    created_ms: int
    ack: bool = False
    connected: bool = False
    transport: str = "long-polling"
    user: str | None = None  # the agent the security policy bound the session to
    login: str | None = None  # which of that agent's logins (an opaque handle, not a secret)


@dataclass(slots=True)
class AckState:
    """The server side of CometD's ``ack`` extension (``AcknowledgedMessagesSessionExtension``).

    Every event handed to a connect reply is tagged with the batch number current at that time
    and kept until the client acknowledges that batch (its next connect carries
    ``ext.ack = <batch>``).  Unacknowledged events are re-sent with the next connect reply, in
    order, ahead of newer ones.  The batch counter starts at 1.
    """

    batch: int = 1
    unacked: list[tuple[int, bytes]] = field(default_factory=list)

    def acknowledge(self, acked: int) -> None:
        """Drop every event of a batch ≤ ``acked``."""
        if self.unacked and self.unacked[0][0] <= acked:
            self.unacked = [(b, e) for b, e in self.unacked if b > acked]

    @property
    def pending(self) -> bool:
        return bool(self.unacked)

    def send(self, fresh: list[bytes]) -> tuple[list[bytes], int]:
        """Tag ``fresh`` events with the current batch; return everything unacked and the batch."""
        batch = self.batch
        self.batch += 1
        self.unacked.extend((batch, event) for event in fresh)
        return [event for _, event in self.unacked], batch
