"""Fuzzing ``aptrt.com`` with hypothesis: every facade function that takes arguments, and the methods of
the objects the facade hands out (the GIT, marshal streams, the object context, QueryInterface), called
with arbitrary arguments: None, bools, ints (negative, huge, DWORD edges), floats (NaN, inf), text,
bytes, GUID-like strings, UUIDs, classes, arbitrary objects, COM objects, live, released and stale
marshal streams, live and released proxies.

The contract checked (the one tests/test_bad_input.py pins case by case, and the README's "Bad input"):

* a call either returns or raises :class:`aptrt.COMError`, never anything else: bad values and wrong
  types are ``InvalidArgumentError`` (``E_INVALIDARG``; also a ``ValueError``), unknown interfaces
  ``NoInterfaceError`` (``E_NOINTERFACE``; also a ``TypeError``). Plain ``TypeError``/``ValueError`` are
  only Python's own call errors (a wrong number of arguments), which the fuzzer never makes;
* the error's ``.hresult`` is a known failing HRESULT (a member of :class:`aptrt.HRESULT`), and its class
  is the core's typed class for that code (``COMError`` itself where the core has none);
* the thread's COM state survives: it is still the main STA with one initialisation, no message filter
  or class registration is left behind, and marshaling and cross-apartment calls still work.

No call can block: the only waiting function, ``CoWaitForMultipleHandles``, is only ever given events that
are already set, and the default context refuses ``CoDisconnectContext`` at once.

Speed: the examples per test come from the hypothesis profile tests/conftest.py loads: ``ci`` (the
default, fast) or ``thorough`` (``APTRT_HYPOTHESIS_PROFILE=thorough``, or ``pytest
--hypothesis-profile=thorough``).
"""

from __future__ import annotations

import inspect
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aptrt
from aptrt import com
from aptrt.com import _init

from .com_support import (
    ComThread,
    Counted,
    Factory,
    IOther,
    ITest,
    com_clean,
    cross_apartment_value,
    released,
    unmarshaled,
)
from .test_bad_input import FACADE, ComPinger, IComBadInput, NoArgs, Pinger, _Filter

__all__ = ["com_clean"]

#: the core's typed class for each HRESULT that has one (any other failure is a plain COMError)
TYPED: dict[int, type[aptrt.COMError]] = {
    com.E_INVALIDARG: aptrt.InvalidArgumentError,
    com.E_NOINTERFACE: aptrt.NoInterfaceError,
    com.CO_E_NOTINITIALIZED: aptrt.NotInitializedError,
    com.RPC_E_CHANGED_MODE: aptrt.ChangedModeError,
    com.CO_E_NOT_SUPPORTED: aptrt.NotSupportedError,
    com.CONTEXT_E_WOULD_DEADLOCK: aptrt.WouldDeadlockError,
    com.RPC_E_TIMEOUT: aptrt.RPCTimeoutError,
    com.REGDB_E_CLASSNOTREG: aptrt.ClassNotRegisteredError,
    com.RPC_E_WRONG_THREAD: aptrt.WrongThreadError,
    com.RPC_E_DISCONNECTED: aptrt.DisconnectedError,
    com.CO_E_OBJNOTCONNECTED: aptrt.ObjectNotConnectedError,
    com.RPC_E_CALL_REJECTED: aptrt.CallRejectedError,
    com.RPC_E_SERVERCALL_RETRYLATER: aptrt.RetryLaterError,
    com.RPC_E_CALL_CANCELED: aptrt.CallCancelledError,
}

_SET = threading.Event()
_SET.set()


# -- what the fuzzer draws ------------------------------------------------------------------------------


class Pool:
    """Objects made on demand for one example: streams, proxies, COM objects (a host STA serves the
    proxies' objects). Made on the test's thread, after COM is initialised there."""

    def __init__(self, host: ComThread | None) -> None:
        self.host = host

    def make(self, kind: str) -> Any:
        return getattr(self, f"_{kind}")()

    def _object(self) -> Any:
        return Counted()

    def _both(self) -> Any:
        from .com_support import Both

        return Both()

    def _factory(self) -> Any:
        return Factory()

    def _filter(self) -> Any:
        return _Filter()

    def _ftm(self) -> Any:
        return com.CoCreateFreeThreadedMarshaler(None)

    def _git(self) -> Any:
        return com.CoCreateInstance(
            com.CLSID_StdGlobalInterfaceTable, None, com.CLSCTX_INPROC_SERVER, com.IID_IGlobalInterfaceTable
        )

    def _empty_stream(self) -> Any:
        return com.CreateStreamOnHGlobal(None, True)

    def _stream(self) -> Any:
        return com.CoMarshalInterThreadInterfaceInStream(ITest, Counted())

    def _table_stream(self) -> Any:
        stream = com.CreateStreamOnHGlobal(None, True)
        com.CoMarshalInterface(stream, ITest, Counted(), com.MSHCTX_INPROC, None, com.MSHLFLAGS_TABLESTRONG)
        stream.Seek(0, com.STREAM_SEEK_SET)
        return stream

    def _used_stream(self) -> Any:
        return unmarshaled(self._stream())

    def _released_stream(self) -> Any:
        return released(self._stream())

    def _proxy(self) -> Any:
        if self.host is None:
            return Counted()
        stream = self.host.run(lambda: com.CoMarshalInterThreadInterfaceInStream(ITest, Counted()))
        return com.CoGetInterfaceAndReleaseStream(stream, ITest)

    def _released_proxy(self) -> Any:
        proxy = self._proxy()
        proxy.Release()
        return proxy

    def _proxy_stream(self) -> Any:
        if self.host is None:
            return self._stream()
        return self.host.run(lambda: com.CoMarshalInterThreadInterfaceInStream(ITest, Counted()))


#: pool kinds usable on a thread that is not initialised
UNINITIALISED_KINDS = ("object", "both", "factory", "filter", "ftm", "empty_stream")
ALL_KINDS = (
    *UNINITIALISED_KINDS,
    "git",
    "stream",
    "table_stream",
    "used_stream",
    "released_stream",
    "proxy",
    "released_proxy",
    "proxy_stream",
)


class Made:
    """A pool object to make when the example runs (hypothesis only sees its kind)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<{self.kind}>"


def _guid_strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.uuids().map(str),
        st.uuids().map(lambda u: "{" + str(u) + "}"),
        st.uuids().map(lambda u: " {" + str(u).upper() + "} "),
        st.text(alphabet="0123456789abcdefABCDEF-{}", max_size=40),
    )


INTERESTING_INTS = st.sampled_from(
    [0, 1, 2, 3, 4, 5, 8, 0x10, 0x17, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 2**32, -1, -(2**31)]
)

JUNK: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    INTERESTING_INTS,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=8),
    _guid_strings(),
    st.uuids(),
    st.sampled_from([int, str, object, Counted, ITest, IOther, aptrt.Interface, com.IUnknown, ComPinger]),
    st.builds(object),
    st.lists(st.integers(min_value=-3, max_value=3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)

IIDS = st.sampled_from(
    [
        ITest,
        IOther,
        IComBadInput,
        com.IUnknown,
        com.IID_IUnknown,
        com.IID_IClassFactory,
        com.IID_IContextCallback,
        com.IID_IComThreadingInfo,
        com.IID_IGlobalInterfaceTable,
        com.IID_IStream,
        com.IID_IMarshal,
        str(ITest.__iid__),
        "{" + str(IOther.__iid__) + "}",
    ]
)
CLSIDS = st.sampled_from(
    [
        ComPinger,
        Pinger,
        "AptrtBadInput.ComPinger.1",
        "AptrtBadInput.Pinger.1",
        "{" + str(ComPinger.__clsid__) + "}",  # type: ignore[attr-defined]
        com.CLSID_StdGlobalInterfaceTable,
        com.CLSID_ContextSwitcher,
        com.CLSID_InProcFreeMarshaler,
        com.CLSID_StdMarshal,
    ]
)
CLSCTX = st.sampled_from([com.CLSCTX_INPROC_SERVER, com.CLSCTX_LOCAL_SERVER, com.CLSCTX_ALL, com.CLSCTX_SERVER, 0])


def _objects(kinds: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(kinds).map(Made)


def _streams(kinds: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from([k for k in kinds if k.endswith("stream")]).map(Made)


def _handles() -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(st.one_of(st.just(_SET), JUNK), max_size=3), st.just([_SET]), JUNK)


def _callbacks() -> st.SearchStrategy[Any]:
    return st.sampled_from([lambda data: None, lambda data: com.S_FALSE, lambda data: "result", repr])


def strategy_for(name: str, kinds: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """Arguments for a parameter called *name*: plausible values mixed with junk."""
    lowered = name.lower()
    if lowered in ("riid", "iid"):
        plausible: st.SearchStrategy[Any] = IIDS
    elif lowered in ("rclsid", "clsid"):
        plausible = CLSIDS
    elif lowered == "lpszprogid":
        plausible = st.one_of(st.sampled_from(["AptrtBadInput.ComPinger.1", "AptrtBadInput.ComPinger"]), st.text())
    elif lowered in ("pstm",):
        plausible = _streams(kinds)
    elif lowered in ("punk", "punkouter", "pv", "lpmessagefilter"):
        plausible = _objects(kinds)
    elif lowered == "dwclscontext":
        plausible = CLSCTX
    elif lowered in ("dwtimeout", "ultimeout"):
        plausible = st.integers(min_value=0, max_value=50)
    elif lowered == "phandles":
        plausible = _handles()
    elif lowered == "pfncallback":
        plausible = _callbacks()
    elif lowered == "imethod":
        plausible = st.integers(min_value=0, max_value=10)
    elif lowered.startswith(("dw", "ul", "mshl", "flags", "hr", "cookie", "dlib")):
        plausible = INTERESTING_INTS
    else:
        plausible = JUNK
    return st.one_of(plausible, JUNK, _objects(kinds))


def realise(value: Any, pool: Pool) -> Any:
    if isinstance(value, Made):
        return pool.make(value.kind)
    if isinstance(value, list):
        return [realise(item, pool) for item in value]
    return value


# -- targets --------------------------------------------------------------------------------------------

#: functions with arguments (the ones without have nothing to fuzz: tests/test_bad_input.py covers them)
FUNCTIONS = sorted(name for name, cases in FACADE.items() if not isinstance(cases, NoArgs))

#: methods of objects the facade hands out: name → (pool kind of the object, method)
METHODS = {
    "GIT.RegisterInterfaceInGlobal": ("git", "RegisterInterfaceInGlobal"),
    "GIT.RevokeInterfaceFromGlobal": ("git", "RevokeInterfaceFromGlobal"),
    "GIT.GetInterfaceFromGlobal": ("git", "GetInterfaceFromGlobal"),
    "IStream.Seek": ("stream", "Seek"),
    "IUnknown.QueryInterface": ("object", "QueryInterface"),
    "ComProxy.QueryInterface": ("proxy", "QueryInterface"),
    "IMarshal.MarshalInterface": ("ftm", "MarshalInterface"),
    "IMarshal.UnmarshalInterface": ("ftm", "UnmarshalInterface"),
    "ContextCallback": ("context", "ContextCallback"),
}


def _signature(fn: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _undo(name: str, result: Any) -> None:
    """Undo what a successful call changed in the thread's state."""
    if name in ("CoInitializeEx", "CoInitialize"):
        com.CoUninitialize()
    elif name == "CoEnableCallCancellation":
        com.CoDisableCallCancellation(None)
    elif name == "CoRegisterMessageFilter":
        com.CoRegisterMessageFilter(None)
    elif name == "CoRegisterClassObject":
        com.CoRevokeClassObject(result)


def check_error(exc: BaseException, where: str) -> None:
    """The facade's contract for a failing call (see the module docstring)."""
    assert isinstance(exc, aptrt.COMError), f"{where} raised {type(exc).__name__}: {exc!r}"
    assert type(exc.hresult) is int, where
    code = aptrt.HRESULT(exc.hresult)  # a known code (ValueError otherwise)
    assert code.failed, f"{where} raised {code.name}, which is a success code"
    assert type(exc) is TYPED.get(code, aptrt.COMError), f"{where}: {type(exc).__name__} carries {code.name}"


def call(fn: Callable[..., Any], args: list[Any], where: str) -> tuple[Any, bool]:
    """Call and check; returns (result, succeeded)."""
    try:
        return fn(*args), True
    except Exception as exc:  # noqa: BLE001 - checked against the contract
        check_error(exc, where)
        return None, False


def fuzz_call(
    fn: Callable[..., Any], name: str, data: st.DataObject, kinds: tuple[str, ...], pool: Pool
) -> tuple[Any, bool]:
    """Draw an argument of *kinds* for each parameter of *fn*, call it and check the outcome."""
    drawn = [data.draw(strategy_for(param, kinds), label=param) for param in _signature(fn)]
    args = [realise(value, pool) for value in drawn]
    return call(fn, args, f"{name}{tuple(drawn)!r}")


# -- the STA fuzz: the test's thread is the main STA ---------------------------------------------------


@pytest.fixture
def sta_pool() -> Iterator[Pool]:
    """The test's thread as the main STA, a host STA for proxies; at the end, COM still works across
    apartments and comes down cleanly."""
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    try:
        with ComThread(name="fuzz-host") as host:
            yield Pool(host)
            assert_cross_apartment_call_works()
    finally:
        com.CoUninitialize()


def assert_cross_apartment_call_works() -> None:
    assert cross_apartment_value(Counted(9)) == 9  # an MTA thread calls this STA, which serves it while it waits


def assert_sta_intact() -> None:
    assert com.CoGetApartmentType() == (com.APTTYPE_MAINSTA, com.APTTYPEQUALIFIER_NONE)
    assert _init.tl.inits == 1
    previous = com.CoRegisterMessageFilter(None)
    assert previous is None, "a message filter was left behind"
    obj = Counted()
    assert com.CoGetInterfaceAndReleaseStream(com.CoMarshalInterThreadInterfaceInStream(ITest, obj), ITest) is obj
    assert obj.locks == 1
    with pytest.raises(aptrt.COMError):
        com.CoDisableCallCancellation(None)  # no CoEnableCallCancellation left unbalanced


FUZZ_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.parametrize("name", FUNCTIONS)
@FUZZ_SETTINGS
@given(data=st.data())
def test_fuzz_function(sta_pool: Pool, name: str, data: st.DataObject) -> None:
    result, ok = fuzz_call(getattr(com, name), name, data, ALL_KINDS, sta_pool)
    if ok:
        _undo(name, result)
    assert_sta_intact()


@pytest.mark.parametrize("name", sorted(METHODS))
@FUZZ_SETTINGS
@given(data=st.data())
def test_fuzz_method(sta_pool: Pool, name: str, data: st.DataObject) -> None:
    kind, method = METHODS[name]
    target = com.CoGetObjectContext(com.IID_IContextCallback) if kind == "context" else sta_pool.make(kind)
    fuzz_call(getattr(target, method), name, data, ALL_KINDS, sta_pool)
    assert_sta_intact()


# -- the uninitialised fuzz: no apartment on this thread and no MTA -------------------------------------


def assert_uninitialised() -> None:
    with pytest.raises(aptrt.NotInitializedError):
        com.CoGetApartmentType()
    state = _init.facade_state()
    assert not state["runtime_open"], state


@pytest.mark.parametrize("name", FUNCTIONS)
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_uninitialised(name: str, data: st.DataObject) -> None:
    result, ok = fuzz_call(getattr(com, name), name, data, UNINITIALISED_KINDS, Pool(None))
    if ok:
        _undo(name, result)
    assert_uninitialised()


def test_fuzz_covers_every_function_with_arguments() -> None:
    with_args = {name for name, cases in FACADE.items() if not isinstance(cases, NoArgs)}
    assert set(FUNCTIONS) == with_args
    assert all(_signature(getattr(com, name)) for name in FUNCTIONS)


def test_made_objects() -> None:
    """The pool's repr names the kind (hypothesis prints it in a failing example)."""
    assert repr(Made("proxy")) == "<proxy>"
    assert uuid.UUID(str(ITest.__iid__))
