"""The neutral apartment: Neutral objects run on their caller's thread, with no thread switch, behind a
light proxy (design §1/§5, COM §1.2)."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import aptrt

from .objects import Counter, Gate, ICounter, Signals, wait_event
from .objects_activation import Seat, Tracker, collect, seat


class INeutral(aptrt.Interface, iid="dd0f86c8-0393-41f9-b508-76cb1031b4db"):
    def keep(self, other: object) -> None: ...
    async def add_to_kept(self, n: int) -> int: ...
    def add_to_kept_blocking(self, n: int) -> int: ...
    def reference_to_self(self) -> aptrt.AgileReference[Any]: ...
    def fail(self) -> None: ...


@aptrt.coclass(
    clsid="15a31aad-0818-4b6f-a71b-a59dc3142595",
    progid="AptrtTests.NeutralCounter.1",
    threading_model=aptrt.ThreadingModel.NEUTRAL,
)
class NeutralCounter(Counter, INeutral):
    """A Counter (records the thread of each call) that can hold a proxy to another object."""

    tracker: Tracker | None = None

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.kept: Any = None
        if NeutralCounter.tracker is not None:
            NeutralCounter.tracker.track(self)

    def add(self, n: int) -> int:
        with self._lock:  # any thread may run neutral code
            return super().add(n)

    def keep(self, other: object) -> None:
        self.kept = other

    async def add_to_kept(self, n: int) -> int:
        result: int = await self.kept.add(n)
        return result

    def add_to_kept_blocking(self, n: int) -> int:
        result: int = aptrt.blocking(self.kept, timeout=5).add(n)
        return result

    def reference_to_self(self) -> aptrt.AgileReference[Any]:
        return aptrt.AgileReference(self)

    def fail(self) -> None:
        raise KeyError("neutral failure")


async def add_here(counter: aptrt.Proxy[ICounter], n: int) -> tuple[int, Seat]:
    return await counter.add(n), seat()


def add_blocking(counter: aptrt.Proxy[ICounter], n: int) -> tuple[int, Seat]:
    return aptrt.blocking(counter, timeout=5).add(n), seat()


def resolved(ref: aptrt.AgileReference[Any]) -> Any:
    """What a plain thread uses: a proxy that a reference resolves to there (a proxy is bound to its apartment)."""
    return ref.resolve()


@pytest.fixture
async def neutral(rt: aptrt.Runtime) -> aptrt.Proxy[ICounter]:
    return await rt.create_instance(NeutralCounter, ICounter)


class TestNeutralApartment:
    async def test_the_apartment(self, rt: aptrt.Runtime, neutral: aptrt.Proxy[ICounter]) -> None:
        na = rt.neutral
        assert isinstance(na, aptrt.NeutralApartment)
        assert na.kind is aptrt.ApartmentKind.NEUTRAL
        assert na.name == "NA"
        assert na in rt.apartments
        assert isinstance(neutral, aptrt.Proxy)  # a proxy, even from the creating thread
        assert neutral.target_apartment is na
        assert neutral.apartment is rt.main_sta
        assert na.statistics().exported == 1

    async def test_calls_run_on_the_callers_thread(self, rt: aptrt.Runtime, neutral: aptrt.Proxy[ICounter]) -> None:
        main_ident = threading.get_ident()
        assert await neutral.add(1) == 1
        assert await neutral.add_async(1) == 2  # async: a task of the caller's own loop
        async with rt.open_sta("asyncio-sta") as one, rt.open_sta("trio-sta", backend="trio") as two:
            (_, s1), (_, s2) = await one.run(add_here, neutral, 1), await two.run(add_here, neutral, 1)
            assert s1[0] == "aptrt-sta-asyncio-sta" and s2[0] == "aptrt-sta-trio-sta"

            async def add_async_here(counter: aptrt.Proxy[ICounter]) -> int:
                return await counter.add_async(1)

            await one.run(add_async_here, neutral)
            await two.run(add_async_here, neutral)
            async_mta = await rt.mta.run(add_here, neutral, 1)  # the MTA's loop thread
            worker = await rt.mta.run_sync(add_blocking, neutral, 1)  # an MTA worker, blocking
            with aptrt.AgileReference(neutral) as ref:  # a plain thread
                plain = await anyio.to_thread.run_sync(lambda: add_blocking(resolved(ref), 1))
            assert worker[1][0].startswith("aptrt-mta-") and not plain[1][0].startswith("aptrt-")
            threads = await neutral.threads()
            assert threads == {main_ident, s1[1], s2[1], async_mta[1][1], worker[1][1], plain[1][1]}
            assert await neutral.value() == 9  # one object, shared by every caller
        stats = rt.neutral.statistics()
        assert stats.completed >= 9 and stats.queued == 0

    async def test_no_thread_switch_needed(self, rt: aptrt.Runtime) -> None:
        """The neutral object's creator is blocked; another STA still calls it, on its own thread."""
        sig = Signals()
        async with rt.open_sta("creator") as creator, rt.open_sta("other") as other:

            async def create() -> aptrt.Proxy[ICounter]:
                return await rt.create_instance("AptrtTests.NeutralCounter.1", ICounter)

            counter = await creator.run(create)
            gate = await creator.create(Gate, sig)
            async with anyio.create_task_group() as tg:
                tg.start_soon(gate.hold)
                await wait_event(sig.entered)  # the creator's thread is held now
                with anyio.fail_after(5):
                    value, where = await other.run(add_here, counter, 5)
                assert value == 5 and where[0] == "aptrt-sta-other"
                sig.release.set()
            assert sig.log == ["hold"]

    async def test_proxies_held_by_a_neutral_object_work_from_any_thread(
        self, rt: aptrt.Runtime, neutral: aptrt.Proxy[ICounter]
    ) -> None:
        inner = Counter()  # an object of the main STA
        control = aptrt.query_interface(neutral, INeutral)
        await control.keep(inner)  # the neutral object holds a proxy to it (bound to the NA)
        async with rt.open_sta("b", backend="trio") as b:

            async def via(proxy: aptrt.Proxy[INeutral], n: int) -> int:
                return await proxy.add_to_kept(n)

            def via_blocking(proxy: aptrt.Proxy[INeutral], n: int) -> int:
                return aptrt.blocking(proxy, timeout=5).add_to_kept_blocking(n)

            assert await b.run(via, control, 1) == 1
            assert await rt.mta.run(via, control, 2) == 3
            with aptrt.AgileReference(control) as ref:
                assert await anyio.to_thread.run_sync(lambda: via_blocking(resolved(ref), 3)) == 6
        assert inner.threads() == {threading.get_ident()}  # every call reached the main STA's object
        assert await control.add_to_kept(4) == 10

    async def test_a_neutral_object_marshaled_from_its_own_method_stays_neutral(
        self, rt: aptrt.Runtime, neutral: aptrt.Proxy[ICounter]
    ) -> None:
        control = aptrt.query_interface(neutral, INeutral)
        ref = await control.reference_to_self()  # marshaled from inside the neutral object
        async with rt.open_sta("b") as b:

            async def resolve_and_add() -> tuple[str, Seat]:
                proxy = ref.resolve(ICounter)
                try:
                    await proxy.add(1)
                    return proxy.target_apartment.name, seat()
                finally:
                    proxy.release()

            target, caller = await b.run(resolve_and_add)
        ref.release()
        assert target == "NA"
        assert caller[1] in await neutral.threads()  # it ran on b's thread, as a neutral object does

    async def test_errors_come_back_as_they_are(self, neutral: aptrt.Proxy[ICounter]) -> None:
        control = aptrt.query_interface(neutral, INeutral)
        with pytest.raises(KeyError, match="neutral failure"):
            await control.fail()
        with pytest.raises(KeyError), aptrt.AgileReference(control) as ref:
            await anyio.to_thread.run_sync(lambda: aptrt.blocking(resolved(ref), timeout=5).fail())

    async def test_create_in_the_neutral_apartment_directly(self, rt: aptrt.Runtime) -> None:
        proxy = await rt.neutral.create(Counter, 5)
        assert isinstance(proxy, aptrt.Proxy) and proxy.target_apartment is rt.neutral
        assert await proxy.add(1) == 6
        assert await proxy.threads() == {threading.get_ident()}
        proxy.release()


class TestNeutralLifetime:
    async def test_release_finalizes(self, rt: aptrt.Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        tracker = Tracker()
        monkeypatch.setattr(NeutralCounter, "tracker", tracker)
        proxy = await rt.create_instance(NeutralCounter, ICounter)
        second = aptrt.query_interface(proxy, INeutral)
        assert second == proxy
        async with rt.open_sta("b") as b:

            async def use(p: aptrt.Proxy[ICounter]) -> int:
                return await p.add(1)

            assert await b.run(use, proxy) == 1
        collect()
        assert tracker.alive == 1
        proxy.release()
        assert rt.neutral.statistics().exported == 1
        second.release()
        assert rt.neutral.statistics().exported == 0
        collect()
        assert tracker.alive == 0

    async def test_garbage_collected_proxy(self, rt: aptrt.Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        tracker = Tracker()
        monkeypatch.setattr(NeutralCounter, "tracker", tracker)
        proxy = await rt.create_instance(NeutralCounter, ICounter)
        assert await proxy.add(2) == 2
        del proxy
        collect()
        assert rt.neutral.statistics().exported == 0
        collect()
        assert tracker.alive == 0

    def test_the_runtime_disconnects_neutral_objects(self, monkeypatch: pytest.MonkeyPatch) -> None:
        tracker = Tracker()
        monkeypatch.setattr(NeutralCounter, "tracker", tracker)
        with aptrt.Runtime() as rt:
            proxy = rt.create_instance_blocking(NeutralCounter, ICounter)
            assert aptrt.blocking(proxy).add(1) == 1
            assert rt.neutral.statistics().exported == 1
        assert "disconnected" in repr(proxy)
        collect()
        assert tracker.alive == 0
        with pytest.raises(aptrt.COMError):
            aptrt.blocking(proxy).add(1)
