"""STA reentrancy policies (ALLOW, CALL_CHAIN, NONE; per apartment, overridable per class), causality ids,
and deadlock detection in the wait-for graph."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import aptrt

from .objects import wait_event, wait_until
from .objects_flow import MIXED_PAIRS, MIXED_TRIPLE, FlowLog, FreeNode, Node, StrictNode

ALLOW = aptrt.Reentrancy.ALLOW
CALL_CHAIN = aptrt.Reentrancy.CALL_CHAIN
NONE = aptrt.Reentrancy.NONE


async def wait_held(apartment: aptrt.Apartment, method: str, count: int = 1) -> None:
    """Wait until *count* calls of *method* wait at a reentrancy gate of *apartment* (no handshake can say)."""

    def held() -> bool:
        # sync methods never appear as running: a listed sync call is one held at a gate
        return sum(1 for call in apartment.running_calls() if call.name == method) >= count

    await wait_until(held, f"{count} call(s) of {method!r} wait at a gate of {apartment.name!r}")


async def _record(results: dict[str, Any], key: str, fn: Any, *args: Any) -> None:
    try:
        results[key] = await fn(*args)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        results[key] = exc


class TestConfigure:
    async def test_default_and_spellings(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        assert sta.reentrancy is ALLOW
        sta.configure(reentrancy="call_chain")
        assert sta.reentrancy is CALL_CHAIN
        sta.configure(reentrancy=NONE)
        assert sta.reentrancy is NONE
        sta.configure(max_queued=None)  # leaving reentrancy out keeps it
        assert sta.reentrancy is NONE
        with pytest.raises(ValueError):
            sta.configure(reentrancy="sometimes")

    async def test_the_mta_is_free_threaded(self, rt: aptrt.Runtime) -> None:
        with pytest.raises(aptrt.NotSupportedError):
            rt.mta.configure(reentrancy=NONE)
        rt.mta.configure(reentrancy=ALLOW)


class TestOtherCallers:
    """Another caller's call arrives while a method of the apartment awaits."""

    async def test_allow_lets_it_run(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        log = FlowLog()
        node = await sta.create(Node, "n", log)
        async with anyio.create_task_group() as tg:
            tg.start_soon(node.hold, "a")
            await wait_event(log["a"].entered)
            await node.mark("b")  # runs while hold() awaits
            await node.mark("c")
            log["a"].release.set()
        assert log.snapshot() == ["n:enter a", "n:b", "n:c", "n:exit a"]

    @pytest.mark.parametrize("policy", [CALL_CHAIN, NONE])
    async def test_others_wait_their_turn(self, rt: aptrt.Runtime, sta_backend: str, policy: aptrt.Reentrancy) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sta.configure(reentrancy=policy)
        log = FlowLog()
        node = await sta.create(Node, "n", log)
        async with anyio.create_task_group() as tg:
            tg.start_soon(node.hold, "a")
            await wait_event(log["a"].entered)
            tg.start_soon(node.mark, "b")
            await wait_held(sta, "mark")
            tg.start_soon(node.mark, "c")
            await wait_held(sta, "mark", 2)
            assert log.snapshot() == ["n:enter a"]
            log["a"].release.set()
        assert log.snapshot() == ["n:enter a", "n:exit a", "n:b", "n:c"]  # in turn, first come first served
        assert sta.running_calls() == []
        assert rt.wait_for.edges() == []

    @pytest.mark.parametrize("policy", [CALL_CHAIN, NONE])
    async def test_an_async_call_waits_its_turn_too(
        self, rt: aptrt.Runtime, sta_backend: str, policy: aptrt.Reentrancy
    ) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sta.configure(reentrancy=policy)
        log = FlowLog()
        node = await sta.create(Node, "n", log)
        async with anyio.create_task_group() as tg:
            tg.start_soon(node.hold, "a")
            await wait_event(log["a"].entered)
            tg.start_soon(node.hold, "b")
            await wait_held(sta, "hold", 2)  # one running, one held
            log["b"].release.set()  # b may go on as soon as it runs; it must not run before a is done
            assert log.snapshot() == ["n:enter a"]
            log["a"].release.set()
        assert log.snapshot() == ["n:enter a", "n:exit a", "n:enter b", "n:exit b"]

    async def test_calls_from_other_apartments_wait_too(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta("target", backend="trio")
        caller = await rt.start_sta("caller", backend="asyncio")
        sta.configure(reentrancy=NONE)
        log = FlowLog()
        node = await sta.create(Node, "n", log)

        async def mark(p: Any) -> Any:
            return await p.mark("from caller")

        async with anyio.create_task_group() as tg:
            tg.start_soon(node.hold, "a")
            await wait_event(log["a"].entered)
            tg.start_soon(caller.run, mark, node)
            await wait_held(sta, "mark")
            assert log.snapshot() == ["n:enter a"]
            log["a"].release.set()
        assert log.snapshot() == ["n:enter a", "n:exit a", "n:from caller"]


class TestSameChain:
    """A → B → A: the nested callback of the chain a method of A awaits."""

    @pytest.mark.parametrize(("a_backend", "b_backend"), MIXED_PAIRS)
    @pytest.mark.parametrize(
        ("policy", "expected"),
        [
            # ALLOW: the other chain's call runs while the first awaits
            (ALLOW, ["A:enter 1", "A:1/nested", "A:2", "A:exit 1"]),
            # CALL_CHAIN: the nested callback runs, the other chain waits until A is free
            (CALL_CHAIN, ["A:enter 1", "A:1/nested", "A:exit 1", "A:2"]),
        ],
        ids=["allow", "call_chain"],
    )
    async def test_nested_callback_and_another_chain(
        self,
        rt: aptrt.Runtime,
        a_backend: str,
        b_backend: str,
        policy: aptrt.Reentrancy,
        expected: list[str],
    ) -> None:
        a = await rt.start_sta("A", backend=a_backend)
        b = await rt.start_sta("B", backend=b_backend)
        a.configure(reentrancy=policy)
        log = FlowLog()
        node_a = await a.create(Node, "A", log)
        node_b = await b.create(Node, "B", log)
        results: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(_record, results, "chain 1", node_a.call_out, "1", node_b)
            await wait_event(log["1"].entered)  # B called back into A, and now holds
            assert log.snapshot() == ["A:enter 1", "A:1/nested"]
            tg.start_soon(_record, results, "chain 2", node_a.mark, "2")
            if policy is ALLOW:
                await wait_until(lambda: "A:2" in log.snapshot(), "the other chain's call ran")
            else:
                await wait_held(a, "mark")
            log["1"].release.set()
        assert log.snapshot() == expected
        assert results["chain 1"] is not None
        assert results["chain 2"] is not None
        assert results["chain 1"] != results["chain 2"]  # two chains, two causality ids


class TestClassOverride:
    async def test_strict_class_in_an_allow_apartment(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # the gate is per object: only calls on the busy object wait
        sta = await rt.start_sta(backend=sta_backend)
        log = FlowLog()
        x = await sta.create(StrictNode, "x", log)
        y = await sta.create(StrictNode, "y", log)
        z = await sta.create(Node, "z", log)
        async with anyio.create_task_group() as tg:
            tg.start_soon(x.hold, "a")
            await wait_event(log["a"].entered)
            tg.start_soon(x.mark, "b")
            await wait_held(sta, "mark")
            await y.mark("c")  # another object of the strict class: its own gate is free
            await z.mark("d")  # an object of an ordinary class: the apartment allows it
            assert log.snapshot() == ["x:enter a", "y:c", "z:d"]
            log["a"].release.set()
        assert log.snapshot() == ["x:enter a", "y:c", "z:d", "x:exit a", "x:b"]

    async def test_free_class_in_a_strict_apartment(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sta.configure(reentrancy=NONE)
        log = FlowLog()
        n = await sta.create(Node, "n", log)
        f = await sta.create(FreeNode, "f", log)
        async with anyio.create_task_group() as tg:
            tg.start_soon(n.hold, "a")
            await wait_event(log["a"].entered)
            await f.mark("b")  # the class allows reentrancy: it runs while n's call awaits
            tg.start_soon(n.mark, "c")
            await wait_held(sta, "mark")
            assert log.snapshot() == ["n:enter a", "f:b"]
            log["a"].release.set()
        assert log.snapshot() == ["n:enter a", "f:b", "n:exit a", "n:c"]

    async def test_string_policy_on_a_class(self, rt: aptrt.Runtime) -> None:
        class Spelled(Node):
            __reentrancy__ = "none"

        sta = await rt.start_sta()
        log = FlowLog()
        node = await sta.create(Spelled, "s", log)
        async with anyio.create_task_group() as tg:
            tg.start_soon(node.hold, "a")
            await wait_event(log["a"].entered)
            tg.start_soon(node.mark, "b")
            await wait_held(sta, "mark")
            log["a"].release.set()
        assert log.snapshot() == ["s:enter a", "s:exit a", "s:b"]


class TestCausality:
    @pytest.mark.parametrize(("a_backend", "b_backend"), MIXED_PAIRS)
    @pytest.mark.parametrize("policy", [ALLOW, CALL_CHAIN])
    async def test_same_across_a_b_a(
        self, rt: aptrt.Runtime, a_backend: str, b_backend: str, policy: aptrt.Reentrancy
    ) -> None:
        a = await rt.start_sta("A", backend=a_backend)
        b = await rt.start_sta("B", backend=b_backend)
        a.configure(reentrancy=policy)
        b.configure(reentrancy=policy)
        log = FlowLog()
        node_a = await a.create(Node, "A", log)
        node_b = await b.create(Node, "B", log)
        assert aptrt.current_causality() is None  # the test itself serves no call
        seen = await node_a.forward("t", (node_b, node_a))
        assert len(seen) == 3
        assert seen[0] is not None
        assert seen[0] == seen[1] == seen[2]
        assert log.snapshot() == ["A:t", "B:t", "A:t"]
        again = await node_a.forward("u", (node_b, node_a))
        assert again[0] == again[2] != seen[0]  # a new top-level call starts a new chain

    async def test_different_for_independent_callers(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        other = await rt.start_sta(backend="trio" if sta_backend != "trio" else "asyncio")
        node = await sta.create(Node, "n", FlowLog())
        seen: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(_record, seen, "task 1", node.causality)
            tg.start_soon(_record, seen, "task 2", node.causality)

        async def from_other(p: Any) -> Any:
            return await p.causality()

        seen["other sta"] = await other.run(from_other, node)
        seen["mta"] = await rt.mta.run(from_other, node)
        held: list[Any] = []
        await rt.mta.run_sync(held.append, node)
        seen["plain thread"] = await anyio.to_thread.run_sync(lambda: aptrt.blocking(held[0]).causality())
        values = list(seen.values())
        assert None not in values
        assert len(set(values)) == len(values), seen


class TestDeadlockDetection:
    @pytest.mark.parametrize(("a_backend", "b_backend"), MIXED_PAIRS)
    @pytest.mark.parametrize("policy", [ALLOW, CALL_CHAIN])
    async def test_a_b_a_completes(
        self, rt: aptrt.Runtime, a_backend: str, b_backend: str, policy: aptrt.Reentrancy
    ) -> None:
        a = await rt.start_sta("A", backend=a_backend)
        b = await rt.start_sta("B", backend=b_backend)
        a.configure(reentrancy=policy)
        b.configure(reentrancy=policy)
        log = FlowLog()
        node_a = await a.create(Node, "A", log)
        node_b = await b.create(Node, "B", log)
        with anyio.fail_after(5):
            await node_a.forward("t", (node_b, node_a))
        assert log.snapshot() == ["A:t", "B:t", "A:t"]

    @pytest.mark.parametrize(("a_backend", "b_backend"), MIXED_PAIRS)
    async def test_a_b_a_fails_at_once_under_none(self, rt: aptrt.Runtime, a_backend: str, b_backend: str) -> None:
        a = await rt.start_sta("A", backend=a_backend)
        b = await rt.start_sta("B", backend=b_backend)
        a.configure(reentrancy=NONE)
        b.configure(reentrancy=NONE)
        log = FlowLog()
        node_a = await a.create(Node, "A", log)
        node_b = await b.create(Node, "B", log)
        with anyio.fail_after(5), pytest.raises(aptrt.WouldDeadlockError) as excinfo:
            await node_a.forward("t", (node_b, node_a))
        error = excinfo.value
        assert error.cycle == ("A", "B", "A")
        assert error.hresult == aptrt.HRESULT.CONTEXT_E_WOULD_DEADLOCK
        assert log.snapshot() == ["A:t", "B:t"]  # the nested call never ran
        # nothing is left held: both apartments serve again, and the graph is empty
        assert rt.wait_for.edges() == []
        assert a.running_calls() == b.running_calls() == []
        await node_a.mark("after")
        await node_b.mark("after")
        assert await node_a.forward("ok", ()) != (None,)

    async def test_only_the_first_apartment_strict(self, rt: aptrt.Runtime) -> None:
        a = await rt.start_sta("A", backend="trio")
        b = await rt.start_sta("B", backend="asyncio")
        a.configure(reentrancy=NONE)  # B allows everything
        log = FlowLog()
        node_a = await a.create(Node, "A", log)
        node_b = await b.create(Node, "B", log)
        with anyio.fail_after(5), pytest.raises(aptrt.WouldDeadlockError) as excinfo:
            await node_a.forward("t", (node_b, node_a))
        assert excinfo.value.cycle[0] == excinfo.value.cycle[-1] == "A"

    async def test_strict_class_cycle(self, rt: aptrt.Runtime) -> None:
        a = await rt.start_sta("A", backend="asyncio")
        b = await rt.start_sta("B", backend="trio")
        log = FlowLog()
        node_a = await a.create(StrictNode, "A", log)
        node_b = await b.create(Node, "B", log)
        with anyio.fail_after(5), pytest.raises(aptrt.WouldDeadlockError) as excinfo:
            await node_a.forward("t", (node_b, node_a))
        assert excinfo.value.cycle[0] == excinfo.value.cycle[-1]
        assert "A" in excinfo.value.cycle[0]
        await node_a.mark("after")

    @pytest.mark.parametrize("policy", [ALLOW, CALL_CHAIN, NONE])
    async def test_three_apartments(self, rt: aptrt.Runtime, policy: aptrt.Reentrancy) -> None:
        names = ("A", "B", "C")
        apartments = [
            await rt.start_sta(name, backend=backend) for name, backend in zip(names, MIXED_TRIPLE, strict=True)
        ]
        log = FlowLog()
        nodes = []
        for name, apartment in zip(names, apartments, strict=True):
            apartment.configure(reentrancy=policy)
            nodes.append(await apartment.create(Node, name, log))
        node_a, node_b, node_c = nodes
        with anyio.fail_after(5):
            if policy is NONE:
                with pytest.raises(aptrt.WouldDeadlockError) as excinfo:
                    await node_a.forward("t", (node_b, node_c, node_a))
                assert excinfo.value.cycle == ("A", "B", "C", "A")
                assert log.snapshot() == ["A:t", "B:t", "C:t"]
            else:
                seen = await node_a.forward("t", (node_b, node_c, node_a))
                assert len(set(seen)) == 1
                assert log.snapshot() == ["A:t", "B:t", "C:t", "A:t"]
        assert rt.wait_for.edges() == []

    @pytest.mark.parametrize(("a_backend", "b_backend"), MIXED_PAIRS)
    @pytest.mark.parametrize("policy", [CALL_CHAIN, NONE])
    async def test_two_chains_cross(
        self, rt: aptrt.Runtime, a_backend: str, b_backend: str, policy: aptrt.Reentrancy
    ) -> None:
        # chain 1 holds A and calls B; chain 2 holds B and calls A: the second to wait closes the cycle,
        # fails with WouldDeadlockError, lets go of B, and chain 1 then completes
        a = await rt.start_sta("A", backend=a_backend)
        b = await rt.start_sta("B", backend=b_backend)
        a.configure(reentrancy=policy)
        b.configure(reentrancy=policy)
        log = FlowLog()
        node_a = await a.create(Node, "A", log)
        node_b = await b.create(Node, "B", log)
        results: dict[str, Any] = {}
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_record, results, "chain 1", node_a.cross, "1", node_b)
                await wait_event(log["1"].entered)
                tg.start_soon(_record, results, "chain 2", node_b.cross, "2", node_a)
                await wait_event(log["2"].entered)
                log["1"].release.set()
                await wait_held(b, "mark")  # chain 1 waits for B
                assert len(rt.wait_for.edges()) == 1
                log["2"].release.set()  # chain 2 now asks for A: a cycle
        error = results["chain 2"]
        assert isinstance(error, aptrt.WouldDeadlockError), results
        assert error.cycle == ("A", "B", "A")
        assert error.hresult == aptrt.HRESULT.CONTEXT_E_WOULD_DEADLOCK
        assert isinstance(results["chain 1"], int), results
        assert log.snapshot() == ["A:enter 1", "B:enter 2", "B:1", "A:exit 1"]
        assert rt.wait_for.edges() == []
        assert a.running_calls() == b.running_calls() == []
        await node_a.mark("after")
        await node_b.mark("after")

    async def test_waiting_without_a_cycle_is_no_deadlock(self, rt: aptrt.Runtime) -> None:
        # chain 1 holds A and waits on the test; chain 2 waits for A: no cycle, so no error, just a wait
        a = await rt.start_sta("A", backend="trio")
        b = await rt.start_sta("B", backend="asyncio")
        a.configure(reentrancy=NONE)
        b.configure(reentrancy=NONE)
        log = FlowLog()
        node_a = await a.create(Node, "A", log)
        node_b = await b.create(Node, "B", log)
        results: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(_record, results, "chain 1", node_a.hold, "1")
            await wait_event(log["1"].entered)
            tg.start_soon(_record, results, "chain 2", node_b.cross, "2", node_a)
            log["2"].release.set()
            await wait_held(a, "mark")
            log["1"].release.set()
        assert not any(isinstance(value, Exception) for value in results.values()), results
        assert log.snapshot() == ["A:enter 1", "B:enter 2", "A:exit 1", "A:2", "B:exit 2"]
