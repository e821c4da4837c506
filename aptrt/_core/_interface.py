"""Interfaces (a contract of methods with an IID) and the per-class facts proxies and stubs need."""

from __future__ import annotations

import inspect
import uuid
from typing import Any, ClassVar, TypeVar

from ._exceptions import InvalidArgumentError, NoInterfaceError

IID_IUnknown = uuid.UUID("00000000-0000-0000-C000-000000000046")

_interfaces_by_iid: dict[uuid.UUID, type[Interface]] = {}


def to_uuid(value: uuid.UUID | str, what: str = "IID") -> uuid.UUID:
    """Accept a :class:`uuid.UUID` or a ``"{...}"``/plain string spelling of one."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value.strip().strip("{}"))
        except ValueError:
            raise InvalidArgumentError(f"{what} {value!r} is not a GUID") from None
    raise InvalidArgumentError(f"{what} must be a uuid.UUID or a GUID string, not {type(value).__name__}")


class Interface:
    """Base of every interface, and the root interface itself (IUnknown's IID).

    Declare an interface by subclassing with an IID; its public methods (sync or async) are the contract::

        class ICounter(aptrt.Interface, iid="6f1c52c5-5b5e-4bb7-9a8e-93a0f5a4a3f1"):
            def add(self, n: int) -> int: ...

    An implementation class subclasses its interfaces (without an IID) and overrides the methods.
    Interfaces can derive from interfaces; the derived one needs a new IID.
    """

    __iid__: ClassVar[uuid.UUID] = IID_IUnknown
    #: the methods of this interface and of the interfaces it derives from
    __interface_methods__: ClassVar[frozenset[str]] = frozenset()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__new__(cls)
        # an object made while code runs in a disconnectable context belongs to it (see _context)
        from ._context import creation_context

        ctx = creation_context()
        if ctx is not None:
            try:
                object.__setattr__(obj, "_aptrt_context", ctx)
            except AttributeError:  # __slots__ without room for it: it joins the context on export
                pass
        return obj

    def __init_subclass__(cls, *, iid: uuid.UUID | str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if iid is None:
            return
        iid = to_uuid(iid)
        if iid in _interfaces_by_iid and _interfaces_by_iid[iid].__qualname__ != cls.__qualname__:
            raise InvalidArgumentError(f"IID {iid} is already used by {_interfaces_by_iid[iid].__qualname__}")
        cls.__iid__ = iid
        type.__setattr__(cls, "__aptrt_interface__", True)
        own = {name for name, value in vars(cls).items() if not name.startswith("_") and callable(value)}
        inherited: set[str] = set()
        for base in cls.__mro__[1:]:
            if is_interface(base):
                inherited |= vars(base).get("__interface_methods__", frozenset())
        cls.__interface_methods__ = frozenset(own | inherited)
        _interfaces_by_iid[iid] = cls


def is_interface(cls: object) -> bool:
    """True if *cls* is an interface (declared with an IID), not an implementation class."""
    return isinstance(cls, type) and (cls is Interface or "__aptrt_interface__" in vars(cls))


def interface_by_iid(iid: uuid.UUID | str) -> type[Interface]:
    """The interface class registered under *iid*."""
    try:
        return _interfaces_by_iid[to_uuid(iid)]
    except KeyError:
        raise NoInterfaceError(f"no interface is declared with IID {iid}") from None


def interfaces_of(cls: type) -> tuple[type[Interface], ...]:
    """The interfaces an implementation class implements, most derived first (MRO order)."""
    return tuple(base for base in cls.__mro__ if is_interface(base))


def primary_interface(cls: type) -> type[Interface]:
    """The interface a proxy exposes by default: the first one the class declares."""
    for base in cls.__mro__:
        if is_interface(base) and base is not Interface:
            return base
    return Interface


I = TypeVar("I", bound=Interface)


def resolve_interface(interface: type[I] | uuid.UUID | str) -> type[I]:
    if isinstance(interface, type):
        if not is_interface(interface):
            raise InvalidArgumentError(f"{interface.__qualname__} is not an interface (declare it with iid=...)")
        return interface
    return interface_by_iid(interface)  # type: ignore[return-value]


class ClassInfo:
    """What aptrt needs to know about an implementation class to call it: which methods are async."""

    __slots__ = ("cls", "interfaces", "iids", "is_async", "reentrancy")

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.interfaces = interfaces_of(cls)
        self.iids = frozenset(i.__iid__ for i in self.interfaces)
        is_async: dict[str, bool] = {}
        for interface in self.interfaces:
            for name in interface.__interface_methods__:
                member = inspect.getattr_static(cls, name, None)
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                is_async[name] = inspect.iscoroutinefunction(member)
        self.is_async = is_async
        from ._reentrancy import class_policy

        #: the class's own reentrancy policy (``__reentrancy__``), overriding its apartment's
        self.reentrancy = class_policy(cls)

    def implements(self, interface: type[Interface]) -> bool:
        return interface.__iid__ in self.iids


_class_infos: dict[type, ClassInfo] = {}


def class_info(cls: type) -> ClassInfo:
    """Cached :class:`ClassInfo` of *cls* (dict reads and writes are atomic; a race builds it twice)."""
    info = _class_infos.get(cls)
    if info is None:
        info = _class_infos[cls] = ClassInfo(cls)
    return info


def is_com_object(value: object) -> bool:
    """True if *value* is an instance of an implementation class (it implements some interface)."""
    return isinstance(value, Interface) and not is_interface(type(value))
