"""The plot of a result: horizontal bar charts of ratios, written as SVG by hand (no dependency), and as
PNG too when matplotlib happens to be importable.

Panels (each bar goes from 1 to the ratio, on a log scale, with a line at 1):

1. sequential latency of each mechanism × the reference's (lower is better);
2. throughput at 64 in flight × the reference's (higher is better);
3. every scenario figure that has a baseline, × its baseline;
4. every target's figure ÷ its bound (PASS in green, FAIL in red).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

COLORS = {
    "aptrt": "#c0392b",
    "floor": "#7f8c8d",
    "peer": "#2e86c1",
    "scenario": "#16a085",
    "PASS": "#27ae60",
    "FAIL": "#c0392b",
    "SKIP": "#95a5a6",
}


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    color: str
    text: str


@dataclass(frozen=True)
class Panel:
    title: str
    bars: list[Bar]


def panels(result: dict[str, Any]) -> list[Panel]:
    reference = result.get("reference", "")
    out = []
    mechanisms = [m for m in result.get("mechanisms", []) if m["ok_reps"]]
    for metric, title in (
        ("latency_median", f"Sequential latency (median) × {reference} (lower is better)"),
        ("throughput@64", f"Throughput at 64 in flight × {reference} (higher is better)"),
    ):
        bars = []
        for m in mechanisms:
            ratio = m["vs_reference"].get(metric)
            if ratio:
                bars.append(Bar(f"{m['key']}  {m['label']}", ratio, COLORS.get(m["family"], "#555"), f"{ratio:.2f}×"))
        if bars:
            out.append(Panel(title, bars))
    bars = []
    for scenario in result.get("scenarios", []):
        for metric in scenario["metrics"]:
            if metric["ratio"]:
                label = f"{scenario['key']}  {metric['label']}"
                bars.append(
                    Bar(label, metric["ratio"], COLORS["scenario"], f"{metric['ratio']:.2f}× {metric['versus']}")
                )
    if bars:
        out.append(Panel("Scenarios: figure × its baseline (same rep)", bars))
    bars = []
    for check in result.get("targets", []):
        if check["value"] is None or not check["threshold"]:
            continue
        share = check["value"] / check["threshold"]
        if share <= 0:
            continue
        op = check["op"].replace("<=", "≤").replace(">=", "≥")
        bars.append(Bar(check["name"], share, COLORS[check["status"]], f"{check['status']} ({op} bound at 1)"))
    if bars:
        out.append(Panel("Targets: figure ÷ its bound (≥ targets pass right of 1, ≤ targets left of it)", bars))
    return out


def _ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for exponent in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0**exponent
            if lo <= value <= hi:
                ticks.append(value)
    return ticks


def svg(result: dict[str, Any]) -> str:
    """The plot as an SVG document."""
    width, label_w, plot_w, row_h = 1100, 430, 480, 17
    x0 = label_w
    items: list[str] = []
    y = 46
    env = result.get("environment", {})
    first, _, second = _caption(result, env).partition("; ")
    items.append(f'<text x="10" y="18" font-size="13" font-weight="bold">{escape(first)}</text>')
    items.append(f'<text x="10" y="34" font-size="11" fill="#444">{escape(second)}</text>')
    for panel in panels(result):
        values = [b.value for b in panel.bars]
        lo = min(min(values), 1.0) / 1.3
        hi = max(max(values), 1.0) * 1.3
        span = math.log(hi) - math.log(lo)

        def x(value: float, lo: float = lo, span: float = span) -> float:
            return x0 + (math.log(value) - math.log(lo)) / span * plot_w

        y += 14
        items.append(f'<text x="10" y="{y}" font-size="12" font-weight="bold">{escape(panel.title)}</text>')
        y += 8
        top = y
        bottom = y + row_h * len(panel.bars)
        for tick in _ticks(lo, hi):
            tx = x(tick)
            items.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{bottom}" stroke="#e5e5e5"/>')
            items.append(
                f'<text x="{tx:.1f}" y="{bottom + 11}" font-size="9" text-anchor="middle" fill="#666">{tick:g}</text>'
            )
        for bar in panel.bars:
            left, right = sorted((x(1.0), x(bar.value)))
            items.append(
                f'<text x="{x0 - 6}" y="{y + row_h - 5}" font-size="10" text-anchor="end">{escape(_clip(bar.label))}</text>'
            )
            items.append(
                f'<rect x="{left:.1f}" y="{y + 2}" width="{max(right - left, 1):.1f}" height="{row_h - 4}" '
                f'fill="{bar.color}"/>'
            )
            items.append(
                f'<text x="{x0 + plot_w + 6}" y="{y + row_h - 5}" font-size="10" fill="#333">{escape(bar.text)}</text>'
            )
            y += row_h
        one = x(1.0)
        items.append(f'<line x1="{one:.1f}" y1="{top}" x2="{one:.1f}" y2="{bottom}" stroke="#000" stroke-width="1"/>')
        y = bottom + 22
    height = y + 10
    body = "\n".join(items)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif">\n'
        f'<rect width="{width}" height="{height}" fill="#fff"/>\n{body}\n</svg>\n'
    )


def _caption(result: dict[str, Any], env: dict[str, Any]) -> str:
    versions = env.get("versions", {})
    kind = "quick" if result.get("quick") else "full"
    return (
        f"aptrt {versions.get('aptrt')} ({env.get('git_revision')}) benchmarks, {kind} run, "
        f"{result.get('config', {}).get('reps')} reps, {env.get('date')}, Python {env.get('python')}, "
        f"{env.get('cpus')} CPUs; ratios within a rep, medians over reps (log scale); placement "
        f"{result.get('placement', {}).get('mode')}; other processes used {result.get('other_processes_cpu_s')} "
        f"CPU-s during the {result.get('elapsed_s')} s run"
    )


def _clip(text: str, limit: int = 78) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def png(result: dict[str, Any], path: Path) -> bool:
    """Write the same panels as PNG with matplotlib; False when matplotlib is not importable."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = panels(result)
    if not drawn:
        return False
    heights = [max(1.5, 0.22 * len(p.bars) + 0.8) for p in drawn]
    fig, axes = plt.subplots(len(drawn), 1, figsize=(12, sum(heights)), gridspec_kw={"height_ratios": heights})
    axes_list: Sequence[Any] = axes if len(drawn) > 1 else [axes]
    for ax, panel in zip(axes_list, drawn, strict=True):
        labels = [_clip(b.label, 70) for b in panel.bars]
        positions = list(range(len(panel.bars)))
        lefts = [min(1.0, b.value) for b in panel.bars]
        widths = [max(1.0, b.value) - min(1.0, b.value) for b in panel.bars]
        ax.barh(positions, widths, left=lefts, color=[b.color for b in panel.bars])
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(positions, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(panel.title, fontsize=9, loc="left")
        for pos, bar in zip(positions, panel.bars, strict=True):
            ax.annotate(
                bar.text, (max(1.0, bar.value), pos), xytext=(4, 0), textcoords="offset points", va="center", fontsize=6
            )
    fig.suptitle(_caption(result, result.get("environment", {})), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def save(result: dict[str, Any], stem: Path) -> list[Path]:
    """Write ``<stem>.svg`` (always) and ``<stem>.png`` (when matplotlib is importable); the paths written."""
    written = []
    path = stem.with_suffix(".svg")
    path.write_text(svg(result), encoding="utf-8")
    written.append(path)
    png_path = stem.with_suffix(".png")
    try:
        if png(result, png_path):
            written.append(png_path)
    except Exception as exc:  # noqa: BLE001 - the PNG is optional: a broken matplotlib must not lose the run
        print(f"warning: no PNG plot: {type(exc).__name__}: {exc}", file=sys.stderr)
    return written
