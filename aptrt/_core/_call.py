"""The call envelope that travels between apartments, and the messages that accompany it.

A :class:`Call` is created by the caller, queued in the target apartment's inbox, run there, and then
travels back as its own reply (``phase`` flips to ``REPLY``) to the caller's inbox, or releases the lock a
blocking caller waits on. One object per call both ways: no reply allocation, no outcome wrapper.

Threads: the caller writes every field before queueing; the executing thread writes ``value``/``error``,
``scope``, ``runner`` and ``phase``; ``abandoned`` may be set by the caller at any time. Each hand-off goes
through a deque append/pop (or a lock release), which orders the writes before it for the reader.
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import anyio

    from ._apartment import Apartment
    from ._context import Context
    from ._flow import InboxBound
    from ._port import Port
    from ._reentrancy import Gate
    from ._stub import Stub

REQUEST = 0
RUNNING = 1
REPLY = 2

INF = math.inf

#: Causality ids: a process-wide counter. ``next()`` on an ``itertools.count`` is atomic under the GIL
#: and internally locked on free-threaded builds. It starts at a random multiple of 2**32, so that the ids
#: of two processes (a call chain crosses processes with ``aptrt.ray``) do not collide.
_causality_ids = itertools.count((secrets.randbits(30) + 1) << 32)


def new_causality() -> int:
    """A fresh causality id for a call chain that starts here."""
    return next(_causality_ids)


class Runner(Protocol):
    """Where cancel requests for a running async callee go: the inbox of the loop that runs it (a
    :class:`Port`, or the short-lived loop of a neutral callee on a plain thread)."""

    def post(self, item: Any) -> bool: ...


class Call:
    """One cross-apartment call: request on the way out, reply on the way back."""

    __slots__ = (
        "fn",
        "name",
        "args",
        "kwargs",
        "stub",
        "is_async",
        "deadline",
        "causality",
        "caller",
        "reply_port",
        "waiter",
        "phase",
        "value",
        "error",
        "abandoned",
        "scope",
        "runner",
        "started",
        "context",
        "counted",
        "cancel_reason",
        "gate",
        "reserved",
        "parent",
        "__weakref__",
    )

    fn: Callable[..., Any] | None
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] | None
    stub: Stub | None
    is_async: bool
    #: absolute deadline on ``time.monotonic()``'s clock (``inf`` = none); loops' clocks differ, this one doesn't
    deadline: float
    causality: int
    #: the calling apartment (None for a plain thread outside any apartment)
    caller: Apartment | None
    #: the caller's inbox, or None when a blocking thread waits on ``waiter`` (a lock)
    reply_port: Port | None
    waiter: Any
    phase: int
    value: Any
    error: BaseException | None
    #: set by the caller when it stops waiting (cancelled or timed out); the reply is then dropped
    abandoned: bool
    #: the callee's cancel scope while an async callee runs
    scope: anyio.CancelScope | None
    #: the inbox of the loop that runs an async callee (where cancel requests go)
    runner: Runner | None
    #: when the caller made the call (``time.perf_counter()``, one clock for every thread)
    started: float
    #: the context the call runs in (set by the caller for ``Context.run``, else by the dispatcher)
    context: Context | None
    #: the call is counted as outstanding in ``context`` (calls on its objects, not ``Context.run``)
    counted: bool
    #: why the callee's scope was cancelled by something other than its caller (context disconnect)
    cancel_reason: str | None
    #: the reentrancy gate the call holds while it runs (STA policies other than ALLOW)
    gate: Gate | None
    #: the bounded inbox the call holds a slot of until it is dequeued (None: no slot)
    reserved: InboxBound | None
    #: the incoming call the caller was serving when it made this one (None: a top-level call)
    parent: Call | None

    def __init__(
        self,
        fn: Callable[..., Any] | None,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        stub: Stub | None,
        is_async: bool,
        deadline: float,
        causality: int,
        caller: Apartment | None,
        parent: Call | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.args = args
        self.kwargs = kwargs
        self.stub = stub
        self.is_async = is_async
        self.deadline = deadline
        self.causality = causality
        self.caller = caller
        self.reply_port = None
        self.waiter = None
        self.phase = REQUEST
        self.value = None
        self.error = None
        self.abandoned = False
        self.scope = None
        self.runner = None
        self.started = time.perf_counter()
        self.context = None
        self.counted = False
        self.cancel_reason = None
        self.gate = None
        self.reserved = None
        self.parent = parent

    def __repr__(self) -> str:
        phase = ("queued", "running", "replied")[self.phase]
        return f"<Call {self.name} causality={self.causality} {phase}{' abandoned' if self.abandoned else ''}>"

    # -- callee side -----------------------------------------------------------------------------------

    def deliver(self) -> None:
        """Send the reply back (callee side, exactly once): to the caller's inbox, else to the lock a
        blocking caller waits on; to nobody for a call started with ``aptrt.begin`` whose handle is not
        awaited yet (it reads ``phase``; see ``Port.begin``)."""
        self.phase = REPLY
        port = self.reply_port
        if port is not None:
            port.post(self)  # a closed caller inbox drops it: the caller is gone
        else:
            waiter = self.waiter
            if waiter is not None:  # None: an aptrt.begin handle not awaited yet (it reads phase)
                try:
                    waiter.release()
                except RuntimeError:  # an abandoned waiter already let its thread go
                    pass

    def fail(self, error: BaseException) -> None:
        """Reply with *error* without running the call."""
        self.error = error
        self.deliver()

    def expired(self) -> bool:
        return self.deadline != INF and time.monotonic() >= self.deadline

    # -- caller side -----------------------------------------------------------------------------------

    def result(self) -> Any:
        """The callee's return value, or raise its error (caller side, after the reply arrived).

        On success the envelope lets go of the arguments and the result: a reply can resume its caller from inside the
        inbox's drain (see ``ReplyWaiter``), whose frame still holds the envelope for a moment, and the
        arguments (proxies among them) must not outlive the call because of that. A failed call keeps
        them, for a retry.
        """
        error = self.error
        if error is not None:
            self.error = None  # break the frame ↔ exception cycle through this envelope
            try:
                raise error
            finally:
                del error
        self.args = ()
        self.kwargs = None
        value, self.value = self.value, None
        return value

    def cancel(self, reason: str) -> None:
        """Cancel the callee's scope (any thread): a running async callee is cancelled at its next
        checkpoint, a sync one sees it from ``check_cancelled``; its caller gets CallCancelledError."""
        self.cancel_reason = reason
        runner = self.runner
        if runner is not None and self.phase == RUNNING:
            runner.post(CancelRequest(self))

    def abandon(self) -> None:
        """The caller stops waiting: stop the call if it has not started, cancel its scope if it runs."""
        self.abandoned = True
        runner = self.runner
        if runner is not None and self.phase == RUNNING:
            runner.post(CancelRequest(self))


class CancelRequest:
    """Asks the loop running an async callee to cancel that call's scope."""

    __slots__ = ("call",)

    def __init__(self, call: Call) -> None:
        self.call = call

    def handle(self, port: Port) -> None:
        scope = self.call.scope
        if scope is not None:
            scope.cancel()
        # no scope yet: the callee task checks ``abandoned`` when it starts


def remaining_to_deadline(remaining: float) -> float:
    """Turn seconds left into an absolute deadline on the monotonic clock."""
    if remaining == INF:
        return INF
    return time.monotonic() + remaining
