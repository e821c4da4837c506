"""Call cancellation: CoEnableCallCancellation, CoDisableCallCancellation, CoCancelCall, CoTestCancel.

Cancellation is per thread, off by default, and counted: each ``CoEnableCallCancellation`` needs its own
``CoDisableCallCancellation``; one too many gives ``CO_E_CANCEL_DISABLED``. The count does not depend on
COM being initialised.

``CoCancelCall(tid, timeout)`` cancels the synchronous outgoing call thread *tid* (a native thread id,
``threading.get_native_id()``; 0: the calling thread) is waiting on: the callee sees it from
``CoTestCancel`` (or :func:`aptrt.check_cancelled`), an async callee's scope is cancelled, and the caller
stops waiting *timeout* seconds later if the callee has not returned by then (the caller then gets
:class:`aptrt.CallCancelledError` with ``RPC_S_CALL_CANCELED``). A callee that honours the request
answers ``RPC_E_CALL_CANCELED``.
"""

from __future__ import annotations

import math
import threading

from .._core._exceptions import CallCancelledError, COMError, NoInterfaceError
from .._core._hresult import HRESULT
from .._core._threadstate import current_call
from ._constants import INFINITE, RPC_S_CALLPENDING, S_OK
from ._util import dword, error
from ._wait import cancel, cancel_count, change_cancel_count, pending_calls, replied


def _reserved(pReserved: object) -> None:
    if pReserved is not None:
        raise error(HRESULT.E_INVALIDARG, "pReserved must be None")


def CoEnableCallCancellation(pReserved: object = None) -> int:
    """Allow the calling thread's synchronous calls to be cancelled (counted; off by default)."""
    _reserved(pReserved)
    change_cancel_count(+1)
    return S_OK


def CoDisableCallCancellation(pReserved: object = None) -> int:
    """Undo one :func:`CoEnableCallCancellation`.

    :raises COMError: cancellation is not enabled on this thread (``CO_E_CANCEL_DISABLED``)
    """
    _reserved(pReserved)
    if not change_cancel_count(-1):
        raise error(HRESULT.CO_E_CANCEL_DISABLED, "call cancellation is not enabled on this thread")
    return S_OK


def CoCancelCall(dwThreadId: int, ulTimeout: int) -> int:
    """Cancel the synchronous call thread *dwThreadId* is waiting on; its caller gives up *ulTimeout*
    seconds later (``INFINITE``: waits for the callee) unless the callee returns first.

    :raises COMError: ``CO_E_CANCEL_DISABLED`` if that thread has not enabled cancellation;
        ``RPC_E_CALL_COMPLETE`` if its call has just returned
    :raises NoInterfaceError: the thread waits on no call (``E_NOINTERFACE``)
    :raises CallCancelledError: that call was already cancelled (``RPC_E_CALL_CANCELED``)
    :raises InvalidArgumentError: an argument is not a DWORD (``E_INVALIDARG``)
    """
    dword(dwThreadId, "dwThreadId")
    dword(ulTimeout, "ulTimeout")  # seconds, or INFINITE
    tid = dwThreadId or threading.get_native_id()
    if not cancel_count(tid):
        raise error(HRESULT.CO_E_CANCEL_DISABLED, f"call cancellation is not enabled on thread {tid}")
    waiting = pending_calls(tid)
    if not waiting:
        raise NoInterfaceError(f"thread {tid} is waiting on no call")
    pending = waiting[-1]
    if pending.cancelled:
        raise CallCancelledError(f"the call thread {tid} waits on was already cancelled")
    if replied(pending):
        raise error(HRESULT.RPC_E_CALL_COMPLETE, "the call has already completed")
    cancel(pending, math.inf if ulTimeout == INFINITE else float(ulTimeout))
    return S_OK


def CoTestCancel() -> int:
    """In a callee: has the caller cancelled this call?

    :return: ``RPC_S_CALLPENDING`` (the call is still wanted; returned, not raised, since it is the
        ordinary answer)
    :raises CallCancelledError: the caller cancelled it (``RPC_E_CALL_CANCELED``)
    :raises COMError: not inside an incoming call (``RPC_E_CALL_COMPLETE``, as CoGetCallContext answers)
    """
    call = current_call()
    if call is None:
        raise COMError("no incoming call is being served on this thread", hresult=HRESULT.RPC_E_CALL_COMPLETE)
    if call.abandoned or call.cancel_reason is not None:
        raise CallCancelledError(reason=call.cancel_reason or "the caller gave up")
    return RPC_S_CALLPENDING
