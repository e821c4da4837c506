from __future__ import annotations

import threading

import anyio
import anyio.lowlevel
import pytest

import aptrt

from .objects import Counter, Gate, ICounter, IReset, Signals, wait_event, wait_until


class TestLifecycle:
    async def test_start_and_close(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta("worker", backend=sta_backend)
        assert isinstance(sta, aptrt.STA)
        assert sta.kind is aptrt.ApartmentKind.STA
        assert sta.name == "worker"
        assert sta.backend == sta_backend
        assert sta.thread is not None
        assert sta.thread.name == "aptrt-sta-worker"
        assert sta.thread.is_alive()
        assert sta in rt.apartments
        assert await sta.run_sync(threading.get_ident) == sta.thread.ident

        await sta.aclose()
        assert sta.closed
        assert not sta.thread.is_alive()
        assert sta not in rt.apartments

    async def test_close_is_idempotent(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        await sta.aclose()
        await sta.aclose()
        assert sta.closed

    async def test_open_sta_closes_on_exit(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        async with rt.open_sta("scoped", backend=sta_backend) as sta:
            assert await sta.run_sync(lambda: threading.current_thread().name) == "aptrt-sta-scoped"
        assert sta.closed

    async def test_default_names_are_distinct(self, rt: aptrt.Runtime) -> None:
        first = await rt.start_sta()
        second = await rt.start_sta()
        assert first.name != second.name
        assert first.thread is not second.thread

    async def test_unknown_backend(self, rt: aptrt.Runtime) -> None:
        with pytest.raises(ValueError, match="unknown backend"):
            await rt.start_sta(backend="curio")
        assert not any(isinstance(apartment, aptrt.STA) and apartment is not rt.main_sta for apartment in rt.apartments)

    async def test_main_sta_cannot_be_closed(self, rt: aptrt.Runtime) -> None:
        assert rt.main_sta is not None
        with pytest.raises(RuntimeError, match="closes with its runtime"):
            await rt.main_sta.aclose()

    async def test_concurrent_start_and_close(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        stas: list[aptrt.STA] = []

        async def start(i: int) -> None:
            stas.append(await rt.start_sta(f"many-{i}", backend=sta_backend))

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(start, i)
        assert len({sta.thread for sta in stas}) == 8
        async with anyio.create_task_group() as tg:
            for sta in stas:
                tg.start_soon(sta.aclose)
                tg.start_soon(sta.aclose)  # closing twice at once is fine too
        assert all(sta.closed for sta in stas)

    async def test_open_sta_closes_when_the_body_raises(self, rt: aptrt.Runtime) -> None:
        with pytest.raises(LookupError):
            async with rt.open_sta("raising") as sta:
                raise LookupError
        assert sta.closed

    async def test_blocking_twins_refuse_an_event_loop(self, rt: aptrt.Runtime) -> None:
        # like every blocking call, the lifecycle twins must not stall the loop they are called from
        with pytest.raises(aptrt.WrongThreadError):
            rt.start_sta_blocking("from-a-loop")
        sta = await rt.start_sta()
        with pytest.raises(aptrt.WrongThreadError):
            sta.close_blocking()
        assert not sta.closed

    async def test_sta_cannot_close_itself(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        with pytest.raises(aptrt.WouldDeadlockError) as excinfo:
            await sta.run(sta.aclose)
        assert excinfo.value.hresult == aptrt.HRESULT.CONTEXT_E_WOULD_DEADLOCK
        assert not sta.closing
        assert await sta.run_sync(int, "7") == 7


class TestCalls:
    async def test_sync_and_async_methods(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        proxy = await sta.create(Counter, 10)
        assert isinstance(proxy, aptrt.Proxy)
        assert await proxy.add(1) == 11
        assert await proxy.add_async(2) == 13
        assert await proxy.value() == 13
        assert sta.thread is not None
        assert await proxy.threads() == {sta.thread.ident}

    async def test_run_and_run_sync(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)

        async def where(tag: str) -> tuple[str, int, aptrt.Apartment]:
            await anyio.lowlevel.checkpoint()
            return tag, threading.get_ident(), aptrt.current_apartment()

        assert sta.thread is not None
        assert await sta.run(where, "a") == ("a", sta.thread.ident, sta)
        assert await sta.run_sync(lambda x, y: (x + y, threading.get_ident()), 2, 3) == (5, sta.thread.ident)

    async def test_run_in_own_apartment_is_a_direct_call(self, rt: aptrt.Runtime) -> None:
        assert rt.main_sta is not None
        ident = threading.get_ident()
        assert await rt.main_sta.run_sync(threading.get_ident) == ident
        before = rt.main_sta.statistics().completed

        async def here() -> int:
            return threading.get_ident()

        assert await rt.main_sta.run(here) == ident
        assert rt.main_sta.statistics().completed == before

    async def test_create_in_own_apartment_returns_the_object(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)

        async def create_here() -> bool:
            obj = await aptrt.current_apartment().create(Counter)
            return type(obj) is Counter

        assert await sta.run(create_here)
        assert rt.main_sta is not None
        assert type(await rt.main_sta.create(Counter)) is Counter

    async def test_create_with_keyword_arguments(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Counter, start=5)
        assert await proxy.value() == 5

    async def test_create_with_interface(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Counter, 3, interface=IReset)
        assert proxy.interface is IReset
        assert await proxy.reset() == 3
        assert not hasattr(proxy, "add")
        assert sta.statistics().exported == 1

    async def test_sta_to_sta(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta("home", backend=sta_backend)
        caller = await rt.start_sta("caller", backend="trio" if sta_backend != "trio" else "asyncio")
        proxy = await home.create(Counter)

        async def use(p: aptrt.Proxy[ICounter]) -> tuple[int, int, aptrt.Apartment]:
            assert p.apartment is caller
            return await p.add(1), await p.add_async(2), aptrt.current_apartment()

        assert await caller.run(use, proxy) == (1, 3, caller)
        assert home.thread is not None
        assert await proxy.threads() == {home.thread.ident}

    async def test_plain_thread_to_sta(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)

        async def async_where() -> int:
            await anyio.lowlevel.checkpoint()
            return threading.get_ident()

        def plain() -> tuple[int, int, set[int], int, int]:
            assert aptrt.current_apartment() is rt.mta  # a plain thread: the implicit MTA
            proxy = sta.create_blocking(Counter)
            assert proxy.apartment is rt.mta  # plain threads are in the implicit MTA
            b = aptrt.blocking(proxy)
            return (
                b.add(4),
                b.add_async(5),
                b.threads(),
                sta.run_sync_blocking(threading.get_ident),
                sta.run_blocking(async_where),
            )

        assert sta.thread is not None
        ident = sta.thread.ident
        assert await anyio.to_thread.run_sync(plain) == (4, 9, {ident}, ident, ident)


class TestAffinity:
    async def test_object_runs_only_on_its_thread_under_load(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        calls = 200
        home = await rt.start_sta("home", backend=sta_backend)
        callers = [
            await rt.start_sta(f"caller-{backend}", backend=backend) for backend in ("asyncio", "trio", "uvloop")
        ]
        proxy = await home.create(Counter)
        held: list[aptrt.Proxy[ICounter]] = []
        await rt.mta.run_sync(held.append, proxy)  # a proxy owned by the MTA, for plain threads

        async def hammer(p: aptrt.Proxy[ICounter]) -> None:
            for _ in range(calls // 2):
                await p.add(1)
                await p.add_async(1)

        def hammer_blocking(p: aptrt.Proxy[ICounter]) -> None:
            b = aptrt.blocking(p)
            for _ in range(calls // 2):
                b.add(1)
                b.add_async(1)

        async with anyio.create_task_group() as tg:
            for sta in callers:
                tg.start_soon(sta.run, hammer, proxy)
            tg.start_soon(rt.mta.run_sync, hammer_blocking, proxy)
            for _ in range(2):
                tg.start_soon(anyio.to_thread.run_sync, hammer_blocking, held[0])
            tg.start_soon(hammer, proxy)

        assert home.thread is not None
        assert await proxy.threads() == {home.thread.ident}
        assert await proxy.value() == 7 * calls


class TestStatistics:
    async def test_counts(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta("counted", backend=sta_backend)
        stats = sta.statistics()
        assert stats == aptrt.ApartmentStatistics(
            name="counted",
            kind=aptrt.ApartmentKind.STA,
            queued=0,
            running=0,
            completed=0,
            failed=0,
            cancelled=0,
            expired=0,
            exported=0,
        )
        proxy = await sta.create(Counter)  # the creation is a call too
        for n in range(3):
            await proxy.add(n)
        await proxy.add_async(1)
        for _ in range(2):
            with pytest.raises(TypeError):
                await proxy.add("not a number")
        stats = sta.statistics()
        assert (stats.completed, stats.failed, stats.cancelled, stats.expired) == (5, 2, 0, 0)
        assert (stats.queued, stats.running, stats.exported) == (0, 0, 1)

        proxy.release()
        assert sta.statistics().exported == 0

    async def test_queued_calls_are_counted(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.hold)
            await wait_event(sig.entered)
            for n in range(3):
                tg.start_soon(gate.tick, n)
            await anyio.wait_all_tasks_blocked()
            assert sta.statistics().queued == 3
            sig.release.set()
        stats = sta.statistics()
        assert (stats.queued, stats.completed) == (0, 5)
        assert sig.log[0] == "hold"
        assert sorted(sig.log[1:]) == [0, 1, 2]  # trio starts tasks in no fixed order


class TestClosing:
    async def test_close_with_sync_call_running_and_calls_queued(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta("doomed", backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        held: list[aptrt.Proxy[Gate]] = []
        await rt.mta.run_sync(held.append, gate)
        outcomes: dict[str, object] = {}

        async def call(key: str, method: str, *args: object) -> None:
            try:
                outcomes[key] = await getattr(gate, method)(*args)
            except aptrt.COMError as exc:
                outcomes[key] = exc

        def plain_call(key: str) -> None:
            try:
                outcomes[key] = aptrt.blocking(held[0]).tick(99)
            except aptrt.COMError as exc:
                outcomes[key] = exc

        plain_threads = [threading.Thread(target=plain_call, args=(f"plain-{i}",)) for i in range(2)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "running", "hold")
            await wait_event(sig.entered)
            for i in range(3):
                tg.start_soon(call, f"queued-{i}", "tick", i)
            for thread in plain_threads:
                thread.start()
            await anyio.wait_all_tasks_blocked()
            await wait_until(lambda: sta.statistics().queued == 5, "the plain threads' calls are queued")

            tg.start_soon(sta.aclose)
            await anyio.wait_all_tasks_blocked()
            assert sta.closing
            with pytest.raises(aptrt.ApartmentClosedError):
                await gate.tick(100)  # refused at once
            sig.release.set()

        for thread in plain_threads:
            thread.join(5)
            assert not thread.is_alive()
        assert outcomes.pop("running") == "released"
        assert sorted(outcomes) == ["plain-0", "plain-1", "queued-0", "queued-1", "queued-2"]
        for key, outcome in outcomes.items():
            assert isinstance(outcome, aptrt.DisconnectedError), (key, outcome)
            assert outcome.reason is aptrt.DisconnectReason.SERVER_SHUTDOWN
            assert outcome.hresult == aptrt.HRESULT.RPC_E_DISCONNECTED
        assert sig.log == ["hold"]  # nothing queued ran
        assert sta.closed

        with pytest.raises(aptrt.DisconnectedError) as excinfo:
            await gate.tick(1)
        assert excinfo.value.reason is aptrt.DisconnectReason.SERVER_SHUTDOWN

    async def test_close_with_async_call_running(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        outcome: list[object] = []

        async def call() -> None:
            try:
                outcome.append(await gate.hold_async())
            except aptrt.COMError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await wait_event(sig.entered)
            await sta.aclose()

        assert len(outcome) == 1
        assert isinstance(outcome[0], aptrt.DisconnectedError)
        assert sig.log == ["cancelled"]
        assert sig.done.is_set()

    async def test_calls_after_close_fail(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Counter)
        await sta.aclose()
        with pytest.raises(aptrt.ApartmentClosedError):
            await sta.run_sync(int)
        with pytest.raises(aptrt.ApartmentClosedError):
            await sta.create(Counter)
        with pytest.raises(aptrt.DisconnectedError):
            await proxy.add(1)

    async def test_plain_thread_close_blocking(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        await anyio.to_thread.run_sync(sta.close_blocking)
        assert sta.closed

    async def test_runtime_exit_closes_its_stas(self, sta_backend: str) -> None:
        async with aptrt.Runtime() as rt:
            stas = [await rt.start_sta(backend=sta_backend) for _ in range(3)]
            proxy = await stas[0].create(Counter)
        assert all(sta.closed for sta in stas)
        assert all(sta.thread is not None and not sta.thread.is_alive() for sta in stas)
        assert "disconnected" in repr(proxy)
