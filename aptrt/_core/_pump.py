"""Pumping STAs: a plain thread that is an STA and serves incoming calls only while it waits.

This is COM's own STA, for code written against ``aptrt.com``: a thread calls
``CoInitializeEx(COINIT_APARTMENTTHREADED)`` and keeps running its own code; calls to its objects queue
in its inbox and run on that thread whenever it waits inside a COM call (a blocking outgoing call,
``CoWaitForMultipleHandles``, ``CoDisconnectContext``) or pumps explicitly. So STA → STA →
back-to-the-first-STA callbacks work as on Windows. A thread that never waits never serves: as in COM,
its callers wait.

The inbox is a :class:`Port` whose doorbell is a ``threading.Event`` instead of an event loop's wake-up;
only the owning thread drains it, from inside :meth:`PumpPort.pump_until`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from ._call import INF, RUNNING, Call
from ._exceptions import DisconnectReason, WrongThreadError
from ._execute import closed_error, run_inline
from ._loophost import LoopHost
from ._port import Message, Port
from ._sta import STA
from ._threadstate import tls

if TYPE_CHECKING:
    from ._runtime import Runtime

_DONE = object()


class PumpPort(Port):
    """An inbox drained by its owning thread while it waits (see module docstring).

    COM's modal loops nest: A calls B, B calls back into A while A waits, A's callback calls B again.
    So unlike an event loop's inbox, this one has no one-wake-up-per-batch flag (a batch being served
    would hold it while a call inside it waits, and that call's reply would never ring): every post sets
    the doorbell (an ``Event.set``), and draining takes no lock. Only the owning thread drains; a nested
    drain simply takes the items the outer one has not reached yet.
    """

    backend = "pump"

    def __init__(self, host: LoopHost) -> None:
        super().__init__(host)
        self._bell = threading.Event()

    def post(self, item: Call | Message) -> bool:
        self._queue.append(item)
        self._bell.set()
        return not self._closed or self._taken_back(item)

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            try:
                item = queue.popleft()
            except IndexError:
                return
            self._handle(item)

    def _ring(self, drain: Callable[[], None]) -> None:
        self._bell.set()  # (post rings by itself; this serves Port's contract)

    def _wake(self, call: Call) -> None:
        call.waiter = _DONE

    def pump_until(self, done: Callable[[], bool], deadline: float = INF, *, poll: float | None = None) -> bool:
        """Serve incoming calls on this (the owning) thread until ``done()`` or the monotonic *deadline*.

        :param poll: also re-check ``done()`` this often (for conditions nothing rings the bell for)
        :return: whether ``done()`` became true
        """
        bell = self._bell
        while True:
            bell.clear()  # before looking at the queue: a post after this rings again
            if self._queue:
                self._drain()
            if done():
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            wait = None if deadline == INF else deadline - now
            if poll is not None:
                wait = poll if wait is None else min(wait, poll)
            bell.wait(wait)

    def pump(self) -> None:
        """Serve whatever is queued now, without waiting (a message loop's PeekMessage pass)."""
        self.pump_until(lambda: True)

    def send(self, call: Call, submit: Callable[[Call], None]) -> Awaitable[Any]:
        raise WrongThreadError("a pumping STA has no event loop: use blocking calls")

    def begin(self, call: Call, submit: Callable[[Call], None]) -> None:
        self.send(call, submit)

    def caller_deadline(self) -> float:
        return INF


class PumpHost(LoopHost):
    """Dispatches a pumping STA's calls on its own thread; async methods run in a short-lived loop."""

    def _run(self, call: Call, fn: Any, port: Port) -> None:
        if call.is_async:
            call.phase = RUNNING

            def run_coroutine(*args: Any, **kwargs: Any) -> Any:
                return anyio.run(functools.partial(fn, *args, **kwargs))

            run_inline(call, run_coroutine, self.apartment, self.counters)
        else:
            run_inline(call, fn, self.apartment, self.counters)
        if call.gate is not None:
            self._leave_gate(call, port)


class PumpSTA(STA):
    """An STA owned by a plain thread that pumps while it waits in COM calls (``aptrt.com``)."""

    def __init__(self, runtime: Runtime, name: str, *, main: bool = False) -> None:
        super().__init__(runtime, name, "pump", main=main)
        self._host = PumpHost(self, "pump")
        self.owner = threading.current_thread()

    @property
    def port(self) -> PumpPort:
        port = self._host.port
        assert isinstance(port, PumpPort)
        return port

    def attach(self) -> None:
        """Make the current thread this STA's thread."""
        port = PumpPort(self._host)
        self._host.port = port
        self._host.thread = threading.current_thread()
        tls.s.apartment = self
        tls.s.pump = port

    def close_here(self) -> None:
        """Tear the apartment down (on its own thread, at the last CoUninitialize): queued calls fail,
        registrations are revoked, proxies it holds are released, its objects are disconnected."""
        self.closing = True
        port = self._host.port
        if port is not None:
            port.closing = True
            port.close_and_sweep(lambda call: call.fail(closed_error(self, call)))
        self._release_imports()
        self.exports.close(DisconnectReason.SERVER_SHUTDOWN)
        self._closed.set()
        self.runtime._forget(self)
        if tls.s.apartment is self:
            tls.s.apartment = None
            tls.s.pump = None

    async def aclose(self) -> None:
        self.close_blocking()

    def close_blocking(self) -> None:
        if not self.closed:
            self.close_here()
