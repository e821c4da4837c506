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


def fmt(value: float | None, unit: str) -> str:
    """*value* in *unit* (see ``_scenarios.UNITS``), for people."""
    if value is None:
        return "-"
    if unit == "us":
        if value >= 100_000:
            return f"{value / 1000:.0f} ms"
        if value >= 1000:
            return f"{value / 1000:.2f} ms"
        return f"{value:.2f} µs" if value < 10 else f"{value:.1f} µs"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "ns":
        return f"{value:.1f} ns"
    if unit == "per_s":
        return f"{_rate(value)}/s"
    if unit == "bytes":
        if abs(value) >= 1024 * 1024:
            return f"{value / (1024 * 1024):.2f} MB"
        if abs(value) >= 1024:
            return f"{value / 1024:.1f} KB"
        return f"{value:.0f} B"
    if unit == "bool":
        return "yes" if value >= 1 else "no"
    if unit == "pct":
        return f"{value:.1f}%"
    return f"{value:.3g}"


def _markdown(header: Sequence[str], align: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths, strict=True)) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if a == ">" else ("-" * (w + 2)) for a, w in zip(align, widths, strict=True))
        + "|"
    )
    return [line(header), rule, *(line(r) for r in rows)]


def scenario_tables(result: dict[str, Any]) -> list[str]:
    """One table per scenario: each figure (median of the reps), and its ratio to its baseline."""
    tables = []
    for scenario in result.get("scenarios", []):
        heading = f"{scenario['key']}: {scenario['title']}"
        if not scenario["ok_reps"]:
            tables.append(f"{heading}\n  ({'; '.join(scenario['errors']) or 'no rep ran'})")
            continue
        header = ["figure", "median", "× baseline", "baseline", "spread"]
        align = ["<", ">", ">", "<", ">"]
        rows = []
        for metric in scenario["metrics"]:
            spread = metric["spread"]
            rows.append(
                [
                    metric["label"],
                    fmt(metric["median"], metric["unit"]),
                    _ratio(metric["ratio"]) if metric["versus"] else "",
                    metric["versus"] or "",
                    f"{spread:.0%}" if spread is not None and metric["unit"] != "bool" else "",
                ]
            )
        notes = [f"  (errors: {'; '.join(scenario['errors'])})"] if scenario["errors"] else []
        reps = f"median of {scenario['ok_reps']} rep{'s' if scenario['ok_reps'] != 1 else ''}"
        tables.append("\n".join([f"{heading} ({reps})", *_markdown(header, align, rows), *notes]))
    if tables:
        tables[-1] += (
            "\n\n× baseline: the figure divided by its baseline figure (the row named in the baseline column, "
            "same scenario) in the same rep, median over reps. Spread: (max − min) / median over the reps."
        )
    return tables


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
    """The TARGET and CHECK lines: status, description, the figures and the bound."""
    lines = []
    best = result.get("best_peer") or []
    for check in result["targets"]:
        unit = check["unit"]
        op = check["op"].replace("<=", "≤").replace(">=", "≥")
        if check["status"] == "SKIP":
            need = check["numerator"] + (f" and {check['denominator']}" if check["denominator"] else "")
            need = need.replace("best-peer", "a peer mechanism")
            detail = f"needs {need} (not run, or failed)"
        elif check["ratio"]:
            denominator = check["denominator"]
            if denominator.startswith("best-peer") and best:
                counts = {key: best.count(key) for key in best}
                top = max(counts, key=lambda key: counts[key])
                denominator = f"best peer ({top} in {counts[top]}/{len(best)} reps)"
            detail = (
                f"{check['numerator']} {fmt(check['numerator_value'], unit)} vs "
                f"{denominator} {fmt(check['denominator_value'], unit)}: "
                f"ratio {check['value']:.2f}× (target {op} {check['threshold']:g}×)"
            )
        else:
            aside = f" ({check['aside']} {fmt(check['aside_value'], unit)})" if check["aside"] else ""
            bound = "yes" if unit == "bool" else f"{op} {fmt(check['threshold'], unit)}"
            detail = f"{check['numerator']} {fmt(check['value'], unit)}{aside} (target {bound})"
        lines.append(f"{check['kind']} {check['status']}  {check['description']}\n    {detail}")
    passed = sum(1 for c in result["targets"] if c["status"] == "PASS")
    failed = sum(1 for c in result["targets"] if c["status"] == "FAIL")
    skipped = sum(1 for c in result["targets"] if c["status"] == "SKIP")
    lines.append(f"\n{passed} passed, {failed} failed, {skipped} skipped")
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
