"""Observability: latency percentiles and counters in statistics, call instruments, and ``aptrt.dump``."""

from __future__ import annotations

import io
import logging
import re
import threading
import time

import anyio
import pytest

import aptrt

from .objects import Gate, Signals, wait_event, wait_until
from .objects_flow import MIXED_PAIRS, FlowLog, Node


class Recording:
    """An instrument that records every hook call, with the thread it ran on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, aptrt.CallEvent, BaseException | None, int]] = []

    def call_started(self, event: aptrt.CallEvent) -> None:
        with self._lock:
            self.events.append(("started", event, None, threading.get_ident()))

    def call_finished(self, event: aptrt.CallEvent, error: BaseException | None) -> None:
        with self._lock:
            self.events.append(("finished", event, error, threading.get_ident()))

    def of(
        self, apartment: str, method: str | None = None
    ) -> list[tuple[str, aptrt.CallEvent, BaseException | None, int]]:
        with self._lock:
            return [
                entry
                for entry in self.events
                if entry[1].apartment == apartment and (method is None or entry[1].method == method)
            ]


class Raising:
    def __init__(self, where: str) -> None:
        self.where = where
        self.calls = 0

    def call_started(self, event: aptrt.CallEvent) -> None:
        self.calls += 1
        if self.where == "started":
            raise RuntimeError("instrument bug at start")

    def call_finished(self, event: aptrt.CallEvent, error: BaseException | None) -> None:
        self.calls += 1
        if self.where == "finished":
            raise RuntimeError("instrument bug at finish")


class TestStatistics:
    async def test_latency_percentiles(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        fresh = sta.statistics()
        assert fresh.latency_p50 is None
        assert fresh.latency_p99 is None
        node = await sta.create(Node, "n", FlowLog())
        for i in range(100):
            await node.mark(str(i))
            await node.deadline_left()
        stats = sta.statistics()
        assert stats.latency_p50 is not None
        assert stats.latency_p99 is not None
        assert 0 < stats.latency_p50 <= stats.latency_p99 < 5
        assert stats.completed == 201

    async def test_latency_is_sampled_one_call_in_eight(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        from aptrt._core._execute import LATENCY_SAMPLE

        sta = await rt.start_sta(backend=sta_backend)
        node = await sta.create(Node, "n", FlowLog())  # the first call the STA runs
        assert sta.statistics().latency_p50 is not None  # the first call is in the sample
        # (whitebox: the histogram of the STA's thread)
        histogram = sta._host.counters.latency  # type: ignore[attr-defined]
        assert histogram.count == 1
        for i in range(2 * LATENCY_SAMPLE):
            await node.mark(str(i))
        assert histogram.count == 3  # calls 1, 9 and 17

    async def test_mta_latency(self, rt: aptrt.Runtime) -> None:
        node = await rt.mta.create(Node, "m", FlowLog())
        for i in range(20):
            await node.mark(str(i))
        stats = rt.mta.statistics()
        assert stats.latency_p50 is not None
        assert stats.latency_p99 is not None
        assert stats.latency_p50 <= stats.latency_p99

    async def test_counts(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        log = FlowLog()
        node = await sta.create(Node, "n", log)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        base = sta.statistics()

        # failed: the method raised
        with pytest.raises(ValueError):
            await node.fail("boom")
        # cancelled: the caller cancelled a running async call
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(node.hold, "c")
                await wait_event(log["c"].entered)
                scope.cancel()
        await wait_event(log["c"].done)
        # rejected: by the message filter, and by a full inbox
        sta.configure(message_filter=lambda call: aptrt.FilterDecision.REJECT)
        with pytest.raises(aptrt.CallRejectedError):
            await node.mark("refused")
        sta.configure(message_filter=None, max_queued=1, overflow="reject")
        # expired: queued behind a busy apartment past the caller's deadline
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.hold)
            await wait_event(sig.entered)
            with anyio.move_on_after(0.05):
                await node.mark("late")  # takes the only slot, and expires there
            with pytest.raises(aptrt.RetryLaterError):
                await node.mark("full")
            sig.release.set()

        def settled() -> bool:
            # the late call leaves the inbox (freeing its slot) after the hold has replied: wait for it,
            # however it is counted, before the round trip needs that slot
            now = sta.statistics()
            return now.running == 0 and now.expired + now.cancelled - base.expired - base.cancelled == 2

        await wait_until(settled, "the cancelled and the late call are accounted for")
        await sta.run_sync(int)

        stats = sta.statistics()
        counts = {
            name: getattr(stats, name) - getattr(base, name)
            for name in ("completed", "failed", "cancelled", "expired", "rejected")
        }
        # completed: the hold and the round trip
        assert counts == {"completed": 2, "failed": 1, "cancelled": 1, "expired": 1, "rejected": 2}
        assert (stats.queued, stats.running) == (0, 0)


class TestInstruments:
    async def test_hooks_run_on_the_apartments_thread(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta("target", backend=sta_backend)
        node = await sta.create(Node, "n", FlowLog())
        recording = Recording()
        rt.add_instrument(recording)
        before = time.perf_counter()
        causality = await node.mark("x")
        left = await node.deadline_left()
        with pytest.raises(ValueError):
            await node.fail("boom")
        after = time.perf_counter()
        rt.remove_instrument(recording)
        await node.mark("unobserved")

        assert left == float("inf")
        events = recording.of("target")
        assert [(kind, event.method) for kind, event, _, _ in events] == [
            ("started", "mark"),
            ("finished", "mark"),
            ("started", "deadline_left"),
            ("finished", "deadline_left"),
            ("started", "fail"),
            ("finished", "fail"),
        ]
        assert sta.thread is not None
        assert {thread for *_, thread in events} == {sta.thread.ident}
        started, finished = events[0][1], events[1][1]
        assert isinstance(started, aptrt.CallEvent)
        assert started == finished
        assert (started.method, started.apartment, started.caller, started.causality) == (
            "mark",
            "target",
            "main",
            causality,
        )
        assert before <= started.created <= after
        assert [error for kind, _, error, _ in events if kind == "finished"][:2] == [None, None]
        assert isinstance(events[-1][2], ValueError)
        assert len({event.causality for _, event, _, _ in events}) == 3  # three independent calls

    @pytest.mark.parametrize(("a_backend", "b_backend"), MIXED_PAIRS)
    async def test_a_chain_carries_one_causality(self, rt: aptrt.Runtime, a_backend: str, b_backend: str) -> None:
        a = await rt.start_sta("A", backend=a_backend)
        b = await rt.start_sta("B", backend=b_backend)
        log = FlowLog()
        node_a = await a.create(Node, "A", log)
        node_b = await b.create(Node, "B", log)
        recording = Recording()
        rt.add_instrument(recording)
        seen = await node_a.forward("t", (node_b, node_a))
        rt.remove_instrument(recording)
        in_a = recording.of("A", "forward")
        in_b = recording.of("B", "forward")
        assert len(in_a) == 4  # started/finished, twice (the outer call and the nested callback)
        assert len(in_b) == 2
        assert {event.causality for _, event, _, _ in in_a + in_b} == {seen[0]}
        assert [event.caller for kind, event, _, _ in in_a if kind == "started"] == ["main", "B"]
        assert [event.caller for kind, event, _, _ in in_b if kind == "started"] == ["A"]
        assert a.thread is not None
        assert b.thread is not None
        assert {thread for *_, thread in in_a} == {a.thread.ident}
        assert {thread for *_, thread in in_b} == {b.thread.ident}

    @pytest.mark.parametrize("where", ["started", "finished"])
    async def test_a_raising_instrument_is_removed(
        self, rt: aptrt.Runtime, sta_backend: str, where: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        sta = await rt.start_sta("target", backend=sta_backend)
        node = await sta.create(Node, "n", FlowLog())
        broken = Raising(where)
        recording = Recording()
        rt.add_instrument(broken)
        rt.add_instrument(recording)
        with caplog.at_level(logging.ERROR, logger="aptrt"):
            assert await node.mark("x") is not None  # the call is not broken by its instrument
            assert await node.mark("y") is not None
        assert broken not in rt.instruments
        assert recording in rt.instruments
        assert broken.calls == (1 if where == "started" else 2)  # never called again once it raised
        assert len(recording.of("target", "mark")) == 4  # the well-behaved one saw everything
        assert any("instrument" in record.getMessage() for record in caplog.records)
        rt.remove_instrument(recording)
        assert sta.statistics().failed == 0


class TestDump:
    async def test_dump_shows_apartments_calls_and_the_wait_for_graph(self, rt: aptrt.Runtime) -> None:
        target = await rt.start_sta("target", backend="trio")
        busy = await rt.start_sta("busy", backend="asyncio")
        target.configure(reentrancy=aptrt.Reentrancy.NONE)
        log = FlowLog()
        node = await target.create(Node, "n", log)
        sig = Signals()
        gate = await busy.create(Gate, sig)
        async with anyio.create_task_group() as tg:
            tg.start_soon(node.hold, "a")  # runs, and holds the target's gate
            await wait_event(log["a"].entered)
            tg.start_soon(node.mark, "b")  # another chain: waits at the gate
            await wait_until(lambda: len(target.running_calls()) == 2, "the second call waits at the gate")
            tg.start_soon(gate.hold)  # holds the busy apartment's thread
            await wait_event(sig.entered)
            tg.start_soon(gate.tick, 1)  # queued behind it
            await wait_until(lambda: busy.statistics().queued == 1, "the tick is queued")

            holder = next(call.causality for call in target.running_calls() if call.name == "hold")
            waiter = next(call.causality for call in target.running_calls() if call.name == "mark")
            buffer = io.StringIO()
            text = aptrt.dump(rt, file=buffer)
            log["a"].release.set()
            sig.release.set()

        assert buffer.getvalue() == text + "\n"
        for name in ("main", "MTA", "target", "busy"):
            assert f"{name!r}:" in text, text
        assert re.search(r"'busy': queued=1 running=0", text), text
        assert re.search(r"queued  tick causality=\d+ from 'main'", text), text
        assert re.search(rf"running hold causality={holder} from 'main' for [\d.]+ ms", text), text
        assert f"running mark causality={waiter} from 'main'" in text, text
        assert f"chain {waiter} waits at target, held by chains [{holder}]" in text, text

        after = aptrt.dump(rt, file=io.StringIO())
        assert "wait-for graph: (empty)" in after
        assert "queued  " not in after
        assert "running " not in after
        assert re.search(r"'target': .* p50=\d+µs p99=\d+µs", after), after

    async def test_dump_defaults_to_the_current_runtime(self, rt: aptrt.Runtime) -> None:
        await rt.start_sta("visible")
        text = aptrt.dump(file=io.StringIO())
        assert "'visible'" in text
        assert repr(rt) in text


class TestHistogram:
    """The latency histogram: raw samples are binned in bulk, readers see binned and raw ones alike."""

    def test_percentiles_across_a_fold(self) -> None:
        from aptrt._core._observe import Histogram

        histogram = Histogram()
        samples = [(i + 1) * 1e-6 for i in range(1000)]  # 1 µs .. 1 ms, more than one fold's worth
        for seconds in samples:
            histogram.record(seconds)
        assert histogram.count == 1000
        p50 = Histogram.percentile([histogram], 0.5)
        p99 = Histogram.percentile([histogram], 0.99)
        assert p50 is not None and p99 is not None
        assert abs(p50 - 500e-6) / 500e-6 < 0.1  # buckets are ~9% wide
        assert abs(p99 - 990e-6) / 990e-6 < 0.1

    def test_tiny_and_zero_samples_land_in_the_first_bucket(self) -> None:
        from aptrt._core._observe import Histogram

        histogram = Histogram()
        histogram.record(0.0)
        histogram.record(1e-9)
        assert histogram.count == 2
        assert Histogram.percentile([histogram], 0.99) == 1e-6

    def test_percentile_of_several_histograms(self) -> None:
        from aptrt._core._observe import Histogram

        fast, slow = Histogram(), Histogram()
        for _ in range(300):
            fast.record(10e-6)
        for _ in range(100):
            slow.record(1e-3)
        assert Histogram.percentile([], 0.5) is None
        p50 = Histogram.percentile([fast, slow], 0.5)
        p99 = Histogram.percentile([fast, slow], 0.99)
        assert p50 is not None and p99 is not None
        assert abs(p50 - 10e-6) / 10e-6 < 0.1
        assert abs(p99 - 1e-3) / 1e-3 < 0.1
