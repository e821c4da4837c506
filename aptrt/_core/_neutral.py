"""The neutral apartment: objects that run on whichever thread calls them, still behind a proxy."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import sniffio

from ._apartment import Apartment, ApartmentKind, ApartmentStatistics
from ._call import INF, RUNNING, Call
from ._exceptions import (
    ApartmentClosedError,
    CallCancelledError,
    DeadlineExceededError,
    DisconnectReason,
    NotSupportedError,
)
from ._execute import Counters, admit, run_inline, run_task
from ._threadstate import tls

if TYPE_CHECKING:
    from ._runtime import Runtime


class NeutralApartment(Apartment):
    """The runtime's neutral apartment (``rt.neutral``, COM's NA).

    A call to a neutral object runs on the caller's thread, with no thread switch: sync methods inline,
    async methods as a task of the caller's own loop. Proxies held by neutral objects may be used from
    any thread. Counters are guarded by a lock, since any thread may run neutral code.
    """

    kind = ApartmentKind.NEUTRAL

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime, "NA")
        self._lock = threading.Lock()
        # one Counters per thread that ran neutral code (each written only by its thread), summed on read
        self._local = threading.local()
        self._all_counters: list[Counters] = []

    #: any thread may run neutral code, so proxies held by neutral objects work from any thread
    accepts_any_thread = True

    def submit(self, call: Call) -> None:
        if self.closing:
            raise ApartmentClosedError(
                f"the neutral apartment is closed; {call.name!r} was not run", reason=DisconnectReason.SERVER_SHUTDOWN
            )
        if self.exports._pending:  # references dropped by garbage collection (no thread to nudge)
            self.exports.flush_releases()
        counters = self._thread_counters()
        fn = admit(call, counters)
        if fn is not None:
            port = tls.s.port
            if call.is_async and port is not None:
                call.runner = port
                call.phase = RUNNING
                port.host.spawn(run_task, call, fn, self, counters, port)
            else:
                # a thread running neutral code is in the neutral apartment for that time (as in COM)
                previous = tls.s.apartment
                tls.s.apartment = self
                try:
                    if call.is_async:  # on a short-lived loop of its own, as cancellable as a task
                        run_inline(call, functools.partial(_run_on_own_loop, call, fn), self, counters)
                    else:
                        run_inline(call, fn, self, counters)
                finally:
                    tls.s.apartment = previous

    def _thread_counters(self) -> Counters:
        try:
            counters: Counters = self._local.counters
        except AttributeError:
            counters = self._local.counters = Counters()
            with self._lock:
                self._all_counters.append(counters)
        return counters

    def statistics(self) -> ApartmentStatistics:
        self.exports.flush_releases()
        with self._lock:
            counters = list(self._all_counters)
        return self._stats(0, counters)

    async def aclose(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        self.closing = True
        self._release_imports()
        self.exports.close(DisconnectReason.SERVER_SHUTDOWN)


def _run_on_own_loop(call: Call, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run the async neutral callee *fn* on a loop of its own (the calling thread runs none aptrt serves)."""
    try:
        running = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return anyio.run(_await, call, fn, args, kwargs, backend="asyncio")
    raise NotSupportedError(
        f"{call.name!r} is an async method of a neutral object, awaited from a {running} loop that aptrt does "
        "not serve: neutral code runs on its caller's thread, and this one's loop is not an apartment's. "
        "Enter the runtime from that loop (async with aptrt.Runtime()), or call from an apartment"
    )


class _OwnLoop:
    """The runner of a neutral callee on its own loop: takes cancel requests from any thread."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def post(self, item: Any) -> bool:
        try:
            self._loop.call_soon_threadsafe(item.handle, None)
        except RuntimeError:  # the loop has finished: so has the callee
            return False
        return True


async def _await(call: Call, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The callee in a cancel scope under the caller's deadline, which ``call.cancel()`` (a context
    disconnecting with ``cancel_outstanding``) cancels as it would a task's."""
    deadline = call.deadline
    if deadline != INF:
        deadline = anyio.current_time() + (deadline - time.monotonic())  # on this loop's clock
    scope = anyio.CancelScope(deadline=deadline)
    call.scope = scope
    call.runner = _OwnLoop(asyncio.get_running_loop())
    if call.abandoned or call.cancel_reason is not None:
        scope.cancel()
    try:
        with scope:
            return await fn(*args, **kwargs)
    finally:
        call.scope = None
    if call.cancel_reason is not None:
        raise CallCancelledError(reason=call.cancel_reason)
    if call.abandoned:
        raise CallCancelledError(reason="the caller cancelled the call")
    raise DeadlineExceededError(f"{call.name!r} ran past its caller's deadline")
