"""The inbox of one event-loop thread: a deque plus one wake-up per batch.

Producers (any thread) append to the deque, then try to take ``_armed`` without blocking. The producer
that takes it rings the doorbell (``loop.call_soon_threadsafe`` on asyncio, ``TrioToken.run_sync_soon``
on trio); every other producer sees the bell already rung and only appends. ``_drain`` runs on the loop,
pops everything, then releases ``_armed`` and checks the deque once more, so an item appended while it
was draining is never left behind. So a burst of N calls costs one wake-up, not N.

Why no lock around the deque: ``deque.append``/``popleft`` are atomic in CPython (one C call under the
GIL) and internally locked on free-threaded builds, and ``Lock.acquire(False)`` is an atomic
test-and-set on both. ``_rung`` spares most producers even that: it is True only while ``_armed`` is held
(set after taking it, cleared before releasing it), and a drain clears it before its last look at the
deque, so a producer that appended and then read True has its item seen by that look. That reasoning
needs sequentially consistent reads and writes, which the GIL gives; a free-threaded build never sets it.
``_closed`` is written once (False → True); a producer that appended and then
sees it set takes its item back, unless the sweeper already did (exactly one of them fails the item).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

import sniffio
import trio

from ._call import INF, REPLY, RUNNING, Call
from ._exceptions import DeadlineExceededError

if TYPE_CHECKING:
    from ._loophost import LoopHost

logger = logging.getLogger("aptrt")

_current_task: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = asyncio.current_task
if (
    getattr(asyncio.current_task, "__code__", None) is not None
    and type(getattr(asyncio.tasks, "_current_tasks", None)) is dict
):
    # Python < 3.12: asyncio.current_task is a Python function around this dict's ``get``; call the dict
    # directly (one frame less on every call: AsyncioPort.caller_deadline runs per call)
    _current_task = asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]
_weakref = weakref.ref
try:  # the fast path of AsyncioPort.caller_deadline reads anyio's task states (checked here, once)
    from anyio._backends._asyncio import CancelScope as _AsyncioCancelScope
    from anyio._backends._asyncio import _task_states

    if not {"_deadline", "_shield", "_cancel_called", "_parent_scope"} <= set(_AsyncioCancelScope.__slots__):
        raise ImportError("anyio's asyncio CancelScope changed")
    # WeakKeyDictionary.get is ``data.get(ref(key))``; calling that directly saves a Python frame
    _task_states_get: Callable[[Any], Any] | None = _task_states.data.get  # type: ignore[attr-defined]
except (ImportError, AttributeError):  # pragma: no cover - depends on the anyio version
    _task_states_get = None


#: Whether the GIL orders plain attribute reads and writes between threads (sequential consistency). Two
#: handshakes rely on it: the ``_rung`` hint of :meth:`Port.post` and the quiet replies of
#: :meth:`Port.begin`. A free-threaded build uses neither (it takes the lock, and posts every reply).
GIL_ENABLED: bool = getattr(sys, "_is_gil_enabled", lambda: True)()


def _trio_has_fast_deadline() -> bool:
    # the attributes TrioPort.caller_deadline walks; checked once, else the public API is used
    from trio._core._run import CancelScope as TrioCancelScope
    from trio._core._run import CancelStatus

    fields = {a.name for a in TrioCancelScope.__attrs_attrs__}
    status_fields = {a.name for a in CancelStatus.__attrs_attrs__}
    return {"_deadline", "_shield"} <= fields and {"_scope", "_parent", "effectively_cancelled"} <= status_fields


try:
    _TRIO_FAST_DEADLINE = _trio_has_fast_deadline()
except (ImportError, AttributeError):  # pragma: no cover - depends on the trio version
    _TRIO_FAST_DEADLINE = False


def _anyio_deadline() -> float:
    import anyio

    deadline = anyio.current_effective_deadline()
    if deadline == INF:
        return INF
    return time.monotonic() + (deadline - anyio.current_time())


class Message(Protocol):
    def handle(self, port: Port) -> None: ...


class Port(ABC):
    """The inbox of one event-loop thread (an STA, the main STA, or an MTA loop)."""

    backend: str = ""

    def __init__(self, host: LoopHost) -> None:
        self.host = host
        self.thread_id = threading.get_ident()
        self._queue: deque[Call | Message] = deque()
        self._armed = threading.Lock()
        #: a hint that ``_armed`` is held and a drain will look at the deque again (see the module doc)
        self._rung = False
        #: set once, by the owner, when the loop stops serving (before the final sweep)
        self._closed = False
        #: set once, by the owner, when requests must be failed instead of run (shutdown has begun)
        self.closing = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.host!r}>"

    # -- any thread ------------------------------------------------------------------------------------

    def post(self, item: Call | Message) -> bool:
        """Queue *item*; False if the loop no longer serves (the item was not queued)."""
        queue = self._queue
        queue.append(item)
        if not self._rung and self._armed.acquire(False):
            self._rung = GIL_ENABLED
            try:
                self._ring(self._drain)
            except Exception:  # noqa: BLE001  # the loop is gone (closed asyncio loop, finished trio run)
                self._closed = True
                self._rung = False
                self._armed.release()
        return not self._closed or self._taken_back(item)

    def _taken_back(self, item: Call | Message) -> bool:
        """The inbox closed after *item* was appended: take it back, unless the sweeper already has it
        (exactly one of the two fails it). True when the sweeper has it (it counts as accepted)."""
        try:
            self._queue.remove(item)
        except ValueError:
            return True
        return False

    def queued(self) -> list[Call]:
        """The requests waiting in this inbox (a snapshot)."""
        return [item for item in tuple(self._queue) if type(item) is Call and item.phase != REPLY]

    def queued_requests(self) -> int:
        """How many requests wait in this inbox (a snapshot, for statistics)."""
        return len(self.queued())

    # -- loop thread -----------------------------------------------------------------------------------

    @abstractmethod
    def _ring(self, drain: Callable[[], None]) -> None:
        """Make the loop run *drain* soon (any thread; never blocks)."""

    def _drain(self) -> None:
        queue = self._queue
        pop = queue.popleft
        dispatch = self.host.dispatch
        wake = self._wake
        while True:
            while queue:
                item = pop()
                # (the body of _handle, inlined: this is the hot path of every call and reply)
                try:
                    if type(item) is Call:
                        if item.phase == REPLY:
                            wake(item)
                        else:
                            dispatch(item, self)
                    else:
                        item.handle(self)  # type: ignore[union-attr]
                except Exception as exc:  # noqa: BLE001 - logged; the drain goes on
                    dispatch_failed(item, exc)
                except BaseException as exc:  # noqa: BLE001
                    # KeyboardInterrupt, SystemExit from a sync callee: the loop dies of it, raised in one
                    # of the loop's tasks (a drain callback must not raise: trio would call that an
                    # internal error); the rest of the batch fails as the loop closes
                    self.host.fatal(exc)
            self._rung = False
            self._armed.release()
            if not queue or not self._armed.acquire(False):
                return
            self._rung = GIL_ENABLED

    def _handle(self, item: Call | Message) -> None:
        """Handle one item: wake the caller of a reply, dispatch a request, or run a message."""
        try:
            if type(item) is Call:
                if item.phase == REPLY:
                    self._wake(item)
                else:
                    self.host.dispatch(item, self)
            else:
                item.handle(self)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - logged there
            dispatch_failed(item, exc)

    def close_and_sweep(self, fail: Callable[[Call], None]) -> None:
        """Stop accepting items and fail every request still queued (owner thread, after the loop stops)."""
        self._closed = True
        queue = self._queue
        while queue:
            try:
                item = queue.popleft()
            except IndexError:
                break
            if type(item) is Call and item.phase != REPLY:
                fail(item)

    @abstractmethod
    def _wake(self, call: Call) -> None:
        """The reply of *call* arrived: resume the task (or thread) that waits for it (loop thread)."""

    # -- caller side (loop thread, inside a task) ------------------------------------------------------

    @abstractmethod
    def send(self, call: Call, submit: Callable[[Call], None]) -> Awaitable[Any]:
        """Queue *call* with *submit* (which raises if the target refuses it) and return what to await
        for its reply (the hot path: no coroutine frame of its own). Loop thread, inside a task."""

    def begin(self, call: Call, submit: Callable[[Call], None]) -> None:
        """Queue *call* with *submit*, like :meth:`send`, for a handle that awaits its reply later
        (:func:`aptrt.begin`; then :meth:`reply_later`). Loop thread.

        Under the GIL the call leaves with no ``reply_port`` and no waiter: the callee then only marks it
        replied (``phase``), and most handles find the reply there when awaited, with nothing made to
        wait on and nothing posted back. A handle that must wait sets the waiter and ``reply_port`` and
        then reads ``phase``; the callee writes ``phase`` and then reads ``reply_port``. So either the
        handle sees the reply, or the callee sees the port and posts the reply to wake it (both may
        happen: the waiter ignores a second wake-up; and a callee that read no port but a fresh waiter
        calls its ``release``, a no-op). A window of calls so costs the caller's inbox one reply per batch.
        """
        if not GIL_ENABLED:
            call.waiter = self._later_waiter()
            call.reply_port = self
        submit(call)

    def reply_later(self, call: Call) -> Awaitable[None] | None:
        """What to await for the reply of a call queued with :meth:`begin`; None when it is here."""
        if call.phase == REPLY:
            return None
        if call.reply_port is None:
            call.waiter = self._later_waiter()
            call.reply_port = self  # from now on the callee posts the reply...
            if call.phase == REPLY:  # ...unless it replied before it could see the port
                return None
        return call.waiter  # type: ignore[no-any-return]

    def _later_waiter(self) -> Awaitable[None]:
        """A waiter for a reply that may arrive before anyone waits (loop thread)."""
        raise NotImplementedError(f"{type(self).__name__} does not serve aptrt.begin")

    async def call(self, call: Call, submit: Callable[[Call], None]) -> Any:
        """Queue *call* with *submit* (which raises if the target refuses it), wait for the reply, and
        return the result (or raise the callee's error).

        On cancellation the call is abandoned (its scope in the callee is cancelled, a late reply is
        dropped) and the cancellation propagates in the caller's own loop.
        """
        waiting = self.send(call, submit)
        try:
            await waiting
        except BaseException:
            if not call.abandoned:
                call.abandon()
            raise
        if call.error is not None and type(call.error) is DeadlineExceededError:
            await defer_to_own_deadline(self)
        return call.result()

    @abstractmethod
    def caller_deadline(self) -> float:
        """The running task's effective anyio deadline, on the monotonic clock (``INF`` when none)."""


def dispatch_failed(item: Call | Message, exc: Exception) -> None:
    """Handling *item* raised (a bug in aptrt, or a hostile argument that got past the checks): log it,
    and fail the call if it was a request, so its caller is not left waiting for a reply never sent."""
    logger.exception("aptrt: error while handling %r", item)
    if type(item) is Call and item.phase != REPLY:
        item.fail(exc)


class AsyncioPort(Port):
    backend = "asyncio"

    def __init__(self, host: LoopHost, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(host)
        self.loop = loop
        self._ring_threadsafe = loop.call_soon_threadsafe
        self._create_future = loop.create_future
        # call_soon_threadsafe would run the drain in a copy of the *producer's* context, leaking its
        # context variables (sniffio's "current async library" among them) into this loop's tasks
        self._context = contextvars.copy_context()
        # the drain runs outside any task, where sniffio cannot tell the library from the running task: name
        # it, or starting an async callee there fails on a loop not started by anyio (asyncio.run, Ray's)
        self._context.run(sniffio.current_async_library_cvar.set, "asyncio")

    def _ring(self, drain: Callable[[], None]) -> None:
        self._ring_threadsafe(drain, context=self._context)

    def _wake(self, call: Call) -> None:
        call.waiter.reply_arrived()

    def send(self, call: Call, submit: Callable[[Call], None]) -> Awaitable[Any]:
        waiter = ReplyWaiter(self.loop)
        call.waiter = waiter
        call.reply_port = self
        submit(call)
        return waiter

    def _later_waiter(self) -> Awaitable[None]:
        return LaterReplyWaiter(self.loop)

    def caller_deadline(self) -> float:
        if _task_states_get is None:  # anyio's internals changed: use the public, slower API
            return _anyio_deadline()
        task = _current_task(self.loop)
        state = _task_states_get(_weakref(task)) if task is not None else None
        if state is None:
            return INF
        # anyio's own effective-deadline walk (AsyncIOBackend.current_effective_deadline), minus the
        # backend lookup and WeakKeyDictionary wrapper; it runs on every call
        scope = state.cancel_scope
        deadline = INF
        while scope is not None:
            if scope._deadline < deadline:  # noqa: PLR1730 - min() is a call on the hot path
                deadline = scope._deadline
            if scope._cancel_called:
                deadline = -INF
                break
            if scope._shield:
                break
            scope = scope._parent_scope
        if deadline == INF:
            return INF
        return time.monotonic() + (deadline - self.loop.time())


_PENDING, _DONE, _CANCELLED = 0, 1, 2


class ReplyWaiter:
    """What an asyncio caller awaits for a reply: a minimal asyncio future (the protocol Task speaks:
    ``_asyncio_future_blocking``, ``get_loop``, ``add_done_callback``, ``result``, ``cancel``).

    Unlike ``asyncio.Future.set_result``, which schedules the waiting task's wake-up as one more loop
    callback, :meth:`reply_arrived` resumes the task at once, from the inbox's drain (a loop callback,
    outside any task, so stepping a task there is what the loop itself would do next). That saves a
    Future and a Handle per reply on the hottest path. Cancellation goes through the loop as usual.
    Loop thread only.
    """

    __slots__ = ("_asyncio_future_blocking", "_callback", "_context", "_loop", "_message", "_state")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._state = _PENDING
        self._callback: Callable[[ReplyWaiter], object] | None = None
        self._context: contextvars.Context | None = None
        self._message: str | None = None
        self._asyncio_future_blocking = False

    def __await__(self) -> Generator[ReplyWaiter, None, None]:
        if self._state == _PENDING:
            self._asyncio_future_blocking = True
            yield self
        if self._state != _DONE:
            self.result()  # raises (cancelled)

    __iter__ = __await__

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def add_done_callback(
        self, callback: Callable[[ReplyWaiter], object], *, context: contextvars.Context | None = None
    ) -> None:
        if self._state != _PENDING:
            self._loop.call_soon(callback, self, context=context)
            return
        self._callback = callback
        self._context = context

    def remove_done_callback(self, callback: Callable[[ReplyWaiter], object]) -> int:
        if self._callback is callback:
            self._callback = None
            return 1
        return 0

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> None:
        if self._state == _CANCELLED:
            raise asyncio.CancelledError(self._message) if self._message is not None else asyncio.CancelledError()
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("the reply has not arrived")

    def exception(self) -> BaseException | None:
        self.result()
        return None

    def cancel(self, msg: str | None = None) -> bool:
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        self._message = msg
        callback, self._callback = self._callback, None
        if callback is not None:
            self._loop.call_soon(callback, self, context=self._context)
        return True

    def reply_arrived(self) -> None:
        if self._state != _PENDING:
            return  # the caller was cancelled first: the reply is dropped
        self._state = _DONE
        callback, self._callback = self._callback, None
        if callback is not None:
            context = self._context
            if context is None:
                callback(self)
            else:
                context.run(callback, self)


class TrioPort(Port):
    backend = "trio"

    def __init__(self, host: LoopHost, token: trio.lowlevel.TrioToken) -> None:
        super().__init__(host)
        self._run_sync_soon = token.run_sync_soon

    def _ring(self, drain: Callable[[], None]) -> None:
        self._run_sync_soon(drain)

    def _wake(self, call: Call) -> None:
        if not call.abandoned:
            waiter = call.waiter
            if type(waiter) is LaterWaiter:
                waiter.reply_arrived()
            else:
                trio.lowlevel.reschedule(waiter)

    def _later_waiter(self) -> Awaitable[None]:
        return LaterWaiter()

    def send(self, call: Call, submit: Callable[[Call], None]) -> Awaitable[Any]:
        call.waiter = trio.lowlevel.current_task()
        call.reply_port = self
        submit(call)

        def abort(_: Any) -> trio.lowlevel.Abort:
            call.abandon()
            return trio.lowlevel.Abort.SUCCEEDED

        return trio.lowlevel.wait_task_rescheduled(abort)  # noqa: ASYNC105 - the caller awaits it

    def caller_deadline(self) -> float:
        if not _TRIO_FAST_DEADLINE:
            deadline = trio.current_effective_deadline()
        else:
            # trio's CancelStatus.effective_deadline(), iterative: the public one recurses per scope
            status: Any = trio.lowlevel.current_task()._cancel_status
            if status.effectively_cancelled:
                return -INF
            deadline = INF
            while status is not None:
                scope = status._scope
                if scope._deadline < deadline:  # noqa: PLR1730 - min() is a call on the hot path
                    deadline = scope._deadline
                if scope._shield:
                    break
                status = status._parent
        if deadline == INF:
            return INF
        return time.monotonic() + (deadline - trio.current_time())


class LaterReplyWaiter(ReplyWaiter):
    """The :class:`ReplyWaiter` of a call started with :func:`aptrt.begin`. Its task usually keeps a
    window of such calls: resuming it at each reply would step it once per reply (it would find the next
    reply not yet drained and suspend again). So the task is resumed after the drain, as a Future
    resumes it, and then takes every reply of the batch without suspending."""

    __slots__ = ()

    def release(self) -> None:
        """The callee replied before the handle was awaited (see :meth:`Port.begin`): nothing to wake.
        (Called on the callee's thread, in place of a blocking caller's lock.)"""

    def reply_arrived(self) -> None:
        if self._state != _PENDING:
            return
        self._state = _DONE
        callback, self._callback = self._callback, None
        if callback is not None:
            self._loop.call_soon(callback, self, context=self._context)


class LaterWaiter:
    """What a trio caller awaits for the reply of a call it may await only later (:func:`aptrt.begin`):
    the reply can arrive first, when no task is blocked to reschedule. Loop thread only."""

    __slots__ = ("_arrived", "_task")

    def __init__(self) -> None:
        self._arrived = False
        self._task: trio.lowlevel.Task | None = None

    def release(self) -> None:
        """The callee replied before the handle was awaited (see :meth:`Port.begin`): nothing to wake.
        (Called on the callee's thread, in place of a blocking caller's lock.)"""

    def reply_arrived(self) -> None:
        self._arrived = True
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def __await__(self) -> Generator[Any, None, None]:
        if self._arrived:
            return
        self._task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        yield from trio.lowlevel.wait_task_rescheduled(abort).__await__()  # noqa: ASYNC105 - this is the await


async def defer_to_own_deadline(port: Port) -> None:
    """The callee stopped at the caller's deadline, possibly a hair before the caller's clock says so.
    Wait for the caller's own scope to fire, so ``move_on_after`` stays quiet and ``fail_after`` raises
    as it always does; only a caller with no deadline left gets the callee's TimeoutError."""
    import anyio

    deadline = port.caller_deadline()
    if deadline == INF:
        return
    with anyio.move_on_after(max(0.0, deadline - time.monotonic()) + 1.0):
        await anyio.sleep_forever()


def make_port(host: LoopHost) -> Port:
    """An inbox for the event loop running on the current thread (asyncio, uvloop or trio)."""
    import sniffio

    library = sniffio.current_async_library()
    if library == "trio":
        return TrioPort(host, trio.lowlevel.current_trio_token())
    if library == "asyncio":
        return AsyncioPort(host, asyncio.get_running_loop())
    raise RuntimeError(f"aptrt supports asyncio and trio event loops, not {library!r}")


__all__ = ["RUNNING", "AsyncioPort", "Port", "TrioPort", "make_port"]
