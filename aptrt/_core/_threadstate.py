"""Per-thread and per-task state: which apartment a thread belongs to, and which call it is serving."""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._apartment import Apartment
    from ._call import Call
    from ._context import Context
    from ._port import Port
    from ._pump import PumpPort


class ThreadState:
    """What aptrt knows about one thread. Written only by the thread it describes."""

    __slots__ = ("apartment", "call", "context", "port", "pump")

    def __init__(self) -> None:
        #: the apartment this thread belongs to (None: a plain thread, an implicit MTA member while a runtime exists)
        self.apartment: Apartment | None = None
        #: the inbox of the event loop running on this thread, if aptrt knows that loop
        self.port: Port | None = None
        #: the call a sync method is serving right now on this thread (sync callees run inline, outside any task)
        self.call: Call | None = None
        #: the context sync code runs in right now on this thread (async tasks use ``_context.context_var``)
        self.context: Context | None = None
        #: the inbox of this thread's pumping STA (``aptrt.com``): served while the thread waits
        self.pump: PumpPort | None = None


class _Local(threading.local):
    """One :class:`ThreadState` per thread, as ``tls.s``.

    A ``threading.local`` attribute costs a per-thread dictionary lookup on every read and write; code
    that touches several fields (every call does) reads ``tls.s`` once and then uses plain slots.
    """

    s: ThreadState

    def __init__(self) -> None:  # runs once in each thread that touches ``tls``
        self.s = ThreadState()


tls = _Local()

#: The apartment an async task runs in when it differs from its thread's (neutral code run as a task)
apartment_var: ContextVar[Apartment | None] = ContextVar("aptrt_apartment", default=None)

#: The call an async callee task is serving (each task has its own copy of the context).
current_call_var: ContextVar[Call | None] = ContextVar("aptrt_current_call", default=None)


def current_call() -> Call | None:
    """The incoming call being served by the current thread or task, if any."""
    call = tls.s.call
    if call is not None:
        return call
    return current_call_var.get()
