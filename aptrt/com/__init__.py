"""``aptrt.com``: COM's API with its Win32 names, on aptrt's core (the facade of design.md §7).

COM-style code and the classic samples port mechanically:

* Functions keep their Win32 names and argument order; out-parameters become return values (a tuple
  where there are several). A function that only returns an HRESULT returns ``S_OK`` (0) or ``S_FALSE``
  (1); a failing HRESULT raises :class:`COMError` (``aptrt.COMError``: the core's typed subclasses where
  one exists) with ``.hresult`` set to the exact (signed) code. A missing (None) required argument is
  ``E_INVALIDARG``, and so is a value of the wrong type or out of range (a DWORD outside
  ``0..0xFFFFFFFF``, a bool or float where an int belongs): every function of the facade raises only
  :class:`COMError` for bad arguments (``InvalidArgumentError`` is also a ``ValueError``,
  ``NoInterfaceError`` a ``TypeError``). Reserved arguments (``pvReserved``, ``pvDestContext``,
  ``pServerInfo``) are ignored, as Wine does.
* Interfaces are :class:`aptrt.Interface` subclasses; :class:`IUnknown` gives implementation classes
  working ``QueryInterface``/``AddRef``/``Release``. An IID argument takes an interface class or its IID
  (``uuid.UUID`` or ``"{...}"``); a CLSID a ``uuid.UUID``, a ``"{...}"`` string or a ProgID.
* Proxies returned by the facade block: ``proxy.Method(args)`` returns the result or raises; a thread of
  an STA serves incoming calls while it waits (COM's pumping).
* ``threading.Event`` objects are the handles of :func:`CoWaitForMultipleHandles`; a marshal stream is an
  opaque :class:`IStream`.

Beyond what COM reference counts and notifications can see, aptrt's own API (``aptrt.Runtime``,
``aptrt.Apartment``...) still applies: the facade runs on the same core.

Where the facade knowingly differs from Windows:

* A thread that ends without balancing its ``CoInitializeEx`` is not cleaned up: call ``CoUninitialize``.
* ``IMessageFilter::MessagePending`` is not consulted (an STA's inbox carries both incoming calls and
  the replies it waits for, so it cannot wait without processing).
* Custom marshaling (``IMarshal``) is limited to the free-threaded marshaler; ``CoDisconnectObject``
  does hand over to an object's own ``IMarshal::DisconnectObject``.
* Stale NORMAL marshal data (released, or its object gone) fails at unmarshal time with
  ``CO_E_OBJNOTCONNECTED`` instead of giving a proxy that fails later (com-semantics.md §3.4).
* ``CoDisconnectContext`` disconnects every object of the context, not only those made by class
  objects registered with ``CLSCTX_LOCAL_SERVER``.
* ``CoTestCancel`` *returns* ``RPC_S_CALLPENDING`` (the ordinary answer) and raises only when cancelled.
* An interface pointer a method returns through a proxy is not released after marshaling: return
  objects without an extra ``AddRef`` (the Python convention). ``CoCreateInstance`` and
  ``CoGetClassObject`` count exactly as COM does.
* Interface arguments of ``async`` methods, and values handed to aptrt's async proxies, stay aptrt
  (awaitable) proxies; sync methods called through facade proxies receive facade proxies.
"""

from __future__ import annotations

import threading

from .._core._exceptions import COMError as COMError
from .._core._factory import IClassFactory as IClassFactory
from .._core._hresult import HRESULT as HRESULT
from .._core._validate import check_int as _check_int
from ._activation import CLSIDFromProgID as CLSIDFromProgID
from ._activation import CoCreateInstance as CoCreateInstance
from ._activation import CoGetClassObject as CoGetClassObject
from ._activation import CoRegisterClassObject as CoRegisterClassObject
from ._activation import CoResumeClassObjects as CoResumeClassObjects
from ._activation import CoRevokeClassObject as CoRevokeClassObject
from ._activation import IID_IClassFactory as IID_IClassFactory
from ._activation import ProgIDFromCLSID as ProgIDFromCLSID
from ._cancel import CoCancelCall as CoCancelCall
from ._cancel import CoDisableCallCancellation as CoDisableCallCancellation
from ._cancel import CoEnableCallCancellation as CoEnableCallCancellation
from ._cancel import CoTestCancel as CoTestCancel
from ._constants import APTTYPE_CURRENT as APTTYPE_CURRENT
from ._constants import APTTYPE_MAINSTA as APTTYPE_MAINSTA
from ._constants import APTTYPE_MTA as APTTYPE_MTA
from ._constants import APTTYPE_NA as APTTYPE_NA
from ._constants import APTTYPE_STA as APTTYPE_STA
from ._constants import APTTYPEQUALIFIER_APPLICATION_STA as APTTYPEQUALIFIER_APPLICATION_STA
from ._constants import APTTYPEQUALIFIER_IMPLICIT_MTA as APTTYPEQUALIFIER_IMPLICIT_MTA
from ._constants import APTTYPEQUALIFIER_NA_ON_IMPLICIT_MTA as APTTYPEQUALIFIER_NA_ON_IMPLICIT_MTA
from ._constants import APTTYPEQUALIFIER_NA_ON_MAINSTA as APTTYPEQUALIFIER_NA_ON_MAINSTA
from ._constants import APTTYPEQUALIFIER_NA_ON_MTA as APTTYPEQUALIFIER_NA_ON_MTA
from ._constants import APTTYPEQUALIFIER_NA_ON_STA as APTTYPEQUALIFIER_NA_ON_STA
from ._constants import APTTYPEQUALIFIER_NONE as APTTYPEQUALIFIER_NONE
from ._constants import CALLTYPE_ASYNC as CALLTYPE_ASYNC
from ._constants import CALLTYPE_ASYNC_CALLPENDING as CALLTYPE_ASYNC_CALLPENDING
from ._constants import CALLTYPE_NESTED as CALLTYPE_NESTED
from ._constants import CALLTYPE_TOPLEVEL as CALLTYPE_TOPLEVEL
from ._constants import CALLTYPE_TOPLEVEL_CALLPENDING as CALLTYPE_TOPLEVEL_CALLPENDING
from ._constants import CLASS_E_CLASSNOTAVAILABLE as CLASS_E_CLASSNOTAVAILABLE
from ._constants import CLASS_E_NOAGGREGATION as CLASS_E_NOAGGREGATION
from ._constants import CLSCTX_ALL as CLSCTX_ALL
from ._constants import CLSCTX_INPROC as CLSCTX_INPROC
from ._constants import CLSCTX_INPROC_HANDLER as CLSCTX_INPROC_HANDLER
from ._constants import CLSCTX_INPROC_SERVER as CLSCTX_INPROC_SERVER
from ._constants import CLSCTX_LOCAL_SERVER as CLSCTX_LOCAL_SERVER
from ._constants import CLSCTX_REMOTE_SERVER as CLSCTX_REMOTE_SERVER
from ._constants import CLSCTX_SERVER as CLSCTX_SERVER
from ._constants import CO_E_ALREADYINITIALIZED as CO_E_ALREADYINITIALIZED
from ._constants import CO_E_CANCEL_DISABLED as CO_E_CANCEL_DISABLED
from ._constants import CO_E_CLASSSTRING as CO_E_CLASSSTRING
from ._constants import CO_E_NOT_SUPPORTED as CO_E_NOT_SUPPORTED
from ._constants import CO_E_NOTINITIALIZED as CO_E_NOTINITIALIZED
from ._constants import CO_E_NOTSUPPORTED as CO_E_NOTSUPPORTED
from ._constants import CO_E_OBJISREG as CO_E_OBJISREG
from ._constants import CO_E_OBJNOTCONNECTED as CO_E_OBJNOTCONNECTED
from ._constants import CO_E_OBJNOTREG as CO_E_OBJNOTREG
from ._constants import CO_E_RELEASED as CO_E_RELEASED
from ._constants import CO_E_SERVER_STOPPING as CO_E_SERVER_STOPPING
from ._constants import CO_S_NOTALLINTERFACES as CO_S_NOTALLINTERFACES
from ._constants import COINIT_APARTMENTTHREADED as COINIT_APARTMENTTHREADED
from ._constants import COINIT_DISABLE_OLE1DDE as COINIT_DISABLE_OLE1DDE
from ._constants import COINIT_MULTITHREADED as COINIT_MULTITHREADED
from ._constants import COINIT_SPEED_OVER_MEMORY as COINIT_SPEED_OVER_MEMORY
from ._constants import CONTEXT_E_WOULD_DEADLOCK as CONTEXT_E_WOULD_DEADLOCK
from ._constants import COWAIT_ALERTABLE as COWAIT_ALERTABLE
from ._constants import COWAIT_DEFAULT as COWAIT_DEFAULT
from ._constants import COWAIT_DISPATCH_CALLS as COWAIT_DISPATCH_CALLS
from ._constants import COWAIT_DISPATCH_WINDOW_MESSAGES as COWAIT_DISPATCH_WINDOW_MESSAGES
from ._constants import COWAIT_INPUTAVAILABLE as COWAIT_INPUTAVAILABLE
from ._constants import COWAIT_WAITALL as COWAIT_WAITALL
from ._constants import E_FAIL as E_FAIL
from ._constants import E_INVALIDARG as E_INVALIDARG
from ._constants import E_NOINTERFACE as E_NOINTERFACE
from ._constants import E_NOTIMPL as E_NOTIMPL
from ._constants import E_OUTOFMEMORY as E_OUTOFMEMORY
from ._constants import E_POINTER as E_POINTER
from ._constants import E_UNEXPECTED as E_UNEXPECTED
from ._constants import EXTCONN_CALLABLE as EXTCONN_CALLABLE
from ._constants import EXTCONN_STRONG as EXTCONN_STRONG
from ._constants import EXTCONN_WEAK as EXTCONN_WEAK
from ._constants import GUID_NULL as GUID_NULL
from ._constants import INFINITE as INFINITE
from ._constants import MSHCTX_CONTAINER as MSHCTX_CONTAINER
from ._constants import MSHCTX_CROSSCTX as MSHCTX_CROSSCTX
from ._constants import MSHCTX_DIFFERENTMACHINE as MSHCTX_DIFFERENTMACHINE
from ._constants import MSHCTX_INPROC as MSHCTX_INPROC
from ._constants import MSHCTX_LOCAL as MSHCTX_LOCAL
from ._constants import MSHCTX_NOSHAREDMEM as MSHCTX_NOSHAREDMEM
from ._constants import MSHLFLAGS_NOPING as MSHLFLAGS_NOPING
from ._constants import MSHLFLAGS_NORMAL as MSHLFLAGS_NORMAL
from ._constants import MSHLFLAGS_TABLESTRONG as MSHLFLAGS_TABLESTRONG
from ._constants import MSHLFLAGS_TABLEWEAK as MSHLFLAGS_TABLEWEAK
from ._constants import PENDINGMSG_CANCELCALL as PENDINGMSG_CANCELCALL
from ._constants import PENDINGMSG_WAITDEFPROCESS as PENDINGMSG_WAITDEFPROCESS
from ._constants import PENDINGMSG_WAITNOPROCESS as PENDINGMSG_WAITNOPROCESS
from ._constants import PENDINGTYPE_NESTED as PENDINGTYPE_NESTED
from ._constants import PENDINGTYPE_TOPLEVEL as PENDINGTYPE_TOPLEVEL
from ._constants import REGCLS_AGILE as REGCLS_AGILE
from ._constants import REGCLS_MULTI_SEPARATE as REGCLS_MULTI_SEPARATE
from ._constants import REGCLS_MULTIPLEUSE as REGCLS_MULTIPLEUSE
from ._constants import REGCLS_SINGLEUSE as REGCLS_SINGLEUSE
from ._constants import REGCLS_SURROGATE as REGCLS_SURROGATE
from ._constants import REGCLS_SUSPENDED as REGCLS_SUSPENDED
from ._constants import REGDB_E_CLASSNOTREG as REGDB_E_CLASSNOTREG
from ._constants import REGDB_E_IIDNOTREG as REGDB_E_IIDNOTREG
from ._constants import RPC_E_CALL_CANCELED as RPC_E_CALL_CANCELED
from ._constants import RPC_E_CALL_COMPLETE as RPC_E_CALL_COMPLETE
from ._constants import RPC_E_CALL_REJECTED as RPC_E_CALL_REJECTED
from ._constants import RPC_E_CANTCALLOUT_ININPUTSYNCCALL as RPC_E_CANTCALLOUT_ININPUTSYNCCALL
from ._constants import RPC_E_CHANGED_MODE as RPC_E_CHANGED_MODE
from ._constants import RPC_E_DISCONNECTED as RPC_E_DISCONNECTED
from ._constants import RPC_E_INVALID_OBJREF as RPC_E_INVALID_OBJREF
from ._constants import RPC_E_NO_SYNC as RPC_E_NO_SYNC
from ._constants import RPC_E_RETRY as RPC_E_RETRY
from ._constants import RPC_E_SERVERCALL_REJECTED as RPC_E_SERVERCALL_REJECTED
from ._constants import RPC_E_SERVERCALL_RETRYLATER as RPC_E_SERVERCALL_RETRYLATER
from ._constants import RPC_E_SERVERFAULT as RPC_E_SERVERFAULT
from ._constants import RPC_E_THREAD_NOT_INIT as RPC_E_THREAD_NOT_INIT
from ._constants import RPC_E_TIMEOUT as RPC_E_TIMEOUT
from ._constants import RPC_E_WRONG_THREAD as RPC_E_WRONG_THREAD
from ._constants import RPC_S_CALL_CANCELED as RPC_S_CALL_CANCELED
from ._constants import RPC_S_CALLPENDING as RPC_S_CALLPENDING
from ._constants import S_FALSE as S_FALSE
from ._constants import S_OK as S_OK
from ._constants import SERVERCALL_ISHANDLED as SERVERCALL_ISHANDLED
from ._constants import SERVERCALL_REJECTED as SERVERCALL_REJECTED
from ._constants import SERVERCALL_RETRYLATER as SERVERCALL_RETRYLATER
from ._constants import STG_E_READFAULT as STG_E_READFAULT
from ._constants import STREAM_SEEK_CUR as STREAM_SEEK_CUR
from ._constants import STREAM_SEEK_END as STREAM_SEEK_END
from ._constants import STREAM_SEEK_SET as STREAM_SEEK_SET
from ._constants import THDTYPE_BLOCKMESSAGES as THDTYPE_BLOCKMESSAGES
from ._constants import THDTYPE_PROCESSMESSAGES as THDTYPE_PROCESSMESSAGES
from ._constants import CLSID_ContextSwitcher as CLSID_ContextSwitcher
from ._constants import CLSID_InProcFreeMarshaler as CLSID_InProcFreeMarshaler
from ._constants import CLSID_StdGlobalInterfaceTable as CLSID_StdGlobalInterfaceTable
from ._constants import CLSID_StdMarshal as CLSID_StdMarshal
from ._context import CoDisconnectContext as CoDisconnectContext
from ._context import CoGetContextToken as CoGetContextToken
from ._context import CoGetCurrentLogicalThreadId as CoGetCurrentLogicalThreadId
from ._context import CoGetObjectContext as CoGetObjectContext
from ._context import IComThreadingInfo as IComThreadingInfo
from ._context import IContextCallback as IContextCallback
from ._context import IID_IComThreadingInfo as IID_IComThreadingInfo
from ._context import IID_IContextCallback as IID_IContextCallback
from ._context import IID_IObjContext as IID_IObjContext
from ._context import IObjContext as IObjContext
from ._filter import INTERFACEINFO as INTERFACEINFO
from ._filter import CoRegisterMessageFilter as CoRegisterMessageFilter
from ._filter import IID_IMessageFilter as IID_IMessageFilter
from ._filter import IMessageFilter as IMessageFilter
from ._init import CoDecrementMTAUsage as CoDecrementMTAUsage
from ._init import CoGetApartmentType as CoGetApartmentType
from ._init import CoIncrementMTAUsage as CoIncrementMTAUsage
from ._init import CoInitialize as CoInitialize
from ._init import CoInitializeEx as CoInitializeEx
from ._init import CoUninitialize as CoUninitialize
from ._marshal import CoCreateFreeThreadedMarshaler as CoCreateFreeThreadedMarshaler
from ._marshal import CoDisconnectObject as CoDisconnectObject
from ._marshal import CoGetInterfaceAndReleaseStream as CoGetInterfaceAndReleaseStream
from ._marshal import CoLockObjectExternal as CoLockObjectExternal
from ._marshal import CoMarshalInterface as CoMarshalInterface
from ._marshal import CoMarshalInterThreadInterfaceInStream as CoMarshalInterThreadInterfaceInStream
from ._marshal import CoReleaseMarshalData as CoReleaseMarshalData
from ._marshal import CoUnmarshalInterface as CoUnmarshalInterface
from ._marshal import CreateStreamOnHGlobal as CreateStreamOnHGlobal
from ._marshal import IGlobalInterfaceTable as IGlobalInterfaceTable
from ._marshal import IID_IGlobalInterfaceTable as IID_IGlobalInterfaceTable
from ._marshal import IID_IMarshal as IID_IMarshal
from ._marshal import IID_IStream as IID_IStream
from ._marshal import IMarshal as IMarshal
from ._marshal import IStream as IStream
from ._proxy import ComProxy as ComProxy
from ._unknown import IExternalConnection as IExternalConnection
from ._unknown import IID_IExternalConnection as IID_IExternalConnection
from ._unknown import IID_IUnknown as IID_IUnknown
from ._unknown import IUnknown as IUnknown
from ._wait import CoWaitForMultipleHandles as CoWaitForMultipleHandles


def GetCurrentThreadId() -> int:
    """The calling thread's native id (the id :func:`CoCancelCall` takes)."""
    return threading.get_native_id()


def SUCCEEDED(hr: int) -> bool:
    """The SUCCEEDED() macro: severity bit clear (``E_INVALIDARG`` for something that is not an int)."""
    return (_check_int(hr, "hr") & 0xFFFFFFFF) < 0x80000000


def FAILED(hr: int) -> bool:
    """The FAILED() macro: severity bit set (``E_INVALIDARG`` for something that is not an int)."""
    return not SUCCEEDED(hr)


__all__ = (
    "APTTYPEQUALIFIER_APPLICATION_STA",
    "APTTYPEQUALIFIER_IMPLICIT_MTA",
    "APTTYPEQUALIFIER_NA_ON_IMPLICIT_MTA",
    "APTTYPEQUALIFIER_NA_ON_MAINSTA",
    "APTTYPEQUALIFIER_NA_ON_MTA",
    "APTTYPEQUALIFIER_NA_ON_STA",
    "APTTYPEQUALIFIER_NONE",
    "APTTYPE_CURRENT",
    "APTTYPE_MAINSTA",
    "APTTYPE_MTA",
    "APTTYPE_NA",
    "APTTYPE_STA",
    "CALLTYPE_ASYNC",
    "CALLTYPE_ASYNC_CALLPENDING",
    "CALLTYPE_NESTED",
    "CALLTYPE_TOPLEVEL",
    "CALLTYPE_TOPLEVEL_CALLPENDING",
    "CLASS_E_CLASSNOTAVAILABLE",
    "CLASS_E_NOAGGREGATION",
    "CLSCTX_ALL",
    "CLSCTX_INPROC",
    "CLSCTX_INPROC_HANDLER",
    "CLSCTX_INPROC_SERVER",
    "CLSCTX_LOCAL_SERVER",
    "CLSCTX_REMOTE_SERVER",
    "CLSCTX_SERVER",
    "COINIT_APARTMENTTHREADED",
    "COINIT_DISABLE_OLE1DDE",
    "COINIT_MULTITHREADED",
    "COINIT_SPEED_OVER_MEMORY",
    "CONTEXT_E_WOULD_DEADLOCK",
    "COWAIT_ALERTABLE",
    "COWAIT_DEFAULT",
    "COWAIT_DISPATCH_CALLS",
    "COWAIT_DISPATCH_WINDOW_MESSAGES",
    "COWAIT_INPUTAVAILABLE",
    "COWAIT_WAITALL",
    "CO_E_ALREADYINITIALIZED",
    "CO_E_CANCEL_DISABLED",
    "CO_E_CLASSSTRING",
    "CO_E_NOTINITIALIZED",
    "CO_E_NOTSUPPORTED",
    "CO_E_NOT_SUPPORTED",
    "CO_E_OBJISREG",
    "CO_E_OBJNOTCONNECTED",
    "CO_E_OBJNOTREG",
    "CO_E_RELEASED",
    "CO_E_SERVER_STOPPING",
    "CO_S_NOTALLINTERFACES",
    "EXTCONN_CALLABLE",
    "EXTCONN_STRONG",
    "EXTCONN_WEAK",
    "E_FAIL",
    "E_INVALIDARG",
    "E_NOINTERFACE",
    "E_NOTIMPL",
    "E_OUTOFMEMORY",
    "E_POINTER",
    "E_UNEXPECTED",
    "FAILED",
    "GUID_NULL",
    "HRESULT",
    "INFINITE",
    "INTERFACEINFO",
    "MSHCTX_CONTAINER",
    "MSHCTX_CROSSCTX",
    "MSHCTX_DIFFERENTMACHINE",
    "MSHCTX_INPROC",
    "MSHCTX_LOCAL",
    "MSHCTX_NOSHAREDMEM",
    "MSHLFLAGS_NOPING",
    "MSHLFLAGS_NORMAL",
    "MSHLFLAGS_TABLESTRONG",
    "MSHLFLAGS_TABLEWEAK",
    "PENDINGMSG_CANCELCALL",
    "PENDINGMSG_WAITDEFPROCESS",
    "PENDINGMSG_WAITNOPROCESS",
    "PENDINGTYPE_NESTED",
    "PENDINGTYPE_TOPLEVEL",
    "REGCLS_AGILE",
    "REGCLS_MULTIPLEUSE",
    "REGCLS_MULTI_SEPARATE",
    "REGCLS_SINGLEUSE",
    "REGCLS_SURROGATE",
    "REGCLS_SUSPENDED",
    "REGDB_E_CLASSNOTREG",
    "REGDB_E_IIDNOTREG",
    "RPC_E_CALL_CANCELED",
    "RPC_E_CALL_COMPLETE",
    "RPC_E_CALL_REJECTED",
    "RPC_E_CANTCALLOUT_ININPUTSYNCCALL",
    "RPC_E_CHANGED_MODE",
    "RPC_E_DISCONNECTED",
    "RPC_E_INVALID_OBJREF",
    "RPC_E_NO_SYNC",
    "RPC_E_RETRY",
    "RPC_E_SERVERCALL_REJECTED",
    "RPC_E_SERVERCALL_RETRYLATER",
    "RPC_E_SERVERFAULT",
    "RPC_E_THREAD_NOT_INIT",
    "RPC_E_TIMEOUT",
    "RPC_E_WRONG_THREAD",
    "RPC_S_CALLPENDING",
    "RPC_S_CALL_CANCELED",
    "SERVERCALL_ISHANDLED",
    "SERVERCALL_REJECTED",
    "SERVERCALL_RETRYLATER",
    "STG_E_READFAULT",
    "STREAM_SEEK_CUR",
    "STREAM_SEEK_END",
    "STREAM_SEEK_SET",
    "SUCCEEDED",
    "S_FALSE",
    "S_OK",
    "THDTYPE_BLOCKMESSAGES",
    "THDTYPE_PROCESSMESSAGES",
    "CLSIDFromProgID",
    "CLSID_ContextSwitcher",
    "CLSID_InProcFreeMarshaler",
    "CLSID_StdGlobalInterfaceTable",
    "CLSID_StdMarshal",
    "COMError",
    "CoCancelCall",
    "CoCreateFreeThreadedMarshaler",
    "CoCreateInstance",
    "CoDecrementMTAUsage",
    "CoDisableCallCancellation",
    "CoDisconnectContext",
    "CoDisconnectObject",
    "CoEnableCallCancellation",
    "CoGetApartmentType",
    "CoGetClassObject",
    "CoGetContextToken",
    "CoGetCurrentLogicalThreadId",
    "CoGetInterfaceAndReleaseStream",
    "CoGetObjectContext",
    "CoIncrementMTAUsage",
    "CoInitialize",
    "CoInitializeEx",
    "CoLockObjectExternal",
    "CoMarshalInterThreadInterfaceInStream",
    "CoMarshalInterface",
    "CoRegisterClassObject",
    "CoRegisterMessageFilter",
    "CoReleaseMarshalData",
    "CoResumeClassObjects",
    "CoRevokeClassObject",
    "CoTestCancel",
    "CoUninitialize",
    "CoUnmarshalInterface",
    "CoWaitForMultipleHandles",
    "ComProxy",
    "CreateStreamOnHGlobal",
    "GetCurrentThreadId",
    "IClassFactory",
    "IComThreadingInfo",
    "IContextCallback",
    "IExternalConnection",
    "IGlobalInterfaceTable",
    "IID_IClassFactory",
    "IID_IComThreadingInfo",
    "IID_IContextCallback",
    "IID_IExternalConnection",
    "IID_IGlobalInterfaceTable",
    "IID_IMarshal",
    "IID_IMessageFilter",
    "IID_IObjContext",
    "IID_IStream",
    "IID_IUnknown",
    "IMarshal",
    "IMessageFilter",
    "IObjContext",
    "IStream",
    "IUnknown",
    "ProgIDFromCLSID",
)


def _fixup_module_metadata() -> None:
    # the facade's own public classes and functions say they live in ``aptrt.com`` (reprs, tracebacks)
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("aptrt.com."):
            try:
                obj.__module__ = "aptrt.com"
            except (AttributeError, TypeError):
                pass


_fixup_module_metadata()
del _fixup_module_metadata, annotations
