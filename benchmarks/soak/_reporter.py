"""While the run goes: RSS samples, a progress line every report interval."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import anyio

import aptrt

from ._apartments import apartment_stats
from ._churn import Churner
from ._config import Config
from ._ledger import CANCELLED, DISCONNECTED, LOST, OK, TIMEOUT, Ledger
from ._memory import rss_mib, slope_per_minute


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


class Reporter:
    """Samples RSS, prints a line every report interval, and keeps what the final report needs."""

    def __init__(
        self, cfg: Config, ledger: Ledger, churner: Churner, rt: aptrt.Runtime, say: Callable[[str], None]
    ) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.churner = churner
        self.rt = rt
        self.say = say
        self.every = max(0.25, min(30.0, cfg.seconds / 10))
        self.sample_every = min(1.0, self.every / 4)
        self.warmup = min(60.0, cfg.seconds / 5)
        self.start = time.monotonic()
        self.samples: list[tuple[float, float]] = [(0.0, rss_mib())]
        self.lines: list[dict[str, Any]] = []
        self._last = (self.start, 0)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def sample(self) -> None:
        self.samples.append((round(self.elapsed(), 2), round(rss_mib(), 2)))

    async def run(self, stop: threading.Event) -> None:
        next_report = self.every
        while True:
            await anyio.sleep(self.sample_every)
            if stop.is_set():
                return  # the run prints its last line once the callers are done
            self.sample()
            if self.elapsed() >= next_report:
                next_report += self.every
                self.report_line()

    def report_line(self) -> None:
        snap = self.ledger.snapshot()
        now = time.monotonic()
        last_t, last_n = self._last
        self._last = (now, snap["accounted"])
        rate = (snap["accounted"] - last_n) / max(now - last_t, 1e-9)
        stats = apartment_stats(self.rt)
        exported = sum(s.exported for s in stats.values())
        live_contexts = sum(len(a.contexts()) for a in self.rt.apartments)
        totals = snap["totals"]
        window = snap["window"]
        line = {
            "t": round(self.elapsed(), 1),
            "accounted": snap["accounted"],
            "rate": round(rate),
            "in_flight": snap["in_flight"],
            "overdue": snap["overdue"],
            "lost": totals.get(LOST, 0),
            "unexpected": snap["unexpected"],
            "ok": totals.get(OK, 0),
            "errors": totals.get("ValueError", 0) + totals.get("KeyError", 0),
            "cancelled": totals.get(CANCELLED, 0) + totals.get(TIMEOUT, 0),
            "disconnected": totals.get(DISCONNECTED, 0),
            "p50_ms": window["p50"],
            "p99_ms": window["p99"],
            "max_ms": window["max"],
            "rss_mib": self.samples[-1][1],
            "exported": exported,
            "live_contexts": live_contexts,
            "disconnects": self.churner.disconnected,
            "retries": self.churner.retries,
        }
        self.lines.append(line)
        pct = 100 * line["t"] / self.cfg.seconds
        self.say(
            f"[{line['t']:7.1f} s {pct:3.0f}%] {line['accounted']:>10,} calls ({line['rate']:>6,}/s) "
            f"ok {line['ok']:,} err {line['errors']:,} cancel/timeout {line['cancelled']:,} "
            f"disconn {line['disconnected']:,} | in flight {line['in_flight']} lost {line['lost']} "
            f"unexpected {line['unexpected']} | p50 {_num(line['p50_ms'])} p99 {_num(line['p99_ms'])} "
            f"max {_num(line['max_ms'])} ms "
            f"| rss {line['rss_mib']:.1f} MiB exported {exported} contexts {live_contexts} "
            f"disconnects {line['disconnects']} (retries {line['retries']})"
        )

    def memory(self) -> dict[str, Any]:
        after = [(t, m) for t, m in self.samples if t >= self.warmup]
        slope = slope_per_minute(after)
        return {
            "samples": self.samples,
            "warmup_s": round(self.warmup, 2),
            "slope_mib_per_min": None if slope is None else round(slope, 4),
            "slope_samples": len(after),
            "start_mib": self.samples[0][1],
            "after_warmup_mib": after[0][1] if after else None,
            "end_mib": self.samples[-1][1],
            "peak_mib": max(m for _, m in self.samples),
        }
