"""Scenarios: measurements that are not "one more way to make a cross-thread call".

A mechanism (``_harness.Mechanism``) is one way of calling ``f(x) = x + 1`` on another thread, measured
the same way as every other mechanism and compared with aptrt's STA → STA call. A *scenario* measures
something else about aptrt (what marshaling an argument costs, how long a context takes to disconnect,
how much memory an idle STA holds, ...) as a handful of named figures, together with the baseline each
figure is compared with, all measured in the same rep. The runner interleaves scenarios with the
mechanisms, rep by rep; a figure's ratio to its baseline is taken within each rep, then the median of the
reps is reported, as for mechanisms.

Adding a scenario: subclass :class:`Scenario`, list its figures in :meth:`Scenario.metrics` (with
``versus`` naming the baseline figure of a ratio), measure one rep in :meth:`Scenario.run`, and add the
class to ``SCENARIOS`` in ``_sc_calls.py``, ``_sc_costs.py`` or ``_sc_ray.py``. A scenario that cannot
run here raises :class:`Skipped`; one that keeps something between reps (a Ray instance) releases it in
:meth:`Scenario.finish`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

import aptrt

from ._harness import pin

T = TypeVar("T")

#: the units a figure can have (how the report prints it)
UNITS = ("us", "ms", "ns", "per_s", "bytes", "bool", "pct")


@dataclass(frozen=True)
class Metric:
    """One figure a scenario reports."""

    key: str
    label: str
    #: one of :data:`UNITS`
    unit: str
    #: the key of the baseline figure (same scenario, same rep): the report shows ``this / versus``
    versus: str | None = None


@dataclass(frozen=True)
class Sizes:
    """How much a scenario measures per rep."""

    #: sequential timed calls per latency figure
    latency_calls: int = 3_000
    #: untimed calls before each latency figure
    warmup_calls: int = 200
    #: seconds per throughput figure (self-sizing: calls are made until the time is up)
    tput_seconds: float = 0.25
    #: calls in flight for the pipelined figures
    inflight: int = 64
    #: repetitions of one-shot measurements (a disconnect, a start-up) per rep; the median is kept
    trials: int = 5
    #: calls per direct (same-thread) call timing
    direct_calls: int = 500_000
    #: sequential timed calls per remote (Ray) latency figure: a round trip there takes about 1.5 ms
    remote_calls: int = 1_000
    #: untimed calls before each remote latency figure
    remote_warmup: int = 50
    #: seconds per remote throughput figure (self-sizing)
    remote_seconds: float = 1.0


FULL_SIZES = Sizes()
QUICK_SIZES = Sizes(
    latency_calls=500,
    warmup_calls=50,
    tput_seconds=0.06,
    inflight=64,
    trials=3,
    direct_calls=100_000,
    remote_calls=100,
    remote_warmup=10,
    remote_seconds=0.15,
)


class Skipped(Exception):
    """Raised by :meth:`Scenario.run` when the scenario cannot run here (Ray cannot start, ...): the runner
    reports it as skipped, with the exception's message as the reason."""


class Scenario(ABC):
    """A group of related figures, measured together in each rep."""

    #: short stable id, used by ``--scenarios``
    key: ClassVar[str]
    #: what it measures, for the table heading
    title: ClassVar[str]
    #: run when no ``--scenarios``/``--all`` selection is given
    default: ClassVar[bool] = True
    #: modules that must be importable for it to run
    requires: ClassVar[tuple[str, ...]] = ()
    #: costly (memory, start-up, Ray): run only in the first ``Config.heavy_reps`` reps
    heavy: ClassVar[bool] = False

    @abstractmethod
    def metrics(self) -> list[Metric]:
        """The figures, in table order."""

    @abstractmethod
    def run(self, sizes: Sizes, rep: int) -> dict[str, float | None]:
        """Measure one rep (on the harness thread, a plain thread pinned as a caller); figures by key.

        *rep* counts from 0: rotate the order of the variants with it, so drift within a rep does not
        always favour the same one. Raise :class:`Skipped` when the scenario cannot run here.
        """

    @classmethod  # noqa: B027 - optional hook
    def finish(cls) -> None:
        """Release what the reps share (started by the first :meth:`run` and kept between reps). The runner
        calls it once, after the last rep the scenario runs in, or when the suite stops early."""


def rotate(items: list[T], rep: int) -> list[T]:
    """*items* rotated by *rep* (the order variants are measured in, rep by rep)."""
    if not items:
        return items
    shift = rep % len(items)
    return items[shift:] + items[:shift]


class Rig:
    """An aptrt runtime with STAs pinned by role, driven from the harness thread (untimed control plane).

    ``rig.run(sta, fn, *args)`` runs ``await fn(*args)`` on *sta* and returns its result uncopied.
    Arguments travel in a closure, so they are not marshaled either: pass proxies only to the STA that
    owns them.
    """

    def __init__(self, *, backend: str = "asyncio", mta_workers: int | None = None) -> None:
        self._stack = ExitStack()
        self.rt = aptrt.Runtime(backend=backend, mta_workers=mta_workers)

    def __enter__(self) -> Self:
        self._stack.enter_context(self.rt)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def sta(self, name: str, role: str, *, backend: str | None = None) -> aptrt.STA:
        """Start an STA whose thread is pinned to *role*'s CPUs ("caller" or "callee")."""
        sta = self.rt.start_sta_blocking(name, backend=backend)
        sta.run_sync_blocking(pin, role)
        return sta

    def run(self, sta: aptrt.STA, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        async def job() -> T:
            return aptrt.by_reference(await fn(*args))

        return sta.run_blocking(job)
