"""Class objects: ``rt.register_class_object`` / ``rt.revoke_class_object`` (CoRegisterClassObject), REGCLS
and CLSCTX semantics, and server lock / object counts (DllCanUnloadNow). Design §5, COM §1.2."""

from __future__ import annotations

import functools
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import aptrt

from .objects_activation import IWhere, Placement, Where, collect, observe, seat

CLSCTX = aptrt.CLSCTX
REGCLS = aptrt.REGCLS


@aptrt.coclass(clsid="00dcd6f8-9e32-44ce-a794-b622b098e745", progid="AptrtTests.Factoried.1", threading_model="Both")
class FromRegistry(Where):
    """What the registry makes when no class object is registered (Both: in the caller's apartment)."""


class FromFactory(Where):
    """What the registered class objects make."""


CLSID = FromRegistry.__clsid__  # type: ignore[attr-defined]
#: a CLSID that only class objects serve: nothing is in the registry under it
UNREGISTERED = uuid.UUID("3e2bd238-d22e-40df-9448-baa0ca702f89")


class RecordingFactory(aptrt.IClassFactory):
    """An IClassFactory of its own: records what it was asked, and where."""

    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []

    def CreateInstance(self, outer: object, iid: Any) -> Any:
        self.log.append(("create", (outer, iid, seat())))
        return FromFactory()

    def LockServer(self, lock: bool) -> None:
        self.log.append(("lock", (lock, seat())))


async def register_in(
    sta: aptrt.Apartment,
    rt: aptrt.Runtime,
    clsid: object = CLSID,
    *,
    context: aptrt.CLSCTX = CLSCTX.LOCAL_SERVER,
    flags: aptrt.REGCLS = REGCLS.MULTIPLEUSE,
    factory: object = FromFactory,
) -> int:
    """Register *factory* as the class object of *clsid*, from inside *sta*."""
    return await sta.run_sync(functools.partial(rt.register_class_object, clsid, factory, context=context, flags=flags))


async def create_seen(rt: aptrt.Runtime, clsid: object = CLSID, **kwargs: Any) -> Placement:
    return await observe(await rt.create_instance(clsid, IWhere, **kwargs))


class TestVisibility:
    async def test_local_server_serves_every_apartment(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server, rt.open_sta("other", backend="trio") as other:
            cookie = await register_in(server, rt)
            server_thread = server.thread
            assert server_thread is not None

            async def create() -> Placement:
                return await create_seen(rt)

            for seen in (await create(), await other.run(create), await rt.mta.run(create)):
                assert seen.kind == "FromFactory"
                assert seen.proxy and seen.lives_in == "server"  # objects live where the class object does
                assert seen.runs[1] == seen.born[1] == server_thread.ident

            await server.run_sync(rt.revoke_class_object, cookie)
            after = await create()
            assert after.kind == "FromRegistry"  # back to the registry: Both, made here
            assert not after.proxy and after.runs == seat()

    async def test_inproc_registration_is_invisible_to_other_apartments(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server, rt.open_sta("other") as other:
            cookie = await register_in(server, rt, context=CLSCTX.INPROC_SERVER)

            async def create() -> Placement:
                return await create_seen(rt)

            for seen in (await create(), await other.run(create), await rt.mta.run(create)):
                assert seen.kind == "FromRegistry"
                assert not seen.proxy  # Both: made in the caller's own apartment
            await server.run_sync(rt.revoke_class_object, cookie)

    async def test_inproc_registration_serves_its_own_apartment(self, rt: aptrt.Runtime) -> None:
        cookie = rt.register_class_object(CLSID, FromFactory, context=CLSCTX.INPROC_SERVER)
        try:
            obj = await rt.create_instance(CLSID, IWhere)
            assert type(obj) is FromFactory  # made by the class object, in this apartment: the object itself
        finally:
            rt.revoke_class_object(cookie)

    async def test_get_class_object_in_its_own_apartment(self, rt: aptrt.Runtime) -> None:
        factory = RecordingFactory()
        cookie = rt.register_class_object(CLSID, factory, context=CLSCTX.INPROC_SERVER)
        try:
            assert await rt.get_class_object(CLSID) is factory
        finally:
            rt.revoke_class_object(cookie)

    async def test_multi_separate_local_server_is_not_inproc(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server:
            cookie = await register_in(server, rt, flags=REGCLS.MULTI_SEPARATE)

            async def create_inproc() -> Placement:
                return await create_seen(rt, context=CLSCTX.INPROC_SERVER)

            assert (await server.run(create_inproc)).kind == "FromRegistry"
            # and an in-process registration of the same class may be added beside it
            second = await register_in(server, rt, context=CLSCTX.INPROC_SERVER)
            await server.run_sync(rt.revoke_class_object, second)
            await server.run_sync(rt.revoke_class_object, cookie)

    async def test_multiple_use_local_server_is_also_inproc(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server:
            cookie = await register_in(server, rt, flags=REGCLS.MULTIPLEUSE)
            with pytest.raises(aptrt.COMError) as excinfo:
                await register_in(server, rt, context=CLSCTX.INPROC_SERVER)  # already registered in-process
            assert excinfo.value.hresult == aptrt.HRESULT.CO_E_OBJISREG
            await server.run_sync(rt.revoke_class_object, cookie)

    async def test_multiple_use_local_server_serves_inproc_requests_at_home(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server:
            cookie = await register_in(server, rt, flags=REGCLS.MULTIPLEUSE)

            async def create_inproc() -> Placement:
                return await create_seen(rt, context=CLSCTX.INPROC_SERVER)

            try:
                assert (await server.run(create_inproc)).kind == "FromFactory"
            finally:
                await server.run_sync(rt.revoke_class_object, cookie)

    async def test_class_objects_for_unregistered_clsids(self, rt: aptrt.Runtime) -> None:
        # CoRegisterClassObject needs no registry entry: the class object alone serves the CLSID
        async with rt.open_sta("server") as server:
            cookie = await register_in(server, rt, UNREGISTERED)
            try:
                seen = await create_seen(rt, UNREGISTERED)
                assert seen.kind == "FromFactory" and seen.lives_in == "server"
            finally:
                await server.run_sync(rt.revoke_class_object, cookie)
        with pytest.raises(aptrt.ClassNotRegisteredError):
            await rt.create_instance(UNREGISTERED)

    async def test_register_by_class_and_by_progid(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server:
            for name in (FromRegistry, "AptrtTests.Factoried.1", str(CLSID)):
                cookie = await register_in(server, rt, name)
                assert (await create_seen(rt)).kind == "FromFactory"
                await server.run_sync(rt.revoke_class_object, cookie)


class TestREGCLS:
    async def test_single_use_falls_back_to_the_registry(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server:
            cookie = await register_in(server, rt, flags=REGCLS.SINGLEUSE)
            assert (await create_seen(rt)).kind == "FromFactory"
            assert (await create_seen(rt)).kind == "FromRegistry"  # used up: hidden after one connection
            assert (await create_seen(rt)).kind == "FromRegistry"
            await server.run_sync(rt.revoke_class_object, cookie)  # still revocable

    async def test_single_use_without_a_registration_then_fails(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server:
            cookie = await register_in(server, rt, UNREGISTERED, flags=REGCLS.SINGLEUSE)
            try:
                assert (await create_seen(rt, UNREGISTERED)).kind == "FromFactory"
                with pytest.raises(aptrt.ClassNotRegisteredError) as excinfo:
                    await rt.create_instance(UNREGISTERED)
                assert excinfo.value.hresult == aptrt.HRESULT.REGDB_E_CLASSNOTREG
            finally:
                await server.run_sync(rt.revoke_class_object, cookie)

    async def test_multiple_use(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server:
            factory_cookie = await server.run_sync(
                lambda: rt.register_class_object(CLSID, RecordingFactory(), context=CLSCTX.LOCAL_SERVER)
            )
            kinds = [(await create_seen(rt)).kind for _ in range(5)]
            assert kinds == ["FromFactory"] * 5
            await server.run_sync(rt.revoke_class_object, factory_cookie)

    async def test_suspended_until_resumed(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server:
            cookie = await register_in(server, rt, flags=REGCLS.MULTIPLEUSE | REGCLS.SUSPENDED)
            assert (await create_seen(rt)).kind == "FromRegistry"  # hidden while suspended
            assert (await create_seen(rt)).kind == "FromRegistry"
            rt.resume_class_objects()  # CoResumeClassObjects, from any apartment
            assert (await create_seen(rt)).kind == "FromFactory"
            assert (await create_seen(rt)).kind == "FromFactory"
            await server.run_sync(rt.revoke_class_object, cookie)

    async def test_suspended_single_use(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server:
            cookie = await register_in(server, rt, flags=REGCLS.SINGLEUSE | REGCLS.SUSPENDED)
            assert (await create_seen(rt)).kind == "FromRegistry"  # suspended: not used up either
            await server.run_sync(rt.resume_class_objects)
            assert (await create_seen(rt)).kind == "FromFactory"
            assert (await create_seen(rt)).kind == "FromRegistry"
            await server.run_sync(rt.revoke_class_object, cookie)


class TestRevoke:
    async def test_registrations_die_with_their_apartment(self, rt: aptrt.Runtime) -> None:
        server = await rt.start_sta("server")
        cookie = await register_in(server, rt)
        inproc = await register_in(server, rt, UNREGISTERED, context=CLSCTX.INPROC_SERVER)
        assert (await create_seen(rt)).kind == "FromFactory"
        await server.aclose()
        assert (await create_seen(rt)).kind == "FromRegistry"
        for gone in (cookie, inproc):
            with pytest.raises(aptrt.COMError) as excinfo:
                rt.revoke_class_object(gone)
            assert excinfo.value.hresult == aptrt.HRESULT.CO_E_OBJNOTREG

    async def test_revoke_from_another_apartment(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server:
            cookie = await register_in(server, rt)
            with pytest.raises(aptrt.WrongThreadError) as excinfo:
                rt.revoke_class_object(cookie)
            assert excinfo.value.hresult == aptrt.HRESULT.RPC_E_WRONG_THREAD
            with pytest.raises(aptrt.WrongThreadError):
                await rt.mta.run_sync(rt.revoke_class_object, cookie)
            assert (await create_seen(rt)).kind == "FromFactory"  # still registered
            await server.run_sync(rt.revoke_class_object, cookie)
            assert (await create_seen(rt)).kind == "FromRegistry"

    async def test_unknown_cookie(self, rt: aptrt.Runtime) -> None:
        for cookie in (0, 987_654_321):
            with pytest.raises(aptrt.COMError) as excinfo:
                rt.revoke_class_object(cookie)
            assert excinfo.value.hresult == aptrt.HRESULT.CO_E_OBJNOTREG
            assert excinfo.value.hresult_name == "CO_E_OBJNOTREG"

    async def test_revoke_twice(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server:
            cookie = await register_in(server, rt)
            await server.run_sync(rt.revoke_class_object, cookie)
            with pytest.raises(aptrt.COMError) as excinfo:
                await server.run_sync(rt.revoke_class_object, cookie)
            assert excinfo.value.hresult == aptrt.HRESULT.CO_E_OBJNOTREG

    async def test_one_registration_per_apartment(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server, rt.open_sta("other") as other:
            cookie = await register_in(server, rt)
            with pytest.raises(aptrt.COMError) as excinfo:
                await register_in(server, rt)
            assert excinfo.value.hresult == aptrt.HRESULT.CO_E_OBJISREG
            elsewhere = await register_in(other, rt)  # another apartment may register the same class
            assert elsewhere != cookie
            await other.run_sync(rt.revoke_class_object, elsewhere)
            await server.run_sync(rt.revoke_class_object, cookie)

    async def test_none_is_not_a_class_object(self, rt: aptrt.Runtime) -> None:
        with pytest.raises(aptrt.InvalidArgumentError) as excinfo:
            rt.register_class_object(CLSID, None)
        assert excinfo.value.hresult == aptrt.HRESULT.E_INVALIDARG


class TestCustomClassFactory:
    async def test_create_instance_and_lock_server_through_a_proxy(self, rt: aptrt.Runtime) -> None:
        async with rt.open_sta("server") as server:

            def register() -> tuple[int, RecordingFactory]:
                factory = RecordingFactory()
                return rt.register_class_object(CLSID, factory, context=CLSCTX.LOCAL_SERVER), factory

            cookie, factory = await server.run_sync(register)
            assert isinstance(factory, aptrt.Proxy)  # made in the server: a proxy here
            class_object = await rt.get_class_object(CLSID)
            assert isinstance(class_object, aptrt.Proxy)
            assert class_object.interface is aptrt.IClassFactory
            assert class_object == factory  # the registered class object itself, seen from here
            await class_object.LockServer(True)
            made = await class_object.CreateInstance(None, IWhere)
            seen = await observe(made)
            assert seen.kind == "FromFactory" and seen.lives_in == "server"
            assert (await create_seen(rt)).kind == "FromFactory"

            def log(obj: RecordingFactory) -> list[tuple[str, object]]:
                assert isinstance(obj, RecordingFactory)  # back home: the object itself
                return obj.log

            entries = await server.run_sync(log, factory)
            assert [name for name, _ in entries] == ["lock", "create", "create"]
            lock, first, second = (details for _, details in entries)
            assert server.thread is not None
            assert lock == (True, (server.thread.name, server.thread.ident))
            assert first == (None, IWhere, (server.thread.name, server.thread.ident))
            assert second == first
            class_object.release()
            factory.release()
            await server.run_sync(rt.revoke_class_object, cookie)


# -- server module counts ------------------------------------------------------------------------------

SERVER = "aptrt_tests_server_c8ad2e32"


@pytest.fixture
def served() -> Iterator[tuple[type[Where], type[Where]]]:
    """Two classes of one server module, SERVER: one Free (behind proxies), one Both (direct)."""

    class ServedFree(Where):
        __module__ = SERVER

    class ServedBoth(Where):
        __module__ = SERVER

    aptrt.registry.register(ServedFree, clsid="213956a7-b22a-4687-ade1-19234d519f07", threading_model="Free")
    aptrt.registry.register(ServedBoth, clsid="54963e73-f8dd-419a-a498-cab6a7625fae", threading_model="Both")
    module = aptrt.server_module(SERVER)
    collect()
    assert (module.objects, module.locks) == (0, 0)
    yield ServedFree, ServedBoth
    aptrt.registry.unregister("213956a7-b22a-4687-ade1-19234d519f07")
    aptrt.registry.unregister("54963e73-f8dd-419a-a498-cab6a7625fae")


FREE_CLSID = uuid.UUID("213956a7-b22a-4687-ade1-19234d519f07")
BOTH_CLSID = uuid.UUID("54963e73-f8dd-419a-a498-cab6a7625fae")


class TestServerModule:
    def test_one_module_per_name(self) -> None:
        module = aptrt.server_module(SERVER)
        assert aptrt.server_module(SERVER) is module
        assert isinstance(module, aptrt.ServerModule)
        assert module.name == SERVER
        assert SERVER in repr(module)

    async def test_object_count_follows_live_objects(
        self, rt: aptrt.Runtime, served: tuple[type[Where], type[Where]]
    ) -> None:
        module = aptrt.server_module(SERVER)
        assert aptrt.can_unload_now(SERVER)
        direct = await rt.create_instance(BOTH_CLSID)
        proxy = await rt.create_instance(FREE_CLSID)
        assert type(direct).__name__ == "ServedBoth"
        assert isinstance(proxy, aptrt.Proxy)
        assert module.objects == 2
        assert not aptrt.can_unload_now(SERVER)
        assert not aptrt.can_unload_now(types.ModuleType(SERVER))  # the module object works too

        del direct
        collect()
        assert module.objects == 1
        proxy.release()  # the stub lets go of the object in the MTA: finalized
        collect()
        assert rt.mta.statistics().exported == 0
        assert module.objects == 0
        assert aptrt.can_unload_now(SERVER)

    async def test_lock_server_through_the_class_object(
        self, rt: aptrt.Runtime, served: tuple[type[Where], type[Where]]
    ) -> None:
        module = aptrt.server_module(SERVER)
        remote = await rt.get_class_object(FREE_CLSID)  # made in the MTA: a proxy
        assert isinstance(remote, aptrt.Proxy)
        assert remote.interface is aptrt.IClassFactory
        local = await rt.get_class_object(BOTH_CLSID)  # Both: the class object itself
        assert isinstance(local, aptrt.ClassFactory)

        await remote.LockServer(True)
        local.LockServer(True)
        assert module.locks == 2
        assert not aptrt.can_unload_now(SERVER)
        await remote.LockServer(False)
        assert not aptrt.can_unload_now(SERVER)
        local.LockServer(False)
        assert module.locks == 0
        assert aptrt.can_unload_now(SERVER)
        with pytest.raises(aptrt.InvalidArgumentError):
            await remote.LockServer(False)  # more unlocks than locks
        assert module.locks == 0
        remote.release()

    async def test_class_object_creates_counted_objects(
        self, rt: aptrt.Runtime, served: tuple[type[Where], type[Where]]
    ) -> None:
        module = aptrt.server_module(SERVER)
        class_object = await rt.get_class_object(FREE_CLSID)
        made = await class_object.CreateInstance(None, IWhere)
        assert isinstance(made, aptrt.Proxy) and made.interface is IWhere
        assert module.objects == 1
        seen = await observe(made)  # releases it
        assert seen.kind == "ServedFree" and seen.lives_in == "MTA"
        collect()
        assert module.objects == 0
        with pytest.raises(aptrt.COMError) as excinfo:
            await class_object.CreateInstance(object(), IWhere)  # aggregation
        assert excinfo.value.hresult == aptrt.HRESULT.CLASS_E_NOAGGREGATION
        with pytest.raises(aptrt.NoInterfaceError):
            await class_object.CreateInstance(None, aptrt.IClassFactory)
        class_object.release()
