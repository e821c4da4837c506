"""Contexts: ``apartment.create_context()``, ``Context.run`` (IContextCallback::ContextCallback),
``Context.disconnect`` (CoDisconnectContext) and ``aptrt.disconnect_object`` (CoDisconnectObject).
Design §4, COM §1.5, the seed (CoDisconnectContext's reference page)."""

from __future__ import annotations

import functools
import gc
import math
import threading
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

import aptrt

from .objects import Gate, Signals, wait_event, wait_until

HRESULT = aptrt.HRESULT
CLSCTX = aptrt.CLSCTX
OPEN = aptrt.ContextState.OPEN
DISCONNECTING = aptrt.ContextState.DISCONNECTING
DISCONNECTED = aptrt.ContextState.DISCONNECTED


# -- objects -------------------------------------------------------------------------------------------


class IProbe(aptrt.Interface, iid="eab214f9-f811-464a-843d-64f79e53b4b1"):
    def token(self) -> int: ...
    async def token_async(self) -> int: ...
    def echo(self, n: int) -> int: ...
    async def echo_async(self, n: int) -> int: ...
    def spawn(self) -> IProbe: ...
    def cut_self(self) -> tuple[bool, int]: ...
    async def cut_self_async(self) -> tuple[bool, int]: ...
    async def disconnect_context(self, ctx: aptrt.Context, grace: float | None) -> str: ...
    def disconnect_context_blocking(self, ctx: aptrt.Context, grace: float | None) -> str: ...
    async def relay(self, other: IProbe, ctx: aptrt.Context, grace: float | None) -> str: ...
    def relay_blocking(self, other: IProbe, ctx: aptrt.Context, grace: float | None) -> str: ...


class Log:
    """Entries from several apartments (a plain object crosses apartments as it is; a list is copied)."""

    def __init__(self) -> None:
        self.entries: list[object] = []

    def append(self, entry: object) -> None:
        self.entries.append(entry)


class Probe(IProbe):
    """Says which context it runs in, and disconnects things from inside its calls."""

    def __init__(self, log: Log | None = None) -> None:
        self.log = log if log is not None else Log()

    def token(self) -> int:
        return aptrt.context_token()

    async def token_async(self) -> int:
        await anyio.lowlevel.checkpoint()
        return aptrt.context_token()

    def echo(self, n: int) -> int:
        return n

    async def echo_async(self, n: int) -> int:
        await anyio.lowlevel.checkpoint()
        return n

    def spawn(self) -> Probe:
        return Probe(self.log)  # exported on the way out: in the context this call runs in

    def cut_self(self) -> tuple[bool, int]:
        cut = aptrt.disconnect_object(self)
        return cut, self.echo(7)  # the running call goes on, and completes

    async def cut_self_async(self) -> tuple[bool, int]:
        cut = aptrt.disconnect_object(self)
        await anyio.lowlevel.checkpoint()
        return cut, await self.echo_async(8)

    async def disconnect_context(self, ctx: aptrt.Context, grace: float | None) -> str:
        self.log.append(("disconnect", aptrt.current_causality()))
        await ctx.disconnect(grace)
        return "disconnected"

    def disconnect_context_blocking(self, ctx: aptrt.Context, grace: float | None) -> str:
        self.log.append(("disconnect", aptrt.current_causality()))
        ctx.disconnect_blocking(grace)
        return "disconnected"

    async def relay(self, other: aptrt.Proxy[IProbe], ctx: aptrt.Context, grace: float | None) -> str:
        self.log.append(("relay", aptrt.current_causality()))
        result: str = await other.disconnect_context(ctx, grace)
        return result

    def relay_blocking(self, other: aptrt.Proxy[IProbe], ctx: aptrt.Context, grace: float | None) -> str:
        self.log.append(("relay", aptrt.current_causality()))
        result: str = aptrt.blocking(other).disconnect_context(ctx, grace)
        return result


class Latch:
    """An async gate in one apartment's loop: ``wait`` parks a call until ``open`` runs in that loop.

    It is opened with ``apartment.run(latch.open)``, which is not a call on an object: a disconnecting
    context does not refuse it. ``entered`` counts the calls that reached the latch.
    """

    def __init__(self, expected: int = 1) -> None:
        self._lock = threading.Lock()
        self.expected = expected
        self.waiting = 0
        self.all_entered = threading.Event()
        self._event: anyio.Event | None = None
        self._open = False

    async def wait(self) -> None:
        if self._event is None:
            self._event = anyio.Event()
        with self._lock:
            self.waiting += 1
            if self.waiting >= self.expected:
                self.all_entered.set()
        if not self._open:
            await self._event.wait()

    async def open(self) -> None:
        self._open = True
        if self._event is not None:
            self._event.set()


class IParked(aptrt.Interface, iid="f8ea06c3-8d59-46ca-9a43-1d20c3730c11"):
    async def park(self) -> str: ...
    async def until_open(self, n: int) -> int: ...
    def spin(self) -> str: ...
    def quick(self, n: int) -> int: ...


class Parked(IParked):
    """Calls that stay outstanding until the test lets them go (or a disconnect cancels them)."""

    def __init__(self, signals: Signals, latch: Latch | None = None) -> None:
        self.sig = signals
        self.latch = latch
        self.ran = 0
        self._lock = threading.Lock()

    async def park(self) -> str:
        """Wait until cancelled; log the reason the callee sees."""
        self.sig.entered.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.sig.log.append(("cancelled", aptrt.current_cancel_reason()))
            raise
        finally:
            self.sig.done.set()
        raise AssertionError("unreachable")

    async def until_open(self, n: int) -> int:
        assert self.latch is not None
        self.sig.entered.set()
        await self.latch.wait()
        with self._lock:
            self.ran += 1
        return n

    def spin(self) -> str:
        """Sync: poll check_cancelled until cancelled (or released); log what it saw."""
        self.sig.entered.set()
        try:
            for _ in range(5000):
                try:
                    aptrt.check_cancelled()
                except aptrt.CallCancelledError as exc:
                    self.sig.log.append(("cancelled", exc.reason, aptrt.current_cancel_reason()))
                    raise
                if self.sig.release.wait(0.001):
                    return "released"
            raise AssertionError("neither cancelled nor released")
        finally:
            self.sig.done.set()

    def quick(self, n: int) -> int:
        with self._lock:
            self.ran += 1
        return n


class Holder:
    """Keeps what an apartment receives (a plain object crosses apartments as it is; a list is copied)."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def keep(self, *items: Any) -> None:
        self.items.extend(items)

    def release_all(self) -> None:
        for item in self.items:
            if isinstance(item, aptrt.Proxy):
                item.release()
        self.items.clear()


def collect() -> None:
    gc.collect()
    gc.collect()


def assert_context_disconnected(exc: BaseException) -> None:
    assert isinstance(exc, aptrt.DisconnectedError), repr(exc)
    assert exc.hresult == HRESULT.RPC_E_DISCONNECTED
    assert exc.reason is aptrt.DisconnectReason.CONTEXT_DISCONNECTED


async def refused(call: Callable[[], Awaitable[object]]) -> None:
    """*call* fails with RPC_E_DISCONNECTED because of a context disconnect."""
    with pytest.raises(aptrt.DisconnectedError) as excinfo:
        await call()
    assert_context_disconnected(excinfo.value)


async def outcome_of(fn: Callable[..., Awaitable[object]], *args: Any) -> object:
    try:
        return await fn(*args)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc


def other_backend(backend: str) -> str:
    return "trio" if backend != "trio" else "asyncio"


async def export_in(ctx: aptrt.Context, factory: Callable[..., Any], *args: Any) -> Any:
    """Make an object inside *ctx* and get it into the calling apartment (the main STA) as a proxy.

    Made and handed over inside the context, so the object is exported there, whichever apartment the
    context lives in (for the main STA's own contexts the object goes through a helper STA and back).
    """
    return await ctx.run_sync(factory, *args)


# -- the basics -----------------------------------------------------------------------------------------


class TestContexts:
    async def test_default_contexts(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta("plain", backend=sta_backend)
        main = rt.main_sta
        assert main is not None
        for apartment in (main, sta, rt.mta):
            ctx = apartment.default_context
            assert ctx.default and ctx.apartment is apartment
            assert ctx.statistics() == aptrt.ContextStatistics(
                token=ctx.token, apartment=apartment.name, default=True, state=OPEN, objects=0, outstanding=0, refused=0
            )
        assert aptrt.current_context() is main.default_context
        assert aptrt.context_token() == main.default_context.token
        assert await sta.run_sync(aptrt.current_context) is sta.default_context
        assert await sta.run_sync(aptrt.context_token) == sta.default_context.token
        assert await rt.mta.run_sync(aptrt.current_context) is rt.mta.default_context
        tokens = {apartment.default_context.token for apartment in (main, sta, rt.mta)}
        assert len(tokens) == 3
        # a plain thread is in the implicit MTA: its default context
        assert await anyio.to_thread.run_sync(aptrt.current_context) is rt.mta.default_context

    async def test_new_contexts(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta("ctxhome", backend=sta_backend)
        first, second = sta.create_context(), sta.create_context()
        assert first is not second and first.token != second.token
        assert first.token != sta.default_context.token
        assert not first.default and first.apartment is sta
        assert first.state is OPEN and not first.disconnected
        assert first.statistics() == aptrt.ContextStatistics(
            token=first.token, apartment="ctxhome", default=False, state=OPEN, objects=0, outstanding=0, refused=0
        )
        assert str(first.token) in repr(first) and "ctxhome" in repr(first)

    @pytest.mark.parametrize("where", ["sta", "mta", "main"])
    async def test_run_enters_the_context_in_its_apartment(
        self, rt: aptrt.Runtime, sta_backend: str, where: str
    ) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        apartment: aptrt.Apartment = {"sta": sta, "mta": rt.mta, "main": rt.main_sta}[where]  # type: ignore[assignment]
        ctx = apartment.create_context()

        def seen_sync(tag: str) -> tuple[str, aptrt.Context, int, aptrt.Apartment]:
            return tag, aptrt.current_context(), aptrt.context_token(), aptrt.current_apartment()

        async def seen_async(tag: str) -> tuple[str, aptrt.Context, int, aptrt.Apartment]:
            await anyio.lowlevel.checkpoint()
            inner = aptrt.current_context()
            await anyio.lowlevel.checkpoint()
            return tag, inner, aptrt.context_token(), aptrt.current_apartment()

        assert await ctx.run_sync(seen_sync, "s") == ("s", ctx, ctx.token, apartment)
        assert await ctx.run(seen_async, "a") == ("a", ctx, ctx.token, apartment)
        # leaving the context restores the caller's
        assert aptrt.current_context() is rt.main_sta.default_context  # type: ignore[union-attr]
        # the blocking twin, from a plain thread
        assert await anyio.to_thread.run_sync(ctx.run_sync_blocking, seen_sync, "b") == ("b", ctx, ctx.token, apartment)
        # and from inside another apartment
        assert await sta.run(ctx.run_sync, seen_sync, "x") == ("x", ctx, ctx.token, apartment)

    async def test_contexts_nest_and_unwind(self, rt: aptrt.Runtime) -> None:
        main = rt.main_sta
        assert main is not None
        outer, inner = main.create_context(), main.create_context()

        async def in_outer() -> list[int]:
            seen = [aptrt.context_token()]
            seen.append(await inner.run_sync(aptrt.context_token))
            seen.append(aptrt.context_token())
            return seen

        assert await outer.run(in_outer) == [outer.token, inner.token, outer.token]
        assert aptrt.context_token() == main.default_context.token

    @pytest.mark.parametrize("where", ["sta", "mta"])
    async def test_objects_exported_inside_belong_to_the_context(
        self, rt: aptrt.Runtime, sta_backend: str, where: str
    ) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        apartment: aptrt.Apartment = sta if where == "sta" else rt.mta
        ctx, other = apartment.create_context(), apartment.create_context()
        probe = await export_in(ctx, Probe)
        assert isinstance(probe, aptrt.Proxy)
        assert await probe.token() == ctx.token
        assert await probe.token_async() == ctx.token
        spawned = await probe.spawn()  # made by a call running in the context: it joins it
        assert await spawned.token() == ctx.token
        plain = await apartment.create(Probe)  # made outside any context: the default one
        assert await plain.token() == apartment.default_context.token
        assert ctx.statistics().objects == 2
        assert other.statistics().objects == 0
        assert apartment.default_context.statistics().objects == 1

        async def made_inside() -> Any:
            return Probe()

        third = await ctx.run(made_inside)  # an async callback too
        assert await third.token() == ctx.token
        assert ctx.statistics().objects == 3

    async def test_objects_of_a_main_sta_context(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        main = rt.main_sta
        assert main is not None
        client = await rt.start_sta("client", backend=sta_backend)
        ctx = main.create_context()
        holder = Holder()

        async def hand_over() -> None:
            await client.run_sync(holder.keep, Probe())  # exported while the code runs inside the context

        await ctx.run(hand_over)
        assert ctx.statistics().objects == 1

        async def use() -> tuple[int, int]:
            proxy = holder.items[0]
            return await proxy.token(), await proxy.echo_async(3)

        assert await client.run(use) == (ctx.token, 3)
        await ctx.disconnect()
        with pytest.raises(aptrt.DisconnectedError) as excinfo:
            await client.run(use)
        assert_context_disconnected(excinfo.value)
        await client.run_sync(holder.release_all)

    async def test_main_sta_context_owns_what_it_created(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # "objects exported while code runs inside it (e.g. created inside ctx.run_sync and returned)
        # belong to it": a context of the caller's own apartment runs the callback directly and hands
        # back the object itself; it must still be the context's object once it is exported.
        main = rt.main_sta
        assert main is not None
        client = await rt.start_sta("client", backend=sta_backend)
        ctx = main.create_context()
        made = await ctx.run_sync(Probe)
        assert type(made) is Probe
        holder = Holder()
        await client.run_sync(holder.keep, made)

        async def token() -> int:
            result: int = await holder.items[0].token()
            return result

        assert await client.run(token) == ctx.token
        assert ctx.statistics().objects == 1
        await client.run_sync(holder.release_all)


# -- disconnecting ----------------------------------------------------------------------------------------


class TestDisconnect:
    @pytest.mark.parametrize("where", ["sta", "mta"])
    async def test_success_disconnects_every_object(self, rt: aptrt.Runtime, sta_backend: str, where: str) -> None:
        home = await rt.start_sta("home", backend=sta_backend) if where == "sta" else rt.mta
        client = await rt.start_sta("client", backend=other_backend(sta_backend))
        ctx, survivor_ctx = home.create_context(), home.create_context()

        def make() -> tuple[Probe, Probe, weakref.ref[Probe], weakref.ref[Probe]]:
            first, second = Probe(), Probe()
            return first, second, weakref.ref(first), weakref.ref(second)

        first, second, ref1, ref2 = await ctx.run_sync(make)
        spawned = await first.spawn()
        survivor = await export_in(survivor_ctx, Probe)
        default = await home.create(Probe)
        holder = Holder()
        await client.run_sync(holder.keep, first, second)  # held in another apartment as well
        exported = home.statistics().exported
        assert ctx.statistics().objects == 3

        await ctx.disconnect()
        stats = ctx.statistics()
        assert (stats.state, stats.objects, stats.outstanding, stats.refused) == (DISCONNECTED, 0, 0, 0)
        assert ctx.disconnected
        assert home.statistics().exported == exported - 3
        for proxy in (first, second, spawned):
            await refused(lambda p=proxy: p.echo(1))
            await refused(lambda p=proxy: p.echo_async(1))
            assert "disconnected" in repr(proxy)

        async def client_calls() -> list[object]:
            return [await outcome_of(p.echo, 1) for p in holder.items]

        for exc in await client.run(client_calls):
            assert_context_disconnected(exc)  # type: ignore[arg-type]
        # the context's objects are let go although proxies to them are still held
        collect()
        assert ref1() is None and ref2() is None
        # other contexts of the apartment are untouched
        assert await survivor.echo(2) == 2 and await default.echo_async(3) == 3
        assert survivor_ctx.statistics().state is OPEN
        # disconnecting again, and waiting for it, succeed at once
        await ctx.disconnect(0)
        await ctx.wait_disconnected()
        await anyio.to_thread.run_sync(ctx.disconnect_blocking, 0)
        await client.run_sync(holder.release_all)

    async def test_empty_context_disconnects_at_once(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        for timeout in (0, 0.0, None, 5):
            ctx = sta.create_context()
            await ctx.disconnect(timeout)
            assert ctx.disconnected
        ctx = sta.create_context()
        await anyio.to_thread.run_sync(ctx.disconnect_blocking, 0)
        assert ctx.disconnected

    async def test_waits_for_outstanding_calls(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        sync_sig, async_sig = Signals(), Signals()
        latch = Latch()
        gate = await export_in(ctx, Gate, sync_sig)
        parked = await export_in(ctx, Parked, async_sig, latch)
        results: dict[str, object] = {}
        done = anyio.Event()

        async def disconnect() -> None:
            await ctx.disconnect()
            done.set()

        async def call(name: str, fn: Callable[[], Awaitable[object]]) -> None:
            results[name] = await outcome_of(fn)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "async", functools.partial(parked.until_open, 5))
                await wait_event(async_sig.entered)
                tg.start_soon(call, "sync", gate.hold)
                await wait_event(sync_sig.entered)
                assert ctx.statistics().outstanding == 2
                tg.start_soon(disconnect)
                await wait_until(lambda: ctx.state is DISCONNECTING, "the disconnect began")
                stats = ctx.statistics()
                assert (stats.state, stats.outstanding, stats.objects) == (DISCONNECTING, 2, 2)
                assert not done.is_set() and results == {}
                sync_sig.release.set()  # the STA's thread is free again: the sync call ends
                await wait_until(lambda: "sync" in results, "the sync call ended")
                assert ctx.statistics().outstanding == 1
                assert not done.is_set()
                await home.run(latch.open)
        assert results == {"async": 5, "sync": "released"}
        assert ctx.statistics().state is DISCONNECTED
        await refused(functools.partial(parked.quick, 1))
        await refused(functools.partial(gate.tick, 1))

    async def test_calls_arriving_while_waiting_are_all_refused(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta("home", backend=sta_backend)
        callers = [await rt.start_sta(f"caller-{b}", backend=b) for b in ("asyncio", "trio", "uvloop")]
        ctx, neighbour_ctx = home.create_context(), home.create_context()
        sig, latch = Signals(), Latch()
        parked = await export_in(ctx, Parked, sig, latch)
        probe = await export_in(ctx, Probe)
        neighbour = await export_in(neighbour_ctx, Probe)
        on_mta = Holder()
        await rt.mta.run_sync(on_mta.keep, parked, probe)  # proxies for plain threads
        outcome: list[object] = []

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def hold() -> None:
                    outcome.append(await parked.until_open(1))

                tg.start_soon(hold)
                await wait_event(sig.entered)
                tg.start_soon(ctx.disconnect)
                await wait_until(lambda: ctx.state is DISCONNECTING, "the disconnect began")

                async def from_loop(p: Any, q: Any) -> list[object]:
                    calls = [
                        functools.partial(p.quick, 1),
                        functools.partial(p.until_open, 2),
                        functools.partial(q.echo, 3),
                        functools.partial(q.echo_async, 4),
                        q.spawn,
                        q.token_async,
                    ]
                    return [await outcome_of(c) for c in calls]

                def from_thread() -> list[object]:
                    p, q = (aptrt.blocking(x) for x in on_mta.items)
                    out: list[object] = []
                    for c in (functools.partial(p.quick, 1), functools.partial(q.echo_async, 2), q.spawn):
                        try:
                            out.append(c())
                        except Exception as exc:  # noqa: BLE001
                            out.append(exc)
                    return out

                async def from_mta(p: Any, q: Any) -> list[object]:
                    return await from_loop(p, q)

                seen: list[object] = []
                seen += await from_loop(parked, probe)
                for caller in callers:
                    seen += await caller.run(from_loop, parked, probe)
                seen += await rt.mta.run(from_mta, parked, probe)
                seen += await anyio.to_thread.run_sync(from_thread)
                assert len(seen) == 6 * 5 + 3
                for exc in seen:
                    assert_context_disconnected(exc)  # type: ignore[arg-type]
                stats = ctx.statistics()
                assert (stats.state, stats.outstanding, stats.refused) == (DISCONNECTING, 1, len(seen))
                # meanwhile, another context of the same apartment serves as usual
                assert await neighbour.echo(9) == 9 and await neighbour.echo_async(9) == 9
                await home.run(latch.open)
        assert outcome == [1]
        assert ctx.statistics().state is DISCONNECTED
        assert ctx.statistics().refused == 33
        assert neighbour_ctx.statistics().state is OPEN
        await rt.mta.run_sync(on_mta.release_all)

    async def test_timeout_then_finishes_by_itself(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        sig, latch = Signals(), Latch()

        def make() -> tuple[Parked, weakref.ref[Parked]]:
            obj = Parked(sig, latch)
            return obj, weakref.ref(obj)

        parked, ref = await ctx.run_sync(make)
        probe = await export_in(ctx, Probe)
        result: list[object] = []

        async def hold() -> None:
            result.append(await parked.until_open(3))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(hold)
                await wait_event(sig.entered)
                for timeout in (0, 0.01):
                    with pytest.raises(aptrt.RPCTimeoutError) as excinfo:
                        await ctx.disconnect(timeout)
                    assert excinfo.value.hresult == HRESULT.RPC_E_TIMEOUT
                    assert isinstance(excinfo.value, TimeoutError)
                    assert ctx.state is DISCONNECTING
                with pytest.raises(aptrt.RPCTimeoutError):
                    await anyio.to_thread.run_sync(ctx.disconnect_blocking, 0.01)
                # closed from the first instant, although it timed out
                await refused(functools.partial(probe.echo, 1))
                await refused(functools.partial(parked.quick, 1))
                stats = ctx.statistics()
                assert (stats.state, stats.outstanding, stats.objects, stats.refused) == (DISCONNECTING, 1, 2, 2)
                await home.run(latch.open)
                await ctx.wait_disconnected()  # it finishes by itself when the last call ends
        assert result == [3]
        assert ctx.statistics().state is DISCONNECTED
        assert ctx.statistics().objects == 0
        await ctx.disconnect(0)  # and a later disconnect succeeds
        await refused(functools.partial(parked.quick, 1))
        collect()
        assert ref() is None  # released once its call ended, though the proxy lives on

    @pytest.mark.parametrize("blocking", [False, True], ids=["async", "blocking"])
    async def test_retry_until_success(self, rt: aptrt.Runtime, sta_backend: str, blocking: bool) -> None:
        # the seed: "The service must call the function until it returns S_OK"
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        sig, latch = Signals(), Latch()
        parked = await export_in(ctx, Parked, sig, latch)
        attempts = 0

        async def disconnect_once() -> None:
            if blocking:
                await anyio.to_thread.run_sync(ctx.disconnect_blocking, 0.02)
            else:
                await ctx.disconnect(0.02)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(parked.until_open, 1)
                await wait_event(sig.entered)
                while True:
                    try:
                        await disconnect_once()
                        break
                    except aptrt.RPCTimeoutError:
                        attempts += 1
                        assert ctx.state is DISCONNECTING
                        if attempts == 3:
                            await home.run(latch.open)
        assert attempts >= 3
        assert ctx.disconnected

    async def test_call_ending_at_the_timeout_same_loop(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # The callee runs in the disconnecting side's own loop and ends the moment that side signals, just
        # as the zero timeout fires: whichever wins, the outcome is one of the two allowed ones.
        main = rt.main_sta
        assert main is not None
        client = await rt.start_sta("client", backend=sta_backend)
        outcomes: list[str] = []
        for _ in range(5):
            ctx = main.create_context()
            latch = Latch()
            holder = Holder()

            async def hand_over(lt: Latch = latch, h: Holder = holder) -> None:
                await client.run_sync(h.keep, Parked(Signals(), lt))

            await ctx.run(hand_over)
            result: list[object] = []

            async def call(h: Holder = holder, out: list[object] = result) -> None:
                out.append(await h.items[0].until_open(4))

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.run, call)
                    await wait_event(latch.all_entered)
                    await latch.open()  # the callee may go on now...
                    try:
                        await ctx.disconnect(0)  # ...and the timeout fires at once
                        outcomes.append("ok")
                    except aptrt.RPCTimeoutError as exc:
                        assert exc.hresult == HRESULT.RPC_E_TIMEOUT
                        outcomes.append("timeout")
                        assert ctx.state in (DISCONNECTING, DISCONNECTED)
                        await ctx.disconnect()  # the second one succeeds
            assert result == [4]
            assert ctx.disconnected
            await client.run_sync(holder.release_all)
        assert set(outcomes) <= {"ok", "timeout"}

    async def test_call_ending_at_the_timeout_other_thread(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # The callee holds another apartment's thread; the disconnecting side releases it and disconnects
        # with a timeout of about the time the callee needs to return: a genuine race, both outcomes valid.
        home = await rt.start_sta("home", backend=sta_backend)
        outcomes: list[str] = []
        for i in range(20):
            ctx = home.create_context()
            sig = Signals()
            gate = await export_in(ctx, Gate, sig)
            result: list[object] = []

            async def call(g: Any = gate, out: list[object] = result) -> None:
                out.append(await g.hold())

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(call)
                    await wait_event(sig.entered)
                    sig.release.set()
                    try:
                        await ctx.disconnect((i % 4) * 0.0005)
                        outcomes.append("ok")
                    except aptrt.RPCTimeoutError as exc:
                        assert exc.hresult == HRESULT.RPC_E_TIMEOUT
                        outcomes.append("timeout")
                        await ctx.disconnect()
            assert result == ["released"]
            assert ctx.disconnected and ctx.statistics().objects == 0
        assert set(outcomes) <= {"ok", "timeout"} and len(outcomes) == 20

    async def test_call_ending_at_the_timeout_blocking(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta("home", backend=sta_backend)
        outcomes: list[str] = []
        for _ in range(10):
            ctx = home.create_context()
            sig = Signals()
            gate = await export_in(ctx, Gate, sig)

            def release_and_disconnect(c: aptrt.Context = ctx, s: Signals = sig) -> str:
                s.release.set()
                try:
                    c.disconnect_blocking(0)
                    return "ok"
                except aptrt.RPCTimeoutError:
                    c.disconnect_blocking(5)
                    return "timeout"

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(gate.hold)
                    await wait_event(sig.entered)
                    outcomes.append(await anyio.to_thread.run_sync(release_and_disconnect))
            assert ctx.disconnected
        assert set(outcomes) <= {"ok", "timeout"}

    async def test_concurrent_disconnects_all_succeed(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta("home", backend=sta_backend)
        other = await rt.start_sta("other", backend=other_backend(sta_backend))
        ctx = home.create_context()
        sig, latch = Signals(), Latch()
        parked = await export_in(ctx, Parked, sig, latch)
        finished: list[str] = []

        async def disconnect(tag: str) -> None:
            await ctx.disconnect()
            finished.append(tag)

        async def wait(tag: str) -> None:
            await ctx.wait_disconnected()
            finished.append(tag)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(parked.until_open, 1)
                await wait_event(sig.entered)
                tg.start_soon(disconnect, "main")
                tg.start_soon(other.run, disconnect, "other")
                tg.start_soon(rt.mta.run, wait, "mta")
                tg.start_soon(
                    anyio.to_thread.run_sync, lambda: (ctx.disconnect_blocking(None), finished.append("thread"))
                )
                await wait_until(lambda: ctx.state is DISCONNECTING, "the disconnect began")
                assert finished == []
                await home.run(latch.open)
        assert sorted(finished) == ["main", "mta", "other", "thread"]

    @pytest.mark.parametrize("blocking", [False, True], ids=["async", "blocking"])
    async def test_infinite_timeout(self, rt: aptrt.Runtime, sta_backend: str, blocking: bool) -> None:
        # INFINITE is an acceptable value (the seed); math.inf is a non-negative number of seconds
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        sig, latch = Signals(), Latch()
        parked = await export_in(ctx, Parked, sig, latch)
        errors: list[BaseException] = []

        async def disconnect() -> None:
            try:
                if blocking:
                    await anyio.to_thread.run_sync(ctx.disconnect_blocking, math.inf)
                else:
                    await ctx.disconnect(math.inf)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(parked.until_open, 1)
                await wait_event(sig.entered)
                tg.start_soon(disconnect)
                await wait_until(lambda: ctx.state is DISCONNECTING, "the disconnect began")
                await home.run(latch.open)
        assert errors == [], f"disconnect{'_blocking' if blocking else ''}(math.inf) raised {errors!r}"
        assert ctx.disconnected

    async def test_cancelled_disconnect_goes_on_by_itself(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # cancelling the code that waits is like a timeout: the context stays closed and finishes later
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        sig, latch = Signals(), Latch()
        parked = await export_in(ctx, Parked, sig, latch)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(parked.until_open, 1)
                await wait_event(sig.entered)
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await ctx.disconnect()
                assert scope.cancelled_caught
                assert ctx.state is DISCONNECTING
                await refused(functools.partial(parked.quick, 1))
                await home.run(latch.open)
                await ctx.wait_disconnected()
        assert ctx.disconnected

    async def test_apartment_closing_ends_the_wait(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        sig = Signals()
        parked = await export_in(ctx, Parked, sig)
        outcomes: list[object] = []

        async def call() -> None:
            outcomes.append(await outcome_of(parked.park))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await wait_event(sig.entered)
                tg.start_soon(ctx.disconnect)
                await wait_until(lambda: ctx.state is DISCONNECTING, "the disconnect began")
                await home.aclose()  # the outstanding call is cancelled by the shutdown: nothing is left
        assert ctx.disconnected
        (exc,) = outcomes
        assert isinstance(exc, aptrt.DisconnectedError)
        assert exc.reason is aptrt.DisconnectReason.SERVER_SHUTDOWN
        with pytest.raises(aptrt.ApartmentClosedError):
            home.create_context()
        await ctx.disconnect(0)

    async def test_apartment_statistics_count_refusals(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        sig, latch = Signals(), Latch()
        parked = await export_in(ctx, Parked, sig, latch)
        before = home.statistics()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(parked.until_open, 1)
                await wait_event(sig.entered)
                tg.start_soon(ctx.disconnect)
                await wait_until(lambda: ctx.state is DISCONNECTING, "the disconnect began")
                for n in range(4):
                    await refused(functools.partial(parked.quick, n))
                await home.run(latch.open)
        after = home.statistics()
        assert after.failed - before.failed == 4 == ctx.statistics().refused
        assert after.completed - before.completed == 2  # the parked call and the latch's opening
        await refused(functools.partial(parked.quick, 9))  # refused by the proxy itself from now on
        assert home.statistics().failed == after.failed


# -- the errors of CoDisconnectContext -----------------------------------------------------------------------


class TestDisconnectErrors:
    async def test_default_context_cannot_be_disconnected(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        main = rt.main_sta
        assert main is not None
        probe = await sta.create(Probe)
        for apartment in (main, sta, rt.mta):
            ctx = apartment.default_context
            for timeout in (None, 0, 1):
                with pytest.raises(aptrt.NotSupportedError) as excinfo:
                    await ctx.disconnect(timeout)
                assert excinfo.value.hresult == HRESULT.CO_E_NOT_SUPPORTED == HRESULT.CO_E_NOTSUPPORTED
                with pytest.raises(aptrt.NotSupportedError):
                    await anyio.to_thread.run_sync(ctx.disconnect_blocking, timeout)
            assert ctx.state is OPEN
        with pytest.raises(aptrt.NotSupportedError):
            await aptrt.current_context().disconnect()

        async def from_inside() -> None:
            await aptrt.current_context().disconnect()

        with pytest.raises(aptrt.NotSupportedError):
            await sta.run(from_inside)
        assert await probe.echo(1) == 1  # the default context serves on

    @pytest.mark.parametrize("grace", [-1, -0.001, -math.inf, math.nan])
    async def test_invalid_timeout(self, rt: aptrt.Runtime, grace: float) -> None:
        sta = await rt.start_sta()
        ctx = sta.create_context()
        probe = await export_in(ctx, Probe)
        for disconnect in (ctx.disconnect, functools.partial(anyio.to_thread.run_sync, ctx.disconnect_blocking)):
            with pytest.raises(aptrt.InvalidArgumentError) as excinfo:
                await disconnect(grace)
            assert isinstance(excinfo.value, ValueError)
            assert excinfo.value.hresult == HRESULT.E_INVALIDARG
        # nothing happened: the context is open and serving
        assert ctx.state is OPEN
        assert await probe.echo(2) == 2
        await ctx.disconnect(0)

    @pytest.mark.parametrize("grace", [None, 0, 10])
    async def test_from_inside_a_call_on_its_object(
        self, rt: aptrt.Runtime, sta_backend: str, grace: float | None
    ) -> None:
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        probe = await export_in(ctx, Probe)
        with anyio.fail_after(2):  # immediately, whatever the timeout (None would wait for ever)
            with pytest.raises(aptrt.WouldDeadlockError) as excinfo:
                await probe.disconnect_context(ctx, grace)
        assert excinfo.value.hresult == HRESULT.CONTEXT_E_WOULD_DEADLOCK
        assert isinstance(excinfo.value, RuntimeError)
        # nothing happened: open, serving, and disconnectable from outside
        assert ctx.state is OPEN and ctx.statistics().outstanding == 0
        assert await probe.echo(3) == 3
        await ctx.disconnect(5)
        assert ctx.disconnected

    @pytest.mark.parametrize("grace", [None, 0])
    async def test_from_inside_a_sync_call_in_the_mta(self, rt: aptrt.Runtime, grace: float | None) -> None:
        ctx = rt.mta.create_context()
        probe = await export_in(ctx, Probe)
        with anyio.fail_after(2):
            with pytest.raises(aptrt.WouldDeadlockError) as excinfo:
                await probe.disconnect_context_blocking(ctx, grace)
        assert excinfo.value.hresult == HRESULT.CONTEXT_E_WOULD_DEADLOCK
        assert ctx.state is OPEN
        await ctx.disconnect(5)

    @pytest.mark.parametrize("grace", [None, 0, 10])
    async def test_through_a_chain_of_calls(self, rt: aptrt.Runtime, sta_backend: str, grace: float | None) -> None:
        # A (in the context) calls B (elsewhere) which disconnects A's context: B's call carries A's
        # causality id, so the context would wait for the call that waits for it
        home = await rt.start_sta("home", backend=sta_backend)
        elsewhere = await rt.start_sta("elsewhere", backend=other_backend(sta_backend))
        ctx = home.create_context()
        log = Log()
        a = await export_in(ctx, Probe, log)
        b = await elsewhere.create(Probe, log)
        with anyio.fail_after(2):
            with pytest.raises(aptrt.WouldDeadlockError) as excinfo:
                await a.relay(b, ctx, grace)
        assert excinfo.value.hresult == HRESULT.CONTEXT_E_WOULD_DEADLOCK
        (what1, relayed), (what2, disconnecting) = log.entries
        assert (what1, what2) == ("relay", "disconnect")
        assert relayed == disconnecting is not None  # one causality chain
        assert ctx.state is OPEN
        await ctx.disconnect(5)

    async def test_through_a_chain_from_the_mta(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        elsewhere = await rt.start_sta("elsewhere", backend=sta_backend)
        ctx = rt.mta.create_context()
        log = Log()
        a = await export_in(ctx, Probe, log)
        b = await elsewhere.create(Probe, log)
        with anyio.fail_after(2):
            with pytest.raises(aptrt.WouldDeadlockError):
                await a.relay_blocking(b, ctx, None)
        (_, relayed), (_, disconnecting) = log.entries
        assert relayed == disconnecting is not None
        assert ctx.state is OPEN
        await ctx.disconnect(5)

    async def test_another_chain_is_no_deadlock(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # a call on an object of another context (same apartment) may disconnect this one: it waits
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        sig, latch = Signals(), Latch()
        parked = await export_in(ctx, Parked, sig, latch)
        outsider = await home.create(Probe)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(parked.until_open, 1)
                await wait_event(sig.entered)
                with pytest.raises(aptrt.RPCTimeoutError):
                    await outsider.disconnect_context(ctx, 0.01)
                assert ctx.state is DISCONNECTING
                await home.run(latch.open)
        assert await outsider.disconnect_context(ctx, None) == "disconnected"

    async def test_from_inside_the_context_callback(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # the seed's DisconnectCallback: re-enter the context, revoke the class factory, disconnect
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        cookie = await ctx.run_sync(lambda: rt.register_class_object(UNUSED_CLSID, Probe, context=CLSCTX.LOCAL_SERVER))
        probe = await export_in(ctx, Probe)

        async def disconnect_callback() -> str:
            rt.revoke_class_object(cookie)
            await ctx.disconnect(5)
            return "S_OK"

        assert await ctx.run(disconnect_callback) == "S_OK"
        assert ctx.disconnected
        await refused(functools.partial(probe.echo, 1))

    async def test_blocking_twin_refuses_an_event_loop(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # like every blocking twin: waiting on a loop's thread would stall the loop (and, for calls
        # running in that loop, never end)
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        sig = Signals()
        gate = await export_in(ctx, Gate, sig)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(gate.hold)
                await wait_event(sig.entered)
                try:
                    with pytest.raises(aptrt.WrongThreadError):
                        ctx.disconnect_blocking(0.2)
                    assert ctx.state is OPEN
                finally:
                    sig.release.set()
        await ctx.disconnect(5)


UNUSED_CLSID = uuid.UUID("86c03f31-588c-4319-b65d-899a095a01ad")


# -- cancel_outstanding --------------------------------------------------------------------------------------


class TestCancelOutstanding:
    async def test_async_callee_is_cancelled_with_the_reason(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        sig = Signals()
        parked = await export_in(ctx, Parked, sig)
        before = home.statistics()
        caught: list[BaseException] = []

        async def call() -> None:
            try:
                await parked.park()
            except aptrt.CallCancelledError as exc:
                caught.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await wait_event(sig.entered)
                await ctx.disconnect(0.01, cancel_outstanding=True, reason="service unloading")
        assert ctx.disconnected
        assert sig.log == [("cancelled", "service unloading")]
        (exc,) = caught
        assert isinstance(exc, aptrt.CallCancelledError)
        assert exc.hresult == HRESULT.RPC_E_CALL_CANCELED
        assert exc.reason == "service unloading"
        after = home.statistics()
        assert after.cancelled - before.cancelled == 1
        assert after.failed == before.failed

    async def test_sync_callee_sees_it_from_check_cancelled(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        sig = Signals()
        parked = await export_in(ctx, Parked, sig)
        caught: list[BaseException] = []

        async def call() -> None:
            try:
                await parked.spin()
            except aptrt.CallCancelledError as exc:
                caught.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await wait_event(sig.entered)
                await anyio.to_thread.run_sync(
                    functools.partial(ctx.disconnect_blocking, 0, cancel_outstanding=True, reason="unload")
                )
        assert ctx.disconnected
        assert sig.log == [("cancelled", "unload", "unload")]
        (exc,) = caught
        assert exc.hresult == HRESULT.RPC_E_CALL_CANCELED and exc.reason == "unload"  # type: ignore[attr-defined]

    async def test_default_reason_and_mta(self, rt: aptrt.Runtime) -> None:
        ctx = rt.mta.create_context()
        async_sig, sync_sig = Signals(), Signals()
        parked = await export_in(ctx, Parked, async_sig)
        spinning = await export_in(ctx, Parked, sync_sig)
        outcomes: dict[str, object] = {}

        async def call(tag: str, fn: Callable[[], Awaitable[object]]) -> None:
            outcomes[tag] = await outcome_of(fn)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "async", parked.park)
                tg.start_soon(call, "sync", spinning.spin)
                await wait_event(async_sig.entered)
                await wait_event(sync_sig.entered)
                await ctx.disconnect(0, cancel_outstanding=True)
        for tag in ("async", "sync"):
            exc = outcomes[tag]
            assert isinstance(exc, aptrt.CallCancelledError), (tag, exc)
            assert exc.reason == "context disconnected"
        assert async_sig.log == [("cancelled", "context disconnected")]
        assert sync_sig.log == [("cancelled", "context disconnected", "context disconnected")]

    async def test_calls_ending_within_the_grace_period_are_not_cancelled(
        self, rt: aptrt.Runtime, sta_backend: str
    ) -> None:
        home = await rt.start_sta("home", backend=sta_backend)
        ctx = home.create_context()
        sig, latch = Signals(), Latch()
        parked = await export_in(ctx, Parked, sig, latch)
        result: list[object] = []

        async def call() -> None:
            result.append(await parked.until_open(6))

        async def disconnect() -> None:
            await ctx.disconnect(None, cancel_outstanding=True)  # no grace period limit: never cancels

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await wait_event(sig.entered)
                tg.start_soon(disconnect)
                await wait_until(lambda: ctx.state is DISCONNECTING, "the disconnect began")
                await home.run(latch.open)
        assert result == [6]
        assert sig.log == []


# -- disconnect_object ---------------------------------------------------------------------------------------


class TestDisconnectObject:
    @pytest.mark.parametrize("where", ["sta", "mta", "context"])
    async def test_from_outside(self, rt: aptrt.Runtime, sta_backend: str, where: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        if where == "context":
            ctx = sta.create_context()
            target, sibling = await export_in(ctx, Probe), await export_in(ctx, Probe)
        else:
            apartment = sta if where == "sta" else rt.mta
            target, sibling = await apartment.create(Probe), await apartment.create(Probe)
        assert aptrt.disconnect_object(target) is True
        for call in (functools.partial(target.echo, 1), functools.partial(target.echo_async, 1)):
            with pytest.raises(aptrt.DisconnectedError) as excinfo:
                await call()
            assert excinfo.value.hresult == HRESULT.RPC_E_DISCONNECTED
            assert excinfo.value.reason is aptrt.DisconnectReason.OBJECT_DISCONNECTED
        assert aptrt.disconnect_object(target) is False  # nothing left to cut
        assert await sibling.echo(2) == 2  # only that object
        if where == "context":
            assert ctx.statistics().objects == 1

    async def test_by_the_object_itself(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        await self._cut_by_itself(await rt.start_sta(backend=sta_backend))

    async def test_by_the_object_itself_in_the_mta(self, rt: aptrt.Runtime) -> None:
        await self._cut_by_itself(rt.mta)

    async def _cut_by_itself(self, apartment: aptrt.Apartment) -> None:
        refs: list[weakref.ref[Probe]] = []

        def make() -> tuple[Probe, Probe]:
            first, second = Probe(), Probe()
            refs.extend((weakref.ref(first), weakref.ref(second)))
            return first, second

        first, second = await apartment.run_sync(make)
        # the running call completes and returns; the object is cut meanwhile
        assert await first.cut_self() == (True, 7)
        assert await second.cut_self_async() == (True, 8)
        for proxy in (first, second):
            with pytest.raises(aptrt.DisconnectedError) as excinfo:
                await proxy.echo(1)
            assert excinfo.value.reason is aptrt.DisconnectReason.OBJECT_DISCONNECTED
            assert aptrt.disconnect_object(proxy) is False
        collect()
        # let go once their calls ended, though the proxies live on
        assert [ref() for ref in refs] == [None, None], "a disconnected object outlived its last call"

    async def test_a_running_call_finishes(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        result: list[object] = []

        async def call() -> None:
            result.append(await gate.hold())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await wait_event(sig.entered)
                assert aptrt.disconnect_object(gate) is True
                sig.release.set()
        assert result == ["released"]
        with pytest.raises(aptrt.DisconnectedError):
            await gate.tick(1)

    async def test_objects_and_nothing(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        with pytest.raises(aptrt.InvalidArgumentError):
            aptrt.disconnect_object(None)
        assert aptrt.disconnect_object(Probe()) is False  # never exported
        assert aptrt.disconnect_object(object()) is False

        def make() -> Probe:
            probe = Probe()
            holder.keep(probe)
            return probe

        holder = Holder()
        proxy = await sta.run_sync(make)
        # by the object itself, from its own apartment
        assert await sta.run_sync(lambda: aptrt.disconnect_object(holder.items[0])) is True
        with pytest.raises(aptrt.DisconnectedError):
            await proxy.echo(1)
        holder.items.clear()


# -- class factories registered inside a context ---------------------------------------------------------------


@aptrt.coclass(clsid="a00b0f54-377b-42c2-8ab8-738992180cb2", progid="AptrtTests.ContextMade.1", threading_model="Both")
class ContextMade(Probe):
    """Made by class factories registered inside contexts (and by the registry when they are gone)."""


CONTEXT_MADE = ContextMade.__clsid__  # type: ignore[attr-defined]


class RecordingFactory(aptrt.IClassFactory):
    def __init__(self, entered: threading.Event | None = None, release: threading.Event | None = None) -> None:
        self.made = 0
        self.entered = entered
        self.release = release

    def CreateInstance(self, outer: object, iid: Any) -> Any:
        if self.entered is not None and self.release is not None:
            self.entered.set()
            assert self.release.wait(5), "never released"
        self.made += 1
        return ContextMade()

    def LockServer(self, lock: bool) -> None:
        return None


class TestClassFactories:
    async def test_objects_made_by_the_factory_belong_to_the_context(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        host = await rt.start_sta("host", backend=sta_backend)
        client = await rt.start_sta("client", backend=other_backend(sta_backend))
        ctx = host.create_context()
        factory = RecordingFactory()
        cookie = await ctx.run_sync(
            lambda: rt.register_class_object(CONTEXT_MADE, factory, context=CLSCTX.LOCAL_SERVER)
        )

        async def create_and_ask() -> tuple[int, int, str]:
            obj = await rt.create_instance(CONTEXT_MADE, IProbe)
            assert isinstance(obj, aptrt.Proxy)
            return await obj.token(), await obj.token_async(), obj.target_apartment.name

        assert await create_and_ask() == (ctx.token, ctx.token, "host")
        assert await client.run(create_and_ask) == (ctx.token, ctx.token, "host")
        assert await rt.mta.run(create_and_ask) == (ctx.token, ctx.token, "host")
        assert factory.made == 3
        await host.run_sync(rt.revoke_class_object, cookie)

    async def test_registered_from_an_async_callback(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        host = await rt.start_sta("host", backend=sta_backend)
        ctx = host.create_context()
        factory = RecordingFactory()

        async def register() -> int:
            await anyio.lowlevel.checkpoint()
            return rt.register_class_object(CONTEXT_MADE, factory, context=CLSCTX.LOCAL_SERVER)

        cookie = await ctx.run(register)
        obj = await rt.create_instance(CONTEXT_MADE, IProbe)
        assert await obj.token() == ctx.token
        assert ctx.statistics().objects == 1
        await host.run_sync(rt.revoke_class_object, cookie)

    async def test_disconnect_revokes_the_factories(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        host = await rt.start_sta("host", backend=sta_backend)
        ctx, other_ctx = host.create_context(), host.create_context()
        factory = RecordingFactory()
        cookie = await ctx.run_sync(
            lambda: rt.register_class_object(CONTEXT_MADE, factory, context=CLSCTX.LOCAL_SERVER)
        )
        made = await rt.create_instance(CONTEXT_MADE, IProbe)
        registrations = len(rt.class_objects)
        await ctx.disconnect()
        assert len(rt.class_objects) == registrations - 1
        await refused(made.token)
        # the factory is gone: the registry's class serves (Both: made right here, by no factory)
        fallback = await rt.create_instance(CONTEXT_MADE, IProbe)
        assert type(fallback) is ContextMade
        assert factory.made == 1
        with pytest.raises(aptrt.COMError) as excinfo:
            await host.run_sync(rt.revoke_class_object, cookie)  # already revoked
        assert excinfo.value.hresult == HRESULT.CO_E_OBJNOTREG
        # a factory registered in another context of the host is not touched
        other_cookie = await other_ctx.run_sync(
            lambda: rt.register_class_object(CONTEXT_MADE, factory, context=CLSCTX.LOCAL_SERVER)
        )
        assert await (await rt.create_instance(CONTEXT_MADE, IProbe)).token() == other_ctx.token
        await host.run_sync(rt.revoke_class_object, other_cookie)

    async def test_class_object_proxy_is_disconnected_with_its_context(
        self, rt: aptrt.Runtime, sta_backend: str
    ) -> None:
        # the class object lives in the context it was registered in: CoGetClassObject hands out a proxy
        # to it there, and objects it makes join that context; CoDisconnectContext cuts it too
        host = await rt.start_sta("host", backend=sta_backend)
        ctx = host.create_context()
        factory = RecordingFactory()
        await ctx.run_sync(lambda: rt.register_class_object(CONTEXT_MADE, factory, context=CLSCTX.LOCAL_SERVER))
        class_object = await rt.get_class_object(CONTEXT_MADE)
        assert isinstance(class_object, aptrt.Proxy)
        made = await class_object.CreateInstance(None, IProbe)
        assert await made.token() == ctx.token
        await ctx.disconnect(5)
        await refused(functools.partial(class_object.CreateInstance, None, IProbe))
        assert factory.made == 1
        class_object.release()

    async def test_disconnect_waits_for_a_running_create_instance(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # a client's CreateInstance runs the service's code in the context: until it returns the service
        # cannot be unloaded, so the disconnect must wait for it (or time out), not succeed
        host = await rt.start_sta("host", backend=sta_backend)
        ctx = host.create_context()
        entered, release = threading.Event(), threading.Event()
        factory = RecordingFactory(entered, release)
        await ctx.run_sync(lambda: rt.register_class_object(CONTEXT_MADE, factory, context=CLSCTX.LOCAL_SERVER))
        created: list[object] = []

        async def create() -> None:
            created.append(await outcome_of(rt.create_instance, CONTEXT_MADE, IProbe))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(create)
                await wait_event(entered)
                try:
                    outcome = await outcome_of(ctx.disconnect, 0.05)
                finally:
                    release.set()
        assert isinstance(outcome, aptrt.RPCTimeoutError), (
            f"disconnect returned {outcome!r} while the context's class factory was still running"
        )
        await ctx.disconnect(5)


# -- a disconnect under load -----------------------------------------------------------------------------------


class IWorker(aptrt.Interface, iid="e37f9498-3dc9-4d97-a1bc-e865fef05603"):
    def fast(self, n: int) -> int: ...
    async def slow(self, n: int) -> int: ...


class Worker(IWorker):
    def __init__(self, latch: Latch) -> None:
        self.latch = latch
        self._lock = threading.Lock()
        self.ran = 0

    def fast(self, n: int) -> int:
        with self._lock:
            self.ran += 1
        return n

    async def slow(self, n: int) -> int:
        await self.latch.wait()
        with self._lock:
            self.ran += 1
        return n


class Record:
    """Every call's outcome, by kind, from every apartment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes: dict[tuple[str, str], int] = {}
        self.odd: list[str] = []

    def add(self, kind: str, outcome: str) -> None:
        with self._lock:
            self.outcomes[kind, outcome] = self.outcomes.get((kind, outcome), 0) + 1

    def count(self, kind: str | None = None, outcome: str | None = None) -> int:
        return sum(
            n
            for (k, o), n in self.outcomes.items()
            if (kind is None or k == kind) and (outcome is None or o == outcome)
        )


GATED_LANES = 4
LANE_CALLS = 25
FREE_BURSTS = 5
BURST = 5
PER_APARTMENT = GATED_LANES * LANE_CALLS + FREE_BURSTS * BURST  # 125: 8 apartments make 1,000 calls


async def drive(worker: Any, latch: Latch, record: Record) -> None:
    """One apartment's share: gated lanes (fast calls, one slow call held by the latch until the disconnect
    has begun, then a burst of calls), and free bursts that start as the disconnect does."""

    async def attempt(kind: str, method: Callable[[int], Awaitable[int]], n: int) -> None:
        try:
            result = await method(n)
        except aptrt.DisconnectedError as exc:
            if exc.hresult == HRESULT.RPC_E_DISCONNECTED and exc.reason is aptrt.DisconnectReason.CONTEXT_DISCONNECTED:
                record.add(kind, "disconnected")
            else:
                record.add(kind, f"odd: {exc!r}")
        except Exception as exc:  # noqa: BLE001 - counted, and the test fails on it
            record.add(kind, f"odd: {exc!r}")
        else:
            record.add(kind, "completed" if result == n else f"odd: returned {result!r}")

    async def gated_lane(pre: int) -> None:
        for i in range(pre):
            await attempt("pre", worker.fast, i)
        await attempt("slow", worker.slow, pre)
        async with anyio.create_task_group() as tg:
            for i in range(LANE_CALLS - pre - 1):
                tg.start_soon(attempt, "post", worker.fast if i % 3 else worker.slow, i)

    async def free_lane() -> None:
        assert await anyio.to_thread.run_sync(latch.all_entered.wait, 10)
        for _ in range(FREE_BURSTS):
            async with anyio.create_task_group() as tg:
                for i in range(BURST):
                    tg.start_soon(attempt, "free", worker.fast if i % 2 else worker.slow, i)

    async with anyio.create_task_group() as tg:
        for pre in range(GATED_LANES):
            tg.start_soon(gated_lane, pre)
        tg.start_soon(free_lane)


class TestDisconnectUnderLoad:
    @pytest.mark.parametrize("home_kind", ["sta-asyncio", "sta-trio", "sta-uvloop", "mta"])
    async def test_thousand_calls_from_eight_apartments(self, rt: aptrt.Runtime, home_kind: str) -> None:
        if home_kind == "mta":
            home: aptrt.Apartment = rt.mta
            backends = ["asyncio", "trio", "uvloop", "asyncio", "trio", "uvloop", "trio"]
        else:
            home = await rt.start_sta("home", backend=home_kind.removeprefix("sta-"))
            backends = ["asyncio", "trio", "uvloop", "asyncio", "trio", "uvloop"]
        stas = [await rt.start_sta(f"caller-{i}-{b}", backend=b) for i, b in enumerate(backends)]
        callers: list[aptrt.Apartment | None] = [*stas, None]  # None: the main STA, this test's own loop
        if home_kind != "mta":
            callers.append(rt.mta)
        assert len(callers) == 8

        ctx = home.create_context()
        latch = Latch(expected=GATED_LANES * len(callers))

        box = Holder()  # the object itself, to read its own count at the end

        def make() -> Worker:
            made = Worker(latch)
            box.keep(made)
            return made

        worker = await ctx.run_sync(make)
        record = Record()
        before = home.statistics()

        with anyio.fail_after(25):
            async with anyio.create_task_group() as tg:
                for caller in callers:
                    if caller is None:
                        tg.start_soon(drive, worker, latch, record)
                    else:
                        tg.start_soon(caller.run, drive, worker, latch, record)
                await wait_event(latch.all_entered)
                assert ctx.statistics().outstanding >= len(callers) * GATED_LANES  # the held calls, at least
                tg.start_soon(ctx.disconnect)
                await wait_until(lambda: ctx.state is not OPEN, "the disconnect began")
                await home.run(latch.open)
            assert ctx.disconnected

        issued = len(callers) * PER_APARTMENT
        assert issued == 1000
        odd = {key: n for key, n in record.outcomes.items() if key[1] not in ("completed", "disconnected")}
        assert odd == {}
        completed, disconnected = record.count(outcome="completed"), record.count(outcome="disconnected")
        assert completed + disconnected == issued  # none vanished (and none hung: we are here)
        # admitted before the disconnect began: completed; issued after it began: refused
        lanes = len(callers) * GATED_LANES
        pre = len(callers) * sum(range(GATED_LANES))
        assert record.count("pre", "completed") == pre
        assert record.count("slow", "completed") == lanes
        assert record.count("post", "disconnected") == lanes * (LANE_CALLS - 1) - pre
        assert record.count("free") == len(callers) * FREE_BURSTS * BURST

        # the books agree: the context's, the apartment's and the object's own
        stats = ctx.statistics()
        assert (stats.state, stats.objects, stats.outstanding) == (DISCONNECTED, 0, 0)
        after = home.statistics()
        assert box.items[0].ran == completed
        assert after.completed - before.completed == completed + 1  # and the latch's opening
        refused_at_home = after.failed - before.failed
        assert stats.refused <= refused_at_home <= disconnected
        assert (after.cancelled, after.expired) == (before.cancelled, before.expired)
        assert after.running == 0
        # nothing is queued; the MTA may still hold a release message for a moment (it counts those: see
        # test_mta_queued_counts_calls_only), which an idle worker takes at once
        await wait_until(lambda: home.statistics().queued == 0, "the inbox is empty")
        box.items.clear()

    async def test_mta_queued_counts_calls_only(self) -> None:
        # ApartmentStatistics.queued is "calls waiting in the inbox": a proxy released by garbage collection
        # posts a FlushReleases message to the MTA's queue, which is not a call
        async with aptrt.Runtime(mta_workers=1) as rt:
            sig = Signals()
            gate = await rt.mta.create(Gate, sig)
            dropped = await rt.mta.create(Probe)
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(gate.hold)
                    await wait_event(sig.entered)  # the only worker is busy: nothing takes the message
                    del dropped
                    collect()
                    try:
                        assert rt.mta.statistics().queued == 0
                    finally:
                        sig.release.set()
