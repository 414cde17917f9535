"""A held ``/meta/connect``: one per session at most.

Over long-polling the HTTP request waits on a future; over websocket the connect stays open
while events are pushed as frames, and its reply goes out at timeout.  Either way a held connect
ends for one of these reasons:

* ``WAKE`` — something was queued for the session;
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

from protocol import Message, Reply

__all__ = ["End", "Held", "WsPeer"]


class End(enum.Enum):
    WAKE = "wake"
    TIMEOUT = "timeout"
    SUPERSEDED = "superseded"
    CLOSED = "closed"
    GONE = "gone"


class WsPeer(Protocol):
    """The websocket side of a session: sends already-encoded messages as one frame."""

    sessions: set[str]

    def send(self, parts: list[bytes]) -> None: ...

    @property
    def closed(self) -> bool: ...


class Held:
    __slots__ = (
        "browser_id",
        "client_id",
        "counted",
        "events",
        "flushing",
        "on_end",
        "push",
        "reply",
        "request",
        "timer",
        "waiter",
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
        push: bool,
    ) -> None:
        self.client_id = client_id
        self.reply = reply
        self.request = request
        self.browser_id = browser_id
        self.ws = ws
        self.push = push
        self.events: list[bytes] = []
        self.waiter: asyncio.Future[End] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.flushing = False
        self.counted = False  # counts against its browser's long-poll limit
        # Websocket connects end through a callback instead of a waiting request.
        self.on_end: Callable[[Held, End], None] | None = None

    def end(self, reason: End, events: list[bytes] | None = None) -> None:
        if events:
            self.events.extend(events)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.waiter is not None:
            if not self.waiter.done():
                self.waiter.set_result(reason)
        elif self.on_end is not None:
            callback, self.on_end = self.on_end, None
            callback(self, reason)

    def wake_after(self, delay_s: float) -> None:
        """End with ``WAKE`` after ``delay_s`` instead of at the hold timeout (batching)."""
        if self.flushing:
            return
        self.flushing = True
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(delay_s, self._wake)

    def _wake(self) -> None:
        self.timer = None
        self.end(End.WAKE)

    async def wait(self, timeout_s: float) -> End:
        """Long-polling: wait for the end of the hold."""
        self.flushing = False
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.timer = loop.call_later(timeout_s, self._timeout)
        try:
            return await self.waiter
        finally:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.waiter = None

    def _timeout(self) -> None:
        self.timer = None
        self.end(End.TIMEOUT)

    def start_timer(self, timeout_s: float) -> None:
        """Websocket: schedule the connect reply."""
        self.timer = asyncio.get_running_loop().call_later(timeout_s, self._timeout)
