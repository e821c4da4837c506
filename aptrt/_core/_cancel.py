"""What a running callee can ask about its call: cancelled? which causality chain?"""

from __future__ import annotations

from ._call import INF
from ._exceptions import CallCancelledError, DeadlineExceededError, DisconnectedError, DisconnectReason
from ._threadstate import current_call, tls


def check_cancelled() -> None:
    """Raise if the call being served here should stop: for sync callees, which cannot see cancel scopes.

    :raises CallCancelledError: the caller cancelled the call (``RPC_E_CALL_CANCELED``)
    :raises DeadlineExceededError: the caller's deadline has passed (a :class:`TimeoutError`; the caller's
        own scope reports it: ``move_on_after`` stays quiet, ``fail_after`` raises as usual)
    :raises DisconnectedError: the apartment is shutting down
    Outside a call it does nothing.
    """
    call = current_call()
    if call is None:
        return
    if call.abandoned:
        raise CallCancelledError(reason=f"the caller of {call.name!r} cancelled it")
    if call.cancel_reason is not None:
        raise CallCancelledError(reason=call.cancel_reason)
    if call.deadline != INF and call.expired():
        raise DeadlineExceededError(f"the deadline of {call.name!r} has passed")
    apartment = tls.s.apartment
    if apartment is not None and apartment.closing:
        raise DisconnectedError(
            f"apartment {apartment.name!r} is shutting down", reason=DisconnectReason.SERVER_SHUTDOWN
        )


def current_cancel_reason() -> str | None:
    """Why the call being served here was cancelled by someone other than its caller (for example
    ``"context disconnected"`` from ``Context.disconnect(cancel_outstanding=True)``), else None."""
    call = current_call()
    return None if call is None else call.cancel_reason


def current_causality() -> int | None:
    """The causality id of the call chain the current code serves (None outside any incoming call).

    Every call made from inside a call carries its caller's causality id, across apartments.
    """
    call = current_call()
    return None if call is None else call.causality
