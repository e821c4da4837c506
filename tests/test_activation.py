"""Activation: ``rt.create_instance`` places objects by their threading model (design §5, COM §1.2).

Every cell of the table is checked by the thread that runs the object's methods, as the object itself
records it (``threading.current_thread()``), for callers in the main STA, another STA and the MTA.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import aptrt

from .objects_activation import (
    BY_MODEL,
    MTA_LOOP,
    MTA_WORKER,
    INotImplemented,
    ITag,
    IWhere,
    Placement,
    Seat,
    Where,
    WhereApartment,
    WhereBoth,
    WhereFree,
    WhereLegacy,
    WhereNeutral,
    observe,
    observe_blocking,
    seat,
)

M = aptrt.ThreadingModel
CALLERS = ["main", "sta", "mta"]


async def run_as(rt: aptrt.Runtime, caller: str, fn: Callable[[], Awaitable[Placement]]) -> Placement:
    """Run *fn* in the main STA (the test's loop), in another STA, or in the MTA (its loop thread)."""
    if caller == "main":
        return await fn()
    if caller == "sta":
        async with rt.open_sta("caller") as sta:
            return await sta.run(fn)
    assert caller == "mta"
    return await rt.mta.run(fn)


def _is_main(s: Seat) -> bool:
    return s[1] == threading.main_thread().ident


def check_cell(model: aptrt.ThreadingModel, caller: str, seen: Placement) -> None:
    """Assert the threading-model table (design §5) for one cell."""
    in_caller = seen.runs == seen.caller and seen.born == seen.caller and seen.runs_async == seen.caller
    assert seen.kind == BY_MODEL[model].__name__
    if caller == "main":
        assert _is_main(seen.caller)
        assert seen.caller_apartment == "main"
    elif caller == "sta":
        assert seen.caller[0] == "aptrt-sta-caller"
        assert seen.caller_apartment == "caller"
    else:
        assert seen.caller[0] == MTA_LOOP
        assert seen.caller_apartment == "MTA"

    if model is M.NONE:  # legacy: always the main STA
        if caller == "main":
            assert not seen.proxy and in_caller
        else:
            assert seen.proxy and seen.lives_in == "main"
            assert _is_main(seen.born) and _is_main(seen.runs) and _is_main(seen.runs_async)
    elif model is M.APARTMENT:  # the caller's STA; from the MTA, the host STA
        if caller == "mta":
            assert seen.proxy and seen.lives_in == "host"
            assert seen.born[0] == seen.runs[0] == seen.runs_async[0] == "aptrt-sta-host"
            assert seen.born[1] == seen.runs[1] == seen.runs_async[1]
        else:
            assert not seen.proxy and in_caller
    elif model is M.FREE:  # the MTA
        if caller == "mta":
            assert not seen.proxy and in_caller
        else:
            assert seen.proxy and seen.lives_in == "MTA"
            assert MTA_WORKER.fullmatch(seen.born[0]), seen.born
            assert MTA_WORKER.fullmatch(seen.runs[0]), seen.runs
            assert seen.runs_async[0] == MTA_LOOP
    elif model is M.BOTH:  # the caller's apartment, whichever it is
        assert not seen.proxy and in_caller
    else:  # Neutral: a light proxy, every call on the caller's own thread
        assert model is M.NEUTRAL
        assert seen.proxy and seen.lives_in == "NA"
        assert seen.held_by == seen.caller_apartment
        assert in_caller


class TestThreadingModelTable:
    @pytest.mark.parametrize("caller", CALLERS)
    @pytest.mark.parametrize("model", list(BY_MODEL), ids=lambda m: m.name)
    async def test_cell(self, rt: aptrt.Runtime, model: aptrt.ThreadingModel, caller: str) -> None:
        cls = BY_MODEL[model]

        async def create() -> Placement:
            return await observe(await rt.create_instance(cls.__clsid__, IWhere))

        check_cell(model, caller, await run_as(rt, caller, create))

    async def test_host_sta_is_started_once_for_the_mta(self, rt: aptrt.Runtime) -> None:
        assert not [a for a in rt.apartments if a.name == "host"]

        async def create_two() -> tuple[Placement, Placement, str]:
            first = await rt.create_instance(WhereApartment, IWhere)
            second = await rt.create_instance(WhereApartment, IWhere)
            assert first != second
            kind = first.target_apartment.kind.name
            return await observe(first), await observe(second), kind

        first, second, kind = await rt.mta.run(create_two)
        assert first.runs == second.runs  # one host STA serves every Apartment object the MTA makes
        assert kind == "STA"
        hosts = [a for a in rt.apartments if a.name == "host"]
        assert len(hosts) == 1
        assert isinstance(hosts[0], aptrt.STA)
        assert hosts[0].thread is not None and hosts[0].thread.ident == first.runs[1]

    async def test_legacy_objects_from_two_stas_share_the_main_sta(self, rt: aptrt.Runtime) -> None:
        async def create() -> Placement:
            return await observe(await rt.create_instance("AptrtTests.WhereLegacy", IWhere))

        async with rt.open_sta("one") as one, rt.open_sta("two", backend="trio") as two:
            a = await one.run(create)
            b = await two.run(create)
        assert a.proxy and b.proxy
        assert _is_main(a.runs) and _is_main(b.runs)
        assert a.caller != b.caller

    @pytest.mark.parametrize("model", list(BY_MODEL), ids=lambda m: m.name)
    async def test_mta_worker_creating_with_blocking_calls(
        self, rt: aptrt.Runtime, model: aptrt.ThreadingModel
    ) -> None:
        cls = BY_MODEL[model]

        def create() -> Placement:
            return observe_blocking(rt.create_instance_blocking(cls, IWhere))

        seen = await rt.mta.run_sync(create)
        assert MTA_WORKER.fullmatch(seen.caller[0])
        assert seen.caller_apartment == "MTA"
        _check_mta_member(model, seen, host="aptrt-sta-host")


def _check_mta_member(model: aptrt.ThreadingModel, seen: Placement, *, host: str, main: str | None = None) -> None:
    """The MTA column of the table, for a blocking caller (an MTA worker or a plain thread)."""
    in_caller = seen.runs == seen.caller and seen.born == seen.caller
    if model is M.NONE:
        assert seen.proxy
        if main is None:
            assert seen.lives_in == "main"
            assert _is_main(seen.born) and _is_main(seen.runs) and _is_main(seen.runs_async)
        else:
            assert seen.lives_in == main
            assert seen.born[0] == seen.runs[0] == seen.runs_async[0] == f"aptrt-sta-{main}"
    elif model is M.APARTMENT:
        assert seen.proxy and seen.lives_in == "host"
        assert seen.born[0] == seen.runs[0] == seen.runs_async[0] == host
    elif model in (M.FREE, M.BOTH):
        assert not seen.proxy and in_caller  # the caller is in the MTA: the object itself
    else:
        assert seen.proxy and seen.lives_in == "NA" and seen.held_by == "MTA"
        assert in_caller
        assert seen.runs_async[1] == seen.caller[1]


class TestBlockingActivation:
    @pytest.mark.parametrize("model", list(BY_MODEL), ids=lambda m: m.name)
    async def test_plain_thread_is_the_implicit_mta(self, rt: aptrt.Runtime, model: aptrt.ThreadingModel) -> None:
        cls = BY_MODEL[model]

        def create() -> Placement:
            assert aptrt.current_apartment() is rt.mta
            return observe_blocking(rt.create_instance_blocking(cls.__clsid__, IWhere))

        seen = await anyio.to_thread.run_sync(create)
        assert not seen.caller[0].startswith("aptrt-")
        assert seen.caller_apartment == "MTA"
        _check_mta_member(model, seen, host="aptrt-sta-host")

    @pytest.mark.parametrize("model", list(BY_MODEL), ids=lambda m: m.name)
    def test_sync_runtime_has_a_main_host(self, model: aptrt.ThreadingModel) -> None:
        cls = BY_MODEL[model]
        with aptrt.Runtime() as rt:
            assert rt.main_sta is None
            seen = observe_blocking(rt.create_instance_blocking(cls.__clsid__, IWhere))
            assert seen.caller == seat()
            _check_mta_member(model, seen, host="aptrt-sta-host", main="main-host")
            names = {a.name for a in rt.apartments}
            assert ("main-host" in names) is (model is M.NONE)
            assert ("host" in names) is (model is M.APARTMENT)

    def test_sync_runtime_legacy_from_an_sta(self) -> None:
        with aptrt.Runtime(backend="trio") as rt:
            sta = rt.start_sta_blocking("client")

            async def create() -> Placement:
                return await observe(await rt.create_instance(WhereLegacy, IWhere))

            seen = sta.run_blocking(create, timeout=10)
            assert seen.proxy and seen.lives_in == "main-host"
            assert seen.runs[0] == "aptrt-sta-main-host"
            again = observe_blocking(rt.create_instance_blocking(WhereLegacy, IWhere))
            assert again.runs == seen.runs  # one main-host STA for the runtime
            assert not [a for a in rt.apartments if a.name == "host"]

    async def test_blocking_create_in_the_callers_own_apartment(self, rt: aptrt.Runtime) -> None:
        def create() -> tuple[bool, Seat, Seat]:
            obj = rt.create_instance_blocking(WhereBoth)
            return isinstance(obj, aptrt.Proxy), obj.where(), seat()

        is_proxy, runs, caller = await anyio.to_thread.run_sync(create)
        assert not is_proxy
        assert runs == caller


class TestNamingTheClass:
    @pytest.mark.parametrize(
        "name",
        [
            WhereFree.__clsid__,
            str(WhereFree.__clsid__),
            "{" + str(WhereFree.__clsid__).upper() + "}",
            "AptrtTests.WhereFree.1",
            "AptrtTests.WhereFree",
            "aptrttests.wherefree",
            WhereFree,
        ],
        ids=["uuid", "str", "braced-upper", "progid", "vi-progid", "progid-lowercase", "class"],
    )
    async def test_every_spelling_creates_the_class(self, rt: aptrt.Runtime, name: Any) -> None:
        seen = await observe(await rt.create_instance(name, IWhere))
        assert seen.kind == "WhereFree"
        assert seen.lives_in == "MTA"

    async def test_interface_narrows_the_proxy(self, rt: aptrt.Runtime) -> None:
        proxy = await rt.create_instance(WhereFree, ITag)
        assert isinstance(proxy, aptrt.Proxy)
        assert proxy.interface is ITag
        assert await proxy.tag() == "where"
        assert not hasattr(proxy, "where")
        where = aptrt.query_interface(proxy, IWhere)
        assert where == proxy
        assert rt.mta.statistics().exported == 1
        proxy.release()
        where.release()

    async def test_default_interface_is_the_first_one(self, rt: aptrt.Runtime) -> None:
        proxy = await rt.create_instance(WhereFree)
        assert proxy.interface is IWhere
        proxy.release()
        direct = await rt.create_instance(WhereBoth)
        assert type(direct) is WhereBoth

    @pytest.mark.parametrize("cls", [WhereFree, WhereBoth, WhereNeutral], ids=lambda c: c.__name__)
    async def test_missing_interface(self, rt: aptrt.Runtime, cls: type[Where]) -> None:
        with pytest.raises(aptrt.NoInterfaceError) as excinfo:
            await rt.create_instance(cls, INotImplemented)
        assert excinfo.value.hresult == aptrt.HRESULT.E_NOINTERFACE
        assert rt.mta.statistics().exported == 0

    async def test_interface_by_iid(self, rt: aptrt.Runtime) -> None:
        proxy = await rt.create_instance(WhereFree, ITag.__iid__)
        assert proxy.interface is ITag
        proxy.release()

    async def test_unregistered_class_object_counts_as_apartment(self, rt: aptrt.Runtime) -> None:
        class Plain(Where):
            pass

        async def create() -> Placement:
            return await observe(await rt.create_instance(Plain, IWhere))

        here = await create()
        assert not here.proxy and here.runs == seat()
        from_mta = await rt.mta.run(create)
        assert from_mta.proxy and from_mta.lives_in == "host"

    async def test_subclass_of_a_registered_class_is_created_as_itself(self, rt: aptrt.Runtime) -> None:
        # an undecorated subclass inherits __clsid__ from its registered base; asking for the subclass
        # must not silently create the base class
        class Derived(WhereBoth):
            pass

        obj = await rt.create_instance(Derived)
        assert type(obj) is Derived


class TestUnknownClass:
    @pytest.mark.parametrize(
        "name",
        [uuid.UUID("4dfb0b5a-aa1b-483d-b073-dce9b4d39553"), "{eb288715-d9d9-4547-b549-fe824800eb86}", "No.Such.Class"],
        ids=["clsid", "clsid-str", "progid"],
    )
    async def test_class_not_registered(self, rt: aptrt.Runtime, name: Any) -> None:
        with pytest.raises(aptrt.ClassNotRegisteredError) as excinfo:
            await rt.create_instance(name)
        assert excinfo.value.hresult == aptrt.HRESULT.REGDB_E_CLASSNOTREG
        assert excinfo.value.hresult_name == "REGDB_E_CLASSNOTREG"
        with pytest.raises(aptrt.ClassNotRegisteredError):
            await anyio.to_thread.run_sync(rt.create_instance_blocking, name)
        with pytest.raises(aptrt.ClassNotRegisteredError):
            await rt.get_class_object(name)
        assert not [a for a in rt.apartments if a.name in ("host", "main-host")]

    async def test_not_a_class_name(self, rt: aptrt.Runtime) -> None:
        with pytest.raises(aptrt.InvalidArgumentError):
            await rt.create_instance(42)  # type: ignore[arg-type]


class TestRuntimeState:
    async def test_objects_and_host_die_with_the_runtime(self) -> None:
        async with aptrt.Runtime() as rt:

            async def create() -> aptrt.Proxy[IWhere]:
                return await rt.create_instance(WhereApartment, IWhere)

            proxy = await rt.mta.run(create)  # a proxy held by the MTA, to an object in the host STA
            hosts = [a for a in rt.apartments if a.name == "host"]
            assert len(hosts) == 1
            host = hosts[0]
            assert isinstance(proxy, aptrt.Proxy)  # came back to the main STA as a proxy
            assert proxy.target_apartment is host
        assert isinstance(host, aptrt.STA) and host.closed
        assert "disconnected" in repr(proxy)

    @pytest.mark.parametrize("cls", [WhereFree, WhereBoth], ids=lambda c: c.__name__)
    async def test_create_after_the_runtime_closed(self, cls: type[Where]) -> None:
        # CoCreateInstance after the last CoUninitialize: CO_E_NOTINITIALIZED, not an object made
        # on the calling thread by an MTA that is already gone
        async with aptrt.Runtime() as rt:
            pass
        with pytest.raises(aptrt.NotInitializedError) as excinfo:
            await rt.create_instance(cls)
        assert excinfo.value.hresult == aptrt.HRESULT.CO_E_NOTINITIALIZED

    def test_blocking_create_needs_an_open_runtime(self) -> None:
        rt = aptrt.Runtime()
        with pytest.raises(aptrt.NotInitializedError):
            rt.create_instance_blocking(WhereLegacy)
