"""Message filters: CoRegisterMessageFilter and IMessageFilter, on top of the core's load control.

An STA's filter is asked about every incoming call (``HandleInComingCall`` → ``SERVERCALL_ISHANDLED``,
``SERVERCALL_REJECTED`` or ``SERVERCALL_RETRYLATER``; a rejected caller gets ``RPC_E_CALL_REJECTED`` or
``RPC_E_SERVERCALL_RETRYLATER``), and about calls of its own that were rejected (``RetryRejectedCall`` →
-1 gives up, 0–99 retries at once, ≥100 retries after that many milliseconds, pumping meanwhile). The
call type is ``CALLTYPE_NESTED`` for a call of the causality chain the STA is waiting on (a callback),
``CALLTYPE_TOPLEVEL_CALLPENDING`` for another call arriving while it waits, else ``CALLTYPE_TOPLEVEL``.
Filters are for STAs only: elsewhere ``CO_E_NOT_SUPPORTED``.

``MessagePending`` is part of the interface but not consulted: aptrt's STA inbox carries both incoming
calls and the replies a waiting thread expects, so there is no "wait without processing".
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from .._core._apartment import Apartment, ApartmentKind
from .._core._exceptions import InvalidArgumentError, NotSupportedError, RetryLaterError
from .._core._flow import CallType, FilterDecision, IncomingCall, RetryPolicy
from .._core._threadstate import tls
from . import _init
from ._constants import (
    CALLTYPE_NESTED,
    CALLTYPE_TOPLEVEL,
    CALLTYPE_TOPLEVEL_CALLPENDING,
    SERVERCALL_REJECTED,
    SERVERCALL_RETRYLATER,
)
from ._unknown import IUnknown
from ._util import addref, release, signed
from ._wait import pending_calls


class IMessageFilter(IUnknown, iid="00000016-0000-0000-C000-000000000046"):
    """An STA's say over incoming calls, and over its own calls that were rejected."""

    def HandleInComingCall(self, dwCallType: int, htaskCaller: Any, dwTickCount: int, lpInterfaceInfo: Any) -> int:
        raise NotImplementedError

    def RetryRejectedCall(self, htaskCallee: Any, dwTickCount: int, dwRejectType: int) -> int:
        raise NotImplementedError

    def MessagePending(self, htaskCallee: Any, dwTickCount: int, dwPendingType: int) -> int:
        raise NotImplementedError


IID_IMessageFilter = IMessageFilter.__iid__


@dataclass(frozen=True)
class INTERFACEINFO:
    """What HandleInComingCall is told about the call: the method's name (``wMethod``); the object and
    the IID are not known at this level (None)."""

    pUnk: Any
    iid: Any
    wMethod: str


class _ServerFilter:
    """apartment.configure(message_filter=...) adapter around IMessageFilter.HandleInComingCall."""

    def __init__(self, message_filter: Any) -> None:
        self.message_filter = message_filter

    def __call__(self, info: IncomingCall) -> FilterDecision:
        waiting = pending_calls()  # this runs on the apartment's thread: what is it waiting on?
        if info.call_type is CallType.NESTED or any(p.call.causality == info.causality for p in waiting):
            call_type = CALLTYPE_NESTED
        elif waiting:
            call_type = CALLTYPE_TOPLEVEL_CALLPENDING
        else:
            call_type = CALLTYPE_TOPLEVEL
        ticks = waiting[-1].elapsed_ms() if waiting else 0
        answer = self.message_filter.HandleInComingCall(
            call_type, info.caller, ticks, INTERFACEINFO(None, None, info.method)
        )
        if answer == SERVERCALL_REJECTED:
            return FilterDecision.REJECT
        if answer == SERVERCALL_RETRYLATER:
            return FilterDecision.RETRY_LATER
        return FilterDecision.ADMIT


_retry_started = threading.local()


@dataclass(frozen=True)
class _ClientRetry(RetryPolicy):
    """apartment.configure(retry_policy=...) adapter around IMessageFilter.RetryRejectedCall."""

    message_filter: Any = None

    def next_delay(self, attempt: int, error: BaseException) -> float | None:
        if attempt == 1:
            _retry_started.at = time.monotonic()
        ticks = int((time.monotonic() - getattr(_retry_started, "at", time.monotonic())) * 1000)
        reject = SERVERCALL_RETRYLATER if isinstance(error, RetryLaterError) else SERVERCALL_REJECTED
        answer = self.message_filter.RetryRejectedCall("", ticks, reject)
        if answer is None:
            return None
        answer = signed(int(answer)) if answer > 0x7FFFFFFF else int(answer)
        if answer < 0:
            return None
        return 0.0 if answer < 100 else answer / 1000


_lock = threading.Lock()
_filters: dict[int, tuple[Apartment, Any]] = {}


def CoRegisterMessageFilter(lpMessageFilter: Any) -> Any:
    """Install *lpMessageFilter* (an IMessageFilter, or None to remove it) as this STA's message filter.

    :return: the previous filter (None if there was none); the caller owns its reference
    :raises NotSupportedError: the thread is not in an STA (``CO_E_NOT_SUPPORTED``): the MTA, the
        implicit MTA and uninitialised threads have no message filters
    :raises InvalidArgumentError: *lpMessageFilter* is not a message filter object (``E_INVALIDARG``)
    """
    _init.flush()
    if lpMessageFilter is not None and (
        isinstance(lpMessageFilter, type)
        or not all(
            callable(getattr(lpMessageFilter, name, None)) for name in ("HandleInComingCall", "RetryRejectedCall")
        )
    ):
        raise InvalidArgumentError(
            f"lpMessageFilter must be an IMessageFilter (HandleInComingCall, RetryRejectedCall), not {lpMessageFilter!r}"
        )
    apartment = tls.s.apartment
    if apartment is None or apartment.kind not in (ApartmentKind.STA, ApartmentKind.MAIN_STA):
        raise NotSupportedError("message filters are for single-threaded apartments")
    with _lock:
        previous = _filters.pop(id(apartment), (apartment, None))[1]
        if lpMessageFilter is not None:
            _filters[id(apartment)] = (apartment, lpMessageFilter)
    if lpMessageFilter is None:
        apartment.configure(message_filter=None, retry_policy=None)
    else:
        addref(lpMessageFilter)
        apartment.configure(
            message_filter=_ServerFilter(lpMessageFilter), retry_policy=_ClientRetry(message_filter=lpMessageFilter)
        )
    return previous


@_init.on_teardown
def _teardown_filter(apartment: Apartment) -> None:
    with _lock:
        record = _filters.pop(id(apartment), None)
    if record is not None:
        apartment.configure(message_filter=None, retry_policy=None)
        release(record[1])
