"""aptrt.com conformance: call cancellation (CoEnable/DisableCallCancellation, CoCancelCall, CoTestCancel)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import aptrt
from aptrt import com

from .com_support import ComThread, Counted, com_clean, marshal, raises_hr, result, unmarshal, wait

__all__ = ["com_clean"]


class Slow(Counted):
    """Waits until told to go, then reports whether its call was cancelled (CoTestCancel)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.go = threading.Event()

    def Value(self) -> int:
        self.started.set()
        com.CoWaitForMultipleHandles(0, com.INFINITE, [self.go])
        return com.CoTestCancel()


@pytest.fixture
def server() -> Iterator[tuple[Slow, Any]]:
    """A Slow object in an STA of its own, and its marshal data (TABLESTRONG, for several clients)."""
    slow = Slow()
    with ComThread(name="server-sta") as sta:
        stream = sta.run(marshal, slow, com.MSHLFLAGS_TABLESTRONG)
        try:
            yield slow, stream
        finally:
            slow.go.set()


def call_slow(stream: Any, enable: bool = True) -> Any:
    """On a client thread: (enable cancellation and) call Slow.Value through a proxy."""
    if enable:
        com.CoEnableCallCancellation(None)
    proxy = unmarshal(stream)
    try:
        return proxy.Value()
    finally:
        proxy.Release()
        if enable:
            com.CoDisableCallCancellation(None)


def test_disabled_by_default_and_counted() -> None:
    """Cancellation is off at first (disabling it is CO_E_CANCEL_DISABLED) and counted: each enable needs
    its own disable [compobj.c test_call_cancellation]."""
    with raises_hr(com.CO_E_CANCEL_DISABLED):
        com.CoDisableCallCancellation(None)
    assert com.CoEnableCallCancellation(None) == com.S_OK
    assert com.CoEnableCallCancellation(None) == com.S_OK
    assert com.CoDisableCallCancellation(None) == com.S_OK
    assert com.CoDisableCallCancellation(None) == com.S_OK
    with raises_hr(com.CO_E_CANCEL_DISABLED):
        com.CoDisableCallCancellation(None)
    with raises_hr(com.E_INVALIDARG):
        com.CoEnableCallCancellation(object())


def test_count_ignores_initialisation() -> None:
    """The cancellation count does not depend on CoInitialize/CoUninitialize [compobj.c
    test_call_cancellation ("Counter is not affected by initialization")]."""
    com.CoEnableCallCancellation(None)
    com.CoInitialize(None)
    assert com.CoDisableCallCancellation(None) == com.S_OK
    with raises_hr(com.CO_E_CANCEL_DISABLED):
        com.CoDisableCallCancellation(None)
    com.CoEnableCallCancellation(None)
    com.CoUninitialize()
    assert com.CoDisableCallCancellation(None) == com.S_OK
    with raises_hr(com.CO_E_CANCEL_DISABLED):
        com.CoDisableCallCancellation(None)


def test_test_cancel_outside_a_call() -> None:
    """CoTestCancel outside an incoming call has no call context: RPC_E_CALL_COMPLETE [D: CoTestCancel
    (it asks CoGetCallContext); compobj.c test_CoGetCallContext]."""
    with raises_hr(com.RPC_E_CALL_COMPLETE):
        com.CoTestCancel()


def test_test_cancel_in_an_uncancelled_call(server: tuple[Slow, Any]) -> None:
    """In a call nobody cancelled, CoTestCancel answers RPC_S_CALLPENDING [D: CoTestCancel]."""
    slow, stream = server
    slow.go.set()
    with ComThread() as client:
        assert client.run(call_slow, stream) == com.RPC_S_CALLPENDING


def test_cancel_call_preconditions(server: tuple[Slow, Any]) -> None:
    """CoCancelCall needs cancellation enabled on the target thread (CO_E_CANCEL_DISABLED) and a call
    pending there (E_NOINTERFACE) [D: CoCancelCall]."""
    slow, stream = server
    com.CoEnableCallCancellation(None)
    try:
        with raises_hr(com.E_NOINTERFACE):
            com.CoCancelCall(0, 0)  # this thread waits on no call
    finally:
        com.CoDisableCallCancellation(None)
    with ComThread() as client:
        done, box = client.submit(call_slow, stream, False)
        wait(slow.started)
        with raises_hr(com.CO_E_CANCEL_DISABLED):
            com.CoCancelCall(client.tid, 0)
        slow.go.set()
        wait(done)
        assert result(box) == com.RPC_S_CALLPENDING


def test_callee_sees_the_cancellation(server: tuple[Slow, Any]) -> None:
    """After CoCancelCall the callee's CoTestCancel reports RPC_E_CALL_CANCELED, which its caller gets; a
    second CoCancelCall of the same call is RPC_E_CALL_CANCELED [D: CoCancelCall; D: CoTestCancel]."""
    slow, stream = server
    with ComThread() as client:
        done, box = client.submit(call_slow, stream)
        wait(slow.started)
        assert com.CoCancelCall(client.tid, com.INFINITE) == com.S_OK
        with raises_hr(com.RPC_E_CALL_CANCELED):
            com.CoCancelCall(client.tid, com.INFINITE)
        slow.go.set()
        wait(done)
        with raises_hr(com.RPC_E_CALL_CANCELED) as info:
            result(box)
        assert isinstance(info.value, aptrt.CallCancelledError)


def test_caller_stops_waiting_after_the_timeout(server: tuple[Slow, Any]) -> None:
    """CoCancelCall's timeout bounds how long the caller keeps waiting for the callee: with 0 the
    blocked caller (here in the MTA) returns at once with RPC_S_CALL_CANCELED while the callee still
    runs [D: CoCancelCall; com-semantics.md §1.7]."""
    slow, stream = server
    with ComThread(com.COINIT_MULTITHREADED) as client:
        done, box = client.submit(call_slow, stream)
        wait(slow.started)
        com.CoCancelCall(client.tid, 0)
        wait(done)
        with raises_hr(com.RPC_S_CALL_CANCELED):
            result(box)
        assert not slow.go.is_set()  # the callee is still running
        slow.go.set()


def test_cancel_a_pumping_sta_caller(server: tuple[Slow, Any]) -> None:
    """A caller waiting in an STA (pumping) is woken by CoCancelCall as well [D: CoCancelCall]."""
    slow, stream = server
    with ComThread() as client:
        done, box = client.submit(call_slow, stream)
        wait(slow.started)
        com.CoCancelCall(client.tid, 0)
        wait(done)
        with raises_hr(com.RPC_S_CALL_CANCELED):
            result(box)
        slow.go.set()
