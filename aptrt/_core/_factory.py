"""Class objects (class factories), their registration per apartment, and server lock/object counts."""

from __future__ import annotations

import enum
import itertools
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._exceptions import COMError, InvalidArgumentError, WrongThreadError
from ._hresult import HRESULT
from ._interface import Interface, resolve_interface
from ._registry import ClassRegistration

if TYPE_CHECKING:
    from ._apartment import Apartment


class CLSCTX(enum.IntFlag):
    """Where a class object may come from (CLSCTX)."""

    INPROC_SERVER = 0x1
    INPROC_HANDLER = 0x2
    LOCAL_SERVER = 0x4
    REMOTE_SERVER = 0x10
    SERVER = INPROC_SERVER | LOCAL_SERVER | REMOTE_SERVER
    ALL = INPROC_SERVER | INPROC_HANDLER | LOCAL_SERVER | REMOTE_SERVER


class REGCLS(enum.IntFlag):
    """How a registered class object may be used (REGCLS)."""

    SINGLEUSE = 0
    MULTIPLEUSE = 1
    MULTI_SEPARATE = 2
    SUSPENDED = 4
    SURROGATE = 8
    AGILE = 0x10


class IClassFactory(Interface, iid="00000001-0000-0000-C000-000000000046"):
    """A class object: makes instances of one class (COM's IClassFactory, with COM's method names)."""

    def CreateInstance(self, outer: object, iid: Any) -> Any:
        raise NotImplementedError

    def LockServer(self, lock: bool) -> None:
        raise NotImplementedError


# -- server module counts (CServer's m_cObjects / m_cLocks) ---------------------------------------------


class ServerModule:
    """Object and lock counts of one server module (a Python module that implements classes)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.objects = 0
        self.locks = 0

    def __repr__(self) -> str:
        return f"<ServerModule {self.name!r} objects={self.objects} locks={self.locks}>"

    def object_created(self, obj: object) -> None:
        with self._lock:
            self.objects += 1
        try:
            weakref.finalize(obj, self._object_gone)
        except TypeError:  # no weak references to it: it will never be counted down, so don't count it
            with self._lock:
                self.objects -= 1

    def _object_gone(self) -> None:
        with self._lock:
            self.objects -= 1

    def lock(self, lock: bool) -> None:
        with self._lock:
            self.locks += 1 if lock else -1
            if self.locks < 0:
                self.locks = 0
                raise InvalidArgumentError(f"LockServer(False) without a matching LockServer(True) in {self.name}")

    def can_unload_now(self) -> bool:
        """DllCanUnloadNow: true when the module has no live objects and no server locks."""
        with self._lock:
            return self.objects == 0 and self.locks == 0


_modules_lock = threading.Lock()
_modules: dict[str, ServerModule] = {}


def server_module(name: str) -> ServerModule:
    """The counts of the server module *name* (a module's ``__name__``)."""
    if not isinstance(name, str):
        raise InvalidArgumentError(f"a server module is named by a str, not {type(name).__name__}")
    with _modules_lock:
        module = _modules.get(name)
        if module is None:
            module = _modules[name] = ServerModule(name)
        return module


def can_unload_now(module: str | Any) -> bool:
    """DllCanUnloadNow for a module (its name or the module object): no live objects, no locks."""
    name = module if isinstance(module, str) else getattr(module, "__name__", None)
    if not isinstance(name, str):
        raise InvalidArgumentError(f"can_unload_now() takes a module or its name, not {module!r}")
    return server_module(name).can_unload_now()


class ClassFactory(IClassFactory):
    """The class object aptrt makes for a registered class: creates instances in its own apartment."""

    def __init__(self, registration: ClassRegistration) -> None:
        self.registration = registration
        self.module = server_module(registration.module)

    def CreateInstance(self, outer: object, iid: Any) -> Any:
        if outer is not None:
            raise COMError("aptrt classes cannot be aggregated", hresult=HRESULT.CLASS_E_NOAGGREGATION)
        obj = self.registration.cls()
        self.module.object_created(obj)
        if iid is not None:
            from ._proxy import query_interface

            query_interface(obj, resolve_interface(iid))  # E_NOINTERFACE now, not at the first call
        return obj

    def LockServer(self, lock: bool) -> None:
        self.module.lock(lock)


# -- registered class objects (CoRegisterClassObject) --------------------------------------------------

_cookies = itertools.count(1)


@dataclass(eq=False)
class ClassObjectEntry:
    """One CoRegisterClassObject registration."""

    cookie: int
    clsid: uuid.UUID
    factory: Any
    apartment: Apartment
    context: CLSCTX
    flags: REGCLS
    suspended: bool
    #: the aptrt context the registration was made in (objects it makes belong there)
    owner_context: Any = None
    used: bool = False
    revoked: bool = False
    on_revoke: list[Callable[[], None]] = field(default_factory=list)


class ClassObjectTable:
    """The class objects registered in a runtime: in-process ones are visible only to their apartment,
    local-server ones to every apartment. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, ClassObjectEntry] = {}

    def register(
        self,
        clsid: uuid.UUID,
        factory: Any,
        apartment: Apartment,
        context: CLSCTX,
        flags: REGCLS,
        owner_context: Any = None,
    ) -> int:
        if factory is None:
            raise InvalidArgumentError("the class object is None", hresult=HRESULT.E_INVALIDARG)
        if flags & REGCLS.MULTIPLEUSE and context & CLSCTX.LOCAL_SERVER:
            context |= CLSCTX.INPROC_SERVER  # REGCLS_MULTIPLEUSE + LOCAL_SERVER also registers in-process
        entry = ClassObjectEntry(
            next(_cookies), clsid, factory, apartment, context, flags, bool(flags & REGCLS.SUSPENDED), owner_context
        )
        with self._lock:
            for other in self._entries.values():
                if other.clsid == clsid and other.apartment is apartment and other.context & context:
                    raise COMError(f"class {clsid} is already registered here", hresult=HRESULT.CO_E_OBJISREG)
            self._entries[entry.cookie] = entry
        return entry.cookie

    def revoke(self, cookie: int, apartment: Apartment) -> ClassObjectEntry:
        with self._lock:
            entry = self._entries.get(cookie)
            if entry is None:
                raise COMError(f"no class object is registered under cookie {cookie}", hresult=HRESULT.CO_E_OBJNOTREG)
            if entry.apartment is not apartment:
                raise WrongThreadError(
                    f"class object {cookie} was registered in apartment {entry.apartment.name!r}; revoke it there"
                )
            del self._entries[cookie]
            entry.revoked = True
        for callback in entry.on_revoke:
            callback()
        return entry

    def revoke_apartment(self, apartment: Apartment) -> None:
        """The apartment is going away: its registrations die with it."""
        with self._lock:
            doomed = [e for e in self._entries.values() if e.apartment is apartment]
            for entry in doomed:
                del self._entries[entry.cookie]
                entry.revoked = True

    def revoke_where(self, predicate: Callable[[ClassObjectEntry], bool]) -> list[ClassObjectEntry]:
        with self._lock:
            doomed = [e for e in self._entries.values() if predicate(e)]
            for entry in doomed:
                del self._entries[entry.cookie]
                entry.revoked = True
        return doomed

    def resume(self) -> None:
        """CoResumeClassObjects: suspended registrations become visible."""
        with self._lock:
            for entry in self._entries.values():
                entry.suspended = False

    def find(self, clsid: uuid.UUID, apartment: Apartment, context: CLSCTX) -> ClassObjectEntry | None:
        """The class object a caller in *apartment* gets for *clsid* (and consumes a single-use one)."""
        with self._lock:
            for entry in self._entries.values():
                if entry.clsid != clsid or entry.suspended or entry.used:
                    continue
                local = entry.context & CLSCTX.LOCAL_SERVER and context & CLSCTX.LOCAL_SERVER
                # a class served by an apartment of another process (aptrt.ray): visible to every apartment
                local = local or (entry.context & CLSCTX.REMOTE_SERVER and context & CLSCTX.REMOTE_SERVER)
                inproc = (
                    entry.context & CLSCTX.INPROC_SERVER
                    and context & CLSCTX.INPROC_SERVER
                    and entry.apartment is apartment
                )
                if local or inproc:
                    if not entry.flags & (REGCLS.MULTIPLEUSE | REGCLS.MULTI_SEPARATE):  # REGCLS_SINGLEUSE
                        entry.used = True
                    return entry
        return None

    def __len__(self) -> int:
        return len(self._entries)
