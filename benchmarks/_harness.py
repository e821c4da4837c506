"""Measurement primitives shared by every mechanism.

A *mechanism* is one way of calling ``f(x) = x + 1`` on another thread. It knows how to set itself up and
tear itself down, and how to run the two measurements the runner asks for:

* ``latency(n, warmup)``: *n* sequential calls, each timed with ``perf_counter_ns``; returns the samples (ns);
* ``throughput(inflight, calls)``: *calls* calls with *inflight* of them outstanding at any time; returns the
  elapsed seconds.

Two base classes cover every caller shape:

* :class:`SyncMechanism`: the caller is the harness thread itself (a plain thread). Pipelining uses a sliding
  window of futures (``pipeline = "window"``) or *inflight* caller threads (``pipeline = "threads"``).
* :class:`AsyncMechanism`: the caller is a coroutine on some event loop thread. The harness thread hands the
  whole measurement to that loop (untimed control plane) and blocks until it returns. Pipelining runs
  *inflight* tasks, each calling back to back.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, ExitStack
from typing import Any, ClassVar, Literal, Self, TypeVar

import anyio
import anyio.from_thread

T = TypeVar("T")

#: the callee, as a plain function
SyncCall = Callable[[int], int]
#: the callee, as seen from an async caller
AsyncCall = Callable[[int], Awaitable[int]]

#: the most threads a ``pipeline = "threads"`` mechanism may start for one throughput point
MAX_CALLER_THREADS = 64


class BenchError(RuntimeError):
    """A mechanism returned a wrong result or could not run."""


def inc(x: int) -> int:
    """The callee: ``f(x) = x + 1``."""
    return x + 1


_pinned = threading.local()


def inc_pinning(x: int) -> int:
    """``f`` for callee threads that the mechanism starts itself (worker pools): pins on first use."""
    if not getattr(_pinned, "done", False):
        pin("callee")
        _pinned.done = True
    return x + 1


def pin_once(role: str) -> None:
    """Pin the calling thread to *role*'s CPUs the first time it runs this (for pool threads started by
    someone else; a thread is pinned for one role only)."""
    if getattr(_pinned, "done", False):
        return
    pin(role)
    _pinned.done = True


async def ainc(x: int) -> int:
    """The callee as a coroutine function (for mechanisms that can only run coroutines)."""
    return x + 1


def check_result(x: int, result: object) -> None:
    if result != x + 1:
        raise BenchError(f"the callee returned {result!r} for {x!r}, not {x + 1!r}")


# -- thread placement ----------------------------------------------------------------------------------------
#
# On a small VM the scheduler decides most of a cross-thread call's cost: a caller and a callee on one vCPU
# hand off in a few µs, on two vCPUs each wake-up costs an IPI (about 20 µs here). Left alone, it co-locates
# some runs and not others, which swamps the differences between mechanisms. So every mechanism pins its
# threads by role: "caller" (the thread or loop that makes the calls) and "callee" (the thread or loop
# that runs f). Placement modes: "split" (caller and callee on different CPUs, the design basis), "same"
# (all on one CPU), "auto" (no pinning: the scheduler decides).

PLACEMENTS = ("split", "same", "auto")

#: role -> CPUs; empty: do not pin. Roles: "caller", "callee", and "any" (every CPU the run may use: worker
#: pools whose scaling is measured, which must not inherit one role's CPU from the thread that started them)
_pins: dict[str, set[int]] = {}


def configure_placement(mode: str) -> dict[str, Any]:
    """Set the CPUs of each role for :func:`pin` (and pin the calling thread as a caller)."""
    if mode not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, not {mode!r}")
    _pins.clear()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if mode == "split" and len(cpus) < 2:
        mode = "auto"  # nothing to split
    if mode == "split":
        _pins["caller"], _pins["callee"], _pins["any"] = {cpus[0]}, {cpus[1]}, set(cpus)
    elif mode == "same" and cpus:
        _pins["caller"] = _pins["callee"] = _pins["any"] = {cpus[0]}
    pin("caller")
    return {"mode": mode, **{role: sorted(cpus) for role, cpus in _pins.items()}}


def pin(role: str) -> None:
    """Pin the calling thread to the CPUs of *role* (no-op in "auto" placement).

    Threads inherit their creator's CPUs: a thread that a caller starts must pin itself if it is a callee.
    """
    cpus = _pins.get(role)
    if cpus:
        os.sched_setaffinity(0, cpus)


# -- the mechanism interface ---------------------------------------------------------------------------------


class Mechanism(ABC):
    """One cross-thread call mechanism under test."""

    #: short stable id (the transport-measurements keys for peers: "2a", "4a", ...; "aptrt/<backend>")
    key: ClassVar[str]
    #: what it is, for the table
    label: ClassVar[str]
    #: "aptrt", "floor" or "peer"
    family: ClassVar[str] = "peer"
    #: the most calls it can have in flight (1: latency only, None: unbounded)
    max_inflight: ClassVar[int | None] = None
    #: modules that must be importable for it to run
    requires: ClassVar[tuple[str, ...]] = ()
    #: run when no ``--only``/``--all`` selection is given
    default: ClassVar[bool] = True

    def __init__(self) -> None:
        self._stack = ExitStack()

    def supports(self, inflight: int) -> bool:
        return self.max_inflight is None or inflight <= self.max_inflight

    def open(self) -> None:  # noqa: B027 - optional hook
        """Start the threads/loops the mechanism needs (untimed)."""

    def close(self) -> None:
        """Stop everything :meth:`open` started (untimed)."""
        self._stack.close()

    def __enter__(self) -> Self:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abstractmethod
    def latency(self, n: int, warmup: int) -> list[int]:
        """*warmup* untimed calls, then *n* sequential timed calls; the per-call times in ns."""

    @abstractmethod
    def throughput(self, inflight: int, calls: int) -> float:
        """Seconds taken by *calls* calls (a multiple of *inflight*) with *inflight* outstanding."""


class SyncMechanism(Mechanism):
    """The caller is the harness thread (a plain thread that blocks on each call)."""

    #: how to keep several calls in flight from one plain thread
    pipeline: ClassVar[Literal["window", "threads", "none"]] = "window"

    def supports(self, inflight: int) -> bool:
        if inflight > 1 and self.pipeline == "none":
            return False
        if self.pipeline == "threads" and inflight > MAX_CALLER_THREADS:
            return False
        return super().supports(inflight)

    @abstractmethod
    def call(self, x: int) -> int:
        """One blocking call."""

    def submit(self, x: int) -> Any:
        """Start one call; returns a handle for :meth:`wait` (``pipeline = "window"``)."""
        raise NotImplementedError

    def wait(self, handle: Any) -> int:
        """The result of a call started with :meth:`submit`."""
        raise NotImplementedError

    def latency(self, n: int, warmup: int) -> list[int]:
        call = self.call
        check_result(41, call(41))
        for i in range(warmup):
            call(i)
        return sync_latency(call, n)

    def throughput(self, inflight: int, calls: int) -> float:
        if inflight == 1 or self.pipeline == "none":
            return sync_sequential(self.call, calls)
        if self.pipeline == "threads":
            return threads_throughput(self.call, inflight, calls)
        check_result(41, self.wait(self.submit(41)))
        return window_throughput(self.submit, self.wait, inflight, calls)


class AsyncMechanism(Mechanism):
    """The caller is a coroutine on an event loop thread that the mechanism owns."""

    @abstractmethod
    def run_on_caller(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` on the caller's loop and return the result (blocking, untimed)."""

    @abstractmethod
    def session(self) -> AbstractAsyncContextManager[AsyncCall]:
        """On the caller's loop: set up a caller-side handle and yield ``call(x) -> awaitable``."""

    def latency(self, n: int, warmup: int) -> list[int]:
        return self.run_on_caller(self._latency, n, warmup)

    def throughput(self, inflight: int, calls: int) -> float:
        return self.run_on_caller(self._throughput, inflight, calls)

    async def _latency(self, n: int, warmup: int) -> list[int]:
        async with self.session() as call:
            check_result(41, await call(41))
            for i in range(warmup):
                await call(i)
            return await async_latency(call, n)

    async def _throughput(self, inflight: int, calls: int) -> float:
        async with self.session() as call:
            check_result(41, await call(41))
            return await async_throughput(call, inflight, calls)


# -- measurement loops ---------------------------------------------------------------------------------------


def sync_latency(call: SyncCall, n: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = [0] * n
    for i in range(n):
        t0 = clock()
        call(i)
        samples[i] = clock() - t0
    return samples


def sync_sequential(call: SyncCall, calls: int) -> float:
    t0 = time.perf_counter()
    for i in range(calls):
        call(i)
    return time.perf_counter() - t0


def window_throughput(submit: Callable[[int], Any], wait: Callable[[Any], object], inflight: int, calls: int) -> float:
    """One plain thread keeps *inflight* calls outstanding: wait for the oldest, start the next."""
    window: deque[Any] = deque()
    push = window.append
    pop = window.popleft
    t0 = time.perf_counter()
    for i in range(min(inflight, calls)):
        push(submit(i))
    for i in range(inflight, calls):
        wait(pop())
        push(submit(i))
    while window:
        wait(pop())
    return time.perf_counter() - t0


def threads_throughput(call: SyncCall, inflight: int, calls: int) -> float:
    """*inflight* plain threads each make ``calls // inflight`` blocking calls back to back."""
    per = calls // inflight
    start = threading.Barrier(inflight + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            for i in range(per):
                call(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the harness thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, name=f"bench-caller-{i}", daemon=True) for i in range(inflight)]
    for thread in threads:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed


async def async_latency(call: AsyncCall, n: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = [0] * n
    for i in range(n):
        t0 = clock()
        await call(i)
        samples[i] = clock() - t0
    return samples


async def async_throughput(call: AsyncCall, inflight: int, calls: int) -> float:
    """*inflight* tasks on the caller's loop each make ``calls // inflight`` calls back to back."""
    per = calls // inflight

    async def worker() -> None:
        for i in range(per):
            await call(i)

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(inflight):
            tg.start_soon(worker)
    return time.perf_counter() - t0


async def timed_throughput(calls: Sequence[Callable[[int], Awaitable[object]]], inflight: int, seconds: float) -> float:
    """Calls/s with *inflight* tasks calling back to back for about *seconds* (self-sizing: no calibration).

    Task *i* uses ``calls[i % len(calls)]`` (several targets: fan-out). A short untimed burst warms up
    first. Calls still in flight when time is up are waited for and counted; the elapsed time includes them.
    """
    clock = time.perf_counter

    async def burst(duration: float) -> tuple[int, float]:
        end = clock() + duration
        done = [0] * inflight

        async def worker(slot: int) -> None:
            call = calls[slot % len(calls)]
            n = 0
            while clock() < end:
                await call(n)
                n += 1
            done[slot] = n

        t0 = clock()
        async with anyio.create_task_group() as tg:
            for slot in range(inflight):
                tg.start_soon(worker, slot)
        return sum(done), clock() - t0

    await burst(min(0.05, seconds / 4))
    n, elapsed = await burst(seconds)
    return n / elapsed


# -- event loop threads --------------------------------------------------------------------------------------


class LoopThread:
    """An event loop (asyncio, uvloop or trio) running on its own thread, driven through an anyio portal.

    The portal is control plane only (set-up, handing measurements to the loop); it is idle while a
    measurement runs.
    """

    def __init__(self, backend: str, role: str) -> None:
        self.backend = backend
        self.role = role
        self._stack = ExitStack()
        self.portal: anyio.from_thread.BlockingPortal | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> Self:
        name, options = backend_options(self.backend)
        self.portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal(name, options))
        self.portal.call(pin, self.role)
        if name == "asyncio":
            self.loop = self.portal.call(_running_loop)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.portal = None
        self.loop = None
        self._stack.close()

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        assert self.portal is not None, "the loop thread is not running"
        return self.portal.call(fn, *args)


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def backend_options(backend: str) -> tuple[str, dict[str, Any]]:
    """``anyio`` backend name and options for "asyncio", "uvloop" or "trio"."""
    if backend == "asyncio":
        return "asyncio", {}
    if backend == "uvloop":
        return "asyncio", {"use_uvloop": True}
    if backend == "trio":
        return "trio", {}
    raise ValueError(f"unknown backend {backend!r}")


async def aclose_task(task: asyncio.Task[Any]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
