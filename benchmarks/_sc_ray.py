"""Scenario about remote calls: an aptrt STA in a Ray actor, against a plain Ray async actor.

The classes here are loaded by the actor processes by reference (``benchmarks._sc_ray``: the repository
root is on their ``PYTHONPATH``, see ``_ray.py``), so this module must not import ``ray`` at the top.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import anyio

import aptrt

from . import _ray
from ._harness import BenchError, async_latency, timed_throughput
from ._scenarios import Metric, Scenario, Sizes, rotate

Figures = dict[str, float | None]
AsyncCall = Callable[[int], Awaitable[Any]]


class IEcho(aptrt.Interface, iid="77995aef-5f0b-4152-8a73-9d0849ca0b76"):
    async def echo(self, x: int) -> int:
        raise NotImplementedError

    def pid(self) -> int:
        raise NotImplementedError


class Echo(IEcho):
    """The aptrt callee, in the remote STA."""

    async def echo(self, x: int) -> int:
        return x

    def pid(self) -> int:
        return os.getpid()


class PlainEcho:
    """The peer: a plain Ray async actor (``ray.remote(PlainEcho)``), one Ray message per call."""

    async def echo(self, x: int) -> int:
        return x


#: ``ray.remote(PlainEcho)``, made once per process (``ray.remote`` on a class is not free)
_plain_actor: Any = None


def _plain_actor_class(ray: ModuleType) -> Any:
    global _plain_actor
    if _plain_actor is None:
        _plain_actor = ray.remote(PlainEcho)
    return _plain_actor


async def _latency_us(call: AsyncCall, sizes: Sizes) -> tuple[float, float]:
    """Median and p99 (nearest rank) of *call*'s round trip in µs, after a warm-up."""
    for i in range(sizes.remote_warmup):
        await call(i)
    samples = sorted(await async_latency(call, sizes.remote_calls))
    p99 = samples[max(1, math.ceil(0.99 * len(samples))) - 1]
    return statistics.median(samples) / 1000, p99 / 1000


class RayScenario(Scenario):
    """Remote calls through Ray, from asyncio (the caller is the main STA of ``async with aptrt.Runtime()``
    on the harness thread): ``await proxy.echo(x)`` to an object in an STA hosted in a Ray actor
    (``rt.start_sta(host=aptrt.ray.RayHost())``, default batching: a window of 4 Ray messages of up to 64
    calls), against ``await actor.echo.remote(x)`` to a plain Ray async actor (one Ray message per call).
    Latency is one call in flight (median and p99); throughput is calls/s with 64 calls in flight, where
    aptrt sends the calls queued behind its window together in one Ray message. One private Ray instance
    (2 CPUs) serves every rep; each rep starts both actors afresh."""

    key = "ray"
    title = "Remote calls through Ray: aptrt STA in a Ray actor against a plain Ray async actor (asyncio)"
    requires = ("ray",)
    heavy = True

    def metrics(self) -> list[Metric]:
        return [
            Metric("lat/ray", "latency (median), plain Ray async actor: await actor.echo.remote(x)", "us"),
            Metric(
                "lat/aptrt",
                "latency (median), aptrt STA in a Ray actor: await proxy.echo(x)",
                "us",
                versus="lat/ray",
            ),
            Metric("p99/ray", "latency p99, plain Ray async actor", "us"),
            Metric("p99/aptrt", "latency p99, aptrt STA in a Ray actor", "us", versus="p99/ray"),
            Metric("tput/ray", "throughput @64, plain Ray async actor (one Ray message per call)", "per_s"),
            Metric(
                "tput/aptrt",
                "throughput @64, aptrt STA in a Ray actor (calls batched per Ray message)",
                "per_s",
                versus="tput/ray",
            ),
            Metric(
                "lat/inline",
                "latency (median), aptrt, objects on the actor's own loop: RayHost(own_thread=False)",
                "us",
                versus="lat/ray",
            ),
            Metric("p99/inline", "latency p99, aptrt with RayHost(own_thread=False)", "us", versus="p99/ray"),
            Metric("tput/inline", "throughput @64, aptrt with RayHost(own_thread=False)", "per_s", versus="tput/ray"),
            Metric("remote", "check: the aptrt object runs in the actor's process, not the caller's", "bool"),
        ]

    def run(self, sizes: Sizes, rep: int) -> Figures:
        ray = _ray.start()
        return anyio.run(self._main, ray, sizes, rep)

    @classmethod
    def finish(cls) -> None:
        _ray.stop()

    async def _main(self, ray: ModuleType, sizes: Sizes, rep: int) -> Figures:
        import aptrt.ray

        out: Figures = {}
        async with aptrt.Runtime() as rt:
            actor = _plain_actor_class(ray).remote()
            try:
                sta = await rt.start_sta("bench-remote", host=aptrt.ray.RayHost())
                inline = await rt.start_sta("bench-inline", host=aptrt.ray.RayHost(own_thread=False))
                try:
                    echo: Any = await sta.create(Echo)
                    echo_inline: Any = await inline.create(Echo)
                    out["remote"] = float(await echo.pid() != os.getpid())
                    method = actor.echo
                    calls: dict[str, AsyncCall] = {
                        "ray": lambda x: method.remote(x),
                        "aptrt": echo.echo,
                        "inline": echo_inline.echo,
                    }
                    for name, call in calls.items():
                        if (result := await call(41)) != 41:
                            raise BenchError(f"{name}: the callee returned {result!r} for 41")
                    for name in rotate(list(calls), rep):
                        out[f"lat/{name}"], out[f"p99/{name}"] = await _latency_us(calls[name], sizes)
                    for name in rotate(list(calls), rep):
                        out[f"tput/{name}"] = await timed_throughput(
                            [calls[name]], sizes.inflight, sizes.remote_seconds
                        )
                    echo.release()
                    echo_inline.release()
                finally:
                    await sta.aclose()
                    await inline.aclose()
            finally:
                ray.kill(actor)
        return out


SCENARIOS: tuple[type[Scenario], ...] = (RayScenario,)
