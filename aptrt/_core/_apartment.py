"""What every apartment offers: run code there, create objects there, statistics, closing."""

from __future__ import annotations

import enum
import functools
import weakref
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, Unpack, overload

from ._call import Call
from ._context import Context, context_var
from ._exceptions import (
    ApartmentClosedError,
    DisconnectedError,
    DisconnectReason,
    InvalidArgumentError,
    NotSupportedError,
)
from ._flow import InboxBound, MessageFilter, Overflow, RetryPolicy
from ._interface import Interface
from ._invoke import invoke, invoke_blocking, new_call
from ._observe import Histogram, Instrument
from ._reentrancy import Gate, Reentrancy
from ._stub import ExportTable, Stub
from ._threadstate import tls
from ._validate import check_callable, check_int, check_seconds

if TYPE_CHECKING:
    from ._proxy import Proxy
    from ._runtime import Runtime

PosArgsT = TypeVarTuple("PosArgsT")

T = TypeVar("T")
I = TypeVar("I", bound=Interface)


class _Unset:
    pass


_UNSET = _Unset()


class ApartmentKind(enum.Enum):
    """The kind of an apartment (COM's APTTYPE)."""

    STA = "sta"
    MAIN_STA = "main_sta"
    MTA = "mta"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class ApartmentStatistics:
    """A snapshot of an apartment's work (from :meth:`Apartment.statistics`)."""

    name: str
    kind: ApartmentKind
    #: calls waiting in the inbox
    queued: int
    #: async calls running now (sync calls run one at a time, inline)
    running: int
    #: calls that returned a value
    completed: int
    #: calls that raised (including calls refused because their object was disconnected)
    failed: int
    #: calls dropped or stopped because their caller cancelled them
    cancelled: int
    #: calls not started, or stopped, because their deadline passed
    expired: int
    #: objects of this apartment referenced from other apartments (live stubs)
    exported: int
    #: calls refused by a full inbox (overflow "reject") or by the message filter
    rejected: int = 0
    #: median and 99th percentile of call latency (caller's call → callee's return), seconds, estimated
    #: from one call in eight (the first included): recording every call cost ~7% of pipelined throughput
    latency_p50: float | None = None
    latency_p99: float | None = None


class Apartment(ABC):
    """An execution context: objects created in it run only on its thread(s).

    Get one from :class:`aptrt.Runtime` (``rt.main_sta``, ``rt.mta``, ``await rt.start_sta()``) or from
    :func:`aptrt.current_apartment`.

    Every method checks its arguments before anything runs: a function or class that is not callable, an
    *interface* that names no interface, a *timeout* that is not None or a number ≥ 0 raise
    :class:`InvalidArgumentError` (``E_INVALIDARG``) in the calling thread.
    """

    kind: ApartmentKind
    #: plain threads (outside any apartment) count as members: true of the MTA only (COM's implicit MTA)
    accepts_plain_threads = False
    #: every thread counts as a member: true of the neutral apartment only
    accepts_any_thread = False

    def __init__(self, runtime: Runtime, name: str) -> None:
        self.runtime = runtime
        self.name = name
        self.exports = ExportTable(self)
        #: proxies this apartment holds (weakly, by identity: equal proxies are distinct references),
        #: released when it shuts down
        self.imports: weakref.WeakValueDictionary[int, Proxy[Any]] = weakref.WeakValueDictionary()
        #: set once, when shutdown begins: new calls are refused from then on
        self.closing = False
        #: what killed the apartment's event loop (a callee's KeyboardInterrupt or SystemExit, say), else None
        self.failure: BaseException | None = None
        #: the context objects belong to unless code runs in another one
        self.default_context = Context(self, default=True)
        self._contexts: weakref.WeakSet[Context] = weakref.WeakSet()
        #: call hooks: the runtime's list of instruments (shared, so adding one reaches every apartment)
        self.instruments: list[Instrument] = runtime.instruments
        # load control and reentrancy (see configure())
        self.bound: InboxBound | None = None
        self._retired_rejected = 0
        self.message_filter: MessageFilter | None = None
        self.retry_policy: RetryPolicy | None = None
        self.reentrancy = Reentrancy.ALLOW
        #: the apartment's gate (None under ALLOW) and the gates of objects whose class overrides it
        self.gate: Gate | None = None
        self.object_gates: dict[int, Gate] = {}

    def __repr__(self) -> str:
        state = " closing" if self.closing else ""
        return f"<{type(self).__name__} {self.name!r}{state}>"

    def _loop_died(self, exc: BaseException) -> None:
        """The event loop serving this apartment died of *exc* (its thread, any time): refuse calls."""
        if self.failure is None:
            self.failure = exc
        self.closing = True

    # -- to implement ----------------------------------------------------------------------------------

    @abstractmethod
    def submit(self, call: Call) -> None:
        """Queue *call* (any thread); raise :class:`DisconnectedError` if the apartment refuses it."""

    def release_later(self, stub: Stub) -> None:
        """Give back a stub reference dropped by garbage collection (safe inside ``__del__``: no lock is
        taken here; the home apartment flushes it soon, and every statistics() call flushes first)."""
        exports = self.exports
        exports.release_later(stub)
        if not exports.nudged and not self.closing:
            exports.nudged = True
            self._nudge()

    def _release_imports(self) -> None:
        """The apartment shuts down: give back every remote reference its proxies hold."""
        for proxy in list(self.imports.values()):
            proxy.release()
        self.runtime.class_objects.revoke_apartment(self)

    def _nudge(self) -> None:  # noqa: B027 - a hook: apartments without a thread of their own flush later
        """Arrange for ``exports.flush_releases()`` to run soon in this apartment (must not block)."""

    @abstractmethod
    def statistics(self) -> ApartmentStatistics:
        """A snapshot of the apartment's work (flushes references dropped by garbage collection first)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the apartment (see the subclasses)."""

    # -- configuration ---------------------------------------------------------------------------------

    def configure(
        self,
        *,
        max_queued: int | None | _Unset = _UNSET,
        overflow: Overflow | str = Overflow.WAIT,
        message_filter: MessageFilter | None | _Unset = _UNSET,
        retry_policy: RetryPolicy | None | _Unset = _UNSET,
        reentrancy: Reentrancy | str | None = None,
    ) -> None:
        """Set this apartment's load control and reentrancy policy (arguments left out stay as they are).

        :param max_queued: bound the inbox (None: unbounded)
        :param overflow: ``"wait"`` (callers wait for room, under their deadline) or ``"reject"``
            (:class:`RetryLaterError`, ``RPC_E_SERVERCALL_RETRYLATER``)
        :param message_filter: ``fn(IncomingCall) -> FilterDecision``, run before each incoming call
        :param retry_policy: how calls made *from* this apartment retry when rejected
        :param reentrancy: ``ALLOW``, ``CALL_CHAIN`` or ``NONE`` (STAs only; the MTA is free-threaded)
        :raises InvalidArgumentError: an argument of the wrong type or value (``E_INVALIDARG``); nothing
            is changed then
        """
        # validate everything first: a bad argument changes nothing
        if not isinstance(max_queued, _Unset) and max_queued is not None:
            check_int(max_queued, "max_queued", low=1)
        mode = _enum(Overflow, overflow, "overflow")
        if not isinstance(message_filter, _Unset) and message_filter is not None:
            check_callable(message_filter, "message_filter")
        if not isinstance(retry_policy, _Unset) and retry_policy is not None:
            check_callable(getattr(retry_policy, "next_delay", None), "retry_policy.next_delay")
        policy = None if reentrancy is None else _enum(Reentrancy, reentrancy, "reentrancy")
        if policy is not None and policy is not Reentrancy.ALLOW and self.kind is ApartmentKind.MTA:
            raise NotSupportedError("the MTA is free-threaded: reentrancy policies apply to STAs")
        if not isinstance(max_queued, _Unset):
            old = self.bound
            self.bound = None if max_queued is None else InboxBound(max_queued, mode)
            if old is not None:  # its queued calls release into it; its waiters try the new bound
                self._retired_rejected += old.rejected
                old.retire()
        if not isinstance(message_filter, _Unset):
            self.message_filter = message_filter
        if not isinstance(retry_policy, _Unset):
            self.retry_policy = retry_policy
        if policy is not None:
            self.reentrancy = policy
            self.gate = None if policy is Reentrancy.ALLOW else Gate(self, policy, self.name)

    def gate_for(self, call: Call) -> Gate | None:
        """The reentrancy gate *call* must pass (None: it may always run). Apartment thread only."""
        stub = call.stub
        if stub is None or stub.info.reentrancy is None:
            return self.gate
        policy = stub.info.reentrancy
        if policy is Reentrancy.ALLOW:
            return None
        gate = self.object_gates.get(stub.key)
        if gate is None:
            label = f"{stub.info.cls.__qualname__}@{self.name}"
            gate = self.object_gates[stub.key] = Gate(self, policy, label)
        return gate

    # -- introspection (aptrt.dump) --------------------------------------------------------------------

    def queued_calls(self) -> list[Call]:
        """The calls waiting in the inbox now (a snapshot)."""
        return []

    def running_calls(self) -> list[Call]:
        """The async calls running now, and calls held at reentrancy gates (a snapshot)."""
        return []

    def contexts(self) -> list[Context]:
        """The disconnectable contexts of this apartment that are still referenced."""
        return list(self._contexts)

    # -- contexts ----------------------------------------------------------------------------------------

    def create_context(self) -> Context:
        """A new context of this apartment that can be disconnected (see :meth:`Context.disconnect`)."""
        if self.closing:
            raise ApartmentClosedError(f"apartment {self.name!r} is closed")
        ctx = Context(self)
        self._contexts.add(ctx)
        return ctx

    async def _run_in_context(
        self, ctx: Context, fn: Callable[..., Any], args: tuple[Any, ...], *, is_async: bool, counted: bool = False
    ) -> Any:
        """Run *fn* inside *ctx*. ``counted``: as a call on the context's objects (a class factory making
        one): outstanding while it runs, refused once the context disconnects. Otherwise it is
        ContextCallback's simulated call, which a disconnect neither waits for nor refuses."""
        check_callable(fn, "fn")
        caller = self._caller()
        call = new_call(fn, _name(fn), args, None, None, is_async, caller, target=self)
        call.context = ctx
        call.counted = counted
        if caller is self:
            return await _run_here(call, fn, args, is_async=is_async)
        return await invoke(self, call)

    def _run_in_context_blocking(
        self, ctx: Context, fn: Callable[..., Any], args: tuple[Any, ...], *, counted: bool = False
    ) -> Any:
        check_callable(fn, "fn")
        caller = self._caller()
        call = new_call(fn, _name(fn), args, None, None, False, caller, target=self, blocking=True)
        call.context = ctx
        call.counted = counted
        if caller is self:
            return _run_sync_here(call, fn, args)
        return invoke_blocking(self, call, None)

    # -- membership ------------------------------------------------------------------------------------

    def is_current(self) -> bool:
        """True if the calling thread belongs to this apartment."""
        return self.admits(tls.s.apartment)

    def admits(self, current: Apartment | None) -> bool:
        """True if a thread whose apartment is *current* may use this apartment's proxies."""
        return current is self or self.accepts_any_thread or (current is None and self.accepts_plain_threads)

    def _caller(self) -> Apartment:
        """The apartment of the calling thread (a plain thread counts as the runtime's MTA)."""
        current = tls.s.apartment
        return current if current is not None else self.runtime.mta

    # -- running code ----------------------------------------------------------------------------------

    async def run(self, fn: Callable[[Unpack[PosArgsT]], Awaitable[T]], *args: *PosArgsT) -> T:
        """Run the coroutine function *fn* in this apartment and return its result.

        Arguments and the result are marshaled (interface objects arrive as proxies). From inside this
        apartment, *fn* is simply awaited. This is a checkpoint; cancelling it cancels *fn*'s scope.
        """
        check_callable(fn, "fn")
        caller = self._caller()
        if caller is self:
            return await fn(*args)
        call = new_call(fn, _name(fn), args, None, None, True, caller, target=self)
        result: T = await invoke(self, call)
        return result

    async def run_sync(self, fn: Callable[[Unpack[PosArgsT]], T], *args: *PosArgsT) -> T:
        """Run the plain function *fn* in this apartment and return its result (see :meth:`run`)."""
        check_callable(fn, "fn")
        caller = self._caller()
        if caller is self:
            return fn(*args)
        call = new_call(fn, _name(fn), args, None, None, False, caller, target=self)
        result: T = await invoke(self, call)
        return result

    @overload
    async def create(self, cls: Callable[..., Any], *args: Any, interface: type[I], **kwargs: Any) -> Proxy[I]: ...
    @overload
    async def create(self, cls: Callable[..., Any], *args: Any, interface: None = None, **kwargs: Any) -> Any: ...
    async def create(self, cls: Callable[..., Any], *args: Any, interface: type[I] | None = None, **kwargs: Any) -> Any:
        """Create ``cls(*args, **kwargs)`` in this apartment.

        Returns a proxy for *interface* (default: the class's first interface) owned by the caller's
        apartment, or the object itself when the caller is in this apartment.
        """
        check_callable(cls, "cls")
        _check_interface(interface)
        factory = functools.partial(cls, *args, **kwargs) if kwargs else cls
        result = await self.run_sync(factory, *args) if not kwargs else await self.run_sync(factory)
        return _narrow(result, interface)

    # -- blocking twins (plain threads) ----------------------------------------------------------------

    def run_sync_blocking(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        check_callable(fn, "fn")
        check_seconds(timeout)
        caller = self._caller()
        if caller is self:
            return fn(*args)
        call = new_call(fn, _name(fn), args, None, None, False, caller, target=self, blocking=True)
        result: T = invoke_blocking(self, call, timeout)
        return result

    def run_blocking(self, fn: Callable[..., Awaitable[T]], *args: Any, timeout: float | None = None) -> T:
        check_callable(fn, "fn")
        check_seconds(timeout)
        caller = self._caller()
        call = new_call(fn, _name(fn), args, None, None, True, caller, target=self, blocking=True)
        result: T = invoke_blocking(self, call, timeout)
        return result

    def create_blocking(
        self, cls: Callable[..., Any], *args: Any, interface: type[I] | None = None, timeout: float | None = None
    ) -> Any:
        check_callable(cls, "cls")
        _check_interface(interface)
        return _narrow(self.run_sync_blocking(cls, *args, timeout=timeout), interface)

    # -- statistics helper -----------------------------------------------------------------------------

    def _stats(self, queued: int, counters: list[Any]) -> ApartmentStatistics:
        histograms = [c.latency for c in counters]
        bound = self.bound
        return ApartmentStatistics(
            name=self.name,
            kind=self.kind,
            queued=queued,
            running=sum(c.running for c in counters),
            completed=sum(c.completed for c in counters),
            failed=sum(c.failed for c in counters),
            cancelled=sum(c.cancelled for c in counters),
            expired=sum(c.expired for c in counters),
            exported=len(self.exports),
            rejected=sum(c.rejected for c in counters)
            + (bound.rejected if bound is not None else 0)
            + self._retired_rejected,
            latency_p50=Histogram.percentile(histograms, 0.5),
            latency_p99=Histogram.percentile(histograms, 0.99),
        )


async def _run_here(call: Call, fn: Callable[..., Any], args: tuple[Any, ...], *, is_async: bool) -> Any:
    if not is_async:
        return _run_sync_here(call, fn, args)
    ctx = call.context
    assert ctx is not None
    _enter_counted(call, ctx)
    token = context_var.set(ctx)
    try:
        return await fn(*args)
    finally:
        context_var.reset(token)
        if call.counted:
            ctx.exit(call)


def _run_sync_here(call: Call, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    ctx = call.context
    assert ctx is not None
    _enter_counted(call, ctx)
    previous = tls.s.context
    tls.s.context = ctx
    try:
        return fn(*args)
    finally:
        tls.s.context = previous
        if call.counted:
            ctx.exit(call)


def _enter_counted(call: Call, ctx: Context) -> None:
    if call.counted and not ctx.enter(call):
        call.counted = False
        raise DisconnectedError(
            f"{ctx!r} refuses calls: it is disconnecting", reason=DisconnectReason.CONTEXT_DISCONNECTED
        )


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _narrow(result: Any, interface: type[I] | None) -> Any:
    if interface is None:
        return result
    from ._proxy import Proxy, query_interface

    try:
        narrowed = query_interface(result, interface)
    except BaseException:
        if isinstance(result, Proxy):
            result.release()
        raise
    if isinstance(result, Proxy) and narrowed is not result:
        result.release()
    return narrowed


def _check_interface(interface: object) -> None:
    """An *interface* argument that cannot name an interface fails before anything is created."""
    if interface is not None:
        from ._interface import resolve_interface

        resolve_interface(interface)  # type: ignore[arg-type]


E = TypeVar("E", bound=enum.Enum)


def _enum(cls: type[E], value: object, what: str) -> E:
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in cls)
        raise InvalidArgumentError(f"{what} must be one of {choices}, not {value!r}") from None


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and not (timeout >= 0):
        raise InvalidArgumentError(f"timeout must be a non-negative number of seconds or None, not {timeout!r}")
