"""``python -m benchmarks``: see ``--help``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._harness import PLACEMENTS
from ._runner import DEFAULT_JSON, MECHANISMS, SCENARIOS, available, run
from ._targets import REFERENCE


def _inflight(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("calls in flight must be positive integers")
    return values


def _patterns(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [p.strip() for p in text.split(",") if p.strip()] or None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Cross-apartment call latency and throughput: aptrt next to asyncio, anyio, trio, queues, actors; "
        "and aptrt's own scenarios (marshaling, contexts, observability, fan-in/out, MTA scaling, memory, start-up, "
        "remote calls through Ray).",
    )
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (finishes in under a minute)")
    parser.add_argument(
        "--json",
        metavar="PATH",
        default=str(DEFAULT_JSON),
        help="where to save the result (default: %(default)s)",
    )
    parser.add_argument("--no-json", action="store_true", help="do not save the result (nor the plot)")
    parser.add_argument("--no-plot", action="store_true", help="do not write the plot (.svg/.png) next to the JSON")
    parser.add_argument("--reps", type=int, metavar="N", help="interleaved repetitions (default: 3)")
    parser.add_argument(
        "--only",
        metavar="KEYS",
        help=f"comma-separated glob patterns on mechanism keys, e.g. 'aptrt/*,4a,6a' ({REFERENCE} always runs)",
    )
    parser.add_argument(
        "--scenarios",
        metavar="KEYS",
        help="comma-separated glob patterns on scenario keys, e.g. 'marshal,context', or 'all' / 'none'. "
        "--only without --scenarios runs no scenario; --scenarios without --only runs no mechanism",
    )
    parser.add_argument(
        "--all", action="store_true", help="run every mechanism and scenario, not only the default sets"
    )
    parser.add_argument("--inflight", type=_inflight, metavar="N,N", help="throughput points (default: 1,64,1024)")
    parser.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default="split",
        help="split: callers and callees pinned to different CPUs (default); same: all on one CPU; "
        "auto: not pinned (the scheduler co-locates some runs and not others: noisy)",
    )
    parser.add_argument("--list", action="store_true", help="list the mechanisms and exit")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target fails")
    args = parser.parse_args(argv)

    if args.list:
        print("mechanisms (--only):")
        for cls in MECHANISMS:
            note = available(cls)
            flags = ("" if cls.default else " (--all)") + (f" (unavailable: {note})" if note else "")
            print(f"  {cls.key:<14} {cls.label}{flags}")
        print("scenarios (--scenarios):")
        for sc in SCENARIOS:
            note = available(sc)
            flags = ("" if sc.default else " (--all)") + (f" (unavailable: {note})" if note else "")
            print(f"  {sc.key:<14} {sc.title}{flags}")
        return 0
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be at least 1")

    try:
        result = run(
            args.quick,
            None if args.no_json else args.json,
            reps=args.reps,
            only=_patterns(args.only),
            scenarios=_patterns(args.scenarios),
            everything=args.all,
            plot=not args.no_plot,
            inflight=args.inflight,
            placement=args.placement,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.strict and any(check["status"] == "FAIL" for check in result["targets"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
