"""The callee's side of a call: admit it, run it (inline if sync, as a task if async), reply."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import trio

from ._call import INF, RUNNING, Call
from ._context import context_var
from ._exceptions import (
    ApartmentClosedError,
    CallCancelledError,
    DeadlineExceededError,
    DisconnectedError,
    DisconnectReason,
)
from ._marshal import PLAIN, marshal
from ._threadstate import current_call_var, tls

if TYPE_CHECKING:
    from ._apartment import Apartment
    from ._port import Port


class Counters:
    """Statistics of one executing thread. Written only by that thread; read (racily) by anyone."""

    __slots__ = ("completed", "failed", "cancelled", "expired", "running")

    def __init__(self) -> None:
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.expired = 0
        self.running = 0


def closed_error(apartment: Apartment, call: Call) -> DisconnectedError:
    return ApartmentClosedError(
        f"apartment {apartment.name!r} shut down before {call.name!r} ran",
        reason=DisconnectReason.SERVER_SHUTDOWN,
    )


def admit(call: Call, counters: Counters) -> Any:
    """The callable to run for *call*, or None when it must not run (it was answered, or dropped)."""
    if call.abandoned:
        counters.cancelled += 1
        return None  # nobody waits for the reply
    if call.deadline != INF and time.monotonic() >= call.deadline:
        counters.expired += 1
        call.fail(DeadlineExceededError(f"the deadline of {call.name!r} passed while it was queued"))
        return None
    fn = call.fn
    if fn is None:
        stub = call.stub
        assert stub is not None
        obj = stub.obj
        if obj is None:
            counters.failed += 1
            call.fail(stub.disconnected_error())
            return None
        ctx = stub.context
        if not ctx.default:  # default contexts cannot be disconnected: they keep no books
            if not ctx.enter(call):
                counters.failed += 1
                call.fail(
                    DisconnectedError(
                        f"{ctx!r} refuses calls: it is disconnecting", reason=DisconnectReason.CONTEXT_DISCONNECTED
                    )
                )
                return None
            call.counted = True
        call.context = ctx
        fn = getattr(obj, call.name)
    return fn


def run_inline(call: Call, fn: Any, apartment: Apartment, counters: Counters) -> None:
    """Run a sync callee on this thread, now, and reply."""
    call.phase = RUNNING
    tls.call = call
    tls.context = call.context
    try:
        kwargs = call.kwargs
        result = fn(*call.args, **kwargs) if kwargs else fn(*call.args)
        if type(result) not in PLAIN:
            result = marshal(result, apartment, call.caller or apartment)
        call.value = result
        counters.completed += 1
    except BaseException as exc:
        if (call.abandoned or call.cancel_reason is not None) and isinstance(exc, CallCancelledError):
            counters.cancelled += 1  # it stopped at check_cancelled() because its caller gave up
        else:
            counters.failed += 1
        call.error = _translate(exc, apartment, call)
        if not isinstance(exc, Exception):
            call.deliver()
            raise
    finally:
        tls.call = None
        tls.context = None
        if call.counted:
            call.context.exit(call)  # type: ignore[union-attr]
    call.deliver()


async def run_task(call: Call, fn: Any, apartment: Apartment, counters: Counters, port: Port) -> None:
    """Run an async callee as a task in its own cancel scope (under the caller's deadline), and reply."""
    current_call_var.set(call)
    context_var.set(call.context)
    counters.running += 1
    deadline = INF if call.deadline == INF else anyio.current_time() + (call.deadline - time.monotonic())
    scope = anyio.CancelScope(deadline=deadline)
    call.scope = scope
    if call.abandoned or call.cancel_reason is not None:
        scope.cancel()
    try:
        with scope:
            kwargs = call.kwargs
            result = await (fn(*call.args, **kwargs) if kwargs else fn(*call.args))
            if type(result) not in PLAIN:
                result = marshal(result, apartment, call.caller or apartment)
            call.value = result
        if scope.cancelled_caught:
            if call.abandoned:
                counters.cancelled += 1
                call.error = CallCancelledError(reason="the caller cancelled the call")
            elif call.cancel_reason is not None:
                counters.cancelled += 1
                call.error = CallCancelledError(reason=call.cancel_reason)
            else:
                counters.expired += 1
                call.error = DeadlineExceededError(f"{call.name!r} ran past its caller's deadline")
        else:
            counters.completed += 1
    except BaseException as exc:
        counters.failed += 1
        call.error = _translate(exc, apartment, call)
        # A cancellation from outside the call's scope is the loop shutting down: let it through. Any
        # other (a cancelled task the callee awaited, say) is the callee's failure, not the loop's.
        if not isinstance(exc, Exception) and (apartment.closing or not _is_cancellation(exc)):
            call.deliver()
            raise
    finally:
        counters.running -= 1
        call.scope = None
        if call.counted:
            call.context.exit(call)  # type: ignore[union-attr]
    call.deliver()


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, (asyncio.CancelledError, trio.Cancelled))


def _translate(exc: BaseException, apartment: Apartment, call: Call) -> BaseException:
    """What the caller must see for *exc*: never a raw cancellation of another loop."""
    if _is_cancellation(exc):
        if apartment.closing:
            return DisconnectedError(
                f"apartment {apartment.name!r} shut down while {call.name!r} was running",
                reason=DisconnectReason.SERVER_SHUTDOWN,
            )
        return CallCancelledError(reason=f"{call.name!r} was cancelled in apartment {apartment.name!r}")
    if isinstance(exc, Exception):
        exc.add_note(
            f"[aptrt] raised by {call.name!r} in apartment {apartment.name!r} "
            f"(thread {threading.current_thread().name!r})"
        )
    return exc
