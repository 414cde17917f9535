"""The contract every engine honours: the memory engine and the Redis engine (on a real
redis-server the suite starts) pass the same cases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from redisproc import RedisServer, redis_server

from gateway.bayeux.engines.base import Engine, OverflowPolicy, QueueLimits
from gateway.bayeux.engines.memory import MemoryEngine
from gateway.bayeux.engines.redis import RedisEngine
from protocol import SessionRecord


class Recorder:
    def __init__(self) -> None:
        self.woken: list[str] = []
        self.closed_calls: list[tuple[str, str]] = []
        self.overflows: list[tuple[str, OverflowPolicy]] = []
        self.taken_ids: list[str] = []

    def wake(self, client_id: str) -> None:
        self.woken.append(client_id)

    def closed(self, record: SessionRecord, reason: str) -> None:
        self.closed_calls.append((record.client_id, reason))

    def overflowed(self, client_id: str, policy: OverflowPolicy, dropped: int) -> None:
        self.overflows.append((client_id, policy))

    def taken(self, client_id: str) -> None:
        self.taken_ids.append(client_id)


EngineFactory = Callable[[QueueLimits], Engine]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def factory(request: pytest.FixtureRequest) -> AsyncIterator[EngineFactory]:
    if request.param == "memory":
        yield MemoryEngine
        return
    url = request.getfixturevalue("redis").url
    prefix = f"t{uuid.uuid4().hex[:8]}:"  # every test its own keys on the shared server
    made: list[RedisEngine] = []

    def make(limits: QueueLimits) -> Engine:
        made.append(RedisEngine(url, limits=limits, prefix=prefix))
        return made[-1]

    yield make
    for engine in made:
        await engine.close()


async def _engine(
    factory: EngineFactory, limits: QueueLimits | None = None
) -> tuple[Engine, Recorder]:
    engine = factory(limits or QueueLimits())
    recorder = Recorder()
    engine.attach(recorder)
    await engine.start()
    return engine, recorder


def record(client_id: str, **kw: object) -> SessionRecord:
    return SessionRecord(client_id=client_id, browser_id="b", created_ms=0, **kw)  # type: ignore[arg-type]


async def test_ping_measures_one_round_trip(factory: EngineFactory) -> None:
    engine, _ = await _engine(factory)
    seconds = await engine.ping()
    assert type(seconds) is float
    assert 0.0 <= seconds < 1.0


async def test_sessions_are_created_read_updated_and_destroyed(factory: EngineFactory) -> None:
    engine, _ = await _engine(factory)
    await engine.create_session(record("c1"), expires_ms=10_000)
    assert await engine.get_session("c1") == record("c1")
    await engine.update_session(record("c1", connected=True))
    assert (await engine.get_session("c1")).connected  # type: ignore[union-attr]
    assert await engine.session_ids() == ["c1"]
    assert await engine.destroy_session("c1") == record("c1", connected=True)
    assert await engine.get_session("c1") is None
    assert await engine.destroy_session("c1") is None


async def test_publish_reaches_each_matching_subscriber_once(factory: EngineFactory) -> None:
    engine, recorder = await _engine(factory)
    for cid in ("exact", "wild", "deep", "all", "other"):
        await engine.create_session(record(cid), expires_ms=10_000)
    await engine.subscribe("exact", ["/a/b"])
    await engine.subscribe("wild", ["/a/*", "/a/b"])
    await engine.subscribe("deep", ["/a/**"])
    await engine.subscribe("all", ["/**"])
    await engine.subscribe("other", ["/a/c", "/a/b/*"])
    assert await engine.publish("/a/b", b"F1") == 4
    for cid in ("exact", "wild", "deep", "all"):
        assert await engine.drain(cid) == [b"F1"]
    assert await engine.drain("other") == []
    assert sorted(recorder.woken) == ["all", "deep", "exact", "wild"]


async def test_patterns_match_only_while_subscribed(factory: EngineFactory) -> None:
    """Publications find pattern subscribers as they come and go (the memory engine skips
    pattern lookups while no pattern is subscribed)."""
    engine, _ = await _engine(factory)
    for cid in ("exact", "wild"):
        await engine.create_session(record(cid), expires_ms=10_000)
    await engine.subscribe("exact", ["/a/b"])

    async def reached() -> list[str]:
        await engine.publish("/a/b", b"F")
        return [cid for cid in ("exact", "wild") if await engine.drain(cid)]

    assert await reached() == ["exact"]
    await engine.subscribe("wild", ["/a/*", "/**"])
    assert await reached() == ["exact", "wild"]
    await engine.unsubscribe("wild", ["/a/*"])
    assert await reached() == ["exact", "wild"]  # still through /**
    await engine.unsubscribe("wild", ["/**"])
    assert await reached() == ["exact"]
    await engine.subscribe("wild", ["/a/**"])
    assert await reached() == ["exact", "wild"]
    await engine.destroy_session("wild")
    await engine.create_session(record("wild"), expires_ms=10_000)
    assert await reached() == ["exact"]


async def test_queue_keeps_order_and_drain_empties_it(factory: EngineFactory) -> None:
    engine, _ = await _engine(factory)
    await engine.create_session(record("c"), expires_ms=10_000)
    await engine.subscribe("c", ["/x"])
    for i in range(5):
        await engine.publish("/x", f"m{i}".encode())
    assert await engine.deliver("c", b"direct")
    assert await engine.has_messages("c")
    assert await engine.queued("c") == 6
    assert await engine.drain("c") == [b"m0", b"m1", b"m2", b"m3", b"m4", b"direct"]
    assert not await engine.has_messages("c")
    assert await engine.queued("c") == 0
    assert await engine.queued("nobody") == 0
    assert not await engine.deliver("nobody", b"x")


async def test_unsubscribe_and_destroy_stop_delivery(factory: EngineFactory) -> None:
    engine, _ = await _engine(factory)
    await engine.create_session(record("c"), expires_ms=10_000)
    await engine.subscribe("c", ["/x", "/y"])
    await engine.unsubscribe("c", ["/x"])
    assert await engine.subscriptions("c") == {"/y"}
    assert await engine.publish("/x", b"1") == 0
    await engine.destroy_session("c")
    assert await engine.publish("/y", b"2") == 0
    assert not await engine.subscribe("c", ["/z"])


async def test_expiry_is_suspended_while_held(factory: EngineFactory) -> None:
    engine, _ = await _engine(factory)
    await engine.create_session(record("idle"), expires_ms=1_000)
    await engine.create_session(record("held"), expires_ms=1_000)
    await engine.create_session(record("busy"), expires_ms=1_000)
    await engine.hold("held")
    await engine.touch("busy", 5_000)
    expired = await engine.expire(2_000)
    assert [r.client_id for r in expired] == ["idle"]
    await engine.release("held", 3_000)
    assert [r.client_id for r in await engine.expire(4_000)] == ["held"]
    assert [r.client_id for r in await engine.expire(6_000)] == ["busy"]
    assert await engine.session_ids() == []


@pytest.mark.parametrize(
    ("policy", "expected_queue", "session_left"),
    [
        (OverflowPolicy.DROP_OLDEST, [b"2", b"3"], True),
        (OverflowPolicy.DROP_NEWEST, [b"1", b"2"], True),
        (OverflowPolicy.DISCONNECT, [], False),
    ],
    ids=lambda v: v.value if isinstance(v, OverflowPolicy) else None,
)
async def test_queue_overflow_policies(
    factory: EngineFactory,
    policy: OverflowPolicy,
    expected_queue: list[bytes],
    session_left: bool,
) -> None:
    engine, recorder = await _engine(factory, QueueLimits(max_messages=2, overflow=policy))
    await engine.create_session(record("slow"), expires_ms=10_000)
    await engine.subscribe("slow", ["/x"])
    for frame in (b"1", b"2", b"3"):
        await engine.publish("/x", frame)
    assert recorder.overflows == [("slow", policy)]
    assert await engine.queued("slow") == len(expected_queue)
    assert await engine.drain("slow") == expected_queue
    assert (await engine.get_session("slow") is not None) is session_left
    if not session_left:
        assert recorder.closed_calls == [("slow", "overflow")]


async def test_drain_takes_the_oldest_up_to_a_limit(factory: EngineFactory) -> None:
    engine, _ = await _engine(factory)
    await engine.create_session(record("c1"), expires_ms=10_000)
    await engine.subscribe("c1", ["/a"])
    for n in range(5):
        await engine.publish("/a", b"F%d" % n)
    assert await engine.drain("c1", 0) == []
    assert await engine.drain("c1", 2) == [b"F0", b"F1"]
    assert await engine.queued("c1") == 3
    assert await engine.drain("c1", 10) == [b"F2", b"F3", b"F4"]
    assert await engine.drain("c1", 1) == []


async def test_ack_batches_wait_for_their_acknowledgement(factory: EngineFactory) -> None:
    """The ack extension's state is the engine's: any node re-sends what was not acknowledged."""
    engine, _ = await _engine(factory)
    await engine.create_session(record("c", ack=True), expires_ms=10_000)
    await engine.subscribe("c", ["/a"])
    for n in range(3):
        await engine.publish("/a", b"E%d" % n)
    assert await engine.hand_out("c", [], 10) == ([b"E0", b"E1", b"E2"], 1)
    assert await engine.queued("c") == 0
    assert await engine.has_messages("c")  # handed out, not acknowledged
    # The reply was lost: the next connect acknowledges nothing and gets them again.
    await engine.acknowledge("c", 0)
    await engine.publish("/a", b"E3")
    assert await engine.hand_out("c", [b"X"], 10) == ([b"E0", b"E1", b"E2", b"X", b"E3"], 2)
    await engine.acknowledge("c", 1)
    assert await engine.hand_out("c", [], 10) == ([b"X", b"E3"], 3)
    await engine.acknowledge("c", 3)
    assert not await engine.has_messages("c")
    assert await engine.hand_out("c", [], 10) == ([], 4)


async def test_ack_hands_out_at_most_the_limit(factory: EngineFactory) -> None:
    engine, _ = await _engine(factory)
    await engine.create_session(record("c", ack=True), expires_ms=10_000)
    await engine.subscribe("c", ["/a"])
    for n in range(5):
        await engine.publish("/a", b"E%d" % n)
    assert await engine.hand_out("c", [], 2) == ([b"E0", b"E1"], 1)
    assert await engine.queued("c") == 3
    assert await engine.hand_out("c", [], 2) == ([b"E0", b"E1"], 2)  # no room: nothing new
    await engine.acknowledge("c", 2)
    assert await engine.hand_out("c", [], 2) == ([b"E2", b"E3"], 3)
    assert await engine.hand_out("gone", [], 2) == ([], 0)
    await engine.destroy_session("c")
    assert not await engine.has_messages("c")


async def test_census_counts_sessions_and_queued_events(factory: EngineFactory) -> None:
    engine, _ = await _engine(factory)
    assert await engine.census() == (0, 0)
    for cid in ("c1", "c2", "c3"):
        await engine.create_session(record(cid), expires_ms=10_000)
    await engine.subscribe("c1", ["/a"])
    await engine.subscribe("c2", ["/a", "/b"])
    await engine.publish("/a", b"1")
    await engine.publish("/b", b"2")
    assert await engine.census() == (3, 3)
    await engine.drain("c2")
    await engine.destroy_session("c3")
    assert await engine.census() == (2, 1)
