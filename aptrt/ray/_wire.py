"""What crosses a process boundary: message tags, object references, and errors that must unpickle.

A message batch is a list of tuples, the first item a tag:

``(CALL, id, oid, name, args, kwargs, remaining, causality, ctx)``
    call method *name* of the object exported under *oid* by the receiver (oid 0: the receiver's control
    object); *remaining* is the caller's deadline as seconds left (None: none), *ctx* the remote context
    the call runs in (None: the object's own)
``(RUN, id, fn, args, is_async, remaining, causality, ctx, counted)``
    run the function *fn* (pickled by Ray: importable functions by reference) in the receiver's apartment
``(REPLY, id, ok, value)``
    the outcome of call *id*: its value, or the exception it raised
``(CANCEL, id, reason)``
    the caller of *id* stopped waiting: cancel the callee's scope
``(RELEASE, oid, n)``
    give back *n* references to the object the receiver exported under *oid*
``(DIED, text)``
    the sender's apartment died: fail everything

Objects never cross by value: an object of the sender crosses as :class:`PeerRef` (the receiver makes a
proxy of it), an object of the receiver that comes back crosses as :class:`HomeRef` (the receiver finds the
object itself again).
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any

CALL = 0
RUN = 1
REPLY = 2
CANCEL = 3
RELEASE = 4
DIED = 5

#: the object id of each side's control object (contexts, statistics)
CONTROL = 0


class HomeRef:
    """An object the *receiver* exported earlier, coming back to it."""

    __slots__ = ("oid",)

    def __init__(self, oid: int) -> None:
        self.oid = oid

    def __reduce__(self) -> tuple[Any, ...]:
        return (HomeRef, (self.oid,))

    def __repr__(self) -> str:
        return f"HomeRef({self.oid})"


class PeerRef:
    """An object of the *sender*, exported under *oid*: the receiver makes a proxy of it. Carries the
    implementation class (by reference: it must be importable on both sides) and the interface."""

    __slots__ = ("oid", "cls", "interface")

    def __init__(self, oid: int, cls: type, interface: type) -> None:
        self.oid = oid
        self.cls = cls
        self.interface = interface

    def __reduce__(self) -> tuple[Any, ...]:
        return (PeerRef, (self.oid, self.cls, self.interface))

    def __repr__(self) -> str:
        return f"PeerRef({self.oid}, {self.cls.__qualname__})"


class RemoteError(Exception):
    """An exception raised in another process that could not be sent back as itself (its class does not
    pickle). Carries the original type's name and message; the remote traceback is in its notes."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.remote_message = message

    def __reduce__(self) -> tuple[Any, ...]:
        state = dict(self.__dict__)
        return (_rebuild_remote_error, (self.type_name, self.remote_message, state))


def _rebuild_remote_error(type_name: str, message: str, state: dict[str, Any]) -> RemoteError:
    exc = RemoteError(type_name, message)
    exc.__dict__.update(state)
    return exc


def _dumps(value: Any) -> bytes:
    from ray import cloudpickle

    return cloudpickle.dumps(value)  # type: ignore[no-untyped-call, no-any-return]


def sendable_error(exc: BaseException, where: str) -> BaseException:
    """*exc* ready to travel: the remote traceback added as a note, and replaced by a
    :class:`RemoteError` when it would not unpickle on the other side."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    note = f"remote traceback ({where}):\n" + "".join(lines).rstrip()
    try:
        exc.add_note(note)
    except (AttributeError, TypeError):  # an exception class that refuses attributes
        pass
    try:
        clone = pickle.loads(_dumps(exc))
    except Exception:  # noqa: BLE001 - anything that fails to round-trip is replaced
        clone = None
    if clone is None or type(clone) is not type(exc):
        replacement = RemoteError(type(exc).__qualname__, str(exc))
        replacement.add_note(note)
        return replacement
    return exc


def unsendable(value: Any) -> BaseException | None:
    """None if *value* pickles (the check costs one extra pickling: it runs only for values that are
    not plain), else the error to report instead of sending it."""
    try:
        _dumps(value)
    except Exception as exc:  # noqa: BLE001 - any pickling failure
        return TypeError(f"{type(value).__qualname__} value cannot cross to another process: {exc}")
    return None
