"""A stateful property-based test of the apartment model (hypothesis ``RuleBasedStateMachine``).

The machine opens a sync runtime (its MTA loop on asyncio, trio or uvloop) and drives random sequences
of: starting and closing STAs (asyncio, trio, uvloop); creating objects of every threading model (from
the test's thread, an implicit MTA member, and from inside STAs; by CLSID, by ``sta.create``, inside
contexts, through class objects); calls (sync, async, raising; slow ones in flight from helper threads;
cancelled by a deadline, by the caller's scope, by ``PendingCall.cancel()``, by a context disconnect;
bursts started with ``aptrt.begin``; calls from a foreign event loop; proxies used from the wrong
apartment); passing references between apartments (as arguments and results, through the global
interface table) and ``query_interface``; releasing proxies (explicitly, from another apartment, by
garbage collection); creating and disconnecting contexts (with or without a grace period, cancelling
outstanding calls, from inside a call on one of its objects); registering and unregistering classes,
registering and revoking class objects (``REGCLS``, ``CLSCTX``, inside contexts).

It keeps a model of every apartment, object, reference (a proxy, or the object itself at home), context,
class registration, GIT entry and call, and checks after every step:

* every issued call has exactly one final outcome, the one the model predicts (a value, the callee's own
  exception, a typed aptrt error with the right ``DisconnectReason``, a timeout, a cancellation); a call
  whose outcome does not come within a bounded wait is a lost call; a refused call never ran;
* every callee ran at most once, on a thread its apartment owns: an STA's thread; for the MTA a worker
  (sync) or its loop (async), or the caller's own thread for a direct call by an MTA member; for the
  neutral apartment the caller's thread; objects were born there too;
* each apartment's ``statistics().exported`` is the number of distinct objects of it that live proxies
  or GIT entries reach, each stub's reference count is the number of those, and the proxies each
  apartment holds (``imports``) are exactly the live references the model gives it;
* each context's state, outstanding calls and objects match the model; with no call in flight, no
  apartment has a call queued or running; the runtime's class objects are the model's.

Teardown closes the runtime with the slow calls still in flight: each ends with ``DisconnectedError``.

Slow callees wait on ``threading.Event`` s the machine sets (bounded), never on sleeps; a slow call is
issued from a helper thread and the machine waits for the callee's "entered" handshake before going on.

Profiles: the example count follows the loaded hypothesis profile (``ci`` by default, ``thorough`` for a
long run: ``APTRT_HYPOTHESIS_PROFILE=thorough`` or ``--hypothesis-profile=thorough``). The plain tests at
the end are the bugs the machine found, minimized.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import aptrt

#: seconds: a handshake, an outcome or a convergence that takes longer is a failure (a lost call, a hang)
BOUND = 10.0
#: seconds: the deadline of the calls meant to be cancelled by it
SHORT = 0.02
#: at most this many slow calls in flight, STAs started by the machine, live contexts, dynamic classes
MAX_PENDING = 4
MAX_STAS = 3
MAX_CONTEXTS = 4
MAX_CLASSES = 5

MTA_WORKER = re.compile(r"aptrt-mta-\d+")
MTA_LOOP = "aptrt-mta-loop"
#: the event loops STAs (and the MTA's loop) run on
BACKENDS = ["asyncio", "trio", *(["uvloop"] if importlib.util.find_spec("uvloop") is not None else [])]
TM = aptrt.ThreadingModel
MODELS = (TM.NONE, TM.APARTMENT, TM.FREE, TM.BOTH, TM.NEUTRAL)
CLSCTX = aptrt.CLSCTX
REGCLS = aptrt.REGCLS

#: process-wide: every CLSID the machine makes is new
_clsids = itertools.count(1)


def _fresh_clsid() -> uuid.UUID:
    return uuid.UUID(int=(0x5747_E000 << 96) | next(_clsids))


# -- the callee side: what objects record ---------------------------------------------------------------


class Ledger:
    """What callees did, recorded on the threads they ran on (thread-safe; one per machine run)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._uids = itertools.count(1)
        #: every object made: (uid, thread ident, thread name)
        self.born: list[tuple[int, int, str]] = []
        #: every method run, by call id: [(uid, thread ident, thread name)]
        self.runs: dict[int, list[tuple[int, int, str]]] = {}
        #: how each slow callee ended, by call id: ["returned" | "cancelled" | "error"]
        self.exits: dict[int, list[str]] = {}
        self._events: dict[tuple[str, int], threading.Event] = {}

    def event(self, what: str, cid: int) -> threading.Event:
        with self.lock:
            return self._events.setdefault((what, cid), threading.Event())

    def birth(self) -> int:
        thread = threading.current_thread()
        with self.lock:
            uid = next(self._uids)
            self.born.append((uid, threading.get_ident(), thread.name))
        return uid

    def ran(self, cid: int, uid: int) -> None:
        thread = threading.current_thread()
        with self.lock:
            self.runs.setdefault(cid, []).append((uid, threading.get_ident(), thread.name))
        self.event("entered", cid).set()

    def exited(self, cid: int, how: str) -> None:
        with self.lock:
            self.exits.setdefault(cid, []).append(how)
        self.event("exited", cid).set()

    def released(self, cid: int) -> threading.Event:
        return self.event("release", cid)

    def release_all(self) -> None:
        with self.lock:
            releases = [ev for (what, _), ev in self._events.items() if what == "release"]
        for ev in releases:
            ev.set()


LEDGER = Ledger()


class Boom(Exception):
    """What the raising methods raise (it reaches the caller as itself)."""

    def __init__(self, cid: int) -> None:
        super().__init__(f"boom {cid}")
        self.cid = cid


class IProbe(aptrt.Interface, iid="a7f4b1f2-3c0e-4b7e-9e43-5a1d2c6b7f01"):
    def ping(self, cid: int) -> int: ...
    async def ping_async(self, cid: int) -> int: ...
    def boom(self, cid: int) -> int: ...
    async def boom_async(self, cid: int) -> int: ...
    async def slow(self, cid: int) -> int: ...
    def slow_sync(self, cid: int) -> int: ...
    async def disconnect_own_context(self, cid: int) -> str: ...


class ITag(aptrt.Interface, iid="a7f4b1f2-3c0e-4b7e-9e43-5a1d2c6b7f02"):
    def tag(self, cid: int) -> int: ...


class Probe(IProbe, ITag):
    """Records where it was born and where every call ran; slow calls wait for the machine's release."""

    def __init__(self) -> None:
        self.uid = LEDGER.birth()

    def ping(self, cid: int) -> int:
        LEDGER.ran(cid, self.uid)
        return cid

    async def ping_async(self, cid: int) -> int:
        await anyio.lowlevel.checkpoint()
        LEDGER.ran(cid, self.uid)
        return cid

    def boom(self, cid: int) -> int:
        LEDGER.ran(cid, self.uid)
        raise Boom(cid)

    async def boom_async(self, cid: int) -> int:
        await anyio.lowlevel.checkpoint()
        LEDGER.ran(cid, self.uid)
        raise Boom(cid)

    def tag(self, cid: int) -> int:
        LEDGER.ran(cid, self.uid)
        return cid

    async def disconnect_own_context(self, cid: int) -> str:
        """Disconnect the context this call runs in, from inside the call: it would wait for itself."""
        LEDGER.ran(cid, self.uid)
        try:
            await aptrt.current_context().disconnect(0)
        except Exception as exc:  # noqa: BLE001 - every outcome is classified
            return classify(exc)
        return VALUE

    async def slow(self, cid: int) -> int:
        """Wait (a checkpoint every 2 ms) until the machine releases this call; bounded."""
        LEDGER.ran(cid, self.uid)
        release = LEDGER.released(cid)
        how = "error"
        try:
            end = time.monotonic() + BOUND
            while not release.is_set():
                if time.monotonic() > end:
                    raise AssertionError(f"slow call {cid} was never released")
                await anyio.sleep(0.002)
            how = "returned"
            return cid
        except anyio.get_cancelled_exc_class():
            how = "cancelled"
            raise
        finally:
            LEDGER.exited(cid, how)

    def slow_sync(self, cid: int) -> int:
        """Hold the thread until released or until ``aptrt.check_cancelled`` says stop; bounded."""
        LEDGER.ran(cid, self.uid)
        release = LEDGER.released(cid)
        how = "error"
        try:
            end = time.monotonic() + BOUND
            while not release.wait(0.002):
                aptrt.check_cancelled()
                if time.monotonic() > end:
                    raise AssertionError(f"slow call {cid} was never released")
            how = "returned"
            return cid
        except (aptrt.CallCancelledError, TimeoutError, aptrt.DisconnectedError):
            how = "cancelled"
            raise
        finally:
            LEDGER.exited(cid, how)


# one registered class per threading model, for "create an object of every threading model"
STATIC: dict[TM, type[Probe]] = {}
for _model in MODELS:
    STATIC[_model] = aptrt.coclass(
        clsid=f"a7f4b1f2-3c0e-4b7e-9e43-5a1d2c6b80{MODELS.index(_model):02d}", threading_model=_model
    )(type(f"Stateful{_model.name.title()}", (Probe,), {"__module__": __name__}))


# -- outcomes --------------------------------------------------------------------------------------------

VALUE = "value"


def classify(exc: BaseException) -> str:
    """An outcome name for an exception a caller saw (anything unexpected reads "other:...")."""
    if isinstance(exc, Boom):
        return "Boom"
    if isinstance(exc, aptrt.ObjectNotConnectedError):
        return "ObjNotConnected"
    if isinstance(exc, aptrt.DisconnectedError):
        return f"Disconnected:{exc.reason.name}"
    if isinstance(exc, aptrt.WouldDeadlockError):
        return "WouldDeadlock"
    if isinstance(exc, aptrt.CallCancelledError):
        return "CallCancelled"
    if isinstance(exc, aptrt.RPCTimeoutError):
        return "RPCTimeout"
    if isinstance(exc, TimeoutError):
        return "Timeout"
    if isinstance(exc, aptrt.ClassNotRegisteredError):
        return "NotRegistered"
    if isinstance(exc, aptrt.InvalidArgumentError):
        return "InvalidArgument"
    if isinstance(exc, aptrt.WrongThreadError):
        return "WrongThread"
    if isinstance(exc, aptrt.NotSupportedError):
        return "NotSupported"
    if isinstance(exc, aptrt.COMError):
        return f"COMError:{exc.hresult_name}"
    return f"other:{type(exc).__module__}.{type(exc).__qualname__}: {exc}"


def outcome_of(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return VALUE, fn()
    except Exception as exc:  # noqa: BLE001 - every outcome is classified
        return classify(exc), None


# -- the model -------------------------------------------------------------------------------------------


@dataclass(eq=False)
class AptM:
    name: str
    apartment: aptrt.Apartment
    #: "sta" (started by the machine), "host" (started by the runtime), "mta", "na"
    kind: str
    closed: bool = False
    #: what code in this apartment holds: key → proxy or object (only touched from inside it, or while
    #: nothing runs there)
    held: dict[int, Any] = field(default_factory=dict)

    @property
    def is_sta(self) -> bool:
        return self.kind in ("sta", "host")

    @property
    def thread_ident(self) -> int | None:
        thread = getattr(self.apartment, "thread", None)
        return thread.ident if thread is not None else None

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name}{' closed' if self.closed else ''}>"


@dataclass(eq=False)
class CtxM:
    ctx: aptrt.Context
    apt: AptM
    #: "open", "disconnecting", "disconnected"
    state: str = "open"

    def __repr__(self) -> str:
        return f"<ctx {self.ctx.token} of {self.apt.name} {self.state}>"


@dataclass(eq=False)
class ObjM:
    uid: int
    home: AptM
    ctx: CtxM | None
    #: why its stub was cut for good (a DisconnectReason name), else None
    gone: str | None = None


@dataclass(eq=False)
class RefM:
    key: int
    obj: ObjM
    holder: AptM
    #: the object itself (it lives in the holder's apartment), not a proxy
    direct: bool
    iface: type[aptrt.Interface]
    #: slow calls in flight through it
    busy: int = 0

    def __repr__(self) -> str:
        what = "obj" if self.direct else f"proxy[{self.iface.__name__}]"
        return f"<ref {self.key} {what} to #{self.obj.uid}@{self.obj.home.name} held by {self.holder.name}>"


@dataclass(eq=False)
class CallM:
    cid: int
    what: str
    obj: ObjM | None
    method: str
    direct: bool
    #: the outcomes the model accepts, and the outcomes that came (exactly one, eventually)
    expect: set[str]
    outcomes: list[tuple[str, Any]] = field(default_factory=list)
    #: the thread that issued it (a callee of the neutral apartment or a direct call runs there)
    issuer: int | None = None
    #: refused before it could start: it must never have run
    refused: bool = False


@dataclass(eq=False)
class PendingM:
    """A slow call in flight (its callee entered, unless it was refused)."""

    call: CallM
    ref: RefM
    #: the context that counts it as outstanding (a call on a context object through a proxy), else None
    ctx: CtxM | None
    thread: threading.Thread


@dataclass(eq=False)
class GitM:
    """An entry of the global interface table (table-strong marshal data: a reference on the stub)."""

    cookie: int
    obj: ObjM
    iface: type[aptrt.Interface]
    revoked: bool = False


@dataclass(eq=False)
class ClassObjM:
    cookie: int
    clsid: uuid.UUID
    apt: AptM
    ctx: CtxM | None
    clsctx: aptrt.CLSCTX
    flags: aptrt.REGCLS
    used: bool = False
    revoked: bool = False


def _pick(items: list[Any], index: int) -> Any:
    return items[index % len(items)]


class ApartmentMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        global LEDGER
        LEDGER = self.ledger = Ledger()
        self.me = threading.get_ident()
        self.keys = itertools.count(1)
        self.cids = itertools.count(1)
        self.sta_names = itertools.count(1)
        self.lock = threading.Lock()  # guards call outcomes (helper threads write them)
        self.rt: aptrt.Runtime  # opened by open_runtime(), closed by teardown()
        self.opened = False
        self.apts: list[AptM] = []
        self.objs: dict[int, ObjM] = {}
        self.refs: dict[int, RefM] = {}
        self.ctxs: list[CtxM] = []
        self.calls: dict[int, CallM] = {}
        self.pending: dict[int, PendingM] = {}
        self.helpers: list[threading.Thread] = []
        #: dynamic registrations: CLSID → threading model (None: unregistered again)
        self.classes: dict[uuid.UUID, TM | None] = {}
        #: CLSIDs only class objects serve (never in the registry)
        self.object_only = [_fresh_clsid(), _fresh_clsid()]
        self.class_objects: list[ClassObjM] = []
        self.git: list[GitM] = []

    @initialize(backend=st.sampled_from(BACKENDS))
    def open_runtime(self, backend: str) -> None:
        """A sync runtime (the test's thread is a plain thread: an implicit member of the MTA); *backend*
        is the MTA's loop for async methods."""
        self.rt = aptrt.Runtime(mta_workers=4, backend=backend)
        self.rt.__enter__()
        self.opened = True
        self.mta = AptM("MTA", self.rt.mta, "mta")
        self.na = AptM("NA", self.rt.neutral, "na")
        self.apts = [self.mta, self.na]

    # -- views -------------------------------------------------------------------------------------------

    def live_stas(self) -> list[AptM]:
        return [a for a in self.apts if a.is_sta and not a.closed]

    def own_stas(self) -> list[AptM]:
        return [a for a in self.apts if a.kind == "sta" and not a.closed]

    def holders(self) -> list[AptM]:
        """Apartments the machine runs code in: the test's thread (MTA) and every live STA."""
        return [self.mta, *self.live_stas()]

    def live_ctxs(self) -> list[CtxM]:
        return [c for c in self.ctxs if not c.apt.closed]

    def ref_list(self, pred: Callable[[RefM], bool] = lambda r: True) -> list[RefM]:
        return [r for r in self.refs.values() if pred(r)]

    def apt_of(self, apartment: aptrt.Apartment) -> AptM:
        for apt in self.apts:
            if apt.apartment is apartment:
                return apt
        assert apartment.name in ("host", "main-host"), f"an apartment the model does not know: {apartment!r}"
        apt = AptM(apartment.name, apartment, "host")
        self.apts.append(apt)
        return apt

    # -- running code in an apartment -----------------------------------------------------------------

    def run_in(self, apt: AptM, fn: Callable[[], Any]) -> Any:
        """Run the coroutine function *fn* in *apt* (the test's thread for the MTA) and return its result."""
        if apt is self.mta:
            return anyio.run(fn)
        return apt.apartment.run_blocking(fn, timeout=BOUND)

    def run_sync_in(self, apt: AptM, fn: Callable[[], Any]) -> Any:
        if apt is self.mta:
            return fn()
        return apt.apartment.run_sync_blocking(fn, timeout=BOUND)

    # -- expectations ------------------------------------------------------------------------------------

    def live_proxies(self, obj: ObjM) -> list[RefM]:
        return [r for r in self.refs.values() if r.obj is obj and not r.direct]

    def stub_refs(self, obj: ObjM) -> int:
        """The references the object's stub holds: live proxies and global interface table entries."""
        if obj.gone is not None:
            return 0
        return len(self.live_proxies(obj)) + sum(1 for g in self.git if g.obj is obj and not g.revoked)

    def has_stub(self, obj: ObjM) -> bool:
        return self.stub_refs(obj) > 0

    def refusal(self, ref: RefM) -> str | None:
        """Why a call through *ref* is refused before it runs, or None."""
        if ref.direct:
            return None
        obj = ref.obj
        if obj.gone is not None:
            return f"Disconnected:{obj.gone}"
        if obj.ctx is not None and obj.ctx.state != "open":
            return "Disconnected:CONTEXT_DISCONNECTED"
        return None

    def export_refusal(self, ref: RefM) -> str | None:
        """Why marshaling *ref* to another apartment fails, or None."""
        obj = ref.obj
        if not ref.direct:
            return f"Disconnected:{obj.gone}" if obj.gone is not None else None
        if self.has_stub(obj):
            return None
        if obj.ctx is not None and obj.ctx.state != "open":
            return "Disconnected:CONTEXT_DISCONNECTED"
        return None

    def thread_ok(self, call: CallM, ident: int, name: str, *, is_async: bool) -> bool:
        assert call.obj is not None
        home = call.obj.home
        if home.is_sta:
            return ident == home.thread_ident
        if home.kind == "na" or call.direct:
            return ident == call.issuer
        return name == MTA_LOOP if is_async else bool(MTA_WORKER.fullmatch(name))

    # -- the ledger of calls -----------------------------------------------------------------------------

    def new_call(self, what: str, obj: ObjM | None, method: str, direct: bool, expect: set[str]) -> CallM:
        call = CallM(next(self.cids), what, obj, method, direct, expect)
        self.calls[call.cid] = call
        return call

    def conclude(self, call: CallM, outcome: tuple[str, Any]) -> None:
        with self.lock:
            call.outcomes.append(outcome)

    def check_outcome(self, call: CallM) -> None:
        assert len(call.outcomes) == 1, f"call {call.cid} ({call.what}) has outcomes {call.outcomes}"
        kind, value = call.outcomes[0]
        event(f"outcome of {call.method}{' (foreign loop)' if 'foreign' in call.what else ''}: {kind}")
        assert kind in call.expect, f"call {call.cid} ({call.what}): expected one of {sorted(call.expect)}, got {kind}"
        if kind == VALUE and call.method in ("ping", "ping_async", "tag", "slow", "slow_sync"):
            assert value == call.cid, f"call {call.cid} ({call.what}) returned {value!r}"
        runs = self.ledger.runs.get(call.cid, [])
        if kind in (VALUE, "Boom") and call.obj is not None:
            assert len(runs) == 1, f"call {call.cid} ({call.what}) ended with {kind} but ran {len(runs)} times"
        if call.refused:
            assert not runs, f"call {call.cid} ({call.what}) was refused ({kind}) but ran: {runs}"

    def wait_outcome(self, call: CallM) -> None:
        end = time.monotonic() + BOUND
        while not call.outcomes:
            assert time.monotonic() < end, f"lost call {call.cid} ({call.what}): no outcome after {BOUND} s"
            time.sleep(0.001)

    def wait_exit(self, cid: int) -> None:
        """If callee *cid* entered, wait until it has ended."""
        if cid in self.ledger.runs:
            assert self.ledger.event("exited", cid).wait(BOUND), f"callee {cid} entered and never ended"

    # -- apartments --------------------------------------------------------------------------------------

    @precondition(lambda self: len(self.own_stas()) < MAX_STAS)
    @rule(backend=st.sampled_from(BACKENDS))
    def start_sta(self, backend: str) -> None:
        name = f"s{next(self.sta_names)}"
        sta = self.rt.start_sta_blocking(name, backend=backend)
        assert sta.thread is not None and sta.thread.name == f"aptrt-sta-{name}"
        self.apts.append(AptM(name, sta, "sta"))

    @precondition(lambda self: self.own_stas())
    @rule(i=st.integers(0, 15))
    def close_sta(self, i: int) -> None:
        apt: AptM = _pick(self.own_stas(), i)
        affected = [p for p in self.pending.values() if p.ref.holder is apt or p.ref.obj.home is apt]
        for p in affected:
            p.call.expect = {"Disconnected:SERVER_SHUTDOWN"}
        assert isinstance(apt.apartment, aptrt.STA)
        event(f"close an STA with {len(affected)} slow calls in flight")
        apt.apartment.close_blocking()
        apt.closed = True
        assert apt.apartment.thread is not None and not apt.apartment.thread.is_alive()
        # what it held is released; its objects are disconnected; its class objects are revoked
        for ref in [r for r in self.refs.values() if r.holder is apt]:
            del self.refs[ref.key]
        apt.held.clear()
        for ctx in self.ctxs:
            if ctx.apt is apt and ctx.state == "disconnecting":
                # closing cancels its outstanding calls: it finishes disconnecting first
                self.context_disconnected(ctx)
        for obj in self.objs.values():
            if obj.home is apt and obj.gone is None:
                obj.gone = "SERVER_SHUTDOWN"
        for entry in self.class_objects:
            if entry.apt is apt:
                entry.revoked = True
        for p in affected:
            self.finish_pending(p)
        # a callee elsewhere whose caller was in the closed apartment is cancelled
        for p in affected:
            self.wait_exit(p.call.cid)

    # -- objects -----------------------------------------------------------------------------------------

    def find_class_object(self, clsid: uuid.UUID, caller: AptM) -> ClassObjM | None:
        for entry in self.class_objects:
            if entry.revoked or entry.used or entry.clsid != clsid:
                continue
            if entry.clsctx & CLSCTX.LOCAL_SERVER or (entry.clsctx & CLSCTX.INPROC_SERVER and entry.apt is caller):
                if not entry.flags & (REGCLS.MULTIPLEUSE | REGCLS.MULTI_SEPARATE):
                    entry.used = True
                return entry
        return None

    def registered_model(self, clsid: uuid.UUID) -> TM | None:
        for model, cls in STATIC.items():
            if cls.__clsid__ == clsid:  # type: ignore[attr-defined]
                return model
        return self.classes.get(clsid)

    def placement(self, model: TM, creator: AptM) -> AptM | str:
        if model is TM.NONE:
            return "main-host"
        if model is TM.APARTMENT:
            return creator if creator.is_sta else "host"
        if model is TM.FREE:
            return self.mta
        if model is TM.BOTH:
            return creator
        return self.na

    def create(self, clsid: uuid.UUID, creator: AptM) -> None:
        """CoCreateInstance from *creator*; check where the object lives, what the creator holds, where it
        was born; the creator keeps what it got."""
        entry = self.find_class_object(clsid, creator)
        ctx: CtxM | None = None
        event(f"create via {'a class object' if entry is not None else 'the registry'}")
        if entry is not None:
            home: AptM | str = entry.apt
            ctx = entry.ctx
        else:
            model = self.registered_model(clsid)
            if model is None:
                home = ""
            else:
                home = self.placement(model, creator)
        key = next(self.keys)
        born = len(self.ledger.born)
        call = self.new_call(
            f"create {clsid} from {creator.name}", None, "create", False, {VALUE} if home else {"NotRegistered"}
        )
        call.issuer = self.me if creator is self.mta else creator.thread_ident
        rt = self.rt

        if creator is self.mta:

            def make_here() -> Any:
                result = rt.create_instance_blocking(clsid, IProbe)
                self.mta.held[key] = result
                return result

            kind, result = outcome_of(make_here)
        else:

            async def make() -> tuple[str, Any]:
                try:
                    obj = await rt.create_instance(clsid, IProbe)
                except Exception as exc:  # noqa: BLE001 - every outcome is classified
                    return classify(exc), None
                creator.held[key] = obj
                return VALUE, (obj.target_apartment if isinstance(obj, aptrt.Proxy) else None)

            kind, result = self.run_in(creator, make)
            if kind == VALUE:
                result = result if result is not None else creator.apartment
        if kind == VALUE and creator is self.mta:
            result = result.target_apartment if isinstance(result, aptrt.Proxy) else self.mta.apartment
        self.conclude(call, (kind, None))
        self.check_outcome(call)
        if kind != VALUE:
            assert len(self.ledger.born) == born, "a failed creation made an object"
            return
        lives = self.apt_of(result)
        call.direct = lives is creator
        if isinstance(home, str):
            assert lives.name == home, f"created in {lives.name}, expected a host STA {home!r}"
            home = lives
        assert lives is home, f"created in {lives.name}, expected {home.name}"
        new = self.ledger.born[born:]
        assert len(new) == 1, f"one creation made {len(new)} objects"
        uid, ident, name = new[0]
        call.obj = ObjM(uid, home, ctx)
        assert self.thread_ok(call, ident, name, is_async=False), f"object {uid} of {home.name} born on {name}"
        held = creator.held[key]
        direct = home is creator
        assert isinstance(held, aptrt.Proxy) != direct, f"{creator.name} got {held!r} for an object of {home.name}"
        self.objs[uid] = call.obj
        self.refs[key] = RefM(key, call.obj, creator, direct, IProbe)

    @rule(model=st.sampled_from(MODELS), c=st.integers(0, 15))
    def create_object(self, model: TM, c: int) -> None:
        self.create(STATIC[model].__clsid__, _pick(self.holders(), c))  # type: ignore[attr-defined]

    @precondition(lambda self: self.live_stas())
    @rule(s=st.integers(0, 15))
    def create_in_sta(self, s: int) -> None:
        """``sta.create_blocking(cls)`` from the test's thread: the object lives there, the test holds a proxy."""
        apt: AptM = _pick(self.live_stas(), s)
        key, born = next(self.keys), len(self.ledger.born)
        proxy = apt.apartment.create_blocking(Probe, interface=IProbe, timeout=BOUND)
        assert isinstance(proxy, aptrt.Proxy) and proxy.target_apartment is apt.apartment, repr(proxy)
        self.mta.held[key] = proxy
        del proxy
        ((uid, ident, name),) = self.ledger.born[born:]
        assert ident == apt.thread_ident, f"an object of {apt.name} was born on {name}"
        obj = self.objs[uid] = ObjM(uid, apt, None)
        self.refs[key] = RefM(key, obj, self.mta, False, IProbe)

    # -- calls -------------------------------------------------------------------------------------------

    def invoke(self, ref: RefM, method: str, cid: int) -> tuple[str, Any]:
        """Call *method* through *ref*, from the apartment that holds it (test thread: blocking)."""
        holder, key = ref.holder, ref.key
        if holder is self.mta:
            target = holder.held[key]
            if ref.direct:
                fn = getattr(target, method)
                if method.endswith(("async", "context")):
                    return outcome_of(lambda: anyio.run(fn, cid))
                return outcome_of(lambda: fn(cid))
            return outcome_of(lambda: getattr(aptrt.blocking(target, timeout=BOUND), method)(cid))

        async def body() -> tuple[str, Any]:
            target = holder.held[key]
            try:
                result = getattr(target, method)(cid)
                if not isinstance(result, (int, str)):
                    result = await result
                return VALUE, result
            except Exception as exc:  # noqa: BLE001 - every outcome is classified
                return classify(exc), None

        result: tuple[str, Any] = holder.apartment.run_blocking(body, timeout=BOUND)
        return result

    def expect_for(self, ref: RefM, method: str) -> tuple[set[str], bool]:
        refused = self.refusal(ref)
        if refused is not None:
            return {refused}, True
        return ({"Boom"} if method.startswith("boom") else {VALUE}), False

    @precondition(lambda self: self.refs)
    @rule(r=st.integers(0, 63), m=st.integers(0, 3), wrong=st.booleans(), foreign=st.booleans())
    def call(self, r: int, m: int, wrong: bool, foreign: bool) -> None:
        """A call through a reference, from the apartment that holds it; *wrong*: a proxy used from
        another apartment (RPC_E_WRONG_THREAD, and it never runs); *foreign*: the test's thread awaits
        its proxy from an event loop of its own, one aptrt does not serve (an implicit-MTA thread)."""
        ref: RefM = _pick(self.ref_list(), r)
        if foreign and self.foreign_ok(ref):
            self.call_from_foreign_loop(ref, ("ping", "ping_async", "boom", "boom_async")[m], BACKENDS[m % 2])
            return
        method = "tag" if ref.iface is ITag else ("ping", "ping_async", "boom", "boom_async")[m]
        expect, refused = self.expect_for(ref, method)
        others = [a for a in self.holders() if a is not ref.holder]
        if wrong and not ref.direct and others:
            expect, refused = {"WrongThread"}, True
        call = self.new_call(f"{method} via {ref}", ref.obj, method, ref.direct, expect)
        call.refused = refused
        call.issuer = self.me if ref.holder is self.mta else ref.holder.thread_ident
        if wrong and not ref.direct and others:
            proxy, cid = ref.holder.held[ref.key], call.cid
            user: AptM = _pick(others, m)
            if user is self.mta:
                self.conclude(call, outcome_of(lambda: getattr(aptrt.blocking(proxy, timeout=BOUND), method)(cid)))
            else:

                async def use() -> tuple[str, Any]:
                    try:
                        return VALUE, await getattr(proxy, method)(cid)
                    except Exception as exc:  # noqa: BLE001 - every outcome is classified
                        return classify(exc), None

                self.conclude(call, user.apartment.run_blocking(use, timeout=BOUND))
            del proxy
        else:
            self.conclude(call, self.invoke(ref, method, call.cid))
        self.check_outcome(call)

    def foreign_ok(self, ref: RefM) -> bool:
        # Not the neutral apartment: an async neutral method awaited from a foreign loop fails with a raw
        # RuntimeError ("Already running asyncio in this thread"), see the report of this machine.
        return ref.holder is self.mta and not ref.direct and ref.iface is IProbe and ref.obj.home is not self.na

    def call_from_foreign_loop(self, ref: RefM, method: str, backend: str, *, deadline: float | None = None) -> CallM:
        expect, refused = self.expect_for(ref, method)
        if deadline is not None and not refused:
            expect = {"Timeout"}
        call = self.new_call(f"{method} via {ref} from a foreign {backend} loop", ref.obj, method, False, expect)
        call.refused, call.issuer = refused, self.me
        proxy, cid = ref.holder.held[ref.key], call.cid

        async def body() -> tuple[str, Any]:
            try:
                if deadline is None:
                    return VALUE, await getattr(proxy, method)(cid)
                with anyio.fail_after(deadline):
                    return VALUE, await getattr(proxy, method)(cid)
            except Exception as exc:  # noqa: BLE001 - every outcome is classified
                return classify(exc), None

        self.conclude(call, anyio.run(body, backend=backend))
        self.check_outcome(call)
        return call

    @precondition(lambda self: self.refs)
    @rule(
        r=st.integers(0, 63),
        methods=st.lists(st.integers(0, 3), min_size=2, max_size=12),
        cancel=st.sets(st.integers(0, 11), max_size=3),
    )
    def burst(self, r: int, methods: list[int], cancel: set[int]) -> None:
        """Many calls in flight at once through one reference: from an STA, started with ``aptrt.begin``
        and awaited in order (some abandoned with ``PendingCall.cancel()``); from the test's side, one
        plain thread per call. Each ends exactly once."""
        ref: RefM = _pick(self.ref_list(), r)
        names = (
            ["tag"] * len(methods)
            if ref.iface is ITag
            else [("ping", "ping_async", "boom", "boom_async")[m] for m in methods]
        )
        if ref.holder is self.mta and ref.direct:
            names = [n for n in names if not n.endswith("async")]  # no loop to run them on
        calls: list[CallM] = []
        for i, name in enumerate(names):
            expect, refused = self.expect_for(ref, name)
            call = self.new_call(f"{name} via {ref} (burst)", ref.obj, name, ref.direct, expect)
            call.refused = refused
            call.issuer = ref.holder.thread_ident
            if i in cancel and ref.holder is not self.mta:
                call.expect = expect | {"CallCancelled"}
            calls.append(call)
        holder, key = ref.holder, ref.key
        if holder is self.mta:
            target = holder.held[key]

            def one(call: CallM) -> None:
                call.issuer = threading.get_ident()
                fn = getattr(target if ref.direct else aptrt.blocking(target, timeout=BOUND), call.method)
                self.conclude(call, outcome_of(lambda: fn(call.cid)))

            threads = [threading.Thread(target=one, args=(call,), name=f"stateful-burst-{call.cid}") for call in calls]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(BOUND)
            del target
        else:
            plan = [(call.cid, call.method, i in cancel) for i, call in enumerate(calls)]

            async def body() -> list[tuple[str, Any]]:
                obj = holder.held[key]
                # begin() raises at once what the proxy's checks refuse (a disconnected object, say)
                handles = [
                    outcome_of(functools.partial(aptrt.begin, getattr(obj, method), cid)) for cid, method, _ in plan
                ]
                for (kind, handle), (_, _, abandon) in zip(handles, plan, strict=True):
                    if abandon and kind == VALUE:
                        handle.cancel()
                out: list[tuple[str, Any]] = []
                for kind, handle in handles:
                    if kind != VALUE:
                        out.append((kind, None))
                        continue
                    try:
                        out.append((VALUE, await handle))
                    except Exception as exc:  # noqa: BLE001 - every outcome is classified
                        out.append((classify(exc), None))
                return out

            for call, outcome in zip(calls, holder.apartment.run_blocking(body, timeout=BOUND), strict=True):
                self.conclude(call, outcome)
        for call in calls:
            self.wait_outcome(call)
            self.check_outcome(call)

    def slow_candidates(self) -> list[RefM]:
        return self.ref_list(lambda r: r.iface is IProbe and not (r.direct and r.holder is self.mta))

    @precondition(lambda self: len(self.pending) < MAX_PENDING and self.slow_candidates())
    @rule(r=st.integers(0, 63), in_context=st.booleans(), sync=st.booleans())
    def start_slow(self, r: int, in_context: bool, sync: bool) -> None:
        """A slow call, issued from a helper thread (through the test thread's proxy, or into the STA that
        holds the reference); the machine goes on once the callee has entered. *in_context*: prefer a
        proxy to an object of a context (the calls a disconnect waits for). *sync*: a sync callee, when it
        holds no STA's thread (an MTA worker, or the caller's plain thread for a neutral object)."""
        candidates = self.slow_candidates()
        in_contexts = [ref for ref in candidates if ref.obj.ctx is not None and not ref.direct]
        ref: RefM = _pick(in_contexts if in_context and in_contexts else candidates, r)
        holds_no_sta = ref.obj.home.kind == "mta" or (ref.obj.home.kind == "na" and ref.holder is self.mta)
        self.do_start_slow(ref, sync=sync and not ref.direct and holds_no_sta)

    def do_start_slow(self, ref: RefM, *, sync: bool = False) -> None:
        method = "slow_sync" if sync else "slow"
        expect, refused = self.expect_for(ref, method)
        call = self.new_call(f"{method} via {ref}", ref.obj, method, ref.direct, expect)
        call.refused = refused
        if ref.holder is not self.mta:
            call.issuer = ref.holder.thread_ident

        def helper() -> None:
            if ref.holder is self.mta:
                call.issuer = threading.get_ident()
            try:
                outcome = self.invoke(ref, method, call.cid)
            except BaseException as exc:  # noqa: BLE001 - the outer hop (into the holder's STA) failed
                outcome = (classify(exc), None)
            self.conclude(call, outcome)

        thread = threading.Thread(target=helper, name=f"stateful-caller-{call.cid}", daemon=True)
        self.helpers.append(thread)
        thread.start()
        if refused:
            thread.join(BOUND)
            self.wait_outcome(call)
            self.check_outcome(call)
            return
        entered = self.ledger.event("entered", call.cid)
        if not entered.wait(BOUND):
            raise AssertionError(f"slow call {call.cid} never entered its callee; outcomes: {call.outcomes}")
        assert not call.outcomes, f"slow call {call.cid} ended before it was released: {call.outcomes}"
        ctx = ref.obj.ctx if not ref.direct else None
        ref.busy += 1
        self.pending[call.cid] = PendingM(call, ref, ctx, thread)

    def finish_pending(self, p: PendingM) -> None:
        """Wait for a slow call's outcome and check it; it is no longer in flight."""
        self.wait_outcome(p.call)
        p.thread.join(BOUND)
        assert not p.thread.is_alive(), f"the caller of {p.call.cid} is stuck"
        self.check_outcome(p.call)
        del self.pending[p.call.cid]
        p.ref.busy -= 1
        if p.ctx is not None:
            self.wait_exit(p.call.cid)
            self.settle_context(p.ctx)

    @precondition(lambda self: self.pending)
    @rule(i=st.integers(0, 15))
    def release_slow(self, i: int) -> None:
        p: PendingM = _pick(list(self.pending.values()), i)
        self.ledger.released(p.call.cid).set()
        self.finish_pending(p)
        assert self.ledger.exits.get(p.call.cid) == ["returned"], self.ledger.exits.get(p.call.cid)

    def cancel_candidates(self) -> list[RefM]:
        return self.ref_list(lambda r: r.iface is IProbe and not (r.direct and r.holder is self.mta))

    @precondition(lambda self: self.cancel_candidates())
    @rule(r=st.integers(0, 63), how=st.sampled_from(["fail_after", "move_on", "cancel"]), sync=st.booleans())
    def cancelled_call(self, r: int, how: str, sync: bool) -> None:
        """A slow call that is cancelled: by its deadline (a blocking call's timeout, ``fail_after``,
        ``move_on_after`` inside an STA) or by its caller's cancel scope once the callee entered."""
        ref: RefM = _pick(self.cancel_candidates(), r)
        if ref.holder is self.mta:
            if how == "fail_after" and not sync and self.foreign_ok(ref):  # from a foreign loop
                call = self.call_from_foreign_loop(ref, "slow", BACKENDS[r % 2], deadline=SHORT)
                self.wait_exit(call.cid)
                assert self.ledger.exits.get(call.cid) in (None, ["cancelled"]), self.ledger.exits.get(call.cid)
                return
            how = "timeout"
        if ref.direct or how == "cancel":
            sync = False  # a direct sync callee cannot see an anyio deadline
        method = "slow_sync" if sync else "slow"
        expect, refused = self.expect_for(ref, method)
        if not refused:
            expect = {
                "timeout": {"Timeout"},
                "fail_after": {"Timeout"},
                "move_on": {"moved_on"},
                "cancel": {"cancelled"},
            }[how]
        call = self.new_call(f"{method} via {ref}, {how}", ref.obj, method, ref.direct, expect)
        call.refused = refused
        cid, key, holder = call.cid, ref.key, ref.holder
        if holder is self.mta:
            call.issuer = self.me
            proxy = holder.held[key]
            outcome = outcome_of(lambda: getattr(aptrt.blocking(proxy, timeout=SHORT), method)(cid))
        else:
            call.issuer = holder.thread_ident
            entered = self.ledger.event("entered", cid)

            async def body() -> tuple[str, Any]:
                target = holder.held[key]
                try:
                    if how == "fail_after":
                        with anyio.fail_after(SHORT):
                            return VALUE, await getattr(target, method)(cid)
                    if how == "move_on":
                        with anyio.move_on_after(SHORT):
                            return VALUE, await getattr(target, method)(cid)
                        return "moved_on", None
                    seen: list[tuple[str, Any]] = []

                    async def slow() -> None:
                        try:
                            seen.append((VALUE, await target.slow(cid)))
                        except anyio.get_cancelled_exc_class():
                            seen.append(("cancelled", None))
                            raise
                        except Exception as exc:  # noqa: BLE001 - every outcome is classified
                            seen.append((classify(exc), None))

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(slow)
                        end = time.monotonic() + BOUND
                        while not entered.is_set() and not seen:
                            if time.monotonic() > end:
                                raise AssertionError(f"callee {cid} never entered")
                            await anyio.sleep(0.001)
                        tg.cancel_scope.cancel()
                    return seen[0] if seen else ("no outcome", None)
                except Exception as exc:  # noqa: BLE001 - every outcome is classified
                    return classify(exc), None

            outcome = holder.apartment.run_blocking(body, timeout=BOUND)
        self.conclude(call, outcome)
        self.check_outcome(call)
        self.wait_exit(cid)
        exits = self.ledger.exits.get(cid)
        assert exits in (None, ["cancelled"]), f"cancelled callee {cid} ended with {exits}"
        if how == "cancel" and not refused:
            assert exits == ["cancelled"], f"callee {cid} was not cancelled: {exits}"

    # -- passing references ------------------------------------------------------------------------------

    @precondition(lambda self: self.refs)
    @rule(r=st.integers(0, 63), d=st.integers(0, 15))
    def pass_ref(self, r: int, d: int) -> None:
        """Hand a reference to another apartment (it is marshaled: a proxy there, or the object at home)."""
        ref: RefM = _pick(self.ref_list(), r)
        dests = [a for a in self.holders() if a is not ref.holder]
        if dests:
            self.do_pass(ref, _pick(dests, d))

    def do_pass(self, ref: RefM, dest: AptM) -> RefM | None:
        refused = self.export_refusal(ref)
        call = self.new_call(f"pass {ref} to {dest.name}", None, "pass", False, {refused or VALUE})
        key, new = ref.key, next(self.keys)
        src = ref.holder

        def store(value: Any) -> None:
            dest.held[new] = value

        if src is self.mta:
            value = src.held[key]
            kind, _ = outcome_of(lambda: dest.apartment.run_sync_blocking(store, value, timeout=BOUND))
            del value
        elif dest is self.mta:

            def fetch() -> Any:
                return src.held[key]

            kind, value = outcome_of(lambda: src.apartment.run_sync_blocking(fetch, timeout=BOUND))
            if kind == VALUE:
                store(value)
            del value
        else:

            async def hand_over() -> str:
                try:
                    await dest.apartment.run_sync(store, src.held[key])
                except Exception as exc:  # noqa: BLE001 - every outcome is classified
                    return classify(exc)
                return VALUE

            kind = src.apartment.run_blocking(hand_over, timeout=BOUND)
        self.conclude(call, (kind, None))
        self.check_outcome(call)
        if kind != VALUE:
            return None
        got = dest.held[new]
        direct = ref.obj.home is dest
        assert isinstance(got, aptrt.Proxy) != direct, f"{dest.name} got {got!r} for {ref}"
        if not direct:
            assert got.apartment is dest.apartment and got.target_apartment is ref.obj.home.apartment, repr(got)
        passed = self.refs[new] = RefM(new, ref.obj, dest, direct, IProbe if direct or ref.direct else ref.iface)
        return passed

    @precondition(lambda self: self.ref_list(lambda r: not r.direct))
    @rule(r=st.integers(0, 63))
    def query_interface(self, r: int) -> None:
        """QueryInterface on a proxy: another proxy (another reference) on the same object."""
        ref: RefM = _pick(self.ref_list(lambda r: not r.direct), r)
        other = ITag if ref.iface is IProbe else IProbe
        new, key, holder = next(self.keys), ref.key, ref.holder
        expect = f"Disconnected:{ref.obj.gone}" if ref.obj.gone else VALUE

        def qi() -> None:
            holder.held[new] = aptrt.query_interface(holder.held[key], other)

        kind, _ = outcome_of(lambda: self.run_sync_in(holder, qi))
        assert kind == expect, f"query_interface on {ref}: {kind}, expected {expect}"
        if kind == VALUE:
            self.refs[new] = RefM(new, ref.obj, holder, False, other)

    @precondition(lambda self: self.refs)
    @rule(r=st.integers(0, 63), how=st.sampled_from(["release", "foreign", "drop"]))
    def release_ref(self, r: int, how: str) -> None:
        """Give a reference back: ``release()`` where it is held or from another apartment, or drop it
        (garbage collection releases it). A proxy with a slow call in flight is only released explicitly."""
        ref: RefM = _pick(self.ref_list(), r)
        if ref.busy and how == "drop":
            how = "release"
        holder, key = ref.holder, ref.key
        del self.refs[key]
        if ref.direct or how == "drop":
            del holder.held[key]
            return
        others = [a for a in self.holders() if a is not holder]
        if how == "foreign" and others:  # COM §1.4: a proxy may be released from another apartment
            proxy = holder.held.pop(key)
            self.run_sync_in(_pick(others, key), proxy.release)
        elif holder is self.mta:
            proxy = holder.held.pop(key)
            proxy.release()
        else:
            proxy = holder.held.pop(key)
            holder.apartment.run_sync_blocking(proxy.release, timeout=BOUND)
        if holder is self.mta:  # a released proxy refuses calls
            probe = getattr(aptrt.blocking(proxy, timeout=BOUND), "tag" if ref.iface is ITag else "ping")
            kind, _ = outcome_of(functools.partial(probe, 0))
            assert kind == "InvalidArgument", f"a call through a released proxy: {kind}"
            del probe
        del proxy

    # -- contexts ----------------------------------------------------------------------------------------

    @precondition(lambda self: len([c for c in self.live_ctxs() if c.state != "disconnected"]) < MAX_CONTEXTS)
    @rule(a=st.integers(0, 15))
    def create_context(self, a: int) -> None:
        self.do_create_context(_pick([*self.holders(), self.na], a))

    def do_create_context(self, apt: AptM) -> CtxM:
        ctx = CtxM(apt.apartment.create_context(), apt)
        self.ctxs.append(ctx)
        return ctx

    @precondition(lambda self: self.live_ctxs())
    @rule(c=st.integers(0, 15))
    def create_in_context(self, c: int) -> None:
        """Make an object inside a context (ContextCallback): it belongs to the context."""
        self.do_create_in_context(_pick(self.live_ctxs(), c))

    def do_create_in_context(self, ctx: CtxM) -> RefM | None:
        apt, key = ctx.apt, next(self.keys)
        born = len(self.ledger.born)
        # the object is handed out as a proxy (to the test thread) unless it lives in the MTA
        expect = "Disconnected:CONTEXT_DISCONNECTED" if ctx.state != "open" and apt is not self.mta else VALUE
        kind, result = outcome_of(lambda: ctx.ctx.run_sync_blocking(Probe))
        assert kind == expect, f"creating in {ctx}: {kind}, expected {expect}"
        new = self.ledger.born[born:]
        assert len(new) == 1
        uid, ident, name = new[0]
        obj = ObjM(uid, apt, ctx)
        probe = CallM(0, "born", obj, "create", apt is self.mta, set(), issuer=self.me)
        assert self.thread_ok(probe, ident, name, is_async=False), f"object {uid} of {apt.name} born on {name}"
        if kind != VALUE:
            return None
        self.objs[uid] = obj
        self.mta.held[key] = result
        del result
        made = self.refs[key] = RefM(key, obj, self.mta, apt is self.mta, IProbe)
        return made

    @precondition(
        lambda self: (
            len(self.pending) < MAX_PENDING
            and len([c for c in self.live_ctxs() if c.state != "disconnected"]) < MAX_CONTEXTS
        )
    )
    @rule(a=st.integers(0, 15), d=st.integers(0, 15))
    def busy_context(self, a: int, d: int) -> None:
        """A scenario: a new context with an object whose slow call is in flight, reached through a proxy
        from another apartment (what a later disconnect waits for, cancels, or times out on)."""
        ctx = self.do_create_context(_pick([*self.holders(), self.na], a))
        ref = self.do_create_in_context(ctx)
        assert ref is not None
        if ref.direct:  # a context of the MTA: hand the object to an STA, which calls it
            if not self.live_stas():
                return
            ref = self.do_pass(ref, _pick(self.live_stas(), d))
            assert ref is not None
        self.do_start_slow(ref)

    def outstanding(self, ctx: CtxM) -> int:
        return sum(1 for p in self.pending.values() if p.ctx is ctx)

    def settle_context(self, ctx: CtxM) -> None:
        """A disconnecting context with no call left finishes: its objects are disconnected."""
        if ctx.state == "disconnecting" and self.outstanding(ctx) == 0:
            self.context_disconnected(ctx)

    def context_disconnected(self, ctx: CtxM) -> None:
        ctx.state = "disconnected"
        for obj in self.objs.values():
            if obj.ctx is ctx and obj.gone is None:
                obj.gone = "CONTEXT_DISCONNECTED"

    @precondition(lambda self: self.live_ctxs())
    @rule(
        c=st.integers(0, 15),
        how=st.sampled_from(["zero", "short", "wait", "cancel", "default", "inside"]),
        where=st.integers(0, 15),
        busy=st.booleans(),
    )
    def disconnect_context(self, c: int, how: str, where: int, busy: bool) -> None:
        """CoDisconnectContext, from the test's thread (blocking) or from inside an STA (async). *busy*:
        prefer a context with calls outstanding."""
        busy_ctxs = [ctx for ctx in self.live_ctxs() if self.outstanding(ctx)]
        ctx: CtxM = _pick(busy_ctxs if busy and busy_ctxs else self.live_ctxs(), c)
        outstanding = self.outstanding(ctx)
        if how == "wait" and outstanding:
            how = "short"  # waiting without a grace period would wait for the machine itself
        if how == "inside":
            inside = [r for r in self.refs.values() if r.obj.ctx is ctx and r.iface is IProbe and not r.direct]
            if ctx.state == "open" and inside:
                self.disconnect_from_inside(_pick(inside, where))
                return
            how = "zero"
        caller: AptM = _pick(self.holders(), where)
        target = ctx.apt.apartment.default_context if how == "default" else ctx.ctx
        timeout = {"zero": 0.0, "short": 0.01, "wait": None, "cancel": 0.0, "default": 0.0}[how]
        cancel = how == "cancel"
        if how == "default":
            expect = "NotSupported"
        elif ctx.state == "disconnected" or outstanding == 0 or cancel:
            expect = VALUE
        else:
            expect = "RPCTimeout"
        if how != "default" and ctx.state == "open":
            ctx.state = "disconnecting"
            for entry in self.class_objects:  # its class objects are revoked at once
                if entry.ctx is ctx:
                    entry.revoked = True
        affected = [p for p in self.pending.values() if p.ctx is ctx] if cancel else []
        for p in affected:
            p.call.expect = {"CallCancelled"}
        if caller is self.mta:
            kind, _ = outcome_of(lambda: target.disconnect_blocking(timeout, cancel_outstanding=cancel))
        else:

            async def disconnect() -> str:
                try:
                    await target.disconnect(timeout, cancel_outstanding=cancel)
                except Exception as exc:  # noqa: BLE001 - every outcome is classified
                    return classify(exc)
                return VALUE

            kind = self.run_in(caller, disconnect)
        event(f"disconnect ({how}, {len(affected) or outstanding} outstanding): {kind}")
        assert kind == expect, f"disconnecting {ctx} ({how}, from {caller.name}): {kind}, expected {expect}"
        for p in affected:
            self.finish_pending(p)
        if how != "default":
            self.settle_context(ctx)

    def disconnect_from_inside(self, ref: RefM) -> None:
        """A call on one of a context's objects disconnects that context: CONTEXT_E_WOULD_DEADLOCK at once,
        and the context stays open."""
        ctx = ref.obj.ctx
        assert ctx is not None
        call = self.new_call(f"disconnect_own_context via {ref}", ref.obj, "disconnect_own_context", False, {VALUE})
        call.issuer = self.me if ref.holder is self.mta else ref.holder.thread_ident
        self.conclude(call, self.invoke(ref, "disconnect_own_context", call.cid))
        self.check_outcome(call)
        assert call.outcomes[0][1] == "WouldDeadlock", f"disconnecting {ctx} from inside: {call.outcomes[0][1]}"
        event("disconnect from inside a call: WouldDeadlock")

    # -- the global interface table ---------------------------------------------------------------------

    @precondition(lambda self: self.refs)
    @rule(r=st.integers(0, 63))
    def git_register(self, r: int) -> None:
        """RegisterInterfaceInGlobal, from the apartment that holds the reference."""
        ref: RefM = _pick(self.ref_list(), r)
        holder, key, git = ref.holder, ref.key, self.rt.git
        expect = self.export_refusal(ref) or VALUE
        kind, cookie = outcome_of(lambda: self.run_sync_in(holder, lambda: git.register(holder.held[key])))
        event(f"git register: {kind}")
        assert kind == expect, f"registering {ref} in the GIT: {kind}, expected {expect}"
        if kind == VALUE:
            self.git.append(GitM(cookie, ref.obj, IProbe if ref.direct else ref.iface))

    @precondition(lambda self: self.git)
    @rule(i=st.integers(0, 15), d=st.integers(0, 15))
    def git_get(self, i: int, d: int) -> None:
        """GetInterfaceFromGlobal in some apartment: its own proxy, or the object itself at home."""
        entry: GitM = _pick(self.git, i)
        dest: AptM = _pick(self.holders(), d)
        git, new = self.rt.git, next(self.keys)

        def get() -> None:
            dest.held[new] = git.get(entry.cookie)

        if entry.revoked:
            expect = "InvalidArgument"
        elif entry.obj.gone is not None:
            expect = "ObjNotConnected"
        else:
            expect = VALUE
        kind, _ = outcome_of(lambda: self.run_sync_in(dest, get))
        event(f"git get: {kind}")
        assert kind == expect, f"getting GIT cookie {entry.cookie} in {dest.name}: {kind}, expected {expect}"
        if kind == VALUE:
            direct = entry.obj.home is dest
            got = dest.held[new]
            assert isinstance(got, aptrt.Proxy) != direct, f"{dest.name} got {got!r} from the GIT"
            self.refs[new] = RefM(new, entry.obj, dest, direct, IProbe if direct else entry.iface)

    @precondition(lambda self: self.git)
    @rule(i=st.integers(0, 15))
    def git_revoke(self, i: int) -> None:
        entry: GitM = _pick(self.git, i)
        expect = "InvalidArgument" if entry.revoked else VALUE
        kind, _ = outcome_of(lambda: self.rt.git.revoke(entry.cookie))
        assert kind == expect, f"revoking GIT cookie {entry.cookie}: {kind}, expected {expect}"
        entry.revoked = True

    # -- classes and class objects -----------------------------------------------------------------------

    @precondition(lambda self: sum(1 for m in self.classes.values() if m is not None) < MAX_CLASSES)
    @rule(model=st.sampled_from(MODELS))
    def register_class(self, model: TM) -> None:
        clsid = _fresh_clsid()
        cls = type(f"Dynamic{clsid.int & 0xFFFF}", (Probe,), {"__module__": __name__})
        aptrt.registry.register(cls, clsid=clsid, threading_model=model)
        self.classes[clsid] = model

    @precondition(lambda self: self.classes)
    @rule(i=st.integers(0, 15))
    def unregister_class(self, i: int) -> None:
        clsid: uuid.UUID = _pick(list(self.classes), i)
        expect = VALUE if self.classes[clsid] is not None else "NotRegistered"
        kind, _ = outcome_of(lambda: aptrt.registry.unregister(clsid))
        assert kind == expect, f"unregistering {clsid}: {kind}, expected {expect}"
        self.classes[clsid] = None

    @rule(i=st.integers(0, 15), c=st.integers(0, 15))
    def create_registered(self, i: int, c: int) -> None:
        """CoCreateInstance of a dynamic class or a class-object-only CLSID: class objects first, then the
        registry, else REGDB_E_CLASSNOTREG."""
        clsid: uuid.UUID = _pick([*self.classes, *self.object_only], i)
        self.create(clsid, _pick(self.holders(), c))

    @rule(
        w=st.integers(0, 15),
        i=st.integers(0, 15),
        local=st.booleans(),
        single=st.booleans(),
    )
    def register_class_object(self, w: int, i: int, local: bool, single: bool) -> None:
        """CoRegisterClassObject from an apartment or from inside one of its open contexts."""
        places: list[AptM | CtxM] = [*self.holders(), *[c for c in self.live_ctxs() if c.state == "open"]]
        where = _pick(places, w)
        clsid: uuid.UUID = _pick([*self.classes, *self.object_only], i)
        clsctx = CLSCTX.LOCAL_SERVER if local else CLSCTX.INPROC_SERVER
        flags = REGCLS.SINGLEUSE if single else REGCLS.MULTIPLEUSE
        apt, ctx = (where.apt, where) if isinstance(where, CtxM) else (where, None)
        effective = (
            clsctx | CLSCTX.INPROC_SERVER if flags & REGCLS.MULTIPLEUSE and clsctx & CLSCTX.LOCAL_SERVER else clsctx
        )
        duplicate = any(
            not e.revoked and e.clsid == clsid and e.apt is apt and e.clsctx & effective for e in self.class_objects
        )
        register = functools.partial(self.rt.register_class_object, clsid, Probe, context=clsctx, flags=flags)
        if ctx is not None:
            kind, cookie = outcome_of(lambda: ctx.ctx.run_sync_blocking(register))
        else:
            kind, cookie = outcome_of(lambda: self.run_sync_in(apt, register))
        expect = "COMError:CO_E_OBJISREG" if duplicate else VALUE
        event(f"register class object: {kind}")
        assert kind == expect, f"registering a class object for {clsid} in {where}: {kind}, expected {expect}"
        if kind == VALUE:
            self.class_objects.append(ClassObjM(cookie, clsid, apt, ctx, effective, flags))

    @precondition(lambda self: [e for e in self.class_objects if not e.apt.closed])
    @rule(i=st.integers(0, 15), wrong=st.booleans())
    def revoke_class_object(self, i: int, wrong: bool) -> None:
        entry: ClassObjM = _pick([e for e in self.class_objects if not e.apt.closed], i)
        others = [a for a in self.holders() if a is not entry.apt]
        caller: AptM = _pick(others, i) if wrong and others else entry.apt
        if entry.revoked:
            expect = "COMError:CO_E_OBJNOTREG"
        elif caller is not entry.apt:
            expect = "WrongThread"
        else:
            expect = VALUE
        kind, _ = outcome_of(
            lambda: self.run_sync_in(caller, functools.partial(self.rt.revoke_class_object, entry.cookie))
        )
        assert kind == expect, f"revoking class object {entry.cookie} from {caller.name}: {kind}, expected {expect}"
        if kind == VALUE:
            entry.revoked = True

    # -- invariants --------------------------------------------------------------------------------------

    @invariant()
    def every_call_has_one_outcome(self) -> None:
        for call in self.calls.values():
            assert len(call.outcomes) <= 1, f"call {call.cid} ({call.what}) has outcomes {call.outcomes}"
            if call.cid not in self.pending:
                assert len(call.outcomes) == 1, f"call {call.cid} ({call.what}) has no outcome"

    @invariant()
    def callees_ran_once_on_their_apartments_threads(self) -> None:
        with self.ledger.lock:
            runs = {cid: list(seen) for cid, seen in self.ledger.runs.items()}
            exits = {cid: list(how) for cid, how in self.ledger.exits.items()}
        for cid, seen in runs.items():
            call = self.calls.get(cid)
            if call is None:  # cid 0: the probe of a released proxy must not run
                raise AssertionError(f"a call the machine did not issue ran: {cid} {seen}")
            assert len(seen) == 1, f"call {cid} ({call.what}) ran {len(seen)} times: {seen}"
            uid, ident, name = seen[0]
            assert call.obj is not None and uid == call.obj.uid, f"call {cid} ({call.what}) ran on object {uid}"
            is_async = call.method.endswith(("async", "context")) or call.method == "slow"
            assert self.thread_ok(call, ident, name, is_async=is_async), (
                f"call {cid} ({call.what}) ran on thread {name} (object of {call.obj.home.name})"
            )
        for cid, how in exits.items():
            assert len(how) == 1, f"callee {cid} ended {len(how)} times: {how}"

    def expected_exports(self) -> dict[AptM, tuple[int, dict[int, int]]]:
        """For each apartment: how many of its objects are exported, and each one's reference count."""
        out: dict[AptM, tuple[int, dict[int, int]]] = {apt: (0, {}) for apt in self.apts}
        for obj in self.objs.values():
            refs = self.stub_refs(obj)
            if refs:
                exported, counts = out[obj.home]
                counts[obj.uid] = refs
                out[obj.home] = (exported + 1, counts)
        return out

    def check_counts(self) -> None:
        expected = self.expected_exports()
        for apt in self.apts:
            if apt.closed:
                continue
            exported, refs = expected[apt]
            stats = apt.apartment.statistics()
            assert stats.exported == exported, f"{apt.name} exports {stats.exported} objects, expected {exported}"
            stubs = {stub.obj.uid: stub.refs for stub in apt.apartment.exports.stubs() if stub.obj is not None}
            assert stubs == refs, f"{apt.name}'s stubs (uid: refs) are {stubs}, expected {refs}"
            held = sum(1 for r in self.refs.values() if r.holder is apt and not r.direct)
            imports = [p for p in list(apt.apartment.imports.values()) if not p._released]
            assert len(imports) == held, f"{apt.name} holds {len(imports)} live proxies, expected {held}: {imports}"

    def check_contexts(self) -> None:
        for ctx in self.live_ctxs():
            stats = ctx.ctx.statistics()
            objects = sum(1 for obj in self.objs.values() if obj.ctx is ctx and self.has_stub(obj))
            seen = (stats.state.value, stats.outstanding, stats.objects)
            assert seen == (ctx.state, self.outstanding(ctx), objects), f"{ctx}: (state, outstanding, objects) = {seen}"

    def check_quiet(self) -> None:
        if self.pending:
            return
        for apt in self.apts:
            if not apt.closed:
                stats = apt.apartment.statistics()
                assert (stats.queued, stats.running) == (0, 0), f"{apt.name} is not idle: {stats}"

    def eventually(self, check: Callable[[], None]) -> None:
        """*check* holds now, or after garbage collection, or within a bounded wait (cancelled callees
        finish their books on their own threads)."""
        try:
            check()
            return
        except AssertionError:
            pass
        end = time.monotonic() + BOUND / 2
        while True:
            gc.collect()
            try:
                check()
                return
            except AssertionError:
                if time.monotonic() > end:
                    raise
            time.sleep(0.005)

    @invariant()
    def stub_and_proxy_counts_match_live_references(self) -> None:
        self.eventually(self.check_counts)

    @invariant()
    def contexts_match(self) -> None:
        self.eventually(self.check_contexts)

    @invariant()
    def idle_apartments_are_idle(self) -> None:
        self.eventually(self.check_quiet)

    @invariant()
    def class_objects_match(self) -> None:
        live = sum(1 for e in self.class_objects if not e.revoked)
        assert len(self.rt.class_objects) == live, f"{len(self.rt.class_objects)} class objects, expected {live}"

    # -- the end -----------------------------------------------------------------------------------------

    def teardown(self) -> None:
        """Close the runtime with the slow calls still in flight: each gets exactly one outcome."""
        if not self.opened:
            return
        try:
            for p in list(self.pending.values()):
                if p.ref.obj.home is self.na and p.ref.holder is self.mta:
                    # a neutral callee runs on its caller's plain thread: nothing but its release ends it
                    self.ledger.released(p.call.cid).set()
                    self.finish_pending(p)
                else:
                    p.call.expect = {"Disconnected:SERVER_SHUTDOWN"}
            self.opened = False
            self.rt.__exit__(None, None, None)
            for p in list(self.pending.values()):
                self.wait_outcome(p.call)
                self.check_outcome(p.call)
        finally:
            self.ledger.release_all()
            if self.opened:  # a check failed before the runtime closed: close it anyway
                self.opened = False
                self.rt.__exit__(None, None, None)
            for thread in self.helpers:
                thread.join(BOUND)
            for clsid, model in self.classes.items():
                if model is not None:
                    aptrt.registry.unregister(clsid)
            for apt in self.apts:
                apt.held.clear()
            self.refs.clear()
        stuck = [t.name for t in self.helpers if t.is_alive()]
        assert not stuck, f"callers still waiting after the runtime closed: {stuck}"


#: steps per example: long enough for contexts, slow calls and closing apartments to meet
STEPS = 100


def machine_settings() -> settings:
    """The loaded profile (``ci`` by default, ``thorough`` for a long run) with this machine's step count:
    about 2 ms a step, so ``ci`` (50 examples) takes about 10 s and ``thorough`` (2000) a few minutes."""
    return settings(
        settings.default,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.mark.timeout(60 + settings.default.max_examples * STEPS * 0.005)
def test_apartment_model_state_machine() -> None:
    run_state_machine_as_test(ApartmentMachine, settings=machine_settings())


# -- what the machine found, as plain tests --------------------------------------------------------------


@pytest.fixture
def ledger() -> Ledger:
    global LEDGER
    LEDGER = Ledger()
    return LEDGER


def test_neutral_async_callee_honours_a_blocking_callers_timeout(
    aptrt_sync_runtime: aptrt.Runtime, ledger: Ledger
) -> None:
    # A plain thread's blocking call runs an async neutral callee inline, on a loop of its own: the call's
    # timeout must still bound it (it used to run to completion, however long, and return its value).
    proxy = aptrt_sync_runtime.create_instance_blocking(STATIC[TM.NEUTRAL], IProbe)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        aptrt.blocking(proxy, timeout=SHORT).slow(1)
    assert time.monotonic() - started < BOUND / 2
    assert ledger.exits[1] == ["cancelled"]
    assert aptrt.blocking(proxy, timeout=BOUND).ping_async(2) == 2  # no deadline, no scope in the way
    proxy.release()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_callee_stopped_by_the_deadline_stays_inside_move_on_after(
    aptrt_sync_runtime: aptrt.Runtime, ledger: Ledger, backend: str
) -> None:
    # A sync callee that stops at check_cancelled() because its caller's deadline passed used to raise a
    # plain TimeoutError, which escaped the caller's move_on_after (here deterministically: a neutral
    # callee runs inline on the caller's loop, so the caller's scope has not fired yet when it raises).
    rt = aptrt_sync_runtime
    sta = rt.start_sta_blocking("caller", backend=backend)

    async def call_it() -> bool:
        proxy = await rt.create_instance(STATIC[TM.NEUTRAL], IProbe)
        try:
            with anyio.move_on_after(SHORT) as scope:
                await proxy.slow_sync(1)
            return scope.cancelled_caught
        finally:
            proxy.release()

    assert sta.run_blocking(call_it, timeout=BOUND) is True
    assert ledger.exits[1] == ["cancelled"]
    sta.close_blocking()


def test_disconnect_cancels_a_neutral_async_call_on_a_plain_thread(
    aptrt_sync_runtime: aptrt.Runtime, ledger: Ledger
) -> None:
    # An async call of a neutral object made from a plain thread runs inline, on a loop of its own; it had
    # no cancel scope a context could reach, so disconnect(cancel_outstanding=True) waited for it to end
    # by itself instead of cancelling it ("a context always comes down in bounded time").
    ctx = aptrt_sync_runtime.neutral.create_context()
    proxy = ctx.run_sync_blocking(Probe)
    outcome: list[tuple[str, Any]] = []
    caller = threading.Thread(
        target=lambda: outcome.append(outcome_of(lambda: aptrt.blocking(proxy, timeout=BOUND).slow(1)))
    )
    caller.start()
    assert ledger.event("entered", 1).wait(BOUND)
    assert ctx.statistics().outstanding == 1
    started = time.monotonic()
    ctx.disconnect_blocking(0, cancel_outstanding=True)
    assert time.monotonic() - started < BOUND / 2
    caller.join(BOUND)
    assert outcome == [("CallCancelled", None)]
    assert ledger.exits[1] == ["cancelled"]
    assert ctx.statistics().state is aptrt.ContextState.DISCONNECTED
    stats = aptrt_sync_runtime.neutral.statistics()
    assert (stats.cancelled, stats.failed, stats.running) == (1, 0, 0)
    proxy.release()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_neutral_async_method_awaited_from_a_foreign_loop(
    aptrt_sync_runtime: aptrt.Runtime, ledger: Ledger, backend: str
) -> None:
    proxy = aptrt_sync_runtime.create_instance_blocking(STATIC[TM.NEUTRAL], IProbe)

    async def main() -> int:
        assert await proxy.ping(1) == 1  # a sync method runs inline: fine
        result: int = await proxy.ping_async(2)
        return result

    # not supported (yet): a clear typed error, not "Already running asyncio in this thread"
    try:
        with pytest.raises(aptrt.NotSupportedError, match="async method of a neutral object"):
            anyio.run(main, backend=backend)
        assert 2 not in ledger.runs  # it never ran
    finally:
        proxy.release()
