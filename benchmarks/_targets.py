"""The acceptance targets and checks, evaluated on the figures of one run.

A target compares two figures from the same rep (``numerator / denominator``, the median over reps of
the per-rep ratios), or holds one figure to an absolute bound (the median over reps). A figure is named by
a :class:`Ref`: its source (a mechanism key such as ``"aptrt/asyncio"`` or ``"6a"``, a scenario key such
as ``"memory"``, or :data:`BEST_PEER`, the peer mechanism with the lowest latency in that rep) and its
metric (``"latency_median"``, ``"throughput@64"``, or a scenario's metric key).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: the pseudo-source "the peer mechanism with the lowest median latency in the same rep"
BEST_PEER = "best-peer"

#: the reference mechanism (every mechanism's ratios are to it)
REFERENCE = "aptrt/asyncio"

#: source -> per rep: that rep's figures by metric (None: not measured, or failed, in that rep)
RepFigures = Mapping[str, Sequence[Mapping[str, float | None] | None]]


@dataclass(frozen=True)
class Ref:
    source: str
    metric: str

    def __str__(self) -> str:
        # mechanisms by key (the metric is in the target's wording), scenario figures as scenario:metric
        return self.source if self.metric in ("latency_median", "throughput@64") else f"{self.source}:{self.metric}"


@dataclass(frozen=True)
class Target:
    """An acceptance target (or a check: a property the run must show) from the issues."""

    name: str
    description: str
    numerator: Ref
    #: None: an absolute bound on the numerator
    denominator: Ref | None
    op: str  # "<=", "<", ">=", ">"
    threshold: float
    #: the unit of the figures (for printing): "us", "per_s", "ns", "bytes", "bool"
    unit: str
    #: "TARGET" or "CHECK"
    kind: str = "TARGET"
    #: a figure shown next to the value in the report (same source as the numerator), e.g. the RSS
    #: next to tracemalloc's figure
    aside: Ref | None = None


_LAT = "latency_median"
_T64 = "throughput@64"
_MIB = 1024 * 1024

TARGETS: tuple[Target, ...] = (
    # issue 2 (the first version of the suite)
    Target(
        "throughput-vs-portal",
        "issue 2: pipelined throughput (64 in flight): aptrt STA→STA ≥ 10× anyio BlockingPortal.call",
        Ref(REFERENCE, _T64),
        Ref("6a", _T64),
        ">=",
        10.0,
        "per_s",
    ),
    Target(
        "latency-vs-rcts",
        "issue 2: sequential latency (median): aptrt STA→STA ≤ 1.2× asyncio→asyncio run_coroutine_threadsafe",
        Ref(REFERENCE, _LAT),
        Ref("4a", _LAT),
        "<=",
        1.2,
        "us",
    ),
    # issue "benchmarks"
    Target(
        "pipelined-vs-portal",
        "pipelined throughput (64 in flight): aptrt STA→STA ≥ 15× anyio BlockingPortal.call",
        Ref(REFERENCE, _T64),
        Ref("6a", _T64),
        ">=",
        15.0,
        "per_s",
    ),
    Target(
        "pipelined-vs-pykka",
        "pipelined throughput (64 in flight): aptrt STA→STA ≥ 1.5× pykka ask",
        Ref(REFERENCE, _T64),
        Ref("10b", _T64),
        ">=",
        1.5,
        "per_s",
    ),
    Target(
        "pipelined-window-vs-pykka",
        "pipelined throughput (64 in flight), like for like with pykka's window of futures: a window of "
        "aptrt.begin handles from one task ≥ 1.5× pykka ask",
        Ref("aptrt/asyncio+begin", _T64),
        Ref("10b", _T64),
        ">=",
        1.5,
        "per_s",
    ),
    Target(
        "latency-vs-best-peer",
        "sequential latency (median): aptrt STA→STA ≤ 1.15× the best peer of the run",
        Ref(REFERENCE, _LAT),
        Ref(BEST_PEER, _LAT),
        "<=",
        1.15,
        "us",
    ),
    Target(
        "latency-vs-pingpong",
        "sequential latency (median): aptrt STA→STA ≤ 1.6× the raw thread Lock ping-pong (2a)",
        Ref(REFERENCE, _LAT),
        Ref("2a", _LAT),
        "<=",
        1.6,
        "us",
    ),
    Target(
        "direct-call",
        "in-apartment (direct) call ≤ 2× a plain Python method call",
        Ref("direct", "direct"),
        Ref("direct", "plain"),
        "<=",
        2.0,
        "ns",
    ),
    Target(
        "idle-sta-memory",
        "memory per idle STA < 1 MB (RSS growth; tracemalloc's figure aside)",
        Ref("memory", "sta_rss"),
        None,
        "<",
        _MIB,
        "bytes",
        aside=Ref("memory", "sta_traced"),
    ),
    Target(
        "live-proxy-memory",
        "memory per live proxy < 1 KB (proxy + stub + object, tracemalloc; RSS aside)",
        Ref("memory", "proxy_traced"),
        None,
        "<",
        1024,
        "bytes",
        aside=Ref("memory", "proxy_rss"),
    ),
    Target(
        "hooks-overhead-latency",
        "instrument hooks on: sequential call latency < 1.10× hooks off (overhead < 10%)",
        Ref("observe", "lat/on"),
        Ref("observe", "lat/off"),
        "<",
        1.10,
        "us",
    ),
    Target(
        "hooks-overhead-pipelined",
        "instrument hooks on: time per pipelined call (64 in flight) < 1.10× hooks off (overhead < 10%)",
        Ref("observe", "tput/off"),
        Ref("observe", "tput/on"),
        "<",
        1.10,
        "per_s",
    ),
    # issue "aptrt[ray]": remote apartments
    Target(
        "remote-latency-vs-ray",
        "remote call latency (median): aptrt STA in a Ray actor ≤ 1.2× a plain Ray async-actor call",
        Ref("ray", "lat/aptrt"),
        Ref("ray", "lat/ray"),
        "<=",
        1.2,
        "us",
    ),
    Target(
        "remote-pipelined-vs-ray",
        "remote pipelined throughput (64 in flight): aptrt STA in a Ray actor > 1× a plain Ray async actor "
        "(aptrt batches calls per Ray message)",
        Ref("ray", "tput/aptrt"),
        Ref("ray", "tput/ray"),
        ">",
        1.0,
        "per_s",
    ),
    Target(
        "bytes-identical",
        "a 1 MB bytes argument arrives as the caller's very object (`is`: not copied)",
        Ref("marshal", "same/bytes"),
        None,
        ">=",
        1.0,
        "bool",
        kind="CHECK",
    ),
    Target(
        "bytes-cost",
        "a 1 MB bytes argument costs about what an int does: latency ≤ 1.15× the int call",
        Ref("marshal", "lat/bytes"),
        Ref("marshal", "lat/int"),
        "<=",
        1.15,
        "us",
        kind="CHECK",
    ),
)


def best_peer(figures: RepFigures, peers: Sequence[str]) -> tuple[list[dict[str, float | None] | None], list[str]]:
    """Per rep, the figures of the peer with the lowest median latency, and which peer that was."""
    reps = max((len(figures[key]) for key in peers if key in figures), default=0)
    best: list[dict[str, float | None] | None] = []
    keys: list[str] = []
    for rep in range(reps):
        candidates = []
        for key in peers:
            runs = figures.get(key, ())
            mine = runs[rep] if rep < len(runs) else None
            value = mine.get(_LAT) if mine is not None else None
            if value is not None:
                candidates.append((value, key))
        if candidates:
            value, key = min(candidates)
            best.append({_LAT: value})
            keys.append(key)
        else:
            best.append(None)
    return best, keys


def _series(figures: RepFigures, ref: Ref) -> list[float | None]:
    return [None if rep is None else rep.get(ref.metric) for rep in figures.get(ref.source, ())]


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _passes(value: float, op: str, threshold: float) -> bool:
    if op == "<=":
        return value <= threshold
    if op == "<":
        return value < threshold
    if op == ">=":
        return value >= threshold
    if op == ">":
        return value > threshold
    raise ValueError(op)


def evaluate(targets: Sequence[Target], figures: RepFigures) -> list[dict[str, Any]]:
    """Each target's status ("PASS", "FAIL" or "SKIP": a figure is missing) with its figures."""
    checks = []
    for target in targets:
        num = _series(figures, target.numerator)
        if target.denominator is None:
            per_rep = num
        else:
            den = _series(figures, target.denominator)
            per_rep = [a / b if a is not None and b else None for a, b in zip(num, den, strict=False)]
        value = _median(per_rep)
        status = "SKIP" if value is None else ("PASS" if _passes(value, target.op, target.threshold) else "FAIL")
        checks.append(
            {
                "name": target.name,
                "kind": target.kind,
                "description": target.description,
                "numerator": str(target.numerator),
                "denominator": None if target.denominator is None else str(target.denominator),
                "numerator_value": _median(num),
                "denominator_value": None
                if target.denominator is None
                else _median(_series(figures, target.denominator)),
                "aside": None if target.aside is None else str(target.aside),
                "aside_value": None if target.aside is None else _median(_series(figures, target.aside)),
                "value": value,
                "per_rep": per_rep,
                "op": target.op,
                "threshold": target.threshold,
                "unit": target.unit,
                "ratio": target.denominator is not None,
                "status": status,
            }
        )
    return checks
