"""aptrt.com conformance: CoWaitForMultipleHandles and pumping, message filters (server and client side)."""

from __future__ import annotations

import threading
from typing import Any

import aptrt
from aptrt import com

from .com_support import ComThread, Counted, com_clean, marshal, raises_hr, sta, unmarshal, wait

__all__ = ["com_clean", "sta"]


# -- CoWaitForMultipleHandles ---------------------------------------------------------------------------------


def test_wait_arguments(sta: None) -> None:
    """No handle array is E_INVALIDARG, an empty one RPC_E_NO_SYNC [compobj.c test_CoWaitForMultipleHandles]."""
    with raises_hr(com.E_INVALIDARG):
        com.CoWaitForMultipleHandles(0, 50, None)  # type: ignore[arg-type]
    with raises_hr(com.RPC_E_NO_SYNC):
        com.CoWaitForMultipleHandles(0, 50, [])


def test_wait_results(sta: None) -> None:
    """CoWaitForMultipleHandles returns the index of a signalled handle (the first), times out with
    RPC_S_CALLPENDING, and with COWAIT_WAITALL needs every handle [compobj.c test_CoWaitForMultipleHandles]."""
    first, second = threading.Event(), threading.Event()
    with raises_hr(com.RPC_S_CALLPENDING):
        com.CoWaitForMultipleHandles(0, 10, [first, second])
    second.set()
    assert com.CoWaitForMultipleHandles(0, 50, [first, second]) == 1
    first.set()
    assert com.CoWaitForMultipleHandles(0, 50, [first, second]) == 0
    assert com.CoWaitForMultipleHandles(com.COWAIT_WAITALL, 50, [first, second]) == 0
    second.clear()
    with raises_hr(com.RPC_S_CALLPENDING):
        com.CoWaitForMultipleHandles(com.COWAIT_WAITALL, 10, [first, second])


def test_wait_outside_an_sta() -> None:
    """Uninitialised or in the MTA, CoWaitForMultipleHandles still waits (without pumping) and times out
    with RPC_S_CALLPENDING [compobj.c test_CoWaitForMultipleHandles ("If COM was not initialized...",
    "same in an MTA")]."""
    event = threading.Event()
    with raises_hr(com.RPC_S_CALLPENDING):
        com.CoWaitForMultipleHandles(0, 10, [event, threading.Event()])
    com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
    try:
        with raises_hr(com.RPC_S_CALLPENDING):
            com.CoWaitForMultipleHandles(0, 10, [event])
        event.set()
        assert com.CoWaitForMultipleHandles(0, com.INFINITE, [event]) == 0
    finally:
        com.CoUninitialize()


def test_sta_serves_calls_while_waiting(sta: None) -> None:
    """An STA thread serves incoming calls while it waits in CoWaitForMultipleHandles: another thread
    unmarshals its object and calls it, and the wait ends when that thread is done [compobj.c
    test_CoWaitForMultipleHandles_thread (cowait_unmarshal_thread)]."""
    obj = Counted(11)
    stream = marshal(obj)
    done = threading.Event()
    box: dict[str, Any] = {}

    def caller() -> None:
        com.CoInitialize(None)
        proxy = unmarshal(stream)
        box["value"], box["where"] = proxy.Value(), proxy.Where()
        proxy.Release()
        com.CoUninitialize()
        done.set()

    thread = threading.Thread(target=caller)
    thread.start()
    assert com.CoWaitForMultipleHandles(0, 10_000, [done]) == 0
    thread.join()
    assert box == {"value": 11, "where": (threading.current_thread().name, (com.APTTYPE_MAINSTA, 0))}


# -- message filters ------------------------------------------------------------------------------------------


class Filter(com.IMessageFilter):
    """Answers HandleInComingCall from a script and records what it was told (Wine's MessageFilter)."""

    def __init__(self, answers: list[int] | None = None, retry: int = 0) -> None:
        self.answers = list(answers or [])
        self.retry = retry
        self.incoming: list[tuple[int, str]] = []
        self.rejected: list[int] = []

    def HandleInComingCall(self, dwCallType: int, htaskCaller: Any, dwTickCount: int, lpInterfaceInfo: Any) -> int:
        self.incoming.append((dwCallType, lpInterfaceInfo.wMethod))
        return self.answers.pop(0) if self.answers else com.SERVERCALL_ISHANDLED

    def RetryRejectedCall(self, htaskCallee: Any, dwTickCount: int, dwRejectType: int) -> int:
        self.rejected.append(dwRejectType)
        return self.retry

    def MessagePending(self, htaskCallee: Any, dwTickCount: int, dwPendingType: int) -> int:
        return com.PENDINGMSG_WAITDEFPROCESS


def test_register_message_filter_needs_an_sta() -> None:
    """Message filters are for STAs: uninitialised and MTA threads get CO_E_NOT_SUPPORTED; an STA gets
    the previous filter back (None at first) [compobj.c test_CoRegisterMessageFilter]."""
    with raises_hr(com.CO_E_NOT_SUPPORTED) as info:
        com.CoRegisterMessageFilter(Filter())
    assert isinstance(info.value, aptrt.NotSupportedError)
    com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
    with raises_hr(com.CO_E_NOT_SUPPORTED):
        com.CoRegisterMessageFilter(Filter())
    com.CoUninitialize()
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    try:
        assert com.CoRegisterMessageFilter(None) is None
        first = Filter()
        assert com.CoRegisterMessageFilter(first) is None
        assert com.CoRegisterMessageFilter(None) is first
    finally:
        com.CoUninitialize()


def test_rejected_call_and_client_retry(sta: None) -> None:
    """A server filter's SERVERCALL_REJECTED fails a client without filter with RPC_E_CALL_REJECTED; a
    client filter whose RetryRejectedCall answers 0 has the call retried (through RETRYLATER) until
    handled [marshal.c test_message_filter]."""
    server = Filter([com.SERVERCALL_REJECTED, com.SERVERCALL_RETRYLATER])
    with ComThread(name="filtered") as host:
        stream = host.run(lambda: (com.CoRegisterMessageFilter(server), marshal(Counted()))[1])
        proxy = unmarshal(stream)
        with raises_hr(com.RPC_E_CALL_REJECTED) as info:
            proxy.Value()
        assert isinstance(info.value, aptrt.CallRejectedError)
        client = Filter(retry=0)
        assert com.CoRegisterMessageFilter(client) is None
        assert proxy.Value() == 42
        assert client.rejected == [com.SERVERCALL_RETRYLATER]
        proxy.Release()
        com.CoRegisterMessageFilter(None)
    assert [kind for kind, _ in server.incoming] == [com.CALLTYPE_TOPLEVEL] * 3


def test_retry_later_and_giving_up(sta: None) -> None:
    """Without a client filter a SERVERCALL_RETRYLATER answer fails with RPC_E_SERVERCALL_RETRYLATER;
    a RetryRejectedCall answer of -1 gives up with the rejection [D: IMessageFilter::RetryRejectedCall;
    D: IMessageFilter::HandleInComingCall]."""
    server = Filter([com.SERVERCALL_RETRYLATER, com.SERVERCALL_RETRYLATER])
    with ComThread(name="busy") as host:
        proxy = unmarshal(host.run(lambda: (com.CoRegisterMessageFilter(server), marshal(Counted()))[1]))
        with raises_hr(com.RPC_E_SERVERCALL_RETRYLATER):
            proxy.Value()
        client = Filter(retry=-1)
        com.CoRegisterMessageFilter(client)
        with raises_hr(com.RPC_E_SERVERCALL_RETRYLATER):
            proxy.Value()
        assert client.rejected == [com.SERVERCALL_RETRYLATER]
        proxy.Release()
        com.CoRegisterMessageFilter(None)


def test_incoming_call_types(sta: None) -> None:
    """HandleInComingCall is told CALLTYPE_TOPLEVEL for a call to an idle STA, CALLTYPE_NESTED for a
    callback on behalf of the STA's own pending call, and CALLTYPE_TOPLEVEL_CALLPENDING for an unrelated
    call arriving while it waits [D: IMessageFilter::HandleInComingCall; com-semantics.md §1.6]."""
    mine = Filter()
    com.CoRegisterMessageFilter(mine)
    here = Counted(5)
    blocked, release = threading.Event(), threading.Event()

    class Blocker(Counted):
        def Value(self) -> int:
            blocked.set()
            com.CoWaitForMultipleHandles(0, com.INFINITE, [release])
            return 0

    with ComThread(name="other") as other, ComThread(com.COINIT_MULTITHREADED, name="third") as third:
        here_stream = marshal(here)
        here_in_third = third.run(lambda: unmarshal(here_stream))
        assert third.run(here_in_third.Value) == 5  # TOPLEVEL: this STA is idle (pumping in run())
        callback = unmarshal(other.run(marshal, Counted()))
        assert callback.Call(here, "Value") == 5  # NESTED: other calls back while we wait on it
        blocker = unmarshal(other.run(marshal, Blocker()))

        def unrelated() -> int:
            wait(blocked)
            value = int(here_in_third.Value())  # TOPLEVEL_CALLPENDING: we wait on other's Blocker
            release.set()
            return value

        done, box = third.submit(unrelated)
        assert blocker.Value() == 0
        wait(done)
        assert box["value"] == 5
        third.run(here_in_third.Release)
        for proxy in (callback, blocker):
            proxy.Release()
    com.CoRegisterMessageFilter(None)
    assert mine.incoming == [
        (com.CALLTYPE_TOPLEVEL, "Value"),
        (com.CALLTYPE_NESTED, "Value"),
        (com.CALLTYPE_TOPLEVEL_CALLPENDING, "Value"),
    ]


def test_filter_released_with_its_apartment() -> None:
    """Tearing an apartment down releases its message filter [com-semantics.md §1.1; W:apartment.c
    apartment_release]."""
    flt = Filter()
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    com.CoRegisterMessageFilter(flt)
    assert flt._com_refs == 1
    com.CoUninitialize()
    assert flt._com_refs == 0
