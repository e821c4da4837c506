"""Every exception aptrt raises. Each carries an HRESULT (signed 32-bit) in ``.hresult``.

Misuse errors (a proxy used from the wrong thread, a blocking call from a loop) also subclass
:class:`RuntimeError`; timeouts of deadlines raise the builtin :class:`TimeoutError`, as anyio does.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import ClassVar

from ._hresult import HRESULT, hresult_name


class COMError(Exception):
    """Base class of aptrt's errors: a failed HRESULT.

    :param message: what went wrong, in one sentence
    :param hresult: the code; defaults to the class's own code
    """

    default_hresult: ClassVar[int] = HRESULT.E_FAIL

    def __init__(self, message: str | None = None, *, hresult: int | None = None) -> None:
        code = int(self.default_hresult if hresult is None else hresult)
        # accept the unsigned spelling (0x80004005) and keep the signed value, as pywin32 does
        self.hresult: int = code - (1 << 32) if 0x80000000 <= code <= 0xFFFFFFFF else code
        self.message = message or hresult_name(self.hresult)
        super().__init__(self.message)

    @property
    def hresult_name(self) -> str:
        """The symbolic name of :attr:`hresult` (``"RPC_E_DISCONNECTED"``)."""
        return hresult_name(self.hresult)

    def __str__(self) -> str:
        return f"{self.message} [{self.hresult_name}]"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.message, self.hresult, dict(self.__dict__)))


def _rebuild(cls: type[COMError], message: str, hresult: int, state: dict[str, object]) -> COMError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


class DisconnectReason(enum.Enum):
    """Why a call found its target gone (carried by :class:`DisconnectedError`)."""

    #: the apartment that hosts the object shut down
    SERVER_SHUTDOWN = "server apartment shut down"
    #: the apartment that holds the proxy shut down
    CLIENT_SHUTDOWN = "client apartment shut down"
    #: the object was disconnected (``disconnect_object``/``CoDisconnectObject``)
    OBJECT_DISCONNECTED = "object disconnected"
    #: the object's context was disconnected (``CoDisconnectContext``)
    CONTEXT_DISCONNECTED = "context disconnected"
    #: every reference to the object was released
    RELEASED = "object released"
    #: the server apartment's event loop died (a callee raised KeyboardInterrupt or SystemExit, say)
    APARTMENT_DIED = "server apartment died"


class DisconnectedError(COMError):
    """The target of a call is gone: its apartment shut down, or it was disconnected.

    Raised by proxy calls and ``Apartment.run*`` when the object or apartment can no longer serve calls,
    and by every call still queued when its apartment closes. ``reason`` says which.
    """

    default_hresult = HRESULT.RPC_E_DISCONNECTED

    def __init__(
        self,
        message: str | None = None,
        *,
        reason: DisconnectReason = DisconnectReason.SERVER_SHUTDOWN,
        hresult: int | None = None,
    ) -> None:
        self.reason = reason
        super().__init__(message or reason.value, hresult=hresult)


class ObjectNotConnectedError(DisconnectedError):
    """Marshal data or a handle names an object that is no longer connected (``CO_E_OBJNOTCONNECTED``).

    Raised when a one-shot marshal stream is unmarshaled twice or a released table entry is used.
    """

    default_hresult = HRESULT.CO_E_OBJNOTCONNECTED


class ApartmentClosedError(DisconnectedError):
    """The apartment was closed by its owner before or while the call was made."""


class WrongThreadError(COMError, RuntimeError):
    """A proxy or apartment handle was used from a thread that does not belong to its apartment
    (``RPC_E_WRONG_THREAD``), or a blocking call was made from an apartment's event loop."""

    default_hresult = HRESULT.RPC_E_WRONG_THREAD


class NotInitializedError(COMError, RuntimeError):
    """No runtime or apartment is available on this thread (``CO_E_NOTINITIALIZED``)."""

    default_hresult = HRESULT.CO_E_NOTINITIALIZED


class ChangedModeError(COMError, RuntimeError):
    """The thread is already in an apartment of another kind (``RPC_E_CHANGED_MODE``)."""

    default_hresult = HRESULT.RPC_E_CHANGED_MODE


class WouldDeadlockError(COMError, RuntimeError):
    """The call would complete a wait cycle among apartments that cannot serve it, or a context
    would wait for the very call that disconnects it (``CONTEXT_E_WOULD_DEADLOCK``).

    ``cycle`` names the apartments of the cycle, in order, when one was detected.
    """

    default_hresult = HRESULT.CONTEXT_E_WOULD_DEADLOCK

    def __init__(self, message: str | None = None, *, cycle: Sequence[str] = (), hresult: int | None = None) -> None:
        self.cycle = tuple(cycle)
        super().__init__(message, hresult=hresult)


class NotSupportedError(COMError):
    """The operation is not supported here, e.g. disconnecting a default context (``CO_E_NOT_SUPPORTED``)."""

    default_hresult = HRESULT.CO_E_NOT_SUPPORTED


class ClassNotRegisteredError(COMError, LookupError):
    """No class is registered under the CLSID or ProgID (``REGDB_E_CLASSNOTREG``)."""

    default_hresult = HRESULT.REGDB_E_CLASSNOTREG


class NoInterfaceError(COMError, TypeError):
    """The object does not implement the requested interface (``E_NOINTERFACE``)."""

    default_hresult = HRESULT.E_NOINTERFACE


class InvalidArgumentError(COMError, ValueError):
    """An argument is invalid (``E_INVALIDARG``)."""

    default_hresult = HRESULT.E_INVALIDARG


class CallRejectedError(COMError):
    """The server apartment rejected the call (``RPC_E_CALL_REJECTED``)."""

    default_hresult = HRESULT.RPC_E_CALL_REJECTED


class RetryLaterError(CallRejectedError):
    """The server apartment is busy; retry later (``RPC_E_SERVERCALL_RETRYLATER``)."""

    default_hresult = HRESULT.RPC_E_SERVERCALL_RETRYLATER


class CallCancelledError(COMError):
    """The call was cancelled (``RPC_E_CALL_CANCELED``).

    A callee sees it from :func:`aptrt.check_cancelled` once its caller gave up; a caller sees it when
    the callee's scope was cancelled by something other than the caller (``reason`` says what).
    """

    default_hresult = HRESULT.RPC_E_CALL_CANCELED

    def __init__(self, message: str | None = None, *, reason: str = "", hresult: int | None = None) -> None:
        self.reason = reason
        super().__init__(message or (f"call cancelled: {reason}" if reason else None), hresult=hresult)


class DeadlineExceededError(TimeoutError):
    """The caller's deadline passed before the callee finished (or before it started).

    The caller rarely sees it: the caller's own cancel scope, whose deadline it is, takes over and
    cancels (``move_on_after``) or raises :class:`TimeoutError` (``fail_after``) as usual. Blocking callers
    with a ``timeout`` see it directly.
    """


class RPCTimeoutError(COMError, TimeoutError):
    """An operation bounded by a COM timeout did not finish in time (``RPC_E_TIMEOUT``)."""

    default_hresult = HRESULT.RPC_E_TIMEOUT
