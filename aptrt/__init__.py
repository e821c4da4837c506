"""aptrt: COM's apartment model for async Python (asyncio, uvloop and trio, through anyio)."""

from __future__ import annotations

from ._core._activation import CallableFactory as CallableFactory
from ._core._apartment import Apartment as Apartment
from ._core._apartment import ApartmentKind as ApartmentKind
from ._core._apartment import ApartmentStatistics as ApartmentStatistics
from ._core._cancel import check_cancelled as check_cancelled
from ._core._cancel import current_cancel_reason as current_cancel_reason
from ._core._cancel import current_causality as current_causality
from ._core._context import Context as Context
from ._core._context import ContextState as ContextState
from ._core._context import ContextStatistics as ContextStatistics
from ._core._context import context_token as context_token
from ._core._context import current_context as current_context
from ._core._context import disconnect_object as disconnect_object
from ._core._exceptions import ApartmentClosedError as ApartmentClosedError
from ._core._exceptions import CallCancelledError as CallCancelledError
from ._core._exceptions import CallRejectedError as CallRejectedError
from ._core._exceptions import ChangedModeError as ChangedModeError
from ._core._exceptions import ClassNotRegisteredError as ClassNotRegisteredError
from ._core._exceptions import COMError as COMError
from ._core._exceptions import DeadlineExceededError as DeadlineExceededError
from ._core._exceptions import DisconnectedError as DisconnectedError
from ._core._exceptions import DisconnectReason as DisconnectReason
from ._core._exceptions import InvalidArgumentError as InvalidArgumentError
from ._core._exceptions import NoInterfaceError as NoInterfaceError
from ._core._exceptions import NotInitializedError as NotInitializedError
from ._core._exceptions import NotSupportedError as NotSupportedError
from ._core._exceptions import ObjectNotConnectedError as ObjectNotConnectedError
from ._core._exceptions import RetryLaterError as RetryLaterError
from ._core._exceptions import RPCTimeoutError as RPCTimeoutError
from ._core._exceptions import WouldDeadlockError as WouldDeadlockError
from ._core._exceptions import WrongThreadError as WrongThreadError
from ._core._factory import CLSCTX as CLSCTX
from ._core._factory import REGCLS as REGCLS
from ._core._factory import ClassFactory as ClassFactory
from ._core._factory import IClassFactory as IClassFactory
from ._core._factory import ServerModule as ServerModule
from ._core._factory import can_unload_now as can_unload_now
from ._core._factory import server_module as server_module
from ._core._flow import CallType as CallType
from ._core._flow import FilterDecision as FilterDecision
from ._core._flow import IncomingCall as IncomingCall
from ._core._flow import Overflow as Overflow
from ._core._flow import RetryPolicy as RetryPolicy
from ._core._guarded import Guarded as Guarded
from ._core._guarded import guarded as guarded
from ._core._hresult import HRESULT as HRESULT
from ._core._interface import IID_IUnknown as IID_IUnknown
from ._core._interface import Interface as Interface
from ._core._marshal import by_reference as by_reference
from ._core._marshaling import MSHLFLAGS as MSHLFLAGS
from ._core._marshaling import Agile as Agile
from ._core._marshaling import AgileReference as AgileReference
from ._core._marshaling import GlobalInterfaceTable as GlobalInterfaceTable
from ._core._marshaling import MarshalData as MarshalData
from ._core._marshaling import marshal_interface as marshal_interface
from ._core._marshaling import release_marshal_data as release_marshal_data
from ._core._marshaling import unmarshal_interface as unmarshal_interface
from ._core._mta import MTA as MTA
from ._core._neutral import NeutralApartment as NeutralApartment
from ._core._observe import CallEvent as CallEvent
from ._core._observe import Instrument as Instrument
from ._core._observe import dump as dump
from ._core._pending import PendingCall as PendingCall
from ._core._pending import begin as begin
from ._core._proxy import BlockingProxy as BlockingProxy
from ._core._proxy import Proxy as Proxy
from ._core._proxy import as_interface as as_interface
from ._core._proxy import blocking as blocking
from ._core._proxy import query_interface as query_interface
from ._core._reentrancy import Reentrancy as Reentrancy
from ._core._registry import ClassRegistration as ClassRegistration
from ._core._registry import ClassRegistry as ClassRegistry
from ._core._registry import ThreadingModel as ThreadingModel
from ._core._registry import coclass as coclass
from ._core._registry import registry as registry
from ._core._runtime import Runtime as Runtime
from ._core._runtime import current_apartment as current_apartment
from ._core._runtime import current_runtime as current_runtime
from ._core._sta import STA as STA
from ._core._watchdog import StallReport as StallReport
from ._core._watchdog import Watchdog as Watchdog

__version__ = "0.1.0"

__all__ = (
    "CLSCTX",
    "HRESULT",
    "MSHLFLAGS",
    "MTA",
    "REGCLS",
    "STA",
    "Agile",
    "AgileReference",
    "Apartment",
    "ApartmentClosedError",
    "ApartmentKind",
    "ApartmentStatistics",
    "BlockingProxy",
    "COMError",
    "CallCancelledError",
    "CallEvent",
    "CallRejectedError",
    "CallType",
    "CallableFactory",
    "ChangedModeError",
    "ClassFactory",
    "ClassNotRegisteredError",
    "ClassRegistration",
    "ClassRegistry",
    "Context",
    "ContextState",
    "ContextStatistics",
    "DeadlineExceededError",
    "DisconnectReason",
    "DisconnectedError",
    "FilterDecision",
    "GlobalInterfaceTable",
    "Guarded",
    "IClassFactory",
    "IID_IUnknown",
    "IncomingCall",
    "Instrument",
    "Interface",
    "InvalidArgumentError",
    "MarshalData",
    "NeutralApartment",
    "NoInterfaceError",
    "NotInitializedError",
    "NotSupportedError",
    "ObjectNotConnectedError",
    "Overflow",
    "PendingCall",
    "Proxy",
    "RPCTimeoutError",
    "Reentrancy",
    "RetryLaterError",
    "RetryPolicy",
    "Runtime",
    "ServerModule",
    "StallReport",
    "ThreadingModel",
    "Watchdog",
    "WouldDeadlockError",
    "WrongThreadError",
    "as_interface",
    "begin",
    "blocking",
    "by_reference",
    "can_unload_now",
    "check_cancelled",
    "coclass",
    "context_token",
    "current_apartment",
    "current_cancel_reason",
    "current_causality",
    "current_context",
    "current_runtime",
    "disconnect_object",
    "dump",
    "guarded",
    "marshal_interface",
    "query_interface",
    "registry",
    "release_marshal_data",
    "server_module",
    "unmarshal_interface",
)


def _fixup_module_metadata() -> None:
    # Public objects say they live in ``aptrt`` (tracebacks, reprs, pickles), as trio does.
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("aptrt._core"):
            try:
                obj.__module__ = "aptrt"
            except (AttributeError, TypeError):
                pass


_fixup_module_metadata()
del _fixup_module_metadata, annotations
