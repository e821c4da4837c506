"""Calls started now and awaited later: :func:`begin` (COM's asynchronous calls, ``Begin_``/``Finish_``).

``await proxy.method(x)`` suspends the calling task until the reply arrives. To keep many calls in
flight from one task (a pipeline), start each with ``pending = aptrt.begin(proxy.method, x)`` and await
the handles later, typically oldest first: a reply that has already arrived is taken without
suspending the task, so a window of calls costs one task switch per batch of replies rather than one
per call.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Generic, ParamSpec, TypeVar

from ._call import REPLY, Call
from ._exceptions import CallCancelledError, InvalidArgumentError
from ._port import Port
from ._proxy import Proxy, finish_failed, start_call

P = ParamSpec("P")
T = TypeVar("T")


class PendingCall(Generic[T]):
    """A call started by :func:`begin`. ``await`` it (once) for the result or the error."""

    __slots__ = ("_awaited", "_call", "_kwargs", "_later", "_outcome", "_port")

    def __init__(
        self, call: Call | None = None, port: Port | None = None, kwargs: dict[str, Any] | None = None
    ) -> None:
        #: the queued call and the caller's inbox (see Port.begin)
        self._call = call
        self._port = port
        self._kwargs = kwargs
        self._awaited = False
        #: the whole call as a coroutine, run when awaited (rare paths; see start_call)
        self._later: Coroutine[Any, Any, T] | None = None
        #: a local object's sync method already ran: (value, error)
        self._outcome: tuple[Any, BaseException | None] | None = None

    def __repr__(self) -> str:
        call = self._call
        name = call.name if call is not None else "?"
        return f"<PendingCall {name!r} {'done' if self.done() else 'pending'}>"

    def done(self) -> bool:
        """Whether the outcome is here (awaiting it will not suspend)."""
        call = self._call
        if call is not None:
            return call.phase == REPLY
        return self._outcome is not None

    def cancel(self) -> None:
        """Abandon the call: it is dropped if it has not started, its scope is cancelled if it runs
        (async callees; sync ones see :func:`aptrt.check_cancelled`), and awaiting the handle raises
        :class:`CallCancelledError`, unless the reply had already arrived."""
        call = self._call
        if call is not None and not call.abandoned and call.phase != REPLY:
            call.abandon()
        if self._later is not None:
            self._later.close()
            self._later = None
            self._outcome = (None, _cancelled())

    def __await__(self) -> Generator[Any, None, T]:
        outcome = self._outcome
        if outcome is not None:
            value, error = outcome
            if error is not None:
                raise error
            return value  # type: ignore[no-any-return]
        later = self._later
        if later is not None:
            self._later = None
            return (yield from later.__await__())
        call, port = self._call, self._port
        if call is None or port is None or self._awaited:
            raise RuntimeError("a PendingCall can be awaited only once")
        self._awaited = True
        if call.abandoned:
            raise _cancelled()
        waiting = port.reply_later(call)
        if waiting is not None:
            try:
                yield from waiting.__await__()
            except BaseException:
                if not call.abandoned:
                    call.abandon()
                raise
        if call.error is not None:
            return (yield from finish_failed(call, port, self._kwargs).__await__())  # type: ignore[no-any-return]
        return call.result()  # type: ignore[no-any-return]


def _cancelled() -> BaseException:
    return CallCancelledError(reason="the call was cancelled with PendingCall.cancel()")


def begin(method: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> PendingCall[T]:
    """Start ``method(*args, **kwargs)`` now and return a handle to ``await`` for its result later.

    *method* is a proxy's method (``aptrt.begin(proxy.add, 1)``): the call is queued in the target
    apartment at once, under the caller's deadline and causality, exactly as ``await proxy.add(1)``
    would queue it; the reply waits in the handle until it is awaited. Call it from the task that will
    await it (an apartment's event loop). For a method of an object of this apartment (no proxy), a sync
    method runs now and an async one when the handle is awaited. On the rare paths where a call cannot
    be queued without waiting (a full inbox whose overflow is ``"wait"``, a rejection the caller's retry
    policy retries, a loop aptrt does not serve), the call is made when the handle is awaited.

    A handle that is never awaited still makes its call (its result is dropped); ``handle.cancel()``
    abandons it, and cancelling the task that awaits it abandons it too.

    :raises WrongThreadError, DisconnectedError, InvalidArgumentError: at once, as the proxy's own checks
        fail (wrong apartment, disconnected object, released proxy): the call was not queued. The
        callee's errors, and a local sync method's, are raised where the handle is awaited.
    """
    proxy = getattr(method, "__self__", None)
    if isinstance(proxy, Proxy):
        started = start_call(proxy, method.__name__, args, kwargs, True)
        if type(started) is tuple:
            return PendingCall(started[0], started[1], kwargs or None)
        pending: PendingCall[T] = PendingCall()
        pending._later = started
        return pending
    pending = PendingCall()
    if not callable(method):
        raise InvalidArgumentError(f"aptrt.begin() takes a method, not {type(method).__name__}")
    try:
        result = method(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - raised where the handle is awaited, as a proxy call's would be
        pending._outcome = (None, exc)
        return pending
    if inspect.iscoroutine(result):
        pending._later = result
    elif inspect.isawaitable(result):
        pending._later = _await(result)
    else:
        pending._outcome = (result, None)
    return pending


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable
