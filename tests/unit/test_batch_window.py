"""The adaptive batching window, with time passed in (no server, no sleeping)."""

from __future__ import annotations

from gateway.bayeux.engines.memory import MemoryEngine
from gateway.bayeux.hub import Hub
from protocol import Settings


class Clock:
    def __init__(self) -> None:
        self.ms = 0

    def __call__(self) -> int:
        return self.ms


def hub(clock: Clock, **kw: int) -> Hub:
    return Hub(settings=Settings(), engine=MemoryEngine(), clock_ms=clock, **kw)


def second(h: Hub, clock: Clock, flushes: int) -> int:
    h.delivery._flush_count = flushes  # what one second of traffic would have counted
    clock.ms += 1000
    h.delivery.adapt_window()
    return h.delivery.batch_window_ms


def test_window_stays_at_its_base_under_the_budget() -> None:
    clock = Clock()
    h = hub(clock, batch_window_ms=250, max_flushes_per_s=15_000)
    assert [second(h, clock, n) for n in (0, 5_000, 14_999)] == [250, 250, 250]


def test_window_widens_under_load_up_to_its_cap_and_comes_back() -> None:
    clock = Clock()
    h = hub(clock, batch_window_ms=250, max_flushes_per_s=10_000, max_batch_window_ms=1000)
    widened = [second(h, clock, 40_000) for _ in range(8)]
    assert widened[0] > 250
    assert widened == sorted(widened)
    assert 990 <= widened[-1] <= 1000  # converges on the cap (smoothed, never past it)
    calm = [second(h, clock, 100) for _ in range(12)]
    assert calm == sorted(calm, reverse=True)
    assert calm[-1] == 250


def test_zero_budget_keeps_the_window_fixed() -> None:
    clock = Clock()
    h = hub(clock, batch_window_ms=250, max_flushes_per_s=0)
    assert second(h, clock, 1_000_000) == 250


def delays(h: Hub, clock: Clock, sessions: list[str], after_ms: int) -> list[int]:
    """Every session flushed at the same instant; their next flush delays ``after_ms`` later."""
    for client_id in sessions:
        h.delivery._flushed[client_id] = clock.ms
    clock.ms += after_ms
    return [h.delivery._flush_delay_ms(client_id) for client_id in sessions]


def test_at_the_base_window_sessions_flush_one_window_after_their_last() -> None:
    clock = Clock()
    h = hub(clock, batch_window_ms=250, max_flushes_per_s=15_000)
    assert set(delays(h, clock, [f"c{i}" for i in range(50)], 10)) == {240}
    clock.ms += 240
    assert h.delivery._flush_delay_ms("c0") == 0  # a quiet window: at once


def test_a_widened_window_spreads_sessions_over_it_instead_of_flushing_in_step() -> None:
    clock = Clock()
    h = hub(clock, batch_window_ms=250, max_flushes_per_s=1_000, max_batch_window_ms=1000)
    for _ in range(6):
        second(h, clock, 100_000)
    window = h.delivery.batch_window_ms
    assert window > 900
    sessions = [f"c{i}" for i in range(300)]
    waits = delays(h, clock, sessions, 10)
    # Its slot nearest to a window after the last flush: half a window to one and a half.
    assert all(window // 2 - 10 <= d < window + window // 2 - 10 for d in waits)
    assert len({d // 50 for d in waits}) >= window // 50 - 1  # every 50 ms slice is used
    # Once in its slot, a session flushes one window after the other, even when a flush
    # goes out a little late.
    clock.ms += waits[0]
    assert delays(h, clock, sessions[:1], 1) == [window - 1]
    clock.ms += window - 1 + 7
    assert delays(h, clock, sessions[:1], 1) == [window - 1 - 7]
