"""A held ``/meta/connect``: one per session at most, answered through a callback.

No task waits while a connect is held: a held connect is this small record, a timer and an
entry in the hub's table, whatever the transport.  When the hold ends, the hub computes the
reply in a short task and hands it to the request's :class:`Responder` (long-polling) or
:class:`WsPeer` (websocket).  A hold ends for one of these reasons:

* ``WAKE`` — something was queued for the session (possibly after the batching window);
* ``TIMEOUT`` — the advised timeout passed;
* ``SUPERSEDED`` — a newer connect of the same session arrived (the old HTTP request gets the
  duplicate status, 500 by default; a websocket gets nothing, as in CometD);
* ``CLOSED`` — the session was disconnected (reply ``reconnect: none``, with what was queued);
* ``GONE`` — the session vanished server-side (expired, overflow): reply ``402::session_unknown``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Protocol

import msgspec

from protocol import Message, Reply

__all__ = ["End", "Held", "Outcome", "Responder", "WsPeer"]


class End(enum.Enum):
    WAKE = "wake"
    TIMEOUT = "timeout"
    SUPERSEDED = "superseded"
    CLOSED = "closed"
    GONE = "gone"


class Outcome(msgspec.Struct):
    """The response to one request: HTTP status and encoded messages (a JSON array's items).

    ``held`` names the session whose connect is being held for this request: the answer will
    come later through the request's responder.
    """

    status: int = 200
    parts: list[bytes] = msgspec.field(default_factory=list)
    held: str | None = None


class Responder(Protocol):
    """The long-polling side of a held connect: receives the response when the hold ends."""

    def respond(self, outcome: Outcome) -> None: ...


class WsPeer(Protocol):
    """The websocket side of a session: sends already-encoded messages as one frame.

    ``backed_up`` while the client does not read fast enough: no events are taken from the
    queues of its sessions until it has drained (the hub is then told, ``Hub.ws_drained``).
    """

    sessions: set[str]

    def send(self, parts: list[bytes]) -> None: ...

    def unavailable(self) -> None:
        """The engine cannot be reached: close with 1013 (try again later)."""
        ...

    @property
    def closed(self) -> bool: ...

    @property
    def backed_up(self) -> bool: ...


class Held:
    __slots__ = (
        "ack",
        "browser_id",
        "client_id",
        "counted",
        "events",
        "flushing",
        "on_end",
        "push",
        "reply",
        "request",
        "responder",
        "timer",
        "ws",
    )

    def __init__(
        self,
        *,
        client_id: str,
        reply: Reply,
        request: Message,
        browser_id: str | None,
        ws: WsPeer | None,
        responder: Responder | None,
        push: bool,
        ack: bool = False,
    ) -> None:
        self.client_id = client_id
        self.ack = ack  # the session uses the ack extension
        self.reply = reply
        self.request = request
        self.browser_id = browser_id
        self.ws = ws
        self.responder = responder
        self.push = push  # websocket: events are pushed while the connect stays held
        self.events: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None
        self.flushing = False
        self.counted = False  # counts against its browser's long-poll limit
        self.on_end: Callable[[Held, End], None] | None = None

    def start(self, timeout_s: float, on_end: Callable[[Held, End], None]) -> None:
        self.on_end = on_end
        self.timer = asyncio.get_running_loop().call_later(timeout_s, self._timeout)

    def end(self, reason: End, events: list[bytes] | None = None) -> None:
        """End the hold (once; later calls only add nothing)."""
        if events:
            self.events.extend(events)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        callback, self.on_end = self.on_end, None
        if callback is not None:
            callback(self, reason)

    @property
    def deadline(self) -> float | None:
        """The loop time at which the hold ends unless something ends it sooner."""
        return self.timer.when() if self.timer is not None else None

    def wake_after(self, delay_s: float) -> None:
        """End with ``WAKE`` after ``delay_s`` instead of at the hold timeout (batching)."""
        if self.flushing or self.on_end is None:
            return
        self.flushing = True
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(delay_s, self.end, End.WAKE)

    def _timeout(self) -> None:
        self.timer = None
        self.end(End.TIMEOUT)
