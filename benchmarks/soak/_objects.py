"""The objects under load: a service (sync, async, raising, slow, relaying, spawning calls) and the
directory callers look services up in."""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.lowlevel

import aptrt


class IService(aptrt.Interface, iid="0d9b7f8e-52a4-4c39-9d1b-6f2f4a7b3c21"):
    def add(self, n: int) -> int:
        raise NotImplementedError

    async def echo(self, n: int) -> int:
        raise NotImplementedError

    def fail(self, n: int) -> int:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        raise NotImplementedError

    def spin(self, seconds: float) -> None:
        raise NotImplementedError

    async def relay(self, other: IService, n: int) -> int:
        raise NotImplementedError

    def spawn(self) -> IService:
        raise NotImplementedError


class Service(aptrt.Guarded, IService):
    """A service object. In the MTA several workers call it at once, so it guards its state."""

    def __init__(self) -> None:
        self.total = 0

    @aptrt.guarded
    def add(self, n: int) -> int:
        self.total += n
        return self.total

    async def echo(self, n: int) -> int:
        await anyio.lowlevel.checkpoint()
        return n

    def fail(self, n: int) -> int:
        if n % 2:
            raise KeyError(n)
        raise ValueError(n)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def spin(self, seconds: float) -> None:
        """Busy for *seconds* (blocking its thread), polling for the caller's cancellation, last of all
        after its last sleep: a thread starved of the GIL may wake up past both its end and the deadline."""
        end = time.monotonic() + seconds
        while True:
            aptrt.check_cancelled()
            if time.monotonic() >= end:
                return
            time.sleep(0.0005)

    async def relay(self, other: Any, n: int) -> int:
        # a proxy, or the object itself when *other* lives in this apartment: both are awaited alike
        result: int = await other.echo(n)
        return result

    def spawn(self) -> Service:
        return Service()  # exported on the way out, into the context this call runs in


class IDirectory(aptrt.Interface, iid="5c0e2d71-8a3f-4f5e-b7d4-2e9a61c8f0b3"):
    def pick(self, exclude: str, r: float) -> IService:
        raise NotImplementedError

    def publish(self, slot: int, home: str, service: IService) -> None:
        raise NotImplementedError

    def clear(self) -> int:
        raise NotImplementedError


class Directory(IDirectory):
    """The current service of every slot. An STA object, so its calls take turns: ``publish`` may release
    the proxy it replaces while no ``pick`` is returning it."""

    def __init__(self) -> None:
        self._slots: dict[int, tuple[str, Any]] = {}  # slot -> (its apartment, a Proxy[IService])

    def pick(self, exclude: str, r: float) -> Any:
        """A service living outside apartment *exclude* (the caller's: it gets a proxy, not the object)."""
        choices = [proxy for home, proxy in self._slots.values() if home != exclude]
        return choices[int(r * len(choices))]

    def publish(self, slot: int, home: str, service: Any) -> None:
        old = self._slots.get(slot)
        self._slots[slot] = (home, service)
        if old is not None:
            old[1].release()

    def clear(self) -> int:
        slots, self._slots = self._slots, {}
        for _, proxy in slots.values():
            proxy.release()
        return len(slots)
