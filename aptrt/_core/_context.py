"""Contexts: groups of objects inside an apartment that can be disconnected together.

Every apartment has a default context. ``apartment.create_context()`` makes a disconnectable one;
``await ctx.run(fn, *args)`` enters it (IContextCallback::ContextCallback), and objects exported while
code runs inside it, or made by class factories registered inside it, belong to it.

``await ctx.disconnect(timeout)`` is CoDisconnectContext as a cancellation scope that awaits outstanding
calls: from its first instant the context refuses new calls (``RPC_E_DISCONNECTED``); it then waits for
the calls already running; once they are done every object of the context is disconnected.

Threads: ``state``, ``outstanding``, ``_running``, ``_chains`` and ``_waiters`` are guarded by ``_lock``
(the calls of an MTA context run on several threads; the disconnecting code may run anywhere). The
default context keeps no books at all: it cannot be disconnected, so its calls skip the lock.
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._call import INF, Call
from ._exceptions import (
    DisconnectReason,
    InvalidArgumentError,
    NotSupportedError,
    RPCTimeoutError,
    WouldDeadlockError,
)
from ._threadstate import current_call, tls
from ._validate import check_seconds

if TYPE_CHECKING:
    from ._apartment import Apartment

T = TypeVar("T")

_tokens = itertools.count(1)

#: the context an async task runs in (set per task); sync code running inline uses ``tls.s.context``
context_var: ContextVar[Context | None] = ContextVar("aptrt_context", default=None)


class ContextState(enum.Enum):
    OPEN = "open"
    #: refusing new calls, waiting for outstanding ones
    DISCONNECTING = "disconnecting"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class ContextStatistics:
    """A snapshot of a context (from :meth:`Context.statistics`)."""

    token: int
    apartment: str
    default: bool
    state: ContextState
    #: live objects of this context referenced from other apartments
    objects: int
    #: calls on this context's objects running now
    outstanding: int
    #: calls refused because the context was disconnecting or disconnected
    refused: int


class Context:
    """A group of objects of one apartment (COM's object context)."""

    def __init__(self, apartment: Apartment, *, default: bool = False) -> None:
        self.apartment = apartment
        self.default = default
        #: a cheap identity (CoGetContextToken)
        self.token = next(_tokens)
        self.state = ContextState.OPEN
        self.outstanding = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._running: dict[Call, None] = {}
        self._waiters: list[Call] = []
        self._done = threading.Event()

    def __repr__(self) -> str:
        kind = "default " if self.default else ""
        return f"<{kind}Context {self.token} of {self.apartment.name!r} {self.state.value}>"

    # -- entering ----------------------------------------------------------------------------------------

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run the coroutine function *fn* inside this context, in its apartment (ContextCallback)."""
        return await self.apartment._run_in_context(self, fn, args, is_async=True)  # type: ignore[no-any-return]

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the plain function *fn* inside this context, in its apartment."""
        return await self.apartment._run_in_context(self, fn, args, is_async=False)  # type: ignore[no-any-return]

    def run_sync_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """The blocking twin of :meth:`run_sync`, for plain threads."""
        return self.apartment._run_in_context_blocking(self, fn, args)  # type: ignore[no-any-return]

    async def _call_counted(self, fn: Callable[..., T]) -> T:
        """Run *fn* in this context as a call on its objects (a class factory's CreateInstance)."""
        return await self.apartment._run_in_context(self, fn, (), is_async=False, counted=True)  # type: ignore[no-any-return]

    def _call_counted_blocking(self, fn: Callable[..., T]) -> T:
        return self.apartment._run_in_context_blocking(self, fn, (), counted=True)  # type: ignore[no-any-return]

    # -- call accounting (executing thread) ----------------------------------------------------------

    def enter(self, call: Call) -> bool:
        """Admit a call on one of this context's objects; False if the context refuses calls."""
        with self._lock:
            if self.state is not ContextState.OPEN:
                self.refused += 1
                return False
            self.outstanding += 1
            self._running[call] = None
        return True

    def exit(self, call: Call) -> None:
        with self._lock:
            self.outstanding -= 1
            self._running.pop(call, None)
            finished = self.state is ContextState.DISCONNECTING and self.outstanding == 0
        if finished:
            self._finish()

    # -- disconnecting -------------------------------------------------------------------------------

    def _begin(self, timeout: float | None) -> bool:
        """Validate and start disconnecting; True when it is already complete."""
        check_seconds(timeout)
        if self.default:
            raise NotSupportedError(f"the default context of {self.apartment.name!r} cannot be disconnected")
        with self._lock:
            if self._inside_own_call():
                raise WouldDeadlockError(
                    f"disconnecting {self!r} from inside a call on one of its objects would wait for itself",
                    cycle=(self.apartment.name,),
                )
            if self.state is ContextState.DISCONNECTED:
                return True
            first = self.state is ContextState.OPEN
            self.state = ContextState.DISCONNECTING
            done = self.outstanding == 0
        if first:
            self.apartment.runtime.class_objects.revoke_where(lambda entry: entry.owner_context is self)
        if done:
            self._finish()
        return done

    def _inside_own_call(self) -> bool:
        # Is the current code (transitively) serving a call that runs in this context? Walk the calls
        # being served, parent by parent, across apartments (caller holds the lock).
        call = current_call()
        while call is not None:
            if call in self._running:
                return True
            call = call.parent
        return False

    def _finish(self) -> None:
        """No call runs any more: disconnect every object, answer the waiters (any thread)."""
        with self._lock:
            if self.state is ContextState.DISCONNECTED:
                return
            self.state = ContextState.DISCONNECTED
            waiters, self._waiters = self._waiters, []
        exports = self.apartment.exports
        for stub in exports.stubs():
            if stub.context is self:
                stub.disconnect(DisconnectReason.CONTEXT_DISCONNECTED)
        self._done.set()
        for waiter in waiters:
            waiter.deliver()

    def _add_waiter(self, waiter: Call) -> None:
        with self._lock:
            if self.state is not ContextState.DISCONNECTED:
                self._waiters.append(waiter)
                return
        waiter.deliver()

    def _cancel_outstanding(self, reason: str) -> None:
        with self._lock:
            running = list(self._running)
        for call in running:
            call.cancel(reason)

    async def disconnect(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - CoDisconnectContext's own timeout, not a cancel scope
        *,
        cancel_outstanding: bool = False,
        reason: str = "context disconnected",
    ) -> None:
        """CoDisconnectContext: refuse new calls at once, wait for outstanding ones, then disconnect every
        object of this context (their proxies fail from then on with ``RPC_E_DISCONNECTED``).

        :param timeout: seconds to wait for outstanding calls (None: no limit)
        :param cancel_outstanding: after *timeout*, cancel the outstanding calls' scopes (their callers get
            :class:`CallCancelledError` with *reason*, which callees read from
            :func:`aptrt.current_cancel_reason`) and wait for them to end, instead of raising
        :raises RPCTimeoutError: calls were still running after *timeout* (``RPC_E_TIMEOUT``); the context
            stays closed, finishes by itself when they end, and a later call succeeds once it has
        :raises NotSupportedError: this is a default context (``CO_E_NOTSUPPORTED``)
        :raises WouldDeadlockError: called from inside a call on one of this context's objects, directly or
            through a chain of calls (``CONTEXT_E_WOULD_DEADLOCK``), whatever the timeout
        :raises InvalidArgumentError: *timeout* is not None or a number, or is negative or NaN
            (``E_INVALIDARG``; also a ValueError), checked before anything else
        """
        if self._begin(timeout):
            return
        if timeout != 0:  # with no grace at all, go straight to the outcome
            with anyio.move_on_after(INF if timeout is None else timeout):
                await self._wait()
                return
        if cancel_outstanding:
            self._cancel_outstanding(reason)
            await self._wait()
            return
        raise RPCTimeoutError(
            f"{self.outstanding} call(s) still running in {self!r} after {timeout} s; "
            "it finishes disconnecting when they end"
        )

    def disconnect_blocking(
        self, timeout: float | None = None, *, cancel_outstanding: bool = False, reason: str = "context disconnected"
    ) -> None:
        """The blocking twin of :meth:`disconnect`, for plain threads (a pumping STA serves calls while it
        waits, so outstanding calls on its own thread can finish)."""
        from ._invoke import block_on_call_pumping, refuse_on_loop

        if tls.s.pump is None:
            refuse_on_loop("disconnect_blocking")
        if self._begin(timeout):
            return
        deadline = INF if timeout is None else time.monotonic() + timeout
        if block_on_call_pumping(
            Call(None, "disconnect", (), None, None, False, INF, 0, None), self._add_waiter, deadline
        ):
            return
        if cancel_outstanding:
            self._cancel_outstanding(reason)
            block_on_call_pumping(Call(None, "disconnect", (), None, None, False, INF, 0, None), self._add_waiter)
            return
        raise RPCTimeoutError(f"{self.outstanding} call(s) still running in {self!r} after {timeout} s")

    async def _wait(self) -> None:
        from ._invoke import await_call

        waiter = Call(None, "disconnect", (), None, None, False, INF, 0, None)
        await await_call(waiter, self._add_waiter)

    async def wait_disconnected(self) -> None:
        """Wait until the context is fully disconnected (a checkpoint)."""
        await self._wait()

    @property
    def disconnected(self) -> bool:
        return self.state is ContextState.DISCONNECTED

    def statistics(self) -> ContextStatistics:
        self.apartment.exports.flush_releases()
        objects = sum(1 for stub in self.apartment.exports.stubs() if stub.context is self)
        return ContextStatistics(
            self.token, self.apartment.name, self.default, self.state, objects, self.outstanding, self.refused
        )


def current_context() -> Context:
    """The context the current code runs in (its apartment's default context outside any other).

    :raises NotInitializedError: the thread is in no apartment and no runtime is open
    """
    ctx = tls.s.context
    if ctx is not None:
        return ctx
    ctx = context_var.get()
    if ctx is not None:
        return ctx
    from ._runtime import current_apartment

    return current_apartment().default_context


def creation_context() -> Context | None:
    """The disconnectable context code runs in now (None in a default context): new objects join it."""
    ctx = tls.s.context or context_var.get()
    if ctx is None or ctx.default:
        return None
    return ctx


def context_token() -> int:
    """CoGetContextToken: a cheap identity of the current context."""
    return current_context().token


def disconnect_object(obj: object) -> bool:
    """CoDisconnectObject: cut every external reference to *obj* (an object, or a proxy to one).

    Proxies to it fail from then on with :class:`DisconnectedError` (reason ``OBJECT_DISCONNECTED``); a
    call running on it finishes normally. It may be called from inside a call on the object itself.
    Returns True if the object had external references, False if it had none (nothing to cut).
    """
    from ._proxy import Proxy
    from ._runtime import current_apartment, current_runtime

    if obj is None:
        raise InvalidArgumentError("disconnect_object(None)")
    if isinstance(obj, Proxy):
        stub = obj._stub
        if stub.disconnected:
            return False
        stub.disconnect(DisconnectReason.OBJECT_DISCONNECTED)
        return True
    apartments = [current_apartment(), *current_runtime().apartments]
    for apartment in apartments:
        found = apartment.exports.lookup(obj)
        if found is not None:
            found.disconnect(DisconnectReason.OBJECT_DISCONNECTED)
            return True
    return False
