"""Facade proxies: blocking, COM-counted references to objects of other apartments.

Each importing apartment has one :class:`ProxyManager` per object (COM's proxy manager), which holds one
core proxy and one external reference on the object's :class:`~aptrt.com._unknown.StubManager`. It hands
out one :class:`ComProxy` per interface; ``AddRef``/``Release``/``QueryInterface`` on any of them count on
the manager, so ``QueryInterface(IID_IUnknown)`` gives the same proxy whichever interface it starts from
(COM identity). The last ``Release`` gives the external reference back; so does garbage collection of
every proxy of the manager (deferred to the next facade call: finalizers take no locks).

``proxy.Method(*args)`` is a blocking call: the thread pumps while it waits if it is an STA. Interface
arguments of a sync method arrive in the callee as facade proxies (or as the object itself in its home
apartment); interface results come back as facade proxies of the caller's apartment.

Threads: ``_managers`` is guarded by ``_lock``; a manager's ``refs``/``released`` by its own ``lock``.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from typing import Any

from .._core._apartment import Apartment
from .._core._call import Call
from .._core._exceptions import (
    DisconnectReason,
    InvalidArgumentError,
    NoInterfaceError,
    NotInitializedError,
    ObjectNotConnectedError,
    WrongThreadError,
)
from .._core._interface import Interface, is_com_object, primary_interface
from .._core._invoke import new_call
from .._core._marshal import PLAIN, by_reference
from .._core._proxy import Proxy, make_proxy
from .._core._stub import Stub
from .._core._threadstate import current_call, tls
from . import _init
from ._unknown import IUnknown, StubManager, ext_addref, ext_release, get_manager
from ._util import to_interface
from ._wait import call_blocking


class ProxyManager:
    """One importing apartment's proxy manager for one object (see the module docstring)."""

    __slots__ = ("apartment", "stub", "home", "core", "refs", "released", "ifaces", "lock", "__weakref__")

    def __init__(self, apartment: Apartment, stub: Stub, home: StubManager, core: Proxy[Any]) -> None:
        self.apartment = apartment
        self.stub = stub
        self.home = home
        #: the core proxy: one reference on the core stub
        self.core = core
        #: COM references handed out (AddRef/Release/QueryInterface)
        self.refs = 0
        #: set once, under ``lock``: the external reference was given back
        self.released = False
        self.ifaces: weakref.WeakValueDictionary[type[Interface], ComProxy] = weakref.WeakValueDictionary()
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        state = "released" if self.released else f"refs={self.refs}"
        return f"<ProxyManager {self.stub.info.cls.__qualname__} held by {self.apartment.name!r} {state}>"

    def addref(self) -> int:
        with self.lock:
            self.refs += 1
            return self.refs

    def release_ref(self) -> int:
        with self.lock:
            if self.released:
                return 0
            self.refs = max(0, self.refs - 1)
            count = self.refs
            if count == 0:
                self.released = True
        if count == 0:
            self._give_back()
        return count

    def drop(self) -> None:
        """Give the external reference back (the importing apartment goes), whatever the count."""
        with self.lock:
            if self.released:
                return
            self.released = True
        self._give_back()

    def _give_back(self) -> None:
        _forget(self)
        self.core.release()
        ext_release(self.home, 1, False, True)

    def proxy_for(self, interface: type[Interface]) -> ComProxy:
        """The proxy of this manager for *interface* (no reference taken)."""
        with self.lock:
            proxy = self.ifaces.get(interface)
            if proxy is None:
                proxy = object.__new__(_proxy_class(interface))
                proxy._pm = self
                proxy._iface = interface
                self.ifaces[interface] = proxy
            return proxy

    def __del__(self) -> None:
        try:
            released = self.released
        except AttributeError:
            return
        if not released:
            _deferred.append(self.home)  # given back at the next facade call (no locks in a finalizer)


_lock = threading.Lock()
_managers: weakref.WeakValueDictionary[tuple[int, int], ProxyManager] = weakref.WeakValueDictionary()
#: external references of proxy managers collected by the garbage collector, to give back
_deferred: deque[StubManager] = deque()


def _forget(manager: ProxyManager) -> None:
    key = (id(manager.apartment), id(manager.stub))
    with _lock:
        if _managers.get(key) is manager:
            del _managers[key]


@_init.on_flush
def flush_deferred() -> None:
    while _deferred:
        try:
            home = _deferred.popleft()
        except IndexError:
            break
        ext_release(home, 1, False, True)


@_init.on_teardown
def _teardown_proxies(apartment: Apartment) -> None:
    with _lock:
        doomed = [m for m in _managers.values() if m.apartment is apartment]
    for manager in doomed:
        manager.drop()
    flush_deferred()


def acquire(
    apartment: Apartment, stub: Stub, home: StubManager, interface: type[Interface], *, transfer: bool = False
) -> ComProxy:
    """A proxy for *interface* in *apartment* on *stub*'s object, with one more COM reference.

    :param transfer: the caller hands over one strong external reference it holds on *home* (unmarshaling
        NORMAL marshal data): a new manager keeps it, an existing one does not need it
    """
    key = (id(apartment), id(stub))
    with _lock:
        manager = _managers.get(key)
        existing = False
        if manager is not None:
            with manager.lock:
                if not manager.released:
                    manager.refs += 1
                    existing = True
        if not existing:
            core = make_proxy(stub, apartment, primary_interface(stub.info.cls))
            manager = _managers[key] = ProxyManager(apartment, stub, home, core)
            manager.refs = 1
    assert manager is not None
    if existing and transfer:
        ext_release(home, 1, False, True)
    elif not existing and not transfer:
        ext_addref(home, 1)
    return manager.proxy_for(interface)


def proxies_held_by(apartment: Apartment) -> int:
    """How many live proxy managers *apartment* holds (statistics, tests)."""
    with _lock:
        return sum(1 for m in _managers.values() if m.apartment is apartment and not m.released)


# -- facade proxies ---------------------------------------------------------------------------------------


class ComProxy:
    """A blocking proxy of the facade for one interface of an object of another apartment.

    Only the interface's methods are reachable; each blocks until the call returns (pumping in an STA).
    ``QueryInterface``, ``AddRef`` and ``Release`` are answered locally, as COM's proxy manager does.
    """

    __slots__ = ("_pm", "_iface", "__weakref__")

    _pm: ProxyManager
    _iface: type[Interface]

    def __init__(self) -> None:
        raise TypeError("facade proxies are made by aptrt.com (unmarshaling, activation, QueryInterface)")

    def __repr__(self) -> str:
        manager = self._pm
        stub = manager.stub
        state = " disconnected" if stub.disconnected else (" released" if manager.released else "")
        return (
            f"<ComProxy[{self._iface.__name__}] to {stub.info.cls.__qualname__} in {stub.apartment.name!r}"
            f", held by {manager.apartment.name!r}{state}>"
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ComProxy):
            return self._pm.stub is other._pm.stub
        return NotImplemented

    def __hash__(self) -> int:
        return id(self._pm.stub)

    def QueryInterface(self, riid: Any) -> ComProxy:
        """Another interface of the same object, as a proxy of this apartment (one more reference).

        :raises NoInterfaceError: the object does not implement it (``E_NOINTERFACE``)
        """
        _init.flush()
        interface = to_interface(riid)
        manager = self._pm
        _check(manager)
        if interface is Interface:
            interface = IUnknown
        if interface is not IUnknown and not manager.stub.info.implements(interface):
            raise NoInterfaceError(f"{manager.stub.info.cls.__qualname__} does not implement {interface.__name__}")
        manager.addref()
        return manager.proxy_for(interface)

    def AddRef(self) -> int:
        return self._pm.addref()

    def Release(self) -> int:
        """One reference less; the last one gives the object's external reference back. Allowed from any
        thread (a proxy released from the wrong apartment still gives its reference back)."""
        return self._pm.release_ref()


def _check(manager: ProxyManager) -> None:
    apartment = manager.apartment
    if manager.released or apartment.closing:
        raise ObjectNotConnectedError(
            f"this proxy of {apartment.name!r} was released (or its apartment uninitialized)",
            reason=DisconnectReason.CLIENT_SHUTDOWN,
        )
    current = tls.s.apartment
    if current is not apartment and not apartment.admits(current):
        if current is None and _init.current_apartment_or_none() is None:
            raise NotInitializedError("COM is not initialized on this thread")
        where = "a thread outside any apartment" if current is None else repr(current.name)
        raise WrongThreadError(f"this proxy belongs to apartment {apartment.name!r} but is used from {where}")
    stub = manager.stub
    if stub.disconnected:
        raise stub.disconnected_error()


def _invoke(proxy: ComProxy, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _init.flush()
    manager = proxy._pm
    _check(manager)
    apartment = manager.apartment
    stub = manager.stub
    target = stub.apartment
    is_async = stub.info.is_async.get(name, False)
    if args:
        args = tuple(_outgoing(value, apartment, target, is_async) for value in args)
    if kwargs:
        kwargs = {key: _outgoing(value, apartment, target, is_async) for key, value in kwargs.items()}
    top_level = current_call() is None

    def make() -> Call:
        call = new_call(None, name, args, kwargs, stub, is_async, apartment, blocking=True)
        if top_level:
            call.causality = _init.thread_causality()
        return call

    return to_facade(call_blocking(target, make(), make), apartment)


def _make_method(name: str) -> Any:
    def method(self: ComProxy, *args: Any, **kwargs: Any) -> Any:
        return _invoke(self, name, args, kwargs)

    method.__name__ = method.__qualname__ = name
    return method


_LOCAL = frozenset(("QueryInterface", "AddRef", "Release"))
_classes: dict[type[Interface], type[ComProxy]] = {}


def _proxy_class(interface: type[Interface]) -> type[ComProxy]:
    cls = _classes.get(interface)
    if cls is None:
        namespace: dict[str, Any] = {"__slots__": ()}
        for name in sorted(interface.__interface_methods__ - _LOCAL):
            namespace[name] = _make_method(name)
        cls = type(f"ComProxy[{interface.__name__}]", (ComProxy,), namespace)
        cls.__module__ = "aptrt.com"
        _classes[interface] = cls
    return cls


# -- values crossing apartments through facade proxies -----------------------------------------------------


def rehome(proxy: ComProxy, apartment: Apartment) -> Any:
    """*proxy*'s object as *apartment* must see it: the object itself at home, else its own proxy there
    (one more reference)."""
    manager = proxy._pm
    stub = manager.stub
    if stub.apartment is apartment:
        return stub.live_object()
    if manager.apartment is apartment:
        manager.addref()
        return proxy
    return acquire(apartment, stub, manager.home, proxy._iface)


def _outgoing(value: Any, src: Apartment, dst: Apartment, is_async: bool) -> Any:
    """An argument of a call from *src* to *dst*: interfaces arrive in a sync callee as facade proxies."""
    if type(value) in PLAIN:
        return value
    if isinstance(value, ComProxy):
        if is_async:
            return value._pm.core  # the core marshals it into an async proxy of dst
        return by_reference(rehome(value, dst))
    if is_async or isinstance(value, Proxy):
        return value
    if is_com_object(value) and not getattr(value, "__aptrt_agile__", False) and src is not dst:
        home = get_manager(value, src)
        return by_reference(acquire(dst, home.stub, home, primary_interface(type(value))))
    if type(value) in (list, tuple):
        return type(value)(_outgoing(item, src, dst, is_async) for item in value)
    if type(value) is dict:
        return {key: _outgoing(item, src, dst, is_async) for key, item in value.items()}
    return value


def to_facade(value: Any, apartment: Apartment) -> Any:
    """A value received in *apartment*, with core proxies turned into facade proxies of *apartment*."""
    if type(value) in PLAIN:
        return value
    if isinstance(value, Proxy):
        return adopt(value)
    if isinstance(value, ComProxy) and value._pm.apartment is not apartment:
        return rehome(value, apartment)
    if type(value) in (list, tuple):
        return type(value)(to_facade(item, apartment) for item in value)
    if type(value) is dict:
        return {key: to_facade(item, apartment) for key, item in value.items()}
    return value


def adopt(proxy: Proxy[Any]) -> ComProxy:
    """The facade proxy for a core proxy (which is released: the proxy manager holds its own)."""
    stub = proxy._stub
    obj = stub.live_object()
    if proxy._released:
        raise InvalidArgumentError(f"{proxy!r} was released")
    home = get_manager(obj, stub.apartment)
    result = acquire(proxy._apartment, stub, home, proxy._interface)
    proxy.release()
    return result
