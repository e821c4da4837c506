from __future__ import annotations

import asyncio
import threading

import anyio
import pytest
import trio

import aptrt

from .objects import Counter, Gate, ICounter, IGate, Signals, wait_event


class TestCurrentApartment:
    async def test_main_sta(self, rt: aptrt.Runtime, anyio_backend_name: str) -> None:
        main = rt.main_sta
        assert main is not None
        assert main.kind is aptrt.ApartmentKind.MAIN_STA
        assert main.name == "main"
        assert main.backend == anyio_backend_name
        assert main.thread is threading.current_thread()
        assert aptrt.current_apartment() is main
        assert aptrt.current_runtime() is rt
        assert rt.apartments[0] is main
        assert rt.mta in rt.apartments

    async def test_sta_thread(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)

        async def current() -> tuple[aptrt.Apartment, aptrt.Runtime]:
            return aptrt.current_apartment(), aptrt.current_runtime()

        assert await sta.run(current) == (sta, rt)
        assert await sta.run_sync(aptrt.current_apartment) is sta

    async def test_mta_worker_and_loop(self, rt: aptrt.Runtime) -> None:
        assert await rt.mta.run_sync(aptrt.current_apartment) is rt.mta
        assert rt.mta.kind is aptrt.ApartmentKind.MTA

        async def current() -> aptrt.Apartment:
            return aptrt.current_apartment()

        assert await rt.mta.run(current) is rt.mta

    async def test_plain_thread(self, rt: aptrt.Runtime) -> None:
        def plain() -> tuple[aptrt.Apartment, aptrt.Runtime]:
            return aptrt.current_apartment(), aptrt.current_runtime()

        assert await anyio.to_thread.run_sync(plain) == (rt.mta, rt)
        assert rt.mta.is_current() is False  # the main STA's thread is not in the MTA

    def test_no_runtime(self) -> None:
        with pytest.raises(aptrt.NotInitializedError) as excinfo:
            aptrt.current_apartment()
        assert excinfo.value.hresult == aptrt.HRESULT.CO_E_NOTINITIALIZED
        with pytest.raises(aptrt.NotInitializedError):
            aptrt.current_runtime()


class TestCausality:
    async def test_chain_shares_one_id(self, rt: aptrt.Runtime) -> None:
        first = await rt.start_sta("first")
        second = await rt.start_sta("second", backend="trio")
        assert aptrt.current_causality() is None

        async def inner() -> int | None:
            return aptrt.current_causality()

        async def outer() -> tuple[int | None, int | None, int | None]:
            here = aptrt.current_causality()
            there = await second.run(inner)
            in_mta = await rt.mta.run_sync(aptrt.current_causality)
            return here, there, in_mta

        here, there, in_mta = await first.run(outer)
        assert here is not None
        assert here == there == in_mta

        again, _, _ = await first.run(outer)
        assert again != here  # a new chain


class TestSyncRuntime:
    @pytest.mark.parametrize("backend", ["asyncio", "trio", "uvloop"])
    def test_blocking_use(self, backend: str) -> None:
        with aptrt.Runtime() as rt:
            assert rt.main_sta is None
            assert aptrt.current_apartment() is rt.mta  # this thread is a plain thread: implicit MTA
            sta = rt.start_sta_blocking("sync", backend=backend)
            assert sta.thread is not None
            assert sta.thread.name == "aptrt-sta-sync"
            proxy = sta.create_blocking(Counter, 1)
            assert isinstance(proxy, aptrt.Proxy)
            assert proxy.apartment is rt.mta
            b = aptrt.blocking(proxy)
            assert b.add(2) == 3
            assert b.add_async(3) == 6
            assert b.threads() == {sta.thread.ident}
            assert sta.run_sync_blocking(threading.get_ident) == sta.thread.ident

            async def in_mta_loop() -> str:
                return threading.current_thread().name

            assert rt.mta.run_blocking(in_mta_loop) == "aptrt-mta-loop"
            counter = rt.mta.create_blocking(Counter)  # this thread is in the MTA: the object itself
            assert type(counter) is Counter
            assert rt.mta.run_sync_blocking(aptrt.current_apartment) is rt.mta
        assert sta.closed
        assert "disconnected" in repr(proxy)

    def test_close_sta_blocking(self) -> None:
        with aptrt.Runtime() as rt:
            sta = rt.start_sta_blocking()
            proxy = sta.create_blocking(Counter)
            sta.close_blocking()
            sta.close_blocking()
            assert sta.closed
            with pytest.raises(aptrt.DisconnectedError):
                aptrt.blocking(proxy).add(1)

    def test_blocking_timeout(self) -> None:
        with aptrt.Runtime() as rt:
            sta = rt.start_sta_blocking()
            proxy = sta.create_blocking(Counter)
            assert aptrt.blocking(proxy, timeout=5).add(1) == 1


class TestEmbedding:
    @staticmethod
    async def _app(expected_backend: str) -> list[object]:
        results: list[object] = []
        async with aptrt.Runtime() as rt:
            assert rt.main_sta is not None
            assert rt.main_sta.backend == expected_backend
            async with rt.open_sta("asyncio-sta", backend="asyncio") as a, rt.open_sta("trio-sta", backend="trio") as t:
                counter = Counter()  # in the main STA; the STAs call back into it

                async def call_back(c: aptrt.Proxy[ICounter]) -> int:
                    return await c.add(1)

                results.append(await a.run(call_back, counter))
                results.append(await t.run(call_back, counter))
                proxy = await t.create(Counter)
                results.append(await a.run(call_back, proxy))
                results.append(await rt.mta.run(call_back, proxy))
                results.append(counter.threads() == {threading.get_ident()})
        return results

    def test_inside_a_trio_app(self) -> None:
        assert trio.run(self._app, "trio") == [1, 2, 1, 2, True]

    def test_inside_an_asyncio_app(self) -> None:
        assert asyncio.run(self._app("asyncio")) == [1, 2, 1, 2, True]

    def test_inside_a_uvloop_app(self) -> None:
        results = anyio.run(self._app, "asyncio", backend="asyncio", backend_options={"use_uvloop": True})
        assert results == [1, 2, 1, 2, True]


class TestForeignLoops:
    async def test_plain_thread_with_its_own_loop(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # a loop aptrt does not serve, on a plain thread (implicit MTA), awaits proxies and apartments
        sta = await rt.start_sta(backend=sta_backend)
        proxy = await sta.create(Counter)
        held: list[aptrt.Proxy[ICounter]] = []
        await rt.mta.run_sync(held.append, proxy)

        async def foreign() -> tuple[int, int, int]:
            return await held[0].add(1), await held[0].add_async(1), await sta.run_sync(threading.get_ident)

        def plain(backend: str) -> tuple[int, int, int]:
            return anyio.run(foreign, backend=backend)

        assert sta.thread is not None
        for backend in ("asyncio", "trio"):
            first, second, ident = await anyio.to_thread.run_sync(plain, backend)
            assert second == first + 1
            assert ident == sta.thread.ident
        assert await proxy.value() == 4


class TestRuntimeExit:
    async def test_body_raises(self, sta_backend: str) -> None:
        with pytest.raises(KeyError):
            async with aptrt.Runtime() as rt:
                sta = await rt.start_sta(backend=sta_backend)
                await sta.create(Counter)
                raise KeyError("body")
        assert sta.closed
        assert rt.main_sta is not None
        assert rt.main_sta.closed
        with pytest.raises(aptrt.NotInitializedError):
            aptrt.current_runtime()

    async def test_calls_in_flight_both_ways(self, sta_backend: str) -> None:
        # The runtime closes while the main STA waits on an STA, which waits on the main STA.
        sig = Signals()
        outcome: list[object] = []
        # the task group outlives the runtime
        async with anyio.create_task_group() as tg, aptrt.Runtime() as rt:
            sta = await rt.start_sta(backend=sta_backend)
            gate = Gate(sig)  # lives in the main STA

            async def wait_on_main(g: aptrt.Proxy[IGate]) -> None:
                await g.hold_async()

            async def caller() -> None:
                try:
                    await sta.run(wait_on_main, gate)
                except aptrt.COMError as exc:
                    outcome.append(exc)

            tg.start_soon(caller)
            await wait_event(sig.entered)
        assert len(outcome) == 1
        assert isinstance(outcome[0], aptrt.DisconnectedError)
        assert sig.log == ["cancelled"]
        assert sta.closed


class TestMisuse:
    async def test_nested_runtime_on_an_apartment_thread(self, rt: aptrt.Runtime) -> None:
        with pytest.raises(aptrt.ChangedModeError) as excinfo:
            async with aptrt.Runtime():
                pass
        assert excinfo.value.hresult == aptrt.HRESULT.RPC_E_CHANGED_MODE
        assert aptrt.current_apartment() is rt.main_sta

    def test_entered_twice(self) -> None:
        runtime = aptrt.Runtime()
        with runtime:
            pass
        with pytest.raises(RuntimeError, match="only once"), runtime:
            pass

    def test_not_open(self) -> None:
        runtime = aptrt.Runtime()
        with pytest.raises(aptrt.NotInitializedError):
            runtime.mta  # noqa: B018
        with pytest.raises(aptrt.NotInitializedError):
            runtime.start_sta_blocking()
        with runtime:
            pass
        with pytest.raises(aptrt.NotInitializedError):
            runtime.start_sta_blocking()

    def test_unknown_backend(self) -> None:
        with pytest.raises(ValueError, match="unknown backend"):
            aptrt.Runtime(backend="curio")

    async def test_default_backend(self) -> None:
        async with aptrt.Runtime(backend="trio") as rt:
            sta = await rt.start_sta()
            assert sta.backend == "trio"
            assert await sta.run_sync(lambda: threading.current_thread().name) == f"aptrt-sta-{sta.name}"


def test_a_main_sta_on_a_loop_not_started_by_anyio_runs_async_callees() -> None:
    """asyncio.run (not anyio.run): the inbox's drain runs outside any task, where sniffio cannot name the
    library; an async method of a main-STA object called from another STA must still start."""
    import asyncio

    class IAsyncThing(aptrt.Interface, iid="0f4b7f0e-5a2e-4d7e-9a6c-1f2e3d4c5b6a"):
        async def m(self) -> int: ...

    class AsyncThing(IAsyncThing):
        async def m(self) -> int:
            await asyncio.sleep(0)
            return 7

    async def call(proxy: object) -> int:
        return await proxy.m()  # type: ignore[attr-defined, no-any-return]

    async def main() -> int:
        async with aptrt.Runtime() as rt, rt.open_sta("other") as sta:
            return await asyncio.wait_for(sta.run(call, AsyncThing()), 10)

    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(asyncio.run(main())))
    thread.start()
    thread.join(20)
    assert results == [7]
