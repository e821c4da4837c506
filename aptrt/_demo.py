"""The demos behind ``aptrt demo``.

* ``aptrt demo ball`` (the default) runs the FRESERVE/FRECLIEN sample, :mod:`aptrt.samples.ball`,
  live in the terminal: movers in the MTA and in asyncio and trio STAs move one ball, and the main STA
  paints it. It can save a picture of the path.
* ``aptrt demo apartments``: two STAs (asyncio and trio) and the MTA calling each other.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import anyio
from rich.console import Console
from rich.live import Live
from rich.text import Text

import aptrt

from .samples.ball import (
    RECT,
    DemoConfig,
    DemoResult,
    Snapshot,
    frame_text,
    hex_of,
    render_frame,
    run,
    save_picture,
)

# -- aptrt demo ball -------------------------------------------------------------------------------------

#: world units per canvas pixel (a cell is one pixel wide and two pixels tall)
UNITS_PER_PIXEL = 20


def world_for(cols: int, rows: int) -> tuple[RECT, int]:
    """The ball's rectangle and size for a canvas of ``cols`` x ``rows`` cells: square pixels, and a ball
    about a seventh of the shorter side (at least three pixels across)."""
    width, height = cols * UNITS_PER_PIXEL, rows * 2 * UNITS_PER_PIXEL
    size = max(3, min(cols, rows * 2) // 7) * UNITS_PER_PIXEL
    return RECT(0, 0, width, height), min(size, width, height)


def canvas_size(console_width: int, console_height: int) -> tuple[int, int]:
    """The canvas (cells inside the border) that fits a terminal, leaving room for the status lines."""
    cols = max(20, min(console_width - 2, 200))
    rows = max(5, min(console_height - 7, 60))
    return cols, rows


def run_ball(
    config: DemoConfig,
    *,
    headless: bool | None = None,
    save: str | os.PathLike[str] | None = None,
    cols: int | None = None,
    rows: int | None = None,
    console: Console | None = None,
    stop: threading.Event | None = None,
) -> DemoResult:
    """Run the ball demo and report on it.

    In a terminal, it animates live, and Ctrl-C stops it cleanly. Otherwise, or with ``headless=True``,
    it paints without a display and prints the last frame as text. Either way it ends with a summary,
    and it saves the path picture when *save* names a ``.svg`` or ``.png`` file.

    :param config: the demo's settings; its ``rect`` and ``size`` are replaced to fit the canvas
    :param headless: None: live if the console is a terminal
    :param cols: canvas width in cells (default: the terminal's, or 64 headless)
    :param rows: canvas height in cells (default: the terminal's, or 16 headless)
    :param console: a :class:`rich.console.Console` to write to (default: stdout)
    :raises ValueError: *save* has a suffix other than ``.svg`` or ``.png`` (checked before running)
    """
    out = console if console is not None else Console(highlight=False)
    if save is not None and Path(save).suffix.lower() not in (".svg", ".png"):
        raise ValueError(f"cannot tell the picture format of {str(save)!r}: use .svg or .png")
    live = out.is_terminal if headless is None else not headless
    if live:
        fit_cols, fit_rows = canvas_size(out.size.width, out.size.height)
    else:
        fit_cols, fit_rows = 64, 16
    cols, rows = cols or fit_cols, rows or fit_rows
    rect, size = world_for(cols, rows)
    config = replace(config, rect=rect, size=size)

    if live:
        with Live(console=out, auto_refresh=False, redirect_stdout=False, redirect_stderr=False) as display:
            result = run(
                config,
                on_frame=lambda snap: display.update(render_frame(snap, cols=cols, rows=rows), refresh=True),
                stop=stop,
                handle_signals=True,
            )
    else:
        on_main_thread = threading.current_thread() is threading.main_thread()

        def started(snap: Snapshot) -> None:
            if snap.index == 0 and on_main_thread:  # a cue on stderr, for people and for scripts
                sys.stderr.write("aptrt demo ball: painting headless (Ctrl-C stops)\n")
                sys.stderr.flush()

        result = run(config, on_frame=started, stop=stop, handle_signals=on_main_thread)
        if result.last is not None:
            out.print(frame_text(result.last, cols=cols, rows=rows), end="", markup=False)
    _summary(out, result)
    if save is not None:
        target = save_picture(result, save)
        out.print(f"Saved the path to {target}", markup=False)
    return result


def _summary(out: Console, result: DemoResult) -> None:
    how = "interrupted (Ctrl-C)" if result.interrupted else "done"
    out.print(
        f"{how}: the painter killed the ball after {result.elapsed:.1f} s, {result.frames} frames, "
        f"{result.total_moves} moves.",
        markup=False,
    )
    for mover in result.movers:
        ending = ", saw E_FAIL" if mover.saw_dead else ""
        out.print(f"  {mover.name:<8} {mover.kind:<12} {mover.thread:<18} {mover.moves:>6} moves{ending}", markup=False)
    out.print("Threads that moved the ball (the colors of its path):", markup=False)
    for entry in result.threads:
        line = Text("  ")
        line.append("●", hex_of(entry.color))
        line.append(f" {entry.name:<18} {entry.moves:>6} moves")
        out.print(line)
    verdict = "S_OK: no ball alive, no server lock" if result.can_unload_now else "S_FALSE: something still holds it"
    out.print(f"DllCanUnloadNow: {verdict}", markup=False)


# -- aptrt demo apartments -------------------------------------------------------------------------------


class IGreeter(aptrt.Interface, iid="8c2a7c0e-3d0b-4a8e-9f3c-5a1d2b7e6f01"):
    """Says hello, and reports which thread it runs on."""

    def greet(self, who: str) -> str:
        raise NotImplementedError


class ITally(aptrt.Interface, iid="8c2a7c0e-3d0b-4a8e-9f3c-5a1d2b7e6f02"):
    """A free-threaded counter living in the MTA."""

    def add(self, n: int) -> int:
        raise NotImplementedError

    async def relay(self, greeter: aptrt.Proxy[IGreeter], who: str) -> str:
        raise NotImplementedError


class Greeter(IGreeter):
    def __init__(self, apartment: str) -> None:
        self.apartment = apartment

    def greet(self, who: str) -> str:
        return f"{self.apartment} (thread {threading.current_thread().name}) greets {who}"


class Tally(aptrt.Guarded, ITally):
    def __init__(self) -> None:
        self.total = 0

    @aptrt.guarded
    def add(self, n: int) -> int:
        self.total += n
        return self.total

    async def relay(self, greeter: aptrt.Proxy[IGreeter], who: str) -> str:
        # runs on the MTA's loop; `greeter` arrived as a proxy bound to the MTA
        greeting: str = await greeter.greet(f"{who}, relayed by the MTA")
        return greeting


async def demo(out: Callable[[str], None] = print) -> None:
    """Two STAs (asyncio and trio) and the MTA calling each other, narrated through *out*."""
    async with aptrt.Runtime() as rt:
        out(f"main STA: {rt.main_sta!r} on {threading.current_thread().name}")
        async with rt.open_sta("left", backend="asyncio") as left, rt.open_sta("right", backend="trio") as right:
            greeter_left = await left.create(Greeter, "left/asyncio")
            greeter_right = await right.create(Greeter, "right/trio")
            tally = await rt.mta.create(Tally)

            out(await greeter_left.greet("main"))
            out(await greeter_right.greet("main"))

            # STA right calls STA left: the proxy is marshaled into `right` as an argument
            async def from_right(greeter: aptrt.Proxy[IGreeter]) -> str:
                greeting: str = await greeter.greet("right")
                return greeting

            out(await right.run(from_right, greeter_left))

            # the MTA calls back into an STA
            out(await tally.relay(greeter_right, "main"))

            # many concurrent calls from both STAs into the MTA object
            async def hammer(t: aptrt.Proxy[ITally], n: int) -> int:
                last = 0
                for _ in range(n):
                    last = int(await t.add(1))
                return last

            async with anyio.create_task_group() as tg:
                tg.start_soon(left.run, hammer, tally, 500)
                tg.start_soon(right.run, hammer, tally, 500)
            out(f"MTA tally after 1000 calls from two STAs: {await tally.add(0)}")
            for apartment in rt.apartments:
                out(f"  {apartment.statistics()}")


def main(out: Callable[[str], None] = print) -> None:
    """``aptrt demo apartments``."""
    anyio.run(demo, out)
