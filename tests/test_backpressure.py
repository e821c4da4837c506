"""Load control: bounded inboxes (wait or reject), message filters, and client retry policies."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import aptrt

from .objects import Gate, Signals, wait_event, wait_until
from .objects_flow import MIXED_PAIRS, FlowLog, INode, ISink, Node, Sink

TOTAL = 10_000
BOUND = 100
WORKERS = 200  # concurrent callers, each making TOTAL // WORKERS calls in turn
#: bounds tests that take milliseconds, but would hang if a waiting caller were never let in
HANG = 1.5
#: the bound's bookkeeping does not depend on the callee's loop: one of each family
LOOPS = pytest.mark.parametrize("sta_backend", ["asyncio", "trio"])


async def _mta_held(rt: aptrt.Runtime, proxy: aptrt.Proxy[Any]) -> aptrt.Proxy[Any]:
    """*proxy* marshaled to the MTA, so that a plain thread (an implicit MTA member) may use it."""
    held: list[aptrt.Proxy[Any]] = []
    await rt.mta.run_sync(held.append, proxy)
    return held[0]


async def _busy_sink(
    rt: aptrt.Runtime, backend: str, **bound: Any
) -> tuple[aptrt.STA, aptrt.Proxy[ISink], list[int], aptrt.Proxy[Any], Signals]:
    sta = await rt.start_sta("target", backend=backend)
    seen: list[int] = []
    sink = await sta.create(Sink, aptrt.by_reference(seen))
    sig = Signals()
    gate = await sta.create(Gate, sig)
    sta.configure(**bound)
    return sta, sink, seen, gate, sig


class TestBoundedInbox:
    async def test_wait_completes_every_call(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta, sink, seen, gate, sig = await _busy_sink(rt, sta_backend, max_queued=BOUND, overflow="wait")
        base = sta.statistics()
        per_worker = TOTAL // WORKERS

        async def worker(first: int) -> None:
            for n in range(first, first + per_worker):
                assert await sink.put(n) == n

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(gate.hold)
                await wait_event(sig.entered)
                for w in range(WORKERS):
                    tg.start_soon(worker, w * per_worker)
                await anyio.wait_all_tasks_blocked()
                # the apartment is busy: the inbox is full, and every other caller waits for room
                queued, ran = sta.statistics().queued, len(seen)
                sig.release.set()
                assert (queued, ran) == (BOUND, 0)
        assert len(seen) == TOTAL
        assert set(seen) == set(range(TOTAL))  # nothing lost, nothing run twice
        stats = sta.statistics()
        assert stats.completed - base.completed == TOTAL + 1  # the puts, and the hold
        assert (stats.rejected, stats.failed, stats.queued, stats.running) == (0, 0, 0, 0)

    async def test_reject_refuses_the_overflow(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta, sink, seen, gate, sig = await _busy_sink(rt, sta_backend, max_queued=BOUND, overflow="reject")
        base = sta.statistics()
        accepted: list[int] = []
        rejected: list[int] = []

        async def put(n: int) -> None:
            try:
                assert await sink.put(n) == n
            except aptrt.RetryLaterError as exc:
                assert exc.hresult == aptrt.HRESULT.RPC_E_SERVERCALL_RETRYLATER
                rejected.append(n)
            else:
                accepted.append(n)

        first_wave = 2 * BOUND  # the rest divides evenly among the workers
        with anyio.fail_after(20):
            # deterministic: the apartment is busy, so exactly BOUND calls fit and the rest are refused at once
            async with anyio.create_task_group() as tg:
                tg.start_soon(gate.hold)
                await wait_event(sig.entered)
                for n in range(first_wave):
                    tg.start_soon(put, n)
                await anyio.wait_all_tasks_blocked()
                queued = sta.statistics().queued
                sig.release.set()  # (before asserting: a failed assertion must not leave the gate shut)
                assert queued == BOUND
                assert len(rejected) == first_wave - BOUND  # (trio starts tasks in no set order)
            assert len(accepted) == BOUND

            # then the rest under load: whatever is refused, everything is accounted for
            per_worker = (TOTAL - first_wave) // WORKERS

            async def worker(first: int) -> None:
                for n in range(first, first + per_worker):
                    await put(n)

            async with anyio.create_task_group() as tg:
                for w in range(WORKERS):
                    tg.start_soon(worker, first_wave + w * per_worker)
        assert len(accepted) + len(rejected) == TOTAL
        assert len(seen) == len(accepted)
        assert set(seen) == set(accepted)  # the callee saw exactly the accepted calls, once each
        assert not set(accepted) & set(rejected)
        stats = sta.statistics()
        assert stats.rejected - base.rejected == len(rejected)
        assert stats.completed - base.completed == len(accepted) + 1
        assert (stats.failed, stats.queued, stats.running) == (0, 0, 0)

    @LOOPS
    async def test_async_waiter_leaves_under_its_deadline(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # a caller waiting for room under move_on_after leaves quietly; the callers behind it still get in
        sta, sink, seen, gate, sig = await _busy_sink(rt, sta_backend, max_queued=1, overflow="wait")
        results: list[int] = []

        async def put(n: int) -> None:
            results.append(await sink.put(n))

        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:
                tg.start_soon(gate.hold)
                await wait_event(sig.entered)
                tg.start_soon(put, 1)  # takes the only slot
                await anyio.wait_all_tasks_blocked()
                with anyio.move_on_after(0.05) as scope:
                    await sink.put(2)  # waits for room, and gives up
                assert scope.cancelled_caught
                tg.start_soon(put, 3)  # waits for room, with no deadline
                await anyio.wait_all_tasks_blocked()
                sig.release.set()
        assert sorted(results) == [1, 3]
        assert sorted(seen) == [1, 3]
        assert sta.statistics().queued == 0

    @LOOPS
    async def test_blocking_waiter_leaves_under_its_timeout(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        _sta, sink, seen, gate, sig = await _busy_sink(rt, sta_backend, max_queued=1, overflow="wait")
        held = await _mta_held(rt, sink)
        results: list[int] = []

        async def put(n: int) -> None:
            results.append(await sink.put(n))

        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:
                tg.start_soon(gate.hold)
                await wait_event(sig.entered)
                tg.start_soon(put, 1)  # takes the only slot
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(TimeoutError):
                    await anyio.to_thread.run_sync(lambda: aptrt.blocking(held, timeout=0.05).put(2))
                tg.start_soon(put, 3)
                await anyio.wait_all_tasks_blocked()
                sig.release.set()
        assert sorted(results) == [1, 3]
        assert sorted(seen) == [1, 3]
        assert await anyio.to_thread.run_sync(lambda: aptrt.blocking(held, timeout=5).put(4)) == 4

    async def test_blocking_callers_wait_for_room(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        _sta, sink, seen, _gate, _sig = await _busy_sink(rt, sta_backend, max_queued=2, overflow="wait")
        held = await _mta_held(rt, sink)

        def plain(first: int) -> None:
            blocking = aptrt.blocking(held, timeout=10)
            for n in range(first, first + 100):
                assert blocking.put(n) == n

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for t in range(8):
                    tg.start_soon(anyio.to_thread.run_sync, plain, t * 100)
        assert sorted(seen) == list(range(800))

    async def test_unbounding(self, rt: aptrt.Runtime) -> None:
        sta, sink, seen, gate, sig = await _busy_sink(rt, "asyncio", max_queued=1, overflow="reject")
        sta.configure(max_queued=None)
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.hold)
            await wait_event(sig.entered)
            for n in range(5):
                tg.start_soon(sink.put, n)
            await anyio.wait_all_tasks_blocked()
            assert sta.statistics().queued == 5
            sig.release.set()
        assert sorted(seen) == list(range(5))

    @LOOPS
    async def test_reconfiguring_keeps_the_rejected_count(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # statistics are cumulative: changing or lifting the bound must not forget the calls it refused
        sta, sink, _seen, gate, sig = await _busy_sink(rt, sta_backend, max_queued=1, overflow="reject")
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.hold)
            await wait_event(sig.entered)
            tg.start_soon(sink.put, 1)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(aptrt.RetryLaterError):
                await sink.put(2)
            sig.release.set()
        assert sta.statistics().rejected == 1
        sta.configure(max_queued=50, overflow="wait")
        assert sta.statistics().rejected == 1
        sta.configure(max_queued=None)
        assert sta.statistics().rejected == 1

    @LOOPS
    async def test_lifting_the_bound_lets_waiting_callers_in(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta, sink, seen, gate, sig = await _busy_sink(rt, sta_backend, max_queued=1, overflow="wait")
        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:
                tg.start_soon(gate.hold)
                await wait_event(sig.entered)
                tg.start_soon(sink.put, 1)  # takes the only slot
                tg.start_soon(sink.put, 2)  # waits for room
                await anyio.wait_all_tasks_blocked()
                sta.configure(max_queued=None)  # no bound any more: nobody needs to wait for room
                sig.release.set()
        assert sorted(seen) == [1, 2]

    @LOOPS
    async def test_a_new_bound_is_kept(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # calls queued under an old bound leave the inbox after it was replaced: the new bound must
        # still hold exactly
        sta, sink, seen, gate, sig = await _busy_sink(rt, sta_backend, max_queued=1, overflow="reject")
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.hold)
            await wait_event(sig.entered)
            tg.start_soon(sink.put, 1)  # queued under the old bound
            await anyio.wait_all_tasks_blocked()
            sta.configure(max_queued=1, overflow="reject")
            sig.release.set()
        assert sorted(seen) == [1]
        refused: list[int] = []

        async def put(n: int) -> None:
            try:
                await sink.put(n)
            except aptrt.RetryLaterError:
                refused.append(n)

        sig2 = Signals()
        gate2 = await sta.create(Gate, sig2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate2.hold)
            await wait_event(sig2.entered)
            for n in (2, 3, 4):
                tg.start_soon(put, n)
            await anyio.wait_all_tasks_blocked()
            queued = sta.statistics().queued
            sig2.release.set()
        assert queued == 1
        assert len(refused) == 2

    def test_invalid_bound(self) -> None:
        with aptrt.Runtime() as rt:
            sta = rt.start_sta_blocking()
            with pytest.raises(ValueError):
                sta.configure(max_queued=0)
            with pytest.raises(ValueError):
                sta.configure(max_queued=10, overflow="drop")


class Recorder:
    """A message filter that records what it is shown and answers from a script (then ADMIT)."""

    def __init__(self, answers: dict[str, list[aptrt.FilterDecision]] | None = None) -> None:
        self.answers = answers or {}
        self.seen: list[aptrt.IncomingCall] = []
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, call: aptrt.IncomingCall) -> aptrt.FilterDecision:
        with self._lock:
            self.seen.append(call)
            self.threads.add(threading.get_ident())
            script = self.answers.get(call.method)
            return script.pop(0) if script else aptrt.FilterDecision.ADMIT

    def calls_of(self, method: str) -> list[aptrt.IncomingCall]:
        with self._lock:
            return [call for call in self.seen if call.method == method]


class TestMessageFilter:
    async def test_admit_reject_retry_later(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta("target", backend=sta_backend)
        log = FlowLog()
        node = await sta.create(Node, "n", log)
        recorder = Recorder(
            {"mark": [aptrt.FilterDecision.REJECT, aptrt.FilterDecision.RETRY_LATER, aptrt.FilterDecision.ADMIT]}
        )
        sta.configure(message_filter=recorder)
        base = sta.statistics()

        with pytest.raises(aptrt.CallRejectedError) as rejected:
            await node.mark("one")
        assert type(rejected.value) is aptrt.CallRejectedError
        assert rejected.value.hresult == aptrt.HRESULT.RPC_E_CALL_REJECTED
        with pytest.raises(aptrt.RetryLaterError) as later:
            await node.mark("two")
        assert later.value.hresult == aptrt.HRESULT.RPC_E_SERVERCALL_RETRYLATER
        assert await node.mark("three") is not None
        assert log.snapshot() == ["n:three"]  # refused calls never ran

        stats = sta.statistics()
        assert stats.rejected - base.rejected == 2
        assert stats.failed == base.failed
        assert sta.thread is not None
        assert recorder.threads == {sta.thread.ident}  # the filter runs on the apartment's thread
        first = recorder.seen[0]
        assert (first.method, first.apartment, first.caller, first.call_type) == (
            "mark",
            "target",
            "main",
            aptrt.CallType.TOPLEVEL,
        )
        assert len({call.causality for call in recorder.seen}) == 3  # three independent calls

        sta.configure(message_filter=None)
        assert await node.mark("four") is not None
        assert len(recorder.seen) == 3

    async def test_filter_sees_run_and_async_calls(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta("target", backend="trio")
        node = await sta.create(Node, "n", FlowLog())
        recorder = Recorder({"deadline_left": [aptrt.FilterDecision.RETRY_LATER]})
        sta.configure(message_filter=recorder)
        with pytest.raises(aptrt.RetryLaterError):
            await node.deadline_left()
        assert await sta.run_sync(int) == 0
        assert [call.method for call in recorder.seen] == ["deadline_left", "int"]

    async def test_a_raising_filter_fails_the_call(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        node = await sta.create(Node, "n", FlowLog())

        def broken(call: aptrt.IncomingCall) -> aptrt.FilterDecision:
            raise KeyError("filter bug")

        sta.configure(message_filter=broken)
        with pytest.raises(KeyError):
            await node.mark("x")
        sta.configure(message_filter=None)
        assert await node.mark("y") is not None  # the apartment survived
        assert sta.statistics().failed == 1

    @pytest.mark.parametrize(("a_backend", "b_backend"), MIXED_PAIRS)
    async def test_nested_and_toplevel(self, rt: aptrt.Runtime, a_backend: str, b_backend: str) -> None:
        a = await rt.start_sta("A", backend=a_backend)
        b = await rt.start_sta("B", backend=b_backend)
        log = FlowLog()
        node_a = await a.create(Node, "A", log)
        node_b = await b.create(Node, "B", log)
        recorder = Recorder()
        a.configure(message_filter=recorder)
        async with anyio.create_task_group() as tg:
            tg.start_soon(node_a.call_out, "1", node_b)
            await wait_event(log["1"].entered)  # A → B → A happened; B holds, A's call_out awaits
            await node_a.mark("independent")  # another chain, while A serves chain 1
            log["1"].release.set()
        outer, nested, independent = recorder.seen
        assert (outer.method, outer.call_type, outer.caller) == ("call_out", aptrt.CallType.TOPLEVEL, "main")
        assert (nested.method, nested.call_type, nested.caller) == ("mark", aptrt.CallType.NESTED, "B")
        assert (independent.method, independent.call_type) == ("mark", aptrt.CallType.TOPLEVEL)
        assert outer.causality == nested.causality != independent.causality
        assert {outer.apartment, nested.apartment, independent.apartment} == {"A"}


class TestRetryPolicy:
    @staticmethod
    async def _target(
        rt: aptrt.Runtime, backend: str, rejections: int, decision: aptrt.FilterDecision
    ) -> tuple[aptrt.STA, aptrt.Proxy[INode], FlowLog, Recorder]:
        sta = await rt.start_sta("target", backend=backend)
        log = FlowLog()
        node = await sta.create(Node, "n", log)
        recorder = Recorder({"mark": [decision] * rejections})
        sta.configure(message_filter=recorder)
        return sta, node, log, recorder

    @pytest.mark.parametrize("decision", [aptrt.FilterDecision.RETRY_LATER, aptrt.FilterDecision.REJECT])
    async def test_main_sta_retries_until_admitted(
        self, rt: aptrt.Runtime, sta_backend: str, decision: aptrt.FilterDecision
    ) -> None:
        sta, node, log, recorder = await self._target(rt, sta_backend, 3, decision)
        assert rt.main_sta is not None
        rt.main_sta.configure(retry_policy=aptrt.RetryPolicy(attempts=4, delay=0.001))
        with anyio.fail_after(5):
            assert await node.mark("x") is not None
        assert len(recorder.calls_of("mark")) == 4  # three refusals, then admitted
        assert log.snapshot() == ["n:x"]
        assert sta.statistics().rejected == 3

    async def test_attempts_exhausted(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta, node, log, recorder = await self._target(rt, sta_backend, 5, aptrt.FilterDecision.RETRY_LATER)
        assert rt.main_sta is not None
        rt.main_sta.configure(retry_policy=aptrt.RetryPolicy(attempts=3, delay=0.001))
        with anyio.fail_after(5), pytest.raises(aptrt.RetryLaterError):
            await node.mark("x")
        assert len(recorder.calls_of("mark")) == 3
        assert log.snapshot() == []
        assert sta.statistics().rejected == 3

    async def test_no_policy_no_retry(self, rt: aptrt.Runtime) -> None:
        _sta, node, _log, recorder = await self._target(rt, "asyncio", 1, aptrt.FilterDecision.REJECT)
        with pytest.raises(aptrt.CallRejectedError):
            await node.mark("x")
        assert len(recorder.calls_of("mark")) == 1

    async def test_retry_on_narrows_what_is_retried(self, rt: aptrt.Runtime) -> None:
        _sta, node, _log, recorder = await self._target(rt, "trio", 1, aptrt.FilterDecision.REJECT)
        assert rt.main_sta is not None
        rt.main_sta.configure(
            retry_policy=aptrt.RetryPolicy(attempts=5, delay=0.001, retry_on=(aptrt.RetryLaterError,))
        )
        with pytest.raises(aptrt.CallRejectedError):
            await node.mark("x")
        assert len(recorder.calls_of("mark")) == 1

    def test_delays(self) -> None:
        policy = aptrt.RetryPolicy(attempts=5, delay=0.01, backoff=2.0, max_delay=0.03)
        error = aptrt.RetryLaterError()
        assert [policy.next_delay(n, error) for n in range(1, 6)] == [0.01, 0.02, 0.03, 0.03, None]
        assert policy.next_delay(1, aptrt.DisconnectedError()) is None  # type: ignore[arg-type]

    @pytest.mark.parametrize(("caller_backend", "callee_backend"), MIXED_PAIRS)
    async def test_only_calls_from_the_configured_apartment_retry(
        self, rt: aptrt.Runtime, caller_backend: str, callee_backend: str
    ) -> None:
        caller = await rt.start_sta("caller", backend=caller_backend)
        _sta, node, log, recorder = await self._target(rt, callee_backend, 2, aptrt.FilterDecision.RETRY_LATER)
        caller.configure(retry_policy=aptrt.RetryPolicy(attempts=3, delay=0.001))

        async def mark(p: aptrt.Proxy[INode], tag: str) -> Any:
            return await p.mark(tag)

        with anyio.fail_after(5):
            assert await caller.run(mark, node, "from caller") is not None
        assert len(recorder.calls_of("mark")) == 3
        recorder.answers["mark"] = [aptrt.FilterDecision.RETRY_LATER]
        with pytest.raises(aptrt.RetryLaterError):
            await node.mark("from main")  # the main STA has no policy
        assert log.snapshot() == ["n:from caller"]

    async def test_mta_loop_caller_retries(self, rt: aptrt.Runtime) -> None:
        _sta, node, _log, recorder = await self._target(rt, "trio", 2, aptrt.FilterDecision.REJECT)
        rt.mta.configure(retry_policy=aptrt.RetryPolicy(attempts=3, delay=0.001))

        async def mark(p: aptrt.Proxy[INode]) -> Any:
            return await p.mark("from the MTA")

        with anyio.fail_after(5):
            assert await rt.mta.run(mark, node) is not None
        assert len(recorder.calls_of("mark")) == 3

    async def test_blocking_mta_caller_retries(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # a plain thread is an (implicit) MTA member: its calls are calls made from the MTA
        _sta, node, log, recorder = await self._target(rt, sta_backend, 2, aptrt.FilterDecision.RETRY_LATER)
        rt.mta.configure(retry_policy=aptrt.RetryPolicy(attempts=3, delay=0.001))
        held = await _mta_held(rt, node)
        result = await anyio.to_thread.run_sync(lambda: aptrt.blocking(held, timeout=5).mark("blocking"))
        assert result is not None
        assert len(recorder.calls_of("mark")) == 3
        assert log.snapshot() == ["n:blocking"]

    async def test_retries_keep_the_causality(self, rt: aptrt.Runtime) -> None:
        # a retried call is the same logical call: the filter must see one causality chain, not three
        _sta, node, _log, recorder = await self._target(rt, "asyncio", 2, aptrt.FilterDecision.RETRY_LATER)
        assert rt.main_sta is not None
        rt.main_sta.configure(retry_policy=aptrt.RetryPolicy(attempts=3, delay=0.001))
        await node.mark("x")
        assert len({call.causality for call in recorder.calls_of("mark")}) == 1

    async def test_retry_a_full_inbox(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # overflow "reject" plus a client retry policy: the caller retries until the inbox has room
        sta, sink, seen, gate, sig = await _busy_sink(rt, sta_backend, max_queued=1, overflow="reject")
        assert rt.main_sta is not None
        rt.main_sta.configure(retry_policy=aptrt.RetryPolicy(attempts=10_000, delay=0.001, max_delay=0.005))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(gate.hold)
                await wait_event(sig.entered)
                tg.start_soon(sink.put, 1)  # fills the inbox
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(sink.put, 2)  # refused, and retried
                await wait_until(lambda: sta.statistics().rejected >= 2, "the call was refused and retried")
                sig.release.set()
        assert sorted(seen) == [1, 2]
