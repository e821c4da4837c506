"""Classes for the activation, registry, factory, marshaling, lifetime and neutral tests.

Every CLSID, IID and ProgID here is unique in the session (the class registry is process-wide).
"""

from __future__ import annotations

import gc
import re
import threading
import time
import weakref
from dataclasses import dataclass

import anyio
import anyio.lowlevel

import aptrt

#: where code ran: (thread name, thread ident)
Seat = tuple[str, int]

MTA_WORKER = re.compile(r"aptrt-mta-\d+")
MTA_LOOP = "aptrt-mta-loop"


def seat() -> Seat:
    thread = threading.current_thread()
    assert thread.ident is not None
    return thread.name, thread.ident


class IWhere(aptrt.Interface, iid="c38b03b8-0a15-4aae-afa0-e355677264bf"):
    def where(self) -> Seat: ...
    async def where_async(self) -> Seat: ...
    def born(self) -> Seat: ...
    def kind(self) -> str: ...


class ITag(aptrt.Interface, iid="e1ceba68-a508-4305-9bf5-63affe8967b2"):
    def tag(self) -> str: ...


class INotImplemented(aptrt.Interface, iid="54a8dac9-3245-49fa-a7e1-83f060b84af5"):
    def never(self) -> None: ...


class Where(IWhere, ITag):
    """Records the thread it was made on and the thread of every call it serves."""

    def __init__(self) -> None:
        self._born = seat()
        self._calls: list[Seat] = []

    def where(self) -> Seat:
        here = seat()
        self._calls.append(here)
        return here

    async def where_async(self) -> Seat:
        await anyio.lowlevel.checkpoint()
        return seat()

    def born(self) -> Seat:
        return self._born

    def kind(self) -> str:
        return type(self).__name__

    def tag(self) -> str:
        return "where"


@aptrt.coclass(
    clsid="5bea100d-174c-4d43-b183-55ca641feaea",
    progid="AptrtTests.WhereLegacy.1",
    version_independent_progid="AptrtTests.WhereLegacy",
    threading_model=aptrt.ThreadingModel.NONE,
)
class WhereLegacy(Where):
    pass


@aptrt.coclass(
    clsid="dcf5ec1c-5cf9-462c-a906-69d0c2505ecd",
    progid="AptrtTests.WhereApartment.1",
    version_independent_progid="AptrtTests.WhereApartment",
    threading_model=aptrt.ThreadingModel.APARTMENT,
)
class WhereApartment(Where):
    pass


@aptrt.coclass(
    clsid="836801a2-8447-4f5f-a6c1-0c9aa35ae028",
    progid="AptrtTests.WhereFree.1",
    version_independent_progid="AptrtTests.WhereFree",
    threading_model=aptrt.ThreadingModel.FREE,
)
class WhereFree(Where):
    pass


@aptrt.coclass(
    clsid="0f3a5442-27e6-4464-886d-23536686e0ea",
    progid="AptrtTests.WhereBoth.1",
    version_independent_progid="AptrtTests.WhereBoth",
    threading_model=aptrt.ThreadingModel.BOTH,
)
class WhereBoth(Where):
    pass


@aptrt.coclass(
    clsid="09b40d43-996c-4085-9a84-ab28f91dd3fb",
    progid="AptrtTests.WhereNeutral.1",
    version_independent_progid="AptrtTests.WhereNeutral",
    threading_model=aptrt.ThreadingModel.NEUTRAL,
)
class WhereNeutral(Where):
    pass


#: the class of each threading model
BY_MODEL: dict[aptrt.ThreadingModel, type[Where]] = {
    aptrt.ThreadingModel.NONE: WhereLegacy,
    aptrt.ThreadingModel.APARTMENT: WhereApartment,
    aptrt.ThreadingModel.FREE: WhereFree,
    aptrt.ThreadingModel.BOTH: WhereBoth,
    aptrt.ThreadingModel.NEUTRAL: WhereNeutral,
}


@dataclass(frozen=True)
class Placement:
    """What a caller saw of an object it created (plain data: it crosses apartments as it is)."""

    proxy: bool
    #: the apartment that hosts the object (None: the caller got the object itself)
    lives_in: str | None
    #: the apartment the proxy belongs to (None for a direct object)
    held_by: str | None
    caller: Seat
    caller_apartment: str
    born: Seat
    runs: Seat
    runs_async: Seat
    kind: str


async def observe(obj: object) -> Placement:
    """Call *obj* (a proxy or an object) and report where it lives and runs; releases a proxy."""
    if isinstance(obj, aptrt.Proxy):
        try:
            return Placement(
                proxy=True,
                lives_in=obj.target_apartment.name,
                held_by=obj.apartment.name,
                caller=seat(),
                caller_apartment=aptrt.current_apartment().name,
                born=await obj.born(),
                runs=await obj.where(),
                runs_async=await obj.where_async(),
                kind=await obj.kind(),
            )
        finally:
            obj.release()
    assert isinstance(obj, Where), obj
    return Placement(
        proxy=False,
        lives_in=None,
        held_by=None,
        caller=seat(),
        caller_apartment=aptrt.current_apartment().name,
        born=obj.born(),
        runs=obj.where(),
        runs_async=await obj.where_async(),
        kind=obj.kind(),
    )


def observe_blocking(obj: object) -> Placement:
    """:func:`observe` for a plain thread (blocking proxy calls)."""
    if isinstance(obj, aptrt.Proxy):
        calls = aptrt.blocking(obj, timeout=5)
        try:
            return Placement(
                proxy=True,
                lives_in=obj.target_apartment.name,
                held_by=obj.apartment.name,
                caller=seat(),
                caller_apartment=aptrt.current_apartment().name,
                born=calls.born(),
                runs=calls.where(),
                runs_async=calls.where_async(),
                kind=calls.kind(),
            )
        finally:
            obj.release()
    assert isinstance(obj, Where), obj
    return Placement(
        proxy=False,
        lives_in=None,
        held_by=None,
        caller=seat(),
        caller_apartment=aptrt.current_apartment().name,
        born=obj.born(),
        runs=obj.where(),
        runs_async=anyio.run(obj.where_async),
        kind=obj.kind(),
    )


# -- lifetime ------------------------------------------------------------------------------------------


class Tracker:
    """Counts the objects it tracks and how many of them were finalized (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.made = 0
        self.gone = 0

    def track(self, obj: object) -> None:
        with self._lock:
            self.made += 1
        weakref.finalize(obj, self._finalized)

    def _finalized(self) -> None:
        with self._lock:
            self.gone += 1

    @property
    def alive(self) -> int:
        with self._lock:
            return self.made - self.gone


class ITracked(aptrt.Interface, iid="6361cc98-20a9-4baa-bf01-31b90d4f9e12"):
    def ping(self, n: int) -> int: ...
    def keep(self, value: object) -> None: ...
    def kept(self) -> object: ...
    def drop(self) -> None: ...
    def is_kept(self, value: object) -> bool: ...


class ISecond(aptrt.Interface, iid="51aa576b-dfe1-4c7f-bfc9-615bd46e31b0"):
    def second(self) -> str: ...


class Tracked(ITracked, ISecond):
    """An object whose finalization its tracker counts; it can hold one value (an object or a proxy)."""

    def __init__(self, tracker: Tracker) -> None:
        tracker.track(self)
        self.value: object = None

    def ping(self, n: int) -> int:
        return n

    def keep(self, value: object) -> None:
        self.value = value

    def kept(self) -> object:
        return self.value

    def drop(self) -> None:
        value, self.value = self.value, None
        if isinstance(value, aptrt.Proxy):
            value.release()

    def is_kept(self, value: object) -> bool:
        return value is self.value

    def second(self) -> str:
        return "second"


def collect() -> None:
    """Run the garbage collector (twice: finalizers may free more)."""
    gc.collect()
    gc.collect()


async def wait_exported(apartment: aptrt.Apartment, expected: int) -> None:
    """Wait (bounded) until *apartment* exports *expected* objects, collecting garbage meanwhile.

    Proxies dropped by garbage collection give their references back lazily (statistics() flushes them);
    a reference may also be held for a moment by another loop's finished task, so poll, for at most 5 s.
    """
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        collect()
        if apartment.statistics().exported == expected:
            return
        await anyio.sleep(0.005)
    raise AssertionError(f"{apartment.name!r} still exports {apartment.statistics().exported}, not {expected}")


async def wait_gone(tracker: Tracker, alive: int = 0) -> None:
    """Wait (bounded, 5 s) until only *alive* tracked objects remain, collecting garbage meanwhile."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        collect()
        if tracker.alive == alive:
            return
        await anyio.sleep(0.005)
    raise AssertionError(f"{tracker.alive} tracked objects are alive, not {alive}")
