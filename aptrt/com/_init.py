"""Per-thread initialisation as COM counts it, and the process-wide runtime of the facade.

``CoInitializeEx`` is counted per thread: the first call returns ``S_OK``, a repeat with the same model
``S_FALSE`` (balanced by its own ``CoUninitialize``), a repeat with the other model raises
``RPC_E_CHANGED_MODE`` and is not counted. The first call of a thread makes it a pumping STA
(:class:`~aptrt._core._pump.PumpSTA`, the first of them the *main* STA) or joins it to the MTA; the
last balancing ``CoUninitialize`` tears the apartment down.

The facade's :class:`aptrt.Runtime` is opened at the first ``CoInitializeEx``/``CoIncrementMTAUsage`` of
the process and closed when the last initialised thread and the last MTA usage cookie are gone. In COM
terms the MTA *exists* while a thread is in it or a ``CoIncrementMTAUsage`` cookie is held; a thread
that never initialised COM is then an implicit member of it (``APTTYPEQUALIFIER_IMPLICIT_MTA``).

Threads: :data:`state` is guarded by ``state.lock`` (any thread initialises); :data:`tl` is per thread.
Teardown hooks registered by the other modules of the facade run on the thread that tears down.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from .._core._apartment import Apartment, ApartmentKind
from .._core._call import new_causality
from .._core._exceptions import ChangedModeError, DisconnectReason, InvalidArgumentError, NotInitializedError
from .._core._pump import PumpSTA
from .._core._runtime import Runtime
from .._core._threadstate import tls
from .._core._validate import check_cookie
from ._constants import (
    APTTYPE_MAINSTA,
    APTTYPE_MTA,
    APTTYPE_NA,
    APTTYPE_STA,
    APTTYPEQUALIFIER_IMPLICIT_MTA,
    APTTYPEQUALIFIER_NONE,
    COINIT_APARTMENTTHREADED,
    COINIT_MULTITHREADED,
    S_FALSE,
    S_OK,
)
from ._wait import attach

logger = logging.getLogger("aptrt.com")

_KNOWN_COINIT = 0xF


class _ThreadInit(threading.local):
    #: CoInitializeEx calls not yet balanced by CoUninitialize on this thread
    inits: int = 0
    #: COINIT_APARTMENTTHREADED or COINIT_MULTITHREADED while inits > 0
    mode: int = COINIT_MULTITHREADED
    #: the apartment this thread's first CoInitializeEx made or joined (None: it was already in one)
    owned: Apartment | None = None
    #: a host STA thread of the facade (not counted among the user's threads)
    host: bool = False
    #: this thread's logical thread id (causality) for calls it starts outside any incoming call
    causality: int = 0


#: written only by the thread it describes
tl = _ThreadInit()


class _HostThread:
    """A thread the facade starts to host objects (COM's host STA): an STA that pumps until stopped."""

    def __init__(self, role: str, main: bool) -> None:
        self.role = role
        self.main = main
        self.sta: PumpSTA | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._main, name=f"aptrt-sta-{role}", daemon=True)

    def start(self) -> PumpSTA:
        self.thread.start()
        self._ready.wait()
        if self.error is not None:
            raise self.error
        assert self.sta is not None
        return self.sta

    def _main(self) -> None:
        tl.host = True
        try:
            _initialize(COINIT_APARTMENTTHREADED, host_main=self.main)
            self.sta = tls.s.apartment  # type: ignore[assignment]
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            pump = tls.s.pump
            assert pump is not None
            pump.pump_until(self._stop.is_set)
        finally:
            CoUninitialize()

    def stop(self) -> None:
        self._stop.set()
        sta = self.sta
        if sta is not None:
            sta.port._bell.set()  # wake its pump (the bell is the PumpPort's doorbell)

    def join(self) -> None:
        if self.thread is not threading.current_thread():
            self.thread.join()


class _State:
    """The facade's process-wide bookkeeping (guarded by ``lock``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.runtime: Runtime | None = None
        #: the first STA while it lives (APTTYPE_MAINSTA)
        self.main_sta: PumpSTA | None = None
        #: user threads initialised through the facade (host threads excluded)
        self.threads = 0
        #: threads in the MTA through CoInitializeEx(COINIT_MULTITHREADED)
        self.mta_threads = 0
        #: CoIncrementMTAUsage cookies
        self.cookies: set[int] = set()
        #: host STAs started for activation, by role ("host", "main-host")
        self.hosts: dict[str, _HostThread] = {}
        self.closing = False
        self.names = itertools.count(1)
        #: per-runtime objects of the other modules (the GIT, ...), dropped when the runtime closes
        self.extras: dict[str, Any] = {}

    def mta_exists(self) -> bool:
        return self.mta_threads > 0 or bool(self.cookies)


state = _State()
_cookie_ids = itertools.count(1)

#: fn(apartment): the apartment is torn down (its last CoUninitialize, or the MTA's last user left)
_teardown_hooks: list[Callable[[Apartment], None]] = []
#: fn(): the runtime is about to close
_close_hooks: list[Callable[[], None]] = []
#: fn(): give back references dropped by garbage collection (run at every facade entry point)
_flush_hooks: list[Callable[[], None]] = []


def on_teardown(fn: Callable[[Apartment], None]) -> Callable[[Apartment], None]:
    _teardown_hooks.append(fn)
    return fn


def on_close(fn: Callable[[], None]) -> Callable[[], None]:
    _close_hooks.append(fn)
    return fn


def on_flush(fn: Callable[[], None]) -> Callable[[], None]:
    _flush_hooks.append(fn)
    return fn


def flush() -> None:
    for fn in _flush_hooks:
        fn()


# -- where the caller is -------------------------------------------------------------------------------


def current_apartment_or_none() -> Apartment | None:
    """The apartment of this thread: its own, else the MTA while one exists (implicit MTA), else None."""
    apartment = tls.s.apartment
    if apartment is not None:
        return apartment
    runtime = state.runtime
    if runtime is not None and state.mta_exists() and not state.closing:
        return runtime.mta
    return None


def require_apartment() -> Apartment:
    """:func:`current_apartment_or_none`, or ``CO_E_NOTINITIALIZED``."""
    apartment = current_apartment_or_none()
    if apartment is None:
        raise NotInitializedError("COM is not initialized on this thread (call CoInitializeEx) and there is no MTA")
    return apartment


def thread_causality() -> int:
    """This thread's logical thread id, for the calls it starts outside any incoming call."""
    if not tl.causality:
        tl.causality = new_causality()
    return tl.causality


def _mode_of(apartment: Apartment) -> int:
    if apartment.kind in (ApartmentKind.STA, ApartmentKind.MAIN_STA):
        return COINIT_APARTMENTTHREADED
    return COINIT_MULTITHREADED


# -- CoInitializeEx / CoUninitialize -------------------------------------------------------------------


def CoInitializeEx(pvReserved: object = None, dwCoInit: int = COINIT_MULTITHREADED) -> int:
    """Initialise COM on this thread: ``COINIT_APARTMENTTHREADED`` makes it a new STA (the first one is
    the main STA), ``COINIT_MULTITHREADED`` joins the MTA.

    :return: ``S_OK`` for the first call, ``S_FALSE`` for a repeat with the same model (balance it with
        its own :func:`CoUninitialize`)
    :raises ChangedModeError: the thread is already initialised with the other model (``RPC_E_CHANGED_MODE``;
        not counted, so not to be balanced)
    :raises InvalidArgumentError: unknown flags (``E_INVALIDARG``)
    """
    if isinstance(dwCoInit, bool) or not isinstance(dwCoInit, int) or dwCoInit & ~_KNOWN_COINIT:
        raise InvalidArgumentError(f"invalid COINIT flags {dwCoInit!r}")
    return _initialize(COINIT_APARTMENTTHREADED if dwCoInit & COINIT_APARTMENTTHREADED else COINIT_MULTITHREADED)


def CoInitialize(pvReserved: object = None) -> int:
    """``CoInitializeEx(None, COINIT_APARTMENTTHREADED)``."""
    return _initialize(COINIT_APARTMENTTHREADED)


def _initialize(mode: int, *, host_main: bool = False) -> int:
    if tl.inits:
        if tl.mode != mode:
            raise ChangedModeError(f"this thread is already initialised as {_mode_name(tl.mode)}")
        tl.inits += 1
        return S_FALSE
    current = tls.s.apartment
    if current is not None:
        # a thread aptrt already put in an apartment (a worker of the MTA, an STA's loop): it joins that one
        if _mode_of(current) != mode:
            raise ChangedModeError(
                f"this thread belongs to apartment {current.name!r} ({_mode_name(_mode_of(current))})"
            )
        tl.inits, tl.mode, tl.owned = 1, mode, None
        return S_FALSE
    runtime = _open_runtime(count_thread=not tl.host)
    try:
        if mode == COINIT_APARTMENTTHREADED:
            apartment: Apartment = _new_sta(runtime, host_main=host_main)
        else:
            with state.lock:
                state.mta_threads += 1
            apartment = runtime.mta
            tls.s.apartment = apartment
    except BaseException:
        with state.lock:
            if not tl.host:
                state.threads -= 1
        _maybe_close()
        raise
    tl.inits, tl.mode, tl.owned = 1, mode, apartment
    return S_OK


def _open_runtime(*, count_thread: bool) -> Runtime:
    with state.lock:
        while state.closing:
            state.changed.wait()
        runtime = state.runtime
        if runtime is None:
            runtime = Runtime()
            saved = tls.s.apartment
            tls.s.apartment = None  # a Runtime refuses to open on a thread of another runtime's apartment
            try:
                runtime.__enter__()
            finally:
                tls.s.apartment = saved
            state.runtime = runtime
        if count_thread:
            state.threads += 1
        return runtime


def _new_sta(runtime: Runtime, *, host_main: bool) -> PumpSTA:
    with state.lock:
        main = state.main_sta is None and (not tl.host or host_main)
        name = "main-sta" if main else f"sta-{next(state.names)}"
        sta = PumpSTA(runtime, name, main=main)
        if main:
            state.main_sta = sta
            runtime._main = sta
        else:
            with runtime._lock:
                runtime._stas[sta] = None
    attach(sta)
    return sta


def CoUninitialize() -> None:
    """Balance one :func:`CoInitializeEx`/:func:`CoInitialize`. The last one tears the thread's apartment
    down: its class registrations are revoked, the proxies it holds are released and its objects are
    disconnected (an STA); the MTA goes when its last thread and usage cookie have gone. Without a
    matching initialisation it does nothing, as in COM."""
    flush()
    if not tl.inits:
        return
    tl.inits -= 1
    if tl.inits:
        return
    apartment, tl.owned = tl.owned, None
    if apartment is None:  # the thread was in an apartment before: leave it as it was
        return
    runtime = apartment.runtime
    if isinstance(apartment, PumpSTA):
        teardown(apartment)
        apartment.close_here()
        with state.lock:
            if state.main_sta is apartment:
                state.main_sta = None
                runtime._main = None
    else:
        tls.s.apartment = None
        with state.lock:
            state.mta_threads -= 1
            gone = not state.mta_exists()
        if gone:
            teardown_mta(runtime)
    if not tl.host:
        with state.lock:
            state.threads -= 1
        _maybe_close()


def _mode_name(mode: int) -> str:
    return "an STA (COINIT_APARTMENTTHREADED)" if mode == COINIT_APARTMENTTHREADED else "the MTA (COINIT_MULTITHREADED)"


# -- teardown ------------------------------------------------------------------------------------------


def teardown(apartment: Apartment) -> None:
    """Run the facade's teardown hooks for *apartment* (its proxies, stubs, registrations, filter)."""
    for hook in _teardown_hooks:
        try:
            hook(apartment)
        except Exception:
            logger.exception("aptrt.com: teardown of %r failed in %r", apartment.name, hook)


def teardown_mta(runtime: Runtime) -> None:
    """The MTA's last thread and cookie are gone: in COM the MTA is destroyed. aptrt's MTA object lives on
    (the runtime owns it), so its COM state is torn down instead: proxies, stubs, registrations."""
    mta = runtime.mta
    teardown(mta)
    mta._release_imports()  # the proxies it holds, and its class registrations
    for stub in mta.exports.stubs():
        stub.disconnect(DisconnectReason.SERVER_SHUTDOWN)


def _maybe_close() -> None:
    with state.lock:
        runtime = state.runtime
        if runtime is None or state.closing or state.threads or state.mta_exists():
            return
        state.closing = True
        hosts = list(state.hosts.values())
        state.hosts.clear()
    try:
        for host in hosts:
            host.stop()
        for host in hosts:
            host.join()
        # what no thread tears down: the MTA's objects made for STAs (Free classes) and the neutral apartment's
        teardown_mta(runtime)
        teardown(runtime.neutral)
        for hook in _close_hooks:
            try:
                hook()
            except Exception:
                logger.exception("aptrt.com: closing hook %r failed", hook)
        saved = tls.s.apartment
        tls.s.apartment = None
        try:
            runtime.__exit__(None, None, None)
        finally:
            tls.s.apartment = saved
    finally:
        with state.lock:
            state.runtime = None
            state.main_sta = None
            state.extras.clear()
            state.closing = False
            state.changed.notify_all()


def host_sta(role: str) -> PumpSTA:
    """The facade's host STA for *role* (``"host"``: Apartment-model objects created from the MTA;
    ``"main-host"``: legacy objects when there is no main STA), started on first use."""
    with state.lock:
        host = state.hosts.get(role)
        if host is None:
            host = state.hosts[role] = _HostThread(role, main=role == "main-host")
            starting = True
        else:
            starting = False
    if starting:
        try:
            return host.start()
        except BaseException:
            with state.lock:
                state.hosts.pop(role, None)
            raise
    host._ready.wait()
    if host.sta is None:
        raise NotInitializedError(f"the host apartment {role!r} could not start") from host.error
    return host.sta


# -- CoGetApartmentType, MTA usage ----------------------------------------------------------------------


def CoGetApartmentType() -> tuple[int, int]:
    """The current thread's apartment type and qualifier (``APTTYPE_*``, ``APTTYPEQUALIFIER_*``).

    A thread that never initialised COM while an MTA exists is ``(APTTYPE_MTA,
    APTTYPEQUALIFIER_IMPLICIT_MTA)``.

    :raises NotInitializedError: the thread is in no apartment and there is no MTA (``CO_E_NOTINITIALIZED``)
    """
    flush()
    apartment = tls.s.apartment
    if apartment is None:
        if current_apartment_or_none() is not None:
            return APTTYPE_MTA, APTTYPEQUALIFIER_IMPLICIT_MTA
        raise NotInitializedError("COM is not initialized on this thread and there is no MTA")
    kind = apartment.kind
    if kind is ApartmentKind.MAIN_STA:
        return APTTYPE_MAINSTA, APTTYPEQUALIFIER_NONE
    if kind is ApartmentKind.STA:
        return APTTYPE_STA, APTTYPEQUALIFIER_NONE
    if kind is ApartmentKind.MTA:
        return APTTYPE_MTA, APTTYPEQUALIFIER_NONE
    return APTTYPE_NA, APTTYPEQUALIFIER_NONE


def CoIncrementMTAUsage() -> int:
    """Keep the MTA alive (creating it if needed) until :func:`CoDecrementMTAUsage` of the returned cookie.

    The calling thread's own apartment does not change; an uninitialised thread becomes an implicit
    member of the MTA.
    """
    flush()
    _open_runtime(count_thread=False)
    cookie = next(_cookie_ids)
    with state.lock:
        state.cookies.add(cookie)
    return cookie


def CoDecrementMTAUsage(cookie: int) -> int:
    """Give back a :func:`CoIncrementMTAUsage` cookie; the MTA goes with the last of its users.

    :raises InvalidArgumentError: not a live cookie (``E_INVALIDARG``)
    """
    flush()
    check_cookie(cookie)
    with state.lock:
        if cookie not in state.cookies:
            raise InvalidArgumentError(f"{cookie!r} is not a live MTA usage cookie")
        state.cookies.discard(cookie)
        gone = not state.mta_exists()
        runtime = state.runtime
    if gone and runtime is not None:
        teardown_mta(runtime)
    _maybe_close()
    return S_OK


# -- introspection (tests, aptrt.dump users) ----------------------------------------------------------


def facade_state() -> dict[str, Any]:
    """A snapshot of the facade's process-wide state (for tests and diagnostics)."""
    with state.lock:
        return {
            "runtime_open": state.runtime is not None,
            "threads": state.threads,
            "mta_threads": state.mta_threads,
            "cookies": len(state.cookies),
            "hosts": sorted(state.hosts),
            "main_sta": state.main_sta.name if state.main_sta is not None else None,
        }


def force_reset() -> None:
    """Close the facade's runtime whatever the counts say (tests: after a test that leaked an init).

    Only this thread's own initialisation is undone; other threads' thread-local counts are not."""
    while tl.inits:
        CoUninitialize()
    with state.lock:
        state.threads = 0
        state.mta_threads = 0
        state.cookies.clear()
    _maybe_close()
