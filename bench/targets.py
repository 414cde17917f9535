"""Throughput targets of the rate ramps: which server must hold how many times the deliveries
per second of which peer (bench/README.md, "Columns" and "Cluster"), and the verdict lines."""

from __future__ import annotations

from dataclasses import dataclass

TRANSPORT_NAMES = {"lp": "long-poll", "ws": "websocket"}
ALL_WORKLOADS = ("broadcast", "agents", "self")


@dataclass(frozen=True)
class Held:
    """What one server held on one ramp, in nominal deliveries/s (rate x fan-out)."""

    rate: float  # the highest step held; 0: none
    top: bool  # that was the ramp's top step: it could hold more
    below: float  # no step held: the first step's (it holds less); else 0


@dataclass(frozen=True)
class RampTarget:
    """``server`` holds ``factor`` x the deliveries/s ``peer`` holds (``strict``: more than);
    ``factor`` None: the ratio is listed, with no target."""

    server: str
    peer: str
    workloads: tuple[str, ...]
    factor: float | None
    strict: bool = False


RAMP_TARGETS = (
    RampTarget("gateway", "faye", ALL_WORKLOADS, 2.0),
    RampTarget("gateway", "cometd", ("self",), 1.0, strict=True),
    RampTarget("gateway", "cometd", ("broadcast", "agents"), None),
    # the cluster issue: against Faye on the same Redis, and against our own memory engine
    RampTarget("gateway-redis", "faye-redis", ("broadcast", "agents"), 3.0),
    RampTarget("gateway-redis", "gateway", ("agents",), 0.5),
)


def ratio(mine: Held, theirs: Held) -> tuple[float, str]:
    """``mine`` / ``theirs`` in nominal deliveries/s, and how far to trust it: ``>= `` when
    ``mine`` held even the top step (it could hold more), ``<= `` when ``theirs`` did; ``> ``
    and ``< `` when one held no step (measured against its first step, which it failed);
    ``""`` when neither bound applies.  (0, "n/a") when neither held a step."""
    if mine.rate and theirs.rate:
        bound = {(True, False): ">= ", (False, True): "<= "}.get((mine.top, theirs.top), "")
        return mine.rate / theirs.rate, bound
    if mine.rate and theirs.below:
        return mine.rate / theirs.below, "> "
    if theirs.rate and mine.below:
        return mine.below / theirs.rate, "< "
    return 0.0, "n/a"


def ramp_targets(workload: str, transport: str, held: dict[str, Held]) -> list[str]:
    """Each server of RAMP_TARGETS against its peer on one ramp: the gateway >= 2x Faye
    everywhere and ahead of cometd-nodejs-server for the self-publish shape; gateway-redis
    >= 3x faye-redis, and >= half the gateway's memory engine per agent."""
    lines = []
    for t in RAMP_TARGETS:
        if workload not in t.workloads or t.server not in held or t.peer not in held:
            continue
        mine, theirs = held[t.server], held[t.peer]
        r, bound = ratio(mine, theirs)
        if t.factor is None:
            outcome = "no target"
        else:
            # a server that held no step is below even its first step: not shown to pass; a
            # ratio measured against a peer's failed first step is a floor
            ok = bound not in ("< ", "n/a") and (r > t.factor if t.strict else r >= t.factor)
            outcome = f"(target {'>' if t.strict else '>='} {t.factor:g}x): {verdict(ok)}"
        figure = "neither held a step" if bound == "n/a" else f"{bound}{r:.2f}x"
        lines.append(
            f"{workload}/{TRANSPORT_NAMES[transport]}: {t.server} held "
            f"{_held(mine)} vs {t.peer} {_held(theirs)} deliveries/s = {figure} {outcome}"
            + (" [both held the ramp's top step]" if mine.top and theirs.top else "")
        )
    return lines


def _held(h: Held) -> str:
    if h.rate:
        return f"{h.rate:,.0f}"
    return f"no step (< {h.below:,.0f})" if h.below else "no step (none ran)"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")
