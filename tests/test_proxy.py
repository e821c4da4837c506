from __future__ import annotations

import gc
import uuid

import anyio
import pytest

import aptrt

from .objects import Counter, ICounter, IReset, IUnrelated


class IBase(aptrt.Interface, iid="7f900356-2ea1-4848-a8f0-3392d4f3909b"):
    def base(self) -> str: ...


class IDerived(IBase, iid="f0ffdccf-6dcc-4f51-b156-2ab55222f768"):
    async def derived(self) -> str: ...


class Both(IDerived):
    def base(self) -> str:
        return "base"

    async def derived(self) -> str:
        return "derived"


class TestInterfaces:
    def test_declaration(self) -> None:
        assert IBase.__iid__ == uuid.UUID("7f900356-2ea1-4848-a8f0-3392d4f3909b")
        assert IDerived.__interface_methods__ == {"base", "derived"}
        assert aptrt.Interface.__iid__ == aptrt.IID_IUnknown

    def test_duplicate_iid(self) -> None:
        with pytest.raises(aptrt.InvalidArgumentError, match="already used"):

            class IClash(aptrt.Interface, iid=str(IBase.__iid__)):
                pass

    def test_malformed_iid(self) -> None:
        with pytest.raises(aptrt.InvalidArgumentError):

            class IBad(aptrt.Interface, iid="not-a-guid"):
                pass

    async def test_derived_interface_proxy(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Both)
        assert proxy.interface is IDerived
        assert await proxy.base() == "base"
        assert await proxy.derived() == "derived"
        base = aptrt.query_interface(proxy, IBase)
        assert base == proxy
        assert await base.base() == "base"
        with pytest.raises(AttributeError):
            base.derived  # noqa: B018
        assert aptrt.query_interface(base, IDerived) == proxy


class TestQueryInterface:
    async def test_identity(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Counter)
        assert proxy.interface is ICounter
        assert aptrt.query_interface(proxy, ICounter) is proxy

        reset = aptrt.query_interface(proxy, IReset)
        assert isinstance(reset, aptrt.Proxy)
        assert reset.interface is IReset
        assert reset == proxy
        assert hash(reset) == hash(proxy)
        assert reset.apartment is proxy.apartment
        assert len({proxy, reset}) == 1
        assert aptrt.query_interface(reset, ICounter) == proxy

        await proxy.add(4)
        assert await reset.reset() == 4  # the same object behind both
        assert await proxy.value() == 0

    async def test_by_iid(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Counter)
        by_string = aptrt.query_interface(proxy, "{1717126e-f318-4767-a1d5-f5559354c2e1}")
        assert by_string.interface is IReset
        assert by_string == proxy
        assert aptrt.query_interface(proxy, ICounter.__iid__) is proxy

    async def test_no_interface(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Counter)
        with pytest.raises(aptrt.NoInterfaceError) as excinfo:
            aptrt.query_interface(proxy, IUnrelated)
        assert excinfo.value.hresult == aptrt.HRESULT.E_NOINTERFACE
        assert isinstance(excinfo.value, TypeError)
        with pytest.raises(aptrt.NoInterfaceError):
            aptrt.query_interface(proxy, "9da428b9-9f84-4442-953b-fc8729f81a5c")  # no interface has this IID

    def test_local_objects(self) -> None:
        counter = Counter()
        assert aptrt.query_interface(counter, ICounter) is counter
        assert aptrt.query_interface(counter, IReset) is counter
        with pytest.raises(aptrt.NoInterfaceError):
            aptrt.query_interface(counter, IUnrelated)
        with pytest.raises(aptrt.NoInterfaceError):
            aptrt.query_interface(object(), ICounter)

    def test_not_an_interface(self) -> None:
        with pytest.raises(aptrt.InvalidArgumentError):
            aptrt.query_interface(Counter(), Counter)
        with pytest.raises(aptrt.InvalidArgumentError):
            aptrt.query_interface(Counter(), "not a guid")


class TestMarshaledReferences:
    async def test_round_trip_returns_the_original_object(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        other = await rt.start_sta(backend=sta_backend)
        counter = Counter()  # lives in the main STA

        async def bounce(p: aptrt.Proxy[ICounter]) -> aptrt.Proxy[ICounter]:
            assert isinstance(p, aptrt.Proxy)
            assert p.apartment is other
            assert p.target_apartment is rt.main_sta
            await p.add(1)  # calls back into the main STA, which is waiting for this call
            return p

        assert await other.run(bounce, counter) is counter
        assert counter.value() == 1

    async def test_passed_on_to_a_third_apartment(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta("home", backend=sta_backend)
        third = await rt.start_sta("third")
        proxy = await home.create(Counter)

        async def use(p: aptrt.Proxy[ICounter]) -> tuple[str, str, int]:
            return p.apartment.name, p.target_apartment.name, await p.add(1)

        assert await third.run(use, proxy) == ("third", "home", 1)
        assert await proxy.value() == 1

    async def test_results_are_marshaled(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)

        def make() -> Counter:
            return Counter(7)

        proxy = await sta.run_sync(make)
        assert isinstance(proxy, aptrt.Proxy)
        assert proxy.target_apartment is sta
        assert await proxy.value() == 7


class TestWrongThread:
    async def test_proxy_used_from_another_apartment(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta(backend=sta_backend)
        other = await rt.start_sta()
        proxy = await home.create(Counter)  # belongs to the main STA

        async def smuggled() -> None:
            await proxy.add(1)  # captured by the closure, not marshaled

        with pytest.raises(aptrt.WrongThreadError) as excinfo:
            await other.run(smuggled)
        assert excinfo.value.hresult == aptrt.HRESULT.RPC_E_WRONG_THREAD
        assert isinstance(excinfo.value, RuntimeError)
        assert await proxy.value() == 0

    async def test_proxy_used_from_a_plain_thread(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Counter)  # belongs to the main STA

        def plain() -> None:
            aptrt.blocking(proxy).add(1)

        with pytest.raises(aptrt.WrongThreadError):
            await anyio.to_thread.run_sync(plain)

    async def test_mta_proxy_usable_from_plain_threads(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Counter)
        held: list[aptrt.Proxy[ICounter]] = []
        await rt.mta.run_sync(held.append, proxy)
        assert held[0].apartment is rt.mta
        assert await anyio.to_thread.run_sync(lambda: aptrt.blocking(held[0]).add(3)) == 3

    async def test_blocking_call_from_a_loop(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        proxy = await sta.create(Counter)
        with pytest.raises(aptrt.WrongThreadError, match="event loop"):
            aptrt.blocking(proxy).add(1)
        with pytest.raises(aptrt.WrongThreadError):
            sta.run_sync_blocking(int)
        with pytest.raises(aptrt.WrongThreadError):
            sta.create_blocking(Counter)

        async def nothing() -> None:
            pass

        with pytest.raises(aptrt.WrongThreadError):
            sta.run_blocking(nothing)
        assert await proxy.value() == 0

    async def test_blocking_call_from_an_sta_loop(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta()
        caller = await rt.start_sta(backend=sta_backend)
        proxy = await home.create(Counter)

        async def block(p: aptrt.Proxy[ICounter]) -> None:
            aptrt.blocking(p).add(1)

        with pytest.raises(aptrt.WrongThreadError):
            await caller.run(block, proxy)

    async def test_blocking_call_from_the_mta_loop(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Counter)

        async def block(p: aptrt.Proxy[ICounter]) -> None:
            aptrt.blocking(p).add(1)

        with pytest.raises(aptrt.WrongThreadError):
            await rt.mta.run(block, proxy)


class TestSurface:
    async def test_only_interface_methods(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Counter)
        with pytest.raises(AttributeError):
            proxy.secret  # noqa: B018
        with pytest.raises(AttributeError):
            proxy.reset  # noqa: B018  # on IReset, not on ICounter
        with pytest.raises(AttributeError):
            proxy._value  # noqa: B018
        with pytest.raises(AttributeError):
            aptrt.blocking(proxy).secret  # noqa: B018

    async def test_repr_and_properties(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta("home")
        proxy = await sta.create(Counter)
        assert proxy.apartment is rt.main_sta
        assert proxy.target_apartment is sta
        text = repr(proxy)
        assert "ICounter" in text
        assert "Counter" in text
        assert "'home'" in text
        assert aptrt.as_interface(proxy) is proxy

    def test_not_constructible(self) -> None:
        with pytest.raises(TypeError):
            aptrt.Proxy()

    def test_blocking_needs_a_proxy(self) -> None:
        with pytest.raises(aptrt.InvalidArgumentError):
            aptrt.blocking(Counter())  # type: ignore[arg-type]


class TestLifetime:
    async def test_release(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Counter)
        assert sta.statistics().exported == 1
        proxy.release()
        proxy.release()  # idempotent
        assert sta.statistics().exported == 0
        with pytest.raises(aptrt.InvalidArgumentError):
            await proxy.add(1)

    async def test_async_with_and_aclose(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        async with await sta.create(Counter) as proxy:
            assert await proxy.add(1) == 1
        assert sta.statistics().exported == 0
        other = await sta.create(Counter)
        await other.aclose()
        assert sta.statistics().exported == 0

    async def test_two_proxies_keep_the_object(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Counter)
        reset = aptrt.query_interface(proxy, IReset)
        proxy.release()
        assert sta.statistics().exported == 1
        assert await reset.reset() == 0
        reset.release()
        assert sta.statistics().exported == 0

    async def test_garbage_collection_releases(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        proxy = await sta.create(Counter)
        assert sta.statistics().exported == 1
        del proxy
        gc.collect()
        await sta.run_sync(int)  # the release is a message to the home apartment: let it be handled
        assert sta.statistics().exported == 0

    async def test_disconnected_when_home_closes(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        proxy = await sta.create(Counter)
        await sta.aclose()
        assert "disconnected" in repr(proxy)
        with pytest.raises(aptrt.DisconnectedError) as excinfo:
            await proxy.add(1)
        assert excinfo.value.reason is aptrt.DisconnectReason.SERVER_SHUTDOWN
        with pytest.raises(aptrt.DisconnectedError):
            aptrt.query_interface(proxy, IReset)

    async def test_plain_thread_proxy_released_by_garbage_collection(self, rt: aptrt.Runtime) -> None:
        # a proxy made and dropped by a plain thread is given back through the home apartment's inbox
        sta = await rt.start_sta()

        def plain() -> int:
            proxy = sta.create_blocking(Counter)
            return aptrt.blocking(proxy).add(1)

        assert await anyio.to_thread.run_sync(plain) == 1
        gc.collect()
        await sta.run_sync(int)
        assert sta.statistics().exported == 0
