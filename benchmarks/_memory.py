"""Memory per idle STA and per live proxy, measured in a fresh interpreter.

``python -m benchmarks._memory [--stas 20] [--proxies 10000]`` prints one line of JSON. The memory
scenario (``_sc_costs.MemoryScenario``) runs it as a subprocess, so what the suite allocated before (and
the allocator's free lists) does not blur the figures.

* idle STA: the growth of the process's resident set (RSS, ``/proc/self/statm``) when *stas* more STAs
  are started and left idle, divided by *stas*; then, separately, what ``tracemalloc`` traces for *stas*
  more (Python objects only: no thread stack, no C-level loop state);
* live proxy: what ``tracemalloc`` traces (and RSS) when a caller STA receives *proxies* proxies in one
  call: to as many distinct objects (proxy + stub + the object), and to one shared object (proxy only);
  and the object alone, for the net figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any

import aptrt

from ._aptrt import IInc, Inc


class IFactory(aptrt.Interface, iid="0c013a81-6c9d-4c14-8c8e-6a6837780cfc"):
    def make(self, n: int, distinct: bool) -> list[IInc]:
        raise NotImplementedError


class Factory(IFactory):
    def __init__(self) -> None:
        self._one = Inc()

    def make(self, n: int, distinct: bool) -> list[IInc]:
        if distinct:
            return [Inc() for _ in range(n)]
        return [self._one] * n


#: what the caller STA keeps alive while the figures are read
_held: list[Any] = []


def rss() -> int | None:
    """The resident set size of this process in bytes (Linux), else None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _settle() -> None:
    time.sleep(0.05)
    gc.collect()


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def _receive(factory: Any, n: int, distinct: bool) -> dict[str, float | None]:
    """In the caller STA: receive *n* proxies in one call and keep them; what they cost."""
    r0 = rss()
    tracemalloc.start()
    try:
        t0 = _traced()
        proxies = await factory.make(n, distinct)
        t1 = _traced()
    finally:
        tracemalloc.stop()
    _settle()
    r1 = rss()
    if len(proxies) != n or not isinstance(proxies[0], aptrt.Proxy):
        raise RuntimeError(f"expected {n} proxies, got {len(proxies)} of {type(proxies[0]).__name__}")
    _held.append(proxies)
    return {"traced": (t1 - t0) / n, "rss": None if r0 is None or r1 is None else (r1 - r0) / n}


async def _proxies(target: aptrt.STA, n: int) -> dict[str, float | None]:
    factory: Any = await target.create(Factory)
    await _receive(factory, 16, True)  # warm-up: lazily built proxy classes, tables
    _held.clear()
    distinct = await _receive(factory, n, True)
    shared = await _receive(factory, n, False)
    tracemalloc.start()
    try:
        t0 = _traced()
        objects = [Inc() for _ in range(n)]
        t1 = _traced()
    finally:
        tracemalloc.stop()
    del objects
    per_object = (t1 - t0) / n
    gross = distinct["traced"]
    return {
        "proxy_traced": gross,
        "proxy_rss": distinct["rss"],
        "proxy_net_traced": None if gross is None else gross - per_object,
        "proxy_shared_traced": shared["traced"],
        "object_traced": per_object,
    }


def measure(stas: int, proxies: int) -> dict[str, Any]:
    result: dict[str, Any] = {"stas": stas, "proxies": proxies}
    with aptrt.Runtime() as rt:
        caller = rt.start_sta_blocking("caller")
        target = rt.start_sta_blocking("target")
        _settle()

        r0 = rss()
        idle = [rt.start_sta_blocking(f"idle-{i}") for i in range(stas)]
        _settle()
        r1 = rss()
        result["sta_rss"] = None if r0 is None or r1 is None else (r1 - r0) / stas

        tracemalloc.start()
        try:
            t0 = _traced()
            idle += [rt.start_sta_blocking(f"traced-{i}") for i in range(stas)]
            _settle()
            t1 = _traced()
        finally:
            tracemalloc.stop()
        result["sta_traced"] = (t1 - t0) / stas
        result["threads"] = len(idle) + 2

        async def job() -> dict[str, float | None]:
            return aptrt.by_reference(await _proxies(target, proxies))

        result.update(caller.run_blocking(job))
        _held.clear()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._memory", description=__doc__)
    parser.add_argument("--stas", type=int, default=20)
    parser.add_argument("--proxies", type=int, default=10_000)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.stas, args.proxies)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
