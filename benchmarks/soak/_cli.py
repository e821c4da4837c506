"""The command line: the options, and a watchdog around the run."""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from ._config import Config
from ._run import run


def _watchdog(seconds: float) -> threading.Timer:
    """A last resort if the runtime itself hangs: print every thread's stack and exit with status 3."""

    def fire() -> None:
        print(
            f"soak: still running {seconds:.0f} s after it started: a hang; the threads:", file=sys.stderr, flush=True
        )
        faulthandler.dump_traceback(all_threads=True)
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.name = "soak-watchdog"
    timer.daemon = True
    timer.start()
    return timer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="A bounded soak: mixed cross-apartment load (sync, async, raising, cancelled, proxy-passing calls; "
        "contexts disconnected and replaced), every call accounted for; RSS and its slope, exports back to 0.",
    )
    duration = parser.add_mutually_exclusive_group()
    duration.add_argument("--minutes", type=float, help="run this long (default 1)")
    duration.add_argument("--seconds", type=float, help="run this long, for short runs")
    parser.add_argument("--apartments", type=int, default=16, help="apartments in all, with the main STA and the MTA")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--callers", type=int, default=4, help="caller tasks per caller apartment (default 4)")
    parser.add_argument("--call-bound", type=float, default=10.0, help="seconds after which a call counts as lost")
    parser.add_argument("--json", metavar="PATH", type=Path, help="save the report as JSON")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else 60.0 * (args.minutes if args.minutes is not None else 1.0)
    if seconds <= 0 or args.apartments < 4 or args.callers < 1 or args.call_bound <= 0:
        parser.error("needs a positive duration, at least 4 apartments, 1 caller and a positive call bound")
    cfg = Config(seconds, args.apartments, args.seed, args.callers, args.call_bound, json_path=args.json)
    timer = _watchdog(seconds + 4 * cfg.call_bound + 120)
    try:
        return int(run(cfg)["status"])
    finally:
        timer.cancel()
        timer.join()
