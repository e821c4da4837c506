"""The runtime: owns the MTA, the STAs it started, and (when entered from a loop) the main STA."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import sniffio
from anyio.abc import TaskGroup

from . import _activation
from ._apartment import Apartment
from ._exceptions import ChangedModeError, InvalidArgumentError, NotInitializedError
from ._factory import CLSCTX, REGCLS, ClassObjectTable
from ._interface import Interface, is_com_object
from ._invoke import refuse_on_loop
from ._loophost import LoopHost, backend_args
from ._marshaling import GlobalInterfaceTable
from ._mta import MTA
from ._neutral import NeutralApartment
from ._observe import Instrument
from ._reentrancy import WaitForGraph
from ._registry import registry
from ._sta import STA
from ._threadstate import apartment_var, tls
from ._validate import check_cookie, check_dword, check_int, check_optional_str
from ._watchdog import StallReport, Watchdog, check_watchdog_args

I = TypeVar("I", bound=Interface)

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
    :param watchdog: report an event loop (an STA's, the main STA's, the MTA's) that leaves a heartbeat
        unanswered this many seconds: a callee blocking its apartment's thread (default: no watchdog)
    :param watchdog_interval: seconds between heartbeats (default: a quarter of *watchdog*)
    :param on_stall: called with each :class:`StallReport` (default: a warning on the ``aptrt`` logger)
    """

    def __init__(
        self,
        *,
        mta_workers: int | None = None,
        backend: str = "asyncio",
        watchdog: float | None = None,
        watchdog_interval: float | None = None,
        on_stall: Callable[[StallReport], None] | None = None,
    ) -> None:
        _check_backend(backend)  # validate early
        if mta_workers is not None:
            check_int(mta_workers, "mta_workers (the MTA needs at least one worker)", low=1)
        check_watchdog_args(watchdog, watchdog_interval)
        self.backend = backend
        #: the watchdog (``Runtime(watchdog=seconds)``), else None
        self.watchdog = (
            Watchdog(self, watchdog, interval=watchdog_interval, on_stall=on_stall) if watchdog is not None else None
        )
        self._mta_workers = mta_workers
        self._mta: MTA | None = None
        self._neutral: NeutralApartment | None = None
        self._main: STA | None = None
        #: host STAs started for Apartment-model (``"host"``) and legacy (``"main-host"``) classes
        self._hosts: dict[str, STA] = {}
        #: CoRegisterClassObject registrations
        self.class_objects = ClassObjectTable()
        #: the global interface table
        self.git = GlobalInterfaceTable()
        #: call hooks (see add_instrument); shared by every apartment of the runtime
        self.instruments: list[Instrument] = []
        #: which causality chain waits at which reentrancy gate (deadlock detection, aptrt.dump)
        self.wait_for = WaitForGraph()
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
    def neutral(self) -> NeutralApartment:
        """The neutral apartment (objects that run on their caller's thread)."""
        if self._neutral is None:
            raise NotInitializedError("the runtime is not open")
        return self._neutral

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
        rest: list[Apartment] = [a for a in (self._mta, self._neutral) if a is not None and not a.closing]
        return main + stas + rest

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
                try:
                    suppressed = await tg.__aexit__(exc_type, exc, tb)
                except BaseExceptionGroup as group:
                    # the body's own exception, wrapped by the internal task group: give it back as it was
                    if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
                        raise exc from None
                    raise
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
        self.neutral.close_now()
        self.git.clear()

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
            self.neutral.close_now()
            self.git.clear()
        finally:
            self._close_done()

    # -- STAs ------------------------------------------------------------------------------------------

    async def start_sta(self, name: str | None = None, *, backend: str | None = None, host: Any = None) -> STA:
        """Start a single-threaded apartment on a new thread named ``aptrt-sta-<name>``.

        :param name: the apartment's name (default ``sta-<n>``)
        :param backend: ``"asyncio"``, ``"uvloop"`` (when installed) or ``"trio"``; default: the runtime's
        :param host: where the apartment runs, when not in this process: ``aptrt.ray.RayHost(...)`` starts
            it in a Ray actor and returns an ``aptrt.ray.RemoteApartment`` (default: here)
        :raises NotSupportedError: uvloop was asked for but is not installed
        :raises InvalidArgumentError: *name* is not a str, *backend* names no event loop, or *host* is not
            a host (``E_INVALIDARG``)
        """
        if host is not None:
            name, backend = self._remote_args(name, backend, host)
            started: STA = await host.start(self, name, backend)
            return started
        sta = self._new_sta(name, backend)
        try:
            await sta._start()
        except BaseException:
            self._forget(sta)
            raise
        return sta

    def start_sta_blocking(self, name: str | None = None, *, backend: str | None = None, host: Any = None) -> STA:
        """The blocking twin of :meth:`start_sta`, for plain threads.

        :raises WrongThreadError: called from an event loop (it would block it; await start_sta instead)
        """
        refuse_on_loop("start_sta_blocking")
        if host is not None:
            name, backend = self._remote_args(name, backend, host)
            started: STA = host.start_blocking(self, name, backend)
            return started
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

    def _remote_args(self, name: str | None, backend: str | None, host: Any) -> tuple[str, str]:
        if not callable(getattr(host, "start", None)) or not callable(getattr(host, "start_blocking", None)):
            raise InvalidArgumentError(f"host must be a host such as aptrt.ray.RayHost(), not {host!r}")
        check_optional_str(name, "name")
        backend = self.backend if backend is None else _check_backend(backend)
        if self._state != "open":
            raise NotInitializedError("the runtime is not open")
        return name or f"sta-{next(self._names)}", backend

    def _add_sta(self, sta: STA) -> None:
        """Count *sta* (made elsewhere: a remote apartment) among this runtime's STAs, closed with it."""
        with self._lock:
            self._stas[sta] = None

    def _new_sta(self, name: str | None, backend: str | None, *, lock: bool = True) -> STA:
        check_optional_str(name, "name")
        backend = self.backend if backend is None else _check_backend(backend)
        if self._state != "open":
            raise NotInitializedError("the runtime is not open")
        sta = STA(self, name or f"sta-{next(self._names)}", backend)
        if lock:
            with self._lock:
                self._stas[sta] = None
        else:
            self._stas[sta] = None
        return sta

    def _forget(self, sta: STA) -> None:
        with self._lock:
            self._stas.pop(sta, None)

    # -- instruments -----------------------------------------------------------------------------------

    def add_instrument(self, instrument: Instrument) -> None:
        """Call ``instrument.call_started(event)`` / ``call_finished(event, error)`` around every call that
        runs in this runtime's apartments, on the apartment's thread (trio-style instruments)."""
        self.instruments.append(instrument)

    def remove_instrument(self, instrument: Instrument) -> None:
        self.instruments.remove(instrument)

    # -- activation ------------------------------------------------------------------------------------

    def _caller_apartment(self) -> Apartment:
        if self._state != "open":
            raise NotInitializedError("the runtime is not open")
        current = tls.s.apartment
        return current if current is not None else self.mta

    async def create_instance(
        self,
        clsid: uuid.UUID | str | type,
        interface: type[I] | None = None,
        *,
        context: CLSCTX = CLSCTX.ALL,
    ) -> Any:
        """CoCreateInstance: create an object of a registered class (by CLSID, ProgID or class) where its
        threading model says, and return it for the caller's apartment: the object itself when it lives
        here, else a proxy for *interface* (default: the class's first interface).

        :raises ClassNotRegisteredError: no such class (``REGDB_E_CLASSNOTREG``)
        :raises NoInterfaceError: the object does not implement *interface*
        """
        return await _activation.create_instance(self, clsid, interface, context)

    def create_instance_blocking(
        self, clsid: uuid.UUID | str | type, interface: type[I] | None = None, *, context: CLSCTX = CLSCTX.ALL
    ) -> Any:
        """The blocking twin of :meth:`create_instance`, for plain threads."""
        return _activation.create_instance_blocking(self, clsid, interface, context)

    async def get_class_object(self, clsid: uuid.UUID | str | type, *, context: CLSCTX = CLSCTX.ALL) -> Any:
        """CoGetClassObject: the class object (an ``IClassFactory``) for a class, for the caller's apartment."""
        return await _activation.get_class_object(self, clsid, context)

    def register_class_object(
        self,
        clsid: uuid.UUID | str | type,
        factory: Any,
        *,
        context: CLSCTX = CLSCTX.INPROC_SERVER,
        flags: REGCLS = REGCLS.MULTIPLEUSE,
    ) -> int:
        """CoRegisterClassObject: make *factory* (an ``IClassFactory`` object, or a callable) the class
        object of *clsid* for the current apartment (in-process) or every apartment (``LOCAL_SERVER``).
        Objects it makes live in this apartment. Returns the cookie for :meth:`revoke_class_object`.

        :raises InvalidArgumentError: *factory* is neither an ``IClassFactory`` nor a callable, or
            *context*/*flags* are not ints (``E_INVALIDARG``)
        """
        from ._context import current_context

        if factory is None or not (
            callable(factory) or is_com_object(factory) or callable(getattr(factory, "CreateInstance", None))
        ):
            raise InvalidArgumentError(f"the class object must be an IClassFactory or a callable, not {factory!r}")
        context = CLSCTX(check_dword(context, "context"))
        flags = REGCLS(check_dword(flags, "flags"))
        apartment = self._caller_apartment()
        clsid = registry.resolve(clsid) if not isinstance(clsid, uuid.UUID) else clsid
        owner = current_context()
        return self.class_objects.register(
            clsid,
            _activation.as_class_object(factory),
            apartment,
            context,
            flags,
            None if owner.default or owner.apartment is not apartment else owner,
        )

    def revoke_class_object(self, cookie: int) -> None:
        """CoRevokeClassObject (from the apartment that registered it): ``CO_E_OBJNOTREG`` for an unknown
        cookie, ``E_INVALIDARG`` for one that is not an int."""
        self.class_objects.revoke(check_cookie(cookie), self._caller_apartment())

    def resume_class_objects(self) -> None:
        """CoResumeClassObjects: registrations made with ``REGCLS.SUSPENDED`` become visible."""
        self.class_objects.resume()

    async def _host_sta(self, role: str) -> STA:
        host = self._hosts.get(role)
        if host is None:
            with self._lock:
                host = self._hosts.get(role)
                if host is None:
                    host = self._hosts[role] = self._new_sta(role, None, lock=False)
                    starting = True
                else:
                    starting = False
            if starting:
                await host._start()
        await host._started_event()
        return host

    def _host_sta_blocking(self, role: str) -> STA:
        with self._lock:
            host = self._hosts.get(role)
            if host is None:
                host = self._hosts[role] = self._new_sta(role, None, lock=False)
                host._start_blocking()
        host._wait_started()
        return host

    # -- bookkeeping -----------------------------------------------------------------------------------

    def _open(self) -> None:
        if self._state != "new":
            raise RuntimeError("a Runtime can be entered only once")
        if tls.s.apartment is not None:
            raise ChangedModeError(f"this thread already belongs to apartment {tls.s.apartment.name!r}")
        self._mta = MTA(self, max_workers=self._mta_workers, backend=self.backend)
        self._neutral = NeutralApartment(self)
        self._state = "open"
        with _active_lock:
            _active.append(self)
        if self.watchdog is not None:
            self.watchdog.start()

    def _loop_hosts(self) -> list[LoopHost]:
        """The event loops serving this runtime's apartments now (for the watchdog)."""
        with self._lock:
            stas = list(self._stas)
        if self._main is not None:
            stas.insert(0, self._main)
        hosts = [sta._host for sta in stas if not sta.closing]
        mta_loop = self._mta._loop if self._mta is not None else None
        if mta_loop is not None:
            hosts.append(mta_loop)
        return [host for host in hosts if host.port is not None and host.port.backend != "pump"]

    def _close_done(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        self._state = "closed"
        with _active_lock:
            if self in _active:
                _active.remove(self)


def _check_backend(backend: object) -> str:
    """*backend* if it names an event loop aptrt runs (``InvalidArgumentError`` otherwise)."""
    if not isinstance(backend, str):
        raise InvalidArgumentError(f"backend must be a str, not {type(backend).__name__}")
    try:
        backend_args(backend)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    return backend


def all_runtimes() -> list[Runtime]:
    """Every open runtime of the process, oldest first."""
    with _active_lock:
        return list(_active)


def current_runtime() -> Runtime:
    """The runtime of the current thread's apartment, else the most recently opened runtime.

    :raises NotInitializedError: no runtime is open (``CO_E_NOTINITIALIZED``)
    """
    apartment = tls.s.apartment
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
    apartment = apartment_var.get() or tls.s.apartment
    if apartment is not None:
        return apartment
    return current_runtime().mta
