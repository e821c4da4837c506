"""Bad input at the public boundary: a sweep over aptrt's public API and over every function ``aptrt.com``
exports, given None, wrong types, out-of-range numbers (negative, NaN, inf, huge), unknown cookies, CLSIDs,
ProgIDs and IIDs, stale or foreign marshal data and released proxies.

Each case asserts the exact exception type and, where COM defines one, the exact HRESULT (the codes of
com-semantics.md §1.8; Wine's compobj.c/marshal.c where they test the case), then that the runtime is still
usable: a normal cross-apartment call still works. No case can hang: async waits run under
``anyio.fail_after``, blocking ones under their own timeouts, and pytest-timeout bounds the rest.

The contract these cases pin (README, "Bad input"):

* a bad value, or a value of the wrong type, is ``InvalidArgumentError`` (``E_INVALIDARG``; also a
  ``ValueError``), raised before anything changes; a missing (None) required argument too;
* an interface the object does not implement, or an IID no interface declares, is ``NoInterfaceError``
  (``E_NOINTERFACE``; also a ``TypeError``);
* unknown cookies answer as COM does: ``CO_E_OBJNOTREG`` for class objects, ``E_INVALIDARG`` for the GIT
  and MTA usage cookies; unknown classes ``REGDB_E_CLASSNOTREG``; in the facade, a string that is neither a
  GUID nor a known ProgID ``CO_E_CLASSSTRING``;
* stale marshal data (already used, released, or its object or apartment gone) is
  ``ObjectNotConnectedError`` (``CO_E_OBJNOTCONNECTED``); a released proxy is ``InvalidArgumentError``
  in the core and ``CO_E_OBJNOTCONNECTED`` in the facade; a disconnected one ``RPC_E_DISCONNECTED``;
* COM used on a thread that is not initialised (and no MTA) is ``NotInitializedError`` (``CO_E_NOTINITIALIZED``);
* a Python-level call error (a wrong number of arguments, an unknown keyword) stays a ``TypeError``, and
  an exception raised by user code (a constructor, a callback) reaches the caller as itself.

``Runtime(watchdog=..., watchdog_interval=...)`` are checked in tests/test_faults.py.
"""

from __future__ import annotations

import inspect
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import pytest

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
    in_thread,
    released,
    unmarshaled,
)
from .objects import Counter, Gate, ICounter, IGate, IUnrelated, Signals, wait_event, wait_until

__all__ = ["com_clean"]

E_INVALIDARG = aptrt.HRESULT.E_INVALIDARG
INVALID = (aptrt.InvalidArgumentError, com.E_INVALIDARG)
NOINTERFACE = (aptrt.NoInterfaceError, com.E_NOINTERFACE)
NOTINIT = (aptrt.NotInitializedError, com.CO_E_NOTINITIALIZED)
NOTCONNECTED = (aptrt.ObjectNotConnectedError, com.CO_E_OBJNOTCONNECTED)
DISCONNECTED = (aptrt.DisconnectedError, com.RPC_E_DISCONNECTED)
CLASSNOTREG = (aptrt.ClassNotRegisteredError, com.REGDB_E_CLASSNOTREG)
CLASSSTRING = (aptrt.COMError, com.CO_E_CLASSSTRING)
OBJNOTREG = (aptrt.COMError, com.CO_E_OBJNOTREG)
OBJISREG = (aptrt.COMError, com.CO_E_OBJISREG)
NOTSUPPORTED = (aptrt.NotSupportedError, com.CO_E_NOT_SUPPORTED)
READFAULT = (aptrt.COMError, com.STG_E_READFAULT)
CANCEL_DISABLED = (aptrt.COMError, com.CO_E_CANCEL_DISABLED)
OK: tuple[None, None] = (None, None)

#: a bound for every wait in this module (a bound, never an ordering device)
TIMEOUT = 10.0

UNKNOWN_GUID = "{6b1f2a44-0000-4000-8000-00000000bad1}"
NAN = float("nan")
INF = float("inf")


class IBadInput(aptrt.Interface, iid="6b1f2a44-1d3e-4f51-9a0e-2c7b5e0d1a01"):
    def ping(self) -> str:
        raise NotImplementedError


@aptrt.coclass(clsid="6b1f2a44-1d3e-4f51-9a0e-2c7b5e0d1a02", progid="AptrtBadInput.Pinger.1", threading_model="Both")
class Pinger(IBadInput):
    def ping(self) -> str:
        return "pong"


class IComBadInput(com.IUnknown, iid="6b1f2a44-1d3e-4f51-9a0e-2c7b5e0d1a03"):
    def Ping(self) -> str:
        raise NotImplementedError


@aptrt.coclass(clsid="6b1f2a44-1d3e-4f51-9a0e-2c7b5e0d1a04", progid="AptrtBadInput.ComPinger.1", threading_model="Both")
class ComPinger(IComBadInput):
    def Ping(self) -> str:
        return "pong"


def expect(exc: BaseException | None, error: type[BaseException] | None, hresult: int | None) -> None:
    """*exc* is exactly of type *error* (None: no exception) with exactly *hresult*."""
    if error is None:
        assert exc is None, f"expected success, got {type(exc).__name__}: {exc}"
        return
    assert exc is not None, f"expected {error.__name__}, got success"
    assert type(exc) is error, f"expected {error.__name__}, got {type(exc).__name__}: {exc}"
    if hresult is not None:
        assert isinstance(exc, aptrt.COMError)
        assert exc.hresult == hresult, f"{exc.hresult_name} instead of {aptrt.HRESULT(hresult).name}: {exc}"


def outcome(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return None, exc


# ======================================================================================================
# The core API, sync parts: no runtime needed
# ======================================================================================================


def assert_runtime_usable() -> None:
    """A fresh runtime opens, starts an STA and makes a cross-apartment call."""
    with aptrt.Runtime() as rt:
        sta = rt.start_sta_blocking("usable")
        proxy = sta.create_blocking(Counter)
        assert aptrt.blocking(proxy, timeout=TIMEOUT).add(2) == 2


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"mta_workers": 0}, INVALID, id="mta_workers=0"),
        pytest.param({"mta_workers": -1}, INVALID, id="mta_workers=-1"),
        pytest.param({"mta_workers": 1.5}, INVALID, id="mta_workers=1.5"),
        pytest.param({"mta_workers": NAN}, INVALID, id="mta_workers=nan"),
        pytest.param({"mta_workers": INF}, INVALID, id="mta_workers=inf"),
        pytest.param({"mta_workers": "4"}, INVALID, id="mta_workers='4'"),
        pytest.param({"mta_workers": True}, INVALID, id="mta_workers=True"),
        pytest.param({"mta_workers": 2**70}, OK, id="mta_workers=huge"),
        pytest.param({"backend": None}, INVALID, id="backend=None"),
        pytest.param({"backend": ""}, INVALID, id="backend=''"),
        pytest.param({"backend": "TRIO"}, INVALID, id="backend='TRIO'"),
        pytest.param({"backend": "curio"}, INVALID, id="backend='curio'"),
        pytest.param({"backend": b"trio"}, INVALID, id="backend=b'trio'"),
        pytest.param({"backend": 1}, INVALID, id="backend=1"),
    ],
)
def test_runtime_options(kwargs: dict[str, Any], error: tuple[Any, Any]) -> None:
    _, exc = outcome(lambda: aptrt.Runtime(**kwargs))
    expect(exc, *error)
    assert_runtime_usable()


def test_runtime_misuse() -> None:
    """A runtime that is not open starts no STA (CO_E_NOTINITIALIZED, even with bad arguments checked
    first); one entered twice refuses; a thread of another runtime's apartment cannot open one."""
    rt = aptrt.Runtime()
    _, exc = outcome(lambda: rt.start_sta_blocking())
    expect(exc, *NOTINIT)
    _, exc = outcome(lambda: rt.start_sta_blocking(5))  # type: ignore[arg-type]
    expect(exc, *INVALID)
    with rt:
        _, exc = outcome(rt.__enter__)
        expect(exc, RuntimeError, None)
        sta = rt.start_sta_blocking("inner")

        def open_inside() -> None:
            with aptrt.Runtime():
                pass

        _, exc = outcome(lambda: sta.run_sync_blocking(open_inside, timeout=TIMEOUT))
        expect(exc, aptrt.ChangedModeError, com.RPC_E_CHANGED_MODE)
    _, exc = outcome(lambda: rt.start_sta_blocking())
    expect(exc, *NOTINIT)
    assert_runtime_usable()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param(lambda: aptrt.current_apartment(), NOTINIT, id="current_apartment"),
        pytest.param(lambda: aptrt.current_runtime(), NOTINIT, id="current_runtime"),
        pytest.param(lambda: aptrt.current_context(), NOTINIT, id="current_context"),
        pytest.param(lambda: aptrt.context_token(), NOTINIT, id="context_token"),
        pytest.param(lambda: aptrt.disconnect_object(None), INVALID, id="disconnect_object(None)"),
        pytest.param(lambda: aptrt.disconnect_object(Counter()), NOTINIT, id="disconnect_object(obj)"),
        pytest.param(lambda: aptrt.check_cancelled(), OK, id="check_cancelled"),
        pytest.param(lambda: aptrt.current_cancel_reason(), OK, id="current_cancel_reason"),
        pytest.param(lambda: aptrt.blocking(None), INVALID, id="blocking(None)"),  # type: ignore[arg-type]
        pytest.param(lambda: aptrt.blocking(Counter()), INVALID, id="blocking(obj)"),  # type: ignore[arg-type]
        pytest.param(lambda: aptrt.can_unload_now(None), INVALID, id="can_unload_now(None)"),
        pytest.param(lambda: aptrt.can_unload_now(5), INVALID, id="can_unload_now(5)"),
        pytest.param(lambda: aptrt.can_unload_now("no.such.module"), OK, id="can_unload_now(unknown)"),
        pytest.param(lambda: aptrt.server_module(5), INVALID, id="server_module(5)"),  # type: ignore[arg-type]
        pytest.param(lambda: aptrt.marshal_interface(None), INVALID, id="marshal_interface(None)"),
        pytest.param(lambda: aptrt.marshal_interface(5), INVALID, id="marshal_interface(5)"),
        pytest.param(lambda: aptrt.marshal_interface(Counter(), IUnrelated), NOINTERFACE, id="marshal(IUnrelated)"),
        pytest.param(lambda: aptrt.marshal_interface(Counter(), 5), INVALID, id="marshal(iid=5)"),  # type: ignore[arg-type]
        pytest.param(lambda: aptrt.marshal_interface(Counter(), UNKNOWN_GUID), NOINTERFACE, id="marshal(unknown-iid)"),
        pytest.param(lambda: aptrt.marshal_interface(Counter(), None, 3), INVALID, id="marshal(flags=3)"),  # type: ignore[arg-type]
        pytest.param(lambda: aptrt.marshal_interface(Counter(), None, "0"), INVALID, id="marshal(flags='0')"),  # type: ignore[arg-type]
        pytest.param(lambda: aptrt.unmarshal_interface(None), INVALID, id="unmarshal(None)"),  # type: ignore[arg-type]
        pytest.param(lambda: aptrt.unmarshal_interface(b"MEOW"), INVALID, id="unmarshal(bytes)"),  # type: ignore[arg-type]
        pytest.param(lambda: aptrt.release_marshal_data(None), INVALID, id="release(None)"),  # type: ignore[arg-type]
        pytest.param(lambda: aptrt.AgileReference(None), INVALID, id="AgileReference(None)"),
        pytest.param(lambda: aptrt.AgileReference(5), INVALID, id="AgileReference(5)"),
        pytest.param(lambda: aptrt.query_interface(None, ICounter), INVALID, id="query_interface(None)"),
        pytest.param(lambda: aptrt.query_interface(5, ICounter), NOINTERFACE, id="query_interface(5)"),
        pytest.param(lambda: aptrt.query_interface(Counter(), None), INVALID, id="query_interface(iid=None)"),  # type: ignore[call-overload]
        pytest.param(lambda: aptrt.query_interface(Counter(), "zz"), INVALID, id="query_interface(iid='zz')"),
        pytest.param(lambda: aptrt.query_interface(Counter(), UNKNOWN_GUID), NOINTERFACE, id="qi(unknown-iid)"),
        pytest.param(lambda: aptrt.query_interface(Counter(), IUnrelated), NOINTERFACE, id="qi(IUnrelated)"),
        pytest.param(lambda: aptrt.query_interface(Counter(), Counter), INVALID, id="qi(impl-class)"),
        *[
            pytest.param(lambda kw=kwargs: aptrt.RetryPolicy(**kw), error, id=f"RetryPolicy({label})")
            for label, kwargs, error in (
                ("attempts='3'", {"attempts": "3"}, INVALID),
                ("attempts=-1", {"attempts": -1}, INVALID),
                ("attempts=2.0", {"attempts": 2.0}, INVALID),
                ("delay=-1", {"delay": -1.0}, INVALID),
                ("delay=nan", {"delay": NAN}, INVALID),
                ("delay=inf", {"delay": INF}, INVALID),
                ("backoff=inf", {"backoff": INF}, INVALID),
                ("backoff='2'", {"backoff": "2"}, INVALID),
                ("max_delay=nan", {"max_delay": NAN}, INVALID),
                ("max_delay=None", {"max_delay": None}, INVALID),
                ("retry_on=5", {"retry_on": 5}, INVALID),
                ("retry_on=(ValueError,)", {"retry_on": (ValueError,)}, INVALID),
                ("max_delay=inf", {"max_delay": INF}, OK),
                ("attempts=0", {"attempts": 0}, OK),
            )
        ],
    ],
)
def test_core_functions_without_runtime(call: Callable[[], Any], error: tuple[Any, Any]) -> None:
    _, exc = outcome(call)
    expect(exc, *error)


@pytest.fixture
def registry() -> aptrt.ClassRegistry:
    """A private registry (the process's own stays as it was)."""
    return aptrt.ClassRegistry()


def _register(registry: aptrt.ClassRegistry, **kwargs: Any) -> Any:
    args: dict[str, Any] = {"clsid": uuid.uuid4()}
    args.update(kwargs)
    cls = args.pop("cls", Counter)
    return registry.register(cls, **args)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param(lambda r: _register(r, cls=None), INVALID, id="register(cls=None)"),
        pytest.param(lambda r: _register(r, cls=5), INVALID, id="register(cls=5)"),
        pytest.param(lambda r: _register(r, clsid=None), INVALID, id="register(clsid=None)"),
        pytest.param(lambda r: _register(r, clsid=5), INVALID, id="register(clsid=5)"),
        pytest.param(lambda r: _register(r, clsid="{zz}"), INVALID, id="register(clsid='{zz}')"),
        pytest.param(lambda r: _register(r, progid=5), INVALID, id="register(progid=5)"),
        pytest.param(lambda r: _register(r, progid=b"Bytes.1"), INVALID, id="register(progid=bytes)"),
        pytest.param(lambda r: _register(r, version_independent_progid=5), INVALID, id="register(vi_progid=5)"),
        pytest.param(lambda r: _register(r, threading_model=None), INVALID, id="register(model=None)"),
        pytest.param(lambda r: _register(r, threading_model=5), INVALID, id="register(model=5)"),
        pytest.param(lambda r: _register(r, threading_model="Apartmnt"), INVALID, id="register(model=typo)"),
        pytest.param(lambda r: _register(r, threading_model=b"Free"), INVALID, id="register(model=bytes)"),
        pytest.param(lambda r: _register(r, description=5), INVALID, id="register(description=5)"),
        pytest.param(lambda r: _register(r, threading_model="free"), OK, id="register(model='free')"),
        pytest.param(lambda r: r.lookup(None), INVALID, id="lookup(None)"),
        pytest.param(lambda r: r.lookup(5), INVALID, id="lookup(5)"),
        pytest.param(lambda r: r.lookup(uuid.UUID(UNKNOWN_GUID)), CLASSNOTREG, id="lookup(unknown-clsid)"),
        pytest.param(lambda r: r.lookup("No.Such.ProgID"), CLASSNOTREG, id="lookup(unknown-progid)"),
        pytest.param(lambda r: r.lookup("{zz}"), INVALID, id="lookup('{zz}')"),
        pytest.param(lambda r: r.resolve([1]), INVALID, id="resolve(list)"),
        pytest.param(lambda r: r.unregister(UNKNOWN_GUID), CLASSNOTREG, id="unregister(unknown)"),
        pytest.param(lambda r: r.unregister(5), INVALID, id="unregister(5)"),
        pytest.param(lambda r: r.clsid_from_progid(None), INVALID, id="clsid_from_progid(None)"),
        pytest.param(lambda r: r.clsid_from_progid(5), INVALID, id="clsid_from_progid(5)"),
        pytest.param(lambda r: r.clsid_from_progid(""), CLASSNOTREG, id="clsid_from_progid('')"),
        pytest.param(lambda r: aptrt.coclass(clsid=5)(Counter), INVALID, id="coclass(clsid=5)"),  # type: ignore[arg-type]
        pytest.param(
            lambda r: aptrt.coclass(clsid=uuid.uuid4(), threading_model="x")(Counter), INVALID, id="coclass(model)"
        ),
    ],
)
def test_registry(
    registry: aptrt.ClassRegistry, call: Callable[[aptrt.ClassRegistry], Any], error: tuple[Any, Any]
) -> None:
    _, exc = outcome(lambda: call(registry))
    expect(exc, *error)
    # the registry still works
    clsid = uuid.uuid4()
    registry.register(Counter, clsid=clsid, progid="AptrtBadInput.Registry.1")
    assert registry.lookup("AptrtBadInput.Registry.1").clsid == clsid


# ======================================================================================================
# The core API inside a runtime (asyncio and trio main STAs)
# ======================================================================================================


class Env:
    """What the core cases work on: a runtime whose main STA is the test's loop, an STA, a proxy to a
    Counter in it, and helpers to make stale data and released proxies."""

    def __init__(self, rt: aptrt.Runtime, sta: aptrt.STA, proxy: aptrt.Proxy[ICounter]) -> None:
        self.rt = rt
        self.sta = sta
        self.proxy = proxy
        self.ctx = sta.create_context()
        #: agile references that keep objects of released proxies alive until the test ends
        self.keep: list[aptrt.AgileReference[Any]] = []

    async def new_proxy(self) -> aptrt.Proxy[ICounter]:
        proxy: aptrt.Proxy[ICounter] = await self.sta.create(Counter, interface=ICounter)
        return proxy

    async def released_proxy(self) -> aptrt.Proxy[ICounter]:
        proxy = await self.new_proxy()
        self.keep.append(aptrt.AgileReference(proxy))  # the object stays alive: only this proxy is released
        proxy.release()
        return proxy

    async def disconnected_proxy(self) -> aptrt.Proxy[ICounter]:
        proxy = await self.new_proxy()
        assert aptrt.disconnect_object(proxy)
        return proxy

    async def used_data(self) -> aptrt.MarshalData:
        data = aptrt.marshal_interface(self.proxy)
        aptrt.unmarshal_interface(data).release()
        return data

    async def released_data(self) -> aptrt.MarshalData:
        data = aptrt.marshal_interface(self.proxy, None, aptrt.MSHLFLAGS.TABLESTRONG)
        aptrt.release_marshal_data(data)
        return data

    async def stale_data(self, flags: aptrt.MSHLFLAGS = aptrt.MSHLFLAGS.NORMAL) -> aptrt.MarshalData:
        """Marshal data of an object whose STA has closed since."""
        async with self.rt.open_sta("gone") as gone:
            proxy = await gone.create(Counter)
            data = aptrt.marshal_interface(proxy, None, flags)
            proxy.release()
        return data

    async def blocking(self, fn: Callable[[], Any]) -> Any:
        """Run *fn* on a worker thread (blocking APIs refuse to run on an event loop)."""
        return await anyio.to_thread.run_sync(fn)

    async def usable(self) -> None:
        """A normal call still works: on the STA, on the MTA, and from the STA back to this loop."""
        with anyio.fail_after(TIMEOUT):
            proxy = await self.sta.create(Counter)
            assert await proxy.add(3) == 3
            mta = await self.rt.mta.create(Counter)
            assert await mta.add(4) == 4
            assert await self.proxy.value() >= 0
            assert await self.sta.run(_call_back, Counter()) == 5  # type: ignore[arg-type]
            assert self.ctx.state is aptrt.ContextState.OPEN


async def _call_back(counter: aptrt.Proxy[ICounter]) -> int:
    """Runs on the STA: *counter* arrived as a proxy to an object of the test's loop."""
    result: int = await counter.add(5)
    return result


@pytest.fixture
async def env(rt: aptrt.Runtime) -> AsyncIterator[Env]:
    with anyio.fail_after(TIMEOUT):
        sta = await rt.start_sta("bad-input")
        proxy = await sta.create(Counter)
    environment = Env(rt, sta, proxy)
    yield environment
    for keep in environment.keep:
        keep.release()


async def _run_case(env: Env, call: Callable[[Env], Any]) -> BaseException | None:
    try:
        with anyio.fail_after(TIMEOUT):
            result = call(env)
            if isinstance(result, Awaitable):
                await result
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc
    return None


def _not_callable_cases(prefix: str, call: Callable[[Env, Any], Any]) -> list[Any]:
    return [
        pytest.param(lambda e, v=value: call(e, v), INVALID, id=f"{prefix}({label})")
        for label, value in (("None", None), ("5", 5), ("'x'", "x"))
    ]


def _timeout_cases(prefix: str, call: Callable[[Env, Any], Any], ok: bool = True) -> list[Any]:
    cases = [
        pytest.param(lambda e, v=value: call(e, v), INVALID, id=f"{prefix}{label})")
        for label, value in (
            ("-1", -1),
            ("-0.5", -0.5),
            ("nan", NAN),
            ("-inf", -INF),
            ("'1'", "1"),
            ("True", True),
            ("list", [1]),
        )
    ]
    if ok:
        cases.append(pytest.param(lambda e: call(e, 0.5), OK, id=f"{prefix}0.5)"))
    return cases


async def _sta_named(e: Env, name: object) -> None:
    sta = await e.rt.start_sta(name)  # type: ignore[arg-type]
    await sta.aclose()


async def _sta_backend(e: Env, backend: object) -> None:
    async with e.rt.open_sta("backend", backend=backend):  # type: ignore[arg-type]
        pass


def _register_class_object(e: Env, clsid: Any = None, factory: Any = Counter, **kwargs: Any) -> int:
    return e.rt.register_class_object(uuid.uuid4() if clsid is None else clsid, factory, **kwargs)


def _register_twice(e: Env) -> None:
    clsid = uuid.uuid4()
    cookie = e.rt.register_class_object(clsid, Counter)
    try:
        e.rt.register_class_object(clsid, Counter)
    finally:
        e.rt.revoke_class_object(cookie)


async def _from_sta(e: Env, fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run the coroutine function *fn* on the test's STA (a closure crosses as it is)."""
    return await e.sta.run(fn)


async def _call_released(e: Env) -> None:
    proxy = await e.released_proxy()
    await proxy.add(1)


async def _call_disconnected(e: Env) -> None:
    proxy = await e.disconnected_proxy()
    await proxy.add(1)


async def _call_after_server_closed(e: Env) -> None:
    async with e.rt.open_sta("server") as server:
        proxy = await server.create(Counter)
    await proxy.add(1)


async def _call_from_wrong_apartment(e: Env) -> None:
    proxy = e.proxy

    async def use() -> None:
        await proxy.add(1)

    await _from_sta(e, use)


async def _unmarshal(e: Env, make: Callable[[Env], Awaitable[aptrt.MarshalData]], iface: Any = None) -> None:
    data = await make(e)
    aptrt.unmarshal_interface(data, iface).release()


async def _agile(e: Env, make: Callable[[Env], Awaitable[Any]], iface: Any = None) -> None:
    ref: aptrt.AgileReference[Any] = aptrt.AgileReference(await make(e))
    e.keep.append(ref)
    ref.resolve(iface)


async def _resolve_released_agile(e: Env) -> None:
    ref: aptrt.AgileReference[Any] = aptrt.AgileReference(e.proxy)
    ref.release()
    ref.release()  # again: nothing
    ref.resolve()


async def _git_stale(e: Env) -> None:
    async with e.rt.open_sta("gone") as gone:
        proxy = await gone.create(Counter)
        cookie = e.rt.git.register(proxy)
        proxy.release()
    try:
        e.rt.git.get(cookie)
    finally:
        e.rt.git.revoke(cookie)


async def _git_after_revoke(e: Env) -> None:
    cookie = e.rt.git.register(e.proxy)
    e.rt.git.revoke(cookie)
    e.rt.git.get(cookie)


CORE_CASES = [
    # -- STAs: names and backends
    *[
        pytest.param(lambda e, v=value: _sta_named(e, v), INVALID, id=f"start_sta(name={label})")
        for label, value in (("5", 5), ("bytes", b"x"), ("object", object()), ("1.5", 1.5))
    ],
    pytest.param(lambda e: _sta_named(e, None), OK, id="start_sta(name=None)"),
    *[
        pytest.param(lambda e, v=value: _sta_backend(e, v), INVALID, id=f"open_sta(backend={label})")
        for label, value in (("''", ""), ("'TRIO'", "TRIO"), ("'curio'", "curio"), ("0", 0), ("bytes", b"trio"))
    ],
    pytest.param(
        lambda e: e.blocking(lambda: e.rt.start_sta_blocking(backend="x")),
        INVALID,
        id="start_sta_blocking(backend='x')",
    ),
    # -- running code and creating objects
    *_not_callable_cases("sta.run", lambda e, v: e.sta.run(v)),
    *_not_callable_cases("sta.run_sync", lambda e, v: e.sta.run_sync(v)),
    *_not_callable_cases("sta.create", lambda e, v: e.sta.create(v)),
    *_not_callable_cases("main.run_sync", lambda e, v: e.rt.main_sta.run_sync(v)),  # type: ignore[union-attr]
    *_not_callable_cases("mta.create", lambda e, v: e.rt.mta.create(v)),
    *_not_callable_cases("ctx.run_sync", lambda e, v: e.ctx.run_sync(v)),
    *_not_callable_cases("ctx.run", lambda e, v: e.ctx.run(v)),
    *_not_callable_cases("sta.run_sync_blocking", lambda e, v: e.blocking(lambda: e.sta.run_sync_blocking(v))),
    *_not_callable_cases("sta.run_blocking", lambda e, v: e.blocking(lambda: e.sta.run_blocking(v))),
    *_not_callable_cases("sta.create_blocking", lambda e, v: e.blocking(lambda: e.sta.create_blocking(v))),
    *_not_callable_cases("ctx.run_sync_blocking", lambda e, v: e.blocking(lambda: e.ctx.run_sync_blocking(v))),
    pytest.param(lambda e: e.sta.create(Counter, interface=5), INVALID, id="create(interface=5)"),
    pytest.param(lambda e: e.sta.create(Counter, interface=Counter), INVALID, id="create(interface=impl-class)"),
    pytest.param(lambda e: e.sta.create(Counter, interface=IUnrelated), NOINTERFACE, id="create(interface=IUnrelated)"),
    pytest.param(lambda e: e.sta.create(Counter, interface=UNKNOWN_GUID), NOINTERFACE, id="create(interface=unknown)"),
    pytest.param(lambda e: e.sta.create(Counter, 1, 2, 3), TypeError, id="create(too-many-args)-user-error"),
    *_timeout_cases(
        "sta.run_sync_blocking(timeout=", lambda e, v: e.blocking(lambda: e.sta.run_sync_blocking(int, timeout=v))
    ),
    *_timeout_cases(
        "sta.run_blocking(timeout=", lambda e, v: e.blocking(lambda: e.sta.run_blocking(anyio.sleep, 0, timeout=v))
    ),
    *_timeout_cases(
        "sta.create_blocking(timeout=", lambda e, v: e.blocking(lambda: e.sta.create_blocking(Counter, timeout=v))
    ),
    *_timeout_cases("blocking(timeout=", lambda e, v: aptrt.blocking(e.proxy, timeout=v), ok=False),
    # -- activation
    *[
        pytest.param(lambda e, v=value: e.rt.create_instance(v), error, id=f"create_instance({label})")
        for label, value, error in (
            ("None", None, INVALID),
            ("5", 5, INVALID),
            ("bytes", b"x", INVALID),
            ("'{zz}'", "{zz}", INVALID),
            ("unknown-clsid", uuid.UUID(UNKNOWN_GUID), CLASSNOTREG),
            ("unknown-guid-string", UNKNOWN_GUID, CLASSNOTREG),
            ("unknown-progid", "No.Such.ProgID", CLASSNOTREG),
            ("interface-class", ICounter, INVALID),
            ("progid", "AptrtBadInput.Pinger.1", OK),
        )
    ],
    pytest.param(lambda e: e.rt.create_instance(Pinger, IUnrelated), NOINTERFACE, id="create_instance(iid=IUnrelated)"),
    pytest.param(lambda e: e.rt.create_instance(Pinger, 5), INVALID, id="create_instance(iid=5)"),
    *[
        pytest.param(
            lambda e, v=value: e.rt.create_instance(Pinger, context=v), INVALID, id=f"create_instance(context={label})"
        )
        for label, value in (("None", None), ("'x'", "x"), ("-1", -1), ("2**32", 2**32), ("True", True))
    ],
    pytest.param(lambda e: e.rt.get_class_object(Pinger, context="x"), INVALID, id="get_class_object(context='x')"),
    pytest.param(lambda e: e.rt.get_class_object(uuid.UUID(UNKNOWN_GUID)), CLASSNOTREG, id="get_class_object(unknown)"),
    pytest.param(lambda e: e.rt.get_class_object(ICounter), INVALID, id="get_class_object(interface-class)"),
    pytest.param(
        lambda e: e.blocking(lambda: e.rt.create_instance_blocking(Pinger, context="x")),
        INVALID,
        id="create_instance_blocking(context='x')",
    ),
    # -- class objects
    pytest.param(lambda e: _register_class_object(e, clsid="{zz}"), INVALID, id="register_class_object(clsid='{zz}')"),
    pytest.param(lambda e: e.rt.register_class_object(None, Counter), INVALID, id="register_class_object(clsid=None)"),
    pytest.param(lambda e: _register_class_object(e, factory=None), INVALID, id="register_class_object(factory=None)"),
    pytest.param(lambda e: _register_class_object(e, factory=5), INVALID, id="register_class_object(factory=5)"),
    pytest.param(lambda e: _register_class_object(e, factory="x"), INVALID, id="register_class_object(factory='x')"),
    pytest.param(lambda e: _register_class_object(e, context="x"), INVALID, id="register_class_object(context='x')"),
    pytest.param(lambda e: _register_class_object(e, context=-1), INVALID, id="register_class_object(context=-1)"),
    pytest.param(lambda e: _register_class_object(e, flags=None), INVALID, id="register_class_object(flags=None)"),
    pytest.param(lambda e: _register_class_object(e, flags=1.0), INVALID, id="register_class_object(flags=1.0)"),
    pytest.param(_register_twice, OBJISREG, id="register_class_object(twice)"),
    *[
        pytest.param(lambda e, v=value: e.rt.revoke_class_object(v), error, id=f"revoke_class_object({label})")
        for label, value, error in (
            ("None", None, INVALID),
            ("'1'", "1", INVALID),
            ("list", [1], INVALID),
            ("unknown", 10**9, OBJNOTREG),
            ("-1", -1, OBJNOTREG),
        )
    ],
    # -- configure
    *[
        pytest.param(lambda e, kw=kwargs: e.sta.configure(**kw), INVALID, id=f"configure({label})")
        for label, kwargs in (
            ("max_queued=0", {"max_queued": 0}),
            ("max_queued=-1", {"max_queued": -1}),
            ("max_queued=1.5", {"max_queued": 1.5}),
            ("max_queued=nan", {"max_queued": NAN}),
            ("max_queued=inf", {"max_queued": INF}),
            ("max_queued='10'", {"max_queued": "10"}),
            ("max_queued=True", {"max_queued": True}),
            ("overflow='drop'", {"max_queued": 5, "overflow": "drop"}),
            ("overflow=None", {"max_queued": 5, "overflow": None}),
            ("overflow=0", {"overflow": 0}),
            ("reentrancy='sometimes'", {"reentrancy": "sometimes"}),
            ("reentrancy=1", {"reentrancy": 1}),
            ("reentrancy='NONE'", {"reentrancy": "NONE"}),
            ("message_filter=5", {"message_filter": 5}),
            ("retry_policy='x'", {"retry_policy": "x"}),
            ("retry_policy=5", {"retry_policy": 5}),
            ("valid-then-bad", {"max_queued": 5, "reentrancy": "bogus"}),
        )
    ],
    pytest.param(lambda e: e.sta.configure(bogus=1), TypeError, id="configure(unknown-keyword)-call-error"),
    pytest.param(lambda e: e.rt.mta.configure(reentrancy="none"), NOTSUPPORTED, id="mta.configure(reentrancy='none')"),
    pytest.param(lambda e: e.rt.mta.configure(max_queued=0), INVALID, id="mta.configure(max_queued=0)"),
    # -- contexts
    *_timeout_cases("ctx.disconnect(", lambda e, v: e.ctx.disconnect(v), ok=False),
    *_timeout_cases(
        "ctx.disconnect_blocking(", lambda e, v: e.blocking(lambda: e.ctx.disconnect_blocking(v)), ok=False
    ),
    pytest.param(lambda e: e.sta.default_context.disconnect(0), NOTSUPPORTED, id="default_context.disconnect(0)"),
    pytest.param(lambda e: e.sta.default_context.disconnect(-1), INVALID, id="default_context.disconnect(-1)"),
    pytest.param(lambda e: e.sta.create_context().disconnect(INF), OK, id="other_ctx.disconnect(inf)"),
    pytest.param(lambda e: e.sta.create_context().disconnect(None), OK, id="other_ctx.disconnect(None)"),
    pytest.param(lambda e: e.sta.create_context().disconnect(2**70), OK, id="other_ctx.disconnect(huge)"),
    # -- query_interface on proxies
    pytest.param(lambda e: aptrt.query_interface(e.proxy, None), INVALID, id="qi(proxy, None)"),  # type: ignore[call-overload]
    pytest.param(lambda e: aptrt.query_interface(e.proxy, 5), INVALID, id="qi(proxy, 5)"),  # type: ignore[call-overload]
    pytest.param(lambda e: aptrt.query_interface(e.proxy, UNKNOWN_GUID), NOINTERFACE, id="qi(proxy, unknown-iid)"),
    pytest.param(lambda e: aptrt.query_interface(e.proxy, IUnrelated), NOINTERFACE, id="qi(proxy, IUnrelated)"),
    pytest.param(lambda e: aptrt.query_interface(e.proxy, Counter), INVALID, id="qi(proxy, impl-class)"),
    # -- released, disconnected and misplaced proxies
    pytest.param(_call_released, INVALID, id="released-proxy.call"),
    pytest.param(lambda e: e.released_proxy(), OK, id="released-proxy.release-again"),
    pytest.param(lambda e: _agile(e, Env.released_proxy), INVALID, id="AgileReference(released-proxy)"),
    pytest.param(
        lambda e: _released_then(e, lambda p: aptrt.query_interface(p, ICounter)), INVALID, id="released-proxy.qi"
    ),
    pytest.param(lambda e: _released_then(e, aptrt.marshal_interface), INVALID, id="released-proxy.marshal"),
    pytest.param(lambda e: _released_then(e, e.rt.git.register), INVALID, id="released-proxy.git.register"),
    pytest.param(_call_disconnected, DISCONNECTED, id="disconnected-proxy.call"),
    pytest.param(
        lambda e: _disconnected_then(e, aptrt.marshal_interface), DISCONNECTED, id="disconnected-proxy.marshal"
    ),
    pytest.param(_call_after_server_closed, DISCONNECTED, id="proxy-after-server-closed.call"),
    pytest.param(
        _call_from_wrong_apartment, (aptrt.WrongThreadError, com.RPC_E_WRONG_THREAD), id="proxy-from-wrong-apartment"
    ),
    pytest.param(lambda e: _released_blocking_call(e), INVALID, id="blocking(released-proxy).call"),
    # -- marshal data: stale, foreign, misused
    pytest.param(lambda e: _unmarshal(e, Env.used_data), NOTCONNECTED, id="unmarshal(used-NORMAL-data)"),
    pytest.param(lambda e: _unmarshal(e, Env.released_data), NOTCONNECTED, id="unmarshal(released-data)"),
    pytest.param(lambda e: _unmarshal(e, Env.stale_data), NOTCONNECTED, id="unmarshal(stale-NORMAL-data)"),
    pytest.param(
        lambda e: _unmarshal(e, lambda e: e.stale_data(aptrt.MSHLFLAGS.TABLESTRONG)),
        NOTCONNECTED,
        id="unmarshal(stale-TABLESTRONG)",
    ),
    pytest.param(
        lambda e: _unmarshal(e, lambda e: e.stale_data(aptrt.MSHLFLAGS.TABLEWEAK)),
        NOTCONNECTED,
        id="unmarshal(stale-TABLEWEAK)",
    ),
    pytest.param(lambda e: _unmarshal_wrong_interface(e), NOINTERFACE, id="unmarshal(data, IUnrelated)"),
    pytest.param(lambda e: _unmarshal(e, Env.used_data, 5), INVALID, id="unmarshal(data, 5)"),
    pytest.param(lambda e: aptrt.marshal_interface(e.proxy, None, -1), INVALID, id="marshal(proxy, flags=-1)"),  # type: ignore[arg-type]
    pytest.param(lambda e: aptrt.marshal_interface(e.proxy, None, True), INVALID, id="marshal(proxy, flags=True)"),  # type: ignore[arg-type]
    pytest.param(lambda e: aptrt.marshal_interface(e.proxy, IUnrelated), NOINTERFACE, id="marshal(proxy, IUnrelated)"),
    pytest.param(lambda e: _marshal_noping(e), OK, id="marshal(proxy, NORMAL|NOPING)"),
    # -- the GIT
    *[
        pytest.param(lambda e, v=value: e.rt.git.get(v), INVALID, id=f"git.get({label})")
        for label, value in (("0", 0), ("unknown", 10**9), ("None", None), ("'1'", "1"), ("list", [1]), ("-1", -1))
    ],
    *[
        pytest.param(lambda e, v=value: e.rt.git.revoke(v), INVALID, id=f"git.revoke({label})")
        for label, value in (("0", 0), ("unknown", 10**9), ("None", None), ("list", [1]))
    ],
    pytest.param(lambda e: e.rt.git.register(None), INVALID, id="git.register(None)"),
    pytest.param(lambda e: e.rt.git.register(5), INVALID, id="git.register(5)"),
    pytest.param(lambda e: e.rt.git.register(e.proxy, IUnrelated), NOINTERFACE, id="git.register(proxy, IUnrelated)"),
    pytest.param(_git_after_revoke, INVALID, id="git.get(revoked)"),
    pytest.param(_git_stale, NOTCONNECTED, id="git.get(object-gone)"),
    # -- AgileReference
    pytest.param(
        lambda e: aptrt.AgileReference(e.proxy, IUnrelated), NOINTERFACE, id="AgileReference(proxy, IUnrelated)"
    ),
    pytest.param(lambda e: _agile(e, lambda e: e.new_proxy(), 5), INVALID, id="AgileReference.resolve(5)"),
    pytest.param(
        lambda e: _agile(e, lambda e: e.new_proxy(), IUnrelated), NOINTERFACE, id="AgileReference.resolve(IUnrelated)"
    ),
    pytest.param(_resolve_released_agile, NOTCONNECTED, id="AgileReference.resolve(released)"),
    pytest.param(lambda e: _agile_stale(e), NOTCONNECTED, id="AgileReference.resolve(object-gone)"),
    # -- aptrt.begin
    pytest.param(lambda e: aptrt.begin(None), INVALID, id="begin(None)"),  # type: ignore[arg-type]
    pytest.param(lambda e: aptrt.begin(5), INVALID, id="begin(5)"),  # type: ignore[arg-type]
    pytest.param(lambda e: _begin_on(e, Env.released_proxy), INVALID, id="begin(released-proxy.add)"),
    pytest.param(lambda e: _begin_on(e, Env.disconnected_proxy), DISCONNECTED, id="begin(disconnected-proxy.add)"),
    pytest.param(lambda e: _begin_on(e, Env.new_proxy), OK, id="begin(proxy.add)"),
    # -- disconnect_object
    pytest.param(lambda e: aptrt.disconnect_object(5), OK, id="disconnect_object(5)"),
]


async def _begin_on(e: Env, make: Callable[[Env], Awaitable[aptrt.Proxy[ICounter]]]) -> None:
    proxy = await make(e)
    assert await aptrt.begin(proxy.add, 1) == 1


async def _released_then(e: Env, fn: Callable[[Any], Any]) -> None:
    fn(await e.released_proxy())


async def _disconnected_then(e: Env, fn: Callable[[Any], Any]) -> None:
    fn(await e.disconnected_proxy())


async def _released_blocking_call(e: Env) -> None:
    proxy = await e.released_proxy()
    held: list[Any] = []
    await e.rt.mta.run_sync(held.append, proxy)  # a proxy of the MTA (plain threads may use it) ...
    held[0].release()  # ... released
    await e.blocking(lambda: aptrt.blocking(held[0], timeout=TIMEOUT).add(1))


async def _unmarshal_wrong_interface(e: Env) -> None:
    """E_NOINTERFACE leaves NORMAL data unused: it still unmarshals afterwards."""
    data = aptrt.marshal_interface(e.proxy)
    try:
        aptrt.unmarshal_interface(data, IUnrelated)
    finally:
        aptrt.unmarshal_interface(data).release()


async def _marshal_noping(e: Env) -> None:
    data = aptrt.marshal_interface(e.proxy, None, aptrt.MSHLFLAGS.NORMAL | aptrt.MSHLFLAGS.NOPING)  # type: ignore[arg-type]
    assert data.flags is aptrt.MSHLFLAGS.NORMAL
    aptrt.unmarshal_interface(data).release()
    with pytest.raises(aptrt.ObjectNotConnectedError):
        aptrt.unmarshal_interface(data)


async def _agile_stale(e: Env) -> None:
    async with e.rt.open_sta("gone") as gone:
        ref: aptrt.AgileReference[Any] = aptrt.AgileReference(await gone.create(Counter))
    try:
        ref.resolve()
    finally:
        ref.release()


@pytest.mark.parametrize(("call", "error"), CORE_CASES)
async def test_core(env: Env, call: Callable[[Env], Any], error: Any) -> None:
    exc = await _run_case(env, call)
    if isinstance(error, tuple):
        expect(exc, *error)
    else:
        expect(exc, error, None)
    await env.usable()


async def test_bad_configure_changes_nothing(env: Env) -> None:
    """A configure() call with one bad argument leaves every setting as it was."""
    env.sta.configure(max_queued=3, overflow="reject")
    bound = env.sta.bound
    for kwargs in ({"max_queued": 0}, {"max_queued": 5, "reentrancy": "x"}, {"message_filter": 5, "max_queued": None}):
        with pytest.raises(aptrt.InvalidArgumentError):
            env.sta.configure(**kwargs)
        assert env.sta.bound is bound
        assert env.sta.reentrancy is aptrt.Reentrancy.ALLOW
        assert env.sta.message_filter is None
    env.sta.configure(max_queued=None)
    await env.usable()


async def test_bad_timeout_leaves_context_open(env: Env) -> None:
    """CoDisconnectContext's argument is checked before the context starts refusing calls."""
    ctx = env.sta.create_context()
    obj: aptrt.Proxy[ICounter] = await ctx.run_sync(Counter)  # type: ignore[arg-type]
    for bad in (-1, NAN, "1"):
        with pytest.raises(aptrt.InvalidArgumentError):
            await ctx.disconnect(bad)  # type: ignore[arg-type]
        assert ctx.state is aptrt.ContextState.OPEN
        assert await obj.add(1) >= 1
    with anyio.fail_after(TIMEOUT):
        await ctx.disconnect(1)
    with pytest.raises(aptrt.DisconnectedError):
        await obj.add(1)
    await env.usable()


@pytest.mark.parametrize("seconds", [INF, 1e300, 2**70], ids=["inf", "1e300", "2**70"])
async def test_huge_timeouts_mean_no_limit(env: Env, seconds: float) -> None:
    """A timeout longer than a lock can wait (``threading.TIMEOUT_MAX``) is no limit: blocking calls, and
    a blocking disconnect that waits for an outstanding call (they raised OverflowError)."""
    held: list[aptrt.Proxy[ICounter]] = []
    await env.rt.mta.run_sync(held.append, env.proxy)  # a proxy of the MTA: plain threads may use it
    with anyio.fail_after(TIMEOUT):
        assert await env.blocking(lambda: env.sta.run_sync_blocking(int, timeout=seconds)) == 0
        assert await env.blocking(lambda: aptrt.blocking(held[0], timeout=seconds).add(1)) >= 1
        ctx = env.sta.create_context()
        signals = Signals()
        gate: aptrt.Proxy[IGate] = await ctx.run_sync(Gate, signals)  # type: ignore[arg-type]
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.hold)
            await wait_event(signals.entered)
            tg.start_soon(env.blocking, lambda: ctx.disconnect_blocking(seconds))
            await wait_until(lambda: ctx.state is aptrt.ContextState.DISCONNECTING, "the disconnect waits")
            signals.release.set()
        assert ctx.state is aptrt.ContextState.DISCONNECTED
    held[0].release()
    await env.usable()


async def test_foreign_marshal_data(env: Env) -> None:
    """Marshal data (and an agile reference) from a runtime that has closed since: CO_E_OBJNOTCONNECTED."""

    def other_runtime() -> tuple[aptrt.MarshalData, aptrt.AgileReference[Any], int]:
        with aptrt.Runtime() as other:
            sta = other.start_sta_blocking("foreign")
            proxy = sta.create_blocking(Counter)
            data = aptrt.marshal_interface(proxy)
            ref: aptrt.AgileReference[Any] = aptrt.AgileReference(proxy)
            cookie = other.git.register(proxy)
            proxy.release()
        return data, ref, cookie

    data, ref, cookie = await anyio.to_thread.run_sync(other_runtime)
    with pytest.raises(aptrt.ObjectNotConnectedError) as info:
        aptrt.unmarshal_interface(data)
    assert info.value.hresult == com.CO_E_OBJNOTCONNECTED
    with pytest.raises(aptrt.ObjectNotConnectedError):
        ref.resolve()
    with pytest.raises(aptrt.InvalidArgumentError):  # another runtime's cookie means nothing here
        env.rt.git.get(cookie)
    await env.usable()


# ======================================================================================================
# aptrt.com: every exported function
# ======================================================================================================


class ComEnv:
    """What the facade cases work on (made after the case's thread state is set up)."""

    def __init__(self) -> None:
        self._host: ComThread | None = None
        self.cleanups: list[Callable[[], None]] = []

    def stream(self) -> Any:
        """NORMAL marshal data of a new object, rewound."""
        return com.CoMarshalInterThreadInterfaceInStream(ITest, Counted())

    def empty_stream(self) -> Any:
        return com.CreateStreamOnHGlobal(None, True)

    def used_stream(self) -> Any:
        """NORMAL data already unmarshaled, rewound: stale."""
        return unmarshaled(self.stream())

    def released_stream(self) -> Any:
        return released(self.stream())

    def stale_stream(self) -> Any:
        """NORMAL data of an object whose STA has been uninitialised since."""
        with ComThread(name="gone") as gone:
            stream = gone.run(lambda: com.CoMarshalInterThreadInterfaceInStream(ITest, Counted()))
        return stream

    @property
    def host(self) -> ComThread:
        if self._host is None:
            self._host = ComThread(name="host")
        return self._host

    def proxy(self) -> Any:
        """A facade proxy of this thread to an object of another STA."""
        stream = self.host.run(lambda: com.CoMarshalInterThreadInterfaceInStream(ITest, Counted()))
        proxy = com.CoGetInterfaceAndReleaseStream(stream, ITest)
        self.cleanups.append(proxy.Release)
        return proxy

    def released_proxy(self) -> Any:
        stream = self.host.run(lambda: com.CoMarshalInterThreadInterfaceInStream(ITest, Counted()))
        proxy = com.CoGetInterfaceAndReleaseStream(stream, ITest)
        assert proxy.Release() == 0
        return proxy

    def git(self) -> Any:
        return com.CoCreateInstance(
            com.CLSID_StdGlobalInterfaceTable, None, com.CLSCTX_INPROC_SERVER, com.IID_IGlobalInterfaceTable
        )

    def register(self, clsid: Any, factory: Any) -> int:
        cookie = com.CoRegisterClassObject(clsid, factory, com.CLSCTX_INPROC_SERVER, com.REGCLS_MULTIPLEUSE)
        self.cleanups.append(lambda: _undo_revoke(cookie))
        return cookie

    def close(self) -> None:
        try:
            for cleanup in reversed(self.cleanups):
                cleanup()
        finally:
            if self._host is not None:
                self._host.stop()


@dataclass(frozen=True)
class Case:
    """One bad-input case of a facade function: its arguments (made from a :class:`ComEnv`), the
    expected exception type and HRESULT (None, None: it succeeds), and the thread's COM state."""

    args: Callable[[ComEnv], tuple[Any, ...]]
    error: tuple[Any, Any]
    #: "sta" (the test's thread is the main STA), "mta" or "none" (not initialised, no MTA)
    init: str = "sta"
    #: undoes a successful call (given its result)
    undo: Callable[[Any], Any] | None = None
    label: str = ""


@dataclass(frozen=True)
class NoArgs:
    """A facade function that takes no arguments: only the thread's state can be wrong. *uninitialised*
    is what it does on a thread that is not initialised while there is no MTA."""

    uninitialised: tuple[Any, Any]
    undo: Callable[[Any], Any] | None = None


def c(label: str, args: Callable[[ComEnv], tuple[Any, ...]], error: tuple[Any, Any], **kwargs: Any) -> Case:
    return Case(args, error, label=label, **kwargs)


def _undo_init(result: Any) -> None:
    com.CoUninitialize()


def _undo_enable(result: Any) -> None:
    com.CoDisableCallCancellation(None)


def _undo_filter(result: Any) -> None:
    com.CoRegisterMessageFilter(None)


def _undo_revoke(result: Any) -> None:
    com.CoRevokeClassObject(result)


def _undo_mta(result: Any) -> None:
    com.CoDecrementMTAUsage(result)


def _uuid_unknown(e: ComEnv) -> uuid.UUID:
    return uuid.UUID(UNKNOWN_GUID)


_CTX = com.CLSCTX_INPROC_SERVER
_SET = threading.Event()
_SET.set()


class _Filter(com.IMessageFilter):
    def HandleInComingCall(self, dwCallType: int, htaskCaller: Any, dwTickCount: int, lpInterfaceInfo: Any) -> int:
        return com.SERVERCALL_ISHANDLED

    def RetryRejectedCall(self, htaskCallee: Any, dwTickCount: int, dwRejectType: int) -> int:
        return -1

    def MessagePending(self, htaskCallee: Any, dwTickCount: int, dwPendingType: int) -> int:
        return com.PENDINGMSG_WAITDEFPROCESS


#: every function aptrt.com exports → its bad-input cases (or NoArgs)
FACADE: dict[str, list[Case] | NoArgs] = {
    "CLSIDFromProgID": [
        c("None", lambda e: (None,), INVALID),
        c("5", lambda e: (5,), INVALID),
        c("bytes", lambda e: (b"AptrtBadInput.Pinger.1",), INVALID),
        c("unknown", lambda e: ("No.Such.ProgID",), CLASSSTRING),  # compobj.c test_CLSIDFromProgID
        c("empty", lambda e: ("",), CLASSSTRING),
        c("guid-string", lambda e: (UNKNOWN_GUID,), CLASSSTRING),
        c("uninitialised", lambda e: ("AptrtBadInput.ComPinger.1",), OK, init="none"),
    ],
    "ProgIDFromCLSID": [
        c("None", lambda e: (None,), INVALID),
        c("5", lambda e: (5,), INVALID),
        c("unknown", lambda e: (_uuid_unknown(e),), CLASSNOTREG),  # compobj.c test_ProgIDFromCLSID
        c("malformed", lambda e: ("{zz}",), CLASSSTRING),
        c("builtin-without-progid", lambda e: (com.CLSID_StdGlobalInterfaceTable,), CLASSNOTREG),
    ],
    "CoCancelCall": [
        c("tid=-1", lambda e: (-1, 0), INVALID),
        c("tid='x'", lambda e: ("x", 0), INVALID),
        c("tid=list", lambda e: ([1], 0), INVALID),
        c("tid=2**32", lambda e: (2**32, 0), INVALID),
        c("timeout=-1", lambda e: (0, -1), INVALID),
        c("timeout=1.5", lambda e: (0, 1.5), INVALID),
        c("timeout=nan", lambda e: (0, NAN), INVALID),
        c("not-enabled", lambda e: (0, 0), CANCEL_DISABLED),
        c("unknown-thread", lambda e: (0xFFFFFFF0, com.INFINITE), CANCEL_DISABLED),
    ],
    "CoCreateFreeThreadedMarshaler": [
        c("outer=5", lambda e: (5,), INVALID),
        c("outer='x'", lambda e: ("x",), INVALID),
        c("outer=None", lambda e: (None,), OK),
        c("outer=object", lambda e: (Counted(),), OK),
    ],
    "CoCreateInstance": [
        c("clsid=None", lambda e: (None, None, _CTX, ITest), INVALID),
        c("riid=None", lambda e: (ComPinger, None, _CTX, None), INVALID),
        c("clsid=5", lambda e: (5, None, _CTX, com.IID_IUnknown), INVALID),
        c("clsid=bytes", lambda e: (b"x", None, _CTX, com.IID_IUnknown), INVALID),
        c("clsid='{zz}'", lambda e: ("{zz}", None, _CTX, com.IID_IUnknown), CLASSSTRING),
        c("clsid=unknown", lambda e: (_uuid_unknown(e), None, _CTX, com.IID_IUnknown), CLASSNOTREG),
        c("clsid=unknown-progid", lambda e: ("No.Such.ProgID", None, _CTX, com.IID_IUnknown), CLASSSTRING),
        c("riid=unknown", lambda e: (ComPinger, None, _CTX, UNKNOWN_GUID), NOINTERFACE),
        c("riid=not-implemented", lambda e: (ComPinger, None, _CTX, ITest), NOINTERFACE),
        c("riid=5", lambda e: (ComPinger, None, _CTX, 5), INVALID),
        c("riid=impl-class", lambda e: (ComPinger, None, _CTX, ComPinger), INVALID),
        c("context=-1", lambda e: (ComPinger, None, -1, com.IID_IUnknown), INVALID),
        c("context='x'", lambda e: (ComPinger, None, "x", com.IID_IUnknown), INVALID),
        c("context=None", lambda e: (ComPinger, None, None, com.IID_IUnknown), INVALID),
        c("context=2**32", lambda e: (ComPinger, None, 2**32, com.IID_IUnknown), INVALID),
        c("context=0", lambda e: (ComPinger, None, 0, com.IID_IUnknown), CLASSNOTREG),
        c("outer=5", lambda e: (ComPinger, 5, _CTX, com.IID_IUnknown), (aptrt.COMError, com.CLASS_E_NOAGGREGATION)),
        c("not-a-factory", lambda e: (_registered(e, Counted()), None, _CTX, com.IID_IUnknown), NOINTERFACE),
        c("uninitialised", lambda e: (ComPinger, None, _CTX, com.IID_IUnknown), NOTINIT, init="none"),
        c("ok", lambda e: ("AptrtBadInput.ComPinger.1", None, _CTX, IComBadInput), OK),
    ],
    "CoDecrementMTAUsage": [
        c("None", lambda e: (None,), INVALID),
        c("'1'", lambda e: ("1",), INVALID),
        c("list", lambda e: ([1],), INVALID),
        c("unknown", lambda e: (10**9,), INVALID),
        c("unknown-uninitialised", lambda e: (10**9,), INVALID, init="none"),
    ],
    "CoDisableCallCancellation": [
        c("reserved=5", lambda e: (5,), INVALID),
        c("not-enabled", lambda e: (None,), CANCEL_DISABLED),
    ],
    "CoEnableCallCancellation": [
        c("reserved=5", lambda e: (5,), INVALID),
        c("reserved='x'", lambda e: ("x",), INVALID),
        c("uninitialised", lambda e: (None,), OK, init="none", undo=_undo_enable),
    ],
    "CoDisconnectContext": [
        c("-1", lambda e: (-1,), INVALID),
        c("1.5", lambda e: (1.5,), INVALID),
        c("nan", lambda e: (NAN,), INVALID),
        c("'1'", lambda e: ("1",), INVALID),
        c("None", lambda e: (None,), INVALID),
        c("2**32", lambda e: (2**32,), INVALID),
        c("True", lambda e: (True,), INVALID),
        c("default-context", lambda e: (0,), NOTSUPPORTED),  # [D: CoDisconnectContext]
        c("default-context-infinite", lambda e: (com.INFINITE,), NOTSUPPORTED),
        c("uninitialised", lambda e: (0,), NOTINIT, init="none"),
    ],
    "CoDisconnectObject": [
        c("None", lambda e: (None, 0), INVALID),
        c("unknown-object", lambda e: (Counted(), 0), OK),  # "succeeds silently for unknown objects"
        c("not-an-object", lambda e: (5, 0), OK),
        c("proxy", lambda e: (e.proxy(), 0), OK),
        c("uninitialised", lambda e: (Counted(), 0), NOTINIT, init="none"),
    ],
    "CoGetApartmentType": NoArgs(NOTINIT),
    "CoGetClassObject": [
        c("clsid=None", lambda e: (None, _CTX, None, com.IID_IClassFactory), INVALID),
        c("clsid=unknown", lambda e: (_uuid_unknown(e), _CTX, None, com.IID_IClassFactory), CLASSNOTREG),
        c("clsid='{zz}'", lambda e: ("{zz}", _CTX, None, com.IID_IClassFactory), CLASSSTRING),
        c("context='x'", lambda e: (ComPinger, "x", None, com.IID_IClassFactory), INVALID),
        c("context=-1", lambda e: (ComPinger, -1, None, com.IID_IClassFactory), INVALID),
        c("riid=None", lambda e: (ComPinger, _CTX, None, None), INVALID),
        c("riid=unknown", lambda e: (ComPinger, _CTX, None, UNKNOWN_GUID), NOINTERFACE),
        c("not-a-factory", lambda e: (_registered(e, Counted()), _CTX, None, com.IID_IClassFactory), NOINTERFACE),
        c("uninitialised", lambda e: (ComPinger, _CTX, None, com.IID_IClassFactory), NOTINIT, init="none"),
    ],
    "CoGetContextToken": NoArgs(NOTINIT),
    "CoGetCurrentLogicalThreadId": NoArgs(OK),
    "CoGetInterfaceAndReleaseStream": [
        c("None", lambda e: (None, ITest), INVALID),
        c("5", lambda e: (5, ITest), INVALID),
        c("empty", lambda e: (e.empty_stream(), ITest), READFAULT),
        c("used", lambda e: (e.used_stream(), ITest), NOTCONNECTED),
        c("released", lambda e: (e.released_stream(), ITest), NOTCONNECTED),
        c("stale", lambda e: (e.stale_stream(), ITest), NOTCONNECTED),
        c("iid=None", lambda e: (e.stream(), None), INVALID),
        c("iid=unknown", lambda e: (e.stream(), UNKNOWN_GUID), NOINTERFACE),
        c("iid=not-implemented", lambda e: (e.stream(), IOther), NOINTERFACE),
        c("uninitialised", lambda e: (e.empty_stream(), ITest), NOTINIT, init="none"),
    ],
    "CoGetObjectContext": [
        c("None", lambda e: (None,), INVALID),
        c("5", lambda e: (5,), INVALID),
        c("unknown", lambda e: (UNKNOWN_GUID,), NOINTERFACE),
        c("not-implemented", lambda e: (ITest,), NOINTERFACE),
        c("uninitialised", lambda e: (com.IID_IContextCallback,), NOTINIT, init="none"),
    ],
    "CoIncrementMTAUsage": NoArgs(OK, undo=_undo_mta),
    "CoInitialize": [
        c("reserved-ignored", lambda e: ("junk",), (None, None), undo=_undo_init),  # Wine only warns
        c("in-mta", lambda e: (None,), (aptrt.ChangedModeError, com.RPC_E_CHANGED_MODE), init="mta"),
    ],
    "CoInitializeEx": [
        c("flags=-1", lambda e: (None, -1), INVALID),
        c("flags='x'", lambda e: (None, "x"), INVALID),
        c("flags=None", lambda e: (None, None), INVALID),
        c("flags=0x100", lambda e: (None, 0x100), INVALID),
        c("flags=True", lambda e: (None, True), INVALID),
        c("flags=2.0", lambda e: (None, 2.0), INVALID),
        c("other-model", lambda e: (None, com.COINIT_MULTITHREADED), (aptrt.ChangedModeError, com.RPC_E_CHANGED_MODE)),
        c("flags=-1-uninitialised", lambda e: (None, -1), INVALID, init="none"),
    ],
    "CoLockObjectExternal": [
        c("None", lambda e: (None, True, True), INVALID),
        c("5", lambda e: (5, True, True), INVALID),
        c("class", lambda e: (Counted, True, True), INVALID),
        c("unlock-unknown", lambda e: (Counted(), False, True), OK),
        c("uninitialised", lambda e: (Counted(), True, True), NOTINIT, init="none"),
    ],
    "CoMarshalInterThreadInterfaceInStream": [
        c("riid=None", lambda e: (None, Counted()), INVALID),
        c("pUnk=None", lambda e: (ITest, None), INVALID),
        c("pUnk=5", lambda e: (ITest, 5), NOINTERFACE),
        c("riid=not-implemented", lambda e: (IOther, Counted()), NOINTERFACE),
        c("riid='{zz}'", lambda e: ("{zz}", Counted()), INVALID),
        c("released-proxy", lambda e: (ITest, e.released_proxy()), NOTCONNECTED),
        c("uninitialised", lambda e: (ITest, Counted()), NOTINIT, init="none"),
    ],
    "CoMarshalInterface": [
        c("stream=None", lambda e: (None, ITest, Counted(), com.MSHCTX_INPROC, None, 0), INVALID),
        c("stream=5", lambda e: (5, ITest, Counted(), com.MSHCTX_INPROC, None, 0), INVALID),
        c("pUnk=None", lambda e: (e.empty_stream(), ITest, None, com.MSHCTX_INPROC, None, 0), INVALID),
        c(
            "riid=not-implemented",
            lambda e: (e.empty_stream(), IOther, Counted(), com.MSHCTX_INPROC, None, 0),
            NOINTERFACE,
        ),
        c("flags=3", lambda e: (e.empty_stream(), ITest, Counted(), com.MSHCTX_INPROC, None, 3), INVALID),
        c("flags=-1", lambda e: (e.empty_stream(), ITest, Counted(), com.MSHCTX_INPROC, None, -1), INVALID),
        c("flags='0'", lambda e: (e.empty_stream(), ITest, Counted(), com.MSHCTX_INPROC, None, "0"), INVALID),
        c("flags=True", lambda e: (e.empty_stream(), ITest, Counted(), com.MSHCTX_INPROC, None, True), INVALID),
        c("dest='x'", lambda e: (e.empty_stream(), ITest, Counted(), "x", None, 0), INVALID),
        c("dest=-1", lambda e: (e.empty_stream(), ITest, Counted(), -1, None, 0), INVALID),
        c(
            "released-proxy",
            lambda e: (e.empty_stream(), ITest, e.released_proxy(), com.MSHCTX_INPROC, None, 0),
            NOTCONNECTED,
        ),
        c("noping", lambda e: (e.empty_stream(), ITest, Counted(), com.MSHCTX_INPROC, None, 4), OK),
        c(
            "uninitialised",
            lambda e: (e.empty_stream(), ITest, Counted(), com.MSHCTX_INPROC, None, 0),
            NOTINIT,
            init="none",
        ),
    ],
    "CoRegisterClassObject": [
        c("clsid=None", lambda e: (None, Factory(), _CTX, 1), INVALID),
        c("clsid='{zz}'", lambda e: ("{zz}", Factory(), _CTX, 1), CLASSSTRING),
        c("pUnk=None", lambda e: (uuid.uuid4(), None, _CTX, 1), INVALID),
        c("pUnk=5", lambda e: (uuid.uuid4(), 5, _CTX, 1), INVALID),
        c("pUnk='x'", lambda e: (uuid.uuid4(), "x", _CTX, 1), INVALID),
        c("context='x'", lambda e: (uuid.uuid4(), Factory(), "x", 1), INVALID),
        c("context=-1", lambda e: (uuid.uuid4(), Factory(), -1, 1), INVALID),
        c("flags=None", lambda e: (uuid.uuid4(), Factory(), _CTX, None), INVALID),
        c("flags=-1", lambda e: (uuid.uuid4(), Factory(), _CTX, -1), INVALID),
        c("twice", lambda e: (_registered(e, Factory()), Factory(), _CTX, 1), OBJISREG),
        c("class-as-factory", lambda e: (uuid.uuid4(), Counted, _CTX, 1), OK, undo=_undo_revoke),
        c("object-not-a-factory", lambda e: (uuid.uuid4(), Counted(), _CTX, 1), OK, undo=_undo_revoke),
        c("uninitialised", lambda e: (uuid.uuid4(), Factory(), _CTX, 1), NOTINIT, init="none"),
    ],
    "CoRegisterMessageFilter": [
        c("5", lambda e: (5,), INVALID),
        c("'x'", lambda e: ("x",), INVALID),
        c("class", lambda e: (_Filter,), INVALID),
        c("not-a-filter", lambda e: (Counted(),), INVALID),
        c("filter", lambda e: (_Filter(),), OK, undo=_undo_filter),
        c("in-mta", lambda e: (_Filter(),), NOTSUPPORTED, init="mta"),
        c("uninitialised", lambda e: (None,), NOTSUPPORTED, init="none"),
    ],
    "CoReleaseMarshalData": [
        c("None", lambda e: (None,), INVALID),
        c("5", lambda e: (5,), INVALID),
        c("empty", lambda e: (e.empty_stream(),), READFAULT),  # marshal.c test_bad_marshal_stream
        c("released-again", lambda e: (e.released_stream(),), OK),
        c("uninitialised", lambda e: (e.empty_stream(),), NOTINIT, init="none"),
    ],
    "CoResumeClassObjects": NoArgs(NOTINIT),
    "CoRevokeClassObject": [
        c("None", lambda e: (None,), INVALID),
        c("'1'", lambda e: ("1",), INVALID),
        c("list", lambda e: ([1],), INVALID),
        c("1.0", lambda e: (1.0,), INVALID),
        c("unknown", lambda e: (10**9,), OBJNOTREG),  # compobj.c test_CoRegisterClassObject
        c("unknown-uninitialised", lambda e: (10**9,), NOTINIT, init="none"),
    ],
    "CoTestCancel": NoArgs((aptrt.COMError, com.RPC_E_CALL_COMPLETE)),
    "CoUninitialize": NoArgs(OK),
    "CoUnmarshalInterface": [
        c("None", lambda e: (None, ITest), INVALID),  # compobj.c test_CoUnmarshalInterface
        c("bytes", lambda e: (b"MEOW", ITest), INVALID),
        c("empty", lambda e: (e.empty_stream(), ITest), READFAULT),
        c("used", lambda e: (e.used_stream(), ITest), NOTCONNECTED),  # marshal.c ..._unmarshal_twice
        c("released", lambda e: (e.released_stream(), ITest), NOTCONNECTED),
        c("stale", lambda e: (e.stale_stream(), ITest), NOTCONNECTED),
        c("iid=None", lambda e: (e.stream(), None), INVALID),
        c("iid=5", lambda e: (e.stream(), 5), INVALID),
        c("iid=unknown", lambda e: (e.stream(), UNKNOWN_GUID), NOINTERFACE),
        c("iid=not-implemented", lambda e: (e.stream(), IOther), NOINTERFACE),
        c("uninitialised", lambda e: (e.empty_stream(), ITest), NOTINIT, init="none"),
    ],
    "CoWaitForMultipleHandles": [
        c("handles=None", lambda e: (0, 0, None), INVALID),
        c("handles=5", lambda e: (0, 0, 5), INVALID),
        c("handles=['x']", lambda e: (0, 0, ["x"]), INVALID),
        c("handles=str", lambda e: (0, 0, "x"), INVALID),
        c("handles=[]", lambda e: (0, 0, []), (aptrt.COMError, com.RPC_E_NO_SYNC)),
        c("flags=-1", lambda e: (-1, 0, [_SET]), INVALID),
        c("flags='x'", lambda e: ("x", 0, [_SET]), INVALID),
        c("timeout=-1", lambda e: (0, -1, [_SET]), INVALID),
        c("timeout=nan", lambda e: (0, NAN, [_SET]), INVALID),
        c("timeout=2**32", lambda e: (0, 2**32, [_SET]), INVALID),
        c("timeout=0-unset", lambda e: (0, 0, [threading.Event()]), (aptrt.COMError, com.RPC_S_CALLPENDING)),
        c("uninitialised", lambda e: (0, com.INFINITE, [_SET]), OK, init="none"),
    ],
    "CreateStreamOnHGlobal": [
        c("arguments-ignored", lambda e: (5, "x"), OK),
        c("uninitialised", lambda e: (None, True), OK, init="none"),
    ],
    "FAILED": [
        c("None", lambda e: (None,), INVALID),
        c("'x'", lambda e: ("x",), INVALID),
        c("nan", lambda e: (NAN,), INVALID),
        c("huge", lambda e: (2**70,), OK),
    ],
    "SUCCEEDED": [
        c("None", lambda e: (None,), INVALID),
        c("1.5", lambda e: (1.5,), INVALID),
        c("unsigned-failure", lambda e: (0x80004005,), OK),
    ],
    "GetCurrentThreadId": NoArgs(OK),
}


def _registered(e: ComEnv, factory: Any) -> uuid.UUID:
    """A new CLSID with *factory* registered as its class object in this apartment."""
    clsid = uuid.uuid4()
    e.register(clsid, factory)
    return clsid


def _facade_functions() -> set[str]:
    return {
        name
        for name in com.__all__
        if callable(getattr(com, name)) and not isinstance(getattr(com, name), type) and not _is_constant(name)
    }


def _is_constant(name: str) -> bool:
    return isinstance(getattr(com, name), (int, uuid.UUID))


def test_every_facade_function_is_covered() -> None:
    """Each function aptrt.com exports has bad-input cases here, or an explicit "takes no arguments"."""
    functions = _facade_functions()
    missing = functions - set(FACADE)
    assert not missing, f"aptrt.com exports functions without bad-input cases: {sorted(missing)}"
    assert not set(FACADE) - functions, "cases for functions aptrt.com does not export"
    for name, cases in FACADE.items():
        params = list(inspect.signature(getattr(com, name)).parameters)
        if isinstance(cases, NoArgs):
            assert not params, f"{name} takes arguments: give it cases"
        else:
            assert cases, name


def _facade_params() -> list[Any]:
    params = []
    for name, cases in FACADE.items():
        if isinstance(cases, NoArgs):
            params.append(
                pytest.param(
                    name,
                    Case(lambda e: (), cases.uninitialised, init="none", undo=cases.undo),
                    id=f"{name}[uninitialised]",
                )
            )
            continue
        for case in cases:
            params.append(pytest.param(name, case, id=f"{name}[{case.label}]"))
    return params


@contextmanager
def com_state(init: str) -> Iterator[None]:
    """The test's thread as the main STA ("sta"), in the MTA ("mta") or not initialised ("none")."""
    if init == "sta":
        assert com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED) == com.S_OK
    elif init == "mta":
        assert com.CoInitializeEx(None, com.COINIT_MULTITHREADED) == com.S_OK
    try:
        yield
    finally:
        if init != "none":
            com.CoUninitialize()


def assert_com_usable(init: str) -> None:
    """COM still works on this thread: it is in the apartment it was in, and an object of it is called
    from an MTA thread (through a proxy, served by this thread's pumping wait when it is an STA)."""
    if init == "none":
        with pytest.raises(aptrt.NotInitializedError):
            com.CoGetApartmentType()
        with com_state("sta"):
            assert_com_usable("sta")
        return
    expected = com.APTTYPE_MAINSTA if init == "sta" else com.APTTYPE_MTA
    assert com.CoGetApartmentType() == (expected, com.APTTYPEQUALIFIER_NONE)
    obj = Counted(7)
    assert cross_apartment_value(obj) == 7
    assert obj.locks == 0
    git = com.CoCreateInstance(com.CLSID_StdGlobalInterfaceTable, None, _CTX, com.IID_IGlobalInterfaceTable)
    cookie = git.RegisterInterfaceInGlobal(obj, ITest)
    assert git.GetInterfaceFromGlobal(cookie, ITest) is obj
    git.RevokeInterfaceFromGlobal(cookie)


@pytest.mark.parametrize(("name", "case"), _facade_params())
def test_facade(name: str, case: Case) -> None:
    fn = getattr(com, name)
    with com_state(case.init):
        env = ComEnv()
        try:
            result, exc = outcome(lambda: fn(*case.args(env)))
            if exc is None and case.undo is not None:
                case.undo(result)
        finally:
            env.close()
        expect(exc, *case.error)
        assert_com_usable(case.init)
    assert_com_usable("none")


# -- the methods of the objects the facade hands out ------------------------------------------------------


def _cookie(e: ComEnv) -> int:
    """A live GIT cookie of a new object of this apartment (revoked by the environment's cleanup)."""
    git = e.git()
    cookie: int = git.RegisterInterfaceInGlobal(Counted(), ITest)
    e.cleanups.append(lambda: _revoke_quietly(git, cookie))
    return cookie


def _revoke_quietly(git: Any, cookie: int) -> None:
    try:
        git.RevokeInterfaceFromGlobal(cookie)
    except aptrt.InvalidArgumentError:  # the case revoked it already
        pass


def _stale_cookie(e: ComEnv) -> int:
    """A GIT cookie whose object's STA has been uninitialised since."""
    git = e.git()
    with ComThread(name="gone") as gone:
        cookie: int = gone.run(lambda: git.RegisterInterfaceInGlobal(Counted(), ITest))
    e.cleanups.append(lambda: _revoke_quietly(git, cookie))
    return cookie


def _context(e: ComEnv) -> Any:
    return com.CoGetObjectContext(com.IID_IContextCallback)


def _callback(data: Any) -> Any:
    return data


def _class_factory(e: ComEnv) -> Any:
    factory = com.CoGetClassObject(ComPinger, _CTX, None, com.IID_IClassFactory)
    e.cleanups.append(factory.Release)
    return factory


def _disconnected_proxy(e: ComEnv) -> Any:
    obj = e.host.run(Counted)
    stream = e.host.run(lambda: com.CoMarshalInterThreadInterfaceInStream(ITest, obj))
    proxy = com.CoGetInterfaceAndReleaseStream(stream, ITest)
    e.host.run(lambda: com.CoDisconnectObject(obj, 0))
    e.cleanups.append(proxy.Release)
    return proxy


def _orphan_proxy(e: ComEnv) -> Any:
    """A proxy whose object's STA has been uninitialised since."""
    with ComThread(name="gone") as gone:
        stream = gone.run(lambda: com.CoMarshalInterThreadInterfaceInStream(ITest, Counted()))
        proxy = com.CoGetInterfaceAndReleaseStream(stream, ITest)
    e.cleanups.append(proxy.Release)
    return proxy


def _from_mta_thread(fn: Callable[[], Any]) -> Any:
    def run() -> Any:
        com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
        try:
            return fn()
        finally:
            com.CoUninitialize()

    return in_thread(run)


@dataclass(frozen=True)
class Method:
    """Calls of one method of an object the facade hands out: *target* makes the object (or the bound
    method itself, for calls that must happen elsewhere)."""

    target: Callable[[ComEnv], Any]
    cases: list[Case]


def _call_on(method: str, where: Callable[[Callable[[], Any]], Any]) -> Callable[[ComEnv], Any]:
    """A target whose *method* runs through *where* (another thread, say)."""

    def target(e: ComEnv) -> Any:
        proxy = e.proxy()

        class _Elsewhere:
            def __getattr__(self, name: str) -> Any:
                return lambda *args: where(lambda: getattr(proxy, method)(*args))

        return _Elsewhere()

    return target


METHODS: dict[str, Method] = {
    "IGlobalInterfaceTable.RegisterInterfaceInGlobal": Method(
        lambda e: e.git(),
        [
            c("None", lambda e: (None, ITest), INVALID),
            c("5", lambda e: (5, ITest), NOINTERFACE),
            c("class", lambda e: (Counted, ITest), NOINTERFACE),
            c("riid=None", lambda e: (Counted(), None), INVALID),
            c("riid='{zz}'", lambda e: (Counted(), "{zz}"), INVALID),
            c("riid=not-implemented", lambda e: (Counted(), IOther), NOINTERFACE),
            c("released-proxy", lambda e: (e.released_proxy(), ITest), NOTCONNECTED),
        ],
    ),
    "IGlobalInterfaceTable.RevokeInterfaceFromGlobal": Method(
        lambda e: e.git(),
        [
            c(label, lambda e, v=value: (v,), INVALID)  # type: ignore[misc]
            for label, value in (("0", 0), ("unknown", 10**9), ("None", None), ("'1'", "1"), ("list", [1]), ("-1", -1))
        ],
    ),
    "IGlobalInterfaceTable.GetInterfaceFromGlobal": Method(
        lambda e: e.git(),
        [
            *[
                c(label, lambda e, v=value: (v, ITest), INVALID)  # type: ignore[misc]
                for label, value in (("0", 0), ("unknown", 10**9), ("None", None), ("list", [1]), ("nan", NAN))
            ],
            c("riid=None", lambda e: (_cookie(e), None), INVALID),
            c("riid=not-implemented", lambda e: (_cookie(e), IOther), NOINTERFACE),
            c("riid=unknown", lambda e: (_cookie(e), UNKNOWN_GUID), NOINTERFACE),
            c("object-gone", lambda e: (_stale_cookie(e), ITest), OBJNOTREG),  # table data: CO_E_OBJNOTREG
        ],
    ),
    "IStream.Seek": Method(
        lambda e: e.stream(),
        [
            c("None", lambda e: (None,), INVALID),
            c("'1'", lambda e: ("1",), INVALID),
            c("nan", lambda e: (NAN,), INVALID),
            c("1.5", lambda e: (1.5,), INVALID),
            c("True", lambda e: (True, com.STREAM_SEEK_SET), INVALID),
            c("before-start", lambda e: (-1, com.STREAM_SEEK_SET), INVALID),
            c("origin=99", lambda e: (0, 99), INVALID),
            c("origin=None", lambda e: (0, None), INVALID),
            c("origin=list", lambda e: (0, []), INVALID),
            c("origin=0.0", lambda e: (0, 0.0), INVALID),
            c("origin=False", lambda e: (0, False), INVALID),
            c("past-the-end", lambda e: (2**70, com.STREAM_SEEK_SET), OK),
        ],
    ),
    "IStream.Clone": Method(lambda e: e.stream(), [c("no-arguments", lambda e: (), OK)]),
    "IContextCallback.ContextCallback": Method(
        _context,
        [
            c("callback=None", lambda e: (None, 1, ITest, 3, None), INVALID),
            c("callback=5", lambda e: (5, 1, ITest, 3, None), INVALID),
            c("riid=None", lambda e: (_callback, 1, None, 3, None), INVALID),
            c("riid='zz'", lambda e: (_callback, 1, "zz", 3, None), INVALID),
            c(
                "riid=IID_IUnknown", lambda e: (_callback, 1, com.IID_IUnknown, 3, None), INVALID
            ),  # [D: ContextCallback]
            c("method=2", lambda e: (_callback, 1, ITest, 2, None), INVALID),
            c("method='3'", lambda e: (_callback, 1, ITest, "3", None), INVALID),
            c("method=nan", lambda e: (_callback, 1, ITest, NAN, None), INVALID),
            c("pUnk=5", lambda e: (_callback, 1, ITest, 3, 5), INVALID),
            c("returns-E_FAIL", lambda e: (_callback, com.E_FAIL, ITest, 3, None), (aptrt.COMError, com.E_FAIL)),
            c("returns-E_NOINTERFACE", lambda e: (_callback, com.E_NOINTERFACE, ITest, 3, None), NOINTERFACE),
            c("returns-beyond-32-bits", lambda e: (_callback, -(2**40), ITest, 3, None), OK),
        ],
    ),
    "IUnknown.QueryInterface": Method(
        lambda e: Counted(),
        [
            c("None", lambda e: (None,), INVALID),
            c("5", lambda e: (5,), INVALID),
            c("'{zz}'", lambda e: ("{zz}",), INVALID),
            c("unknown", lambda e: (UNKNOWN_GUID,), NOINTERFACE),
            c("not-implemented", lambda e: (IOther,), NOINTERFACE),
            c("impl-class", lambda e: (Counted,), INVALID),
        ],
    ),
    "ComProxy.QueryInterface": Method(
        lambda e: e.proxy(),
        [
            c("None", lambda e: (None,), INVALID),
            c("unknown", lambda e: (UNKNOWN_GUID,), NOINTERFACE),
            c("not-implemented", lambda e: (IOther,), NOINTERFACE),
        ],
    ),
    "ComProxy(released).QueryInterface": Method(
        lambda e: e.released_proxy(), [c("ITest", lambda e: (ITest,), NOTCONNECTED)]
    ),
    "ComProxy(released).Value": Method(lambda e: e.released_proxy(), [c("call", lambda e: (), NOTCONNECTED)]),
    "ComProxy(disconnected).Value": Method(_disconnected_proxy, [c("call", lambda e: (), DISCONNECTED)]),
    "ComProxy(orphaned).Value": Method(_orphan_proxy, [c("call", lambda e: (), DISCONNECTED)]),
    "ComProxy(other-thread).Value": Method(
        _call_on("Value", _from_mta_thread),
        [c("call", lambda e: (), (aptrt.WrongThreadError, com.RPC_E_WRONG_THREAD))],  # the proxy is this STA's
    ),
    "ComProxy(uninitialised-thread).Value": Method(_call_on("Value", in_thread), [c("call", lambda e: (), NOTINIT)]),
    "ComProxy.Value": Method(lambda e: e.proxy(), [c("too-many-arguments", lambda e: (1, 2), (TypeError, None))]),
    "IMarshal.MarshalInterface": Method(
        lambda e: com.CoCreateFreeThreadedMarshaler(None),
        [
            c("stream=None", lambda e: (None, ITest, Counted(), com.MSHCTX_INPROC, None, 0), INVALID),
            c("pv=None", lambda e: (e.empty_stream(), ITest, None, com.MSHCTX_INPROC, None, 0), INVALID),
            c("flags='x'", lambda e: (e.empty_stream(), ITest, Counted(), com.MSHCTX_INPROC, None, "x"), INVALID),
            c(
                "riid=not-implemented",
                lambda e: (e.empty_stream(), IOther, Counted(), com.MSHCTX_INPROC, None, 0),
                NOINTERFACE,
            ),
        ],
    ),
    "IMarshal.UnmarshalInterface": Method(
        lambda e: com.CoCreateFreeThreadedMarshaler(None),
        [c("None", lambda e: (None, ITest), INVALID), c("empty", lambda e: (e.empty_stream(), ITest), READFAULT)],
    ),
    "IMarshal.ReleaseMarshalData": Method(
        lambda e: com.CoCreateFreeThreadedMarshaler(None), [c("5", lambda e: (5,), INVALID)]
    ),
    "IClassFactory.CreateInstance": Method(
        _class_factory,
        [
            c("outer=5", lambda e: (5, com.IID_IUnknown), (aptrt.COMError, com.CLASS_E_NOAGGREGATION)),
            c("riid=None", lambda e: (None, None), INVALID),
            c("riid=not-implemented", lambda e: (None, ITest), NOINTERFACE),
        ],
    ),
}


def _method_params() -> list[Any]:
    return [
        pytest.param(key, case, id=f"{key}[{case.label}]") for key, method in METHODS.items() for case in method.cases
    ]


@pytest.mark.parametrize(("key", "case"), _method_params())
def test_facade_methods(key: str, case: Case) -> None:
    method = key.rsplit(".", 1)[1]
    with com_state(case.init):
        env = ComEnv()
        try:
            target = METHODS[key].target(env)
            result, exc = outcome(lambda: getattr(target, method)(*case.args(env)))
            if exc is None and case.undo is not None:
                case.undo(result)
        finally:
            env.close()
        expect(exc, *case.error)
        assert_com_usable(case.init)
    assert_com_usable("none")


#: every class aptrt.com exports, and where its bad input is covered
FACADE_CLASSES = {
    "COMError": "the exception itself (test_errors.py)",
    "HRESULT": "an IntEnum of codes (test_errors.py)",
    "INTERFACEINFO": "a frozen dataclass given to message filters",
    "ComProxy": "METHODS: ComProxy*",
    "IClassFactory": "METHODS: IClassFactory.CreateInstance",
    "IComThreadingInfo": "no arguments (GetCurrentApartmentType, ...)",
    "IContextCallback": "METHODS: IContextCallback.ContextCallback",
    "IExternalConnection": "implemented by user objects, called by aptrt",
    "IGlobalInterfaceTable": "METHODS: IGlobalInterfaceTable.*",
    "IMarshal": "METHODS: IMarshal.*",
    "IMessageFilter": "implemented by user objects (FACADE: CoRegisterMessageFilter)",
    "IObjContext": "no methods of its own",
    "IStream": "METHODS: IStream.*",
    "IUnknown": "METHODS: IUnknown.QueryInterface (AddRef/Release take no arguments)",
}


def test_every_facade_export_is_classified() -> None:
    """Every name aptrt.com exports is a constant, a function with cases (FACADE) or a class listed above;
    the METHODS keys name real methods."""
    for name in com.__all__:
        value = getattr(com, name)
        if isinstance(value, type):
            assert name in FACADE_CLASSES, f"aptrt.com exports class {name}: say where its bad input is covered"
        elif callable(value):
            assert name in FACADE, name
        else:
            assert _is_constant(name), name
    for key in METHODS:
        cls_name, method = key.split(".", 1)[0].split("(")[0], key.rsplit(".", 1)[1]
        assert hasattr(getattr(com, cls_name), method) or cls_name == "ComProxy", key


def test_facade_foreign_data() -> None:
    """Marshal data and GIT cookies of a facade runtime that has closed since (every thread
    uninitialised): CO_E_OBJNOTCONNECTED and E_INVALIDARG in the next one, which works on."""
    with com_state("sta"):
        stream = com.CoMarshalInterThreadInterfaceInStream(ITest, Counted())
        table = com.CreateStreamOnHGlobal(None, True)
        com.CoMarshalInterface(table, ITest, Counted(), com.MSHCTX_INPROC, None, com.MSHLFLAGS_TABLESTRONG)
        git = ComEnv().git()
        cookie = git.RegisterInterfaceInGlobal(Counted(), ITest)
    assert not _init.facade_state()["runtime_open"]
    with com_state("sta"):
        _, exc = outcome(lambda: com.CoGetInterfaceAndReleaseStream(stream, ITest))
        expect(exc, *NOTCONNECTED)
        table.Seek(0, com.STREAM_SEEK_SET)
        _, exc = outcome(lambda: com.CoUnmarshalInterface(table, ITest))
        expect(exc, *OBJNOTREG)  # table data whose object is gone (the facade's documented code)
        _, exc = outcome(lambda: ComEnv().git().GetInterfaceFromGlobal(cookie, ITest))
        expect(exc, *INVALID)
        _, exc = outcome(lambda: git.GetInterfaceFromGlobal(cookie, ITest))  # the old GIT object itself
        expect(exc, *INVALID)
        assert_com_usable("sta")
