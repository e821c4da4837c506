"""The ``aptrt`` command line (also ``python -m aptrt``).

``aptrt`` alone runs ``aptrt demo ball``. The subcommands:

* ``aptrt demo ball``: the FRESERVE/FRECLIEN ball, live in the terminal (see ``aptrt demo ball --help``)
* ``aptrt demo apartments``: two STAs and the MTA calling each other
* ``aptrt bench``: the benchmark suite (from a source checkout), with ``python -m benchmarks``'s options
* ``aptrt info``: versions, registered classes, and the apartments of a fresh runtime
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

EXIT_INTERRUPTED = 130


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _positive_float(text: str) -> float:
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _seconds(text: str) -> float:
    value = _float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 (until Ctrl-C) or more, not {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
    return value


def _add_ball_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds", type=_seconds, default=5.0, metavar="S", help="how long to run; 0: until Ctrl-C (default: 5)"
    )
    parser.add_argument("--frames", type=_count, metavar="N", help="stop after painting N frames")
    parser.add_argument("--movers", type=_count, default=4, metavar="N", help="how many movers (default: 4)")
    parser.add_argument(
        "--mta", type=_count, metavar="N", help="movers that are MTA threads (default: half of --movers, rounded up)"
    )
    parser.add_argument("--sta", type=_count, metavar="N", help="movers that are STAs (default: the rest)")
    parser.add_argument(
        "--backend",
        choices=("mixed", "asyncio", "uvloop", "trio"),
        default="mixed",
        help="the STAs' event loop; mixed alternates asyncio and trio (and uvloop when installed), "
        "with the painter on asyncio (default: mixed)",
    )
    parser.add_argument(
        "--agile",
        action="store_true",
        help="use the free-threaded ball (aptrt.Agile): STA movers call it on their own threads, "
        "so each shows in its own color",
    )
    parser.add_argument("--fps", type=_positive_float, default=30.0, help="frames per second (default: 30)")
    parser.add_argument(
        "--rate", type=_positive_float, default=30.0, help="moves per second of each mover (default: 30)"
    )
    parser.add_argument("--save", metavar="PATH", help="save a picture of the path (.svg or .png)")
    parser.add_argument("--headless", action="store_true", help="no live display: print the last frame as text")
    parser.add_argument("--cols", type=_count, metavar="N", help="canvas width in cells (default: fit the terminal)")
    parser.add_argument("--rows", type=_count, metavar="N", help="canvas height in cells (default: fit the terminal)")


def mover_mix(movers: int, mta: int | None, sta: int | None) -> tuple[int, int]:
    """How many MTA and STA movers ``--movers``/``--mta``/``--sta`` ask for."""
    if mta is None and sta is None:
        mta = (movers + 1) // 2
        return mta, movers - mta
    if mta is None:
        assert sta is not None
        return max(0, movers - sta), sta
    if sta is None:
        return mta, max(0, movers - mta)
    return mta, sta


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aptrt", description="COM's apartment model for async Python")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="{demo,bench,info}")
    demo = sub.add_parser("demo", help="the showcase: a ball moved by threads in many apartments (default)")
    demos = demo.add_subparsers(dest="demo", metavar="{ball,apartments}")
    ball = demos.add_parser(
        "ball",
        help="FRESERVE/FRECLIEN: MTA threads and STAs move one ball while a painter draws it (default)",
        description="Movers in the MTA and in asyncio/trio STAs move one free-threaded ball (DllBall, "
        "ThreadingModel=Both) while the main STA paints it, colored by the thread that moved it last. "
        "The painter kills the ball at the end; every mover sees E_FAIL and stops.",
    )
    _add_ball_options(ball)
    demos.add_parser("apartments", help="two STAs (asyncio, trio) and the MTA calling each other")
    sub.add_parser(
        "bench",
        add_help=False,  # every argument, --help included, goes to the benchmarks' own command line
        help="run the benchmark suite (needs the source checkout); see aptrt bench --help",
    )
    sub.add_parser("info", help="versions, registered classes and the apartments of a fresh runtime")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.version:
        from . import __version__

        print(f"aptrt {__version__}")
        return 0
    try:
        if args.command is None or (args.command == "demo" and args.demo in (None, "ball")):
            if args.command is None or args.demo is None:
                args = parser.parse_args(["demo", "ball"])
            return _demo_ball(parser, args)
        if args.command == "demo":
            from ._demo import main as apartments_main

            apartments_main()
            return 0
        if args.command == "info":
            return _info()
        if args.command == "bench":
            return _bench(extra)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 2


def _demo_ball(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import aptrt

    from ._demo import run_ball
    from .samples.ball import DemoConfig

    mta, sta = mover_mix(args.movers, args.mta, args.sta)
    try:
        config = DemoConfig(
            seconds=args.seconds or None,
            frames=args.frames or None,
            mta_movers=mta,
            sta_movers=sta,
            backend=args.backend,
            agile=args.agile,
            fps=args.fps,
            rate=args.rate,
        )
        result = run_ball(
            config,
            headless=True if args.headless else None,
            save=args.save,
            cols=args.cols or None,
            rows=args.rows or None,
        )
    except (ValueError, aptrt.NotSupportedError) as exc:
        parser.error(str(exc))
    return EXIT_INTERRUPTED if result.interrupted else 0


def _bench(argv: list[str]) -> int:
    """``aptrt bench ARGS``: ``python -m benchmarks ARGS``, from the source checkout."""
    try:
        from benchmarks.__main__ import main as bench_main  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print("aptrt bench needs the benchmarks package of the source checkout (run it from there)")
        return 2
    status: int = bench_main(argv)
    return status


def _info() -> int:
    from importlib.metadata import PackageNotFoundError, version

    import aptrt
    import aptrt.samples.ball  # registers DllBall

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    print(f"aptrt {aptrt.__version__} on Python {platform.python_version()} ({sys.platform})")
    print(
        f"anyio {installed('anyio')}, trio {installed('trio')}, uvloop {installed('uvloop')}, rich {installed('rich')}"
    )
    print("registered classes:")
    for registration in sorted(aptrt.registry.registrations(), key=lambda r: str(r.progid or r.clsid)):
        progid = registration.progid or "-"
        print(f"  {{{registration.clsid}}} {progid:<24} ThreadingModel={registration.threading_model.value}")
    backends = ["asyncio", "trio"] + (["uvloop"] if installed("uvloop") != "not installed" else [])
    print("apartments of a fresh runtime, with an STA per backend:")
    with aptrt.Runtime() as rt:
        stas = [rt.start_sta_blocking(f"info-{backend}", backend=backend) for backend in backends]
        try:
            for apartment in rt.apartments:
                where = ""
                if isinstance(apartment, aptrt.STA):
                    thread = apartment.thread.name if apartment.thread is not None else "?"
                    where = f" {apartment.backend} on {thread}"
                elif isinstance(apartment, aptrt.MTA):
                    where = f" up to {apartment.max_workers} worker threads, {apartment.workers} running"
                print(f"  {apartment.kind.name:<8} {apartment.name!r}{where}")
        finally:
            for sta in stas:
                sta.close_blocking()
    return 0


if __name__ == "__main__":
    sys.exit(main())
