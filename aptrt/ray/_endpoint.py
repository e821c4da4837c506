"""One side of a connection between two processes: calls out, calls in, and the references between them.

Each side of a connection runs an :class:`Endpoint` on the event loop of a local
:class:`~aptrt.ray.RemoteApartment` (the apartment that stands for the other side). Everything here runs on
that loop's thread, except :meth:`Endpoint.submit`, :meth:`Endpoint.cancel` and
:meth:`Endpoint.release_import`, which any thread may call: they append to ``_sendq`` and ring the loop once
per batch.

*Out*: a call made through a proxy of a remote object (or ``remote.run(fn)``) becomes a ``CALL``/``RUN``
message; the caller's deadline travels as seconds left, its causality id as it is; the reply resumes the
caller (``Call.deliver``). A caller that stops waiting sends ``CANCEL``; its late reply is dropped.

*In*: each ``CALL``/``RUN`` runs as a task of this loop, calling the local object through a proxy owned by
this apartment, under a cancel scope with the caller's deadline, so everything a local call does (thread
affinity, contexts, reentrancy, deadlines, cancellation) happens on this side too.

*References*: objects cross as :class:`PeerRef` (exported here under an oid, counted once per hand-out)
and come back as :class:`HomeRef`; the other side gives hand-outs back with ``RELEASE`` when its last
proxy goes. A ``RELEASE`` may overtake a reply sent before it (an actor returns a batch's replies with
that batch and other messages with its standing poll: two Ray returns, in either order), and that reply
may carry a :class:`HomeRef` of the released object (``b.echo(a)``, after which ``b`` lets go of ``a``).
So a ``RELEASE`` is applied only once every call sent before it arrived has been answered.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from .._core._call import INF, RUNNING, Call
from .._core._context import Context
from .._core._exceptions import (
    ApartmentClosedError,
    CallCancelledError,
    COMError,
    DeadlineExceededError,
    DisconnectedError,
    DisconnectReason,
    NotSupportedError,
    WouldDeadlockError,
)
from .._core._execute import Counters
from .._core._interface import Interface, is_interface, primary_interface
from .._core._marshal import PLAIN, is_plain, marshal
from .._core._proxy import Proxy, make_proxy, query_interface
from .._core._threadstate import current_call_var
from ._stub import RemoteStub
from ._wire import CALL, CANCEL, CONTROL, DIED, RELEASE, REPLY, RUN, HomeRef, PeerRef, sendable_error, unsendable

if TYPE_CHECKING:
    from .._core._apartment import Apartment
    from ._remote import RemoteApartment

logger = logging.getLogger("aptrt")


class Transport(Protocol):
    """How an endpoint's messages reach the other process (see ``_transport``)."""

    def attach(self, endpoint: Endpoint) -> None: ...
    def direct(self, call_id: int, call: Call) -> bool: ...
    def send(self, messages: list[tuple[Any, ...]]) -> None: ...
    def reply(self, call_id: int, message: tuple[Any, ...]) -> None: ...
    async def close(self, graceful: bool) -> None: ...


class _Runner:
    """Where an outgoing call's cancel request goes (``Call.abandon`` / ``Call.cancel``)."""

    __slots__ = ("endpoint", "call_id")

    def __init__(self, endpoint: Endpoint, call_id: int) -> None:
        self.endpoint = endpoint
        self.call_id = call_id

    def post(self, item: Any) -> bool:
        call = getattr(item, "call", None)
        reason = getattr(call, "cancel_reason", None) or "the caller stopped waiting"
        self.endpoint._enqueue((CANCEL, self.call_id, reason))
        return True


def _seconds_left(deadline: float) -> float | None:
    """A deadline as it travels: seconds left (None: none); each process's monotonic clock differs."""
    return None if deadline == INF else max(0.0, deadline - time.monotonic())


def _chain(causality: int) -> Call:
    """A stand-in for the remote call being served, so calls made while serving it join its chain."""
    return Call(None, "remote call", (), None, None, False, INF, causality, None)


class Endpoint:
    def __init__(self, apartment: RemoteApartment, transport: Transport, served: Apartment | None) -> None:
        self.apartment = apartment
        #: the apartment of the loop this endpoint runs on: it owns the proxies the endpoint calls and hands out
        self.gateway: Apartment = apartment.gateway
        self.transport = transport
        #: where ``RUN`` messages run and contexts live (the apartment this process hosts), else None
        self.served = served
        self.counters = Counters()
        #: guards ``outgoing`` and ``counters``, which a direct send (``Transport.direct``) and its reply,
        #: on Ray's threads, share with the loop
        self.lock = threading.Lock()
        # any thread → loop
        self._sendq: deque[Any] = deque()
        self._rung = False
        self._ids = itertools.count(1)
        # loop thread only
        self.outgoing: dict[int, Call] = {}
        self.incoming: dict[int, tuple[anyio.CancelScope, list[str]]] = {}
        self.exports: dict[int, list[Any]] = {}  # oid -> [proxy, hand-outs, {method name: proxy}]
        self._export_oids: dict[int, int] = {}  # id(stub) -> oid
        self._oids = itertools.count(CONTROL + 1)
        self.imports: dict[int, RemoteStub] = {}
        #: RELEASEs not applied yet: (the newest call outstanding when it came, oid, hand-outs)
        self._held: deque[tuple[int, int, int]] = deque()
        self.contexts: dict[int, Context] = {}
        #: set once the other side is gone (its process died, or the connection closed)
        self.gone: BaseException | None = None
        transport.attach(self)

    # -- any thread ------------------------------------------------------------------------------------

    def submit(self, call: Call) -> None:
        if self.gone is not None or self.apartment.closing:
            raise self._closed_error(call.name)
        call_id = next(self._ids)
        call.runner = _Runner(self, call_id)
        call.phase = RUNNING  # Call.abandon now posts a cancel request to the runner
        if not self._sendq and self.transport.direct(call_id, call):
            return
        self._enqueue((call_id, call))

    def direct_message(self, call_id: int, call: Call) -> tuple[Any, ...] | None:
        """The message of *call* if it can leave from the caller's thread, as it is: a method call with
        plain arguments, outside any remote context (any thread; registers it as outgoing)."""
        if call.fn is not None or call.kwargs or not is_plain(call.args) or self.gone is not None:
            return None
        stub = call.stub
        assert isinstance(stub, RemoteStub)
        deadline = call.deadline
        remaining = _seconds_left(deadline)
        with self.lock:
            self.outgoing[call_id] = call
            self.counters.running += 1
        return (CALL, call_id, stub.oid, call.name, call.args, None, remaining, call.causality, None)

    def control(self, name: str, *args: Any) -> None:
        """Send a control call whose reply nobody waits for (ordered before later calls)."""
        self._enqueue((CALL, next(self._ids), CONTROL, name, args, None, None, 0, None))

    def release_import(self, stub: RemoteStub) -> None:
        self._enqueue(stub)

    def _enqueue(self, item: Any) -> None:
        self._sendq.append(item)
        self._nudge()

    def _nudge(self) -> None:
        """Have the loop run :meth:`flush` soon (any thread)."""
        if not self._rung:
            self._rung = True
            if not self.apartment._post(_Flush(self)):
                self._rung = False

    def _closed_error(self, what: str) -> DisconnectedError:
        gone = self.gone
        if gone is not None:
            return ApartmentClosedError(
                f"apartment {self.apartment.name!r} is gone ({gone}); {what!r} was not run",
                reason=getattr(gone, "reason", DisconnectReason.APARTMENT_DIED),
            )
        return ApartmentClosedError(
            f"apartment {self.apartment.name!r} is closed; {what!r} was not run",
            reason=DisconnectReason.SERVER_SHUTDOWN,
        )

    # -- out (loop thread) -----------------------------------------------------------------------------

    def flush(self) -> None:
        self._rung = False
        if self._held:
            self._apply_held()
        sendq = self._sendq
        out: list[tuple[Any, ...]] = []
        while sendq:
            item = sendq.popleft()
            if type(item) is tuple and type(item[1]) is Call:
                message = self._call_message(*item)
                if message is not None:
                    out.append(message)
            elif type(item) is RemoteStub:
                if self.imports.get(item.oid) is item:
                    del self.imports[item.oid]
                if item.received and self.gone is None:
                    out.append((RELEASE, item.oid, item.received))
            elif item[0] == CANCEL:
                if item[1] in self.outgoing:
                    out.append(item)
            else:
                out.append(item)
        if out and self.gone is None:
            self.transport.send(out)

    def _call_message(self, call_id: int, call: Call) -> tuple[Any, ...] | None:
        if self.gone is not None:
            call.fail(self._closed_error(call.name))
            return None
        if call.abandoned:  # its caller gave up before it left
            with self.lock:
                self.counters.cancelled += 1
            return None
        try:
            args = call.args if is_plain(call.args) else self.encode(call.args)
            kwargs = self.encode(call.kwargs) if call.kwargs else None
        except COMError as exc:
            call.fail(exc)
            return None
        deadline = call.deadline
        remaining = _seconds_left(deadline)
        ctx = call.context
        ctx_id = ctx.token if ctx is not None and not ctx.default else None
        if call.fn is None:
            stub = call.stub
            assert isinstance(stub, RemoteStub)
            message: tuple[Any, ...] = (
                CALL,
                call_id,
                stub.oid,
                call.name,
                args,
                kwargs,
                remaining,
                call.causality,
                None,
            )
        else:
            message = (RUN, call_id, call.fn, args, call.is_async, remaining, call.causality, ctx_id, call.counted)
        if call.fn is not None or args is not call.args or kwargs is not None:
            error = unsendable(message)
            if error is not None:
                call.fail(error)
                return None
        call.args = ()  # the encoded copy travels; the proxies it held now belong to the export table
        call.kwargs = None
        with self.lock:
            self.outgoing[call_id] = call
            self.counters.running += 1
        return message

    def encode(self, value: Any) -> Any:
        """*value* as it crosses: objects as references, containers rebuilt around them."""
        cls = type(value)
        if cls in PLAIN or cls is HomeRef:
            return value
        if isinstance(value, Proxy):
            stub = value._stub
            if stub.apartment is self.apartment:
                ref = stub.live_object()
                value.release()
                return ref
            return self._export(value)
        if isinstance(value, Interface) and not is_interface(cls):
            # an object of the connection's own apartment (RayHost(own_thread=False)), or an agile object
            # (it crossed apartments raw: served from the neutral apartment)
            if getattr(value, "__aptrt_agile__", False):
                home: Apartment = self.apartment.runtime.neutral
            else:
                home = self.gateway
            stub = home.exports.export(value)
            return self._export(make_proxy(stub, self.gateway, primary_interface(cls)))
        if cls in (list, tuple, set, frozenset):
            return cls(self.encode(item) for item in value)
        if cls is dict:
            return {self.encode(k): self.encode(v) for k, v in value.items()}
        return value

    def _export(self, proxy: Proxy[Any]) -> PeerRef:
        stub = proxy._stub
        oid = self._export_oids.get(id(stub))
        entry = self.exports.get(oid) if oid is not None else None
        if oid is not None and entry is not None and entry[0]._stub is stub:
            entry[1] += 1
            if entry[0] is not proxy:
                proxy.release()
        else:
            oid = next(self._oids)
            self.exports[oid] = [proxy, 1, {}]
            self._export_oids[id(stub)] = oid
        return PeerRef(oid, stub.info.cls, proxy._interface)

    # -- in (loop thread) ------------------------------------------------------------------------------

    def receive(self, messages: list[tuple[Any, ...]]) -> None:
        for message in messages:
            try:
                self._receive_one(message)
            except Exception:
                logger.exception("aptrt: error while handling %r from %r", message[:2], self.apartment.name)
        if self._held:
            self._apply_held()

    def _receive_one(self, message: tuple[Any, ...]) -> None:
        tag = message[0]
        if tag == REPLY:
            self._complete(message[1], message[2], message[3])
        elif tag == CALL or tag == RUN:
            self.apartment._spawn(self._serve, message)
        elif tag == CANCEL:
            running = self.incoming.get(message[1])
            if running is not None:
                running[1].append(message[2])
                running[0].cancel()
        elif tag == RELEASE:
            with self.lock:
                newest = max(self.outgoing, default=0)  # (ids are not inserted in order: direct sends)
            self._held.append((newest, message[1], message[2]))  # applied by receive(), see the module doc
        elif tag == DIED:
            self.peer_gone(DisconnectedError(message[1], reason=DisconnectReason.APARTMENT_DIED))

    def _apply_held(self) -> None:
        """Apply the held RELEASEs whose earlier calls have all been answered, in order (loop thread)."""
        held = self._held
        while held:
            with self.lock:
                oldest = min(self.outgoing, default=None)
            if oldest is not None and oldest <= held[0][0]:
                return
            _, oid, count = held.popleft()
            entry = self.exports.get(oid)
            if entry is not None:
                entry[1] -= count
                if entry[1] <= 0:
                    del self.exports[oid]
                    self._export_oids.pop(id(entry[0]._stub), None)
                    _release_entry(entry)

    def _complete(self, call_id: int, ok: bool, value: Any) -> None:
        """Answer outgoing call *call_id* (the loop; or a Ray thread, for a plain value)."""
        with self.lock:
            call = self.outgoing.pop(call_id, None)
            if call is None:
                return
            self.counters.running -= 1
            if call.abandoned:
                self.counters.cancelled += 1
        if self._held:
            self._nudge()  # a held RELEASE may wait for this answer (flush applies it, on the loop)
        if call.abandoned:
            self._drop(value)
            return
        if ok:
            try:
                call.value = value if type(value) in PLAIN else self.decode(value, call.caller or self.gateway)
            except BaseException as exc:  # noqa: BLE001 - a reference that cannot be taken: the caller gets why
                call.error = exc
                ok = False
        else:
            call.error = value
        with self.lock:
            counters = self.counters
            if ok:
                counters.completed += 1
                counters.latency.record(time.perf_counter() - call.started)
            elif type(call.error) is DeadlineExceededError:
                counters.expired += 1
            elif isinstance(call.error, CallCancelledError):
                counters.cancelled += 1
            else:
                counters.failed += 1
        call.deliver()

    def _drop(self, value: Any) -> None:
        """A reply nobody takes: give back the references it carried."""
        releases = [(RELEASE, ref.oid, 1) for ref in _peer_refs(value)]
        if releases and self.gone is None:
            self.transport.send(releases)

    def decode(self, value: Any, owner: Apartment, made: list[Proxy[Any]] | None = None) -> Any:
        """*value* as apartment *owner* of this process sees it: references become proxies (or objects)."""
        cls = type(value)
        if cls in PLAIN:
            return value
        if cls is HomeRef:
            entry = self.exports.get(value.oid)
            if entry is None:
                raise DisconnectedError(
                    f"an object of this process sent back by {self.apartment.name!r} is no longer exported",
                    reason=DisconnectReason.RELEASED,
                )
            result = marshal(entry[0], self.gateway, owner)
        elif cls is PeerRef:
            stub = self.imports.get(value.oid)
            if stub is None or stub.disconnected:
                stub = self.imports[value.oid] = RemoteStub(value.oid, value.cls, self.apartment)
            stub.received += 1
            result = make_proxy(stub, owner, value.interface)  # type: ignore[arg-type]  # a Stub's stand-in
        elif cls in (list, tuple, set, frozenset):
            return cls(self.decode(item, owner, made) for item in value)
        elif cls is dict:
            return {self.decode(k, owner, made): self.decode(v, owner, made) for k, v in value.items()}
        else:
            return value
        if made is not None and isinstance(result, Proxy):
            made.append(result)
        return result

    async def _serve(self, message: tuple[Any, ...]) -> None:
        call_id = message[1]
        reasons: list[str] = []
        made: list[Proxy[Any]] = []
        remaining = message[6] if message[0] == CALL else message[5]
        reply: tuple[Any, ...]
        with anyio.CancelScope() as scope:
            if remaining is not None:
                scope.deadline = anyio.current_time() + remaining
            self.incoming[call_id] = (scope, reasons)
            current_call_var.set(_chain(message[7] if message[0] == CALL else message[6]))
            try:
                value = await self._run(message, made)
                encoded = self.encode(value)
                error = None if type(encoded) in PLAIN else unsendable(encoded)
                reply = (REPLY, call_id, True, encoded) if error is None else (REPLY, call_id, False, error)
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the caller
                if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: it killed the apartment here
                    exc = DisconnectedError(
                        f"apartment {self._where()} died of {exc!r} while running {self._name(message)}",
                        reason=DisconnectReason.APARTMENT_DIED,
                    )
                reply = (REPLY, call_id, False, sendable_error(exc, self._where()))
            finally:
                self.incoming.pop(call_id, None)
                for proxy in made:
                    proxy.release()
        if scope.cancelled_caught:
            if reasons:
                reply = (
                    REPLY,
                    call_id,
                    False,
                    CallCancelledError(f"{self._name(message)} was cancelled", reason=reasons[0]),
                )
            else:
                reply = (REPLY, call_id, False, DeadlineExceededError(f"the deadline of {self._name(message)} passed"))
        if self.gone is None:
            self.transport.reply(call_id, reply)
        served = self.served
        if served is not None and served.failure is not None and self.gone is None:
            self.transport.send([(DIED, f"apartment {served.name!r} died of {served.failure!r}")])

    def _name(self, message: tuple[Any, ...]) -> str:
        if message[0] == CALL:
            return repr(message[3])
        return repr(getattr(message[2], "__qualname__", None) or message[2])

    def _where(self) -> str:
        served = self.served
        return f"process {os.getpid()}" + (f", apartment {served.name!r}" if served is not None else "")

    async def _run(self, message: tuple[Any, ...], made: list[Proxy[Any]]) -> Any:
        owner = self.gateway
        if message[0] == CALL:
            _, _, oid, name, args, kwargs, _, _, _ = message
            args = self.decode(args, owner, made)
            kwargs = self.decode(kwargs, owner, made) if kwargs else {}
            if oid == CONTROL:
                return await self._control(name, *args)
            entry = self.exports.get(oid)
            if entry is None:
                raise DisconnectedError(f"object #{oid} is no longer exported", reason=DisconnectReason.RELEASED)
            return await getattr(_method_proxy(entry, name), name)(*args, **kwargs)
        _, _, fn, args, is_async, _, _, ctx_id, counted = message
        args = self.decode(args, owner, made)
        served = self._served()
        if ctx_id is not None:
            ctx = self._context(ctx_id)
            if counted:
                return await ctx._call_counted(lambda: fn(*args))
            return await (ctx.run(fn, *args) if is_async else ctx.run_sync(fn, *args))
        return await (served.run(fn, *args) if is_async else served.run_sync(fn, *args))

    def _served(self) -> Apartment:
        if self.served is None:
            raise NotSupportedError(f"this process serves no apartment to {self.apartment.name!r}")
        return self.served

    def _context(self, ctx_id: int) -> Context:
        ctx = self.contexts.get(ctx_id)
        if ctx is None:
            raise DisconnectedError(f"remote context {ctx_id} is gone", reason=DisconnectReason.CONTEXT_DISCONNECTED)
        return ctx

    # -- control calls (served side) -------------------------------------------------------------------

    async def _control(self, name: str, *args: Any) -> Any:
        if name == "context_new":
            self.contexts[args[0]] = self._served().create_context()
            return None
        if name == "context_disconnect":
            ctx_id, timeout, cancel_outstanding, reason = args
            ctx = self._context(ctx_id)
            chain = current_call_var.get()
            with ctx._lock:
                inside = chain is not None and any(c.causality == chain.causality for c in ctx._running)
            if inside:
                raise WouldDeadlockError(
                    f"disconnecting {ctx!r} from inside a call on one of its objects would wait for itself",
                    cycle=(ctx.apartment.name,),
                )
            await ctx.disconnect(timeout, cancel_outstanding=cancel_outstanding, reason=reason)
            return None
        if name == "context_wait":
            await self._context(args[0]).wait_disconnected()
            return None
        if name == "context_statistics":
            return self._context(args[0]).statistics()
        if name == "statistics":
            return self._served().statistics()
        if name == "ping":
            return args[0] if args else None
        raise NotSupportedError(f"unknown control call {name!r}")

    # -- the end (loop thread) -------------------------------------------------------------------------

    def peer_gone(self, error: BaseException) -> None:
        """The other side is gone (died, or closed): every call out fails with *error*'s reason, every call in
        is cancelled, every reference either way is cut."""
        if self.gone is not None:
            return
        self.gone = error
        reason = getattr(error, "reason", DisconnectReason.APARTMENT_DIED)
        if reason is DisconnectReason.APARTMENT_DIED:
            self.apartment._loop_died(error)
        else:
            self.apartment.closing = True
        with self.lock:
            outgoing, self.outgoing = self.outgoing, {}
            for call in outgoing.values():
                self.counters.running -= 1
                if call.abandoned:
                    self.counters.cancelled += 1
                else:
                    self.counters.failed += 1
        for call in outgoing.values():
            if not call.abandoned:
                call.fail(DisconnectedError(f"{call.name!r} was lost: {error}", reason=reason))
        self.flush()  # fails what was still waiting to leave
        for scope, reasons in list(self.incoming.values()):
            reasons.append(f"the caller's process is gone: {error}")
            scope.cancel()
        for stub in list(self.imports.values()):
            stub.disconnect(reason)
        self.imports.clear()
        self._held.clear()
        exports, self.exports = self.exports, {}
        self._export_oids.clear()
        for entry in exports.values():
            _release_entry(entry)


class _Flush:
    """Loop message: send what is queued."""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def handle(self, port: Any) -> None:
        self.endpoint.flush()


def _method_proxy(entry: list[Any], name: str) -> Proxy[Any]:
    """A proxy on the exported object whose interface has method *name* (the caller's proxy may be for
    another of the object's interfaces than the one it was exported with)."""
    proxy: Proxy[Any] = entry[0]
    if name in proxy._interface.__interface_methods__:
        return proxy
    by_name: dict[str, Proxy[Any]] = entry[2]
    other = by_name.get(name)
    if other is None:
        for interface in proxy._stub.info.interfaces:
            if name in interface.__interface_methods__:
                other = by_name[name] = query_interface(proxy, interface)
                break
        else:
            raise AttributeError(f"{proxy._stub.info.cls.__qualname__} has no interface method {name!r}")
    return other


def _release_entry(entry: list[Any]) -> None:
    entry[0].release()
    for proxy in entry[2].values():
        proxy.release()


def _peer_refs(value: Any) -> list[PeerRef]:
    cls = type(value)
    if cls is PeerRef:
        return [value]
    if cls in (list, tuple, set, frozenset):
        return [ref for item in value for ref in _peer_refs(item)]
    if cls is dict:
        return [ref for pair in value.items() for item in pair for ref in _peer_refs(item)]
    return []
