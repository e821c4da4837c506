"""aptrt.begin: calls started now and awaited later (pipelines from one task)."""

from __future__ import annotations

import threading

import anyio
import pytest

import aptrt

from .objects import Counter, Gate, ICounter, Signals, wait_event, wait_until


class IWork(aptrt.Interface, iid="8c4f3f0e-5a0b-4d53-9d1e-6f2f3c1b7a01"):
    def echo(self, x: int) -> int: ...
    async def echo_async(self, x: int) -> int: ...
    def fail(self, message: str) -> None: ...
    def thread(self) -> str: ...


class Work(IWork):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def echo(self, x: int) -> int:
        self.seen.append(x)
        return x

    async def echo_async(self, x: int) -> int:
        await anyio.lowlevel.checkpoint()
        self.seen.append(x)
        return x

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def thread(self) -> str:
        return threading.current_thread().name


class TestBegin:
    async def test_a_window_of_calls_from_one_task(self, aptrt_sta: aptrt.STA) -> None:
        work = await aptrt_sta.create(Work)
        window = [aptrt.begin(work.echo, i) for i in range(64)]
        window += [aptrt.begin(work.echo_async, i) for i in range(64, 128)]
        with anyio.fail_after(10):
            results = [await pending for pending in window]
        assert results == list(range(128))
        assert all(pending.done() for pending in window)

    async def test_replies_before_and_after_the_handle_is_awaited(self, aptrt_sta: aptrt.STA) -> None:
        """A reply that arrives before its handle is awaited is not posted back (the handle reads it off
        the call); one the handle already waits for wakes it. Both, interleaved, in any order."""
        work = await aptrt_sta.create(Work)
        sig = Signals()
        gate = await aptrt_sta.create(Gate, sig)
        held = aptrt.begin(gate.hold)
        await wait_event(sig.entered)  # the target's thread is held: what follows queues behind it
        queued = [aptrt.begin(work.echo, i) for i in range(200)]
        assert not any(pending.done() for pending in queued)
        # await a handle before its reply exists: it must be woken by a posted reply
        results: list[int] = []

        async def await_first() -> None:
            results.append(await queued[0])

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(await_first)
                # (whitebox: the handle asked for its reply to be posted: it waits)
                await wait_until(lambda: queued[0]._call.reply_port is not None, "the first handle waits")
                sig.release.set()
            assert await held == "released"
            assert await work.echo(-1) == -1  # queued after them on the same thread: they all replied
            assert all(pending.done() for pending in queued)
            # the rest replied while nobody awaited them; await them out of order
            rest = [await pending for pending in reversed(queued[1:])]
        assert results == [0]
        assert rest == list(reversed(range(1, 200)))

    async def test_many_handles_never_awaited(self, aptrt_sta: aptrt.STA) -> None:
        counter = await aptrt_sta.create(Counter)
        for _ in range(100):
            aptrt.begin(counter.add, 1)  # the handle is dropped at once
        with anyio.fail_after(5):
            assert await counter.value() == 100  # queued behind them, on the same thread

    async def test_the_call_is_queued_at_once(self, aptrt_sta: aptrt.STA) -> None:
        sig = Signals()
        gate = await aptrt_sta.create(Gate, sig)
        pending = aptrt.begin(gate.hold)
        await wait_event(sig.entered)  # the callee runs while this task has not awaited anything
        assert not pending.done()
        assert "pending" in repr(pending)
        sig.release.set()
        with anyio.fail_after(5):
            assert await pending == "released"
        assert pending.done()

    async def test_a_reply_waits_in_the_handle(self, aptrt_sta: aptrt.STA) -> None:
        work = await aptrt_sta.create(Work)
        pending = aptrt.begin(work.thread)
        await wait_until(pending.done, "the reply arrived")
        assert "done" in repr(pending)
        assert await pending == f"aptrt-sta-{aptrt_sta.name}"

    async def test_errors_raise_where_awaited(self, aptrt_sta: aptrt.STA) -> None:
        work = await aptrt_sta.create(Work)
        pending = aptrt.begin(work.fail, "bad")
        with anyio.fail_after(5), pytest.raises(ValueError, match="bad") as raised:
            await pending
        assert any("apartment 'test'" in note for note in raised.value.__notes__)

    async def test_awaited_once(self, aptrt_sta: aptrt.STA) -> None:
        work = await aptrt_sta.create(Work)
        pending = aptrt.begin(work.echo, 1)
        assert await pending == 1
        with pytest.raises(RuntimeError, match="only once"):
            await pending

    async def test_a_handle_never_awaited_still_makes_its_call(self, aptrt_sta: aptrt.STA) -> None:
        sig = Signals()
        gate = await aptrt_sta.create(Gate, sig)
        aptrt.begin(gate.tick, 7)
        assert await gate.tick(8) == 8  # calls from one task run in order
        assert sig.log == [7, 8]

    async def test_cancel(self, aptrt_sta: aptrt.STA) -> None:
        sig = Signals()
        gate = await aptrt_sta.create(Gate, sig)
        pending = aptrt.begin(gate.hold_async)
        await wait_event(sig.entered)
        pending.cancel()
        await wait_event(sig.done)
        assert sig.log == ["cancelled"]
        with pytest.raises(aptrt.CallCancelledError):
            await pending

    async def test_cancel_after_the_reply_keeps_it(self, aptrt_sta: aptrt.STA) -> None:
        work = await aptrt_sta.create(Work)
        pending = aptrt.begin(work.echo, 3)
        await wait_until(pending.done, "the reply arrived")
        pending.cancel()
        assert await pending == 3

    async def test_cancelling_the_awaiting_task_cancels_the_call(self, aptrt_sta: aptrt.STA) -> None:
        sig = Signals()
        gate = await aptrt_sta.create(Gate, sig)
        pending = aptrt.begin(gate.hold_async)
        with anyio.move_on_after(0.05) as scope:
            await pending
        assert scope.cancelled_caught
        await wait_event(sig.done)
        assert sig.log == ["cancelled"]

    async def test_the_deadline_at_begin_travels(self, aptrt_sta: aptrt.STA) -> None:
        sig = Signals()
        gate = await aptrt_sta.create(Gate, sig)
        with pytest.raises(TimeoutError), anyio.fail_after(0.05):
            pending = aptrt.begin(gate.sleep, 10)
            await pending
        # the callee ran under the deadline and was cancelled at it, or (a slow machine) it was still
        # queued at the deadline and never started
        await wait_until(lambda: sig.log == ["cancelled"] or aptrt_sta.statistics().expired == 1, "the callee stopped")

    async def test_a_full_inbox_that_waits_sends_when_awaited(self, aptrt_sta: aptrt.STA) -> None:
        sig = Signals()
        gate = await aptrt_sta.create(Gate, sig)
        aptrt_sta.configure(max_queued=1, overflow="wait")
        holding = aptrt.begin(gate.hold)
        await wait_event(sig.entered)
        queued = aptrt.begin(gate.tick, 1)  # takes the one slot
        waiting = aptrt.begin(gate.tick, 2)  # no room: made when awaited
        sig.release.set()
        with anyio.fail_after(5):
            assert [await holding, await queued, await waiting] == ["released", 1, 2]

    async def test_a_released_proxy_is_refused_at_once(self, aptrt_sta: aptrt.STA) -> None:
        work = await aptrt_sta.create(Work)
        method = work.echo
        work.release()
        with pytest.raises(aptrt.InvalidArgumentError, match="released"):
            aptrt.begin(method, 1)

    async def test_a_proxy_of_another_apartment_is_refused_at_once(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        async with rt.open_sta(backend=sta_backend) as sta:
            work = await sta.create(Work)

            async def there(method: object) -> None:
                aptrt.begin(method, 1)  # type: ignore[arg-type]

            with pytest.raises(aptrt.WrongThreadError):
                await sta.run(there, work.echo)

    def test_not_a_method(self) -> None:
        with pytest.raises(aptrt.InvalidArgumentError, match="takes a method"):
            aptrt.begin(42, 1)  # type: ignore[arg-type]


class TestBeginLocal:
    """A method of an object of this apartment: sync ones run now, async ones when awaited."""

    async def test_sync_method_runs_now(self, rt: aptrt.Runtime) -> None:
        counter = Counter()
        pending = aptrt.begin(aptrt.as_interface(counter).add, 2)  # type: ignore[arg-type]
        assert counter.value() == 2
        assert pending.done()
        assert await pending == 2

    async def test_async_method_runs_when_awaited(self, rt: aptrt.Runtime) -> None:
        counter = Counter()
        pending = aptrt.begin(counter.add_async, 5)
        assert counter.value() == 0
        assert await pending == 5

    async def test_sync_error_raises_when_awaited(self, rt: aptrt.Runtime) -> None:
        work = Work()
        pending = aptrt.begin(work.fail, "later")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="later"):
            await pending

    async def test_cancel_before_awaiting(self, rt: aptrt.Runtime) -> None:
        counter = Counter()
        pending = aptrt.begin(counter.add_async, 5)
        pending.cancel()
        with pytest.raises(aptrt.CallCancelledError):
            await pending
        assert counter.value() == 0


def _typed(proxy: aptrt.Proxy[ICounter]) -> None:
    """(static typing: begin keeps the method's result type)"""
    pending: aptrt.PendingCall[int] = aptrt.begin(aptrt.as_interface(proxy).add_async, 1)
    del pending
