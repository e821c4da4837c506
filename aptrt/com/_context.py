"""Contexts: CoGetObjectContext and IContextCallback, the context switcher, CoGetContextToken,
CoDisconnectContext, and the logical thread id (causality) of CoGetCurrentLogicalThreadId.

``IContextCallback.ContextCallback(callback, data, riid, method, unk)`` runs ``callback(data)`` inside the
context (in its apartment: a call there when the caller is elsewhere) and returns its result; ``None``
means ``S_OK`` and a failing HRESULT it returns is raised. Objects created inside the context, and
objects made by class factories registered inside it, belong to it. The context switcher
(``CoCreateInstance(CLSID_ContextSwitcher, ...)``) makes one new, disconnectable context in the
creating apartment; every ContextCallback through it enters that same context.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any, cast

from .._core._apartment import Apartment, ApartmentKind
from .._core._context import Context, current_context
from .._core._exceptions import InvalidArgumentError, WrongThreadError
from .._core._hresult import HRESULT
from .._core._interface import IID_IUnknown, Interface, is_interface, to_uuid
from .._core._marshaling import Agile
from .._core._threadstate import current_call, tls
from . import _init
from ._constants import (
    APTTYPE_MAINSTA,
    APTTYPE_MTA,
    APTTYPE_NA,
    APTTYPE_STA,
    S_OK,
    THDTYPE_BLOCKMESSAGES,
    THDTYPE_PROCESSMESSAGES,
)
from ._unknown import IUnknown, qi, sweep
from ._util import check_hresult, error, required, to_interface
from ._wait import timeout_seconds


class IContextCallback(IUnknown, iid="000001DA-0000-0000-C000-000000000046"):
    """Enter a context: ``ContextCallback(callback, data, riid, method, unk)`` runs ``callback(data)`` there."""

    def ContextCallback(self, pfnCallback: Any, pParam: Any, riid: Any, iMethod: int, pUnk: Any) -> Any:
        raise NotImplementedError


class IComThreadingInfo(IUnknown, iid="000001CE-0000-0000-C000-000000000046"):
    """What a context knows about its apartment and the logical thread."""

    def GetCurrentApartmentType(self) -> int:
        raise NotImplementedError

    def GetCurrentThreadType(self) -> int:
        raise NotImplementedError

    def GetCurrentLogicalThreadId(self) -> uuid.UUID:
        raise NotImplementedError


class IObjContext(IUnknown, iid="000001C6-0000-0000-C000-000000000046"):
    """The object context itself (its identity is what CoGetContextToken names)."""


IID_IContextCallback = IContextCallback.__iid__
IID_IComThreadingInfo = IComThreadingInfo.__iid__
IID_IObjContext = IObjContext.__iid__

# -- logical thread ids ----------------------------------------------------------------------------------

#: the high 64 bits of every logical thread id of this process (the low 64 are the core's causality id)
_PROCESS_PREFIX = secrets.randbits(64) | 1


def causality_guid(causality: int) -> uuid.UUID:
    """The logical thread id (a GUID) of a causality chain."""
    return uuid.UUID(int=(_PROCESS_PREFIX << 64) | (causality & 0xFFFFFFFFFFFFFFFF))


def CoGetCurrentLogicalThreadId() -> uuid.UUID:
    """The logical thread id: the caller's (it travels with every call and nested call) inside an
    incoming call, else this thread's own. Works without COM initialised."""
    call = current_call()
    return causality_guid(call.causality if call is not None else _init.thread_causality())


# -- contexts --------------------------------------------------------------------------------------------


def _apartment_type(apartment: Apartment) -> int:
    kind = apartment.kind
    if kind is ApartmentKind.MAIN_STA:
        return APTTYPE_MAINSTA
    if kind is ApartmentKind.STA:
        return APTTYPE_STA
    if kind is ApartmentKind.MTA:
        return APTTYPE_MTA
    return APTTYPE_NA


def _riid_uuid(riid: Any) -> uuid.UUID:
    required(riid, "riid")
    if isinstance(riid, type):
        if not is_interface(riid):
            raise InvalidArgumentError(f"{riid.__qualname__} is not an interface")
        return cast("type[Interface]", riid).__iid__
    return to_uuid(riid, "riid")


def context_callback(ctx: Context, pfnCallback: Any, pParam: Any, riid: Any, iMethod: int, pUnk: Any) -> Any:
    """Run ``pfnCallback(pParam)`` inside *ctx* (IContextCallback::ContextCallback's rules)."""
    _init.flush()
    required(pfnCallback, "pfnCallback")
    if not callable(pfnCallback):
        raise InvalidArgumentError("pfnCallback must be callable")
    if _riid_uuid(riid) == IID_IUnknown:
        raise InvalidArgumentError("riid must not be IID_IUnknown")
    if isinstance(iMethod, bool) or not isinstance(iMethod, int) or iMethod < 3:
        raise InvalidArgumentError(f"iMethod must be at least 3 (the first method after IUnknown's), not {iMethod!r}")
    if pUnk is not None:
        raise InvalidArgumentError("pUnk must be None")
    # a closure: the data crosses as it is (COM passes a pointer), whichever apartment runs it
    return check_hresult(ctx.run_sync_blocking(lambda: pfnCallback(pParam)))


class ObjectContext(Agile, IContextCallback, IComThreadingInfo, IObjContext):
    """The object context of an apartment's context (CoGetObjectContext): one per context."""

    def __init__(self, ctx: Context) -> None:
        self.context = ctx

    def __repr__(self) -> str:
        return f"<ObjectContext of {self.context!r}>"

    @property
    def token(self) -> int:
        """The context's token (what CoGetContextToken returns inside it)."""
        return self.context.token

    def ContextCallback(self, pfnCallback: Any, pParam: Any, riid: Any, iMethod: int, pUnk: Any) -> Any:
        return context_callback(self.context, pfnCallback, pParam, riid, iMethod, pUnk)

    def GetCurrentApartmentType(self) -> int:
        return _apartment_type(self.context.apartment)

    def GetCurrentThreadType(self) -> int:
        kind = self.context.apartment.kind
        return THDTYPE_PROCESSMESSAGES if kind in (ApartmentKind.STA, ApartmentKind.MAIN_STA) else THDTYPE_BLOCKMESSAGES

    def GetCurrentLogicalThreadId(self) -> uuid.UUID:
        return CoGetCurrentLogicalThreadId()


def object_context(ctx: Context) -> ObjectContext:
    """The one ObjectContext of *ctx*."""
    obj = getattr(ctx, "_aptrt_com_object", None)
    if obj is None:
        with _init.state.lock:
            obj = getattr(ctx, "_aptrt_com_object", None)
            if obj is None:
                obj = ObjectContext(ctx)
                ctx._aptrt_com_object = obj  # type: ignore[attr-defined]
    assert isinstance(obj, ObjectContext)
    return obj


def CoGetObjectContext(riid: Any) -> Any:
    """The current context's object (IContextCallback, IComThreadingInfo, IObjContext), the same object
    each time inside one context.

    :raises NotInitializedError: not initialised and no MTA (``CO_E_NOTINITIALIZED``)
    :raises NoInterfaceError: the context object has no such interface (``E_NOINTERFACE``)
    """
    _init.flush()
    interface = to_interface(riid)
    _init.require_apartment()
    return qi(object_context(current_context()), interface)


def CoGetContextToken() -> int:
    """A cheap identity of the current context (no reference taken); equal tokens mean the same context."""
    _init.require_apartment()
    return current_context().token


class ContextSwitcher(Agile, IContextCallback):
    """``CLSID_ContextSwitcher``: a new disconnectable context of the creating apartment; each
    ContextCallback through it enters that context."""

    def __init__(self, apartment: Apartment) -> None:
        self.context = apartment.create_context()

    def __repr__(self) -> str:
        return f"<ContextSwitcher {self.context!r}>"

    def ContextCallback(self, pfnCallback: Any, pParam: Any, riid: Any, iMethod: int, pUnk: Any) -> Any:
        return context_callback(self.context, pfnCallback, pParam, riid, iMethod, pUnk)


def create_context_switcher(outer: Any, interface: type[Interface], apartment: Apartment) -> Any:
    if outer is not None:
        raise error(HRESULT.CLASS_E_NOAGGREGATION, "the context switcher cannot be aggregated")
    return qi(ContextSwitcher(apartment), interface)


def CoDisconnectContext(dwTimeout: int) -> int:
    """Disconnect every object of the current context (its clients get ``RPC_E_DISCONNECTED``), waiting
    up to *dwTimeout* milliseconds (``INFINITE`` allowed) for the calls running on them; the context
    refuses new calls from the start. A pumping STA serves calls while it waits.

    :return: ``S_OK`` once every object is disconnected
    :raises RPCTimeoutError: calls were still running after the timeout (``RPC_E_TIMEOUT``); the context
        finishes disconnecting when they end: call again until ``S_OK``
    :raises NotSupportedError: the current context is a default one (``CO_E_NOTSUPPORTED``)
    :raises WouldDeadlockError: called from inside a call on one of the context's objects
        (``CONTEXT_E_WOULD_DEADLOCK``)
    """
    _init.flush()
    seconds = timeout_seconds(dwTimeout)
    _init.require_apartment()
    if tls.s.port is not None:
        raise WrongThreadError("CoDisconnectContext would block this event loop's thread")
    ctx = current_context()
    try:
        ctx.disconnect_blocking(None if seconds == float("inf") else seconds)
    finally:
        sweep(ctx.apartment)
        from ._activation import sweep_registrations

        sweep_registrations()
    return S_OK
