"""Self-guarding objects for the MTA: COM's ``CThreaded`` (OwnThis/UnOwnThis) as a mixin."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])


class Guarded:
    """A reentrant lock per object, for objects that several MTA threads call at once.

    ``with self.owned():`` brackets access to the object's state (OwnThis/UnOwnThis); decorating a
    method with :func:`guarded` does the same for the whole method. Never hold it across an ``await``
    or a call to another apartment.
    """

    __aptrt_guard: threading.RLock

    def owned(self) -> threading.RLock:
        """The object's lock, as a context manager."""
        try:
            return self.__aptrt_guard
        except AttributeError:
            # first use: create it under a process-wide lock so two threads can't make two
            with _creation_lock:
                try:
                    return self.__aptrt_guard
                except AttributeError:
                    self.__aptrt_guard = threading.RLock()
                    return self.__aptrt_guard


_creation_lock = threading.Lock()


def guarded(method: F) -> F:
    """Run *method* holding its object's :meth:`Guarded.owned` lock (sync methods only)."""

    @functools.wraps(method)
    def wrapper(self: Guarded, *args: Any, **kwargs: Any) -> Any:
        with self.owned():
            return method(self, *args, **kwargs)

    return cast(F, wrapper)
