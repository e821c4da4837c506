"""IUnknown for objects, and the stub manager that counts an object's external references.

``IUnknown`` is an :class:`aptrt.Interface` whose methods have working defaults: an implementation class
that derives from it (directly or through its interfaces) gets ``QueryInterface``/``AddRef``/``Release``
with COM's counts. The counts are bookkeeping (Python's garbage collector owns memory): tests and
servers read them the way Wine's tests read ``cLocks``.

A :class:`StubManager` is COM's stub manager for one exported object of one apartment. It holds one
reference on the object (``AddRef``) and one on aptrt's core stub while it lives, and counts the
*external* references COM counts: strong ones (proxies in other apartments, unused ``NORMAL`` marshal
data, ``TABLESTRONG`` data, ``CoLockObjectExternal`` locks) and table-weak ones. An object implementing
:class:`IExternalConnection` is told ``AddConnection`` when the strong count leaves 0 and
``ReleaseConnection`` when it comes back to 0. The manager dies, releasing the object, when the strong
count reaches 0, except that table-weak data keeps it alive when the release came with
``fLastReleaseCloses=False``, or when the object has ``IExternalConnection`` (the rules Wine's
``stub_manager_ext_release`` follows and marshal.c checks against Windows).

Threads: the table is guarded by ``_table_lock``; a manager's counts by its own ``lock``. Calls into the
object (AddRef/Release, IExternalConnection) are made outside both locks, on the calling thread.
"""

from __future__ import annotations

import threading
from typing import Any

from .._core._apartment import Apartment
from .._core._exceptions import NoInterfaceError
from .._core._interface import IID_IUnknown as _IID_IUNKNOWN
from .._core._interface import Interface, class_info, is_com_object
from .._core._stub import Stub
from . import _init
from ._constants import EXTCONN_STRONG
from ._util import addref, release, to_interface

_ref_lock = threading.Lock()


class IUnknown(Interface, iid=_IID_IUNKNOWN):
    """COM's root interface, with working defaults for implementation classes.

    ``QueryInterface(riid)`` returns the object itself (one more reference) if it implements the
    interface (an interface class, ``uuid.UUID`` or ``"{...}"`` string; every object implements
    ``IUnknown``), else raises :class:`aptrt.NoInterfaceError` (``E_NOINTERFACE``). ``AddRef``/``Release``
    return the new count. Override them to observe the counts; override ``QueryInterface`` to hand out
    another object for an interface (aggregation, the free-threaded marshaler).
    """

    def QueryInterface(self, riid: Any) -> Any:
        interface = to_interface(riid)
        if not supports(self, interface):
            raise NoInterfaceError(f"{type(self).__qualname__} does not implement {interface.__name__}")
        self.AddRef()
        return self

    def AddRef(self) -> int:
        with _ref_lock:
            count: int = getattr(self, "_com_refs", 0) + 1
            object.__setattr__(self, "_com_refs", count)
        return count

    def Release(self) -> int:
        with _ref_lock:
            count: int = max(0, getattr(self, "_com_refs", 0) - 1)
            object.__setattr__(self, "_com_refs", count)
        return count


IID_IUnknown = IUnknown.__iid__


class IExternalConnection(IUnknown, iid="00000019-0000-0000-C000-000000000046"):
    """Implemented by objects that want to know when external (strong) connections come and go."""

    def AddConnection(self, extconn: int, reserved: int) -> int:
        raise NotImplementedError

    def ReleaseConnection(self, extconn: int, reserved: int, fLastReleaseCloses: bool) -> int:
        raise NotImplementedError


IID_IExternalConnection = IExternalConnection.__iid__


def supports(obj: object, interface: type[Interface]) -> bool:
    """True if the object implements *interface* (every COM object implements IUnknown)."""
    if interface is IUnknown or interface is Interface:
        return is_com_object(obj)
    return is_com_object(obj) and class_info(type(obj)).implements(interface)


def qi(obj: Any, interface: type[Interface]) -> Any:
    """QueryInterface on a local object or a facade proxy: the result carries one more reference."""
    query = getattr(obj, "QueryInterface", None)
    if callable(query) and (is_com_object(obj) or hasattr(obj, "_pm")):
        return query(interface)
    if not supports(obj, interface):
        raise NoInterfaceError(f"{type(obj).__qualname__} does not implement {interface.__name__}")
    addref(obj)
    return obj


# -- stub managers ----------------------------------------------------------------------------------------


class StubManager:
    """COM's stub manager for one object of one apartment (see the module docstring)."""

    __slots__ = ("obj", "apartment", "stub", "extrefs", "weakrefs", "extern_conn", "dead", "lock", "__weakref__")

    def __init__(self, obj: Any, apartment: Apartment, stub: Stub) -> None:
        self.obj = obj
        self.apartment = apartment
        self.stub = stub
        #: strong external references
        self.extrefs = 0
        #: table-weak marshal data outstanding
        self.weakrefs = 0
        self.extern_conn: Any = obj if supports(obj, IExternalConnection) else None
        #: set once, under ``lock``: the manager let go of the object
        self.dead = False
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        state = "dead" if self.dead else f"extrefs={self.extrefs} weakrefs={self.weakrefs}"
        return f"<StubManager {type(self.obj).__qualname__} in {self.apartment.name!r} {state}>"

    @property
    def alive(self) -> bool:
        return not self.dead and not self.stub.disconnected


_table_lock = threading.Lock()
_table: dict[tuple[int, int], StubManager] = {}


def find_manager(obj: object, apartment: Apartment) -> StubManager | None:
    """The live stub manager of *obj* in *apartment*, if it has one."""
    with _table_lock:
        manager = _table.get((id(apartment), id(obj)))
    if manager is None:
        return None
    if not manager.alive:
        bury(manager)
        return None
    return manager


def get_manager(obj: Any, apartment: Apartment) -> StubManager:
    """The stub manager of *obj* (an object of *apartment*), made on first use: it exports the object
    from the apartment (in the current context) and takes a reference on it.

    :raises DisconnectedError: the apartment is shutting down
    """
    key = (id(apartment), id(obj))
    stale = None
    with _table_lock:
        manager = _table.get(key)
        if manager is not None and manager.alive:
            return manager
        stale = manager
        stub = apartment.exports.export(obj)
        stub.addref()
        manager = _table[key] = StubManager(obj, apartment, stub)
    addref(obj)
    if stale is not None:
        bury(stale)
    return manager


def ext_addref(manager: StubManager, refs: int, tableweak: bool = False) -> None:
    """Add *refs* strong external references (and one table-weak one if *tableweak*)."""
    with manager.lock:
        if manager.dead:
            return
        first = refs > 0 and manager.extrefs == 0
        manager.extrefs += refs
        if tableweak:
            manager.weakrefs += 1
    conn = manager.extern_conn
    if first and conn is not None:
        conn.AddConnection(EXTCONN_STRONG, 0)


def ext_release(manager: StubManager, refs: int, tableweak: bool = False, last_unlock_releases: bool = True) -> None:
    """Remove external references; the manager dies (releasing the object) per the module's rules."""
    with manager.lock:
        if manager.dead:
            return
        refs = min(refs, manager.extrefs)
        manager.extrefs -= refs
        remaining = manager.extrefs
        if tableweak and manager.weakrefs:
            manager.weakrefs -= 1
        if not last_unlock_releases:
            remaining += manager.weakrefs
        last = refs > 0 and manager.extrefs == 0
        conn = manager.extern_conn
        kill = remaining == 0 and not (conn is not None and last_unlock_releases and manager.weakrefs)
        if kill:
            manager.dead = True
    if last and conn is not None:
        conn.ReleaseConnection(EXTCONN_STRONG, 0, last_unlock_releases)
    if kill:
        _finish(manager)


def disconnect(manager: StubManager, reason: Any) -> None:
    """CoDisconnectObject: cut every external reference (proxies fail from now on) and let go of the
    object. IExternalConnection is not told (Windows does not, per marshal.c test_lock_object_external)."""
    manager.stub.disconnect(reason)
    bury(manager)


def bury(manager: StubManager) -> None:
    """Let go of the object without any notification (its stub was disconnected, or it is torn down)."""
    with manager.lock:
        if manager.dead:
            dead_already = True
        else:
            manager.dead = True
            dead_already = False
    if not dead_already:
        _finish(manager)
    else:
        _unlink(manager)


def _unlink(manager: StubManager) -> None:
    with _table_lock:
        key = (id(manager.apartment), id(manager.obj))
        if _table.get(key) is manager:
            del _table[key]


def _finish(manager: StubManager) -> None:
    _unlink(manager)
    manager.stub.release()
    release(manager.obj)


def managers_of(apartment: Apartment) -> list[StubManager]:
    with _table_lock:
        return [m for m in _table.values() if m.apartment is apartment]


def sweep(apartment: Apartment) -> None:
    """Bury the managers of *apartment* whose objects were disconnected by other means (a context)."""
    for manager in managers_of(apartment):
        if manager.stub.disconnected:
            bury(manager)


@_init.on_teardown
def _teardown_stubs(apartment: Apartment) -> None:
    # The server apartment goes: Windows tells IExternalConnection with fLastReleaseCloses=FALSE
    # (marshal.c test_marshal_stub_apartment_shutdown) and releases every object.
    for manager in managers_of(apartment):
        with manager.lock:
            notify = manager.extrefs > 0 and not manager.dead
        if notify and manager.extern_conn is not None:
            manager.extern_conn.ReleaseConnection(EXTCONN_STRONG, 0, False)
        bury(manager)
