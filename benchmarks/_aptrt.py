"""aptrt's own mechanisms: an STA calling an object that lives in another STA, through a proxy."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar, TypeVar

import aptrt

from ._harness import AsyncCall, AsyncMechanism, check_result, pin

T = TypeVar("T")


class IInc(aptrt.Interface, iid="3f0d8a52-6c1e-4b8e-9a57-0b7c2d1e4f11"):
    def inc(self, x: int) -> int:
        raise NotImplementedError


class Inc(IInc):
    def inc(self, x: int) -> int:
        return x + 1


class AptrtStaToSta(AsyncMechanism):
    """``await proxy.inc(x)`` in a caller STA, to an ``Inc`` object created in a target STA.

    Both STAs run the same backend. The proxy is made inside the coroutine running on the caller STA
    (``await target.create(Inc)``), so it belongs to the caller STA, as a real caller's proxy would.
    """

    family = "aptrt"
    backend: ClassVar[str]

    def open(self) -> None:
        rt = self._stack.enter_context(aptrt.Runtime(backend=self.backend))
        self._caller = rt.start_sta_blocking("bench-caller", backend=self.backend)
        self._target = rt.start_sta_blocking("bench-target", backend=self.backend)
        self._caller.run_sync_blocking(pin, "caller")
        self._target.run_sync_blocking(pin, "callee")

    def run_on_caller(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        async def job() -> T:
            # by_reference: hand the samples list back uncopied (untimed either way)
            return aptrt.by_reference(await fn(*args))

        return self._caller.run_blocking(job)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncCall]:
        proxy: Any = await self._target.create(Inc)
        try:
            yield proxy.inc
        finally:
            proxy.release()


class AptrtAsyncio(AptrtStaToSta):
    key = "aptrt/asyncio"
    label = "aptrt STA → STA, asyncio"
    backend = "asyncio"


class AptrtUvloop(AptrtStaToSta):
    key = "aptrt/uvloop"
    label = "aptrt STA → STA, uvloop"
    backend = "uvloop"
    requires = ("uvloop",)


class AptrtTrio(AptrtStaToSta):
    key = "aptrt/trio"
    label = "aptrt STA → STA, trio"
    backend = "trio"


class AptrtAsyncioBegin(AptrtAsyncio):
    """Pipelined from one task, as pykka's window of futures is from one thread: a window of
    ``aptrt.begin(proxy.inc, x)`` handles, awaited oldest first (latency: begin, then await at once)."""

    key = "aptrt/asyncio+begin"
    label = "aptrt STA → STA, asyncio, aptrt.begin window"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncCall]:
        proxy: Any = await self._target.create(Inc)
        inc = proxy.inc
        try:
            yield lambda x: aptrt.begin(inc, x)
        finally:
            proxy.release()

    async def _throughput(self, inflight: int, calls: int) -> float:
        async with self.session() as begin:
            check_result(41, await begin(41))
            window: deque[Any] = deque()
            push, pop = window.append, window.popleft
            t0 = time.perf_counter()
            for i in range(min(inflight, calls)):
                push(begin(i))
            for i in range(inflight, calls):
                await pop()
                push(begin(i))
            while window:
                await pop()
            return time.perf_counter() - t0


class AptrtTrioBegin(AptrtAsyncioBegin):
    key = "aptrt/trio+begin"
    label = "aptrt STA → STA, trio, aptrt.begin window"
    backend = "trio"


MECHANISMS: tuple[type[AptrtStaToSta], ...] = (
    AptrtAsyncio,
    AptrtUvloop,
    AptrtTrio,
    AptrtAsyncioBegin,
    AptrtTrioBegin,
)
