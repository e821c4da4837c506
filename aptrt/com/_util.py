"""Small helpers of the facade: HRESULT → exception, IID/CLSID coercion, COM-style reference counting."""

from __future__ import annotations

import uuid
from typing import Any

from .._core._exceptions import (
    CallCancelledError,
    CallRejectedError,
    ChangedModeError,
    ClassNotRegisteredError,
    COMError,
    DisconnectedError,
    InvalidArgumentError,
    NoInterfaceError,
    NotInitializedError,
    NotSupportedError,
    ObjectNotConnectedError,
    RetryLaterError,
    RPCTimeoutError,
    WouldDeadlockError,
    WrongThreadError,
)
from .._core._hresult import HRESULT, hresult_name
from .._core._interface import Interface, interface_by_iid, is_interface, to_uuid
from .._core._proxy import Proxy
from .._core._registry import registry
from .._core._validate import check_dword

# The core's typed exception for each HRESULT that has one; any other failure is a plain COMError.
_TYPED: dict[int, type[COMError]] = {
    HRESULT.E_INVALIDARG: InvalidArgumentError,
    HRESULT.E_NOINTERFACE: NoInterfaceError,
    HRESULT.CO_E_NOTINITIALIZED: NotInitializedError,
    HRESULT.RPC_E_CHANGED_MODE: ChangedModeError,
    HRESULT.CO_E_NOT_SUPPORTED: NotSupportedError,
    HRESULT.CONTEXT_E_WOULD_DEADLOCK: WouldDeadlockError,
    HRESULT.RPC_E_TIMEOUT: RPCTimeoutError,
    HRESULT.REGDB_E_CLASSNOTREG: ClassNotRegisteredError,
    HRESULT.RPC_E_WRONG_THREAD: WrongThreadError,
    HRESULT.RPC_E_DISCONNECTED: DisconnectedError,
    HRESULT.CO_E_OBJNOTCONNECTED: ObjectNotConnectedError,
    HRESULT.RPC_E_CALL_REJECTED: CallRejectedError,
    HRESULT.RPC_E_SERVERCALL_RETRYLATER: RetryLaterError,
    HRESULT.RPC_E_CALL_CANCELED: CallCancelledError,
    HRESULT.RPC_S_CALL_CANCELED: CallCancelledError,
}


def signed(hresult: int) -> int:
    """The signed 32-bit spelling of *hresult* (``0x80004005`` → ``-2147467259``)."""
    return hresult - (1 << 32) if 0x80000000 <= hresult <= 0xFFFFFFFF else hresult


def error(hresult: int, message: str | None = None) -> COMError:
    """The exception a failing *hresult* raises: the core's typed class where one exists."""
    code = signed(int(hresult))
    cls = _TYPED.get(code, COMError)
    text = message or hresult_name(code)
    if cls is COMError:
        return COMError(text, hresult=code)
    return cls(text, hresult=code)


def required(value: object, what: str) -> None:
    """``E_INVALIDARG`` for a missing (None) required argument."""
    if value is None:
        raise InvalidArgumentError(f"{what} is required (got None)")


def check_hresult(result: Any) -> Any:
    """A callback's answer as the facade returns it: None → ``S_OK``; a failing HRESULT (an int in the
    32-bit range with the severity bit set) raises; anything else is returned as it is."""
    if result is None:
        return HRESULT.S_OK.value
    if isinstance(result, int) and not isinstance(result, bool) and -(1 << 31) <= signed(result) < 0:
        raise error(result)
    return result


def dword(value: object, what: str) -> int:
    """A DWORD argument (flags, a thread id, milliseconds): an int in ``[0, 0xFFFFFFFF]``, else
    ``E_INVALIDARG``."""
    return check_dword(value, what)


# -- interface and class ids -----------------------------------------------------------------------------


def to_interface(iid: object, what: str = "riid") -> type[Interface]:
    """An interface class from an interface class, a ``uuid.UUID`` or a ``"{...}"`` string.

    :raises InvalidArgumentError: None, or not an interface or a GUID (``E_INVALIDARG``)
    :raises NoInterfaceError: no interface is declared with that IID (``E_NOINTERFACE``)
    """
    required(iid, what)
    if iid is Interface:
        return interface_by_iid(Interface.__iid__)  # the root: IUnknown
    if isinstance(iid, type):
        if not is_interface(iid):
            raise InvalidArgumentError(f"{iid.__qualname__} is not an interface (declare it with iid=...)")
        return iid
    if isinstance(iid, (uuid.UUID, str)):
        return interface_by_iid(to_uuid(iid, what))
    raise InvalidArgumentError(f"{what} must be an interface, a uuid.UUID or a GUID string, not {type(iid).__name__}")


def to_clsid(clsid: object, what: str = "rclsid") -> uuid.UUID:
    """A CLSID from a ``uuid.UUID``, a ``"{...}"`` string, a ProgID or a registered class.

    :raises InvalidArgumentError: None, or not one of those (``E_INVALIDARG``)
    :raises COMError: a string that is neither a GUID nor a known ProgID (``CO_E_CLASSSTRING``)
    """
    required(clsid, what)
    if isinstance(clsid, uuid.UUID):
        return clsid
    if isinstance(clsid, str):
        text = clsid.strip()
        if text.startswith("{") or _is_guid(text):
            try:
                return uuid.UUID(text.strip("{}"))
            except ValueError:
                raise error(HRESULT.CO_E_CLASSSTRING, f"{clsid!r} is not a CLSID") from None
        try:
            return registry.clsid_from_progid(text)
        except ClassNotRegisteredError:
            raise error(HRESULT.CO_E_CLASSSTRING, f"no class is registered under ProgID {clsid!r}") from None
    if isinstance(clsid, type) and getattr(clsid, "__clsid__", None) is not None:
        value: uuid.UUID = clsid.__clsid__  # type: ignore[attr-defined]
        return value
    raise InvalidArgumentError(f"{what} must be a uuid.UUID, a GUID string or a ProgID, not {type(clsid).__name__}")


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


# -- COM reference counts on plain objects ---------------------------------------------------------------


def addref(obj: object) -> None:
    """``obj.AddRef()`` if the object counts its references (COM objects of the facade do)."""
    if isinstance(obj, (Proxy, type)):  # an async proxy's AddRef would be a remote coroutine; a class has none
        return
    fn = getattr(obj, "AddRef", None)
    if callable(fn):
        fn()


def release(obj: object) -> None:
    """``obj.Release()`` if the object counts its references."""
    if isinstance(obj, (Proxy, type)):
        return
    fn = getattr(obj, "Release", None)
    if callable(fn):
        fn()
