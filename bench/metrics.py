"""Delivery accounting for one rate step, and CPU/RSS sampling of processes from /proc."""

from __future__ import annotations

import asyncio
import os
import time
from array import array
from dataclasses import dataclass
from typing import Any

from bayeux import Msg

BIN = 1e-4  # latency histogram resolution: 0.1 ms
MAX_BINS = 100_000  # up to 10 s; slower deliveries land in the last bin (exact max kept apart)


class StepTracker:
    """Counts deliveries of the messages published in one step (sequence numbers
    ``base .. base+count-1``): latency histogram, duplicates, misrouted and stale deliveries.

    broadcast: every client must receive every message (one seen-bitmap per client).
    agents, self: message ``s`` goes to client ``s % clients`` only (one global bitmap).
    """

    def __init__(self, workload: str, clients: int, base: int, count: int) -> None:
        self.workload = workload
        self.clients = clients
        self.base = base
        self.count = count
        self.broadcast = workload == "broadcast"
        if self.broadcast:
            self.seen = [bytearray(count) for _ in range(clients)]
        else:
            self.seen = [bytearray(count)]
        self.expected = count * clients if self.broadcast else count
        self.hist = array("I", bytes(4 * (MAX_BINS + 1)))
        self.delivered = 0
        self.duplicates = 0
        self.misrouted = 0
        self.stale = 0  # deliveries of messages from earlier steps (arrived late)
        self.max_latency = 0.0
        self.last_delivery = 0.0
        self.done = asyncio.Event()  # set once every expected delivery has arrived

    def deliver(self, client: int, msgs: list[Msg], now: float) -> None:
        base, count, hist = self.base, self.count, self.hist
        seen = self.seen[client] if self.broadcast else self.seen[0]
        check_route = not self.broadcast
        clients = self.clients
        got = dup = stale = 0
        worst = self.max_latency
        for m in msgs:
            d = m.data
            if d is None:
                continue
            k = d.s - base
            if k < 0 or k >= count:
                stale += 1
                continue
            if check_route and d.s % clients != client:
                self.misrouted += 1
                continue
            if seen[k]:
                dup += 1
                continue
            seen[k] = 1
            lat = now - d.t
            if lat > worst:
                worst = lat
            b = int(lat / BIN)
            hist[b if 0 <= b < MAX_BINS else (MAX_BINS if b > 0 else 0)] += 1
            got += 1
        if got:
            self.delivered += got
            self.last_delivery = now
            if self.delivered >= self.expected:
                self.done.set()
        self.duplicates += dup
        self.stale += stale
        self.max_latency = worst

    @property
    def complete(self) -> bool:
        return self.delivered >= self.expected

    def percentile(self, q: float) -> float:
        """Latency (seconds) at quantile ``q`` of delivered messages (upper bin edge)."""
        if self.delivered == 0:
            return 0.0
        rank = max(1, int(q * self.delivered + 0.999999))
        acc = 0
        for i, n in enumerate(self.hist):
            acc += n
            if acc >= rank:
                return min((i + 1) * BIN, self.max_latency) if i < MAX_BINS else self.max_latency
        return self.max_latency


@dataclass
class ProcSample:
    cpu_seconds: float  # utime + stime of the process tree
    rss_kib: int  # VmRSS summed over the tree
    hwm_kib: int  # VmHWM (peak RSS) summed over the tree


_TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            out = [int(x) for x in f.read().split()]
    except OSError:
        return out
    for child in list(out):
        out.extend(_children(child))
    return out


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def sample(pid: int) -> ProcSample:
    """CPU time and memory of ``pid`` and its descendants (e.g. worker processes)."""
    cpu, rss, hwm = 0.0, 0, 0
    for p in [pid, *_children(pid)]:
        try:
            cpu += _cpu_seconds(p)
            rss += _status_kib(p, "VmRSS:")
            hwm += _status_kib(p, "VmHWM:")
        except OSError:
            continue
    return ProcSample(cpu, rss, hwm)


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent running processes (user + nice + system; interrupt and
    softirq time, e.g. loopback TCP, excluded), from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system = (int(x) for x in f.readline().split()[1:4])
    return (user + nice + system) / _TICK


def self_cpu() -> float:
    return time.process_time()


def add_server_figures(
    result: dict[str, Any],
    srv0: ProcSample | None,
    srv1: ProcSample | None,
    busy0: float,
    busy1: float,
    elapsed: float,
    redis: tuple[ProcSample, ProcSample] | None = None,
) -> None:
    """Server CPU and RSS over a step, and the CPU anything else on the machine used (other
    processes, kernel softirq, ...); ``result`` must already hold ``gen_cpu_pct``.

    ``redis``: the samples before and after the step of the redis-server the server keeps its
    state in.  It is part of the server side: its CPU goes to ``redis_cpu_pct``, not to
    ``other_cpu_pct``."""
    if srv0 is None or srv1 is None:
        return
    result["server_cpu_pct"] = 100 * (srv1.cpu_seconds - srv0.cpu_seconds) / elapsed
    redis_pct = 0.0
    if redis is not None:
        redis_pct = 100 * (redis[1].cpu_seconds - redis[0].cpu_seconds) / elapsed
        result["redis_cpu_pct"] = redis_pct
        result["redis_rss_mib"] = redis[1].rss_kib / 1024
    result["other_cpu_pct"] = max(
        0.0,
        100 * (busy1 - busy0) / elapsed
        - result["server_cpu_pct"]
        - redis_pct
        - result["gen_cpu_pct"],
    )
    result["server_rss_mib"] = srv1.rss_kib / 1024
    result["server_hwm_mib"] = srv1.hwm_kib / 1024
