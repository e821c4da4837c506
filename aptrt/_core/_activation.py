"""Activation: CoCreateInstance / CoGetClassObject, placing objects by their threading model.

| threading model | caller in an STA             | caller in the MTA                 |
|-----------------|------------------------------|-----------------------------------|
| none (legacy)   | main STA                     | main STA (proxy)                  |
| Apartment       | caller's STA (direct)        | a host STA the runtime starts     |
| Free            | the MTA (proxy)              | the MTA (direct)                  |
| Both            | caller's apartment (direct)  | caller's apartment (direct)       |
| Neutral         | the neutral apartment (light proxy, caller's thread) | same      |

When there is no main STA (a runtime entered with ``with``), legacy classes go to a host STA that plays
the main STA's part, as COM does.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._apartment import Apartment, ApartmentKind, _narrow
from ._context import Context
from ._exceptions import ClassNotRegisteredError, InvalidArgumentError, NoInterfaceError
from ._factory import CLSCTX, ClassFactory, IClassFactory
from ._interface import Interface, is_com_object, is_interface
from ._registry import ClassRegistration, ThreadingModel, registry
from ._validate import check_dword

if TYPE_CHECKING:
    from ._runtime import Runtime

STA_KINDS = (ApartmentKind.STA, ApartmentKind.MAIN_STA)


def placement(rt: Runtime, model: ThreadingModel, caller: Apartment) -> Apartment | str:
    """Where an object of *model* created by *caller* lives: an apartment, or the name of a host STA
    the runtime must start (``"main-host"`` or ``"host"``)."""
    in_sta = caller.kind in STA_KINDS
    if model is ThreadingModel.NONE:
        return rt.main_sta if rt.main_sta is not None else "main-host"
    if model is ThreadingModel.APARTMENT:
        return caller if in_sta else "host"
    if model is ThreadingModel.FREE:
        return rt.mta
    if model is ThreadingModel.BOTH:
        return caller
    return rt.neutral


def registration_of(what: uuid.UUID | str | type) -> ClassRegistration:
    """The registration of *what*; an unregistered class passed directly counts as ``Apartment``."""
    try:
        return registry.lookup(what)
    except ClassNotRegisteredError:
        if isinstance(what, type) and vars(what).get("__clsid__") is None:
            model = getattr(what, "__threading_model__", ThreadingModel.APARTMENT)
            return ClassRegistration(uuid.UUID(int=0), what, model)
        raise


def _clsid_of(what: uuid.UUID | str | type) -> uuid.UUID | None:
    """The CLSID *what* names, or None for a class that is not registered (it may still be created)."""
    if is_interface(what):
        raise InvalidArgumentError(f"{what!r} is an interface, not a class: name a class, a CLSID or a ProgID")
    try:
        return registry.resolve(what)
    except ClassNotRegisteredError:
        if isinstance(what, type):
            return None
        raise


def _plan(
    rt: Runtime, what: uuid.UUID | str | type, interface: type[Interface] | None, context: CLSCTX
) -> tuple[Apartment | Context | str, Callable[[], Any]]:
    """Where to create the object (an apartment, a class object's context, or a host STA's role) and
    the function that creates it there. Class objects registered with the runtime come first; the
    registry (by threading model) after."""
    context = CLSCTX(check_dword(context, "context"))
    caller = rt._caller_apartment()
    clsid = _clsid_of(what)
    entry = rt.class_objects.find(clsid, caller, context) if clsid is not None else None
    if entry is not None:
        # the class object lives in its apartment (and context): it is called there, never marshaled
        where: Apartment | Context = entry.owner_context or entry.apartment
        return where, functools.partial(_create_with, entry.factory, interface)
    registration = registration_of(what)
    target = placement(rt, registration.threading_model, caller)
    return target, functools.partial(_create_registered, registration, interface)


async def create_instance(
    rt: Runtime, what: uuid.UUID | str | type, interface: type[Interface] | None, context: CLSCTX
) -> Any:
    where, make = _plan(rt, what, interface, context)
    if isinstance(where, str):
        where = await rt._host_sta(where)
    if isinstance(where, Context):  # a factory registered in a context: counted there while it runs
        return _narrow(await where._call_counted(make), interface)
    return _narrow(await where.run_sync(make), interface)


def create_instance_blocking(
    rt: Runtime, what: uuid.UUID | str | type, interface: type[Interface] | None, context: CLSCTX
) -> Any:
    where, make = _plan(rt, what, interface, context)
    if isinstance(where, str):
        where = rt._host_sta_blocking(where)
    if isinstance(where, Context):
        return _narrow(where._call_counted_blocking(make), interface)
    return _narrow(where.run_sync_blocking(make), interface)


async def get_class_object(rt: Runtime, what: uuid.UUID | str | type, context: CLSCTX) -> Any:
    """The class object for *what*, as the caller's apartment sees it (a proxy or the object)."""
    context = CLSCTX(check_dword(context, "context"))
    caller = rt._caller_apartment()
    clsid = _clsid_of(what)
    entry = rt.class_objects.find(clsid, caller, context) if clsid is not None else None
    if entry is not None:  # handed out in its own context, so it is disconnected with it
        return await (entry.owner_context or entry.apartment).run_sync(functools.partial(_identity, entry.factory))
    registration = registration_of(what)
    target = placement(rt, registration.threading_model, caller)
    if isinstance(target, str):
        target = await rt._host_sta(target)
    return await target.run_sync(functools.partial(ClassFactory, registration))


def _create_with(factory: Any, interface: type[Interface] | None) -> Any:
    # runs in the factory's apartment: the new object lives there
    if is_com_object(factory) and isinstance(factory, IClassFactory):
        return factory.CreateInstance(None, interface)
    if not callable(factory):  # a registered object that is no class factory (COM's QueryInterface fails)
        raise NoInterfaceError(f"the class object {factory!r} does not implement IClassFactory")
    obj = factory()
    return obj


def _create_registered(registration: ClassRegistration, interface: type[Interface] | None) -> Any:
    return ClassFactory(registration).CreateInstance(None, interface)


def _identity(value: Any) -> Any:
    return value


def as_class_object(factory: Any) -> Any:
    """Accept an IClassFactory object, or any callable that makes instances (wrapped in one)."""
    if isinstance(factory, IClassFactory):
        return factory
    if callable(factory):
        return CallableFactory(factory)
    return factory


class CallableFactory(IClassFactory):
    """A class object around a plain callable (``rt.register_class_object(clsid, MyClass)``)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    def CreateInstance(self, outer: object, iid: Any) -> Any:
        return self.make()

    def LockServer(self, lock: bool) -> None:
        return None
