"""An apartment of another process, as this process sees it: :class:`RemoteApartment` and its contexts.

A remote apartment is an STA of this process (its own thread and asyncio loop) that runs no objects: the
calls submitted to it are sent to the other process by its :class:`~aptrt.ray._endpoint.Endpoint`, and the
calls that process makes back into this one are served from its loop. Proxies of remote objects are ordinary
:class:`aptrt.Proxy` objects; only their stub (:class:`~aptrt.ray._stub.RemoteStub`) is remote.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio

from .._core._apartment import ApartmentStatistics
from .._core._call import INF, Call
from .._core._context import Context, ContextState, ContextStatistics
from .._core._exceptions import ApartmentClosedError, DisconnectedError, DisconnectReason, NotSupportedError
from .._core._factory import CLSCTX, REGCLS, ClassFactory, IClassFactory
from .._core._invoke import await_call, block_on_call, invoke, invoke_blocking, new_call
from .._core._loophost import FlushReleases
from .._core._sta import STA
from .._core._threadstate import tls
from .._core._validate import check_cookie, check_dword, check_seconds
from ._endpoint import Endpoint, Transport
from ._stub import RemoteStub
from ._wire import CONTROL

if TYPE_CHECKING:
    import uuid

    from .._core._apartment import Apartment
    from .._core._runtime import Runtime


class _Control:
    """The other side's control object (contexts, statistics), as a call target."""


class RemoteApartment(STA):
    """An STA in another process (a Ray actor): create objects there, call them through proxies, run
    functions there, and disconnect its contexts, exactly as with a local STA.

    Get one with ``await rt.start_sta(host=aptrt.ray.RayHost(...))``. Arguments and results cross by pickling,
    except objects, which cross as references (proxies on the other side). ``where`` says where it runs.
    """

    def __init__(
        self,
        runtime: Runtime,
        name: str,
        transport: Transport,
        *,
        served: Apartment | None = None,
        gateway: STA | None = None,
        where: str = "",
    ) -> None:
        super().__init__(runtime, name, "asyncio")
        #: the STA whose loop runs the connection: this apartment's own thread (the driver's side), or a loop
        #: that already runs there (the actor's side: Ray's loop, adopted as the main STA of its runtime)
        self.gateway: STA = self if gateway is None else gateway
        self.endpoint = Endpoint(self, transport, served)
        #: where the apartment runs (the Ray actor, its process id)
        self.where = where
        self._control_stub = RemoteStub(CONTROL, _Control, self)

    def __repr__(self) -> str:
        state = " closing" if self.closing else ""
        return f"<RemoteApartment {self.name!r} {self.where}{state}>"

    @property
    def actor(self) -> Any:
        """The Ray actor that runs the apartment (its handle; None on the actor's own side)."""
        return getattr(self.endpoint.transport, "handle", None)

    @property
    def pid(self) -> int | None:
        """The process id of the other side, once connected (None on the actor's own side)."""
        return getattr(self.endpoint.transport, "pid", None)

    # -- any thread ------------------------------------------------------------------------------------

    def submit(self, call: Call) -> None:
        self.endpoint.submit(call)

    def _post(self, message: Any) -> bool:
        port = self.gateway._host.port
        return port is not None and port.post(message)

    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start *fn* as a task of the connection's loop (that loop's thread only)."""
        self.gateway._host.spawn(fn, *args)

    def _nudge(self) -> None:
        if self.gateway is self:
            super()._nudge()
        else:
            self._post(FlushReleases(self))

    def statistics(self) -> ApartmentStatistics:
        """Calls this process made to the remote apartment (queued to leave, waiting for a reply, and
        their outcomes); ``exported`` counts the remote objects this process holds proxies of."""
        self.exports.flush_releases()
        endpoint = self.endpoint
        stats = self._stats(len(endpoint._sendq), [endpoint.counters])
        return dataclasses.replace(stats, exported=len(endpoint.imports))

    def queued_calls(self) -> list[Call]:
        return [item[1] for item in list(self.endpoint._sendq) if type(item) is tuple and type(item[1]) is Call]

    def running_calls(self) -> list[Call]:
        return list(self.endpoint.outgoing.values())

    def configure(self, **options: Any) -> None:
        """Load control and reentrancy are the remote apartment's own: configure it in its process."""
        raise NotSupportedError(f"configure {self.name!r} in its own process ({self.where})")

    # -- contexts and class objects --------------------------------------------------------------------

    def create_context(self) -> RemoteContext:
        """A new disconnectable context in the remote apartment (see :class:`RemoteContext`)."""
        if self.closing:
            raise ApartmentClosedError(f"apartment {self.name!r} is closed", reason=DisconnectReason.SERVER_SHUTDOWN)
        ctx = RemoteContext(self)
        self._contexts.add(ctx)
        self.endpoint.control("context_new", ctx.token)
        return ctx

    def serve_class(self, what: uuid.UUID | str | type, *, flags: REGCLS = REGCLS.MULTIPLEUSE) -> int:
        """Make ``rt.create_instance(clsid)`` (and ``CoCreateInstance`` with ``CLSCTX_REMOTE_SERVER``) create
        the class *what* (a registered class, CLSID or ProgID) in this remote apartment. The class must be
        importable in both processes. Returns a cookie for :meth:`revoke_class`.

        :raises ClassNotRegisteredError: *what* names no registered class (``REGDB_E_CLASSNOTREG``)
        :raises COMError: the class is already served here (``CO_E_OBJISREG``)
        """
        from .._core._registry import registry

        flags = REGCLS(check_dword(flags, "flags"))
        registration = registry.lookup(what)
        return self.runtime.class_objects.register(
            registration.clsid,
            RemoteClassFactory(registration.clsid, registration.cls),
            self,
            CLSCTX.REMOTE_SERVER,
            flags,
        )

    def revoke_class(self, cookie: int) -> None:
        """Stop serving a class registered with :meth:`serve_class` (``CO_E_OBJNOTREG`` for an unknown cookie)."""
        self.runtime.class_objects.revoke(check_cookie(cookie), self)

    # -- control calls ---------------------------------------------------------------------------------

    def _control_call(self, name: str, *args: Any, blocking: bool = False) -> Call:
        caller = self._caller()
        return new_call(None, name, args, None, self._control_stub, True, caller, target=self, blocking=blocking)  # type: ignore[arg-type]

    async def control(self, name: str, *args: Any) -> Any:
        return await invoke(self, self._control_call(name, *args))

    def control_blocking(self, name: str, *args: Any) -> Any:
        return invoke_blocking(self, self._control_call(name, *args, blocking=True), None)

    async def fetch_statistics(self) -> ApartmentStatistics:
        """The remote apartment's own :meth:`statistics` (a round trip)."""
        stats: ApartmentStatistics = await self.control("statistics")
        return stats

    # -- life cycle ------------------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Bring the connection up (the transport's work, on this apartment's loop)."""
        await await_call(_call("connect"), lambda waiter: self._on_loop(waiter, self._connect_on_loop))

    def _connect_blocking(self) -> None:
        block_on_call(_call("connect"), lambda waiter: self._on_loop(waiter, self._connect_on_loop))

    async def _connect_on_loop(self) -> None:
        connect = getattr(self.endpoint.transport, "connect", None)
        if connect is not None:
            await connect()

    def _on_loop(self, waiter: Call, fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        if not self._post(_RunOnLoop(self, fn, waiter)):
            waiter.fail(ApartmentClosedError(f"apartment {self.name!r} is closed"))

    async def _disconnect_on_loop(self) -> None:
        # this side lets go first (calls still waiting fail as SERVER_SHUTDOWN, not as a death, and what the
        # other side says while it closes is ignored), then the other side closes and is stopped
        graceful = self.endpoint.gone is None
        self.endpoint.peer_gone(
            DisconnectedError(f"apartment {self.name!r} closed", reason=DisconnectReason.SERVER_SHUTDOWN)
        )
        with anyio.CancelScope(shield=True):
            await self.endpoint.transport.close(graceful)

    async def aclose(self) -> None:
        """Close the apartment: refuse new calls, fail the calls still waiting for a reply
        (:class:`DisconnectedError`), cut every proxy of its objects, stop the other side (the Ray actor),
        and join this side's thread. Idempotent; shielded from cancellation."""
        self.closing = True
        with anyio.CancelScope(shield=True):
            if not self.closed and self.gateway._host.port is not None:
                if tls.s.apartment is self.gateway:  # already on the connection's loop
                    await self._disconnect_on_loop()
                else:
                    await await_call(_call("close"), lambda waiter: self._on_loop(waiter, self._disconnect_on_loop))
        if self.gateway is self:
            await super().aclose()
        elif not self.closed:
            self._finish_close()

    def close_blocking(self) -> None:
        """The blocking twin of :meth:`aclose`, for plain threads."""
        self.closing = True
        if not self.closed and self.gateway._host.port is not None:
            block_on_call(_call("close"), lambda waiter: self._on_loop(waiter, self._disconnect_on_loop))
        if self.gateway is self:
            super().close_blocking()
        elif not self.closed:
            self._finish_close()


def _call(what: str) -> Call:
    return Call(None, what, (), None, None, False, INF, 0, None)


class _RunOnLoop:
    """Loop message: run a coroutine function as a task, and answer *waiter* with its outcome."""

    __slots__ = ("apartment", "fn", "waiter")

    def __init__(self, apartment: RemoteApartment, fn: Callable[[], Coroutine[Any, Any, Any]], waiter: Call) -> None:
        self.apartment = apartment
        self.fn = fn
        self.waiter = waiter

    def handle(self, port: Any) -> None:
        self.apartment._spawn(self._run)

    async def _run(self) -> None:
        try:
            await self.fn()
        except BaseException as exc:
            self.waiter.fail(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.waiter.deliver()


class RemoteContext(Context):
    """A disconnectable context of a remote apartment (``remote.create_context()``).

    ``await ctx.run(fn)`` / ``ctx.run_sync(fn)`` run *fn* inside it, in the remote apartment, and objects made
    there join it. ``await ctx.disconnect(timeout)`` is CoDisconnectContext done in that apartment, with the
    same outcomes: it returns once every object is disconnected (``S_OK``), raises
    :class:`~aptrt.RPCTimeoutError` (``RPC_E_TIMEOUT``, retry until it returns),
    :class:`~aptrt.WouldDeadlockError` from inside a call on one of its objects (also across processes,
    found by the call chain's causality id). Arguments are checked here first (``E_INVALIDARG``).
    """

    apartment: RemoteApartment

    async def disconnect(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - CoDisconnectContext's own timeout
        *,
        cancel_outstanding: bool = False,
        reason: str = "context disconnected",
    ) -> None:
        check_seconds(timeout)
        self._disconnecting()
        await self.apartment.control("context_disconnect", self.token, timeout, cancel_outstanding, reason)
        self.state = ContextState.DISCONNECTED

    def disconnect_blocking(
        self, timeout: float | None = None, *, cancel_outstanding: bool = False, reason: str = "context disconnected"
    ) -> None:
        check_seconds(timeout)
        self._disconnecting()
        self.apartment.control_blocking("context_disconnect", self.token, timeout, cancel_outstanding, reason)
        self.state = ContextState.DISCONNECTED

    def _disconnecting(self) -> None:
        if self.state is ContextState.OPEN:
            self.state = ContextState.DISCONNECTING

    async def wait_disconnected(self) -> None:
        await self.apartment.control("context_wait", self.token)
        self.state = ContextState.DISCONNECTED

    def statistics(self) -> ContextStatistics:
        """Not available without a round trip: use ``await ctx.fetch_statistics()``."""
        raise NotSupportedError("a remote context's statistics take a round trip: await ctx.fetch_statistics()")

    async def fetch_statistics(self) -> ContextStatistics:
        """The context's statistics, from the remote apartment."""
        stats: ContextStatistics = await self.apartment.control("context_statistics", self.token)
        return stats


class RemoteClassFactory(IClassFactory):
    """The class object of a class served by a remote apartment (:meth:`RemoteApartment.serve_class`). It is
    sent there by value (the CLSID, and the class by reference, which imports its module there) and creates
    the object there, through that process's registration of the class."""

    def __init__(self, clsid: uuid.UUID, cls: Callable[..., Any]) -> None:
        self.clsid = clsid
        self.cls = cls

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteClassFactory, (self.clsid, self.cls))

    def _factory(self) -> ClassFactory:
        from .._core._exceptions import ClassNotRegisteredError
        from .._core._registry import ClassRegistration, ThreadingModel, registry

        try:
            return ClassFactory(registry.lookup(self.clsid))
        except ClassNotRegisteredError:  # registered by hand in the other process, not at import
            return ClassFactory(ClassRegistration(self.clsid, self.cls, ThreadingModel.APARTMENT))

    def CreateInstance(self, outer: object, iid: Any) -> Any:
        return self._factory().CreateInstance(outer, iid)

    def LockServer(self, lock: bool) -> None:
        self._factory().LockServer(lock)
