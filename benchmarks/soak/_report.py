"""The final report: its figures, the failures that set the exit status, and its text."""

from __future__ import annotations

from typing import Any

import aptrt

from ._apartments import Layout
from ._churn import Churner
from ._config import Config
from ._ledger import LOST, Ledger
from ._reporter import Reporter


def build_report(
    cfg: Config,
    ledger: Ledger,
    churner: Churner,
    reporter: Reporter,
    layout: Layout,
    load_seconds: float,
    drained: bool,
    exported: dict[str, int],
    stats: dict[str, aptrt.ApartmentStatistics],
) -> dict[str, Any]:
    snap = ledger.snapshot()
    issued = snap["issued"]
    accounted = snap["accounted"]
    outcomes: dict[str, dict[str, int]] = {}
    for (kind, outcome), n in sorted(ledger.outcomes.items()):
        outcomes.setdefault(kind, {})[outcome] = n
    return {
        "config": {
            "seconds": cfg.seconds,
            "apartments": cfg.apartments,
            "seed": cfg.seed,
            "callers_per_apartment": cfg.callers,
            "call_bound_s": cfg.call_bound,
            "churn_every_s": cfg.churn_every,
        },
        "apartments": layout.backends,
        "callers": len(layout.callers) * cfg.callers,
        "load_seconds": round(load_seconds, 2),
        "calls": {
            "issued": issued,
            "accounted": accounted,
            "lost": issued - accounted,
            "lost_at_bound": snap["totals"].get(LOST, 0),
            "never_settled": snap["in_flight"],
            "double_settled": ledger.double_settled,
            "unexpected": ledger.unexpected,
            "per_second": round(accounted / load_seconds) if load_seconds else None,
            "callers_drained": drained,
        },
        "outcomes": outcomes,
        "outcome_totals": dict(snap["totals"].most_common()),
        "errors_by_type": dict(ledger.errors.most_common()),
        "unexpected_examples": list(ledger.examples),
        "latency_ms": {
            **ledger.returned.summary_ms(),
            "by_kind": {kind: h.summary_ms() for kind, h in ledger.by_kind.items() if h.n},
        },
        "cancel_overshoot_ms": ledger.overshoot.summary_ms(),
        "contexts": {
            "created": churner.created,
            "disconnected": churner.disconnected,
            "disconnect_retries": churner.retries,
            "stuck": churner.stuck,
            "disconnect_ms": churner.durations.summary_ms(),
        },
        "memory": reporter.memory(),
        "periodic": reporter.lines,
        "exported_at_end": exported,
        "apartment_statistics": {
            name: {
                "completed": s.completed,
                "failed": s.failed,
                "cancelled": s.cancelled,
                "expired": s.expired,
                "rejected": s.rejected,
                "queued": s.queued,
                "running": s.running,
                "exported": s.exported,
            }
            for name, s in stats.items()
        },
    }


def list_failures(report: dict[str, Any]) -> list[str]:
    failures = []
    if not report["close"]["clean"]:
        failures.append(f"the runtime did not close cleanly: {report['close']}")
    calls = report.get("calls")
    if calls is None:
        return failures
    if calls["lost"]:
        failures.append(f"{calls['lost']} call(s) lost")
    if calls["double_settled"]:
        failures.append(f"{calls['double_settled']} call(s) settled twice")
    if calls["unexpected"]:
        failures.append(f"{calls['unexpected']} unexpected outcome(s)")
    if any(report["exported_at_end"].values()):
        failures.append(f"objects still exported after everything was released: {report['exported_at_end']}")
    return failures


def summary(report: dict[str, Any]) -> list[str]:
    """The final report as lines of text."""
    lines = ["", "== soak report =="]
    calls = report.get("calls")
    if calls is not None:
        machine = report["machine"]
        lines.append(
            f"load: {report['load_seconds']:.0f} s, {report['callers']} callers; machine: {machine['cpus']} CPUs, "
            f"load average {machine['loadavg_start'][0]} at start, {machine['loadavg_end'][0]} at end (other work "
            f"shares this machine); this process used {machine['process_cpu_s']} CPU-s in {machine['wall_s']} s"
        )
        lines.append(
            f"calls: issued {calls['issued']:,}, accounted {calls['accounted']:,}, lost {calls['lost']} "
            f"({calls['lost_at_bound']} at the bound, {calls['never_settled']} never settled), "
            f"settled twice {calls['double_settled']}, unexpected {calls['unexpected']}; {calls['per_second']:,} calls/s"
        )
        lines.append("outcomes: " + ", ".join(f"{k} {v:,}" for k, v in report["outcome_totals"].items()))
        lines.append(
            "errors by type (reaching callers): " + ", ".join(f"{k} {v:,}" for k, v in report["errors_by_type"].items())
        )
        lines.append("by kind:")
        for kind, outcomes in report["outcomes"].items():
            lat = report["latency_ms"]["by_kind"].get(kind)
            timing = f"  [p50 {lat['p50']} p99 {lat['p99']} max {lat['max']} ms]" if lat else ""
            lines.append(f"  {kind:8} " + ", ".join(f"{k} {v:,}" for k, v in outcomes.items()) + timing)
        lat = report["latency_ms"]
        lines.append(
            f"latency of returned calls (ok or the callee's error): p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms"
        )
        over = report["cancel_overshoot_ms"]
        lines.append(
            f"cancelled/timed-out calls, past their deadline: p50 {over['p50']} ms, p99 {over['p99']} ms, max {over['max']} ms"
        )
        ctx = report["contexts"]
        dis = ctx["disconnect_ms"]
        lines.append(
            f"contexts: {ctx['created']:,} created, {ctx['disconnected']:,} disconnected ({ctx['disconnect_retries']:,} "
            f"RPC_E_TIMEOUT retries, {ctx['stuck']} stuck); disconnect p50 {dis['p50']} ms, p99 {dis['p99']} ms, "
            f"max {dis['max']} ms"
        )
        mem = report["memory"]
        slope = mem["slope_mib_per_min"]
        lines.append(
            f"memory: RSS {mem['start_mib']:.1f} MiB at start, {mem['after_warmup_mib']} after the {mem['warmup_s']:g} s "
            f"warm-up, {mem['end_mib']:.1f} at end, peak {mem['peak_mib']:.1f}; slope "
            f"{'-' if slope is None else f'{slope:+.3f}'} MiB/min over {mem['slope_samples']} samples"
        )
        lines.append("exported at end: " + ", ".join(f"{k} {v}" for k, v in report["exported_at_end"].items()))
        for example in report["unexpected_examples"]:
            lines.append(f"  unexpected: {example}")
    close = report["close"]
    lines.append(f"runtime closed: {'cleanly' if close['clean'] else close}")
    lines.append("RESULT: " + ("PASS" if not report["failures"] else "FAIL: " + "; ".join(report["failures"])))
    return lines
