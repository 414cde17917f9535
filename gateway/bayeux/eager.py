"""Run a coroutine eagerly: synchronously until it first suspends, and only then as a task.

Most gateway coroutines never suspend (the memory engine answers at once; aiohttp writes a
frame without waiting unless the socket is backed up), and creating a task for each costs more
than the work itself.  Python 3.12 has eager task factories; this is the same idea for 3.11.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

from gateway.bayeux.engines.base import EngineUnavailable

__all__ = ["start_eagerly"]

log = structlog.get_logger("gateway.bayeux.eager")


def start_eagerly(
    coro: Coroutine[Any, Any, None], *, eager: bool = True
) -> asyncio.Task[None] | None:
    """Run ``coro`` now; if it suspends, a task finishes it (and is returned).

    ``eager=False``: a task from the start.  For work that always waits on I/O (an engine on
    the network), where running the first step here saves nothing, and where libraries need a
    current task (redis-py's time-outs use ``asyncio.timeout``)."""
    if not eager:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(_report)
        return task
    try:
        waiting = _taken(coro.send(None))
    except StopIteration:
        return None
    except EngineUnavailable:
        return None  # an outage: the engine logs it once, not once per piece of work
    except Exception:
        log.exception("eager_coroutine_failed")  # as an unawaited task would report it
        return None
    task = asyncio.ensure_future(_resume(coro, waiting))
    task.add_done_callback(_report)
    return task


def _report(task: asyncio.Task[None]) -> None:
    exc = None if task.cancelled() else task.exception()
    if exc is not None and not isinstance(exc, EngineUnavailable):
        log.error("eager_coroutine_failed", exc_info=exc)


def _taken(waiting: Any) -> Any:
    """Do what a task does with a future its coroutine yields: clear its blocking flag.

    A future sets the flag when it yields itself and the task that takes the yield clears it.
    Left set, the next coroutine to await the same future (aiohttp's writers share one drain
    future per connection) fails at once with "await wasn't used with future".
    """
    if asyncio.isfuture(waiting):
        waiting._asyncio_future_blocking = False
    return waiting


async def _resume(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Drive ``coro`` on from the point where it suspended, as a task would."""
    while True:
        try:
            if asyncio.isfuture(waiting):
                await asyncio.wait([waiting])  # its outcome is read by ``coro`` itself
            else:
                await asyncio.sleep(0)  # a bare yield
        except asyncio.CancelledError as cancelled:
            try:
                waiting = _taken(coro.throw(cancelled))
            except StopIteration:
                return
            continue
        try:
            waiting = _taken(coro.send(None))
        except StopIteration:
            return
