"""Pictures of the ball's path, colored by the thread that moved it last: SVG by hand, PNG with zlib.

The path is the ball's center as the painter saw it, frame after frame. Each segment takes the color
of the frame it ends on, which is the color of the thread that had moved the ball last at that moment.
A legend lists the threads. In the PNG the legend is color swatches only, because drawing text would
need a font.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
import zlib
from pathlib import Path
from xml.sax.saxutils import escape

from ._client import DemoResult, PathPoint
from ._server import COLORREF, hex_of, rgb_of

MAX_WIDTH = 960
MAX_HEIGHT = 640
MARGIN = 16
LEGEND_ROW = 20
BACKGROUND = (0xFF, 0xFF, 0xFF)
BORDER = (0xBB, 0xBB, 0xBB)
INK = (0x22, 0x22, 0x22)


class _Layout:
    """Where the ball's rectangle goes in the picture, and how big the picture is."""

    def __init__(self, result: DemoResult, legend_rows: int) -> None:
        rect = result.config.rect
        self.rect = rect
        self.scale = min(MAX_WIDTH / rect.width, MAX_HEIGHT / rect.height)
        self.inner_w = max(1, round(rect.width * self.scale))
        self.inner_h = max(1, round(rect.height * self.scale))
        self.width = self.inner_w + 2 * MARGIN
        self.legend_top = self.inner_h + 2 * MARGIN
        self.height = self.legend_top + legend_rows * LEGEND_ROW + (MARGIN if legend_rows else 0)

    def xy(self, x: float, y: float) -> tuple[float, float]:
        return MARGIN + (x - self.rect.left) * self.scale, MARGIN + (y - self.rect.top) * self.scale


def color_runs(path: tuple[PathPoint, ...]) -> list[tuple[COLORREF, list[tuple[float, float]]]]:
    """The path as polylines of one color each; consecutive runs share their joining point."""
    runs: list[tuple[COLORREF, list[tuple[float, float]]]] = []
    for prev, point in itertools.pairwise(path):
        if runs and runs[-1][0] == point.color:
            runs[-1][1].append((point.x, point.y))
        else:
            runs.append((point.color, [(prev.x, prev.y), (point.x, point.y)]))
    return runs


# -- SVG -------------------------------------------------------------------------------------------------


def svg_text(result: DemoResult) -> str:
    """The path as an SVG document (a string)."""
    threads = result.threads
    layout = _Layout(result, len(threads))
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{layout.width}" height="{layout.height}" '
            f'viewBox="0 0 {layout.width} {layout.height}">'
        ),
        "<title>aptrt DllBall: the ball's path, colored by the thread that moved it last</title>",
        f'<rect width="{layout.width}" height="{layout.height}" fill="{_hex(BACKGROUND)}"/>',
        (
            f'<rect x="{MARGIN}" y="{MARGIN}" width="{layout.inner_w}" height="{layout.inner_h}" '
            f'fill="none" stroke="{_hex(BORDER)}"/>'
        ),
        '<g fill="none" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">',
    ]
    for color, points in color_runs(result.path):
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (layout.xy(px, py) for px, py in points))
        out.append(f'<polyline stroke="{hex_of(color)}" points="{coords}"/>')
    out.append("</g>")
    ball = result.ball
    cx, cy = layout.xy(*ball.center)
    radius = ball.extent[0] / 2 * layout.scale
    out.append(
        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius:.1f}" fill="{hex_of(ball.color)}" '
        f'stroke="{_hex(INK)}" stroke-width="1"/>'
    )
    out.append(f'<g font-family="monospace" font-size="13" fill="{_hex(INK)}">')
    for i, entry in enumerate(threads):
        y = layout.legend_top + i * LEGEND_ROW
        out.append(f'<rect x="{MARGIN}" y="{y}" width="14" height="14" fill="{hex_of(entry.color)}"/>')
        label = escape(f"{entry.name}: {entry.moves} moves")
        out.append(f'<text x="{MARGIN + 22}" y="{y + 12}">{label}</text>')
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


# -- PNG -------------------------------------------------------------------------------------------------


class _Canvas:
    """An RGB raster, drawn into with plain Python (a few hundred thousand pixels at most)."""

    def __init__(self, width: int, height: int, background: tuple[int, int, int]) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))

    def dot(self, x: int, y: int, rgb: bytes) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.pixels[i : i + 3] = rgb

    def fill_rect(self, x: int, y: int, w: int, h: int, rgb: bytes) -> None:
        for yy in range(max(0, y), min(self.height, y + h)):
            start = (yy * self.width + max(0, x)) * 3
            end = (yy * self.width + min(self.width, x + w)) * 3
            if end > start:
                self.pixels[start:end] = rgb * ((end - start) // 3)

    def frame(self, x: int, y: int, w: int, h: int, rgb: bytes) -> None:
        self.fill_rect(x, y, w, 1, rgb)
        self.fill_rect(x, y + h - 1, w, 1, rgb)
        self.fill_rect(x, y, 1, h, rgb)
        self.fill_rect(x + w - 1, y, 1, h, rgb)

    def line(self, x0: float, y0: float, x1: float, y1: float, rgb: bytes) -> None:
        """A line two pixels thick: a 2 x 2 stamp at every step of the longer axis."""
        steps = max(1, math.ceil(max(abs(x1 - x0), abs(y1 - y0))))
        for k in range(steps + 1):
            x = round(x0 + (x1 - x0) * k / steps)
            y = round(y0 + (y1 - y0) * k / steps)
            self.dot(x, y, rgb)
            self.dot(x + 1, y, rgb)
            self.dot(x, y + 1, rgb)
            self.dot(x + 1, y + 1, rgb)

    def disk(self, cx: float, cy: float, radius: float, fill: bytes, outline: bytes) -> None:
        r = max(radius, 1.0)
        for y in range(math.floor(cy - r) - 1, math.ceil(cy + r) + 2):
            for x in range(math.floor(cx - r) - 1, math.ceil(cx + r) + 2):
                d = math.hypot(x + 0.5 - cx, y + 0.5 - cy)
                if d <= r - 1:
                    self.dot(x, y, fill)
                elif d <= r:
                    self.dot(x, y, outline)

    def png(self) -> bytes:
        stride = self.width * 3
        raw = b"".join(b"\x00" + bytes(self.pixels[row * stride : (row + 1) * stride]) for row in range(self.height))
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return (
            b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b"")
        )


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _rgb(color: COLORREF) -> bytes:
    return bytes(rgb_of(color))


def png_bytes(result: DemoResult) -> bytes:
    """The path as a PNG image (8-bit RGB), legend as a row of color swatches."""
    threads = result.threads
    layout = _Layout(result, 1 if threads else 0)
    canvas = _Canvas(layout.width, layout.height, BACKGROUND)
    canvas.frame(MARGIN - 1, MARGIN - 1, layout.inner_w + 2, layout.inner_h + 2, bytes(BORDER))
    for color, points in color_runs(result.path):
        rgb = _rgb(color)
        xy = [layout.xy(x, y) for x, y in points]
        for (x0, y0), (x1, y1) in itertools.pairwise(xy):
            canvas.line(x0, y0, x1, y1, rgb)
    ball = result.ball
    cx, cy = layout.xy(*ball.center)
    canvas.disk(cx, cy, ball.extent[0] / 2 * layout.scale, _rgb(ball.color), bytes(INK))
    for i, entry in enumerate(threads):
        x = MARGIN + i * 22
        if x + 16 > layout.width:
            break
        canvas.fill_rect(x, layout.legend_top, 16, 16, bytes(INK))
        canvas.fill_rect(x + 1, layout.legend_top + 1, 14, 14, _rgb(entry.color))
    return canvas.png()


def save_picture(result: DemoResult, path: str | os.PathLike[str]) -> Path:
    """Write the path picture to *path*; its suffix says the format (``.svg`` or ``.png``).

    :raises ValueError: another suffix
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".svg":
        target.write_text(svg_text(result), encoding="utf-8")
    elif suffix == ".png":
        target.write_bytes(png_bytes(result))
    else:
        raise ValueError(f"cannot tell the picture format of {str(target)!r}: use .svg or .png")
    return target
