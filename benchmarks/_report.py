"""Rendering a result: the text table, the target checks, the JSON file."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    return f"{value / 1e3:.1f}k"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def table(result: dict[str, Any]) -> str:
    """The comparison table (markdown, aligned)."""
    reference = result["reference"]
    inflight: Sequence[int] = result["config"]["inflight"]
    header = ["key", "mechanism", "lat med µs", "lat p99 µs", "lat ×ref"]
    align = ["<", "<", ">", ">", ">"]
    for w in inflight:
        header.append(f"tput@{w} /s")
        align.append(">")
        if w != 1:
            header.append(f"@{w} ×ref")
            align.append(">")
    rows = []
    for row in result["mechanisms"]:
        if not row["ok_reps"]:
            rows.append([row["key"], f"{row['label']} ({'; '.join(row['errors'])})"] + [""] * (len(header) - 2))
            continue
        ratios = row["vs_reference"]
        cells = [
            row["key"],
            row["label"],
            _us(row["latency_us"]["median"]),
            _us(row["latency_us"]["p99"]),
            _ratio(ratios["latency_median"]),
        ]
        for w in inflight:
            cells.append(_rate(row["throughput_per_s"].get(str(w))))
            if w != 1:
                cells.append(_ratio(ratios.get(f"throughput@{w}")))
        rows.append(cells)
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths, strict=True)) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if a == ">" else ("-" * (w + 2)) for a, w in zip(align, widths, strict=True))
        + "|"
    )
    notes = [
        (
            f"×ref: the mechanism's figure divided by {reference}'s from the same rep, median over reps "
            "(latency ×ref > 1: slower than aptrt; throughput ×ref < 1: less throughput than aptrt)."
        ),
        (
            "Latency: one call in flight, each timed; throughput: calls/s with N calls in flight. "
            f"Medians of {result['config']['reps']} interleaved reps. Placement: {_placement(result['placement'])}."
        ),
    ]
    return "\n".join([line(header), rule, *(line(r) for r in rows), "", *notes])


def targets(result: dict[str, Any]) -> str:
    lines = []
    for check in result["targets"]:
        unit_fmt = _rate if check["metric"].startswith("throughput") else (lambda v: f"{_us(v)} µs")
        unit = "/s" if check["metric"].startswith("throughput") else ""
        if check["status"] == "SKIP":
            detail = f"needs {check['numerator']} and {check['denominator']}"
        else:
            detail = (
                f"{check['numerator']} {unit_fmt(check['numerator_value'])}{unit} vs "
                f"{check['denominator']} {unit_fmt(check['denominator_value'])}{unit}: "
                f"ratio {check['ratio']:.2f}× (target {check['op']} {check['threshold']:g}×)"
            )
        lines.append(f"TARGET {check['status']}  {check['description']}\n    {detail}")
    return "\n".join(lines)


def save_json(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _placement(where: dict[str, Any]) -> str:
    mode = where["mode"]
    if mode == "split":
        return f"split (callers on CPU {where['caller']}, callees on CPU {where['callee']})"
    if mode == "same":
        return f"same (every thread on CPU {where['caller']})"
    return "auto (not pinned: the scheduler places threads)"
