"""The caller's side of a call: build the envelope, queue it, wait for the reply."""

from __future__ import annotations

import _thread
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ._call import INF, Call, new_causality
from ._exceptions import WrongThreadError
from ._marshal import is_plain, marshal_args, marshal_kwargs
from ._threadstate import current_call, tls

if TYPE_CHECKING:
    from ._apartment import Apartment
    from ._stub import Stub


def caller_deadline() -> float:
    """The caller's effective anyio deadline, on the monotonic clock (every loop's clock differs)."""
    port = tls.port
    if port is not None:
        return port.caller_deadline()
    try:
        deadline = anyio.current_effective_deadline()
    except Exception:  # noqa: BLE001  # not inside a task of a running loop
        return INF
    if deadline == math.inf:
        return INF
    return time.monotonic() + (deadline - anyio.current_time())


def new_call(
    fn: Callable[..., Any] | None,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    stub: Stub | None,
    is_async: bool,
    caller: Apartment,
    *,
    target: Apartment | None = None,
    blocking: bool = False,
    deadline: float | None = None,
) -> Call:
    """An envelope for a call from *caller* to *target* (default: the stub's apartment)."""
    if target is None:
        assert stub is not None
        target = stub.apartment
    if not is_plain(args):
        args = marshal_args(args, caller, target)
    if kwargs:
        kwargs = marshal_kwargs(kwargs, caller, target)
    else:
        kwargs = None
    parent = current_call()
    causality = parent.causality if parent is not None else new_causality()
    if deadline is None:
        deadline = INF if blocking else caller_deadline()
    return Call(fn, name, args, kwargs, stub, is_async, deadline, causality, caller)


async def invoke(target: Apartment, call: Call) -> Any:
    """Send *call* to *target* and await its result in the caller's loop (a checkpoint)."""
    port = tls.port
    if port is None:
        return await _await_from_foreign_loop(call, target.submit)
    return await port.call(call, target.submit)


async def await_call(call: Call, submit: Callable[[Call], None]) -> Any:
    """Hand *call* to *submit* (which arranges for ``call.deliver()`` on some thread) and await it."""
    port = tls.port
    if port is None:
        return await _await_from_foreign_loop(call, submit)
    return await port.call(call, submit)


def block_on_call(call: Call, submit: Callable[[Call], None]) -> Any:
    """The blocking twin of :func:`await_call`."""
    lock = _thread.allocate_lock()
    lock.acquire()
    call.waiter = lock
    submit(call)
    lock.acquire()
    return call.result()


async def _await_from_foreign_loop(call: Call, submit: Callable[[Call], None]) -> Any:
    # An event loop aptrt does not serve (no inbox on this thread): wait for the reply in a worker thread.
    lock = _thread.allocate_lock()
    lock.acquire()
    call.waiter = lock
    submit(call)
    try:
        await anyio.to_thread.run_sync(lock.acquire, abandon_on_cancel=True)
    except BaseException:
        call.abandon()
        _release(lock)  # let the worker thread go
        raise
    return call.result()


def refuse_on_loop(what: str) -> None:
    """Raise :class:`WrongThreadError` on a thread that runs an event loop aptrt serves."""
    if tls.port is not None:
        raise WrongThreadError(f"blocking call {what!r} from an event loop thread would stall the loop; await it")


def invoke_blocking(target: Apartment, call: Call, timeout: float | None) -> Any:
    """Send *call* to *target* and block this thread until the reply (plain threads, MTA workers)."""
    refuse_on_loop(call.name)
    if timeout is not None and (math.isnan(timeout) or timeout < 0):
        raise ValueError(f"timeout must be a non-negative number of seconds or None, not {timeout!r}")
    lock = _thread.allocate_lock()
    lock.acquire()
    call.waiter = lock
    if timeout is not None:
        call.deadline = min(call.deadline, time.monotonic() + timeout)
    target.submit(call)
    if not lock.acquire(timeout=-1 if timeout is None else timeout):
        call.abandon()
        raise TimeoutError(f"{call.name!r} did not complete within {timeout} s")
    return call.result()


def _release(lock: Any) -> None:
    try:
        lock.release()
    except RuntimeError:
        pass
