"""Scenarios about fixed costs: the in-apartment (direct) call, start-up times, memory."""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio.from_thread

import aptrt

from ._aptrt import Inc
from ._harness import BenchError, backend_options, inc
from ._scenarios import Metric, Rig, Scenario, Sizes, rotate

Figures = dict[str, float | None]


# -- the in-apartment call -----------------------------------------------------------------------------------


class PlainInc:
    """The same method on a plain Python class (no aptrt base class)."""

    def inc(self, x: int) -> int:
        return x + 1


class DirectScenario(Scenario):
    """A call that does not cross apartments. Inside an STA, ``await sta.create(Inc)`` of that same STA
    returns the object itself (no proxy), so ``obj.inc(x)`` is a plain method call: compared with the
    same method of a plain Python class, timed in the same loop on the STA's thread. Also
    ``await sta.run_sync(f, x)`` from inside ``sta`` (it runs ``f`` inline)."""

    key = "direct"
    title = "In-apartment (direct) calls against plain Python calls"

    def metrics(self) -> list[Metric]:
        return [
            Metric("plain", "plain object: obj.inc(x)", "ns"),
            Metric("direct", "aptrt object from create() in its own STA: obj.inc(x)", "ns", versus="plain"),
            Metric("function", "plain function: inc(x)", "ns", versus="plain"),
            Metric("run_sync", "await sta.run_sync(inc, x) inside sta", "ns", versus="plain"),
            Metric("is_object", "check: create() in its own STA gave the object, not a proxy", "bool"),
        ]

    def run(self, sizes: Sizes, rep: int) -> Figures:
        with Rig() as rig:
            sta = rig.sta("bench-caller", "caller")
            return rig.run(sta, self._measure, sta, sizes, rep)

    async def _measure(self, sta: aptrt.STA, sizes: Sizes, rep: int) -> Figures:
        obj = await sta.create(Inc)
        plain = PlainInc()
        n = sizes.direct_calls
        out: Figures = {"is_object": float(type(obj) is Inc)}
        targets = {"plain": plain.inc, "direct": obj.inc, "function": inc}
        chunks: dict[str, list[float]] = {name: [] for name in targets}
        clock = time.perf_counter_ns
        for _ in range(5):  # interleaved chunks; the median chunk of each
            for name in rotate(list(targets), rep):
                method = targets[name]
                t0 = clock()
                for i in range(n // 5):
                    method(i)
                chunks[name].append((clock() - t0) / (n // 5))
        for name, values in chunks.items():
            out[name] = statistics.median(values)
        run_sync = sta.run_sync
        m = max(1, n // 20)
        t0 = clock()
        for i in range(m):
            await run_sync(inc, i)
        out["run_sync"] = (clock() - t0) / m
        return out


# -- start-up ------------------------------------------------------------------------------------------------


def _noop() -> None:
    pass


def _median_us(action: Any, times: int) -> float:
    samples = []
    for _ in range(times):
        t0 = time.perf_counter_ns()
        action()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000


def _thread_start_join() -> None:
    thread = threading.Thread(target=_noop)
    thread.start()
    thread.join()


def _runtime_enter_exit() -> None:
    with aptrt.Runtime():
        pass


class StartupScenario(Scenario):
    """How long things take to start and stop: ``with aptrt.Runtime(): pass`` (enter + exit: the MTA and
    its threads start on first use), and an STA (``rt.start_sta_blocking()`` + ``sta.close_blocking()``)
    on each backend, next to the nearest peers: a plain thread (start + join) and an anyio
    ``start_blocking_portal`` (an event loop on a thread, entered and left)."""

    key = "startup"
    title = "Start-up: a runtime, an STA (start + close), against a thread and an anyio portal"

    def _backends(self) -> list[str]:
        return [b for b in ("asyncio", "uvloop", "trio") if importlib.util.find_spec(b) is not None]

    def metrics(self) -> list[Metric]:
        out = [
            Metric("thread", "threading.Thread start + join", "us"),
            Metric("runtime", "with aptrt.Runtime(): pass", "us", versus="thread"),
        ]
        for backend in self._backends():
            out.append(Metric(f"portal/{backend}", f"anyio start_blocking_portal enter + exit, {backend}", "us"))
            out.append(Metric(f"sta/{backend}", f"STA start + close, {backend}", "us", versus=f"portal/{backend}"))
        return out

    def run(self, sizes: Sizes, rep: int) -> Figures:
        times = sizes.trials * 6
        out: Figures = {
            "thread": _median_us(_thread_start_join, times * 4),
            "runtime": _median_us(_runtime_enter_exit, times * 4),
        }
        with aptrt.Runtime() as rt:
            for backend in rotate(self._backends(), rep):
                name, options = backend_options(backend)

                def portal(name: str = name, options: dict[str, Any] = options) -> None:
                    with anyio.from_thread.start_blocking_portal(name, options):
                        pass

                def sta(backend: str = backend) -> None:
                    rt.start_sta_blocking(backend=backend).close_blocking()

                out[f"portal/{backend}"] = _median_us(portal, times)
                out[f"sta/{backend}"] = _median_us(sta, times)
        return out


# -- memory --------------------------------------------------------------------------------------------------


MEMORY_STAS = 20
MEMORY_PROXIES = 10_000


class MemoryScenario(Scenario):
    """Memory per idle STA (20 STAs) and per live proxy (10,000 proxies), in a fresh interpreter
    (``python -m benchmarks._memory``): see that module for the method."""

    key = "memory"
    title = f"Memory: per idle STA ({MEMORY_STAS} STAs), per live proxy ({MEMORY_PROXIES:,} proxies)"
    heavy = True

    def metrics(self) -> list[Metric]:
        return [
            Metric("sta_rss", "idle STA: RSS growth per STA", "bytes"),
            Metric("sta_traced", "idle STA: Python allocations per STA (tracemalloc)", "bytes"),
            Metric("proxy_traced", "live proxy to its own object: proxy + stub + object (tracemalloc)", "bytes"),
            Metric("proxy_net_traced", "… less the object itself: proxy + stub", "bytes"),
            Metric("proxy_rss", "live proxy to its own object: RSS growth per proxy", "bytes"),
            Metric("proxy_shared_traced", "live proxy to one shared object (tracemalloc)", "bytes"),
            Metric("object_traced", "the object alone (a plain Inc() and a list slot)", "bytes"),
        ]

    def run(self, sizes: Sizes, rep: int) -> Figures:
        root = Path(__file__).resolve().parent.parent
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        command = [
            sys.executable,
            "-m",
            "benchmarks._memory",
            "--stas",
            str(MEMORY_STAS),
            "--proxies",
            str(MEMORY_PROXIES),
        ]
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["?"])[-1]
            raise BenchError(f"python -m benchmarks._memory failed ({done.returncode}): {tail}")
        data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return {metric.key: data.get(metric.key) for metric in self.metrics()}


SCENARIOS: tuple[type[Scenario], ...] = (DirectScenario, StartupScenario, MemoryScenario)
