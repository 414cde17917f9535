"""Coroutines run eagerly (gateway/eager.py) behave as tasks do towards the futures they await."""

from __future__ import annotations

import asyncio

from gateway.bayeux.eager import start_eagerly


async def test_a_coroutine_that_never_waits_needs_no_task() -> None:
    done: list[str] = []

    async def at_once() -> None:
        done.append("ran")

    assert start_eagerly(at_once()) is None
    assert done == ["ran"]


async def test_a_future_awaited_eagerly_can_be_awaited_by_a_task_too() -> None:
    """aiohttp's websocket writer and its close wait on the same drain future."""
    shared: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    woken: list[str] = []

    async def wait(name: str) -> None:
        await shared
        woken.append(name)

    eager = start_eagerly(wait("eager"))
    assert eager is not None  # it is waiting: a task finishes it
    task = asyncio.ensure_future(wait("task"))
    await asyncio.sleep(0)
    shared.set_result(None)
    await asyncio.wait_for(asyncio.gather(eager, task), 1)
    assert sorted(woken) == ["eager", "task"]
