"""Typed proxies: the only way to reach an object of another apartment."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from ._call import Call, _causality_ids
from ._exceptions import (
    CallRejectedError,
    DeadlineExceededError,
    DisconnectedError,
    DisconnectReason,
    InvalidArgumentError,
    NoInterfaceError,
    WrongThreadError,
)
from ._flow import NoRoom
from ._interface import Interface, class_info, is_com_object, resolve_interface
from ._invoke import call_when_room, invoke, invoke_blocking, new_call, retry_rejected, retry_rejected_blocking
from ._marshal import PLAIN, is_plain, marshal_args, marshal_kwargs
from ._port import defer_to_own_deadline
from ._threadstate import current_call_var, tls
from ._validate import check_seconds

if TYPE_CHECKING:
    from ._apartment import Apartment
    from ._port import Port
    from ._stub import Stub

I = TypeVar("I", bound=Interface)
J = TypeVar("J", bound=Interface)


class Proxy(Generic[I]):
    """A reference to an object in another apartment, exposing only the methods of interface ``I``.

    Each method is a coroutine function: ``await proxy.method(*args)`` marshals the call to the
    object's apartment and returns its result (or raises its exception, with the remote traceback).
    A proxy belongs to the apartment that received it; using it from another raises
    :class:`WrongThreadError`. Release it with ``await proxy.aclose()`` / ``proxy.release()``, with
    ``async with proxy:``, or by dropping it (garbage collection releases it too).
    """

    __slots__ = ("_stub", "_apartment", "_interface", "_released", "__weakref__")

    _stub: Stub
    _apartment: Apartment
    _interface: type[I]
    _released: bool

    def __init__(self) -> None:
        raise TypeError("proxies are made by aptrt (marshaling, create, query_interface), not constructed")

    if TYPE_CHECKING:
        # Interface methods are generated per interface (see _proxy_class); to a type checker each is a
        # coroutine function. `aptrt.as_interface(proxy)` gives back the interface's own signatures.
        def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]: ...

    # -- identity --------------------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Proxy):
            return self._stub is other._stub
        return NotImplemented

    def __hash__(self) -> int:
        return id(self._stub)

    def __repr__(self) -> str:
        stub = self._stub
        state = " disconnected" if stub.disconnected else (" released" if self._released else "")
        return (
            f"<Proxy[{self._interface.__name__}] to {stub.info.cls.__qualname__} in {stub.apartment.name!r}"
            f", held by {self._apartment.name!r}{state}>"
        )

    # -- lifetime --------------------------------------------------------------------------------------

    def release(self) -> None:
        """Give back this proxy's reference now (idempotent); later calls through it fail."""
        if not self._released:
            self._released = True
            self._stub.release()

    async def aclose(self) -> None:
        """Release the proxy (the async spelling, for ``contextlib.AsyncExitStack`` and friends)."""
        self.release()

    async def __aenter__(self) -> Proxy[I]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            released = self._released
        except AttributeError:  # construction failed
            return
        if not released:
            self._stub.apartment.release_later(self._stub)

    @property
    def interface(self) -> type[I]:
        """The interface this proxy exposes."""
        return self._interface

    @property
    def apartment(self) -> Apartment:
        """The apartment this proxy belongs to (where it may be used)."""
        return self._apartment

    @property
    def target_apartment(self) -> Apartment:
        """The apartment that hosts the object."""
        return self._stub.apartment


def _check(proxy: Proxy[Any]) -> tuple[Apartment, Stub]:
    apartment = proxy._apartment
    current = tls.s.apartment
    if current is not apartment and not apartment.admits(current):
        raise WrongThreadError(
            f"{proxy!r} belongs to apartment {apartment.name!r} but is used from "
            f"{'a thread outside any apartment' if current is None else repr(current.name)}; "
            "marshal it (pass it as an argument, or use aptrt.AgileReference) instead"
        )
    if apartment.closing:
        raise DisconnectedError(
            f"{proxy!r} belongs to apartment {apartment.name!r}, which shut down",
            reason=DisconnectReason.CLIENT_SHUTDOWN,
        )
    if proxy._released:
        raise InvalidArgumentError(f"{proxy!r} was released")
    stub = proxy._stub
    if stub.disconnected:
        raise stub.disconnected_error()
    return apartment, stub


def start_call(proxy: Proxy[Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any], begin: bool) -> Any:
    """Check, build and queue a call of *proxy*'s method *name* (the hot path of every cross-apartment
    call). Returns ``(call, port, waiting)``, *waiting* being what to await for the reply (from
    ``port.send``; None for a call awaited later, see ``Port.begin``); on the rare paths (a full inbox that makes callers wait,
    a rejection the caller retries, a loop aptrt does not serve) a coroutine that makes the whole call."""
    state = tls.s
    apartment = proxy._apartment
    current = state.apartment
    if (current is not apartment and not apartment.admits(current)) or (proxy._released or proxy._stub.disconnected):
        _check(proxy)  # raises the right error
    stub = proxy._stub
    target = stub.apartment
    # (a lone plain argument, the commonest call, is checked inline: one frame less)
    if args and (len(args) > 1 or type(args[0]) not in PLAIN) and not is_plain(args):
        args = marshal_args(args, apartment, target)
    parent = state.call or current_call_var.get()
    port = state.port
    if port is None:  # a loop aptrt does not serve (an implicit-MTA thread's own loop)
        return invoke(target, new_call(None, name, args, kwargs, stub, stub.info.is_async[name], apartment))
    call = Call(
        None,
        name,
        args,
        marshal_kwargs(kwargs, apartment, target) if kwargs else None,
        stub,
        stub.info.is_async[name],
        port.caller_deadline(),
        parent.causality if parent is not None else next(_causality_ids),
        apartment,
        parent,
    )
    try:
        if begin:
            port.begin(call, target.submit)
            waiting = None  # the handle asks port.reply_later when it is awaited
        else:
            waiting = port.send(call, target.submit)
    except NoRoom:  # the target's bounded inbox is full and makes callers wait
        return call_when_room(target, call)
    except CallRejectedError as exc:
        if apartment.retry_policy is None:
            raise
        return retry_rejected(apartment, _retry_maker(call, kwargs), target, exc)
    return call, port, waiting


async def finish_failed(call: Call, port: Port, kwargs: dict[str, Any] | None) -> Any:
    """The reply of *call* carries an error: let the caller's own deadline fire first, or retry a
    rejection under the caller's retry policy; else raise it."""
    apartment = call.caller
    assert apartment is not None
    if type(call.error) is DeadlineExceededError:
        await defer_to_own_deadline(port)
    if apartment.retry_policy is not None and isinstance(call.error, CallRejectedError):
        return await retry_rejected(apartment, _retry_maker(call, kwargs), call.stub.apartment, call.error)  # type: ignore[union-attr]
    return call.result()


def _make_async_method(name: str) -> Callable[..., Awaitable[Any]]:
    async def method(self: Proxy[Any], *args: Any, **kwargs: Any) -> Any:
        started = start_call(self, name, args, kwargs, False)
        if type(started) is not tuple:
            return await started
        call, port, waiting = started
        # Port.call's body, inlined: one coroutine frame less on every cross-apartment call
        try:
            await waiting
        except BaseException:
            if not call.abandoned:
                call.abandon()
            raise
        if call.error is not None:
            return await finish_failed(call, port, kwargs)
        return call.result()

    method.__name__ = method.__qualname__ = name
    return method


def _retry_maker(call: Call, kwargs: dict[str, Any] | None, *, first: Call | None = None) -> Callable[[], Call]:
    """Builds the next attempt of a rejected *call*: same target, arguments and causality chain."""
    pending = [first] if first is not None else []

    def make() -> Call:
        if pending:
            return pending.pop()
        retry = Call(
            None,
            call.name,
            call.args,
            call.kwargs,
            call.stub,
            call.is_async,
            call.deadline,
            call.causality,
            call.caller,
        )
        return retry

    return make


_proxy_classes: dict[type[Interface], type[Proxy[Any]]] = {}


def _proxy_class(interface: type[I]) -> type[Proxy[I]]:
    cls = _proxy_classes.get(interface)
    if cls is None:
        namespace: dict[str, Any] = {"__slots__": ()}
        for name in interface.__interface_methods__:
            namespace[name] = _make_async_method(name)
        cls = type(f"Proxy[{interface.__name__}]", (Proxy,), namespace)
        cls.__module__ = "aptrt"
        _proxy_classes[interface] = cls
    return cls


def make_proxy(stub: Stub, apartment: Apartment, interface: type[I]) -> Proxy[I]:
    """A new proxy on *stub*, owned by *apartment* (takes one reference on the stub)."""
    proxy = object.__new__(_proxy_class(interface))
    proxy._released = True  # until the reference is really taken
    proxy._stub = stub
    proxy._apartment = apartment
    proxy._interface = interface
    stub.addref()
    proxy._released = False
    apartment.imports[id(proxy)] = proxy
    return proxy


# -- QueryInterface ------------------------------------------------------------------------------------


@overload
def query_interface(obj: Proxy[Any], interface: type[J]) -> Proxy[J]: ...  # type: ignore[overload-overlap]
@overload
def query_interface(obj: object, interface: type[J]) -> J: ...
@overload
def query_interface(obj: object, interface: uuid.UUID | str) -> Any: ...
def query_interface(obj: object, interface: type[J] | uuid.UUID | str) -> Any:
    """Ask *obj* (an object or a proxy) for another of its interfaces, as QueryInterface does.

    On a proxy, returns a proxy for *interface* on the same object (same apartment, equal to the first);
    on a local object, returns the object itself. Raises :class:`NoInterfaceError` (``E_NOINTERFACE``)
    when the object does not implement it, :class:`InvalidArgumentError` (``E_INVALIDARG``) for None, a
    released proxy or an *interface* that is not one. No call crosses apartments: interfaces are static
    in aptrt.
    """
    if obj is None:
        raise InvalidArgumentError("query_interface(None): no object to ask")
    iface: type[J] = resolve_interface(interface)
    if isinstance(obj, Proxy):
        if obj._released:
            raise InvalidArgumentError(f"{obj!r} was released")
        stub = obj._stub
        if stub.disconnected:
            raise stub.disconnected_error()
        if not stub.info.implements(iface):
            raise NoInterfaceError(f"{stub.info.cls.__qualname__} does not implement {iface.__name__}")
        if iface is obj._interface:
            return obj
        return make_proxy(stub, obj._apartment, iface)
    if is_com_object(obj):
        if class_info(type(obj)).implements(iface):
            return obj
        raise NoInterfaceError(f"{type(obj).__qualname__} does not implement {iface.__name__}")
    raise NoInterfaceError(f"{type(obj).__qualname__} implements no aptrt interface")


# -- blocking twins ------------------------------------------------------------------------------------


class BlockingProxy(Generic[I]):
    """The methods of a proxy as blocking calls, for plain threads and MTA workers (see :func:`blocking`)."""

    __slots__ = ("_proxy", "_timeout")

    def __init__(self, proxy: Proxy[I], timeout: float | None) -> None:
        self._proxy = proxy
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"<blocking {self._proxy!r}>"

    def __getattr__(self, name: str) -> Callable[..., Any]:
        proxy = self._proxy
        if name not in proxy._interface.__interface_methods__:
            raise AttributeError(f"interface {proxy._interface.__name__} has no method {name!r}")
        timeout = self._timeout

        def method(*args: Any, **kwargs: Any) -> Any:
            apartment, stub = _check(proxy)
            call = new_call(None, name, args, kwargs, stub, stub.info.is_async[name], apartment, blocking=True)
            if apartment.retry_policy is None:
                return invoke_blocking(stub.apartment, call, timeout)
            return retry_rejected_blocking(apartment, _retry_maker(call, kwargs, first=call), stub.apartment, timeout)

        method.__name__ = name
        return method


def blocking(proxy: Proxy[I], *, timeout: float | None = None) -> BlockingProxy[I]:
    """Blocking twins of *proxy*'s methods for code that runs outside an event loop.

    ``aptrt.blocking(proxy).method(*args)`` waits for the result on the current thread. Use it from plain
    threads and from sync methods running in the MTA; from an event loop, await the proxy instead
    (calling it there raises :class:`WrongThreadError` rather than blocking the loop).

    :param timeout: seconds to wait for each call (None: no limit); on expiry the call is abandoned
        (cancelled in the callee) and :class:`TimeoutError` is raised
    """
    if not isinstance(proxy, Proxy):
        raise InvalidArgumentError(f"aptrt.blocking() takes a proxy, not {type(proxy).__name__}")
    return BlockingProxy(proxy, check_seconds(timeout))


def as_interface(proxy: Proxy[I]) -> I:
    """*proxy*, typed as its interface for static checkers (runtime no-op)."""
    return cast(I, proxy)
