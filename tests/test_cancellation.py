"""Cancelling a caller cancels its callee's scope; the caller always learns the final state; a reply that
arrives after the caller gave up is dropped cleanly. For STA, MTA and plain-thread callers."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import aptrt

from .objects import Gate, IGate, Signals, wait_event, wait_until
from .objects_flow import MIXED_PAIRS, FlowLog, INode, Node


async def _cancel_when(event: threading.Event, scope: anyio.CancelScope) -> None:
    await wait_event(event)
    scope.cancel()


async def cancel_once_entered(call: Callable[[], Awaitable[Any]], entered: threading.Event) -> bool:
    """Make *call*, cancel it once the callee says it *entered*; True if the caller's scope caught it."""
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_when, entered, scope)
            await call()
    return scope.cancelled_caught


async def cancel_hold(node: aptrt.Proxy[INode], log: FlowLog, tag: str) -> bool:
    return await cancel_once_entered(lambda: node.hold(tag), log[tag].entered)


async def cancel_check(gate: aptrt.Proxy[IGate], sig: Signals) -> bool:
    return await cancel_once_entered(gate.wait_then_check, sig.entered)


async def cancel_stubborn(node: aptrt.Proxy[INode], log: FlowLog, tag: str) -> bool:
    return await cancel_once_entered(lambda: node.stubborn(tag), log[tag].entered)


async def cancel_sync_hold(gate: aptrt.Proxy[IGate], sig: Signals) -> bool:
    return await cancel_once_entered(gate.hold, sig.entered)


async def _mta_held(rt: aptrt.Runtime, proxy: aptrt.Proxy[Any]) -> aptrt.Proxy[Any]:
    """*proxy* marshaled to the MTA, so that a plain thread (an implicit MTA member) may use it."""
    held: list[aptrt.Proxy[Any]] = []
    await rt.mta.run_sync(held.append, proxy)
    return held[0]


async def _settled(sta: aptrt.STA) -> aptrt.ApartmentStatistics:
    await wait_until(lambda: sta.statistics().running == 0, "no call runs in the callee")
    await sta.run_sync(int)  # a round trip: every reply before it has been sent
    return sta.statistics()


class TestAsyncCallee:
    """An async callee sees the cancellation at its next checkpoint; its apartment counts it cancelled."""

    async def test_main_sta_caller(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        log = FlowLog()
        node = await sta.create(Node, "n", log)
        assert await cancel_hold(node, log, "h")
        await wait_event(log["h"].done)
        assert log.snapshot() == ["n:enter h", "n:cancelled h"]
        stats = await _settled(sta)
        assert (stats.cancelled, stats.failed, stats.expired, stats.running, stats.queued) == (1, 0, 0, 0, 0)
        assert await node.mark("after") is not None  # the apartment and the proxy still work

    @pytest.mark.parametrize(("caller_backend", "callee_backend"), MIXED_PAIRS)
    async def test_sta_caller(self, rt: aptrt.Runtime, caller_backend: str, callee_backend: str) -> None:
        caller = await rt.start_sta("caller", backend=caller_backend)
        callee = await rt.start_sta("callee", backend=callee_backend)
        log = FlowLog()
        node = await callee.create(Node, "n", log)
        assert await caller.run(cancel_hold, node, log, "h")
        await wait_event(log["h"].done)
        assert log.snapshot() == ["n:enter h", "n:cancelled h"]
        stats = await _settled(callee)
        assert (stats.cancelled, stats.failed, stats.running) == (1, 0, 0)
        assert caller.statistics().failed == 0  # the caller's own function ended normally

    async def test_mta_caller(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        log = FlowLog()
        node = await sta.create(Node, "n", log)
        assert await rt.mta.run(cancel_hold, node, log, "h")
        await wait_event(log["h"].done)
        assert log.snapshot() == ["n:enter h", "n:cancelled h"]
        stats = await _settled(sta)
        assert (stats.cancelled, stats.failed, stats.running) == (1, 0, 0)

    async def test_plain_thread_blocking_timeout(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        log = FlowLog()
        held = await _mta_held(rt, await sta.create(Node, "n", log))

        def plain() -> None:
            aptrt.blocking(held, timeout=0.05).hold("h")

        with pytest.raises(TimeoutError):
            await anyio.to_thread.run_sync(plain)
        await wait_event(log["h"].done)
        assert log.snapshot() == ["n:enter h", "n:cancelled h"]
        stats = await _settled(sta)
        # the timeout is also the callee's deadline: either stop is accounted for, exactly once
        assert stats.cancelled + stats.expired == 1
        assert (stats.failed, stats.running) == (0, 0)
        assert await anyio.to_thread.run_sync(lambda: aptrt.blocking(held, timeout=5).mark("after")) is not None

    @pytest.mark.parametrize("loop_backend", ["asyncio", "trio"])
    async def test_plain_thread_with_its_own_loop(self, rt: aptrt.Runtime, sta_backend: str, loop_backend: str) -> None:
        # a loop aptrt does not serve waits for the reply in a worker thread; cancelling it abandons the call
        sta = await rt.start_sta(backend=sta_backend)
        log = FlowLog()
        held = await _mta_held(rt, await sta.create(Node, "n", log))

        def plain() -> bool:
            return anyio.run(cancel_hold, held, log, "h", backend=loop_backend)

        assert await anyio.to_thread.run_sync(plain)
        await wait_event(log["h"].done)
        assert log.snapshot() == ["n:enter h", "n:cancelled h"]
        stats = await _settled(sta)
        assert (stats.cancelled, stats.failed, stats.running) == (1, 0, 0)

    @pytest.mark.parametrize(("first_backend", "second_backend"), MIXED_PAIRS)
    async def test_cancellation_travels_down_a_chain(
        self, rt: aptrt.Runtime, first_backend: str, second_backend: str
    ) -> None:
        # caller → first STA (a relay function) → second STA (the object): cancelling the caller reaches both
        first = await rt.start_sta("first", backend=first_backend)
        second = await rt.start_sta("second", backend=second_backend)
        log = FlowLog()
        far = await second.create(Node, "far", log)

        async def relay(p: aptrt.Proxy[INode]) -> int | None:
            return await p.hold("h")

        assert await cancel_once_entered(lambda: first.run(relay, far), log["h"].entered)
        await wait_event(log["h"].done)
        assert log.snapshot() == ["far:enter h", "far:cancelled h"]
        first_stats, second_stats = await _settled(first), await _settled(second)
        assert (first_stats.cancelled, first_stats.failed) == (1, 0)
        assert (second_stats.cancelled, second_stats.failed) == (1, 0)


class TestSyncCallee:
    """A sync callee cannot see a cancel scope: it polls ``aptrt.check_cancelled()``."""

    @staticmethod
    def _assert_cancelled_at_check(sig: Signals) -> None:
        assert len(sig.log) == 1
        error = sig.log[0]
        assert isinstance(error, aptrt.CallCancelledError)
        assert error.hresult == aptrt.HRESULT.RPC_E_CALL_CANCELED

    @pytest.mark.parametrize(("caller_backend", "callee_backend"), MIXED_PAIRS)
    async def test_sta_caller(self, rt: aptrt.Runtime, caller_backend: str, callee_backend: str) -> None:
        caller = await rt.start_sta("caller", backend=caller_backend)
        callee = await rt.start_sta("callee", backend=callee_backend)
        sig = Signals()
        gate = await callee.create(Gate, sig)
        assert await caller.run(cancel_check, gate, sig)
        sig.release.set()  # the callee goes on, and asks whether it should
        await wait_event(sig.done)
        self._assert_cancelled_at_check(sig)
        stats = await _settled(callee)
        assert (stats.cancelled, stats.failed, stats.completed) == (1, 0, 2)  # completed: the create, the round trip

    async def test_mta_caller(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        assert await rt.mta.run(cancel_check, gate, sig)
        sig.release.set()
        await wait_event(sig.done)
        self._assert_cancelled_at_check(sig)
        stats = await _settled(sta)
        assert (stats.cancelled, stats.failed) == (1, 0)

    async def test_plain_thread_blocking_timeout(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        held = await _mta_held(rt, await sta.create(Gate, sig))
        with pytest.raises(TimeoutError):
            await anyio.to_thread.run_sync(lambda: aptrt.blocking(held, timeout=0.05).wait_then_check())
        sig.release.set()
        await wait_event(sig.done)
        self._assert_cancelled_at_check(sig)
        stats = await _settled(sta)
        assert (stats.cancelled, stats.failed) == (1, 0)
        assert await anyio.to_thread.run_sync(lambda: aptrt.blocking(held, timeout=5).tick(7)) == 7


class TestLateReply:
    """The callee finishes after its caller gave up: the reply is dropped, and nothing is left behind."""

    async def test_sync_callee_finishes_after_the_caller_left(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        assert await cancel_sync_hold(gate, sig)
        sig.release.set()  # Gate.hold ignores cancellation: it returns "released" to nobody
        stats = await _settled(sta)
        assert sig.log == ["hold"]
        assert (stats.running, stats.queued, stats.failed) == (0, 0, 0)
        assert await gate.tick(5) == 5
        assert sig.log == ["hold", 5]

    @pytest.mark.parametrize(("caller_backend", "callee_backend"), MIXED_PAIRS)
    async def test_async_callee_replies_after_the_sta_caller_left(
        self, rt: aptrt.Runtime, caller_backend: str, callee_backend: str
    ) -> None:
        caller = await rt.start_sta("caller", backend=caller_backend)
        callee = await rt.start_sta("callee", backend=callee_backend)
        log = FlowLog()
        node = await callee.create(Node, "n", log)
        assert await caller.run(cancel_stubborn, node, log, "s")
        log["s"].release.set()
        await wait_event(log["s"].done)
        stats = await _settled(callee)
        assert log.snapshot() == ["n:finished s"]
        assert (stats.running, stats.queued, stats.failed) == (0, 0, 0)

        async def again(p: aptrt.Proxy[INode]) -> int | None:
            return await p.mark("again")

        assert await caller.run(again, node) is not None  # the caller's inbox took the stray reply in stride
        assert await node.mark("from the test") is not None

    async def test_mta_caller_left(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        assert await rt.mta.run(cancel_sync_hold, gate, sig)
        sig.release.set()
        stats = await _settled(sta)
        assert (stats.running, stats.failed) == (0, 0)

        async def again(p: aptrt.Proxy[IGate]) -> int:
            return await p.tick(3)

        assert await rt.mta.run(again, gate) == 3

    async def test_plain_thread_caller_left(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        held = await _mta_held(rt, await sta.create(Gate, sig))
        with pytest.raises(TimeoutError):
            await anyio.to_thread.run_sync(lambda: aptrt.blocking(held, timeout=0.05).hold())
        sig.release.set()
        stats = await _settled(sta)
        assert sig.log == ["hold"]
        assert (stats.running, stats.failed) == (0, 0)
        assert await anyio.to_thread.run_sync(lambda: aptrt.blocking(held, timeout=5).tick(9)) == 9

    async def test_many_cancelled_calls_leave_no_state(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # cancel a burst of calls at every stage (queued behind a busy apartment, and running)
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        log = FlowLog()
        node = await sta.create(Node, "n", log)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(gate.hold)
                await wait_event(sig.entered)
                for i in range(50):
                    tg.start_soon(node.hold, f"q{i}")
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
        assert scope.cancelled_caught
        sig.release.set()
        stats = await _settled(sta)
        assert log.snapshot() == []  # none of the queued calls started
        assert (stats.cancelled, stats.running, stats.queued, stats.failed) == (50, 0, 0, 0)
        assert await node.mark("still fine") is not None


class TestNotStarted:
    async def test_cancelled_while_waiting_at_a_reentrancy_gate(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sta.configure(reentrancy=aptrt.Reentrancy.NONE)
        log = FlowLog()
        node = await sta.create(Node, "n", log)
        async with anyio.create_task_group() as tg:
            tg.start_soon(node.hold, "first")
            await wait_event(log["first"].entered)
            with anyio.CancelScope() as scope:
                tg.start_soon(_cancel_when_held, sta, scope)
                await node.mark("second")
            assert scope.cancelled_caught
            log["first"].release.set()
        stats = await _settled(sta)
        assert log.snapshot() == ["n:enter first", "n:exit first"]
        assert (stats.cancelled, stats.running, stats.failed) == (1, 0, 0)
        assert not sta.running_calls()


async def _cancel_when_held(sta: aptrt.STA, scope: anyio.CancelScope) -> None:
    await wait_until(lambda: any(call.name == "mark" for call in sta.running_calls()), "the call waits at the gate")
    scope.cancel()
