"""Single-threaded apartments: one thread, one event loop, one inbox."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from ._apartment import Apartment, ApartmentKind, ApartmentStatistics
from ._call import INF, Call
from ._exceptions import ApartmentClosedError, DisconnectReason, WouldDeadlockError
from ._invoke import await_call, block_on_call, refuse_on_loop
from ._loophost import FlushReleases, LoopHost
from ._port import AsyncioPort
from ._threadstate import tls

if TYPE_CHECKING:
    from ._runtime import Runtime


class STA(Apartment):
    """A single-threaded apartment: objects created here run only on its thread, one call at a time
    (sync methods) or interleaved at ``await`` points (async methods).

    Start one with ``await rt.start_sta(name=..., backend=...)`` or ``async with rt.open_sta(...)``;
    the main STA (``rt.main_sta``) is the loop that entered ``async with aptrt.Runtime()``.
    """

    def __init__(self, runtime: Runtime, name: str, backend: str, *, main: bool = False) -> None:
        super().__init__(runtime, name)
        self.kind = ApartmentKind.MAIN_STA if main else ApartmentKind.STA
        self.backend = backend
        self._host = LoopHost(self, backend)
        self._closed = threading.Event()

    @property
    def thread(self) -> threading.Thread | None:
        """The apartment's thread."""
        return self._host.thread

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- any thread ------------------------------------------------------------------------------------

    def submit(self, call: Call) -> None:
        if self.bound is not None and not self.closing:
            self.bound.reserve(call, self.name)
        port = self._host.port
        if self.closing or port is None or not port.post(call):
            if self.failure is not None:
                raise ApartmentClosedError(
                    f"apartment {self.name!r} died ({self.failure!r} ended its event loop); {call.name!r} was not run",
                    reason=DisconnectReason.APARTMENT_DIED,
                )
            raise ApartmentClosedError(
                f"apartment {self.name!r} is closed; {call.name!r} was not run",
                reason=DisconnectReason.SERVER_SHUTDOWN,
            )

    def _nudge(self) -> None:
        port = self._host.port
        if port is None:
            return
        if isinstance(port, AsyncioPort) and threading.get_ident() == port.thread_id:
            # on the loop's own thread (a proxy dropped by its home's code): no self-pipe write needed
            port.loop.call_soon(self.exports.flush_releases, context=port._context)
        else:
            port.post(FlushReleases(self))

    def statistics(self) -> ApartmentStatistics:
        self.exports.flush_releases()
        port = self._host.port
        return self._stats(port.queued_requests() if port is not None else 0, [self._host.counters])

    def queued_calls(self) -> list[Call]:
        port = self._host.port
        return port.queued() if port is not None else []

    def running_calls(self) -> list[Call]:
        return list(self._host.counters.running_calls) + self._host.held_calls()

    # -- life cycle ------------------------------------------------------------------------------------

    def _start_call(self) -> Call:
        return Call(None, f"start {self.name}", (), None, None, False, INF, 0, None)

    async def _start(self) -> None:
        with anyio.CancelScope(shield=True):  # starting is quick, and a half-started STA would leak
            await await_call(self._start_call(), lambda ready: self._host.start_thread(f"aptrt-sta-{self.name}", ready))

    def _start_blocking(self) -> None:
        block_on_call(self._start_call(), lambda ready: self._host.start_thread(f"aptrt-sta-{self.name}", ready))

    async def _started_event(self) -> None:
        """Wait until the STA serves (another task may be starting it)."""
        with anyio.CancelScope(shield=True):
            await await_call(self._start_call(), self._host.when_ready)

    def _wait_started(self) -> None:
        block_on_call(self._start_call(), self._host.when_ready)

    async def _adopt(self, tg: TaskGroup) -> None:
        await self._host.adopt(tg)
        tls.s.apartment = self
        tls.s.port = self._host.port

    def _begin_close(self) -> bool:
        if self.kind is ApartmentKind.MAIN_STA:
            raise RuntimeError("the main STA closes with its runtime (leave `async with aptrt.Runtime()`)")
        if tls.s.apartment is self:
            raise WouldDeadlockError(f"apartment {self.name!r} cannot close itself from its own thread and wait")
        first = not self.closing
        self.closing = True
        return first

    async def aclose(self) -> None:
        """Close the apartment: refuse new calls, fail every queued call with :class:`DisconnectedError`,
        cancel running async calls (their callers get :class:`DisconnectedError`), disconnect its objects
        and join its thread. Idempotent; shielded from cancellation (it always finishes)."""
        self._begin_close()
        with anyio.CancelScope(shield=True):
            if not self._closed.is_set():
                await await_call(self._stop_call(), self._host.request_stop)
                self._finish_close()

    def close_blocking(self) -> None:
        """The blocking twin of :meth:`aclose`, for plain threads.

        :raises WrongThreadError: called from an event loop (it would block it; await aclose instead)
        """
        refuse_on_loop("close_blocking")
        self._begin_close()
        if not self._closed.is_set():
            block_on_call(self._stop_call(), self._host.request_stop)
            self._finish_close()

    def _stop_call(self) -> Call:
        return Call(None, f"close {self.name}", (), None, None, False, INF, 0, None)

    def _finish_close(self) -> None:
        self._host.join()
        self._release_imports()
        self.exports.close(DisconnectReason.SERVER_SHUTDOWN)
        self._closed.set()
        self.runtime._forget(self)

    def _close_adopted(self) -> None:
        """Main STA: stop serving the runtime's loop (on its thread, as the runtime exits)."""
        self.closing = True
        self._host.abandon_adopted()
        self._release_imports()
        self.exports.close(DisconnectReason.SERVER_SHUTDOWN)
        self._closed.set()
        tls.s.apartment = None
        tls.s.port = None

    def _cancel_adopted_tasks(self) -> None:
        self.closing = True
        port = self._host.port
        if port is not None:
            port.closing = True
