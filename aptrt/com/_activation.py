"""Activation: CoCreateInstance, CoGetClassObject, CoRegisterClassObject and friends.

A class object registered with ``CoRegisterClassObject`` wins over the registry (``@aptrt.coclass``): an
in-process registration only for its own apartment, a ``CLSCTX_LOCAL_SERVER`` one for every apartment.
Registry classes are placed by their threading model (com-semantics.md §1.2); Apartment-model objects
created from the MTA, and legacy objects when there is no main STA, live in host STAs the facade starts
(pumping STAs, like every STA of the facade).

An object made in another apartment crosses back as COM does it: created there, marshaled (NORMAL),
its creation reference released, unmarshaled here into a proxy; so its reference counts are COM's.
Objects made by a class object registered inside a context (through ``IContextCallback``) belong to
that context.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from .._core._activation import placement
from .._core._apartment import Apartment
from .._core._context import Context
from .._core._exceptions import ClassNotRegisteredError, InvalidArgumentError, NoInterfaceError
from .._core._factory import CLSCTX, REGCLS, IClassFactory, server_module
from .._core._hresult import HRESULT
from .._core._interface import Interface, is_com_object
from .._core._marshal import by_reference
from .._core._registry import ClassRegistration, registry
from .._core._validate import check_cookie
from . import _init
from ._constants import (
    CLSCTX_INPROC_HANDLER,
    CLSCTX_INPROC_SERVER,
    MSHCTX_INPROC,
    MSHLFLAGS_NORMAL,
    S_OK,
    CLSID_ContextSwitcher,
    CLSID_InProcFreeMarshaler,
    CLSID_StdGlobalInterfaceTable,
)
from ._context import create_context_switcher
from ._marshal import FreeThreadedMarshaler, global_interface_table, make_packet, unmarshal_packet
from ._unknown import IUnknown, qi
from ._util import addref, dword, error, release, required, to_clsid, to_interface

IID_IClassFactory = IClassFactory.__iid__


class _RegistryFactory(IClassFactory, IUnknown):
    """The class object of a registry class: makes instances (one reference each) where it lives."""

    def __init__(self, registration: ClassRegistration) -> None:
        self.registration = registration
        self.module = server_module(registration.module)

    def CreateInstance(self, outer: object, iid: Any) -> Any:
        if outer is not None:
            raise error(HRESULT.CLASS_E_NOAGGREGATION, f"{self.registration.cls!r} cannot be aggregated")
        interface = to_interface(iid)
        obj = self.registration.cls()
        self.module.object_created(obj)
        return qi(obj, interface)

    def LockServer(self, lock: bool) -> None:
        self.module.lock(bool(lock))


def _no_aggregation(outer: object, what: str) -> None:
    if outer is not None:
        raise error(HRESULT.CLASS_E_NOAGGREGATION, f"{what} cannot be aggregated")


def _create_git(outer: object, interface: type[Interface], apartment: Apartment) -> Any:
    _no_aggregation(outer, "the global interface table")
    return qi(global_interface_table(), interface)


def _create_ftm(outer: object, interface: type[Interface], apartment: Apartment) -> Any:
    return qi(FreeThreadedMarshaler(outer), interface)


_BUILTINS = {
    CLSID_StdGlobalInterfaceTable: _create_git,
    CLSID_ContextSwitcher: create_context_switcher,
    CLSID_InProcFreeMarshaler: _create_ftm,
}


class _BuiltinFactory(IClassFactory, IUnknown):
    """The class object of a class the facade itself provides (the GIT, the context switcher, the FTM)."""

    def __init__(self, clsid: uuid.UUID) -> None:
        self.clsid = clsid

    def CreateInstance(self, outer: object, iid: Any) -> Any:
        apartment = _init.require_apartment()
        return _BUILTINS[self.clsid](outer, to_interface(iid), apartment)

    def LockServer(self, lock: bool) -> None:
        return None


# -- where a class object lives ------------------------------------------------------------------------


def _locate(clsid: uuid.UUID, clsctx: int, apartment: Apartment) -> tuple[Apartment | Context, Any]:
    """The class object for *clsid* as seen from *apartment*, and where it runs (an apartment, or the
    context it was registered in)."""
    runtime = apartment.runtime
    entry = runtime.class_objects.find(clsid, apartment, CLSCTX(clsctx))
    if entry is not None:
        return (entry.owner_context or entry.apartment), entry.factory
    if not clsctx & (CLSCTX_INPROC_SERVER | CLSCTX_INPROC_HANDLER):
        raise ClassNotRegisteredError(f"class {clsid} has no class object registered for CLSCTX {clsctx:#x}")
    try:
        registration = registry.lookup(clsid)
    except ClassNotRegisteredError:
        raise ClassNotRegisteredError(f"class {clsid} is not registered") from None
    where = placement(runtime, registration.threading_model, apartment)
    target: Apartment = _init.host_sta(where) if isinstance(where, str) else where
    return target, _RegistryFactory(registration)


def _home(target: Apartment | Context) -> Apartment:
    return target.apartment if isinstance(target, Context) else target


def _runs_here(target: Apartment | Context, apartment: Apartment) -> bool:
    home = _home(target)
    return home is apartment and not home.accepts_any_thread


def _create(factory: Any, outer: object, interface: type[Interface]) -> Any:
    return _create_instance(factory)(outer, interface)


def _create_instance(factory: Any) -> Any:
    """The class object's CreateInstance; ``E_NOINTERFACE`` when it is no class factory (COM's
    QueryInterface(IID_IClassFactory) on a registered object fails)."""
    create = getattr(factory, "CreateInstance", None)
    if not callable(create):
        raise NoInterfaceError(f"the class object {type(factory).__qualname__} does not implement IClassFactory")
    return create


def _create_remote(factory: Any, outer: object, interface: type[Interface], home: Apartment) -> Any:
    # runs in the class object's apartment: make, marshal (NORMAL), let go of the creation reference
    obj = _create_instance(factory)(outer, interface)
    try:
        packet = make_packet(obj, interface, MSHLFLAGS_NORMAL, MSHCTX_INPROC, home)
    finally:
        release(obj)
    return by_reference(packet)


def _export_remote(obj: Any, interface: type[Interface], home: Apartment) -> Any:
    return by_reference(make_packet(obj, interface, MSHLFLAGS_NORMAL, MSHCTX_INPROC, home))


def _make_factory_remote(registration: ClassRegistration, interface: type[Interface], home: Apartment) -> Any:
    return _export_remote(_RegistryFactory(registration), interface, home)


def _run(target: Apartment | Context, fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` in *target* as a call from here: in a disconnectable context as a call on its
    objects (outstanding while it runs, refused once the context disconnects), else in the apartment.
    The arguments cross as they are."""
    if isinstance(target, Context) and not target.default:
        return target._call_counted_blocking(lambda: fn(*args))
    apartment = _home(target)
    return apartment.run_sync_blocking(fn, *(by_reference(arg) for arg in args))


# -- the API -----------------------------------------------------------------------------------------------


def CoCreateInstance(rclsid: Any, pUnkOuter: object, dwClsContext: int, riid: Any) -> Any:
    """Create an object of class *rclsid* and return its interface *riid* for the calling apartment: the
    object itself when it lives here, else a facade proxy.

    :raises NotInitializedError: not initialised and no MTA (``CO_E_NOTINITIALIZED``)
    :raises ClassNotRegisteredError: no such class for *dwClsContext* (``REGDB_E_CLASSNOTREG``)
    :raises NoInterfaceError: the object does not implement *riid*, or the registered class object is no
        IClassFactory (``E_NOINTERFACE``)
    :raises InvalidArgumentError: no CLSID or IID, or *dwClsContext* is not a DWORD (``E_INVALIDARG``)
    :raises COMError: ``CLASS_E_NOAGGREGATION`` for an outer object the class does not accept;
        ``CO_E_CLASSSTRING`` for a string that is neither a GUID nor a known ProgID
    """
    _init.flush()
    required(rclsid, "rclsid")
    required(riid, "riid")
    dword(dwClsContext, "dwClsContext")
    apartment = _init.require_apartment()
    clsid = to_clsid(rclsid)
    interface = to_interface(riid)
    builtin = _BUILTINS.get(clsid)
    if builtin is not None:
        return builtin(pUnkOuter, interface, apartment)
    target, factory = _locate(clsid, dwClsContext, apartment)
    if _runs_here(target, apartment):
        if isinstance(target, Context) and not target.default:
            return _run(target, _create, factory, pUnkOuter, interface)  # made in the context, which it joins
        return _create(factory, pUnkOuter, interface)
    packet = _run(target, _create_remote, factory, pUnkOuter, interface, _home(target))
    return unmarshal_packet(packet, interface, apartment)


def CoGetClassObject(rclsid: Any, dwClsContext: int, pServerInfo: object = None, riid: Any = IID_IClassFactory) -> Any:
    """The class object of *rclsid* (its IClassFactory, by default) for the calling apartment.

    :raises ClassNotRegisteredError: no class object for *dwClsContext* (``REGDB_E_CLASSNOTREG``)
    """
    _init.flush()
    required(rclsid, "rclsid")
    dword(dwClsContext, "dwClsContext")
    apartment = _init.require_apartment()
    clsid = to_clsid(rclsid)
    interface = to_interface(riid)
    if clsid in _BUILTINS:
        return qi(_BuiltinFactory(clsid), interface)
    target, factory = _locate(clsid, dwClsContext, apartment)
    if _runs_here(target, apartment):
        return qi(factory, interface)
    if isinstance(factory, _RegistryFactory):
        packet = _run(target, _make_factory_remote, factory.registration, interface, _home(target))
    else:
        packet = _run(target, _export_remote, factory, interface, _home(target))
    return unmarshal_packet(packet, interface, apartment)


# -- registration --------------------------------------------------------------------------------------------

_reg_lock = threading.Lock()
#: cookie → (the apartment that registered, the class object it holds a reference on)
_registrations: dict[int, tuple[Apartment, Any]] = {}


def CoRegisterClassObject(rclsid: Any, pUnk: Any, dwClsContext: int, flags: int) -> int:
    """Register *pUnk* (an IClassFactory, or a callable making instances) as the class object of
    *rclsid*, for this apartment (``CLSCTX_INPROC_SERVER``) or every apartment
    (``CLSCTX_LOCAL_SERVER``). Objects it makes live in this apartment, and in the current context when
    registered inside one (``IContextCallback``). Returns the cookie for :func:`CoRevokeClassObject`.

    :raises COMError: ``CO_E_OBJISREG`` if the class is already registered here
    :raises InvalidArgumentError: *pUnk* is neither a COM object, a class factory nor a callable
        (``E_INVALIDARG``)
    """
    _init.flush()
    required(rclsid, "rclsid")
    required(pUnk, "pUnk")
    if not (is_com_object(pUnk) or callable(pUnk) or callable(getattr(pUnk, "CreateInstance", None))):
        raise InvalidArgumentError(f"pUnk must be a class object (an IClassFactory) or a callable, not {pUnk!r}")
    dword(dwClsContext, "dwClsContext")
    dword(flags, "flags")
    apartment = _init.require_apartment()
    clsid = to_clsid(rclsid)
    cookie = apartment.runtime.register_class_object(clsid, pUnk, context=CLSCTX(dwClsContext), flags=REGCLS(flags))
    addref(pUnk)
    with _reg_lock:
        _registrations[cookie] = (apartment, pUnk)
    return cookie


def CoRevokeClassObject(dwRegister: int) -> int:
    """Revoke a registration (from the apartment that made it).

    :raises COMError: ``CO_E_OBJNOTREG`` for an unknown cookie
    :raises InvalidArgumentError: a cookie that is not an int (``E_INVALIDARG``)
    :raises WrongThreadError: made by another apartment (``RPC_E_WRONG_THREAD``)
    """
    _init.flush()
    check_cookie(dwRegister, "dwRegister")
    apartment = _init.require_apartment()
    apartment.runtime.revoke_class_object(dwRegister)
    with _reg_lock:
        record = _registrations.pop(dwRegister, None)
    if record is not None:
        release(record[1])
    return S_OK


def CoResumeClassObjects() -> int:
    """Registrations made with ``REGCLS_SUSPENDED`` become visible."""
    apartment = _init.require_apartment()
    apartment.runtime.resume_class_objects()
    return S_OK


def sweep_registrations(apartment: Apartment | None = None) -> None:
    """Release the class objects of registrations revoked by other means (their apartment or context
    went away), or every registration of *apartment*."""
    with _reg_lock:
        doomed = []
        for cookie, (owner, factory) in list(_registrations.items()):
            if (apartment is not None and owner is apartment) or cookie not in owner.runtime.class_objects._entries:
                doomed.append(factory)
                del _registrations[cookie]
    for factory in doomed:
        release(factory)


@_init.on_teardown
def _teardown_registrations(apartment: Apartment) -> None:
    sweep_registrations(apartment)


def CLSIDFromProgID(lpszProgID: str) -> uuid.UUID:
    """The CLSID of a ProgID (a version-independent one goes through its CurVer).

    :raises COMError: ``CO_E_CLASSSTRING`` for an unknown ProgID
    """
    required(lpszProgID, "lpszProgID")
    try:
        return registry.clsid_from_progid(lpszProgID)
    except ClassNotRegisteredError:
        raise error(HRESULT.CO_E_CLASSSTRING, f"no class is registered under ProgID {lpszProgID!r}") from None


def ProgIDFromCLSID(clsid: Any) -> str:
    """The ProgID of a registered class.

    :raises ClassNotRegisteredError: not registered, or registered without a ProgID (``REGDB_E_CLASSNOTREG``)
    """
    key = to_clsid(clsid, "clsid")
    progid = registry.lookup(key).progid
    if not progid:
        raise ClassNotRegisteredError(f"class {key} has no ProgID")
    return progid
