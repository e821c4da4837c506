"""Lifetime: stubs keep objects alive while external references exist, and let go when the last proxy is
released (explicitly, by ``async with``, or by garbage collection); shutting down the server or the client
apartment releases what it held (design §2, COM §1.4). Ends with the no-leak stress test."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
import pytest

import aptrt

from .objects_activation import ISecond, ITracked, Tracked, Tracker, collect, wait_exported, wait_gone


@pytest.fixture
async def server(rt: aptrt.Runtime) -> AsyncIterator[aptrt.STA]:
    async with rt.open_sta("server") as sta:
        yield sta


class TestStubLifetime:
    async def test_stub_keeps_the_object_alive(self, server: aptrt.STA) -> None:
        tracker = Tracker()
        proxy = await server.create(Tracked, tracker)
        collect()
        assert tracker.alive == 1  # nothing in the server refers to it but the stub
        assert server.statistics().exported == 1
        assert await proxy.ping(1) == 1
        proxy.release()

    async def test_explicit_release(self, server: aptrt.STA) -> None:
        tracker = Tracker()
        proxy = await server.create(Tracked, tracker)
        proxy.release()
        proxy.release()  # idempotent
        assert server.statistics().exported == 0
        collect()
        assert tracker.alive == 0
        assert "released" in repr(proxy) or "disconnected" in repr(proxy)
        with pytest.raises(aptrt.COMError):
            await proxy.ping(1)

    async def test_aclose(self, server: aptrt.STA) -> None:
        tracker = Tracker()
        proxy = await server.create(Tracked, tracker)
        await proxy.aclose()
        assert server.statistics().exported == 0
        collect()
        assert tracker.alive == 0

    async def test_async_with(self, server: aptrt.STA) -> None:
        tracker = Tracker()
        async with await server.create(Tracked, tracker) as proxy:
            assert await proxy.ping(2) == 2
            assert server.statistics().exported == 1
        assert server.statistics().exported == 0
        collect()
        assert tracker.alive == 0

    async def test_garbage_collection(self, server: aptrt.STA) -> None:
        tracker = Tracker()
        proxy = await server.create(Tracked, tracker)
        assert await proxy.ping(3) == 3
        del proxy
        collect()
        assert server.statistics().exported == 0  # statistics() gives back what GC dropped
        collect()
        assert tracker.alive == 0

    async def test_every_reference_counts(self, rt: aptrt.Runtime, server: aptrt.STA) -> None:
        tracker = Tracker()
        first = await server.create(Tracked, tracker)
        second = aptrt.query_interface(first, ISecond)  # another interface: another reference
        async with rt.open_sta("client") as client:

            async def keep(proxy: aptrt.Proxy[ITracked]) -> None:
                holder.append(proxy)  # a proxy of the client apartment

            holder: list[object] = []
            await client.run(keep, first)
            first.release()
            assert server.statistics().exported == 1
            second.release()
            assert server.statistics().exported == 1  # the client's proxy still holds it
            assert tracker.alive == 1

            def drop() -> None:
                holder.pop().release()  # type: ignore[attr-defined]

            await client.run_sync(drop)
            assert server.statistics().exported == 0
        collect()
        assert tracker.alive == 0

    async def test_a_proxy_released_from_another_apartment(self, rt: aptrt.Runtime, server: aptrt.STA) -> None:
        # COM §1.4: a proxy may be released from the wrong apartment; its reference is still given back
        tracker = Tracker()
        proxy = await server.create(Tracked, tracker)
        await rt.mta.run_sync(proxy.release)
        assert server.statistics().exported == 0
        collect()
        assert tracker.alive == 0

    async def test_object_kept_by_a_remote_holder(self, rt: aptrt.Runtime, server: aptrt.STA) -> None:
        main = rt.main_sta
        assert main is not None
        tracker = Tracker()
        holder = await server.create(Tracked, Tracker())
        await holder.keep(Tracked(tracker))  # main's object, held by the server through a proxy
        collect()
        assert tracker.alive == 1
        assert main.statistics().exported == 1
        await holder.drop()  # the server releases its proxy
        assert main.statistics().exported == 0
        collect()
        assert tracker.alive == 0
        holder.release()

    async def test_mta_call_arguments_are_not_kept(self, rt: aptrt.Runtime) -> None:
        # once a call to the MTA returned, nothing of it stays referenced (an idle worker must not pin
        # its last call's arguments, results or target)
        main = rt.main_sta
        assert main is not None
        tracker = Tracker()

        def touch(value: object) -> None:
            assert isinstance(value, aptrt.Proxy)

        await rt.mta.run_sync(touch, Tracked(tracker))
        collect()
        assert main.statistics().exported == 0
        assert tracker.alive == 0

    async def test_mta_object_released_after_calls(self, rt: aptrt.Runtime) -> None:
        tracker = Tracker()
        proxy = await rt.mta.create(Tracked, tracker)
        assert await proxy.ping(1) == 1
        proxy.release()
        assert rt.mta.statistics().exported == 0
        collect()
        assert tracker.alive == 0


class TestShutdown:
    async def test_server_shutdown_releases_its_objects(self, rt: aptrt.Runtime) -> None:
        tracker = Tracker()
        server = await rt.start_sta("server")
        proxy = await server.create(Tracked, tracker)
        second = aptrt.query_interface(proxy, ISecond)
        await server.aclose()
        assert server.statistics().exported == 0
        collect()
        assert tracker.alive == 0  # released even though proxies exist
        for p in (proxy, second):
            with pytest.raises(aptrt.DisconnectedError) as excinfo:
                await p.ping(1) if p is proxy else await p.second()
            assert excinfo.value.reason is aptrt.DisconnectReason.SERVER_SHUTDOWN
            assert excinfo.value.hresult == aptrt.HRESULT.RPC_E_DISCONNECTED
        proxy.release()  # releasing a disconnected proxy is harmless
        second.release()

    async def test_server_shutdown_with_a_proxy_in_another_sta(self, rt: aptrt.Runtime) -> None:
        tracker = Tracker()
        server = await rt.start_sta("server")
        proxy = await server.create(Tracked, tracker)
        async with rt.open_sta("client") as client:

            async def keep(p: aptrt.Proxy[ITracked]) -> None:
                kept.append(p)

            kept: list[aptrt.Proxy[ITracked]] = []
            await client.run(keep, proxy)
            await server.aclose()

            async def call_kept() -> str:
                with pytest.raises(aptrt.DisconnectedError) as excinfo:
                    await kept[0].ping(1)
                return excinfo.value.reason.name

            assert await client.run(call_kept) == "SERVER_SHUTDOWN"
        collect()
        assert tracker.alive == 0

    async def test_client_shutdown_releases_its_references(self, rt: aptrt.Runtime, server: aptrt.STA) -> None:
        main = rt.main_sta
        assert main is not None
        here = Tracked(Tracker())
        there = await server.create(Tracked, Tracker())
        client = await rt.start_sta("client")

        async def keep(a: aptrt.Proxy[ITracked], b: aptrt.Proxy[ITracked]) -> None:
            kept.extend([a, b, aptrt.query_interface(b, ISecond)])

        kept: list[object] = []
        await client.run(keep, here, there)
        there.release()
        assert main.statistics().exported == 1
        assert server.statistics().exported == 1
        await client.aclose()
        assert main.statistics().exported == 0  # the client's remote references were given back
        assert server.statistics().exported == 0
        assert len(kept) == 3

    async def test_objects_die_with_the_runtime(self) -> None:
        tracker = Tracker()
        async with aptrt.Runtime() as rt:
            sta = await rt.start_sta()
            remote = await sta.create(Tracked, tracker)
            mta_obj = await rt.mta.create(Tracked, tracker)
            assert tracker.alive == 2
        del rt
        collect()
        assert tracker.alive == 0
        assert "disconnected" in repr(remote) and "disconnected" in repr(mta_obj)


class TestNoLeak:
    async def test_stress(self, rt: aptrt.Runtime, anyio_backend_name: str) -> None:
        """10,000 proxies made in one STA, passed through two more apartments (and the main STA), then
        dropped in three ways: every stub goes and every object is finalized."""
        started = time.monotonic()
        main = rt.main_sta
        assert main is not None
        tracker = Tracker()
        n = 10_000
        other = "trio" if anyio_backend_name == "asyncio" else "asyncio"
        async with rt.open_sta("a") as a, rt.open_sta("b", backend=other) as b, rt.open_sta("c") as c:

            def make(count: int) -> list[Tracked]:
                return [Tracked(tracker) for _ in range(count)]

            async def in_c(items: list[aptrt.Proxy[ITracked]]) -> list[aptrt.Proxy[ITracked]]:
                assert all(p.apartment is c for p in items)
                # a sample of calls from here, then everything goes back (to b, then main)
                assert [await p.ping(i) for i, p in enumerate(items[:50])] == list(range(50))
                return items

            async def in_b(items: list[aptrt.Proxy[ITracked]]) -> tuple[int, list[aptrt.Proxy[ITracked]]]:
                assert all(p.apartment is b for p in items)
                back = await c.run(in_c, items)
                same = sum(1 for x, y in zip(back, items, strict=True) if x == y)
                return same, back

            def at_home(items: list[object]) -> int:
                return sum(1 for item in items if type(item) is Tracked)  # a's own objects again

            proxies: list[aptrt.Proxy[ITracked]] = []
            for _ in range(10):  # in batches, so the test stays quick on every backend
                batch = await a.run_sync(make, n // 10)
                same, back = await b.run(in_b, batch)
                assert same == len(batch)
                assert back == batch
                assert await a.run_sync(at_home, back) == len(batch)
                proxies.extend(batch)
                del batch, back
            assert len(proxies) == n
            assert tracker.made == n
            assert a.statistics().exported == n

            # drop them: a third explicitly, a third with `async with`, the rest by garbage collection
            third = n // 3
            for proxy in proxies[:third]:
                proxy.release()
            for proxy in proxies[third : 2 * third]:
                async with proxy:
                    pass
            del proxy
            proxies.clear()

            await wait_exported(a, 0)
            for apartment in (main, b, c, rt.mta):
                assert apartment.statistics().exported == 0
            await wait_gone(tracker)
            assert tracker.gone == n
        assert time.monotonic() - started < 10

    async def test_stress_through_the_mta_and_marshal_data(self, rt: aptrt.Runtime) -> None:
        """Objects of the main STA travel to an STA, the MTA and back, by argument and by marshal data."""
        main = rt.main_sta
        assert main is not None
        tracker = Tracker()
        objects = [Tracked(tracker) for _ in range(2_000)]
        async with rt.open_sta("s") as s:

            def in_mta(items: list[aptrt.Proxy[ITracked]]) -> list[aptrt.Proxy[ITracked]]:
                return items

            async def in_s(items: list[aptrt.Proxy[ITracked]]) -> list[aptrt.Proxy[ITracked]]:
                return await rt.mta.run_sync(in_mta, items)

            back = await s.run(in_s, objects)
            assert all(x is y for x, y in zip(back, objects, strict=True))
            data = [aptrt.marshal_interface(obj) for obj in objects[:1000]]
            strong = [aptrt.marshal_interface(obj, flags=aptrt.MSHLFLAGS.TABLESTRONG) for obj in objects[1000:]]

            def unmarshal_all(items: list[aptrt.MarshalData]) -> int:
                proxies = [aptrt.unmarshal_interface(d) for d in items]
                return sum(1 for p in proxies if isinstance(p, aptrt.Proxy))

            assert await s.run_sync(unmarshal_all, data) == 1000
            assert await s.run_sync(unmarshal_all, strong) == 1000
            assert await anyio.to_thread.run_sync(unmarshal_all, strong) == 1000
            for d in strong:
                aptrt.release_marshal_data(d)
            del back, data, strong, objects
            await wait_exported(main, 0)
            await wait_gone(tracker)
            assert s.statistics().exported == 0
            assert rt.mta.statistics().exported == 0
