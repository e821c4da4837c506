from __future__ import annotations

import threading

import anyio
import anyio.lowlevel
import pytest

import aptrt

from .objects import Counter, Gate, ICounter, Signals, wait_event, wait_until


class IMeet(aptrt.Interface, iid="f1bf3bc8-6d58-4ce7-a399-8bc1309c0cca"):
    def meet(self) -> int: ...


class Meeting(IMeet):
    """Two calls must be inside ``meet`` at the same time, or the barrier breaks after 5 s."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=5)

    def meet(self) -> int:
        self.barrier.wait()
        return threading.get_ident()


class IFactory(aptrt.Interface, iid="102f3d30-43e1-4859-a399-84650db211cd"):
    def make(self) -> tuple[bool, int, int]: ...
    async def make_async(self) -> bool: ...
    def use(self, counter: Counter) -> tuple[bool, int]: ...


class Factory(IFactory):
    def make(self) -> tuple[bool, int, int]:
        # inside the MTA, creating in the MTA gives the object itself, and calling it is a direct call
        counter = aptrt.current_apartment().create_blocking(Counter)
        return type(counter) is Counter, counter.add(1), counter.threads().pop()

    async def make_async(self) -> bool:
        counter = await aptrt.current_runtime().mta.create(Counter)
        return type(counter) is Counter

    def use(self, counter: Counter) -> tuple[bool, int]:
        return type(counter) is Counter, counter.add(2)


def _is_mta_worker() -> bool:
    return threading.current_thread().name.startswith("aptrt-mta-")


class TestCalls:
    async def test_sync_and_async_methods(self, rt: aptrt.Runtime) -> None:
        proxy = await rt.mta.create(Counter)
        assert isinstance(proxy, aptrt.Proxy)
        assert proxy.target_apartment is rt.mta
        assert await proxy.add(1) == 1
        assert await proxy.add_async(2) == 3
        names = await rt.mta.run_sync(lambda: threading.current_thread().name)
        assert names.startswith("aptrt-mta-")

        async def loop_thread() -> str:
            await anyio.lowlevel.checkpoint()
            return threading.current_thread().name

        assert await rt.mta.run(loop_thread) == "aptrt-mta-loop"
        assert threading.get_ident() not in await proxy.threads()

    async def test_sta_to_mta(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        proxy = await rt.mta.create(Counter)

        async def use(p: aptrt.Proxy[ICounter]) -> tuple[int, int]:
            return await p.add(1), await p.add_async(1)

        assert await sta.run(use, proxy) == (1, 2)
        assert sta.thread is not None
        assert sta.thread.ident not in await proxy.threads()

    async def test_mta_to_sta(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        proxy = await sta.create(Counter)

        def from_worker(p: aptrt.Proxy[ICounter]) -> tuple[bool, int, int]:
            b = aptrt.blocking(p)
            return _is_mta_worker(), b.add(1), b.add_async(1)

        async def from_loop(p: aptrt.Proxy[ICounter]) -> tuple[int, int]:
            return await p.add(1), await p.add_async(1)

        assert await rt.mta.run_sync(from_worker, proxy) == (True, 1, 2)
        assert await rt.mta.run(from_loop, proxy) == (3, 4)
        assert sta.thread is not None
        assert await proxy.threads() == {sta.thread.ident}

    async def test_plain_thread_calls_mta_objects_directly(self, rt: aptrt.Runtime) -> None:
        def plain() -> tuple[bool, set[int], int]:
            counter = rt.mta.create_blocking(Counter)
            counter.add(1)
            return type(counter) is Counter, counter.threads(), threading.get_ident()

        is_object, threads, ident = await anyio.to_thread.run_sync(plain)
        assert is_object
        assert threads == {ident}


class TestConcurrency:
    async def test_two_sync_calls_overlap(self, rt: aptrt.Runtime) -> None:
        proxy = await rt.mta.create(Meeting)
        idents: list[int] = []

        async def meet() -> None:
            idents.append(await proxy.meet())

        async with anyio.create_task_group() as tg:
            tg.start_soon(meet)
            tg.start_soon(meet)
        assert len(set(idents)) == 2

    async def test_two_sync_calls_overlap_on_a_fresh_pool(self, rt: aptrt.Runtime) -> None:
        meeting = Meeting()  # no call has started a worker yet
        idents: list[int] = []

        async def meet() -> None:
            idents.append(await rt.mta.run_sync(meeting.meet))

        async with anyio.create_task_group() as tg:
            tg.start_soon(meet)
            tg.start_soon(meet)
        assert len(set(idents)) == 2

    async def test_workers_are_bounded(self) -> None:
        async with aptrt.Runtime(mta_workers=2) as rt:
            assert rt.mta.max_workers == 2
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(rt.mta.run_sync, threading.get_ident)
            assert 1 <= rt.mta.workers <= 2

    def test_invalid_worker_count(self) -> None:
        with pytest.raises(ValueError, match="at least one worker"), aptrt.Runtime(mta_workers=0):
            pass


class ITally(aptrt.Interface, iid="0ec6854a-133b-43cb-b7d0-092ead1fe834"):
    def add(self, n: int) -> int: ...
    def total(self) -> int: ...


class Tally(aptrt.Guarded, ITally):
    def __init__(self) -> None:
        self._total = 0

    @aptrt.guarded
    def add(self, n: int) -> int:
        self._total += n
        return self._total

    def total(self) -> int:
        with self.owned():
            return self._total


class TestGuarded:
    async def test_concurrent_updates(self, rt: aptrt.Runtime) -> None:
        tally = await rt.mta.create(Tally)

        def hammer(t: Tally) -> None:
            for _ in range(100):
                t.add(1)  # an MTA worker calls an MTA object directly

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(rt.mta.run_sync, hammer, tally)
            for _ in range(4):
                tg.start_soon(tally.add, 1)
        assert await tally.total() == 404

    def test_owned_is_one_reentrant_lock(self) -> None:
        tally = Tally()
        lock = tally.owned()
        assert tally.owned() is lock
        with lock, tally.owned():
            assert tally.add(1) == 1


class TestDirectCalls:
    async def test_create_in_mta_from_mta_returns_the_object(self, rt: aptrt.Runtime) -> None:
        factory = await rt.mta.create(Factory)
        is_object, value, ident = await factory.make()
        assert (is_object, value) == (True, 1)
        assert ident != threading.get_ident()
        assert await factory.make_async()

    async def test_mta_proxy_returning_home_is_the_object(self, rt: aptrt.Runtime) -> None:
        factory = await rt.mta.create(Factory)
        counter = await rt.mta.create(Counter)
        assert await factory.use(counter) == (True, 2)
        assert await counter.value() == 2

    async def test_current_apartment_in_worker_and_loop(self, rt: aptrt.Runtime) -> None:
        assert await rt.mta.run_sync(aptrt.current_apartment) is rt.mta

        async def current() -> aptrt.Apartment:
            return aptrt.current_apartment()

        assert await rt.mta.run(current) is rt.mta


class TestClosing:
    async def test_close_with_calls_running_and_queued(self) -> None:
        sig = Signals()
        outcomes: dict[str, object] = {}
        async with aptrt.Runtime(mta_workers=1) as rt:
            gate = await rt.mta.create(Gate, sig)

            async def call(key: str, method: str, *args: object) -> None:
                try:
                    outcomes[key] = await getattr(gate, method)(*args)
                except aptrt.COMError as exc:
                    outcomes[key] = exc

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "running", "hold")
                await wait_event(sig.entered)
                for i in range(3):
                    tg.start_soon(call, f"queued-{i}", "tick", i)
                await anyio.wait_all_tasks_blocked()
                assert rt.mta.statistics().queued == 3

                tg.start_soon(rt.mta.aclose)
                await wait_until(lambda: rt.mta.closing, "the MTA is closing")
                with pytest.raises(aptrt.ApartmentClosedError):
                    await gate.tick(100)
                sig.release.set()

        assert outcomes.pop("running") == "released"
        for key, outcome in outcomes.items():
            assert isinstance(outcome, aptrt.DisconnectedError), (key, outcome)
        assert sorted(outcomes) == ["queued-0", "queued-1", "queued-2"]
        assert sig.log == ["hold"]

    async def test_close_with_async_call_running(self, rt: aptrt.Runtime) -> None:
        sig = Signals()
        gate = await rt.mta.create(Gate, sig)
        outcome: list[object] = []

        async def call() -> None:
            try:
                outcome.append(await gate.hold_async())
            except aptrt.COMError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await wait_event(sig.entered)
            await rt.mta.aclose()

        assert len(outcome) == 1
        assert isinstance(outcome[0], aptrt.DisconnectedError)
        assert sig.log == ["cancelled"]
        with pytest.raises(aptrt.ApartmentClosedError):
            await rt.mta.run_sync(int)
