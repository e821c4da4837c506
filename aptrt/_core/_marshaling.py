"""Explicit marshaling: marshal data (one-shot and table), the global interface table, agile objects.

``marshal_interface`` writes marshal data for an object or proxy; ``unmarshal_interface`` turns it into
what the current apartment may use: the object itself in its home apartment, a proxy anywhere else.

* ``MSHLFLAGS.NORMAL``: one use. The data holds a reference until it is unmarshaled or released; a
  second unmarshal raises :class:`ObjectNotConnectedError` (``CO_E_OBJNOTCONNECTED``).
* ``MSHLFLAGS.TABLESTRONG``: any number of uses; keeps the object alive until ``release_marshal_data``.
* ``MSHLFLAGS.TABLEWEAK``: any number of uses while the object lives; does not keep it alive.
"""

from __future__ import annotations

import enum
import itertools
import threading
import weakref
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._exceptions import InvalidArgumentError, NoInterfaceError, ObjectNotConnectedError
from ._interface import Interface, class_info, is_com_object, primary_interface, resolve_interface
from ._proxy import Proxy, make_proxy
from ._validate import check_cookie

if TYPE_CHECKING:
    import uuid

    from ._apartment import Apartment
    from ._stub import Stub

I = TypeVar("I", bound=Interface)


class MSHLFLAGS(enum.IntEnum):
    """How marshal data may be used (MSHLFLAGS)."""

    NORMAL = 0
    TABLESTRONG = 1
    TABLEWEAK = 2
    NOPING = 4


class Agile:
    """Mixin for free-threaded objects that every apartment may call directly (the free-threaded
    marshaler): marshaling passes the object itself. The object must be thread-safe, and must not keep
    proxies (keep :class:`AgileReference` objects instead)."""

    __aptrt_agile__ = True


def _current_apartment() -> Apartment:
    from ._runtime import current_apartment

    return current_apartment()


class MarshalData:
    """Opaque marshal data (COM's OBJREF): an object of an apartment, an interface, and how it may be used."""

    def __init__(
        self,
        stub: Stub | None,
        interface: type[Interface],
        flags: MSHLFLAGS,
        *,
        agile: object = None,
        weak: weakref.ref[Any] | None = None,
        home: Apartment | None = None,
    ) -> None:
        self.interface = interface
        self.flags = flags
        self._stub = stub
        self._agile = agile
        self._weak = weak
        self._home = home
        self._lock = threading.Lock()
        self._used = False
        self.released = False

    def __repr__(self) -> str:
        state = "released" if self.released else ("used" if self._used else "live")
        return f"<MarshalData {self.interface.__name__} {self.flags.name} {state}>"

    def _take(self, apartment: Apartment, interface: type[Interface]) -> Any:
        with self._lock:
            if self.released or (self.flags == MSHLFLAGS.NORMAL and self._used):
                raise ObjectNotConnectedError("this marshal data was already used or released")
            if self._agile is not None:
                _require(type(self._agile), interface)
                self._used = True
                return self._agile
            if self.flags == MSHLFLAGS.TABLEWEAK:
                obj = self._weak() if self._weak is not None else None
                if obj is None or self._home is None or self._home.closing:
                    raise ObjectNotConnectedError("the object of this weak marshal data is gone")
                _require(type(obj), interface)
                if self._home is apartment:
                    return obj  # at home: the object itself, no stub
                weak_stub = self._home.exports.export(obj)
                if weak_stub.apartment is apartment:
                    return obj
                return make_proxy(weak_stub, apartment, interface)
            stub = self._stub
            assert stub is not None
            if stub.disconnected:
                raise ObjectNotConnectedError(f"the object is no longer connected ({stub.reason.value})")
            _require(stub.info.cls, interface)
            result: Any = stub.obj if stub.apartment is apartment else make_proxy(stub, apartment, interface)
            if result is None:
                raise ObjectNotConnectedError("the object is no longer connected")
            if self.flags == MSHLFLAGS.NORMAL:
                self._used = True
                stub.release()  # the data's reference passes to the proxy (or back home)
            return result

    def release(self) -> None:
        """CoReleaseMarshalData: give back the data's reference; later unmarshals fail. Idempotent."""
        with self._lock:
            if self.released:
                return
            self.released = True
            self._agile = None  # released data keeps nothing alive
            self._weak = None
            holds_ref = self._stub is not None and (
                self.flags == MSHLFLAGS.TABLESTRONG or (self.flags == MSHLFLAGS.NORMAL and not self._used)
            )
        if holds_ref:
            assert self._stub is not None
            self._stub.release()

    def __del__(self) -> None:
        # dropped without release: give the reference back (without a lock: this is a finalizer)
        try:
            stub = self._stub
            if not self.released and stub is not None and not (self.flags == MSHLFLAGS.NORMAL and self._used):
                stub.apartment.release_later(stub)
        except AttributeError:  # construction failed
            pass


def _require(cls: type, interface: type[Interface]) -> None:
    """``E_NOINTERFACE`` (before the data is used) when *cls* does not implement *interface*."""
    if not class_info(cls).implements(interface):
        raise NoInterfaceError(f"{cls.__qualname__} does not implement {interface.__name__}")


def marshal_interface(
    obj: object, interface: type[Interface] | uuid.UUID | str | None = None, flags: MSHLFLAGS = MSHLFLAGS.NORMAL
) -> MarshalData:
    """CoMarshalInterface: marshal data for *obj* (an object of the current apartment, or a proxy).

    :param flags: ``NORMAL``, ``TABLESTRONG`` or ``TABLEWEAK``, optionally ``| NOPING`` (no effect in-process)
    :raises InvalidArgumentError: None, an object with no interface, a released proxy, bad *flags*
    :raises NoInterfaceError: the object does not implement *interface*
    """
    if obj is None:
        raise InvalidArgumentError("nothing to marshal (obj is None)")
    flags = _flags(flags)
    if isinstance(obj, Proxy):
        if obj._released:
            raise InvalidArgumentError(f"{obj!r} was released")
        iface = resolve_interface(interface) if interface is not None else obj._interface
        stub = obj._stub
        if stub.disconnected:
            raise stub.disconnected_error()
        if not stub.info.implements(iface):
            raise NoInterfaceError(f"{stub.info.cls.__qualname__} does not implement {iface.__name__}")
        target: Any = stub.obj
        home = stub.apartment
    elif is_com_object(obj):
        iface = resolve_interface(interface) if interface is not None else primary_interface(type(obj))
        if not class_info(type(obj)).implements(iface):
            raise NoInterfaceError(f"{type(obj).__qualname__} does not implement {iface.__name__}")
        if getattr(obj, "__aptrt_agile__", False):
            return MarshalData(None, iface, flags, agile=obj)
        home = _current_apartment()
        target = obj
        stub = None
    else:
        raise InvalidArgumentError(f"{type(obj).__qualname__} implements no aptrt interface; it cannot be marshaled")
    if flags == MSHLFLAGS.TABLEWEAK:
        return MarshalData(None, iface, flags, weak=weakref.ref(target), home=home)
    if stub is None:
        stub = home.exports.export(target)
    stub.addref()
    return MarshalData(stub, iface, flags, home=home)


def _flags(flags: object) -> MSHLFLAGS:
    """NORMAL, TABLESTRONG or TABLEWEAK, possibly with NOPING (which changes nothing in-process)."""
    if isinstance(flags, bool) or not isinstance(flags, int) or (flags & ~MSHLFLAGS.NOPING) not in (0, 1, 2):
        raise InvalidArgumentError(f"flags must be MSHLFLAGS.NORMAL, TABLESTRONG or TABLEWEAK, not {flags!r}")
    return MSHLFLAGS(flags & ~MSHLFLAGS.NOPING)


def unmarshal_interface(data: MarshalData, interface: type[Interface] | uuid.UUID | str | None = None) -> Any:
    """CoUnmarshalInterface: what *data* names, for the current apartment (object at home, else a proxy).

    :raises ObjectNotConnectedError: the data was used (NORMAL) or released, or its object is gone
        (``CO_E_OBJNOTCONNECTED``)
    :raises NoInterfaceError: the object does not implement *interface* (the data stays unused)
    """
    if not isinstance(data, MarshalData):
        raise InvalidArgumentError(f"not marshal data: {data!r}")
    iface = resolve_interface(interface) if interface is not None else data.interface
    return data._take(_current_apartment(), iface)


def release_marshal_data(data: MarshalData) -> None:
    """CoReleaseMarshalData."""
    if not isinstance(data, MarshalData):
        raise InvalidArgumentError(f"not marshal data: {data!r}")
    data.release()


class GlobalInterfaceTable:
    """The process's global interface table (one per runtime): cookie → table-strong marshal data.

    Any apartment registers an object or proxy and gets a cookie; any apartment gets it back, as its
    own proxy (or the object itself at home). Cookie 0 is never valid.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, MarshalData] = {}
        self._cookies = itertools.count(1)

    def register(self, obj: object, interface: type[Interface] | uuid.UUID | str | None = None) -> int:
        """RegisterInterfaceInGlobal."""
        data = marshal_interface(obj, interface, MSHLFLAGS.TABLESTRONG)
        with self._lock:
            cookie = next(self._cookies)
            self._entries[cookie] = data
        return cookie

    def get(self, cookie: int, interface: type[Interface] | uuid.UUID | str | None = None) -> Any:
        """GetInterfaceFromGlobal."""
        return unmarshal_interface(self._entry(cookie), interface)

    def revoke(self, cookie: int) -> None:
        """RevokeInterfaceFromGlobal."""
        check_cookie(cookie)
        with self._lock:
            data = self._entries.pop(cookie, None) if cookie else None
        if data is None:
            raise InvalidArgumentError(f"no interface is registered in the global table under cookie {cookie}")
        data.release()

    def _entry(self, cookie: int) -> MarshalData:
        check_cookie(cookie)
        with self._lock:
            data = self._entries.get(cookie) if cookie else None
        if data is None:
            raise InvalidArgumentError(f"no interface is registered in the global table under cookie {cookie}")
        return data

    def clear(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for data in entries:
            data.release()

    def __len__(self) -> int:
        return len(self._entries)


class AgileReference(Generic[I]):
    """A reference to an object or proxy that any apartment can resolve (RoGetAgileReference).

    ``ref = aptrt.AgileReference(proxy_or_object)`` anywhere; later ``ref.resolve()`` in any apartment
    gives that apartment's proxy (or the object itself at home). Keeps the object alive until
    :meth:`release` (or ``with ref:`` ends).
    """

    def __init__(self, obj: object, interface: type[I] | None = None) -> None:
        self._data = marshal_interface(obj, interface, MSHLFLAGS.TABLESTRONG)

    def resolve(self, interface: type[Interface] | None = None) -> Any:
        """The object for the current apartment: a proxy, or the object itself in its home apartment."""
        return unmarshal_interface(self._data, interface)

    def release(self) -> None:
        self._data.release()

    def __enter__(self) -> AgileReference[I]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
