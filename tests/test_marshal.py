from __future__ import annotations

import collections
import datetime
import decimal
import uuid

import pytest

import aptrt

from .objects import Counter, ICounter

Point = collections.namedtuple("Point", "x y")


class IEcho(aptrt.Interface, iid="3c3e60f3-e3c9-4a89-b1d5-7c2727c858fb"):
    def echo(self, value: object) -> object: ...
    def keep(self, value: object) -> None: ...
    def kept(self) -> object: ...
    def mutate(self) -> None: ...
    def same(self, value: object) -> bool: ...


class Echo(IEcho):
    """Returns what it gets, keeps it for later, mutates what it kept."""

    def __init__(self) -> None:
        self.value: object = None

    def echo(self, value: object) -> object:
        return value

    def keep(self, value: object) -> None:
        self.value = value

    def kept(self) -> object:
        return self.value

    def mutate(self) -> None:
        value = self.value
        if isinstance(value, list):
            value.append("callee")
        elif isinstance(value, dict):
            value["callee"] = True
        elif isinstance(value, (set, bytearray)):
            value.add("callee") if isinstance(value, set) else value.extend(b"callee")

    def same(self, value: object) -> bool:
        return value is self.value


@pytest.fixture
async def echo(rt: aptrt.Runtime, sta_backend: str) -> aptrt.Proxy[IEcho]:
    sta = await rt.start_sta("echo", backend=sta_backend)
    return await sta.create(Echo)


class TestCopies:
    @pytest.mark.parametrize(
        "value",
        [[1, 2, [3]], {"a": [1], "b": {"c": 2}}, {1, 2, 3}, bytearray(b"abc")],
        ids=["list", "dict", "set", "bytearray"],
    )
    async def test_mutable_containers_are_copied(self, echo: aptrt.Proxy[IEcho], value: object) -> None:
        original = type(value)(value)  # type: ignore[call-arg]
        await echo.keep(value)
        assert not await echo.same(value)
        await echo.mutate()
        assert value == original  # the callee changed its own copy, not ours
        kept = await echo.kept()
        assert kept is not value
        assert kept != original

        result = await echo.echo(value)
        assert result == value
        assert result is not value

    async def test_nested_containers_are_copied(self, echo: aptrt.Proxy[IEcho]) -> None:
        inner = [1, 2]
        value = {"inner": inner, "tuple": (inner,)}
        result = await echo.echo(value)
        assert result == value
        assert result["inner"] is not inner
        assert result["tuple"][0] is not inner

    async def test_tuple_of_mutables_is_rebuilt(self, echo: aptrt.Proxy[IEcho]) -> None:
        inner = [1]
        result = await echo.echo((inner, "x"))
        assert result == ([1], "x")
        assert result[0] is not inner


class TestPassThrough:
    @pytest.mark.parametrize(
        "value",
        [
            b"x" * 1_000_000,
            "text" * 1000,
            12345678901234567890,
            3.5,
            None,
            (1, "a", b"b", (2, 3)),
            frozenset({1, 2}),
            uuid.UUID("9555d84c-39e8-4af1-989d-659064bd3cb9"),
            decimal.Decimal("1.5"),
            datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
            Point(1, 2),
        ],
        ids=lambda v: type(v).__name__,
    )
    async def test_immutables_pass_through(self, echo: aptrt.Proxy[IEcho], value: object) -> None:
        await echo.keep(value)
        assert await echo.same(value)
        assert await echo.echo(value) is value

    async def test_other_objects_pass_as_they_are(self, echo: aptrt.Proxy[IEcho]) -> None:
        class Plain:
            pass

        value = Plain()
        await echo.keep(value)
        assert await echo.same(value)
        assert await echo.echo(value) is value

    async def test_by_reference(self, echo: aptrt.Proxy[IEcho]) -> None:
        value = [1, 2]
        await echo.keep(aptrt.by_reference(value))
        assert await echo.same(aptrt.by_reference(value))
        assert not await echo.same(value)  # without the marker, a copy
        await echo.mutate()
        assert value == [1, 2, "callee"]  # shared on purpose

        buffer = bytearray(b"abc")
        await echo.keep(aptrt.by_reference(buffer))
        assert await echo.same(aptrt.by_reference(buffer))


class TestInterfaceObjects:
    async def test_objects_arrive_as_proxies(self, rt: aptrt.Runtime, echo: aptrt.Proxy[IEcho]) -> None:
        counter = Counter()  # lives in the main STA
        assert not await echo.same(counter)
        await echo.keep(counter)
        assert echo.target_apartment.statistics().exported == 1
        assert rt.main_sta is not None
        assert rt.main_sta.statistics().exported == 1  # the counter is exported from the main STA
        assert await echo.kept() is counter  # back home: the object itself

    async def test_proxies_inside_containers(self, rt: aptrt.Runtime, echo: aptrt.Proxy[IEcho]) -> None:
        counters = [Counter(1), Counter(2)]
        home = echo.target_apartment

        async def inspect(items: list[object], mapping: dict[str, object]) -> list[object]:
            assert all(isinstance(item, aptrt.Proxy) for item in items)
            assert all(item.apartment is home for item in items)  # type: ignore[attr-defined]
            assert isinstance(mapping["c"], aptrt.Proxy)
            return [await item.value() for item in items] + [items, mapping]  # type: ignore[attr-defined]

        first, second, items, mapping = await home.run(inspect, counters, {"c": counters[0]})
        assert (first, second) == (1, 2)
        assert items == counters
        assert items[0] is counters[0]
        assert items[1] is counters[1]
        assert mapping == {"c": counters[0]}
        assert mapping["c"] is counters[0]

    async def test_proxy_in_a_list_to_a_third_apartment(self, rt: aptrt.Runtime, echo: aptrt.Proxy[IEcho]) -> None:
        third = await rt.start_sta("third")
        home = await rt.start_sta("counter-home")
        proxy = await home.create(Counter)

        async def add_all(items: list[aptrt.Proxy[ICounter]]) -> list[str]:
            for item in items:
                await item.add(1)
            return [item.apartment.name for item in items]

        assert await third.run(add_all, [proxy, proxy]) == ["third", "third"]
        assert await proxy.value() == 2

    async def test_keyword_arguments(self, echo: aptrt.Proxy[IEcho]) -> None:
        value = [1]
        await echo.keep(value=value)
        assert not await echo.same(value=aptrt.by_reference(value))  # keywords are copied too
        await echo.keep(value=aptrt.by_reference(value))
        assert await echo.same(value=aptrt.by_reference(value))
        counter = Counter()
        await echo.keep(value=counter)
        assert await echo.kept() is counter


class TestResults:
    async def test_results_are_copied(self, echo: aptrt.Proxy[IEcho]) -> None:
        await echo.keep([1])
        result = await echo.kept()
        await echo.mutate()
        assert result == [1]  # the callee's list changed, ours did not
        assert await echo.kept() == [1, "callee"]
