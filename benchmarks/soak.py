"""A bounded soak: mixed cross-apartment load for minutes, and every call accounted for.

``python -m benchmarks.soak --minutes 10`` (``--seconds S`` for a short run; ``--help`` for the options) opens a
runtime whose main STA is this program's asyncio loop, starts STAs on asyncio and trio (16 apartments in all
with the main STA and the MTA, by default) and keeps callers busy in the main STA, the MTA and about half the
STAs. Each caller looks up a service in a directory (an object of its own STA), makes a short session of calls
on it and releases it:

* sync and async calls, their results checked;
* raising calls (``ValueError``, ``KeyError``: expected errors, counted by type);
* slow calls (an async sleep, a sync spin polling ``aptrt.check_cancelled``) under an ``anyio.move_on_after``
  or ``fail_after`` deadline shorter than the call: cancelled, or timed out;
* calls passing a proxy to a second service as an argument (the callee calls it in turn);
* calls returning a new object (made in the service's context), called once and released.

Every service lives in a context of its own. A churner in the main STA keeps replacing them: it makes a new
context and a service in it, publishes that in the directory, then disconnects the old context, calling
``ctx.disconnect(timeout)`` again on ``RPCTimeoutError`` until it succeeds (the README's loop). Calls still
reaching the old service fail with ``DisconnectedError``, an expected outcome.

Accounting: every call goes through the :class:`Ledger` and settles in exactly one outcome (ok, an error by
type, cancelled, timeout, disconnected). Each call is also bounded (``--call-bound``): a watcher task beside
each caller cancels a call still unanswered then, which counts as lost, and the caller moves on, so a lost call
cannot hang the run. The bound is not a deadline: apart from the deliberately slow calls, calls carry none, as
most of an app's calls. lost = issued - accounted, and must be 0. An outcome a call of its kind should not have (a wrong result, an
unexpected error) is counted and its first examples are printed.

The report: a line every ~10% of the run (at most 30 s apart), then calls and outcomes, errors by type,
latency percentiles, how far cancelled calls overshot their deadline, the context churn, RSS over time with
its least-squares slope after a warm-up, the objects each apartment still exports once everything is released
(``statistics().exported``, which must be back to 0) and how the runtime closed. Exit status 1 when a call
was lost, an outcome was unexpected, an object stayed exported, or the runtime did not close cleanly.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import itertools
import json
import math
import os
import random
import resource
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

import aptrt

# -- the objects under load ---------------------------------------------------------------------------------


class IService(aptrt.Interface, iid="0d9b7f8e-52a4-4c39-9d1b-6f2f4a7b3c21"):
    def add(self, n: int) -> int:
        raise NotImplementedError

    async def echo(self, n: int) -> int:
        raise NotImplementedError

    def fail(self, n: int) -> int:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        raise NotImplementedError

    def spin(self, seconds: float) -> None:
        raise NotImplementedError

    async def relay(self, other: IService, n: int) -> int:
        raise NotImplementedError

    def spawn(self) -> IService:
        raise NotImplementedError


class Service(aptrt.Guarded, IService):
    """A service object. In the MTA several workers call it at once, so it guards its state."""

    def __init__(self) -> None:
        self.total = 0

    @aptrt.guarded
    def add(self, n: int) -> int:
        self.total += n
        return self.total

    async def echo(self, n: int) -> int:
        await anyio.lowlevel.checkpoint()
        return n

    def fail(self, n: int) -> int:
        if n % 2:
            raise KeyError(n)
        raise ValueError(n)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def spin(self, seconds: float) -> None:
        """Busy for *seconds* (blocking its thread), polling for the caller's cancellation, last of all
        after its last sleep: a thread starved of the GIL may wake up past both its end and the deadline."""
        end = time.monotonic() + seconds
        while True:
            aptrt.check_cancelled()
            if time.monotonic() >= end:
                return
            time.sleep(0.0005)

    async def relay(self, other: Any, n: int) -> int:
        # a proxy, or the object itself when *other* lives in this apartment: both are awaited alike
        result: int = await other.echo(n)
        return result

    def spawn(self) -> Service:
        return Service()  # exported on the way out, into the context this call runs in


class IDirectory(aptrt.Interface, iid="5c0e2d71-8a3f-4f5e-b7d4-2e9a61c8f0b3"):
    def pick(self, exclude: str, r: float) -> IService:
        raise NotImplementedError

    def publish(self, slot: int, home: str, service: IService) -> None:
        raise NotImplementedError

    def clear(self) -> int:
        raise NotImplementedError


class Directory(IDirectory):
    """The current service of every slot. An STA object, so its calls take turns: ``publish`` may release
    the proxy it replaces while no ``pick`` is returning it."""

    def __init__(self) -> None:
        self._slots: dict[int, tuple[str, Any]] = {}  # slot -> (its apartment, a Proxy[IService])

    def pick(self, exclude: str, r: float) -> Any:
        """A service living outside apartment *exclude* (the caller's: it gets a proxy, not the object)."""
        choices = [proxy for home, proxy in self._slots.values() if home != exclude]
        return choices[int(r * len(choices))]

    def publish(self, slot: int, home: str, service: Any) -> None:
        old = self._slots.get(slot)
        self._slots[slot] = (home, service)
        if old is not None:
            old[1].release()

    def clear(self) -> int:
        slots, self._slots = self._slots, {}
        for _, proxy in slots.values():
            proxy.release()
        return len(slots)


# -- accounting ---------------------------------------------------------------------------------------------

OK = "ok"
CANCELLED = "cancelled"  # the caller's move_on_after deadline passed (no exception reaches it)
TIMEOUT = "timeout"  # the caller's fail_after deadline passed (TimeoutError)
DISCONNECTED = "disconnected"  # DisconnectedError: the service's context was disconnected
WRONG = "wrong-result"
LOST = "lost"  # no outcome within the call bound

#: the outcomes each kind of call may have; any other is unexpected (and fails the run)
EXPECTED: dict[str, frozenset[str]] = {
    "lookup": frozenset({OK, DISCONNECTED}),  # directory.pick (the proxy it returns may be disconnecting)
    "sync": frozenset({OK, DISCONNECTED}),  # service.add
    "async": frozenset({OK, DISCONNECTED}),  # service.echo
    "raise": frozenset({"ValueError", "KeyError", DISCONNECTED}),  # service.fail
    "cancel": frozenset({CANCELLED, DISCONNECTED}),  # service.sleep(1) under move_on_after
    "timeout": frozenset({TIMEOUT, DISCONNECTED}),  # service.sleep(1) under fail_after
    "spin": frozenset({CANCELLED, TIMEOUT, DISCONNECTED}),  # sync service.spin under either
    "relay": frozenset({OK, DISCONNECTED}),  # service.relay(proxy to another service)
    "spawn": frozenset({OK, DISCONNECTED}),  # service.spawn() -> a new object
    "spawned": frozenset({OK, DISCONNECTED}),  # a call on that new object
    "create": frozenset({OK}),  # churner: ctx.run_sync(Service)
    "publish": frozenset({OK}),  # churner: directory.publish(proxy)
    "clear": frozenset({OK}),  # teardown: directory.clear()
}
#: the timeouts a caller's own deadline raises (the builtin one from fail_after, or aptrt's subclass)
_DEADLINE_ERRORS = (TimeoutError, aptrt.DeadlineExceededError)
_ANY = object()


def _route(method: Callable[..., Awaitable[Any]]) -> str:
    """'from <caller's apartment> to <callee's apartment>' for a proxy's method (for the examples)."""
    proxy = getattr(method, "__self__", None)
    if not isinstance(proxy, aptrt.Proxy):
        return f"from {aptrt.current_apartment().name}"
    return f"from {proxy.apartment.name} to {proxy.target_apartment.name}"


class Histogram:
    """Durations in log buckets 2% wide from 1 µs: constant memory however long the run."""

    _BASE = 1e-6
    _STEP = math.log(1.02)
    _SIZE = 1200  # up to 1e-6 * 1.02**1200 s, about 5.5 hours

    def __init__(self) -> None:
        self.counts = [0] * self._SIZE
        self.n = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        index = 0 if seconds <= self._BASE else min(self._SIZE - 1, int(math.log(seconds / self._BASE) / self._STEP) + 1)
        self.counts[index] += 1
        self.n += 1
        self.max = max(self.max, seconds)

    def quantile(self, q: float) -> float | None:
        """The *q* quantile in seconds (the upper edge of its bucket: within 2%), None when empty."""
        if not self.n:
            return None
        rank = q * self.n
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return min(self._BASE * math.exp(self._STEP * index), self.max)
        return self.max

    def summary_ms(self) -> dict[str, float | int | None]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1e3, 3)

        return {"n": self.n, "p50": ms(self.quantile(0.5)), "p99": ms(self.quantile(0.99)), "max": ms(self.max)}


class Bound:
    """The call bound of one caller task, kept without a deadline (a deadline would travel to the callee,
    and the calls of an app mostly have none): :meth:`watch`, a task beside the caller in its loop, cancels
    the call in progress once it has run longer than *seconds*."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._scope: anyio.CancelScope | None = None
        self._since = 0.0

    @contextmanager
    def guard(self) -> Iterator[anyio.CancelScope]:
        with anyio.CancelScope() as scope:
            self._scope, self._since = scope, time.monotonic()
            try:
                yield scope
            finally:
                self._scope = None

    async def watch(self) -> None:
        while True:
            await anyio.sleep(self.seconds / 4)
            if self._scope is not None and time.monotonic() - self._since > self.seconds:
                self._scope.cancel()


class Ledger:
    """Every call of the run: issued, then settled exactly once. Thread-safe: callers run in many threads."""

    def __init__(self, call_bound: float) -> None:
        self.call_bound = call_bound
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        #: calls issued and not settled yet: token -> (kind, time.monotonic() when issued)
        self.in_flight: dict[int, tuple[str, float]] = {}
        self.issued: Counter[str] = Counter()
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[str] = Counter()  # exceptions that reached a caller, by type
        self.double_settled = 0
        self.returned = Histogram()  # calls that returned a value or raised the callee's error
        self.window = Histogram()  # the same, since the last periodic report
        self.by_kind: dict[str, Histogram] = {kind: Histogram() for kind in EXPECTED}
        self.overshoot = Histogram()  # cancelled and timed-out calls: time past their deadline
        self.unexpected = 0
        self.examples: list[str] = []  # the first unexpected outcomes, described

    # -- the books -------------------------------------------------------------------------------------------

    def _issue(self, kind: str) -> int:
        with self._lock:
            token = next(self._tokens)
            self.issued[kind] += 1
            self.in_flight[token] = (kind, time.monotonic())
        return token

    def _settle(
        self,
        token: int,
        kind: str,
        outcome: str,
        elapsed: float,
        deadline: float | None,
        error: Exception | None,
        method: Callable[..., Awaitable[Any]],
    ) -> None:
        with self._lock:
            if self.in_flight.pop(token, None) is None:
                self.double_settled += 1
                return
            self.outcomes[kind, outcome] += 1
            if error is not None and outcome != WRONG:
                self.errors[type(error).__name__] += 1
            if outcome == OK or outcome in ("ValueError", "KeyError"):
                self.returned.add(elapsed)
                self.window.add(elapsed)
                self.by_kind[kind].add(elapsed)
            elif outcome in (CANCELLED, TIMEOUT) and deadline is not None:
                self.overshoot.add(max(0.0, elapsed - deadline))
            if outcome not in EXPECTED[kind]:
                self.unexpected += 1
                if len(self.examples) < 20:
                    note = "" if error is None else f" ({type(error).__name__}: {error})"
                    self.examples.append(f"{kind} {_route(method)}: {outcome} after {elapsed * 1e3:.1f} ms{note}")

    def note_unexpected(self, what: str, exc: BaseException) -> None:
        """Something other than a call went wrong (a disconnect raising what it should not)."""
        with self._lock:
            self.unexpected += 1
            if len(self.examples) < 20:
                self.examples.append(f"{what}: {type(exc).__name__}: {exc}")

    async def call(
        self,
        kind: str,
        method: Callable[..., Awaitable[Any]],
        *args: Any,
        bound: Bound | None = None,
        cancel_after: float | None = None,
        fail_after: float | None = None,
        want: object = _ANY,
    ) -> tuple[str, Any]:
        """Make one accounted call, ``await method(*args)``, and return (outcome, result).

        The call runs under ``move_on_after(cancel_after)`` or ``fail_after(fail_after)`` when given (that
        deadline travels with it), and always under the call bound: *bound*'s watcher cancels it once it is
        overdue (no deadline travels), or without a *bound* a ``move_on_after(call_bound)`` does.
        """
        token = self._issue(kind)
        start = time.perf_counter()
        outcome: str = LOST
        result: Any = None
        error: Exception | None = None
        with bound.guard() if bound is not None else anyio.move_on_after(self.call_bound):
            try:
                if cancel_after is not None:
                    with anyio.move_on_after(cancel_after) as scope:
                        result = await method(*args)
                    outcome = CANCELLED if scope.cancelled_caught else OK
                elif fail_after is not None:
                    with anyio.fail_after(fail_after):
                        result = await method(*args)
                    outcome = OK
                else:
                    result = await method(*args)
                    outcome = OK
            except aptrt.DisconnectedError as exc:
                error, reason = exc, exc.reason
                outcome = DISCONNECTED if reason is aptrt.DisconnectReason.CONTEXT_DISCONNECTED else reason.name
            except Exception as exc:  # noqa: BLE001 - every other error is an outcome too, expected or not
                error = exc
                outcome = TIMEOUT if type(exc) in _DEADLINE_ERRORS else type(exc).__name__
        elapsed = time.perf_counter() - start
        if outcome == OK and want is not _ANY and result != want:
            outcome, error = WRONG, ValueError(f"got {result!r}, want {want!r}")
        self._settle(token, kind, outcome, elapsed, cancel_after or fail_after, error, method)
        error = None  # the exception holds this frame through its traceback
        return outcome, result

    # -- reading -----------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The totals now (and the latency window since the last snapshot, which starts a new one)."""
        with self._lock:
            issued = sum(self.issued.values())
            totals: Counter[str] = Counter()
            for (_, outcome), n in self.outcomes.items():
                totals[outcome] += n
            window, self.window = self.window, Histogram()
            now = time.monotonic()
            overdue = sum(1 for _, since in self.in_flight.values() if now - since > self.call_bound)
            return {
                "issued": issued,
                "accounted": sum(n for outcome, n in totals.items() if outcome != LOST),
                "in_flight": len(self.in_flight),
                "overdue": overdue,
                "totals": totals,
                "window": window.summary_ms(),
                "unexpected": self.unexpected,
            }


# -- memory ---------------------------------------------------------------------------------------------------


def rss_mib() -> float:
    """This process's resident set now, in MiB (/proc/self/statm; the peak from getrusage elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def slope_per_minute(samples: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope of (seconds, MiB) samples, in MiB per minute (None under 3 samples)."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return cov / var * 60


# -- the load -------------------------------------------------------------------------------------------------

#: (kind, weight): what a session's calls do
OPS: tuple[tuple[str, int], ...] = (
    ("sync", 30),
    ("async", 25),
    ("raise", 10),
    ("cancel", 8),
    ("timeout", 5),
    ("spin", 3),
    ("relay", 12),
    ("spawn", 7),
)
_KINDS = [kind for kind, _ in OPS]
_WEIGHTS = [weight for _, weight in OPS]


async def caller(directory: Any, ledger: Ledger, seed: int, stop: threading.Event) -> None:
    """One caller task, in any apartment: sessions of calls on services until *stop* is set.

    The directory proxy it gets as an argument belongs to its apartment; it is dropped (and released by
    garbage collection) when this call ends. The service proxies it receives it releases itself.
    """
    async with anyio.create_task_group() as tg:
        this = Caller(directory, ledger, seed)
        tg.start_soon(this.bound.watch)
        while not stop.is_set():
            await this.session()
        tg.cancel_scope.cancel()


class Caller:
    """What one caller task does."""

    def __init__(self, directory: Any, ledger: Ledger, seed: int) -> None:
        self.directory = directory
        self.ledger = ledger
        self.bound = Bound(ledger.call_bound)
        self.rng = random.Random(seed)
        self.here = aptrt.current_apartment().name

    async def call(self, kind: str, method: Callable[..., Awaitable[Any]], *args: Any, **how: Any) -> tuple[str, Any]:
        return await self.ledger.call(kind, method, *args, bound=self.bound, **how)

    async def lookup(self) -> Any:
        """A proxy to a service of another apartment, or None when the lookup failed."""
        outcome, service = await self.call("lookup", self.directory.pick, self.here, self.rng.random())
        return service if outcome == OK else None

    async def session(self) -> None:
        target = await self.lookup()
        if target is None:
            return
        try:
            for _ in range(self.rng.randint(1, 8)):
                await self.one_call(self.rng.choices(_KINDS, _WEIGHTS)[0], target)
        finally:
            target.release()

    async def one_call(self, kind: str, target: Any) -> None:
        rng = self.rng
        n = rng.randrange(1_000_000)
        if kind == "sync":
            await self.call(kind, target.add, 1)
        elif kind == "async":
            await self.call(kind, target.echo, n, want=n)
        elif kind == "raise":
            await self.call(kind, target.fail, n)
        elif kind == "cancel":
            await self.call(kind, target.sleep, 1.0, cancel_after=rng.uniform(0.001, 0.03))
        elif kind == "timeout":
            await self.call(kind, target.sleep, 1.0, fail_after=rng.uniform(0.001, 0.03))
        elif kind == "spin":  # a sync callee blocks its thread until it sees the caller's deadline
            deadline = rng.uniform(0.001, 0.01)
            if rng.random() < 0.5:
                await self.call(kind, target.spin, 0.05, cancel_after=deadline)
            else:
                await self.call(kind, target.spin, 0.05, fail_after=deadline)
        elif kind == "relay":
            other = await self.lookup()
            if other is not None:
                try:
                    await self.call(kind, target.relay, other, n, want=n)
                finally:
                    other.release()
        elif kind == "spawn":
            outcome, child = await self.call(kind, target.spawn)
            if outcome == OK:
                try:
                    await self.call("spawned", child.add, 1, want=1)  # a new object: its first total is 1
                finally:
                    child.release()
        else:
            raise AssertionError(kind)


@dataclass
class Slot:
    """Where one service lives: an apartment, and the context its current service belongs to."""

    index: int
    apartment: aptrt.Apartment
    context: aptrt.Context | None = None


#: the timeouts the churner passes to ``ctx.disconnect`` (each retried on RPCTimeoutError until it succeeds)
DISCONNECT_TIMEOUTS = (0.001, 0.005, 0.02, 0.1)


class Churner:
    """Keeps replacing services: a new context and service, published, then the old context disconnected."""

    def __init__(self, ledger: Ledger, directory: Any, slots: list[Slot], rng: random.Random) -> None:
        self.ledger = ledger
        self.directory = directory
        self.slots = slots
        self.rng = rng
        self.created = 0
        self.disconnected = 0
        self.retries = 0  # RPCTimeoutError from ctx.disconnect(timeout), called again
        self.stuck = 0  # disconnects still not done after the call bound
        self.durations = Histogram()

    async def run(self, every: float, stop: threading.Event) -> None:
        while not stop.is_set():
            await anyio.sleep(every)  # pacing, not ordering
            await self.replace(self.rng.choice(self.slots))

    async def replace(self, slot: Slot) -> None:
        ctx = slot.apartment.create_context()
        outcome, service = await self.ledger.call("create", ctx.run_sync, Service)
        if outcome != OK:
            await self.disconnect(ctx)
            return
        self.created += 1
        try:
            outcome, _ = await self.ledger.call("publish", self.directory.publish, slot.index, slot.apartment.name, service)
        finally:
            service.release()
        if outcome != OK:
            await self.disconnect(ctx)
            return
        old, slot.context = slot.context, ctx
        if old is not None:
            await self.disconnect(old)

    async def disconnect(self, ctx: aptrt.Context) -> None:
        """The README's loop: disconnect, and call again on RPC_E_TIMEOUT until it succeeds (bounded)."""
        start = time.perf_counter()
        try:
            with anyio.move_on_after(self.ledger.call_bound) as bound:
                while True:
                    try:
                        await ctx.disconnect(timeout=self.rng.choice(DISCONNECT_TIMEOUTS))
                        break
                    except aptrt.RPCTimeoutError:
                        self.retries += 1
        except Exception as exc:  # noqa: BLE001 - anything but RPC_E_TIMEOUT is reported, and the run goes on
            self.ledger.note_unexpected(f"disconnect {ctx!r}", exc)
            return
        if bound.cancelled_caught:
            self.stuck += 1
            self.ledger.note_unexpected("disconnect", TimeoutError(f"{ctx!r} still not disconnected"))
        else:
            self.disconnected += 1
            self.durations.add(time.perf_counter() - start)


# -- the run --------------------------------------------------------------------------------------------------


@dataclass
class Config:
    seconds: float = 60.0
    #: apartments in all: the main STA, the MTA, the directory's STA and the service STAs
    apartments: int = 16
    seed: int = 1
    #: caller tasks per caller apartment
    callers: int = 4
    #: a call with no outcome after this long counts as lost
    call_bound: float = 10.0
    #: one service replaced (and its old context disconnected) this often
    churn_every: float = 0.05
    json_path: Path | None = None


@dataclass
class Layout:
    """The apartments of the run."""

    directory_sta: aptrt.STA
    services: list[aptrt.Apartment]  # the service STAs, then the MTA
    callers: list[aptrt.Apartment]  # the main STA, the MTA and half the service STAs
    backends: dict[str, str] = field(default_factory=dict)


async def _open_apartments(rt: aptrt.Runtime, cfg: Config) -> Layout:
    assert rt.main_sta is not None
    stas = cfg.apartments - 3
    backends = {"main": "asyncio", "MTA": f"{rt.mta.max_workers} workers", "directory": "trio"}
    directory_sta = await rt.start_sta("directory", backend="trio")
    services: list[aptrt.Apartment] = []
    callers: list[aptrt.Apartment] = [rt.main_sta, rt.mta]
    for i in range(stas):
        backend = ("asyncio", "trio")[i % 2]
        sta = await rt.start_sta(f"svc{i:02d}-{backend}", backend=backend)
        backends[sta.name] = backend
        if i % 3 == 2:  # some inboxes are bounded: their callers wait for room, under their deadlines
            sta.configure(max_queued=32, overflow="wait")
            backends[sta.name] += ", max_queued=32"
        services.append(sta)
        if i % 4 in (0, 1):
            callers.append(sta)
            backends[sta.name] += ", callers"
    services.append(rt.mta)
    return Layout(directory_sta, services, callers, backends)


def _apartment_stats(rt: aptrt.Runtime) -> dict[str, aptrt.ApartmentStatistics]:
    return {a.name: a.statistics() for a in rt.apartments}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


class Reporter:
    """Samples RSS, prints a line every report interval, and keeps what the final report needs."""

    def __init__(
        self, cfg: Config, ledger: Ledger, churner: Churner, rt: aptrt.Runtime, say: Callable[[str], None]
    ) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.churner = churner
        self.rt = rt
        self.say = say
        self.every = max(0.25, min(30.0, cfg.seconds / 10))
        self.sample_every = min(1.0, self.every / 4)
        self.warmup = min(60.0, cfg.seconds / 5)
        self.start = time.monotonic()
        self.samples: list[tuple[float, float]] = [(0.0, rss_mib())]
        self.lines: list[dict[str, Any]] = []
        self._last = (self.start, 0)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def sample(self) -> None:
        self.samples.append((round(self.elapsed(), 2), round(rss_mib(), 2)))

    async def run(self, stop: threading.Event) -> None:
        next_report = self.every
        while True:
            await anyio.sleep(self.sample_every)
            if stop.is_set():
                return  # the run prints its last line once the callers are done
            self.sample()
            if self.elapsed() >= next_report:
                next_report += self.every
                self.report_line()

    def report_line(self) -> None:
        snap = self.ledger.snapshot()
        now = time.monotonic()
        last_t, last_n = self._last
        self._last = (now, snap["accounted"])
        rate = (snap["accounted"] - last_n) / max(now - last_t, 1e-9)
        stats = _apartment_stats(self.rt)
        exported = sum(s.exported for s in stats.values())
        live_contexts = sum(len(a.contexts()) for a in self.rt.apartments)
        totals = snap["totals"]
        window = snap["window"]
        line = {
            "t": round(self.elapsed(), 1),
            "accounted": snap["accounted"],
            "rate": round(rate),
            "in_flight": snap["in_flight"],
            "overdue": snap["overdue"],
            "lost": totals.get(LOST, 0),
            "unexpected": snap["unexpected"],
            "ok": totals.get(OK, 0),
            "errors": totals.get("ValueError", 0) + totals.get("KeyError", 0),
            "cancelled": totals.get(CANCELLED, 0) + totals.get(TIMEOUT, 0),
            "disconnected": totals.get(DISCONNECTED, 0),
            "p50_ms": window["p50"],
            "p99_ms": window["p99"],
            "max_ms": window["max"],
            "rss_mib": self.samples[-1][1],
            "exported": exported,
            "live_contexts": live_contexts,
            "disconnects": self.churner.disconnected,
            "retries": self.churner.retries,
        }
        self.lines.append(line)
        pct = 100 * line["t"] / self.cfg.seconds
        self.say(
            f"[{line['t']:7.1f} s {pct:3.0f}%] {line['accounted']:>10,} calls ({line['rate']:>6,}/s) "
            f"ok {line['ok']:,} err {line['errors']:,} cancel/timeout {line['cancelled']:,} "
            f"disconn {line['disconnected']:,} | in flight {line['in_flight']} lost {line['lost']} "
            f"unexpected {line['unexpected']} | p50 {_num(line['p50_ms'])} p99 {_num(line['p99_ms'])} "
            f"max {_num(line['max_ms'])} ms "
            f"| rss {line['rss_mib']:.1f} MiB exported {exported} contexts {live_contexts} "
            f"disconnects {line['disconnects']} (retries {line['retries']})"
        )

    def memory(self) -> dict[str, Any]:
        after = [(t, m) for t, m in self.samples if t >= self.warmup]
        slope = slope_per_minute(after)
        return {
            "samples": self.samples,
            "warmup_s": round(self.warmup, 2),
            "slope_mib_per_min": None if slope is None else round(slope, 4),
            "slope_samples": len(after),
            "start_mib": self.samples[0][1],
            "after_warmup_mib": after[0][1] if after else None,
            "end_mib": self.samples[-1][1],
            "peak_mib": max(m for _, m in self.samples),
        }


async def _soak(cfg: Config, say: Callable[[str], None]) -> dict[str, Any]:
    """The run itself, inside one runtime; returns the report (without the closing figures)."""
    ledger = Ledger(cfg.call_bound)
    stop = threading.Event()
    rng = random.Random(cfg.seed)
    report: dict[str, Any] = {}
    async with aptrt.Runtime() as rt:
        layout = await _open_apartments(rt, cfg)
        directory = await layout.directory_sta.create(Directory)
        slots = [Slot(i, apartment) for i, apartment in enumerate(layout.services)]
        churner = Churner(ledger, directory, slots, random.Random(rng.random()))
        for slot in slots:  # every slot has a service before the first caller looks
            await churner.replace(slot)
        reporter = Reporter(cfg, ledger, churner, rt, say)
        say(
            f"soak: {cfg.seconds:g} s, {cfg.apartments} apartments, {len(layout.callers) * cfg.callers} callers in "
            f"{len(layout.callers)} apartments, {len(slots)} services, seed {cfg.seed}, call bound {cfg.call_bound:g} s"
        )
        for name, backend in layout.backends.items():
            say(f"  {name}: {backend}")

        callers_done = anyio.Event()
        callers_scope = anyio.CancelScope()

        async def run_callers() -> None:
            with callers_scope:
                async with anyio.create_task_group() as tg:
                    seeds = itertools.count(cfg.seed * 1000)
                    for apartment in layout.callers:
                        for _ in range(cfg.callers):
                            if apartment is rt.main_sta:
                                tg.start_soon(caller, directory, ledger, next(seeds), stop)
                            else:
                                tg.start_soon(apartment.run, caller, directory, ledger, next(seeds), stop)
            callers_done.set()

        load_started = time.monotonic()
        drained = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_callers)
            tg.start_soon(churner.run, cfg.churn_every, stop)
            tg.start_soon(reporter.run, stop)
            await anyio.sleep(cfg.seconds)
            stop.set()
            # every caller ends its session; a call with no outcome gives up at its bound
            with anyio.move_on_after(cfg.call_bound * 2 + 5):
                await callers_done.wait()
            if not callers_done.is_set():
                drained = False
                callers_scope.cancel()  # their in-flight calls stay unsettled: lost
        load_seconds = time.monotonic() - load_started
        reporter.sample()
        reporter.report_line()

        # release everything, then every apartment's export count must be back to 0
        await ledger.call("clear", directory.clear)
        directory.release()
        exported = await _exported_after_release(rt)
        for slot in slots:
            if slot.context is not None:
                await churner.disconnect(slot.context)
        stats = _apartment_stats(rt)
        report = _report(cfg, ledger, churner, reporter, layout, load_seconds, drained, exported, stats)
    return report


async def _exported_after_release(rt: aptrt.Runtime, patience: float = 5.0) -> dict[str, int]:
    """Each apartment's exported objects once released proxies are given back (gc, then statistics()
    flushes the releases garbage collection queued). Waits up to *patience* for them to reach 0."""
    deadline = time.monotonic() + patience
    while True:
        gc.collect()
        exported = {name: s.exported for name, s in _apartment_stats(rt).items()}
        if not any(exported.values()) or time.monotonic() > deadline:
            return exported
        await anyio.sleep(0.05)  # a condition polled with a bound, not an ordering


def _report(
    cfg: Config,
    ledger: Ledger,
    churner: Churner,
    reporter: Reporter,
    layout: Layout,
    load_seconds: float,
    drained: bool,
    exported: dict[str, int],
    stats: dict[str, aptrt.ApartmentStatistics],
) -> dict[str, Any]:
    snap = ledger.snapshot()
    issued = snap["issued"]
    accounted = snap["accounted"]
    outcomes: dict[str, dict[str, int]] = {}
    for (kind, outcome), n in sorted(ledger.outcomes.items()):
        outcomes.setdefault(kind, {})[outcome] = n
    return {
        "config": {
            "seconds": cfg.seconds,
            "apartments": cfg.apartments,
            "seed": cfg.seed,
            "callers_per_apartment": cfg.callers,
            "call_bound_s": cfg.call_bound,
            "churn_every_s": cfg.churn_every,
        },
        "apartments": layout.backends,
        "callers": len(layout.callers) * cfg.callers,
        "load_seconds": round(load_seconds, 2),
        "calls": {
            "issued": issued,
            "accounted": accounted,
            "lost": issued - accounted,
            "lost_at_bound": snap["totals"].get(LOST, 0),
            "never_settled": snap["in_flight"],
            "double_settled": ledger.double_settled,
            "unexpected": ledger.unexpected,
            "per_second": round(accounted / load_seconds) if load_seconds else None,
            "callers_drained": drained,
        },
        "outcomes": outcomes,
        "outcome_totals": dict(snap["totals"].most_common()),
        "errors_by_type": dict(ledger.errors.most_common()),
        "unexpected_examples": list(ledger.examples),
        "latency_ms": {
            **ledger.returned.summary_ms(),
            "by_kind": {kind: h.summary_ms() for kind, h in ledger.by_kind.items() if h.n},
        },
        "cancel_overshoot_ms": ledger.overshoot.summary_ms(),
        "contexts": {
            "created": churner.created,
            "disconnected": churner.disconnected,
            "disconnect_retries": churner.retries,
            "stuck": churner.stuck,
            "disconnect_ms": churner.durations.summary_ms(),
        },
        "memory": reporter.memory(),
        "periodic": reporter.lines,
        "exported_at_end": exported,
        "apartment_statistics": {
            name: {
                "completed": s.completed,
                "failed": s.failed,
                "cancelled": s.cancelled,
                "expired": s.expired,
                "rejected": s.rejected,
                "queued": s.queued,
                "running": s.running,
                "exported": s.exported,
            }
            for name, s in stats.items()
        },
    }


def _aptrt_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("aptrt-") and t.is_alive())


def _print(line: str) -> None:
    print(line, flush=True)  # flushed: the periodic lines show progress when the output goes to a file


def run(cfg: Config, say: Callable[[str], None] = _print) -> dict[str, Any]:
    """Run the soak (in a new asyncio loop on this thread), print the report, save it as JSON when
    ``cfg.json_path`` is set, and return it; ``report["status"]`` is the exit status."""
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    load0 = os.getloadavg()
    started = time.monotonic()
    report: dict[str, Any] = {}
    error: str | None = None
    try:
        report = anyio.run(_soak, cfg, say)
    except BaseException as exc:  # a crash or a failed close: reported, and the run fails
        if not isinstance(exc, Exception):
            raise
        error = f"{type(exc).__name__}: {exc}"
    closed = time.monotonic()
    leftover = _aptrt_threads()
    while leftover and time.monotonic() - closed < 5.0:
        time.sleep(0.05)  # threads that are still being joined: a bounded wait for a condition
        leftover = _aptrt_threads()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    report["close"] = {"error": error, "threads_left": leftover, "clean": error is None and not leftover}
    report["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "process_cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
        "wall_s": round(time.monotonic() - started, 1),
        "python": sys.version.split()[0],
        "aptrt": aptrt.__version__,
    }
    report["failures"] = _failures(report)
    report["status"] = 1 if report["failures"] else 0
    for line in summary(report):
        say(line)
    if cfg.json_path is not None:
        cfg.json_path.parent.mkdir(parents=True, exist_ok=True)
        cfg.json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        say(f"saved {cfg.json_path}")
    return report


def _failures(report: dict[str, Any]) -> list[str]:
    failures = []
    if not report["close"]["clean"]:
        failures.append(f"the runtime did not close cleanly: {report['close']}")
    calls = report.get("calls")
    if calls is None:
        return failures
    if calls["lost"]:
        failures.append(f"{calls['lost']} call(s) lost")
    if calls["double_settled"]:
        failures.append(f"{calls['double_settled']} call(s) settled twice")
    if calls["unexpected"]:
        failures.append(f"{calls['unexpected']} unexpected outcome(s)")
    if any(report["exported_at_end"].values()):
        failures.append(f"objects still exported after everything was released: {report['exported_at_end']}")
    return failures


def summary(report: dict[str, Any]) -> list[str]:
    """The final report as lines of text."""
    lines = ["", "== soak report =="]
    calls = report.get("calls")
    if calls is not None:
        machine = report["machine"]
        lines.append(
            f"load: {report['load_seconds']:.0f} s, {report['callers']} callers; machine: {machine['cpus']} CPUs, "
            f"load average {machine['loadavg_start'][0]} at start, {machine['loadavg_end'][0]} at end (other work "
            f"shares this machine); this process used {machine['process_cpu_s']} CPU-s in {machine['wall_s']} s"
        )
        lines.append(
            f"calls: issued {calls['issued']:,}, accounted {calls['accounted']:,}, lost {calls['lost']} "
            f"({calls['lost_at_bound']} at the bound, {calls['never_settled']} never settled), "
            f"settled twice {calls['double_settled']}, unexpected {calls['unexpected']}; {calls['per_second']:,} calls/s"
        )
        lines.append("outcomes: " + ", ".join(f"{k} {v:,}" for k, v in report["outcome_totals"].items()))
        lines.append("errors by type (reaching callers): " + ", ".join(f"{k} {v:,}" for k, v in report["errors_by_type"].items()))
        lines.append("by kind:")
        for kind, outcomes in report["outcomes"].items():
            lat = report["latency_ms"]["by_kind"].get(kind)
            timing = f"  [p50 {lat['p50']} p99 {lat['p99']} max {lat['max']} ms]" if lat else ""
            lines.append(f"  {kind:8} " + ", ".join(f"{k} {v:,}" for k, v in outcomes.items()) + timing)
        lat = report["latency_ms"]
        lines.append(f"latency of returned calls (ok or the callee's error): p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
        over = report["cancel_overshoot_ms"]
        lines.append(f"cancelled/timed-out calls, past their deadline: p50 {over['p50']} ms, p99 {over['p99']} ms, max {over['max']} ms")
        ctx = report["contexts"]
        dis = ctx["disconnect_ms"]
        lines.append(
            f"contexts: {ctx['created']:,} created, {ctx['disconnected']:,} disconnected ({ctx['disconnect_retries']:,} "
            f"RPC_E_TIMEOUT retries, {ctx['stuck']} stuck); disconnect p50 {dis['p50']} ms, p99 {dis['p99']} ms, "
            f"max {dis['max']} ms"
        )
        mem = report["memory"]
        slope = mem["slope_mib_per_min"]
        lines.append(
            f"memory: RSS {mem['start_mib']:.1f} MiB at start, {mem['after_warmup_mib']} after the {mem['warmup_s']:g} s "
            f"warm-up, {mem['end_mib']:.1f} at end, peak {mem['peak_mib']:.1f}; slope "
            f"{'-' if slope is None else f'{slope:+.3f}'} MiB/min over {mem['slope_samples']} samples"
        )
        lines.append("exported at end: " + ", ".join(f"{k} {v}" for k, v in report["exported_at_end"].items()))
        for example in report["unexpected_examples"]:
            lines.append(f"  unexpected: {example}")
    close = report["close"]
    lines.append(f"runtime closed: {'cleanly' if close['clean'] else close}")
    lines.append("RESULT: " + ("PASS" if not report["failures"] else "FAIL: " + "; ".join(report["failures"])))
    return lines


def _watchdog(seconds: float) -> threading.Timer:
    """A last resort if the runtime itself hangs: print every thread's stack and exit with status 3."""

    def fire() -> None:
        print(f"soak: still running {seconds:.0f} s after it started: a hang; the threads:", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(all_threads=True)
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.name = "soak-watchdog"
    timer.daemon = True
    timer.start()
    return timer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="A bounded soak: mixed cross-apartment load (sync, async, raising, cancelled, proxy-passing calls; "
        "contexts disconnected and replaced), every call accounted for; RSS and its slope, exports back to 0.",
    )
    duration = parser.add_mutually_exclusive_group()
    duration.add_argument("--minutes", type=float, help="run this long (default 1)")
    duration.add_argument("--seconds", type=float, help="run this long, for short runs")
    parser.add_argument("--apartments", type=int, default=16, help="apartments in all, with the main STA and the MTA")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--callers", type=int, default=4, help="caller tasks per caller apartment (default 4)")
    parser.add_argument("--call-bound", type=float, default=10.0, help="seconds after which a call counts as lost")
    parser.add_argument("--json", metavar="PATH", type=Path, help="save the report as JSON")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else 60.0 * (args.minutes if args.minutes is not None else 1.0)
    if seconds <= 0 or args.apartments < 4 or args.callers < 1 or args.call_bound <= 0:
        parser.error("needs a positive duration, at least 4 apartments, 1 caller and a positive call bound")
    cfg = Config(seconds, args.apartments, args.seed, args.callers, args.call_bound, json_path=args.json)
    timer = _watchdog(seconds + 4 * cfg.call_bound + 120)
    try:
        return int(run(cfg)["status"])
    finally:
        timer.cancel()
        timer.join()


if __name__ == "__main__":
    sys.exit(main())
