"""Observability: latency histograms, call hooks (instruments), and ``aptrt.dump()``."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from ._call import Call
    from ._runtime import Runtime

# Buckets grow by 2**(1/8) (about 9%): bucket i holds latencies around 2**(i/8) microseconds, from
# sub-microsecond to hours in 512 buckets. Recording is one log2, one int, one list increment.
_STEPS_PER_OCTAVE = 8
_BUCKETS = 512


class Histogram:
    """A cheap latency histogram (log buckets, ~9% resolution). Written by one thread."""

    __slots__ = ("buckets", "count")

    def __init__(self) -> None:
        self.buckets = [0] * _BUCKETS
        self.count = 0

    def record(self, seconds: float, _log2: Callable[[float], float] = math.log2) -> None:
        micros = seconds * 1e6
        index = int(_log2(micros) * _STEPS_PER_OCTAVE) + 1 if micros > 1.0 else 0
        self.buckets[index if index < _BUCKETS else _BUCKETS - 1] += 1
        self.count += 1

    @staticmethod
    def percentile(histograms: list[Histogram], fraction: float) -> float | None:
        """The *fraction* quantile (0.5, 0.99) across *histograms*, in seconds (None when empty)."""
        total = sum(h.count for h in histograms)
        if total == 0:
            return None
        rank = fraction * total
        seen = 0
        for index in range(_BUCKETS):
            seen += sum(h.buckets[index] for h in histograms)
            if seen >= rank:
                return (2 ** ((index - 0.5) / _STEPS_PER_OCTAVE) if index else 1.0) / 1e6
        return None


class CallEvent:
    """What an instrument is told about a call (one object per call, for both hooks; its fields are
    read from the call when asked, so an instrument pays only for what it looks at).

    :ivar method: the method or function called
    :ivar causality: the causality id of the call's chain
    :ivar apartment: the name of the apartment that runs it
    :ivar caller: the calling apartment's name ("" for a plain thread)
    :ivar created: when the caller made the call (``time.perf_counter()``)
    """

    __slots__ = ("_call", "apartment")

    def __init__(self, call: Call, apartment: str) -> None:
        self._call = call
        self.apartment = apartment

    @property
    def method(self) -> str:
        return self._call.name

    @property
    def causality(self) -> int:
        return self._call.causality

    @property
    def caller(self) -> str:
        caller = self._call.caller
        return caller.name if caller is not None else ""

    @property
    def created(self) -> float:
        return self._call.started

    def __repr__(self) -> str:
        return (
            f"CallEvent(method={self.method!r}, causality={self.causality}, apartment={self.apartment!r}, "
            f"caller={self.caller!r})"
        )


class Instrument(Protocol):
    """Call hooks, in the style of trio's instruments. Methods run on the executing apartment's thread,
    must be quick, and must not raise (an exception is logged and the instrument removed)."""

    def call_started(self, event: CallEvent) -> None: ...

    def call_finished(self, event: CallEvent, error: BaseException | None) -> None: ...


def dump(runtime: Runtime | None = None, file: TextIO | None = None) -> str:
    """Print (and return) every apartment of *runtime* (default: the current one): its inbox, running
    calls, contexts and statistics, then the wait-for graph of reentrancy gates."""
    from ._runtime import all_runtimes, current_runtime

    out: list[str] = []
    runtimes = [runtime] if runtime is not None else (all_runtimes() or [current_runtime()])
    now = time.perf_counter()
    for rt in runtimes:
        out.append(f"{rt!r}")
        stalled = rt.watchdog.stalled() if rt.watchdog is not None else []
        for apartment in rt.apartments:
            if apartment.name in stalled:
                out.append(
                    f"  {apartment.kind.value} {apartment.name!r}: BLOCKED (its loop misses the watchdog's heartbeat)"
                )
            stats = apartment.statistics()
            p50 = stats.latency_p50
            p99 = stats.latency_p99
            latency = f" p50={p50 * 1e6:.0f}µs p99={p99 * 1e6:.0f}µs" if p50 is not None and p99 is not None else ""
            out.append(
                f"  {apartment.kind.value} {apartment.name!r}: queued={stats.queued} running={stats.running} "
                f"completed={stats.completed} failed={stats.failed} cancelled={stats.cancelled} "
                f"expired={stats.expired} rejected={stats.rejected} exported={stats.exported}{latency}"
            )
            for call in apartment.queued_calls():
                out.append(f"    queued  {call.name} causality={call.causality} from {_caller(call)}")
            for call in apartment.running_calls():
                out.append(
                    f"    running {call.name} causality={call.causality} from {_caller(call)} "
                    f"for {(now - call.started) * 1e3:.1f} ms"
                )
            for ctx in apartment.contexts():
                cs = ctx.statistics()
                out.append(
                    f"    context {cs.token} {cs.state.value}: objects={cs.objects} outstanding={cs.outstanding}"
                )
        edges = rt.wait_for.edges()
        out.append("  wait-for graph:" + ("" if edges else " (empty)"))
        for chain, gate, holders in edges:
            out.append(f"    chain {chain} waits at {gate}, held by chains {holders}")
    text = "\n".join(out)
    print(text, file=file if file is not None else sys.stdout)
    return text


def _caller(call: Call) -> str:
    return repr(call.caller.name) if call.caller is not None else "a plain thread"
