"""The HTTP edge of one listening socket: every connection starts here (see
:mod:`gateway.bayeux.transports.fasthttp` for what one connection does).

:class:`FastPath` holds what its connections share: the hub and options, the Bayeux mounts the
lean path serves, the count of connections per client address, and one sweeper, once a second,
that times out requests arriving too slowly and closes idle keep-alive connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from gateway.bayeux.hub import Hub
from gateway.bayeux.transports.common import TransportOptions
from gateway.bayeux.transports.fasthttp import KEEPALIVE_S, FastHttpProtocol
from gateway.bayeux.transports.heads import Date
from gateway.bayeux.transports.websocket import OpenSocket

__all__ = ["FastPath"]

SWEEP_S = 1.0


class FastPath:
    """Shared by every connection of one listening socket."""

    def __init__(
        self,
        *,
        hub: Hub,
        options: TransportOptions,
        mounts: Iterable[str],
        fallback: Callable[[], asyncio.Protocol],
        request_timeout_s: float = 5.0,
        max_connections_per_address: int = 0,
        access_log: bool = False,
        sockets: set[OpenSocket] | None = None,
    ) -> None:
        self.hub = hub
        self.options = options
        self.fallback = fallback
        self.request_timeout_s = request_timeout_s
        self.max_per_address = max_connections_per_address
        self.access_log = access_log
        #: The open websockets (shared with the aiohttp route's, closed together at shutdown).
        self.sockets: set[OpenSocket] = set() if sockets is None else sockets
        self._mounts = tuple(mounts)
        self.connections: set[FastHttpProtocol] = set()
        self.per_address: dict[str, int] = {}
        self.closing = False
        self.date = Date()
        self._sweeper: asyncio.TimerHandle | None = None
        self._ticks = 0

    def protocol(self) -> FastHttpProtocol:
        if self._sweeper is None and not self.closing:
            self._sweep()
        return FastHttpProtocol(self)

    def _sweep(self) -> None:
        """Time out requests arriving too slowly; close idle keep-alive connections."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._ticks += 1
        idle_cutoff = now - KEEPALIVE_S if self._ticks % 15 == 0 else None
        for connection in list(self.connections):
            deadline = connection.deadline
            if deadline is not None and deadline < now:
                connection.timed_out()
            elif idle_cutoff is not None and connection.idle_since(idle_cutoff):
                connection.close()
        self._sweeper = loop.call_later(SWEEP_S, self._sweep) if not self.closing else None

    def serves(self, path: str) -> bool:
        for mount in self._mounts:
            if path == mount:
                return True
            if path.startswith(mount) and path[len(mount) : len(mount) + 1] == "/":
                return "/" not in path[len(mount) + 1 :]
        return False

    def admit(self, remote: str | None) -> bool:
        """Count a new connection of ``remote``; ``False`` when it has too many already."""
        if remote is None:
            return True
        count = self.per_address.get(remote, 0) + 1
        self.per_address[remote] = count
        return not self.max_per_address or count <= self.max_per_address

    def release(self, remote: str | None) -> None:
        if remote is None:
            return
        count = self.per_address.get(remote, 0) - 1
        if count > 0:
            self.per_address[remote] = count
        else:
            self.per_address.pop(remote, None)

    async def shutdown(self, timeout_s: float) -> None:
        """Close idle connections now; let busy ones finish their answer, up to ``timeout_s``."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        busy = []
        for connection in list(self.connections):
            if connection.task is not None:
                busy.append(connection.task)
            elif not connection.busy and not connection.delegated:
                connection.close()
        if busy:
            await asyncio.wait(busy, timeout=timeout_s)
        for connection in list(self.connections):
            if not connection.delegated:  # aiohttp's own shutdown closes those
                connection.close()
