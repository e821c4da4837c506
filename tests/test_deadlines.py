"""The caller's deadline travels with each call: the callee runs under it, and a call whose deadline
passed while it was queued is never started (and is counted as expired)."""

from __future__ import annotations

import math

import anyio
import pytest

import aptrt

from .objects import Gate, Signals, wait_event, wait_until
from .objects_flow import MIXED_PAIRS, FlowLog, INode, Node


async def _left() -> float:
    return anyio.current_effective_deadline() - anyio.current_time()


async def _held_by(rt: aptrt.Runtime, proxy: aptrt.Proxy[INode]) -> aptrt.Proxy[INode]:
    """*proxy* marshaled to the MTA, so that a plain thread (an implicit MTA member) may use it."""
    held: list[aptrt.Proxy[INode]] = []
    await rt.mta.run_sync(held.append, proxy)
    return held[0]


class TestDeadlineTravels:
    async def test_async_callee_sees_the_callers_deadline(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        node = await sta.create(Node, "n", FlowLog())
        with anyio.fail_after(10):
            left = await node.deadline_left()
        assert 9 < left <= 10
        with anyio.move_on_after(20), anyio.move_on_after(7):  # the nearest deadline is the effective one
            left = await node.deadline_left()
        assert 6 < left <= 7
        assert await node.deadline_left() == math.inf  # no deadline, none in the callee

    async def test_apartment_run_carries_the_deadline(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        with anyio.fail_after(10):
            left = await sta.run(_left)
        assert 9 < left <= 10

    async def test_a_shield_hides_the_outer_deadline(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        node = await sta.create(Node, "n", FlowLog())
        with anyio.fail_after(10):
            with anyio.CancelScope(shield=True):
                assert await node.deadline_left() == math.inf
            with anyio.CancelScope(shield=True), anyio.fail_after(5):
                left = await node.deadline_left()
        assert 4 < left <= 5

    @pytest.mark.parametrize(("caller_backend", "callee_backend"), MIXED_PAIRS)
    async def test_from_an_sta_caller(self, rt: aptrt.Runtime, caller_backend: str, callee_backend: str) -> None:
        caller = await rt.start_sta("caller", backend=caller_backend)
        callee = await rt.start_sta("callee", backend=callee_backend)
        node = await callee.create(Node, "n", FlowLog())

        async def call(p: aptrt.Proxy[INode]) -> tuple[float, float]:
            with anyio.fail_after(10):
                return await _left(), await p.deadline_left()

        mine, theirs = await caller.run(call, node)
        assert 9 < theirs <= mine <= 10

    async def test_deadline_reaches_the_end_of_a_chain(self, rt: aptrt.Runtime) -> None:
        # caller (test loop) → asyncio STA → trio STA: the last hop still runs under the caller's deadline
        first = await rt.start_sta("first", backend="asyncio")
        second = await rt.start_sta("second", backend="trio")
        far = await second.create(Node, "far", FlowLog())

        async def relay(p: aptrt.Proxy[INode]) -> float:
            return await p.deadline_left()

        with anyio.fail_after(10):
            left = await first.run(relay, far)
        assert 9 < left <= 10

    async def test_from_an_mta_caller(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        node = await sta.create(Node, "n", FlowLog())

        async def call(p: aptrt.Proxy[INode]) -> float:
            with anyio.fail_after(10):
                return await p.deadline_left()

        left = await rt.mta.run(call, node)
        assert 9 < left <= 10

    async def test_blocking_caller_timeout_is_the_deadline(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        node = await _held_by(rt, await sta.create(Node, "n", FlowLog()))
        left = await anyio.to_thread.run_sync(lambda: aptrt.blocking(node, timeout=10).deadline_left())
        assert 9 < left <= 10
        unbounded = await anyio.to_thread.run_sync(lambda: aptrt.blocking(node).deadline_left())
        assert unbounded == math.inf


class TestExpiredWhileQueued:
    """The target is held busy by a sync call; a call queued behind it outlives its deadline."""

    @staticmethod
    async def _busy(rt: aptrt.Runtime, backend: str) -> tuple[aptrt.STA, aptrt.Proxy[INode], FlowLog, Signals]:
        sta = await rt.start_sta("target", backend=backend)
        log = FlowLog()
        node = await sta.create(Node, "n", log)
        return sta, node, log, Signals()

    @staticmethod
    async def _settled(sta: aptrt.STA) -> aptrt.ApartmentStatistics:
        await sta.run_sync(int)  # a round trip behind the expired call: its bookkeeping is done
        return sta.statistics()

    async def test_fail_after_raises_and_the_callee_never_runs(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta, node, log, sig = await self._busy(rt, sta_backend)
        gate = await sta.create(Gate, sig)
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.hold)
            await wait_event(sig.entered)
            with pytest.raises(TimeoutError), anyio.fail_after(0.05):
                await node.mark("late")
            sig.release.set()
        stats = await self._settled(sta)
        assert log.snapshot() == []
        assert sig.log == ["hold"]
        assert (stats.expired, stats.cancelled, stats.running, stats.queued) == (1, 0, 0, 0)

    async def test_move_on_after_is_quiet(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta, node, log, sig = await self._busy(rt, sta_backend)
        gate = await sta.create(Gate, sig)
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.hold)
            await wait_event(sig.entered)
            with anyio.move_on_after(0.05) as scope:
                await node.hold("late")  # an async callee: never started either
            assert scope.cancelled_caught
            sig.release.set()
        stats = await self._settled(sta)
        assert log.snapshot() == []
        assert (stats.expired, stats.cancelled, stats.failed, stats.running) == (1, 0, 0, 0)

    async def test_a_call_within_its_deadline_still_runs(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta, node, log, sig = await self._busy(rt, sta_backend)
        gate = await sta.create(Gate, sig)
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.hold)
            await wait_event(sig.entered)
            with anyio.fail_after(10):
                async with anyio.create_task_group() as inner:
                    inner.start_soon(node.mark, "in time")
                    await anyio.wait_all_tasks_blocked()
                    sig.release.set()
        stats = await self._settled(sta)
        assert log.snapshot() == ["n:in time"]
        assert stats.expired == 0

    @pytest.mark.parametrize(("caller_backend", "callee_backend"), MIXED_PAIRS)
    async def test_from_an_sta_caller(self, rt: aptrt.Runtime, caller_backend: str, callee_backend: str) -> None:
        caller = await rt.start_sta("caller", backend=caller_backend)
        sta, node, log, sig = await self._busy(rt, callee_backend)
        gate = await sta.create(Gate, sig)

        async def call(p: aptrt.Proxy[INode]) -> tuple[bool, bool]:
            with anyio.move_on_after(0.05) as quiet:
                await p.mark("late")
            try:
                with anyio.fail_after(0.05):
                    await p.mark("later")
            except TimeoutError:
                return quiet.cancelled_caught, True
            return quiet.cancelled_caught, False

        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.hold)
            await wait_event(sig.entered)
            assert await caller.run(call, node) == (True, True)
            sig.release.set()
        stats = await self._settled(sta)
        assert log.snapshot() == []
        assert (stats.expired, stats.cancelled) == (2, 0)

    async def test_blocking_caller(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta, node, log, sig = await self._busy(rt, sta_backend)
        gate = await sta.create(Gate, sig)
        held = await _held_by(rt, node)
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.hold)
            await wait_event(sig.entered)
            with pytest.raises(TimeoutError):
                await anyio.to_thread.run_sync(lambda: aptrt.blocking(held, timeout=0.05).mark("late"))
            sig.release.set()
        stats = await self._settled(sta)
        assert log.snapshot() == []
        assert (stats.expired, stats.cancelled) == (1, 0)

    async def test_expired_while_waiting_at_a_reentrancy_gate(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # Strict turns: the first chain holds the apartment while it awaits; the second chain's call waits
        # its turn at the gate and its deadline passes there: it must not run once the gate opens.
        sta, node, log, _ = await self._busy(rt, sta_backend)
        sta.configure(reentrancy=aptrt.Reentrancy.NONE)
        async with anyio.create_task_group() as tg:
            tg.start_soon(node.hold, "first")
            await wait_event(log["first"].entered)
            with anyio.move_on_after(0.05) as scope:
                await node.mark("late")
            assert scope.cancelled_caught
            log["first"].release.set()
        stats = await self._settled(sta)
        assert log.snapshot() == ["n:enter first", "n:exit first"]
        assert (stats.expired, stats.cancelled, stats.running) == (1, 0, 0)


class TestCalleeStopsAtTheDeadline:
    async def test_async_callee_is_cancelled_at_the_deadline(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        log = FlowLog()
        node = await sta.create(Node, "n", log)
        with anyio.move_on_after(0.05) as scope:
            await node.hold("never released")
        assert scope.cancelled_caught
        log["never released"].release.set()  # the worker thread the callee waited in may go
        await wait_until(lambda: sta.statistics().running == 0, "the callee has finished")
        stats = sta.statistics()
        assert log.snapshot() == ["n:enter never released", "n:cancelled never released"]
        assert stats.running == 0
        assert stats.expired + stats.cancelled == 1
        assert stats.failed == 0

    async def test_the_deadline_does_not_outlive_the_call(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # each call carries its own deadline: a later call without one runs unbounded
        sta = await rt.start_sta(backend=sta_backend)
        log = FlowLog()
        node = await sta.create(Node, "n", log)
        with anyio.fail_after(10):
            assert await node.deadline_left() <= 10
        log["free"].release.set()
        assert await node.deadline_left() == math.inf
        await node.hold("free")
