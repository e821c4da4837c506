"""The ``aptrt`` command line (also ``python -m aptrt``)."""

from __future__ import annotations

import argparse
import platform
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aptrt", description="COM's apartment model for async Python")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("demo", help="two STAs (asyncio, trio) and the MTA calling each other")
    sub.add_parser("info", help="versions and the apartments of a fresh runtime")
    bench = sub.add_parser("bench", help="run the benchmark suite (needs the source checkout)")
    bench.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args(argv)

    if args.command in (None, "demo"):
        from ._demo import main as demo_main

        demo_main()
        return 0
    if args.command == "info":
        return _info()
    if args.command == "bench":
        try:
            from benchmarks import run  # type: ignore[attr-defined,unused-ignore]
        except ImportError:
            print("aptrt bench needs the benchmarks package of the source checkout (run it from there)")
            return 2
        run(quick=args.quick, json_path=None)
        return 0
    return 2


def _info() -> int:
    from importlib.metadata import version

    import aptrt

    print(f"aptrt {aptrt.__version__} on Python {platform.python_version()} ({sys.platform})")
    print(f"anyio {version('anyio')}, trio {version('trio')}")
    try:
        import uvloop  # noqa: F401

        print(f"uvloop {version('uvloop')}")
    except ImportError:
        print("uvloop not installed (pip install 'aptrt[uvloop]')")
    with aptrt.Runtime() as rt:
        sta = rt.start_sta_blocking("info")
        for apartment in rt.apartments:
            print(f"  {apartment!r}: {apartment.statistics()}")
        sta.close_blocking()
    return 0


if __name__ == "__main__":
    sys.exit(main())
