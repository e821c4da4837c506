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
from ._exceptions import CallRejectedError, WrongThreadError
from ._flow import NoRoom
from ._marshal import is_plain, marshal_args, marshal_kwargs
from ._threadstate import current_call, tls
from ._validate import check_seconds

if TYPE_CHECKING:
    from ._apartment import Apartment
    from ._stub import Stub


def caller_deadline() -> float:
    """The caller's effective anyio deadline, on the monotonic clock (every loop's clock differs)."""
    port = tls.s.port
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
    return Call(fn, name, args, kwargs, stub, is_async, deadline, causality, caller, parent)


async def invoke(target: Apartment, call: Call) -> Any:
    """Send *call* to *target* and await its result in the caller's loop (a checkpoint)."""
    port = tls.s.port
    try:
        if port is None:
            return await _await_from_foreign_loop(call, target.submit)
        return await port.call(call, target.submit)
    except NoRoom:
        return await call_when_room(target, call)


async def call_when_room(target: Apartment, call: Call) -> Any:
    """*target*'s bounded inbox was full: wait for room (under the caller's deadline), then call."""
    bound = target.bound
    while True:
        if bound is not None:
            await await_call(Call(None, "room", (), None, None, False, INF, 0, None), bound.when_room)
        try:
            port = tls.s.port
            if port is None:
                return await _await_from_foreign_loop(call, target.submit)
            return await port.call(call, target.submit)
        except NoRoom:
            continue


async def retry_rejected(
    caller: Apartment, make_call: Callable[[], Call], target: Apartment, error: CallRejectedError
) -> Any:
    """The caller's retry policy (RetryRejectedCall): retry a rejected call after the delays it gives.
    *make_call* builds each new attempt (in the same causality chain as the first)."""
    policy = caller.retry_policy
    attempt = 1
    while True:
        delay = policy.next_delay(attempt, error) if policy is not None else None
        if delay is None:
            raise error
        await anyio.sleep(delay)
        try:
            return await invoke(target, make_call())
        except CallRejectedError as exc:
            error = exc
            attempt += 1


def retry_rejected_blocking(
    caller: Apartment, make_call: Callable[[], Call], target: Apartment, timeout: float | None
) -> Any:
    """The blocking twin of :func:`retry_rejected` (including the first attempt)."""
    attempt = 1
    while True:
        try:
            return invoke_blocking(target, make_call(), timeout)
        except CallRejectedError as exc:
            policy = caller.retry_policy
            delay = policy.next_delay(attempt, exc) if policy is not None else None
            if delay is None:
                raise
            time.sleep(delay)
            attempt += 1


async def await_call(call: Call, submit: Callable[[Call], None]) -> Any:
    """Hand *call* to *submit* (which arranges for ``call.deliver()`` on some thread) and await it."""
    port = tls.s.port
    if port is None:
        return await _await_from_foreign_loop(call, submit)
    return await port.call(call, submit)


def block_on_call(call: Call, submit: Callable[[Call], None]) -> Any:
    """The blocking twin of :func:`await_call` (a pumping STA serves its calls meanwhile)."""
    block_on_call_pumping(call, submit)
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
    if tls.s.port is not None:
        raise WrongThreadError(f"blocking call {what!r} from an event loop thread would stall the loop; await it")


def invoke_blocking(target: Apartment, call: Call, timeout: float | None) -> Any:
    """Send *call* to *target* and block this thread until the reply (plain threads, MTA workers)."""
    refuse_on_loop(call.name)
    seconds = check_seconds(timeout)
    timeout = None if seconds is None or seconds >= _thread.TIMEOUT_MAX else seconds  # inf: no limit
    lock = _thread.allocate_lock()
    lock.acquire()
    call.waiter = lock
    if timeout is not None:
        call.deadline = min(call.deadline, time.monotonic() + timeout)
    pump = tls.s.pump
    if pump is not None:  # a pumping STA serves incoming calls while it waits (COM's modal loop)
        return _invoke_pumping(pump, target, call, timeout)
    while True:
        try:
            target.submit(call)
            break
        except NoRoom:
            room = _thread.allocate_lock()
            room.acquire()
            bound = target.bound
            waiter = _lock_waiter(room)
            if bound is not None:
                bound.when_room(waiter)
            left = -1.0 if timeout is None else max(0.0, call.deadline - time.monotonic())
            if not room.acquire(timeout=left):
                waiter.abandoned = True  # a freed slot must go to someone still waiting
                raise TimeoutError(f"no room in {target.name!r}'s inbox for {call.name!r} within {timeout} s") from None
    if not lock.acquire(timeout=-1 if timeout is None else timeout):
        call.abandon()
        raise TimeoutError(f"{call.name!r} did not complete within {timeout} s")
    return call.result()


def _invoke_pumping(pump: Any, target: Apartment, call: Call, timeout: float | None) -> Any:
    call.reply_port = pump
    call.waiter = None
    target.submit(call)
    deadline = INF if timeout is None else time.monotonic() + timeout
    if not pump.pump_until(lambda: call.waiter is not None, deadline):
        call.abandon()
        raise TimeoutError(f"{call.name!r} did not complete within {timeout} s")
    return call.result()


def block_on_call_pumping(call: Call, submit: Callable[[Call], None], deadline: float = INF) -> bool:
    """Like :func:`block_on_call`, but a pumping STA serves calls while it waits; False on timeout."""
    pump = tls.s.pump
    if deadline - time.monotonic() >= _thread.TIMEOUT_MAX:
        deadline = INF  # longer than a lock can wait: no limit
    if pump is None:
        lock = _thread.allocate_lock()
        lock.acquire()
        call.waiter = lock
        submit(call)
        return lock.acquire(timeout=-1 if deadline == INF else max(0.0, deadline - time.monotonic()))
    call.reply_port = pump
    call.waiter = None
    submit(call)
    return bool(pump.pump_until(lambda: call.waiter is not None, deadline))


def _lock_waiter(lock: Any) -> Call:
    waiter = Call(None, "room", (), None, None, False, INF, 0, None)
    waiter.waiter = lock
    return waiter


def _release(lock: Any) -> None:
    try:
        lock.release()
    except RuntimeError:
        pass
