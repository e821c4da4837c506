"""Terminal frames of the ball: a canvas of half-block characters, a border, and a status line.

:func:`render_frame` turns a :class:`Snapshot` into a :class:`rich.text.Text`. A live terminal shows
it in color. Its ``.plain`` (:func:`frame_text`) is the same frame as bare text, which is what the
headless demo and the tests look at. Each character cell holds two square-ish pixels, the top one
drawn in the foreground color and the bottom one in the background color (``▀``, ``▄``, ``█``).
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from ._client import Snapshot
from ._server import COLORREF, hex_of

#: the size of the canvas inside the border, in character cells, when the caller does not say
DEFAULT_COLS = 64
DEFAULT_ROWS = 16

_UPPER, _LOWER, _FULL = "▀", "▄", "█"


def _style(color: COLORREF) -> str:
    return hex_of(color)


def _canvas(snapshot: Snapshot, cols: int, rows: int) -> list[list[COLORREF | None]]:
    """Pixels (``rows * 2`` by ``cols``): the trail, then the ball on top."""
    width, height = cols, rows * 2
    pixels: list[list[COLORREF | None]] = [[None] * width for _ in range(height)]
    rect = snapshot.rect
    sx = width / rect.width
    sy = height / rect.height
    for point in snapshot.trail[:-1]:
        px = min(width - 1, max(0, int((point.x - rect.left) * sx)))
        py = min(height - 1, max(0, int((point.y - rect.top) * sy)))
        pixels[py][px] = point.color
    ball = snapshot.ball
    cx, cy = ball.center
    rx, ry = ball.extent[0] / 2, ball.extent[1] / 2
    x0 = max(0, int((cx - rx - rect.left) * sx))
    x1 = min(width - 1, int((cx + rx - rect.left) * sx))
    y0 = max(0, int((cy - ry - rect.top) * sy))
    y1 = min(height - 1, int((cy + ry - rect.top) * sy))
    drawn = False
    for py in range(y0, y1 + 1):
        wy = rect.top + (py + 0.5) / sy
        for px in range(x0, x1 + 1):
            wx = rect.left + (px + 0.5) / sx
            if ((wx - cx) / rx) ** 2 + ((wy - cy) / ry) ** 2 <= 1.0:
                pixels[py][px] = ball.color
                drawn = True
    if not drawn:  # a ball smaller than a pixel still shows
        px = min(width - 1, max(0, int((cx - rect.left) * sx)))
        py = min(height - 1, max(0, int((cy - rect.top) * sy)))
        pixels[py][px] = ball.color
    return pixels


def _cell(top: COLORREF | None, bottom: COLORREF | None) -> tuple[str, str]:
    if top is None:
        return (" ", "") if bottom is None else (_LOWER, _style(bottom))
    if bottom is None:
        return _UPPER, _style(top)
    if top == bottom:
        return _FULL, _style(top)
    return _UPPER, f"{_style(top)} on {_style(bottom)}"


def render_frame(snapshot: Snapshot, *, cols: int = DEFAULT_COLS, rows: int = DEFAULT_ROWS) -> Text:
    """One frame: the ball (and its recent trail) in a box of ``cols`` x ``rows`` cells, then the status.

    The status shows each thread that moved the ball, in its color, with its moves per second. It also
    shows the open apartments, the calls in flight, and the time.
    """
    if cols < 4 or rows < 2:
        raise ValueError(f"a frame needs at least 4 x 2 cells, not {cols} x {rows}")
    pixels = _canvas(snapshot, cols, rows)
    text = Text(no_wrap=False, end="")
    title = " DllBall " if snapshot.alive else " DllBall (dead) "
    dim = Style(dim=True)
    top = "┌" + title + "─" * max(0, cols - len(title)) + "┐"
    text.append(top[: cols + 2] + "\n", dim)
    for row in range(rows):
        text.append("│", dim)
        run_chars: list[str] = []
        run_style = ""
        upper, lower = pixels[2 * row], pixels[2 * row + 1]
        for col in range(cols):
            char, style = _cell(upper[col], lower[col])
            if style != run_style and run_chars:
                text.append("".join(run_chars), run_style or None)
                run_chars = []
            run_style = style
            run_chars.append(char)
        if run_chars:
            text.append("".join(run_chars), run_style or None)
        text.append("│\n", dim)
    text.append("└" + "─" * cols + "┘\n", dim)
    text.append_text(status_line(snapshot))
    return text


def status_line(snapshot: Snapshot) -> Text:
    """The lines under the canvas: threads with their colors and rates, then apartments and calls."""
    text = Text(end="")
    for entry in snapshot.threads:
        rate = snapshot.rates.get(entry.thread_id, 0.0)
        text.append(" ●", _style(entry.color))
        text.append(f" {entry.name} {rate:.0f}/s ")
    text.append("\n")
    movers = snapshot.movers
    moves = sum(m.moves for m in movers)
    text.append(
        f" {len(movers)} movers, {moves} moves │ apartments: {' '.join(snapshot.apartments)} │ "
        f"calls in flight: {snapshot.calls_in_flight} │ {snapshot.elapsed:5.1f} s\n",
        Style(dim=True),
    )
    return text


def frame_text(snapshot: Snapshot, *, cols: int = DEFAULT_COLS, rows: int = DEFAULT_ROWS) -> str:
    """:func:`render_frame` as plain text, with no colors and no terminal needed."""
    return render_frame(snapshot, cols=cols, rows=rows).plain
