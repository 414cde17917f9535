"""The shared engine: sessions, subscriptions and queues in one Redis, for several nodes.

Every node reads and writes the same keys, so any request of any session can land on any
node.  Each operation that touches more than one key is one Lua script (atomic, one round
trip): a publish fans out to every subscriber's queue, applies the overflow policy and rings
the doorbells in one call.

Keys (``P`` is the prefix, ``bx:`` by default; ``{cid}`` hash-tags a session's keys so that
one Redis Cluster slot could hold them):

=================  ======  ===================================================================
``P{cid}:s``       hash    ``rec`` (the msgpack :class:`protocol.SessionRecord`), ``exp``
                           (wall-clock ms it expires at), ``held`` (the node holding its
                           connect, or empty)
``P{cid}:sub``     set     the session's subscriptions
``P{cid}:q``       list    queued event frames, oldest first
``P{cid}:ua``      list    the ``ack`` extension's events handed out and not acknowledged,
                           each ``<batch>:<frame>``; the hash's ``ab`` is the last batch
``Pch:<channel>``  set     client ids subscribed to ``channel`` (a pattern or a name)
``Psessions``      zset    client id → when the session expires (a held one: when its node's
                           lease ends), for the sweep
=================  ======  ===================================================================

Wake-ups: a queue going from empty to non-empty wakes the session's holder.  When the
session's connect is held by another node (``held``), the script publishes a doorbell naming
the session on that node's channel ``Pbell:<node>`` (a hold taken from another node rings
that node with ``!<client id>``: it lets go of its older connect); each node has one
subscriber connection and routes its doorbells in process.  Otherwise the publishing node's
own listener is woken.  A node registers a hold (``held`` = its id) before it looks at the
queue, so no wake-up is lost between the look and the wait.

Nothing outlives its session: every per-session key carries a Redis expiry a grace period
after the session's own, and a hold is a lease (``hold_lease_ms``) so the sessions of a node
that died expire like any other.  The sweep (:meth:`RedisEngine.expire`, run by every node)
removes them properly, channel memberships included; a publish drops a member whose session
is gone.  Times given to the engine are wall-clock milliseconds: nodes share no other clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

import msgspec
import structlog
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.bayeux.engines.base import EngineListener, EngineUnavailable, QueueLimits
from protocol import SessionRecord, expand

__all__ = ["EngineUnavailable", "RedisEngine", "default_node_id"]

log = structlog.get_logger("gateway.bayeux.engines.redis")

#: How long a session's keys outlive its expiry in Redis when no sweep removed them first.
GRACE_MS = 60_000
#: Sessions one sweep call removes at most (the next sweep takes the rest).
SWEEP_BATCH = 500
#: A command's time limit: during an outage a request fails in bounded time (503), not hangs.
COMMAND_TIMEOUT_S = 1.5
#: Connections to Redis per node; more requests wait for one (a bench with 1,000 clients
#: exhausted redis-py's default pool of 100, which fails instead of waiting).
POOL_SIZE = 200
#: How often a node checks the sessions it holds for events whose doorbell it missed (one
#: rang while its subscriber connection was re-established after an outage).
RESYNC_S = 1.0
#: What counts as an outage (a script error is a bug of ours, not an outage).
_OUTAGE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)

T = TypeVar("T")

_encode_record = msgspec.msgpack.Encoder().encode
_decode_record = msgspec.msgpack.Decoder(SessionRecord).decode


def default_node_id() -> str:
    """Unique enough across a fleet and across restarts: host, process and start time."""
    return f"{socket.gethostname()}-{os.getpid()}-{int(time.time() * 1000) % 10**9:x}"


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- scripts ----------------------------------------------------------------------------------
# KEYS never name other sessions' keys (they are found from the prefix inside the scripts), so
# a script stays one round trip however many sessions it touches.

_COMMON = """
local GRACE_MS = @GRACE_MS@
local P = ARGV[1]
local function skey(cid) return P .. '{' .. cid .. '}:s' end
local function subkey(cid) return P .. '{' .. cid .. '}:sub' end
local function qkey(cid) return P .. '{' .. cid .. '}:q' end
local function uakey(cid) return P .. '{' .. cid .. '}:ua' end
local function destroy(cid)
  local rec = redis.call('HGET', skey(cid), 'rec')
  redis.call('ZREM', P .. 'sessions', cid)
  if not rec then return false end
  for _, ch in ipairs(redis.call('SMEMBERS', subkey(cid))) do
    redis.call('SREM', P .. 'ch:' .. ch, cid)
  end
  redis.call('DEL', skey(cid), subkey(cid), qkey(cid), uakey(cid))
  return rec
end
local function keep_until(cid, at)
  -- at least GRACE_MS from now: an expiry already past is the sweep's to act on, not Redis's
  local t = redis.call('TIME')
  local floor = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + GRACE_MS
  if at < floor then at = floor end
  redis.call('PEXPIREAT', skey(cid), at)
  if redis.call('EXISTS', subkey(cid)) == 1 then redis.call('PEXPIREAT', subkey(cid), at) end
  if redis.call('EXISTS', qkey(cid)) == 1 then redis.call('PEXPIREAT', qkey(cid), at) end
  if redis.call('EXISTS', uakey(cid)) == 1 then redis.call('PEXPIREAT', uakey(cid), at) end
end
-- an unacknowledged event is stored as '<batch>:<frame>'
local function batch_of(entry)
  return tonumber(string.sub(entry, 1, string.find(entry, ':', 1, true) - 1))
end
local function frame_of(entry) return string.sub(entry, string.find(entry, ':', 1, true) + 1) end
""".replace("@GRACE_MS@", str(GRACE_MS))

# ARGV: prefix, cid, record, expires_ms, grace_ms
_CREATE = (
    _COMMON
    + """
local cid, exp = ARGV[2], tonumber(ARGV[4])
redis.call('HSET', skey(cid), 'rec', ARGV[3], 'exp', exp, 'held', '')
redis.call('ZADD', P .. 'sessions', exp, cid)
keep_until(cid, exp + tonumber(ARGV[5]))
return 1
"""
)

# ARGV: prefix, cid, record
_UPDATE = (
    _COMMON
    + """
if redis.call('EXISTS', skey(ARGV[2])) == 0 then return 0 end
redis.call('HSET', skey(ARGV[2]), 'rec', ARGV[3])
return 1
"""
)

# ARGV: prefix, cid
_DESTROY = (
    _COMMON
    + """
return destroy(ARGV[2])
"""
)

# ARGV: prefix, cid, channel...
_SUBSCRIBE = (
    _COMMON
    + """
local cid = ARGV[2]
if redis.call('EXISTS', skey(cid)) == 0 then return 0 end
for i = 3, #ARGV do
  redis.call('SADD', subkey(cid), ARGV[i])
  redis.call('SADD', P .. 'ch:' .. ARGV[i], cid)
end
local at = redis.call('PEXPIRETIME', skey(cid))
if at > 0 then redis.call('PEXPIREAT', subkey(cid), at) end
return 1
"""
)

# ARGV: prefix, cid, channel...
_UNSUBSCRIBE = (
    _COMMON
    + """
local cid = ARGV[2]
if redis.call('EXISTS', skey(cid)) == 0 then return 0 end
for i = 3, #ARGV do
  redis.call('SREM', subkey(cid), ARGV[i])
  redis.call('SREM', P .. 'ch:' .. ARGV[i], cid)
end
return 1
"""
)

# ARGV: prefix, node, frame, max_messages, policy, then either 'cid' + one client id or
# 'ch' + the channel's expansions (the channel itself and every pattern matching it).
# Returns {queued count, {client ids to wake here}, {overflowed client ids},
#          {records of sessions ended by overflow}}.
_PUBLISH = (
    _COMMON
    + """
local node, frame, limit, policy = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local targets
if ARGV[6] == 'cid' then
  targets = {ARGV[7]}
else
  local keys = {}
  for i = 7, #ARGV do keys[#keys + 1] = P .. 'ch:' .. ARGV[i] end
  targets = redis.call('SUNION', unpack(keys))
end
local count, wake, overflowed, ended = 0, {}, {}, {}
for _, cid in ipairs(targets) do
  local s = skey(cid)
  local held = redis.call('HGET', s, 'held')
  if not held then
    if ARGV[6] == 'ch' then
      for i = 7, #ARGV do redis.call('SREM', P .. 'ch:' .. ARGV[i], cid) end
    end
  else
    local q = qkey(cid)
    local len = redis.call('LLEN', q)
    local queued = true
    if len >= limit then
      overflowed[#overflowed + 1] = cid
      if policy == 'drop_newest' then
        queued = false
      elseif policy == 'drop_oldest' then
        redis.call('LPOP', q)
        redis.call('RPUSH', q, frame)
      else
        local rec = destroy(cid)
        if rec then ended[#ended + 1] = rec end
        queued = false
      end
    else
      redis.call('RPUSH', q, frame)
      if len == 0 then
        local at = redis.call('PEXPIRETIME', s)
        if at > 0 then redis.call('PEXPIREAT', q, at) end
        if held == '' or held == node then
          wake[#wake + 1] = cid
        else
          redis.call('PUBLISH', P .. 'bell:' .. held, cid)
        end
      end
    end
    if queued then count = count + 1 end
  end
end
return {count, wake, overflowed, ended}
"""
)

# ARGV: prefix, cid, limit (-1: all)
_DRAIN = (
    _COMMON
    + """
local q = qkey(ARGV[2])
local limit = tonumber(ARGV[3])
if limit < 0 then
  local all = redis.call('LRANGE', q, 0, -1)
  redis.call('DEL', q)
  return all
end
if limit == 0 then return {} end
local some = redis.call('LRANGE', q, 0, limit - 1)
redis.call('LTRIM', q, limit, -1)
return some
"""
)

# ARGV: prefix.  Returns {sessions, queued events}: O(sessions) inside Redis, one round trip.
_CENSUS = (
    _COMMON
    + """
local ids = redis.call('ZRANGE', P .. 'sessions', 0, -1)
local queued = 0
for _, cid in ipairs(ids) do queued = queued + redis.call('LLEN', qkey(cid)) end
return {#ids, queued}
"""
)

# ARGV: prefix, cid, acknowledged batch
_ACKNOWLEDGE = (
    _COMMON
    + """
local ua, acked = uakey(ARGV[2]), tonumber(ARGV[3])
while true do
  local entry = redis.call('LINDEX', ua, 0)
  if not entry or batch_of(entry) > acked then break end
  redis.call('LPOP', ua)
end
return 1
"""
)

# ARGV: prefix, cid, limit, extra frame...
# Returns {batch, {every unacknowledged frame, oldest first}}; batch 0: no such session.
_HAND_OUT = (
    _COMMON
    + """
local cid, limit = ARGV[2], tonumber(ARGV[3])
local s, ua, q = skey(cid), uakey(cid), qkey(cid)
if redis.call('EXISTS', s) == 0 then return {0, {}} end
local batch = redis.call('HINCRBY', s, 'ab', 1)
for i = 4, #ARGV do redis.call('RPUSH', ua, batch .. ':' .. ARGV[i]) end
local room = limit - redis.call('LLEN', ua)
if room > 0 then
  for _, frame in ipairs(redis.call('LRANGE', q, 0, room - 1)) do
    redis.call('RPUSH', ua, batch .. ':' .. frame)
  end
  redis.call('LTRIM', q, room, -1)
end
local out = {}
for _, entry in ipairs(redis.call('LRANGE', ua, 0, -1)) do out[#out + 1] = frame_of(entry) end
local at = redis.call('PEXPIRETIME', s)
if at > 0 and #out > 0 then redis.call('PEXPIREAT', ua, at) end
return {batch, out}
"""
)

# ARGV: prefix, cid, node, lease_until_ms, grace_ms
_HOLD = (
    _COMMON
    + """
local cid, lease = ARGV[2], tonumber(ARGV[4])
local previous = redis.call('HGET', skey(cid), 'held')
if not previous then return 0 end
redis.call('HSET', skey(cid), 'held', ARGV[3])
if previous ~= '' and previous ~= ARGV[3] then
  -- the client moved: the node holding its older connect lets go of it ('!' + client id)
  redis.call('PUBLISH', P .. 'bell:' .. previous, '!' .. cid)
end
redis.call('ZADD', P .. 'sessions', lease, cid)
keep_until(cid, lease + tonumber(ARGV[5]))
return 1
"""
)

# ARGV: prefix, cid, expires_ms, grace_ms, mode ('release' or 'touch')
_EXPIRY = (
    _COMMON
    + """
local cid, exp = ARGV[2], tonumber(ARGV[3])
local s = skey(cid)
local held = redis.call('HGET', s, 'held')
if not held then return 0 end
if ARGV[5] == 'touch' then
  if held ~= '' then return 0 end
  local current = tonumber(redis.call('HGET', s, 'exp'))
  if current >= exp then return 0 end
else
  redis.call('HSET', s, 'held', '')
end
redis.call('HSET', s, 'exp', exp)
redis.call('ZADD', P .. 'sessions', exp, cid)
keep_until(cid, exp + tonumber(ARGV[4]))
return 1
"""
)

# ARGV: prefix, now_ms, batch
_EXPIRE = (
    _COMMON
    + """
local due = redis.call('ZRANGEBYSCORE', P .. 'sessions', '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
local ended = {}
for _, cid in ipairs(due) do
  local rec = destroy(cid)
  if rec then ended[#ended + 1] = rec end
end
return ended
"""
)


class RedisEngine:
    """The :class:`gateway.bayeux.engines.base.Engine` on one Redis shared by every node."""

    suspends = True  # every call is a round trip

    def __init__(
        self,
        url: str,
        *,
        node_id: str | None = None,
        limits: QueueLimits | None = None,
        prefix: str = "bx:",
        hold_lease_ms: int = 120_000,
    ) -> None:
        self.url = url
        self.node_id = node_id or default_node_id()
        self.limits = limits or QueueLimits()
        self.prefix = prefix
        self.hold_lease_ms = hold_lease_ms
        self._listener: EngineListener | None = None
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._bell_task: asyncio.Task[None] | None = None
        self._bells: aioredis.Redis | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._held_here: set[str] = set()  # sessions whose connect this node holds
        self._outage_since: float | None = None

    def attach(self, listener: EngineListener) -> None:
        self._listener = listener

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        # Commands: a bounded time and no retry, so that a request during an outage gets its
        # 503 in seconds (the client retries; a pooled connection that broke is replaced).  The
        # pool makes a request wait for a free connection (as long as a command may take)
        # rather than fail at once when every connection is busy, as redis-py's default does.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=POOL_SIZE,
            timeout=COMMAND_TIMEOUT_S,
            socket_connect_timeout=COMMAND_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 0),
            health_check_interval=30,
        )
        redis = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            await redis.aclose()
            raise EngineUnavailable(f"cannot reach Redis at {_safe_url(self.url)}: {exc}") from exc
        self._redis = redis
        for name, source in (
            ("create", _CREATE),
            ("update", _UPDATE),
            ("destroy", _DESTROY),
            ("subscribe", _SUBSCRIBE),
            ("unsubscribe", _UNSUBSCRIBE),
            ("publish", _PUBLISH),
            ("drain", _DRAIN),
            ("hold", _HOLD),
            ("expiry", _EXPIRY),
            ("expire", _EXPIRE),
            ("acknowledge", _ACKNOWLEDGE),
            ("hand_out", _HAND_OUT),
            ("census", _CENSUS),
        ):
            self._scripts[name] = redis.register_script(source)
        # Doorbells: one connection that redis-py re-establishes (and re-subscribes) for as long
        # as an outage lasts, with jittered backoff: the retry loop is redis-py's.
        self._bells = aioredis.from_url(
            self.url,
            socket_connect_timeout=COMMAND_TIMEOUT_S,
            retry=Retry(ExponentialWithJitterBackoff(base=0.1, cap=2.0), -1),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        pubsub = self._bells.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._bell_channel(self.node_id))
        self._bell_task = asyncio.create_task(self._doorbells(pubsub))
        self._resync_task = asyncio.create_task(self._resync())
        log.info("redis_engine_started", node=self.node_id, url=_safe_url(self.url))

    async def close(self) -> None:
        for task in (self._bell_task, self._resync_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._bell_task = self._resync_task = None
        for client in (self._redis, self._bells):
            if client is not None:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
        self._redis = self._bells = None

    async def ping(self) -> float:
        """Seconds one round trip to Redis takes."""
        started = time.perf_counter()
        await self._guard(self._client().ping())
        return time.perf_counter() - started

    async def _doorbells(self, pubsub: Any) -> None:
        """This node's doorbells: a session it holds got its first queued event elsewhere."""
        try:
            async for message in pubsub.listen():
                if message.get("type") != "message" or self._listener is None:
                    continue
                bell = message["data"].decode()
                if bell.startswith("!"):  # another node holds the session's connect now
                    self._held_here.discard(bell[1:])
                    self._listener.taken(bell[1:])
                else:
                    self._listener.wake(bell)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    async def _resync(self) -> None:
        """Wake the sessions held here that have events: a safety net for doorbells missed
        while the subscriber connection was being re-established."""
        while True:
            await asyncio.sleep(RESYNC_S)
            held = list(self._held_here)
            if not held or self._redis is None or self._listener is None:
                continue
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for cid in held:
                        pipe.exists(self._key(cid, "q"))
                    found = await pipe.execute()
            except _OUTAGE:
                continue  # the requests that fail meanwhile log the outage
            for cid, queued in zip(held, found, strict=True):
                if queued and cid in self._held_here:
                    self._listener.wake(cid)

    async def _guard(self, call: Awaitable[T]) -> T:
        """One call to Redis: an outage is EngineUnavailable, logged when it starts and ends."""
        try:
            result = await call
        except _OUTAGE as exc:
            if self._outage_since is None:
                self._outage_since = time.monotonic()
                log.warning("redis_unavailable", node=self.node_id, error=type(exc).__name__)
            raise EngineUnavailable(f"Redis cannot be reached ({type(exc).__name__})") from exc
        if self._outage_since is not None:
            lasted = time.monotonic() - self._outage_since
            self._outage_since = None
            log.warning("redis_recovered", node=self.node_id, outage_s=round(lasted, 1))
        return result

    def _bell_channel(self, node: str) -> str:
        return f"{self.prefix}bell:{node}"

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise EngineUnavailable("the Redis engine is not started")
        return self._redis

    async def _run(self, name: str, *args: Any) -> Any:
        return await self._guard(
            self._scripts[name](args=[self.prefix, *args], client=self._client())
        )

    def _key(self, client_id: str, kind: str) -> str:
        return f"{self.prefix}{{{client_id}}}:{kind}"

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(self, record: SessionRecord, expires_ms: int) -> None:
        await self._run("create", record.client_id, _encode_record(record), expires_ms, GRACE_MS)

    async def get_session(self, client_id: str) -> SessionRecord | None:
        raw: Any = await self._guard(self._client().hget(self._key(client_id, "s"), "rec"))
        return _decode_record(raw) if raw is not None else None

    async def update_session(self, record: SessionRecord) -> None:
        await self._run("update", record.client_id, _encode_record(record))

    async def destroy_session(self, client_id: str) -> SessionRecord | None:
        self._held_here.discard(client_id)
        raw = await self._run("destroy", client_id)
        return _decode_record(raw) if raw else None

    async def census(self) -> tuple[int, int]:
        sessions, queued = await self._run("census")
        return int(sessions), int(queued)

    async def session_ids(self) -> list[str]:
        ids = await self._guard(self._client().zrange(f"{self.prefix}sessions", 0, -1))
        return [_text(i) for i in ids]

    # -- subscriptions ----------------------------------------------------------------------

    async def subscribe(self, client_id: str, channels: Iterable[str]) -> bool:
        return bool(await self._run("subscribe", client_id, *channels))

    async def unsubscribe(self, client_id: str, channels: Iterable[str]) -> bool:
        return bool(await self._run("unsubscribe", client_id, *channels))

    async def subscriptions(self, client_id: str) -> set[str]:
        members = await self._guard(self._client().smembers(self._key(client_id, "sub")))
        return {_text(m) for m in members}

    # -- queues -----------------------------------------------------------------------------

    async def publish(self, channel: str, frame: bytes) -> int:
        return await self._fan_out(frame, "ch", *expand(channel))

    async def deliver(self, client_id: str, frame: bytes) -> bool:
        if not await self._guard(self._client().exists(self._key(client_id, "s"))):
            return False
        await self._fan_out(frame, "cid", client_id)
        return True

    async def _fan_out(self, frame: bytes, mode: str, *targets: str) -> int:
        limits = self.limits
        count, wake, overflowed, ended = await self._run(
            "publish",
            self.node_id,
            frame,
            limits.max_messages,
            limits.overflow.value,
            mode,
            *targets,
        )
        listener = self._listener
        if listener is not None:
            for cid in overflowed:
                listener.overflowed(cid.decode(), limits.overflow, 1)
            for raw in ended:
                listener.closed(_decode_record(raw), "overflow")
            for cid in wake:
                listener.wake(cid.decode())
        return int(count)

    async def has_messages(self, client_id: str) -> bool:
        keys = (self._key(client_id, "q"), self._key(client_id, "ua"))
        return bool(await self._guard(self._client().exists(*keys)))

    async def acknowledge(self, client_id: str, batch: int) -> None:
        await self._run("acknowledge", client_id, batch)

    async def hand_out(
        self, client_id: str, extra: list[bytes], limit: int
    ) -> tuple[list[bytes], int]:
        batch, frames = await self._run("hand_out", client_id, limit, *extra)
        return list(frames), int(batch)

    async def queued(self, client_id: str) -> int:
        return int(await self._guard(self._client().llen(self._key(client_id, "q"))))

    async def drain(self, client_id: str, limit: int | None = None) -> list[bytes]:
        frames = await self._run("drain", client_id, -1 if limit is None else max(0, limit))
        return list(frames)

    # -- expiry -----------------------------------------------------------------------------

    async def hold(self, client_id: str) -> None:
        self._held_here.add(client_id)
        await self._run("hold", client_id, self.node_id, _now_ms() + self.hold_lease_ms, GRACE_MS)

    async def release(self, client_id: str, expires_ms: int) -> None:
        self._held_here.discard(client_id)
        await self._run("expiry", client_id, expires_ms, GRACE_MS, "release")

    async def touch(self, client_id: str, at_least_ms: int) -> None:
        await self._run("expiry", client_id, at_least_ms, GRACE_MS, "touch")

    async def expire(self, now_ms: int) -> list[SessionRecord]:
        ended: list[SessionRecord] = []
        while True:
            batch = await self._run("expire", now_ms, SWEEP_BATCH)
            ended += [_decode_record(raw) for raw in batch]
            for record in ended:
                self._held_here.discard(record.client_id)
            if len(batch) < SWEEP_BATCH:
                return ended


def _text(value: Any) -> str:
    """A member as Redis returns it (bytes: the client does not decode responses)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _safe_url(url: str) -> str:
    """The URL without its password (it is logged and printed)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':***@' if user else '***@'}{host}"
