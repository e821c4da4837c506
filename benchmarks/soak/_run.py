"""The run: the runtime opened, the load, the churn and the reporter started, everything released, the
runtime closed and the report saved."""

from __future__ import annotations

import gc
import itertools
import json
import os
import random
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio

import aptrt

from ._apartments import apartment_stats, open_apartments
from ._callers import caller
from ._churn import Churner, Slot
from ._config import Config
from ._ledger import Ledger
from ._objects import Directory
from ._report import build_report, list_failures, summary
from ._reporter import Reporter


async def _soak(cfg: Config, say: Callable[[str], None]) -> dict[str, Any]:
    """The run itself, inside one runtime; returns the report (without the closing figures)."""
    ledger = Ledger(cfg.call_bound)
    stop = threading.Event()
    rng = random.Random(cfg.seed)
    report: dict[str, Any] = {}
    async with aptrt.Runtime() as rt:
        layout = await open_apartments(rt, cfg)
        directory = await layout.directory_sta.create(Directory)
        slots = [Slot(i, apartment) for i, apartment in enumerate(layout.services)]
        churner = Churner(ledger, directory, slots, random.Random(rng.random()))
        for slot in slots:  # every slot has a service before the first caller looks
            await churner.replace(slot)
        reporter = Reporter(cfg, ledger, churner, rt, say)
        say(
            f"soak: {cfg.seconds:g} s, {cfg.apartments} apartments, {len(layout.callers) * cfg.callers} callers in "
            f"{len(layout.callers)} apartments, {len(slots)} services, seed {cfg.seed}, call bound {cfg.call_bound:g} s"
        )
        for name, backend in layout.backends.items():
            say(f"  {name}: {backend}")

        callers_done = anyio.Event()
        callers_scope = anyio.CancelScope()

        async def run_callers() -> None:
            with callers_scope:
                async with anyio.create_task_group() as tg:
                    seeds = itertools.count(cfg.seed * 1000)
                    for apartment in layout.callers:
                        for _ in range(cfg.callers):
                            if apartment is rt.main_sta:
                                tg.start_soon(caller, directory, ledger, next(seeds), stop)
                            else:
                                tg.start_soon(apartment.run, caller, directory, ledger, next(seeds), stop)
            callers_done.set()

        load_started = time.monotonic()
        drained = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_callers)
            tg.start_soon(churner.run, cfg.churn_every, stop)
            tg.start_soon(reporter.run, stop)
            await anyio.sleep(cfg.seconds)
            stop.set()
            # every caller ends its session; a call with no outcome gives up at its bound
            with anyio.move_on_after(cfg.call_bound * 2 + 5):
                await callers_done.wait()
            if not callers_done.is_set():
                drained = False
                callers_scope.cancel()  # their in-flight calls stay unsettled: lost
        load_seconds = time.monotonic() - load_started
        reporter.sample()
        reporter.report_line()

        # release everything, then every apartment's export count must be back to 0
        await ledger.call("clear", directory.clear)
        directory.release()
        exported = await _exported_after_release(rt)
        for slot in slots:
            if slot.context is not None:
                await churner.disconnect(slot.context)
        stats = apartment_stats(rt)
        report = build_report(cfg, ledger, churner, reporter, layout, load_seconds, drained, exported, stats)
    return report


async def _exported_after_release(rt: aptrt.Runtime, patience: float = 5.0) -> dict[str, int]:
    """Each apartment's exported objects once released proxies are given back (gc, then statistics()
    flushes the releases garbage collection queued). Waits up to *patience* for them to reach 0."""
    deadline = time.monotonic() + patience
    while True:
        gc.collect()
        exported = {name: s.exported for name, s in apartment_stats(rt).items()}
        if not any(exported.values()) or time.monotonic() > deadline:
            return exported
        await anyio.sleep(0.05)  # a condition polled with a bound, not an ordering


def _aptrt_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("aptrt-") and t.is_alive())


def _print(line: str) -> None:
    print(line, flush=True)  # flushed: the periodic lines show progress when the output goes to a file


def run(cfg: Config, say: Callable[[str], None] = _print) -> dict[str, Any]:
    """Run the soak (in a new asyncio loop on this thread), print the report, save it as JSON when
    ``cfg.json_path`` is set, and return it; ``report["status"]`` is the exit status."""
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    load0 = os.getloadavg()
    started = time.monotonic()
    report: dict[str, Any] = {}
    error: str | None = None
    try:
        report = anyio.run(_soak, cfg, say)
    except BaseException as exc:  # a crash or a failed close: reported, and the run fails
        if not isinstance(exc, Exception):
            raise
        error = f"{type(exc).__name__}: {exc}"
    closed = time.monotonic()
    leftover = _aptrt_threads()
    while leftover and time.monotonic() - closed < 5.0:
        time.sleep(0.05)  # threads that are still being joined: a bounded wait for a condition
        leftover = _aptrt_threads()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    report["close"] = {"error": error, "threads_left": leftover, "clean": error is None and not leftover}
    report["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "process_cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
        "wall_s": round(time.monotonic() - started, 1),
        "python": sys.version.split()[0],
        "aptrt": aptrt.__version__,
    }
    report["failures"] = list_failures(report)
    report["status"] = 1 if report["failures"] else 0
    for line in summary(report):
        say(line)
    if cfg.json_path is not None:
        cfg.json_path.parent.mkdir(parents=True, exist_ok=True)
        cfg.json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        say(f"saved {cfg.json_path}")
    return report
