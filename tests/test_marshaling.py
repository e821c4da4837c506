"""Marshaling: interface objects and proxies in arguments and results, the plain-data policy, marshal data
(one-shot, table-strong, table-weak), the global interface table, agile objects and agile references
(design §3, COM §1.3)."""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import aptrt

from .objects_activation import (
    INotImplemented,
    ISecond,
    ITracked,
    Seat,
    Tracked,
    Tracker,
    Where,
    collect,
    seat,
)

Pair = collections.namedtuple("Pair", "left right")


class IBox(aptrt.Interface, iid="13f0d42b-44a9-48bb-864d-9c3c1c14e009"):
    def put(self, value: object) -> None: ...
    def get(self) -> object: ...
    def echo(self, value: object) -> object: ...
    def is_kept(self, value: object) -> bool: ...
    def describe(self, value: object) -> object: ...
    def make(self, tracker: Tracker) -> object: ...
    def owns(self, value: object) -> bool: ...
    def mutate(self) -> None: ...
    def shared(self) -> object: ...
    async def forward(self, other: Any, value: object) -> object: ...


def describe(value: object) -> object:
    """What *value* looks like in the current apartment (plain data)."""
    if isinstance(value, aptrt.Proxy):
        return ("proxy", value.interface.__name__, value.apartment.name, value.target_apartment.name)
    if isinstance(value, list):
        return ["list", *(describe(item) for item in value)]
    if isinstance(value, tuple):
        return ("tuple", type(value).__name__, *(describe(item) for item in value))
    if isinstance(value, dict):
        return {key: describe(item) for key, item in value.items()}
    if isinstance(value, aptrt.Interface):
        return ("object", type(value).__name__, aptrt.current_apartment().name)
    return ("value", value)


class Box(IBox):
    """Keeps one value; makes objects of its own apartment; tells what it received."""

    def __init__(self) -> None:
        self.value: object = None
        self.made: list[object] = []

    def put(self, value: object) -> None:
        self.value = value

    def get(self) -> object:
        return self.value

    def echo(self, value: object) -> object:
        return value

    def is_kept(self, value: object) -> bool:
        return value is self.value

    def describe(self, value: object) -> object:
        return describe(value)

    def make(self, tracker: Tracker) -> object:
        one, two, three = Tracked(tracker), Tracked(tracker), Tracked(tracker)
        self.made = [one, two, three]
        return [one, (two,), {"three": three}, Pair(one, 2)]

    def owns(self, value: object) -> bool:
        """True if *value* is [one, (two,), {"three": three}] of the objects :meth:`make` made, themselves."""
        one, two, three = self.made
        return (
            isinstance(value, list)
            and value[0] is one
            and value[1][0] is two
            and value[2]["three"] is three
            and value[3].left is one
        )

    def mutate(self) -> None:
        value = self.value
        if isinstance(value, list):
            value.append("callee")
        elif isinstance(value, dict):
            value["callee"] = True
        elif isinstance(value, set):
            value.add("callee")
        elif isinstance(value, bytearray):
            value.extend(b"callee")

    def shared(self) -> object:
        return aptrt.by_reference(self.value)

    async def forward(self, other: Any, value: object) -> object:
        return await other.echo(value)


@pytest.fixture
async def box_sta(rt: aptrt.Runtime) -> AsyncIterator[aptrt.STA]:
    async with rt.open_sta("box") as sta:
        yield sta


@pytest.fixture
async def box(box_sta: aptrt.STA) -> aptrt.Proxy[IBox]:
    return await box_sta.create(Box)


class TestInterfacesInArguments:
    async def test_objects_in_containers_arrive_as_proxies(self, rt: aptrt.Runtime, box: aptrt.Proxy[IBox]) -> None:
        tracker = Tracker()
        obj = Tracked(tracker)
        seen = await box.describe([obj, (obj, 1), {"k": obj, "n": [obj]}, Pair(obj, "x")])
        proxy = ("proxy", "ITracked", "box", "main")
        assert seen == [
            "list",
            proxy,
            ("tuple", "tuple", proxy, ("value", 1)),
            {"k": proxy, "n": ["list", proxy]},
            ("tuple", "Pair", proxy, ("value", "x")),
        ]
        assert await box.describe(obj) == proxy
        assert await box.describe(frozenset({1})) == ("value", frozenset({1}))

    async def test_keyword_arguments(self, box: aptrt.Proxy[IBox]) -> None:
        obj = Tracked(Tracker())
        assert await box.describe(value={"k": (obj,)}) == {
            "k": ("tuple", "tuple", ("proxy", "ITracked", "box", "main"))
        }

    async def test_back_home_they_unwrap_to_the_originals(self, box: aptrt.Proxy[IBox]) -> None:
        obj, other = Tracked(Tracker()), Where()
        value = [obj, (other,), {"k": obj}, Pair(obj, other)]
        back = await box.echo(value)
        assert back is not value  # the list itself is a copy...
        assert back[0] is obj and back[1][0] is other and back[2]["k"] is obj  # ...its objects are the originals
        assert back[3].left is obj and back[3].right is other
        assert type(back[3]) is Pair

    async def test_proxies_to_a_third_apartment(self, rt: aptrt.Runtime, box: aptrt.Proxy[IBox]) -> None:
        async with rt.open_sta("third", backend="trio") as third:
            remote = await third.create(Tracked, Tracker())
            assert remote.apartment.name == "main" and remote.target_apartment is third
            seen = await box.describe([remote, {"r": (remote,)}])
            assert seen == [
                "list",
                ("proxy", "ITracked", "box", "third"),  # rebound to the receiving apartment
                {"r": ("tuple", "tuple", ("proxy", "ITracked", "box", "third"))},
            ]
            back = await box.echo([remote])
            assert back == [remote]  # the same object (proxy identity)
            assert isinstance(back[0], aptrt.Proxy) and back[0].apartment.name == "main"

            async def home_check(items: list[object]) -> bool:
                return type(items[0]) is Tracked  # in the object's own apartment: the object itself

            assert await third.run(home_check, [remote])


class TestInterfacesInResults:
    async def test_objects_in_results_arrive_as_proxies(self, rt: aptrt.Runtime, box: aptrt.Proxy[IBox]) -> None:
        tracker = Tracker()
        made = await box.make(tracker)
        one, (two,), mapping, pair = made
        for proxy in (one, two, mapping["three"], pair.left):
            assert isinstance(proxy, aptrt.Proxy)
            assert proxy.apartment is rt.main_sta
            assert proxy.target_apartment is box.target_apartment
            assert proxy.interface is ITracked
        assert pair.right == 2
        assert one == pair.left
        assert await one.ping(7) == 7
        assert await box.owns([one, (two,), {"three": mapping["three"]}, Pair(one, None)])

    async def test_results_holding_proxies_to_a_third_apartment(
        self, rt: aptrt.Runtime, box: aptrt.Proxy[IBox]
    ) -> None:
        here = Tracked(Tracker())
        async with rt.open_sta("third") as third:
            remote = await third.create(Tracked, Tracker())
            await box.put({"here": here, "remote": remote})
            kept = await box.get()
            assert kept["here"] is here
            assert kept["remote"] == remote
            assert kept["remote"].apartment is rt.main_sta


class TestIdentity:
    async def test_two_interfaces_of_one_remote_object_are_equal(self, box_sta: aptrt.STA) -> None:
        first = await box_sta.create(Tracked, Tracker())
        second = aptrt.query_interface(first, ISecond)
        assert second.interface is ISecond and first.interface is ITracked
        assert first == second and hash(first) == hash(second)
        assert aptrt.query_interface(second, ITracked) == first
        assert aptrt.query_interface(first, ITracked) is first
        assert await second.second() == "second"
        with pytest.raises(aptrt.NoInterfaceError) as excinfo:
            aptrt.query_interface(first, INotImplemented)
        assert excinfo.value.hresult == aptrt.HRESULT.E_NOINTERFACE
        other = await box_sta.create(Tracked, Tracker())
        assert other != first

    async def test_the_same_object_twice_is_one_identity(self, box: aptrt.Proxy[IBox]) -> None:
        made = await box.make(Tracker())
        again = await box.echo(made[0])  # a proxy sent home and back: a proxy to the same object
        assert again == made[0] and hash(again) == hash(made[0])
        assert again != made[1][0]
        assert {again, made[0], made[3].left} == {made[0]}

    async def test_a_to_b_to_a_is_the_original(self, rt: aptrt.Runtime, box: aptrt.Proxy[IBox]) -> None:
        obj = Tracked(Tracker())
        assert await box.echo(obj) is obj  # main → box → main
        async with rt.open_sta("c") as c:
            relay = await c.create(Box)
            assert await box.forward(relay, obj) is obj  # main → box → c → box → main

            async def in_c(proxy: aptrt.Proxy[ITracked], main_box: aptrt.Proxy[IBox]) -> bool:
                # c holds a proxy to main's object; it travels c → box → c and is c's proxy again
                back = await main_box.echo(proxy)
                return bool(back == proxy and back.apartment is aptrt.current_apartment())

            assert await c.run(in_c, obj, box)

    async def test_object_of_an_sta_travels_home(self, rt: aptrt.Runtime, box_sta: aptrt.STA) -> None:
        proxy = await box_sta.create(Tracked, Tracker())

        def is_tracked(value: object) -> bool:
            return type(value) is Tracked

        assert await box_sta.run_sync(is_tracked, proxy)  # main's proxy, home again: the object
        async with rt.open_sta("b") as b:

            async def via_b(p: aptrt.Proxy[ITracked]) -> bool:
                return await box_sta.run_sync(is_tracked, p)  # box → main → b → box

            assert await b.run(via_b, proxy)


class TestPlainData:
    @pytest.mark.parametrize(
        "value",
        [
            7,
            2**80,
            1.5,
            2j,
            True,
            None,
            "text",
            b"x" * 100_000,
            (1, "two", (3.0, b"4")),
            frozenset({1, 2}),
            range(3),
            uuid.UUID("73892ac4-dd98-4186-b653-babe7548dfc3"),
            decimal.Decimal("2.5"),
            fractions.Fraction(1, 3),
            datetime.date(2026, 1, 2),
            datetime.timedelta(seconds=3),
            Pair(1, "b"),
        ],
        ids=lambda v: type(v).__name__,
    )
    async def test_immutables_pass_through_identical(self, box: aptrt.Proxy[IBox], value: object) -> None:
        await box.put(value)
        assert await box.is_kept(value)
        assert await box.get() is value
        assert await box.echo(value) is value

    @pytest.mark.parametrize(
        "value",
        [[1, [2]], {"a": [1]}, {1, 2}, bytearray(b"abc")],
        ids=["list", "dict", "set", "bytearray"],
    )
    async def test_mutable_containers_are_copied_both_ways(self, box: aptrt.Proxy[IBox], value: Any) -> None:
        original = type(value)(value)
        await box.put(value)
        assert not await box.is_kept(value)
        await box.mutate()
        assert value == original  # the callee changed its copy
        kept = await box.get()
        assert kept is not value and kept != original  # the result is the callee's (changed) value...
        kept_again = await box.get()
        assert kept_again == kept and kept_again is not kept  # ...copied every time

    async def test_nested_copies(self, box: aptrt.Proxy[IBox]) -> None:
        inner = [1]
        value = (inner, {"k": inner})
        result = await box.echo(value)
        assert result == value
        assert result is not value and result[0] is not inner and result[1]["k"] is not inner

    @pytest.mark.parametrize(
        "value", [[1, 2], {"a": 1}, {3}, bytearray(b"xyz")], ids=["list", "dict", "set", "bytearray"]
    )
    async def test_by_reference_opts_out(self, box: aptrt.Proxy[IBox], value: Any) -> None:
        await box.put(aptrt.by_reference(value))
        assert await box.is_kept(aptrt.by_reference(value))
        assert not await box.is_kept(value)  # without the marker: a copy
        await box.put(aptrt.by_reference(value))
        await box.mutate()
        assert (b"callee" in value) if isinstance(value, bytearray) else ("callee" in value)  # shared on purpose
        assert await box.shared() is value  # a result may opt out too

    async def test_other_objects_cross_as_they_are(self, box: aptrt.Proxy[IBox]) -> None:
        class Opaque:
            pass

        value = Opaque()
        assert await box.echo(value) is value
        assert (await box.echo([value]))[0] is value


# -- marshal data --------------------------------------------------------------------------------------


class TestOneShot:
    async def test_unmarshal_once_in_another_apartment(self, rt: aptrt.Runtime, box_sta: aptrt.STA) -> None:
        main = rt.main_sta
        assert main is not None
        obj = Tracked(Tracker())
        data = aptrt.marshal_interface(obj)
        assert isinstance(data, aptrt.MarshalData)
        assert data.flags is aptrt.MSHLFLAGS.NORMAL and data.interface is ITracked
        assert main.statistics().exported == 1  # the data holds a reference

        async def unmarshal() -> tuple[object, int, int, str]:
            proxy = aptrt.unmarshal_interface(data)
            assert isinstance(proxy, aptrt.Proxy)
            result = await proxy.ping(5)
            with pytest.raises(aptrt.ObjectNotConnectedError) as excinfo:
                aptrt.unmarshal_interface(data)  # used up
            exported = main.statistics().exported
            proxy.release()
            return describe(proxy), result, exported, excinfo.value.hresult_name

        seen, result, exported, error = await box_sta.run(unmarshal)
        assert seen == ("proxy", "ITracked", "box", "main")
        assert result == 5
        assert exported == 1  # the data's reference passed to the proxy
        assert error == "CO_E_OBJNOTCONNECTED"
        assert main.statistics().exported == 0  # the proxy was the last reference
        with pytest.raises(aptrt.ObjectNotConnectedError) as excinfo:
            aptrt.unmarshal_interface(data)
        assert excinfo.value.hresult == aptrt.HRESULT.CO_E_OBJNOTCONNECTED
        assert isinstance(excinfo.value, aptrt.DisconnectedError)

    async def test_unmarshal_at_home_is_the_object(self, rt: aptrt.Runtime) -> None:
        obj = Tracked(Tracker())
        data = aptrt.marshal_interface(obj, ISecond)
        assert aptrt.unmarshal_interface(data) is obj
        assert rt.main_sta is not None and rt.main_sta.statistics().exported == 0
        with pytest.raises(aptrt.ObjectNotConnectedError):
            aptrt.unmarshal_interface(data)

    async def test_marshal_a_proxy(self, rt: aptrt.Runtime, box_sta: aptrt.STA) -> None:
        async with rt.open_sta("b") as b:
            proxy = await b.create(Tracked, Tracker())
            to_box = aptrt.marshal_interface(proxy, ISecond)
            to_home = aptrt.marshal_interface(proxy)
            proxy.release()  # the data keep the object connected
            assert b.statistics().exported == 1

            def unmarshal(data: aptrt.MarshalData) -> object:
                return describe(aptrt.unmarshal_interface(data))

            assert await box_sta.run_sync(unmarshal, to_box) == ("proxy", "ISecond", "box", "b")
            assert await b.run_sync(unmarshal, to_home) == ("object", "Tracked", "b")
            collect()
            assert b.statistics().exported == 0

    async def test_release_unused_data(self, rt: aptrt.Runtime) -> None:
        main = rt.main_sta
        assert main is not None
        tracker = Tracker()
        obj = Tracked(tracker)
        data = aptrt.marshal_interface(obj)
        del obj
        collect()
        assert tracker.alive == 1  # the data keeps it
        aptrt.release_marshal_data(data)
        aptrt.release_marshal_data(data)  # idempotent
        assert main.statistics().exported == 0
        collect()
        assert tracker.alive == 0
        with pytest.raises(aptrt.ObjectNotConnectedError):
            aptrt.unmarshal_interface(data)

    async def test_dropped_data_gives_its_reference_back(self, rt: aptrt.Runtime) -> None:
        main = rt.main_sta
        assert main is not None
        obj = Tracked(Tracker())
        data = aptrt.marshal_interface(obj)
        assert main.statistics().exported == 1
        del data
        collect()
        assert main.statistics().exported == 0

    async def test_bad_arguments(self, rt: aptrt.Runtime) -> None:
        with pytest.raises(aptrt.InvalidArgumentError):
            aptrt.marshal_interface(None)
        with pytest.raises(aptrt.InvalidArgumentError):
            aptrt.marshal_interface(object())
        with pytest.raises(aptrt.NoInterfaceError):
            aptrt.marshal_interface(Tracked(Tracker()), INotImplemented)
        with pytest.raises(aptrt.InvalidArgumentError):
            aptrt.unmarshal_interface(b"MEOW")  # type: ignore[arg-type]
        with pytest.raises(aptrt.InvalidArgumentError):
            aptrt.release_marshal_data("data")  # type: ignore[arg-type]
        assert rt.main_sta is not None and rt.main_sta.statistics().exported == 0


class TestTableMarshal:
    async def test_table_strong(self, rt: aptrt.Runtime, box_sta: aptrt.STA) -> None:
        main = rt.main_sta
        assert main is not None
        tracker = Tracker()
        obj = Tracked(tracker)
        data = aptrt.marshal_interface(obj, flags=aptrt.MSHLFLAGS.TABLESTRONG)

        async def use(n: int) -> tuple[object, int]:
            proxy = aptrt.unmarshal_interface(data)
            try:
                return describe(proxy), await proxy.ping(n)
            finally:
                proxy.release()

        def use_blocking(n: int) -> tuple[object, int]:
            proxy = aptrt.unmarshal_interface(data)
            try:
                return describe(proxy), aptrt.blocking(proxy, timeout=5).ping(n)
            finally:
                proxy.release()

        assert await box_sta.run(use, 1) == (("proxy", "ITracked", "box", "main"), 1)
        assert await box_sta.run(use, 2) == (("proxy", "ITracked", "box", "main"), 2)  # many times
        assert await rt.mta.run(use, 3) == (("proxy", "ITracked", "MTA", "main"), 3)
        assert await anyio.to_thread.run_sync(use_blocking, 4) == (("proxy", "ITracked", "MTA", "main"), 4)
        assert aptrt.unmarshal_interface(data) is obj  # at home
        assert main.statistics().exported == 1

        del obj
        collect()
        assert tracker.alive == 1  # kept alive by the table entry alone
        assert main.statistics().exported == 1
        aptrt.release_marshal_data(data)
        assert main.statistics().exported == 0
        collect()
        assert tracker.alive == 0
        with pytest.raises(aptrt.ObjectNotConnectedError) as excinfo:
            aptrt.unmarshal_interface(data)
        assert excinfo.value.hresult == aptrt.HRESULT.CO_E_OBJNOTCONNECTED

    async def test_table_weak_does_not_keep_alive(self, rt: aptrt.Runtime, box_sta: aptrt.STA) -> None:
        main = rt.main_sta
        assert main is not None
        tracker = Tracker()
        obj = Tracked(tracker)
        data = aptrt.marshal_interface(obj, flags=aptrt.MSHLFLAGS.TABLEWEAK)
        assert main.statistics().exported == 0  # no reference taken

        async def use(n: int) -> tuple[object, int]:
            proxy = aptrt.unmarshal_interface(data)
            try:
                return describe(proxy), await proxy.ping(n)
            finally:
                proxy.release()

        assert await box_sta.run(use, 1) == (("proxy", "ITracked", "box", "main"), 1)
        assert await box_sta.run(use, 2) == (("proxy", "ITracked", "box", "main"), 2)
        assert main.statistics().exported == 0
        del obj
        collect()
        assert tracker.alive == 0  # the weak data did not keep it

        async def use_gone() -> str:
            with pytest.raises(aptrt.ObjectNotConnectedError) as excinfo:
                aptrt.unmarshal_interface(data)
            return excinfo.value.hresult_name

        assert await box_sta.run(use_gone) == "CO_E_OBJNOTCONNECTED"

    async def test_table_weak_at_home_takes_no_reference(self, rt: aptrt.Runtime) -> None:
        main = rt.main_sta
        assert main is not None
        tracker = Tracker()
        obj = Tracked(tracker)
        data = aptrt.marshal_interface(obj, flags=aptrt.MSHLFLAGS.TABLEWEAK)
        assert aptrt.unmarshal_interface(data) is obj
        assert main.statistics().exported == 0  # nothing exported for a home unmarshal
        del obj
        collect()
        assert tracker.alive == 0
        with pytest.raises(aptrt.ObjectNotConnectedError):
            aptrt.unmarshal_interface(data)

    async def test_table_weak_release(self, rt: aptrt.Runtime, box_sta: aptrt.STA) -> None:
        obj = Tracked(Tracker())
        data = aptrt.marshal_interface(obj, flags=aptrt.MSHLFLAGS.TABLEWEAK)
        aptrt.release_marshal_data(data)

        def unmarshal() -> None:
            aptrt.unmarshal_interface(data)

        with pytest.raises(aptrt.ObjectNotConnectedError):
            await box_sta.run_sync(unmarshal)


class TestGlobalInterfaceTable:
    async def test_register_get_revoke(self, rt: aptrt.Runtime, box_sta: aptrt.STA) -> None:
        main = rt.main_sta
        assert main is not None
        tracker = Tracker()
        obj = Tracked(tracker)
        cookie = rt.git.register(obj)
        assert isinstance(cookie, int) and cookie != 0
        assert len(rt.git) == 1
        assert rt.git.get(cookie) is obj  # the home apartment gets the raw object
        assert rt.git.get(cookie, ISecond) is obj

        async def get(n: int) -> tuple[object, int]:
            proxy = rt.git.get(cookie)
            try:
                return describe(proxy), await proxy.ping(n)
            finally:
                proxy.release()

        def get_blocking() -> object:
            proxy = rt.git.get(cookie, ISecond)
            try:
                return describe(proxy), aptrt.blocking(proxy, timeout=5).second()
            finally:
                proxy.release()

        assert await box_sta.run(get, 1) == (("proxy", "ITracked", "box", "main"), 1)
        assert await box_sta.run(get, 2) == (("proxy", "ITracked", "box", "main"), 2)
        assert await rt.mta.run(get, 3) == (("proxy", "ITracked", "MTA", "main"), 3)
        assert await anyio.to_thread.run_sync(get_blocking) == (("proxy", "ISecond", "MTA", "main"), "second")

        del obj
        collect()
        assert tracker.alive == 1  # the table keeps it
        rt.git.revoke(cookie)
        assert len(rt.git) == 0
        assert main.statistics().exported == 0
        collect()
        assert tracker.alive == 0
        with pytest.raises(aptrt.InvalidArgumentError) as excinfo:
            rt.git.get(cookie)
        assert excinfo.value.hresult == aptrt.HRESULT.E_INVALIDARG
        with pytest.raises(aptrt.InvalidArgumentError):
            rt.git.revoke(cookie)

    @pytest.mark.parametrize("cookie", [0, 4_242_424], ids=["zero", "unknown"])
    async def test_bad_cookies(self, rt: aptrt.Runtime, cookie: int) -> None:
        for operation in (rt.git.get, rt.git.revoke):
            with pytest.raises(aptrt.InvalidArgumentError) as excinfo:
                operation(cookie)
            assert excinfo.value.hresult == aptrt.HRESULT.E_INVALIDARG
            assert excinfo.value.hresult_name == "E_INVALIDARG"

    async def test_register_a_proxy_elsewhere(self, rt: aptrt.Runtime, box_sta: aptrt.STA) -> None:
        obj = Tracked(Tracker())
        cookie = await box_sta.run_sync(rt.git.register, obj)  # the box STA registers its proxy
        assert rt.git.get(cookie) is obj  # home: the object itself

        def get_in_box() -> object:
            return describe(rt.git.get(cookie))

        assert await box_sta.run_sync(get_in_box) == ("proxy", "ITracked", "box", "main")
        rt.git.revoke(cookie)  # any apartment may revoke

    def test_runtime_exit_clears_the_table(self) -> None:
        tracker = Tracker()
        with aptrt.Runtime() as rt:
            obj = Tracked(tracker)  # made on a plain thread: an object of the MTA
            cookie = rt.git.register(obj)
            del obj
            assert rt.git.get(cookie).ping(1) == 1  # home (the implicit MTA): the object
            assert rt.mta.statistics().exported == 1
        assert len(rt.git) == 0
        collect()
        assert tracker.alive == 0


# -- agile objects and agile references ----------------------------------------------------------------


class AgileWhere(aptrt.Agile, Where):
    """Free-threaded: every apartment gets the object itself (the free-threaded marshaler)."""


class TestAgile:
    async def test_every_apartment_gets_the_object_itself(self, rt: aptrt.Runtime, box: aptrt.Proxy[IBox]) -> None:
        main = rt.main_sta
        assert main is not None
        obj = AgileWhere()
        await box.put(obj)
        assert await box.is_kept(obj)
        assert await box.get() is obj
        assert await box.describe([obj, {"k": obj}]) == [
            "list",
            ("object", "AgileWhere", "box"),
            {"k": ("object", "AgileWhere", "box")},
        ]
        assert main.statistics().exported == 0  # nothing exported: no stub, no proxy

    async def test_calls_run_on_the_callers_thread(self, rt: aptrt.Runtime, box_sta: aptrt.STA) -> None:
        obj = AgileWhere()

        def call(o: AgileWhere) -> tuple[Seat, Seat]:
            assert o is obj
            return o.where(), seat()

        runs, caller = await box_sta.run_sync(call, obj)
        assert runs == caller and caller[0] == "aptrt-sta-box"
        runs, caller = await rt.mta.run_sync(call, obj)
        assert runs == caller and caller[0].startswith("aptrt-mta-")

    async def test_create_elsewhere_gives_the_object(self, box_sta: aptrt.STA) -> None:
        obj = await box_sta.create(AgileWhere)
        assert type(obj) is AgileWhere  # not a proxy
        assert obj.born()[0] == "aptrt-sta-box"
        assert obj.where() == seat()

    async def test_marshal_data_and_git_give_the_object(self, rt: aptrt.Runtime, box_sta: aptrt.STA) -> None:
        obj = AgileWhere()
        strong = aptrt.marshal_interface(obj, flags=aptrt.MSHLFLAGS.TABLESTRONG)
        cookie = rt.git.register(obj)
        ref = aptrt.AgileReference(obj)

        def resolve_all() -> tuple[object, object, object]:
            return aptrt.unmarshal_interface(strong), rt.git.get(cookie), ref.resolve()

        assert await box_sta.run_sync(resolve_all) == (obj, obj, obj)
        a, b, c = await box_sta.run_sync(resolve_all)
        assert a is obj and b is obj and c is obj
        rt.git.revoke(cookie)
        aptrt.release_marshal_data(strong)
        ref.release()


class TestAgileReference:
    async def test_resolve_in_several_apartments(self, rt: aptrt.Runtime, box_sta: aptrt.STA) -> None:
        main = rt.main_sta
        assert main is not None
        tracker = Tracker()
        obj = Tracked(tracker)
        ref = aptrt.AgileReference(obj)
        assert ref.resolve() is obj  # home

        async def resolve(n: int) -> tuple[object, int, bool]:
            first, second = ref.resolve(), ref.resolve()
            try:
                return describe(first), await first.ping(n), first == second
            finally:
                first.release()
                second.release()

        def resolve_blocking(n: int) -> tuple[object, int]:
            proxy = ref.resolve()
            try:
                return describe(proxy), aptrt.blocking(proxy, timeout=5).ping(n)
            finally:
                proxy.release()

        assert await box_sta.run(resolve, 1) == (("proxy", "ITracked", "box", "main"), 1, True)
        async with rt.open_sta("other", backend="trio") as other:
            assert await other.run(resolve, 2) == (("proxy", "ITracked", "other", "main"), 2, True)
        assert await rt.mta.run(resolve, 3) == (("proxy", "ITracked", "MTA", "main"), 3, True)
        assert await rt.mta.run_sync(resolve_blocking, 4) == (("proxy", "ITracked", "MTA", "main"), 4)
        assert await anyio.to_thread.run_sync(resolve_blocking, 5) == (("proxy", "ITracked", "MTA", "main"), 5)

        del obj
        collect()
        assert tracker.alive == 1  # the reference keeps it alive
        ref.release()
        assert main.statistics().exported == 0
        collect()
        assert tracker.alive == 0
        with pytest.raises(aptrt.ObjectNotConnectedError):
            ref.resolve()

    async def test_with_block_releases(self, rt: aptrt.Runtime) -> None:
        tracker = Tracker()
        with aptrt.AgileReference(Tracked(tracker), ISecond) as ref:
            assert type(ref.resolve()) is Tracked
            assert tracker.alive == 1
        collect()
        assert tracker.alive == 0
        assert rt.main_sta is not None and rt.main_sta.statistics().exported == 0

    async def test_reference_to_a_proxy(self, rt: aptrt.Runtime, box_sta: aptrt.STA) -> None:
        proxy = await box_sta.create(Tracked, Tracker())
        ref = aptrt.AgileReference(proxy, ISecond)

        def resolve() -> object:
            return describe(ref.resolve())

        assert await box_sta.run_sync(resolve) == ("object", "Tracked", "box")  # home: the object
        async with rt.open_sta("other") as other:
            assert await other.run_sync(resolve) == ("proxy", "ISecond", "other", "box")
        again = ref.resolve()
        assert again == proxy and again.interface is ISecond
        ref.release()
