"""The callee's side of a call: admit it, run it (inline if sync, as a task if async), reply."""

from __future__ import annotations

import asyncio
import itertools
import logging
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
    CallRejectedError,
    DeadlineExceededError,
    DisconnectedError,
    DisconnectReason,
    RetryLaterError,
)
from ._flow import CallType, FilterDecision, IncomingCall
from ._marshal import PLAIN, marshal
from ._observe import CallEvent, Histogram, Instrument
from ._threadstate import apartment_var, current_call_var, tls

logger = logging.getLogger("aptrt")

if TYPE_CHECKING:
    from ._apartment import Apartment
    from ._port import Port


#: The latency histogram records one call in this many (the first included). Recording every call cost
#: ~0.4 µs of a pipelined call's ~6 µs on the callee's thread (a handful of float and int objects made
#: and freed each time, on memory the caller's thread touches too); a systematic sample keeps the
#: percentiles and costs ~1/8 of that.
LATENCY_SAMPLE = 8


class Counters:
    """Statistics of one executing thread. Written only by that thread; read (racily) by anyone."""

    __slots__ = (
        "cancelled",
        "completed",
        "expired",
        "failed",
        "latency",
        "rejected",
        "running",
        "running_calls",
        "sample",
    )

    def __init__(self) -> None:
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.expired = 0
        self.rejected = 0
        self.running = 0
        #: from the caller's call to the callee's return, for one call in LATENCY_SAMPLE that ran
        self.latency = Histogram()
        #: ``next(sample)`` says whether to record the call that just ended (no int made per call)
        self.sample = itertools.cycle((True,) + (False,) * (LATENCY_SAMPLE - 1))
        #: async calls running now (insertion-ordered set), for aptrt.dump()
        self.running_calls: dict[Call, None] = {}


def closed_error(apartment: Apartment, call: Call, failure: BaseException | None = None) -> DisconnectedError:
    failure = failure or apartment.failure
    if failure is not None:
        return ApartmentClosedError(
            f"apartment {apartment.name!r} died ({failure!r} ended its event loop) before {call.name!r} ran",
            reason=DisconnectReason.APARTMENT_DIED,
        )
    return ApartmentClosedError(
        f"apartment {apartment.name!r} shut down before {call.name!r} ran",
        reason=DisconnectReason.SERVER_SHUTDOWN,
    )


def died_error(apartment: Apartment, call: Call, failure: BaseException | None) -> DisconnectedError:
    """What the caller of a call that was running when its apartment's loop died sees."""
    cause = f"{failure!r} ended its event loop" if failure is not None else "its event loop stopped"
    return DisconnectedError(
        f"apartment {apartment.name!r} died while {call.name!r} was running: {cause}",
        reason=DisconnectReason.APARTMENT_DIED,
    )


def release_slot(apartment: Apartment, call: Call) -> None:
    """*call* left a bounded inbox: free its slot (and let one waiting caller in)."""
    bound = call.reserved  # the bound it reserved in, even if the apartment has a new one since
    call.reserved = None
    if bound is not None:
        bound.release()


def filter_admits(apartment: Apartment, call: Call, counters: Counters) -> bool:
    """Run the apartment's message filter (HandleInComingCall); answer the call if it is not admitted."""
    nested = any(running.causality == call.causality for running in counters.running_calls)
    caller = call.caller
    info = IncomingCall(
        call.name,
        call.causality,
        CallType.NESTED if nested else CallType.TOPLEVEL,
        caller.name if caller is not None else "",
        apartment.name,
    )
    message_filter = apartment.message_filter
    assert message_filter is not None
    try:
        decision = message_filter(info)
    except Exception as exc:  # noqa: BLE001 - a broken filter fails the call, not the apartment
        counters.failed += 1
        call.fail(exc)
        return False
    if decision is FilterDecision.ADMIT:
        return True
    counters.rejected += 1
    if decision is FilterDecision.RETRY_LATER:
        call.fail(RetryLaterError(f"apartment {apartment.name!r} is busy: retry {call.name!r} later"))
    else:
        call.fail(CallRejectedError(f"apartment {apartment.name!r} rejected {call.name!r}"))
    return False


def admit(call: Call, counters: Counters) -> Any:
    """The callable to run for *call*, or None when it must not run (it was answered, or dropped)."""
    # expiry first: a caller whose deadline fired has also abandoned the call, and it counts as expired
    if call.deadline != INF and time.monotonic() >= call.deadline:
        counters.expired += 1
        call.fail(DeadlineExceededError(f"the deadline of {call.name!r} passed while it was queued"))
        return None
    if call.abandoned:
        counters.cancelled += 1
        return None  # nobody waits for the reply
    fn = call.fn
    if fn is not None and call.counted:  # a class factory's call in its context: counted like an object's
        ctx = call.context
        assert ctx is not None
        if not ctx.enter(call):
            call.counted = False
            counters.failed += 1
            call.fail(
                DisconnectedError(
                    f"{ctx!r} refuses calls: it is disconnecting", reason=DisconnectReason.CONTEXT_DISCONNECTED
                )
            )
            return None
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
    state = tls.s
    # a pumping STA serves calls while one of its own waits: keep the outer call's identity
    outer_call, outer_context = state.call, state.context
    state.call = call
    state.context = call.context
    instruments = apartment.instruments
    event = notify_started(instruments, call, apartment) if instruments else None
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
        elif type(exc) is DeadlineExceededError:
            counters.expired += 1  # it stopped at check_cancelled() because its deadline passed
        else:
            counters.failed += 1
        call.error = _translate(exc, apartment, call)
        if not isinstance(exc, Exception) and not _is_cancellation(exc):
            call.deliver()  # the caller gets it too; the thread decides what it does to it (see Port._drain)
            raise
    finally:
        state.call = outer_call
        state.context = outer_context
        _close_books(call, counters, instruments, event)
    call.deliver()


async def run_task(call: Call, fn: Any, apartment: Apartment, counters: Counters, port: Port) -> None:
    """Run an async callee as a task in its own cancel scope (under the caller's deadline), and reply."""
    current_call_var.set(call)
    context_var.set(call.context)
    if apartment.accepts_any_thread:  # neutral code running as a task: this task is in the NA
        apartment_var.set(apartment)
    counters.running += 1
    counters.running_calls[call] = None
    instruments = apartment.instruments
    event = notify_started(instruments, call, apartment) if instruments else None
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
        host = port.host
        # a cancellation of the task itself, from outside the call's scope, is the loop closing or dying:
        # let it through; any other (a cancelled task the callee awaited) is the callee's failure
        outside = _is_cancellation(exc) and _cancelled_from_outside()
        call.error = _translate(exc, apartment, call, failure=host.failure, outside=outside)
        if outside:
            call.deliver()
            raise
        if not isinstance(exc, Exception) and not _is_cancellation(exc):  # KeyboardInterrupt, SystemExit
            host.fatal(exc)  # the loop dies of it (not raised here: asyncio would stop the loop mid-step)
    finally:
        counters.running -= 1
        del counters.running_calls[call]
        call.scope = None
        _close_books(call, counters, instruments, event)
    call.deliver()


def _close_books(call: Call, counters: Counters, instruments: list[Instrument], event: CallEvent | None) -> None:
    """A callee ended (sync or async): leave its context, record its latency, tell the instruments."""
    if call.counted:
        call.context.exit(call)  # type: ignore[union-attr]
    if next(counters.sample):
        counters.latency.record(time.perf_counter() - call.started)
    if event is not None:
        notify_finished(instruments, call, event)


def notify_started(instruments: list[Instrument], call: Call, apartment: Apartment) -> CallEvent:
    event = CallEvent(call, apartment.name)
    failed = None
    for instrument in instruments:
        try:
            instrument.call_started(event)
        except Exception:
            logger.exception("aptrt: instrument %r failed; removing it", instrument)
            failed = [*(failed or ()), instrument]
    if failed:
        _remove(instruments, failed)
    return event


def notify_finished(instruments: list[Instrument], call: Call, event: CallEvent) -> None:
    failed = None
    for instrument in instruments:
        try:
            instrument.call_finished(event, call.error)
        except Exception:
            logger.exception("aptrt: instrument %r failed; removing it", instrument)
            failed = [*(failed or ()), instrument]
    if failed:
        _remove(instruments, failed)


def _remove(instruments: list[Instrument], failed: list[Instrument]) -> None:
    # after the loop: removing while iterating would skip the next instrument
    for instrument in failed:
        try:
            instruments.remove(instrument)
        except ValueError:
            pass


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, (asyncio.CancelledError, trio.Cancelled))


def _cancelled_from_outside() -> bool:
    """Whether the running task itself is being cancelled from outside the call's own scope (its task
    group: the loop closing or dying), rather than the callee having awaited something cancelled."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not asyncio: a trio.Cancelled outside the call's scope is always an outer scope's
        return True
    return task is None or task.cancelling() > 0


def _translate(
    exc: BaseException, apartment: Apartment, call: Call, *, failure: BaseException | None = None, outside: bool = False
) -> BaseException:
    """What the caller must see for *exc*: never a raw cancellation of another loop. *failure*: what
    killed the loop that ran the call; *outside*: the call's task was cancelled by its loop's task group."""
    if _is_cancellation(exc):
        failure = failure or apartment.failure
        if failure is not None or (outside and not apartment.closing):
            return died_error(apartment, call, failure)
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
