"""aptrt.com conformance: object contexts, IContextCallback, the context switcher, CoGetContextToken,
CoDisconnectContext (the seed), and the logical thread id.

Wine has no real CoDisconnectContext (its ContextCallback returns E_NOTIMPL), so the context behaviours
come from the documentation ([D: CoDisconnectContext], [D: IContextCallback::ContextCallback]).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import aptrt
from aptrt import com

from .com_support import (
    ComThread,
    Counted,
    Factory,
    ITest,
    com_clean,
    in_thread,
    marshal,
    raises_hr,
    sta,
    unmarshal,
    wait,
)

__all__ = ["com_clean", "sta"]

CLSID_InContext = "{3e1b6a70-9d5c-4c8e-9d55-0f3c7a1b2f01}"


@pytest.fixture
def mta() -> Iterator[None]:
    com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
    try:
        yield
    finally:
        com.CoUninitialize()


def switcher() -> Any:
    return com.CoCreateInstance(com.CLSID_ContextSwitcher, None, com.CLSCTX_INPROC_SERVER, com.IID_IContextCallback)


def enter(icc: Any, fn: Any, data: Any = None) -> Any:
    return icc.ContextCallback(fn, data, com.IID_IContextCallback, 5, None)


def test_object_context_in_an_sta() -> None:
    """CoGetObjectContext needs COM (CO_E_NOTINITIALIZED), gives the same object each time, and says
    APTTYPE_MAINSTA / THDTYPE_PROCESSMESSAGES in the main STA [compobj.c test_CoGetObjectContext]."""
    with raises_hr(com.CO_E_NOTINITIALIZED):
        com.CoGetObjectContext(com.IID_IComThreadingInfo)
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    try:
        info = com.CoGetObjectContext(com.IID_IComThreadingInfo)
        assert com.CoGetObjectContext(com.IID_IComThreadingInfo) is info
        assert info.GetCurrentApartmentType() == com.APTTYPE_MAINSTA
        assert info.GetCurrentThreadType() == com.THDTYPE_PROCESSMESSAGES
        assert com.CoGetObjectContext(com.IID_IContextCallback) is info
    finally:
        com.CoUninitialize()


def test_object_context_in_the_mta(mta: None) -> None:
    """In the MTA the context object says APTTYPE_MTA / THDTYPE_BLOCKMESSAGES and offers IObjContext
    [compobj.c test_CoGetObjectContext]."""
    info = com.CoGetObjectContext(com.IID_IComThreadingInfo)
    assert info.GetCurrentApartmentType() == com.APTTYPE_MTA
    assert info.GetCurrentThreadType() == com.THDTYPE_BLOCKMESSAGES
    assert com.CoGetObjectContext(com.IID_IObjContext) is info


def test_logical_thread_id(sta: None) -> None:
    """CoGetCurrentLogicalThreadId gives a non-null GUID, the same as the context's
    IComThreadingInfo::GetCurrentLogicalThreadId, and works without COM initialised [compobj.c
    test_CoGetCurrentLogicalThreadId, test_CoGetObjectContext, test_oletlsdata]."""
    logical = com.CoGetCurrentLogicalThreadId()
    assert isinstance(logical, uuid.UUID) and logical != com.GUID_NULL
    assert com.CoGetObjectContext(com.IID_IComThreadingInfo).GetCurrentLogicalThreadId() == logical
    other = in_thread(com.CoGetCurrentLogicalThreadId)
    assert other != com.GUID_NULL and other != logical


def test_logical_thread_id_travels_with_calls(sta: None) -> None:
    """The caller's logical thread id travels with every call and nested call (ORPCTHIS.cid) [com-semantics.md
    §1.6; marshal.c test_channel_hook (the same causality in every hook of a call)]."""

    class Causal(Counted):
        def Value(self) -> Any:
            return com.CoGetCurrentLogicalThreadId()

        def Call(self, other: Any, method: str) -> Any:
            return (com.CoGetCurrentLogicalThreadId(), getattr(other, method)())

    mine = com.CoGetCurrentLogicalThreadId()
    with ComThread(name="b") as b, ComThread(name="c") as c:
        in_b = unmarshal(b.run(marshal, Causal()))
        c_proxy_in_b = b.run(lambda: unmarshal(c.run(marshal, Causal())))
        assert in_b.Value() == mine
        assert in_b.Call(c_proxy_in_b, "Value") == (mine, mine)  # nested: B calls C for us
        b.run(c_proxy_in_b.Release)
        in_b.Release()


def test_context_token(sta: None) -> None:
    """CoGetContextToken names the current context (stable, the object context's identity) without
    taking a reference; uninitialised, CO_E_NOTINITIALIZED [compobj.c test_CoGetContextToken]."""
    token = com.CoGetContextToken()
    assert token and token == com.CoGetContextToken()
    ctx = com.CoGetObjectContext(com.IID_IObjContext)
    refs = ctx.AddRef() - 1
    assert ctx.token == token
    com.CoGetContextToken()
    assert ctx.Release() == refs  # the token took no reference
    with raises_hr(com.CO_E_NOTINITIALIZED):
        in_thread(com.CoGetContextToken)


def test_context_callback_arguments(sta: None) -> None:
    """ContextCallback refuses riid IID_IUnknown, a method number below 3, a pUnk, and no callback:
    E_INVALIDARG [D: IContextCallback::ContextCallback]."""
    icc = switcher()
    with raises_hr(com.E_INVALIDARG):
        icc.ContextCallback(lambda data: None, None, com.IID_IUnknown, 5, None)
    with raises_hr(com.E_INVALIDARG):
        icc.ContextCallback(lambda data: None, None, com.IID_IContextCallback, 2, None)
    with raises_hr(com.E_INVALIDARG):
        icc.ContextCallback(lambda data: None, None, com.IID_IContextCallback, 5, Counted())
    with raises_hr(com.E_INVALIDARG):
        icc.ContextCallback(None, None, com.IID_IContextCallback, 5, None)


def test_context_switcher_enters_one_new_context(sta: None) -> None:
    """The context switcher's ContextCallback runs the callback inside one new context (the same one
    each time) and returns what the callback returns: None is S_OK, a failing HRESULT fails the call
    [D: CoDisconnectContext (the example); D: IContextCallback::ContextCallback]."""
    default = com.CoGetContextToken()
    icc = switcher()
    inside = enter(icc, lambda data: data.append(com.CoGetContextToken()) or com.S_FALSE, seen := [])
    assert inside == com.S_FALSE
    assert enter(icc, lambda data: data.append(com.CoGetContextToken()), seen) == com.S_OK
    assert seen[0] != default and seen[0] == seen[1]
    assert com.CoGetContextToken() == default  # back outside
    with raises_hr(com.E_FAIL):
        enter(icc, lambda data: com.E_FAIL)
    assert switcher() is not icc and enter(switcher(), lambda data: com.CoGetContextToken()) != seen[0]


def test_context_callback_from_another_apartment(sta: None) -> None:
    """Through an apartment's context object, another apartment runs a callback inside that context,
    on the context's own thread [D: IContextCallback::ContextCallback; D: CoGetObjectContext]."""
    here = com.CoGetObjectContext(com.IID_IContextCallback)
    token = com.CoGetContextToken()
    with ComThread() as other:
        seen = other.run(enter, here, lambda data: (threading.current_thread().name, com.CoGetContextToken()))
    assert seen == (threading.current_thread().name, token)


def test_disconnect_default_context(sta: None) -> None:
    """A default context cannot be disconnected: CO_E_NOTSUPPORTED; the timeout is in milliseconds,
    INFINITE allowed, negative E_INVALIDARG [D: CoDisconnectContext]."""
    with raises_hr(com.CO_E_NOTSUPPORTED) as info:
        com.CoDisconnectContext(com.INFINITE)
    assert isinstance(info.value, aptrt.NotSupportedError)
    with raises_hr(com.E_INVALIDARG):
        com.CoDisconnectContext(-1)
    assert enter(switcher(), lambda data: com.CoDisconnectContext(com.INFINITE)) == com.S_OK


class _Service(Counted):
    """An object of the context (its factory was registered inside it)."""

    def __init__(self, shared: dict[str, Any]) -> None:
        super().__init__()
        self.shared = shared

    def Value(self) -> int:
        self.shared["started"].set()
        com.CoWaitForMultipleHandles(0, com.INFINITE, [self.shared["finish"]])
        return 1

    def Call(self, other: Any, method: str) -> Any:
        return com.CoDisconnectContext(com.INFINITE)  # from a call on an object of the context


@pytest.fixture
def service(mta: None) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A context of the MTA with a class factory registered inside it (the seed's setup)."""
    shared: dict[str, Any] = {"started": threading.Event(), "finish": threading.Event()}
    icc = switcher()
    factory = Factory(lambda: _Service(shared))

    def register(data: dict[str, Any]) -> None:
        data["cookie"] = com.CoRegisterClassObject(
            CLSID_InContext, factory, com.CLSCTX_LOCAL_SERVER, com.REGCLS_MULTIPLEUSE
        )
        data["token"] = com.CoGetContextToken()

    enter(icc, register, shared)
    yield icc, shared
    shared["finish"].set()


def test_disconnect_context_waits_for_outstanding_calls(service: tuple[Any, dict[str, Any]]) -> None:
    """Objects made by a class factory registered inside a context live in it; CoDisconnectContext,
    called back inside it, times out with RPC_E_TIMEOUT while a call runs, and must be called again
    until S_OK; then the objects' clients get RPC_E_DISCONNECTED and the factory is gone
    [D: CoDisconnectContext]."""
    icc, shared = service
    done = threading.Event()
    box: dict[str, Any] = {}

    def client() -> None:
        com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
        try:
            proxy = com.CoCreateInstance(CLSID_InContext, None, com.CLSCTX_LOCAL_SERVER, ITest)
            box["value"] = proxy.Value()  # outstanding while the host disconnects
            with raises_hr(com.RPC_E_DISCONNECTED):
                proxy.Value()
            proxy.Release()
            with raises_hr(com.REGDB_E_CLASSNOTREG):
                com.CoCreateInstance(CLSID_InContext, None, com.CLSCTX_LOCAL_SERVER, ITest)
        finally:
            com.CoUninitialize()
            done.set()

    thread = threading.Thread(target=client)
    thread.start()
    wait(shared["started"])

    def disconnect(timeout: int) -> Any:
        def callback(data: dict[str, Any]) -> int:
            assert com.CoGetContextToken() == data["token"]
            if "cookie" in data:
                com.CoRevokeClassObject(data.pop("cookie"))
            return com.CoDisconnectContext(timeout)

        return enter(icc, callback, shared)

    with raises_hr(com.RPC_E_TIMEOUT) as info:
        disconnect(20)
    assert isinstance(info.value, aptrt.RPCTimeoutError)
    shared["finish"].set()
    assert disconnect(com.INFINITE) == com.S_OK
    wait(done)
    thread.join()
    assert box["value"] == 1


def test_disconnect_from_inside_a_call_would_deadlock(service: tuple[Any, dict[str, Any]]) -> None:
    """An object that calls CoDisconnectContext on the context it lives in gets CONTEXT_E_WOULD_DEADLOCK
    [D: CoDisconnectContext]."""
    icc, shared = service

    def client() -> Any:
        com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
        try:
            proxy = com.CoCreateInstance(CLSID_InContext, None, com.CLSCTX_LOCAL_SERVER, ITest)
            try:
                with raises_hr(com.CONTEXT_E_WOULD_DEADLOCK) as info:
                    proxy.Call(None, "")
                return type(info.value)
            finally:
                proxy.Release()
        finally:
            com.CoUninitialize()

    assert in_thread(client) is aptrt.WouldDeadlockError
    enter(icc, lambda data: com.CoRevokeClassObject(data["cookie"]), shared)


def test_seed_sample() -> None:
    """The seed's example, runnable: register inside the switcher's context, disconnect in a second
    callback, retried until S_OK (RPC_E_TIMEOUT first, with a call outstanding) [D: CoDisconnectContext;
    seed 000]."""
    from aptrt.samples import disconnect_context

    lines: list[str] = []
    results = disconnect_context.main(say=lines.append)
    assert results["attempts"] == ["RPC_E_TIMEOUT", "S_OK"]
    assert results["work"] == "work done" and results["after"] == "RPC_E_DISCONNECTED"
    assert results["ping"].startswith("pong from context")
    assert len(lines) == 5
