"""``python -m aptrt demo``: two STAs (asyncio and trio) and the MTA calling each other."""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio

import aptrt


class IGreeter(aptrt.Interface, iid="8c2a7c0e-3d0b-4a8e-9f3c-5a1d2b7e6f01"):
    """Says hello, and reports which thread it runs on."""

    def greet(self, who: str) -> str:
        raise NotImplementedError


class ITally(aptrt.Interface, iid="8c2a7c0e-3d0b-4a8e-9f3c-5a1d2b7e6f02"):
    """A free-threaded counter living in the MTA."""

    def add(self, n: int) -> int:
        raise NotImplementedError

    async def relay(self, greeter: aptrt.Proxy[IGreeter], who: str) -> str:
        raise NotImplementedError


class Greeter(IGreeter):
    def __init__(self, apartment: str) -> None:
        self.apartment = apartment

    def greet(self, who: str) -> str:
        return f"{self.apartment} (thread {threading.current_thread().name}) greets {who}"


class Tally(aptrt.Guarded, ITally):
    def __init__(self) -> None:
        self.total = 0

    @aptrt.guarded
    def add(self, n: int) -> int:
        self.total += n
        return self.total

    async def relay(self, greeter: aptrt.Proxy[IGreeter], who: str) -> str:
        # runs on the MTA's loop; `greeter` arrived as a proxy bound to the MTA
        greeting: str = await greeter.greet(f"{who}, relayed by the MTA")
        return greeting


async def demo(out: Callable[[str], None] = print) -> None:
    async with aptrt.Runtime() as rt:
        out(f"main STA: {rt.main_sta!r} on {threading.current_thread().name}")
        async with rt.open_sta("left", backend="asyncio") as left, rt.open_sta("right", backend="trio") as right:
            greeter_left = await left.create(Greeter, "left/asyncio")
            greeter_right = await right.create(Greeter, "right/trio")
            tally = await rt.mta.create(Tally)

            out(await greeter_left.greet("main"))
            out(await greeter_right.greet("main"))

            # STA right calls STA left: the proxy is marshaled into `right` as an argument
            async def from_right(greeter: aptrt.Proxy[IGreeter]) -> str:
                greeting: str = await greeter.greet("right")
                return greeting

            out(await right.run(from_right, greeter_left))

            # the MTA calls back into an STA
            out(await tally.relay(greeter_right, "main"))

            # many concurrent calls from both STAs into the MTA object
            async def hammer(t: aptrt.Proxy[ITally], n: int) -> int:
                last = 0
                for _ in range(n):
                    last = int(await t.add(1))
                return last

            async with anyio.create_task_group() as tg:
                tg.start_soon(left.run, hammer, tally, 500)
                tg.start_soon(right.run, hammer, tally, 500)
            out(f"MTA tally after 1000 calls from two STAs: {await tally.add(0)}")
            for apartment in rt.apartments:
                out(f"  {apartment.statistics()}")


def main() -> None:
    anyio.run(demo)


if __name__ == "__main__":
    main()
