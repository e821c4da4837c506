"""The local stand-in for an object of another process.

A :class:`RemoteStub` plays a :class:`~aptrt._core._stub.Stub`'s part for proxies: each local proxy takes one
reference; when the last is given back, the references the other side handed out for it are released there
in one message. Its ``apartment`` is the :class:`~aptrt.ray.RemoteApartment` that stands for the other side,
so calls through its proxies go there.

Threads: ``refs`` and ``disconnected`` are guarded by ``_lock``; ``received`` is written on the endpoint's
thread only (it counts references the other side handed out, and is sent back with the release).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .._core._exceptions import DisconnectedError, DisconnectReason
from .._core._interface import ClassInfo, class_info
from ._wire import HomeRef

if TYPE_CHECKING:
    from ._remote import RemoteApartment


class RemoteStub:
    """One object exported by the other side under ``oid``, as this process references it."""

    __slots__ = ("oid", "apartment", "info", "refs", "received", "disconnected", "reason", "obj", "key", "_lock")

    def __init__(self, oid: int, cls: type, apartment: RemoteApartment) -> None:
        self.oid = oid
        self.apartment = apartment
        self.info: ClassInfo = class_info(cls)
        self.refs = 0
        #: references the other side handed out for this object (given back together when refs drop to 0)
        self.received = 0
        self.disconnected = False
        self.reason = DisconnectReason.RELEASED
        #: what a proxy marshaled back to the other side becomes (see ``aptrt._core._marshal.marshal``)
        self.obj: Any = HomeRef(oid)
        self.key = id(self)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = f"disconnected ({self.reason.value})" if self.disconnected else f"refs={self.refs}"
        return f"<RemoteStub {self.info.cls.__qualname__} #{self.oid} in {self.apartment.name!r} {state}>"

    @property
    def context(self) -> Any:
        return self.apartment.default_context

    def addref(self) -> None:
        with self._lock:
            if self.disconnected:
                raise self.disconnected_error()
            self.refs += 1

    def release(self) -> None:
        """Give back one local reference; the last one releases the object in the other process."""
        with self._lock:
            if self.disconnected:
                return
            self.refs -= 1
            if self.refs > 0:
                return
            self.disconnected = True
        self.apartment.endpoint.release_import(self)

    def disconnect(self, reason: DisconnectReason) -> None:
        """Cut every local proxy of the object (its apartment closed or died)."""
        with self._lock:
            if self.disconnected:
                return
            self.disconnected = True
            self.reason = reason

    def live_object(self) -> Any:
        """What this object is in the other process: a reference that finds the object itself there."""
        if self.disconnected:
            raise self.disconnected_error()
        return self.obj

    def disconnected_error(self) -> DisconnectedError:
        return DisconnectedError(
            f"{self.info.cls.__qualname__} in apartment {self.apartment.name!r} is no longer connected: "
            f"{self.reason.value}",
            reason=self.reason,
        )
