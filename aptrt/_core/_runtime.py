"""The runtime: owns the MTA, the STAs it started, and (when entered from a loop) the main STA."""

from __future__ import annotations

import itertools
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self

import anyio
import sniffio
from anyio.abc import TaskGroup

from ._apartment import Apartment
from ._exceptions import ChangedModeError, NotInitializedError
from ._loophost import backend_args
from ._mta import MTA
from ._sta import STA
from ._threadstate import tls

# guarded by _active_lock: the runtimes that are open, oldest first
_active_lock = threading.Lock()
_active: list[Runtime] = []


class Runtime:
    """An apartment runtime.

    ``async with aptrt.Runtime() as rt:`` makes the current thread and its running loop (asyncio,
    uvloop or trio) the **main STA** and opens the MTA; leaving the block closes every apartment.
    ``with aptrt.Runtime() as rt:`` does the same for a plain program, without a main STA.

    :param mta_workers: the most worker threads the MTA may run (default: CPUs + 4, at most 32)
    :param backend: the default event loop of the STAs this runtime starts (``"asyncio"``,
        ``"uvloop"`` or ``"trio"``), and of the MTA's loop for async methods
    """

    def __init__(self, *, mta_workers: int | None = None, backend: str = "asyncio") -> None:
        backend_args(backend)  # validate early
        self.backend = backend
        self._mta_workers = mta_workers
        self._mta: MTA | None = None
        self._main: STA | None = None
        self._tg: TaskGroup | None = None
        self._stas: dict[STA, None] = {}  # insertion-ordered set; guarded by _lock
        self._lock = threading.Lock()
        self._names = itertools.count(1)
        self._state = "new"

    def __repr__(self) -> str:
        return f"<Runtime {self._state} main_sta={self._main is not None} stas={len(self._stas)}>"

    # -- properties ------------------------------------------------------------------------------------

    @property
    def mta(self) -> MTA:
        """The multithreaded apartment."""
        if self._mta is None:
            raise NotInitializedError("the runtime is not open")
        return self._mta

    @property
    def main_sta(self) -> STA | None:
        """The main STA (the loop that entered the runtime), or None for a runtime entered with ``with``."""
        return self._main

    @property
    def apartments(self) -> list[Apartment]:
        """Every open apartment: the main STA (if any), the STAs, the MTA."""
        with self._lock:
            stas: list[Apartment] = list(self._stas)
        main: list[Apartment] = [self._main] if self._main is not None and not self._main.closed else []
        return main + stas + ([self._mta] if self._mta is not None else [])

    # -- async entry: the current loop becomes the main STA --------------------------------------------

    async def __aenter__(self) -> Self:
        self._open()
        backend = sniffio.current_async_library()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._main = STA(self, "main", backend, main=True)
        await self._main._adopt(tg)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        main = self._main
        tg = self._tg
        assert main is not None and tg is not None
        try:
            main._cancel_adopted_tasks()
            with anyio.CancelScope(shield=True):
                await self._close_children()
            tg.cancel_scope.cancel()
        finally:
            try:
                suppressed = await tg.__aexit__(exc_type, exc, tb)
            finally:
                main._close_adopted()
                self._close_done()
        return suppressed

    async def _close_children(self) -> None:
        with self._lock:
            stas = list(self._stas)
        async with anyio.create_task_group() as tg:
            for sta in stas:
                tg.start_soon(sta.aclose)
        await self.mta.aclose()

    # -- sync entry: a plain program -------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            with self._lock:
                stas = list(self._stas)
            for sta in stas:
                sta.close_blocking()
            self.mta.close_blocking()
        finally:
            self._close_done()

    # -- STAs ------------------------------------------------------------------------------------------

    async def start_sta(self, name: str | None = None, *, backend: str | None = None) -> STA:
        """Start a single-threaded apartment on a new thread named ``aptrt-sta-<name>``.

        :param name: the apartment's name (default ``sta-<n>``)
        :param backend: ``"asyncio"``, ``"uvloop"`` (when installed) or ``"trio"``; default: the runtime's
        :raises NotSupportedError: uvloop was asked for but is not installed
        """
        sta = self._new_sta(name, backend)
        try:
            await sta._start()
        except BaseException:
            self._forget(sta)
            raise
        return sta

    def start_sta_blocking(self, name: str | None = None, *, backend: str | None = None) -> STA:
        """The blocking twin of :meth:`start_sta`, for plain threads."""
        sta = self._new_sta(name, backend)
        try:
            sta._start_blocking()
        except BaseException:
            self._forget(sta)
            raise
        return sta

    @asynccontextmanager
    async def open_sta(self, name: str | None = None, *, backend: str | None = None) -> AsyncIterator[STA]:
        """``async with rt.open_sta(...) as sta:``: an STA closed when the block ends."""
        sta = await self.start_sta(name, backend=backend)
        try:
            yield sta
        finally:
            await sta.aclose()

    def _new_sta(self, name: str | None, backend: str | None) -> STA:
        if self._state != "open":
            raise NotInitializedError("the runtime is not open")
        backend = backend or self.backend
        backend_args(backend)
        sta = STA(self, name or f"sta-{next(self._names)}", backend)
        with self._lock:
            self._stas[sta] = None
        return sta

    def _forget(self, sta: STA) -> None:
        with self._lock:
            self._stas.pop(sta, None)

    # -- bookkeeping -----------------------------------------------------------------------------------

    def _open(self) -> None:
        if self._state != "new":
            raise RuntimeError("a Runtime can be entered only once")
        if tls.apartment is not None:
            raise ChangedModeError(f"this thread already belongs to apartment {tls.apartment.name!r}")
        self._mta = MTA(self, max_workers=self._mta_workers, backend=self.backend)
        self._state = "open"
        with _active_lock:
            _active.append(self)

    def _close_done(self) -> None:
        self._state = "closed"
        with _active_lock:
            if self in _active:
                _active.remove(self)


def current_runtime() -> Runtime:
    """The runtime of the current thread's apartment, else the most recently opened runtime.

    :raises NotInitializedError: no runtime is open (``CO_E_NOTINITIALIZED``)
    """
    apartment = tls.apartment
    if apartment is not None:
        return apartment.runtime
    with _active_lock:
        if _active:
            return _active[-1]
    raise NotInitializedError("no aptrt runtime is open")


def current_apartment() -> Apartment:
    """The apartment of the current thread; a plain thread is in the MTA while a runtime is open
    (COM's implicit MTA).

    :raises NotInitializedError: the thread is in no apartment and no runtime is open
    """
    apartment = tls.apartment
    if apartment is not None:
        return apartment
    return current_runtime().mta


