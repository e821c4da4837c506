"""Waiting as COM waits: blocking calls that pump in an STA, and ``CoWaitForMultipleHandles``.

A thread of a pumping STA serves incoming calls while it waits inside a COM call (an outgoing call
through a facade proxy, ``CoWaitForMultipleHandles``): its inbox is drained on its own stack, so STA → STA
→ back-to-the-first-STA callbacks complete. Any other thread (MTA, implicit MTA) blocks without pumping.

Each thread's pending synchronous outgoing calls are recorded (a stack, since a call served while
pumping may make its own outgoing call), so that :func:`~aptrt.com.CoCancelCall` can find the call a
thread waits on, and message filters can tell ``CALLTYPE_NESTED`` and ``CALLTYPE_TOPLEVEL_CALLPENDING``.

Threads: ``_pending`` and ``_cancel_enabled`` are guarded by ``_lock`` (CoCancelCall reads another
thread's entries); a :class:`PendingCall`'s ``cancel_deadline``/``poked`` are written by the cancelling
thread and read by the waiting one (single writes of immutable values).
"""

from __future__ import annotations

import _thread
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._core._apartment import Apartment
from .._core._call import INF, REPLY, Call
from .._core._exceptions import CallCancelledError, CallRejectedError, InvalidArgumentError
from .._core._flow import NoRoom
from .._core._hresult import HRESULT
from .._core._invoke import refuse_on_loop
from .._core._pump import PumpPort, PumpSTA
from .._core._threadstate import tls
from ._constants import COWAIT_WAITALL, INFINITE
from ._util import error, required

#: how often a waiting thread re-checks conditions nothing rings its doorbell for (events, cancellation)
POLL = 0.002

logger = logging.getLogger("aptrt.com")


def attach(sta: PumpSTA) -> None:
    """Make the current thread *sta*'s thread (its inbox pumps, nestably, while the thread waits)."""
    sta.attach()


class PendingCall:
    """A synchronous outgoing call a thread waits on."""

    __slots__ = ("call", "started", "cancel_deadline", "cancelled", "poked", "pump")

    def __init__(self, call: Call, pump: PumpPort | None) -> None:
        self.call = call
        self.started = time.monotonic()
        #: after CoCancelCall: when the caller stops waiting for the callee (monotonic; INF: never)
        self.cancel_deadline = INF
        self.cancelled = False
        #: set by CoCancelCall so that a pumping waiter re-reads ``cancel_deadline``
        self.poked = False
        self.pump = pump

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)


_lock = threading.Lock()
_pending: dict[int, list[PendingCall]] = {}
_cancel_enabled: dict[int, int] = {}


def pending_calls(tid: int | None = None) -> list[PendingCall]:
    """The pending outgoing calls of the thread with native id *tid* (default: this one), innermost last."""
    key = threading.get_native_id() if tid is None else tid
    with _lock:
        return list(_pending.get(key, ()))


def cancel_count(tid: int) -> int:
    with _lock:
        return _cancel_enabled.get(tid, 0)


def change_cancel_count(delta: int) -> bool:
    """Add *delta* to this thread's cancellation count; False (no change) if it would go below 0."""
    tid = threading.get_native_id()
    with _lock:
        count = _cancel_enabled.get(tid, 0) + delta
        if count < 0:
            return False
        if count:
            _cancel_enabled[tid] = count
        else:
            _cancel_enabled.pop(tid, None)
        return True


def call_blocking(target: Apartment, call: Call, remake: Callable[[], Call]) -> Any:
    """Send *call* to *target* and wait for its result on this thread, pumping if it is an STA; retry a
    rejected call as the caller apartment's retry policy (its message filter's RetryRejectedCall) says.

    :raises WrongThreadError: called on an event loop's thread (it would stall the loop)
    :raises CallCancelledError: the call was cancelled with CoCancelCall and did not return in time
    """
    refuse_on_loop(call.name)
    caller = call.caller
    attempt = 1
    while True:
        try:
            return _call_once(target, call)
        except CallRejectedError as exc:
            policy = caller.retry_policy if caller is not None else None
            delay = policy.next_delay(attempt, exc) if policy is not None else None
            if delay is None:
                raise
            _sleep(delay)
            call = remake()
            attempt += 1


def _call_once(target: Apartment, call: Call) -> Any:
    tid = threading.get_native_id()
    pump = tls.s.pump
    pending = PendingCall(call, pump)
    with _lock:
        _pending.setdefault(tid, []).append(pending)
    try:
        if pump is not None:
            call.reply_port = pump
            call.waiter = None
            _submit(target, call, pump)

            def done() -> bool:
                return call.waiter is not None or pending.poked

            while True:
                if pump.pump_until(done, pending.cancel_deadline):
                    if call.waiter is not None:
                        break
                    pending.poked = False
                    continue
                call.abandon()
                raise _cancelled(call)
        else:
            lock = _thread.allocate_lock()
            lock.acquire()
            call.waiter = lock
            _submit(target, call, None)
            while True:
                deadline = pending.cancel_deadline
                if deadline == INF:
                    wait = POLL if cancel_count(tid) else -1.0
                else:
                    wait = max(0.0, min(POLL, deadline - time.monotonic()))
                if lock.acquire(timeout=wait):
                    break
                if pending.cancel_deadline != INF and time.monotonic() >= pending.cancel_deadline:
                    call.abandon()
                    raise _cancelled(call)
        return call.result()
    finally:
        with _lock:
            stack = _pending.get(tid)
            if stack is not None:
                stack.remove(pending)
                if not stack:
                    del _pending[tid]


def _submit(target: Apartment, call: Call, pump: PumpPort | None) -> None:
    while True:
        try:
            target.submit(call)
            return
        except NoRoom:  # the target's bounded inbox is full and makes callers wait: wait, serving calls
            if pump is not None:
                pump.pump_until(lambda: False, time.monotonic() + POLL)
            else:
                time.sleep(POLL)


def _cancelled(call: Call) -> CallCancelledError:
    return CallCancelledError(
        f"{call.name!r} was cancelled (CoCancelCall) and did not return in time",
        reason="CoCancelCall",
        hresult=HRESULT.RPC_S_CALL_CANCELED,
    )


def _sleep(seconds: float) -> None:
    """Wait *seconds*, serving incoming calls meanwhile on a pumping STA."""
    pump = tls.s.pump
    if pump is not None:
        pump.pump_until(lambda: False, time.monotonic() + seconds)
    elif seconds > 0:
        threading.Event().wait(seconds)


def cancel(pending: PendingCall, timeout: float) -> None:
    """Cancel *pending* (CoCancelCall): the callee sees it (CoTestCancel, check_cancelled); the caller
    stops waiting *timeout* seconds from now if the callee has not returned by then."""
    pending.cancelled = True
    pending.call.cancel("cancelled by CoCancelCall")
    pending.cancel_deadline = time.monotonic() + timeout if math.isfinite(timeout) else INF
    pending.poked = True
    if pending.pump is not None:
        pending.pump._bell.set()


def replied(pending: PendingCall) -> bool:
    return pending.call.phase == REPLY


# -- CoWaitForMultipleHandles -----------------------------------------------------------------------------


def timeout_seconds(milliseconds: object, what: str = "dwTimeout") -> float:
    """A COM timeout in milliseconds (a DWORD; ``INFINITE`` allowed) as seconds (``inf``)."""
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, int) or not 0 <= milliseconds <= INFINITE:
        raise InvalidArgumentError(f"{what} must be a number of milliseconds (0 to 0xFFFFFFFE) or INFINITE")
    return INF if milliseconds == INFINITE else milliseconds / 1000


def CoWaitForMultipleHandles(dwFlags: int, dwTimeout: int, pHandles: Sequence[threading.Event]) -> int:
    """Wait until one handle (a ``threading.Event``) is set, or all of them with ``COWAIT_WAITALL``; a
    thread of an STA serves incoming calls meanwhile (COM's modal loop), any other thread just waits.

    :return: the index of a set handle (the lowest); 0 with ``COWAIT_WAITALL``
    :raises InvalidArgumentError: no handle list, or something other than events in it (``E_INVALIDARG``)
    :raises COMError: ``RPC_E_NO_SYNC`` for an empty list; ``RPC_S_CALLPENDING`` when *dwTimeout*
        milliseconds pass first
    """
    required(pHandles, "pHandles")
    refuse_on_loop("CoWaitForMultipleHandles")
    try:
        handles = list(pHandles)
    except TypeError:
        raise InvalidArgumentError(f"pHandles must be a sequence of events, not {type(pHandles).__name__}") from None
    if not handles:
        raise error(HRESULT.RPC_E_NO_SYNC, "no handles to wait for")
    for handle in handles:
        if not (callable(getattr(handle, "is_set", None)) and callable(getattr(handle, "wait", None))):
            raise InvalidArgumentError(f"handles must be threading.Event objects, not {type(handle).__name__}")
    if isinstance(dwFlags, bool) or not isinstance(dwFlags, int) or not 0 <= dwFlags <= INFINITE:
        raise InvalidArgumentError(f"invalid COWAIT flags {dwFlags!r}")
    seconds = timeout_seconds(dwTimeout)
    deadline = INF if seconds == INF else time.monotonic() + seconds
    wait_all = bool(dwFlags & COWAIT_WAITALL)
    found: list[int] = []

    def ready() -> bool:
        if wait_all:
            if all(handle.is_set() for handle in handles):
                found.append(0)
                return True
            return False
        for index, handle in enumerate(handles):
            if handle.is_set():
                found.append(index)
                return True
        return False

    pump = tls.s.pump
    if pump is not None:
        pump.pump_until(ready, deadline, poll=POLL)
    elif len(handles) == 1 and not ready():
        if handles[0].wait(None if deadline == INF else max(0.0, deadline - time.monotonic())):
            found.append(0)
    else:
        while not ready():
            now = time.monotonic()
            if now >= deadline:
                break
            handles[0].wait(min(POLL, deadline - now))
    if not found:
        raise error(HRESULT.RPC_S_CALLPENDING, f"no handle was signalled within {dwTimeout} ms")
    return found[0]
