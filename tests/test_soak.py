"""The soak (``python -m benchmarks.soak``) in a short run: every call accounted for, nothing left exported,
the runtime closed, and no thread left behind (the autouse leak check)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import soak


def test_short_soak_accounts_for_every_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "soak.json"
    status = soak.main(["--seconds", "3", "--seed", "7", "--json", str(path)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "RESULT: PASS" in out
    report = json.loads(path.read_text(encoding="utf-8"))
    assert report["status"] == 0 and report["failures"] == []

    calls = report["calls"]
    assert calls["issued"] == calls["accounted"] > 1000
    assert calls["lost"] == calls["double_settled"] == calls["unexpected"] == 0
    totals = report["outcome_totals"]
    for outcome in ("ok", "cancelled", "timeout", "ValueError", "KeyError"):
        assert totals.get(outcome, 0) > 0, (outcome, totals)
    assert sum(totals.values()) == calls["accounted"]
    assert {"TimeoutError", "ValueError", "KeyError"} <= set(report["errors_by_type"])

    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert report["contexts"]["disconnected"] > 0 and report["contexts"]["stuck"] == 0
    memory = report["memory"]
    assert len(memory["samples"]) > 3 and memory["slope_mib_per_min"] is not None
    assert report["periodic"], "no periodic report line"
    assert set(report["exported_at_end"]) >= {"main", "MTA", "directory"}
    assert not any(report["exported_at_end"].values())
    assert report["close"] == {"error": None, "threads_left": [], "clean": True}


def test_slope_and_histogram() -> None:
    assert soak.slope_per_minute([(0.0, 10.0), (30.0, 10.5), (60.0, 11.0)]) == pytest.approx(1.0)
    assert soak.slope_per_minute([(0.0, 10.0)]) is None
    histogram = soak.Histogram()
    for ms in range(1, 101):
        histogram.add(ms / 1e3)
    assert histogram.quantile(0.5) == pytest.approx(0.050, rel=0.03)
    assert histogram.quantile(0.99) == pytest.approx(0.099, rel=0.03)
    assert histogram.max == 0.1
