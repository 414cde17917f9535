"""The garbage-collection policy: survivors are frozen; a full collection comes on schedule."""

from __future__ import annotations

import gc
import weakref

import pytest
from structlog.testing import capture_logs

from gateway.gcpolicy import GcPolicy


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _unfrozen() -> object:
    yield
    gc.unfreeze()


def test_tick_freezes_survivors_out_of_collections() -> None:
    clock = [0.0]
    policy = GcPolicy(1.0, 600.0, clock=lambda: clock[0])
    kept = [Cycle() for _ in range(1000)]
    policy.tick()
    assert gc.get_freeze_count() >= len(kept)


def test_full_collection_reclaims_frozen_cycles_on_schedule() -> None:
    clock = [0.0]
    policy = GcPolicy(1.0, 600.0, clock=lambda: clock[0])
    garbage = Cycle()
    alive = weakref.ref(garbage)
    policy.tick()  # frozen while still referenced
    del garbage  # now a cycle nobody can reach: collections skip it while it is frozen
    gc.collect()
    assert alive() is not None
    clock[0] = 599.0
    with capture_logs() as logs:
        policy.tick()
    assert logs == []
    clock[0] = 600.0
    with capture_logs() as logs:
        policy.tick()
    (entry,) = logs
    assert entry["event"] == "gc_full_collection"
    assert entry["unreachable"] >= 1 and alive() is None
    assert gc.get_freeze_count() > 0  # what survived the full collection is frozen again
