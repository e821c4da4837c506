"""An event loop that serves an apartment: its inbox, its task group, its thread.

A loop host either owns a thread (an STA, the MTA's loop) that runs ``anyio.run`` with the chosen
backend, or adopts the loop already running on the current thread (the main STA).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ._call import REPLY, RUNNING, Call
from ._exceptions import DeadlineExceededError, NotSupportedError, WouldDeadlockError
from ._execute import (
    Counters,
    admit,
    closed_error,
    died_error,
    filter_admits,
    release_slot,
    run_inline,
    run_task,
)
from ._port import Port, make_port
from ._reentrancy import Gate
from ._threadstate import tls

if TYPE_CHECKING:
    from ._apartment import Apartment

logger = logging.getLogger("aptrt")

BACKENDS = ("asyncio", "uvloop", "trio")


def backend_args(backend: str) -> tuple[str, dict[str, Any]]:
    """``anyio.run`` arguments for one of :data:`BACKENDS`."""
    if backend == "asyncio":
        return "asyncio", {}
    if backend in ("uvloop", "asyncio+uvloop"):
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise NotSupportedError("uvloop is not installed (pip install 'aptrt[uvloop]')") from None
        return "asyncio", {"use_uvloop": True}
    if backend == "trio":
        return "trio", {}
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _uncount(call: Call) -> None:
    """A call admitted into its context will not run after all: it is no longer outstanding there."""
    if call.counted:
        call.counted = False
        call.context.exit(call)  # type: ignore[union-attr]


async def _reraise(exc: BaseException) -> None:
    raise exc


def _unwrap(exc: BaseException) -> BaseException:
    """The one exception inside a (nest of) single-exception groups, as task groups raise it."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class Message(ABC):
    """A control message for a loop's inbox."""

    __slots__ = ()

    @abstractmethod
    def handle(self, port: Port) -> None:
        """Act on the message, on the loop's thread."""


class StopRequest(Message):
    __slots__ = ()

    def handle(self, port: Port) -> None:
        host = port.host
        if host._stop is not None:
            host._stop.set()


class FlushReleases(Message):
    """Give back the stub references that garbage collection dropped (see ``Proxy.__del__``)."""

    __slots__ = ("apartment",)

    def __init__(self, apartment: Apartment) -> None:
        self.apartment = apartment

    def handle(self, port: Port | None) -> None:
        self.apartment.exports.flush_releases()


class LoopHost:
    """One event loop serving *apartment*: dispatches its inbox, runs async callees as tasks."""

    def __init__(self, apartment: Apartment, backend: str) -> None:
        self.apartment = apartment
        self.backend = backend
        self.counters = Counters()
        self.port: Port | None = None
        self.thread: threading.Thread | None = None
        self._tg: TaskGroup | None = None
        self._stop: anyio.Event | None = None
        # guarded by _lock: whether the thread has finished, and who waits for that
        self._lock = threading.Lock()
        self._finished = False
        self._ready = False
        self._stop_waiters: list[Call] = []
        self._ready_waiters: list[Call] = []
        #: what killed the loop (a callee's KeyboardInterrupt or SystemExit, say), else None
        self.failure: BaseException | None = None

    def __repr__(self) -> str:
        return f"<LoopHost {self.apartment.name!r} ({self.backend})>"

    # -- dispatch (loop thread) ------------------------------------------------------------------------

    def dispatch(self, call: Call, port: Port) -> None:
        apartment = self.apartment
        if call.reserved:
            release_slot(apartment, call)
        if port.closing:
            call.fail(closed_error(apartment, call, self.failure))
            return
        if apartment.message_filter is not None and not filter_admits(apartment, call, self.counters):
            return
        fn = admit(call, self.counters)
        if fn is None:
            return
        stub = call.stub
        if apartment.gate is not None or (stub is not None and stub.info.reentrancy is not None):
            gate = apartment.gate_for(call)
            if gate is not None:
                if not gate.admits(call):
                    self._hold(call, fn, gate)
                    return
                self._take_gate(call, gate)
        if call.is_async:
            self._run(call, fn, port)
        else:  # the common case, inline: a sync method runs now, on this thread
            run_inline(call, fn, apartment, self.counters)
            if call.gate is not None:
                self._leave_gate(call, port)

    def _run(self, call: Call, fn: Any, port: Port) -> None:
        if call.is_async:
            call.phase = RUNNING
            call.runner = port
            assert self._tg is not None
            if call.gate is None:
                self._tg.start_soon(run_task, call, fn, self.apartment, self.counters, port)
            else:
                self._tg.start_soon(self._run_gated, call, fn, port)
        else:
            run_inline(call, fn, self.apartment, self.counters)
            if call.gate is not None:
                self._leave_gate(call, port)

    async def _run_gated(self, call: Call, fn: Any, port: Port) -> None:
        try:
            await run_task(call, fn, self.apartment, self.counters, port)
        finally:
            self._leave_gate(call, port)

    # -- reentrancy gates (loop thread) ----------------------------------------------------------------

    def _take_gate(self, call: Call, gate: Gate) -> None:
        gate.take(call)
        call.gate = gate
        self.apartment.runtime.wait_for.entered(call.causality, gate)

    def _hold(self, call: Call, fn: Any, gate: Gate) -> None:
        try:
            self.apartment.runtime.wait_for.check_and_wait(call, gate)
        except WouldDeadlockError as exc:
            self.counters.failed += 1
            _uncount(call)
            call.fail(exc)
            return
        gate.pending.append((call, fn))

    def _leave_gate(self, call: Call, port: Port) -> None:
        gate = call.gate
        assert gate is not None
        call.gate = None
        gate.give_back(call)
        graph = self.apartment.runtime.wait_for
        graph.left(call.causality, gate)
        pending = gate.pending
        while pending and gate.admits(pending[0][0]):
            held, fn = pending.popleft()
            graph.done_waiting(held, gate)
            if port.closing:  # the loop is closing (or dying): what waited its turn will not run
                self.counters.failed += 1
                _uncount(held)
                held.fail(closed_error(self.apartment, held, self.failure))
                continue
            if held.expired():
                self.counters.expired += 1
                _uncount(held)
                held.fail(DeadlineExceededError(f"the deadline of {held.name!r} passed while it waited its turn"))
                continue
            if held.abandoned:
                self.counters.cancelled += 1
                _uncount(held)
                continue
            self._take_gate(held, gate)
            self._run(held, fn, port)

    def held_calls(self) -> list[Call]:
        gates = [g for g in (self.apartment.gate, *self.apartment.object_gates.values()) if g is not None]
        return [call for gate in gates for call, _ in list(gate.pending)]

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start *fn* as a task of this loop (loop thread only)."""
        assert self._tg is not None
        self._tg.start_soon(fn, *args)

    # -- dying ----------------------------------------------------------------------------------------

    def note_failure(self, exc: BaseException) -> None:
        """The loop is dying of *exc* (loop thread): refuse calls from now on."""
        if self.failure is None:
            self.failure = exc
        port = self.port
        if port is not None:
            port.closing = True
        self.apartment._loop_died(exc)

    def fatal(self, exc: BaseException) -> None:
        """A callee raised *exc* (KeyboardInterrupt, SystemExit; loop thread): the loop dies of it.

        An apartment's own loop stops (its calls fail with :class:`DisconnectedError`, the death is
        logged); the app's loop (the main STA) gets *exc* raised in one of its tasks, as if its own code
        had raised it. Never raised from the drain itself: trio calls that an internal error.
        """
        self.note_failure(exc)
        if self._stop is not None:  # a loop on its own thread
            self._stop.set()
        elif self._tg is not None:  # the app's loop
            self._tg.start_soon(_reraise, exc)

    def _fail_leftovers(self) -> None:
        """The loop has ended (its thread): fail every call it can no longer answer. Normally there is
        none; after a death, tasks the loop never finished and calls held at reentrancy gates."""
        apartment = self.apartment
        graph = apartment.runtime.wait_for
        for gate in (apartment.gate, *apartment.object_gates.values()):
            while gate is not None and gate.pending:
                call, _ = gate.pending.popleft()
                graph.done_waiting(call, gate)
                _uncount(call)
                call.fail(closed_error(apartment, call, self.failure))
        for call in list(self.counters.running_calls):
            if call.phase != REPLY:
                call.fail(died_error(apartment, call, self.failure))
        self.counters.running_calls.clear()

    # -- owning a thread -------------------------------------------------------------------------------

    def start_thread(self, thread_name: str, ready: Call) -> None:
        """Start the loop's thread; *ready* is answered once the loop serves (or with the startup error)."""
        backend, options = backend_args(self.backend)
        self.thread = threading.Thread(
            target=self._thread_main, args=(backend, options, ready), name=thread_name, daemon=True
        )
        self.thread.start()

    def _thread_main(self, backend: str, options: dict[str, Any], ready: Call) -> None:
        try:
            anyio.run(self._serve, ready, backend=backend, backend_options=options)
            if self.failure is not None:
                self._log_death(self.failure)
        except BaseException as exc:  # noqa: BLE001 - to the starter, or logged: the thread ends here
            if ready.phase != REPLY:
                ready.fail(exc)
            else:
                self.note_failure(self.failure or _unwrap(exc))
                self._log_death(exc)
        finally:
            port = self.port
            if port is not None:
                port.closing = True
                self._shutdown_port(port)
            self._fail_leftovers()
            with self._lock:
                self._finished = True
                waiters, self._stop_waiters = self._stop_waiters, []
                waiters += self._ready_waiters
                self._ready_waiters = []
            for waiter in waiters:
                waiter.deliver()

    def _log_death(self, exc: BaseException) -> None:
        logger.error(
            "aptrt: the event loop of apartment %r died of %r; its calls fail with DisconnectedError",
            self.apartment.name,
            self.failure,
            exc_info=exc,
        )

    async def _serve(self, ready: Call) -> None:
        port = self.port = make_port(self)
        tls.s.apartment = self.apartment
        tls.s.port = port
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._stop = anyio.Event()
                ready.deliver()
                self._mark_ready()
                await self._stop.wait()
                port.closing = True
                tg.cancel_scope.cancel()
        finally:
            self._shutdown_port(port)
            tls.s.apartment = None
            tls.s.port = None

    def _shutdown_port(self, port: Port) -> None:
        apartment = self.apartment
        port.close_and_sweep(lambda call: call.fail(closed_error(apartment, call, self.failure)))

    def _mark_ready(self) -> None:
        with self._lock:
            self._ready = True
            waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.deliver()

    def when_ready(self, waiter: Call) -> None:
        """Answer *waiter* once the loop serves (at once if it already does, or if it has finished)."""
        with self._lock:
            if not (self._ready or self._finished):
                self._ready_waiters.append(waiter)
                return
        waiter.deliver()

    def request_stop(self, waiter: Call | None) -> None:
        """Ask the loop to stop (any thread); *waiter* is answered once the thread has finished."""
        port = self.port
        if port is not None:
            port.closing = True
        with self._lock:
            if waiter is not None:
                if self._finished:
                    waiter.deliver()
                else:
                    self._stop_waiters.append(waiter)
        if port is not None:
            port.post(StopRequest())

    def join(self) -> None:
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # -- adopting the current loop ---------------------------------------------------------------------

    async def adopt(self, tg: TaskGroup) -> None:
        """Serve the loop running on this thread, spawning async callees in *tg*."""
        self.port = make_port(self)
        self._tg = tg
        self.thread = threading.current_thread()

    def abandon_adopted(self) -> None:
        """Stop serving the adopted loop: fail what is still queued (on the loop's thread)."""
        port = self.port
        if port is not None:
            port.closing = True
            self._shutdown_port(port)
        self._fail_leftovers()
