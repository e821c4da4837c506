"""The multithreaded apartment: one per runtime, a bounded pool of worker threads.

Sync methods of MTA objects run on worker threads that block on one ``queue.SimpleQueue`` and take
whatever else is already queued before blocking again (a batch per wake-up). Async methods run as tasks
on the MTA's own event loop thread, started on first use. A thread of the MTA (a worker, the loop, or a
plain thread: COM's implicit MTA) calls MTA objects directly, with no queue hop.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

from ._apartment import Apartment, ApartmentKind, ApartmentStatistics
from ._call import INF, REPLY, Call
from ._exceptions import ApartmentClosedError, DisconnectReason
from ._execute import Counters, admit, closed_error, filter_admits, release_slot, run_inline
from ._invoke import await_call, block_on_call, refuse_on_loop
from ._loophost import FlushReleases, LoopHost
from ._port import dispatch_failed
from ._threadstate import tls

if TYPE_CHECKING:
    from ._runtime import Runtime

_STOP = object()


class _FlushMarked(FlushReleases):
    __slots__ = ()

    def handle(self, port: object) -> None:
        mta = self.apartment
        assert isinstance(mta, MTA)
        try:
            mta._flush_marks.popleft()
        except IndexError:
            pass
        super().handle(None)


def default_workers() -> int:
    """The default MTA size: like ``concurrent.futures.ThreadPoolExecutor`` (CPUs + 4, at most 32)."""
    return min(32, (os.cpu_count() or 1) + 4)


class MTA(Apartment):
    """The runtime's multithreaded apartment (``rt.mta``). Objects here run concurrently on its worker
    threads and must guard their own state (see :class:`aptrt.Guarded`)."""

    kind = ApartmentKind.MTA
    accepts_plain_threads = True

    def __init__(self, runtime: Runtime, *, max_workers: int | None = None, backend: str = "asyncio") -> None:
        super().__init__(runtime, "MTA")
        if max_workers is None:
            max_workers = default_workers()
        if max_workers < 1:
            raise ValueError(f"the MTA needs at least one worker, not {max_workers}")
        self.max_workers = max_workers
        self.backend = backend
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # guarded by _lock: the workers, how many block in get(), the loop host, who waits for the end
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._counters: list[Counters] = []
        self._idle = 0
        self._live = 0
        self._loop: LoopHost | None = None
        self._stop_waiters: list[Call] = []
        self._closed = threading.Event()
        #: one mark per FlushReleases message in the queue (so statistics count calls only)
        self._flush_marks: deque[None] = deque()
        #: loops that died (a callee's KeyboardInterrupt, say); joined when the MTA closes
        self._dead_loops: list[LoopHost] = []

    # -- any thread ------------------------------------------------------------------------------------

    def submit(self, call: Call) -> None:
        if self.closing:
            raise ApartmentClosedError(
                f"the MTA is closed; {call.name!r} was not run", reason=DisconnectReason.SERVER_SHUTDOWN
            )
        if self.bound is not None:
            self.bound.reserve(call, self.name)
        if call.is_async:
            port = self._loop_port()
            if not port.post(call):
                raise ApartmentClosedError("the MTA's loop has stopped", reason=DisconnectReason.SERVER_SHUTDOWN)
            return
        queue = self._queue
        queue.put(call)
        # more work queued than idle workers to take it: start one (a racy read; the lock re-checks)
        if queue.qsize() > self._idle:
            self._maybe_spawn()

    def _nudge(self) -> None:
        self._flush_marks.append(None)
        self._queue.put(_FlushMarked(self))  # SimpleQueue.put is reentrant: safe from __del__
        # no worker is spawned from here (that takes a lock): an idle worker or the next call flushes

    def statistics(self) -> ApartmentStatistics:
        with self._lock:
            counters = list(self._counters)
            counters += [host.counters for host in (*self._dead_loops, self._loop) if host is not None]
        # the inbox also carries FlushReleases messages: one mark each in _flush_marks (deque: atomic)
        queued = max(0, self._queue.qsize() - len(self._flush_marks))
        port = self._loop.port if self._loop is not None else None
        if port is not None:
            queued += port.queued_requests()
        self.exports.flush_releases()
        return self._stats(queued, counters)

    def queued_calls(self) -> list[Call]:
        # SimpleQueue offers no peek: report the MTA loop's inbox (async calls) only
        port = self._loop.port if self._loop is not None else None
        return port.queued() if port is not None else []

    def running_calls(self) -> list[Call]:
        with self._lock:
            counters = list(self._counters)
            counters += [host.counters for host in (*self._dead_loops, self._loop) if host is not None]
        return [call for c in counters for call in list(c.running_calls)]

    @property
    def workers(self) -> int:
        """Worker threads running now (they start on demand, up to ``max_workers``)."""
        return len(self._workers)

    # -- workers ---------------------------------------------------------------------------------------

    def _maybe_spawn(self) -> None:
        with self._lock:
            if self.closing or len(self._workers) >= self.max_workers or self._idle >= self._queue.qsize():
                return
            counters = Counters()
            thread = threading.Thread(
                target=self._work, args=(counters,), name=f"aptrt-mta-{len(self._workers)}", daemon=True
            )
            self._workers.append(thread)
            self._counters.append(counters)
            self._live += 1
            self._idle += 1  # counted idle from now, so concurrent submitters don't spawn another
        thread.start()

    def _work(self, counters: Counters) -> None:
        tls.s.apartment = self
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        lock = self._lock
        try:
            while True:
                item = get()
                with lock:
                    self._idle -= 1
                while True:
                    if item is _STOP:
                        return
                    try:
                        if type(item) is Call:
                            if item.reserved:
                                release_slot(self, item)
                            if self.closing:
                                item.fail(closed_error(self, item))
                            elif self.message_filter is None or filter_admits(self, item, counters):
                                fn = admit(item, counters)
                                if fn is not None:
                                    run_inline(item, fn, self, counters)
                        else:
                            item.handle(None)
                    except Exception as exc:  # noqa: BLE001 - logged; no caller left waiting
                        dispatch_failed(item, exc)
                    except BaseException:  # noqa: BLE001, S110
                        # KeyboardInterrupt, SystemExit from a callee: its caller has it; the worker serves
                        # on, as a thread pool's worker does
                        pass
                    try:
                        item = get_nowait()
                    except queue.Empty:
                        break
                item = fn = None  # don't keep the last call (its arguments, result, object) alive while idle
                with lock:
                    self._idle += 1
        finally:
            tls.s.apartment = None
            self._worker_done()

    def _worker_done(self) -> None:
        with self._lock:
            self._live -= 1
        self._maybe_finish()

    # -- the loop for async methods --------------------------------------------------------------------

    def _loop_died(self, exc: BaseException) -> None:
        # the MTA lives on: the next async call starts a new loop (see _loop_port)
        pass

    def _loop_port(self) -> Any:
        host = self._loop
        if host is None or host.failure is not None:
            with self._lock:
                host = self._loop
                if host is None or host.failure is not None:
                    if host is not None:
                        self._dead_loops.append(host)
                    host = LoopHost(self, self.backend)
                    ready = Call(None, "start MTA loop", (), None, None, False, INF, 0, None)
                    self._loop = host
                    start_here = True
                else:
                    start_here = False
            if start_here:
                block_on_call(ready, lambda call: host.start_thread("aptrt-mta-loop", call))
        while host.port is None:  # another thread is starting it; it is up within moments
            threading.Event().wait(0.0005)
        return host.port

    # -- closing ---------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the MTA: refuse new calls, fail queued ones, let running sync calls finish, cancel running
        async calls, and join every thread. Idempotent; shielded from cancellation."""
        with anyio.CancelScope(shield=True):
            if not self._closed.is_set():
                await await_call(self._stop_call(), self._request_stop)
                self._finish()

    def close_blocking(self) -> None:
        """The blocking twin of :meth:`aclose`, for plain threads."""
        refuse_on_loop("close_blocking")
        if not self._closed.is_set():
            block_on_call(self._stop_call(), self._request_stop)
            self._finish()

    def _stop_call(self) -> Call:
        return Call(None, "close MTA", (), None, None, False, INF, 0, None)

    def _request_stop(self, waiter: Call) -> None:
        with self._lock:
            self.closing = True
            self._stop_waiters.append(waiter)
            workers = list(self._workers)
        for _ in workers:
            self._queue.put(_STOP)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        # Called when a worker exits and after a stop request: the last one to see everything down answers.
        with self._lock:
            if self._live > 0 or not self.closing:
                return
            loop = self._loop
            waiters, self._stop_waiters = self._stop_waiters, []
        if not waiters:
            return
        if loop is not None and loop.thread is not None and loop.thread.is_alive():
            # the loop answers the waiters once its thread has ended
            for waiter in waiters:
                loop.request_stop(waiter)
            return
        for waiter in waiters:
            waiter.deliver()

    def _finish(self) -> None:
        for thread in list(self._workers):
            if thread is not threading.current_thread():
                thread.join()
        for host in [*self._dead_loops, self._loop]:
            if host is not None:
                host.join()
        # fail anything queued after the workers left
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if type(item) is Call and item.phase != REPLY:
                item.fail(closed_error(self, item))
        self._release_imports()
        self.exports.close(DisconnectReason.SERVER_SHUTDOWN)
        self._closed.set()
