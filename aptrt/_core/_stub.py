"""Stubs: the home-apartment side of an exported object.

A stub holds the real object strongly while references from other apartments exist (live proxies).
Each proxy takes one reference when it is made and gives it back when it is released, explicitly or by
garbage collection. A release that comes from garbage collection is never done inside ``__del__``: it is
posted to the home apartment as a message, so finalizers never take a lock.

Threads: ``refs`` and ``ExportTable._stubs`` are guarded by ``ExportTable._lock``; ``obj`` is written
(to None) only under that lock too; ``disconnected`` is written once, False → True.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from ._exceptions import DisconnectedError, DisconnectReason
from ._interface import ClassInfo, class_info

if TYPE_CHECKING:
    from ._apartment import Apartment
    from ._context import Context


class Stub:
    """The exported side of one object in its home apartment."""

    __slots__ = (
        "obj",
        "key",
        "apartment",
        "context",
        "table",
        "info",
        "refs",
        "disconnected",
        "reason",
        "__weakref__",
    )

    def __init__(self, obj: Any, apartment: Apartment, table: ExportTable, context: Context) -> None:
        self.obj: Any = obj
        self.key = id(obj)
        self.apartment = apartment
        #: the context the object belongs to: the one its code ran in when it was first exported
        self.context = context
        self.table = table
        self.info: ClassInfo = class_info(type(obj))
        self.refs = 0
        self.disconnected = False
        self.reason = DisconnectReason.RELEASED

    def __repr__(self) -> str:
        state = f"disconnected ({self.reason.value})" if self.disconnected else f"refs={self.refs}"
        return f"<Stub {self.info.cls.__qualname__} in {self.apartment.name!r} {state}>"

    def addref(self) -> None:
        with self.table._lock:
            if self.disconnected:
                raise self.disconnected_error()
            self.refs += 1

    def release(self) -> None:
        """Give back one reference; the last one unexports the object (any thread, never a finalizer)."""
        table = self.table
        with table._lock:
            if self.disconnected:
                return
            self.refs -= 1
            if self.refs <= 0:
                table._drop(self, DisconnectReason.RELEASED)

    def disconnect(self, reason: DisconnectReason) -> None:
        """Cut every external reference: later calls through proxies fail with :class:`DisconnectedError`."""
        with self.table._lock:
            self.table._drop(self, reason)

    def live_object(self) -> Any:
        """The object, or raise :class:`DisconnectedError` if the stub let go of it (any thread)."""
        obj = self.obj
        if obj is None:
            raise self.disconnected_error()
        return obj

    def disconnected_error(self) -> DisconnectedError:
        return DisconnectedError(
            f"{self.info.cls.__qualname__} in apartment {self.apartment.name!r} is no longer connected: "
            f"{self.reason.value}",
            reason=self.reason,
        )


class ExportTable:
    """The stubs of one apartment, keyed by the identity of their objects."""

    def __init__(self, apartment: Apartment) -> None:
        self.apartment = apartment
        self._lock = threading.Lock()
        self._stubs: dict[int, Stub] = {}
        #: set once, when the apartment shuts down: nothing more is exported
        self._closed = False
        #: references dropped by garbage collection, given back by the next flush (deque: safe in __del__)
        self._pending: deque[Stub] = deque()
        #: a flush has been requested and not run yet (a hint: a lost nudge only delays the flush)
        self.nudged = False

    def export(self, obj: Any) -> Stub:
        """The stub of *obj*, made on first export (any thread of the home apartment)."""
        if self._pending:
            self.flush_releases()
        key = id(obj)
        with self._lock:
            stub = self._stubs.get(key)
            if stub is None or stub.obj is not obj:
                if self._closed:
                    raise DisconnectedError(
                        f"apartment {self.apartment.name!r} is shutting down", reason=DisconnectReason.SERVER_SHUTDOWN
                    )
                stub = self._stubs[key] = Stub(obj, self.apartment, self, self._context_for_new(obj))
            return stub

    def _context_for_new(self, obj: Any) -> Context:
        from ._context import context_var
        from ._threadstate import tls

        # the context the object was made in, else the one its first export runs in
        ctx = getattr(obj, "_aptrt_context", None) or tls.s.context or context_var.get()
        if ctx is None or ctx.apartment is not self.apartment:
            return self.apartment.default_context
        if ctx.state.value != "open":
            raise DisconnectedError(
                f"{ctx!r} is disconnecting; no new object joins it", reason=DisconnectReason.CONTEXT_DISCONNECTED
            )
        return ctx

    def release_later(self, stub: Stub) -> None:
        """Queue the release of one reference (from a finalizer: takes no lock)."""
        self._pending.append(stub)

    def flush_releases(self) -> None:
        """Give back every reference queued by :meth:`release_later` (any thread, not a finalizer)."""
        self.nudged = False
        pending = self._pending
        while pending:
            try:
                stub = pending.popleft()
            except IndexError:
                break
            stub.release()

    def lookup(self, obj: Any) -> Stub | None:
        stub = self._stubs.get(id(obj))
        return stub if stub is not None and stub.obj is obj else None

    def _drop(self, stub: Stub, reason: DisconnectReason) -> None:
        # caller holds self._lock
        if stub.disconnected:
            return
        stub.disconnected = True
        stub.reason = reason
        stub.obj = None
        if self._stubs.get(stub.key) is stub:
            del self._stubs[stub.key]

    def close(self, reason: DisconnectReason) -> None:
        """Disconnect every stub (the apartment shuts down); objects are released."""
        with self._lock:
            self._closed = True
            for stub in list(self._stubs.values()):
                self._drop(stub, reason)

    def __len__(self) -> int:
        return len(self._stubs)

    def stubs(self) -> list[Stub]:
        with self._lock:
            return list(self._stubs.values())
