"""Durations, in constant memory."""

from __future__ import annotations

import math


class Histogram:
    """Durations in log buckets 2% wide from 1 µs: constant memory however long the run."""

    _BASE = 1e-6
    _STEP = math.log(1.02)
    _SIZE = 1200  # up to 1e-6 * 1.02**1200 s, about 5.5 hours

    def __init__(self) -> None:
        self.counts = [0] * self._SIZE
        self.n = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        index = (
            0 if seconds <= self._BASE else min(self._SIZE - 1, int(math.log(seconds / self._BASE) / self._STEP) + 1)
        )
        self.counts[index] += 1
        self.n += 1
        self.max = max(self.max, seconds)

    def quantile(self, q: float) -> float | None:
        """The *q* quantile in seconds (the upper edge of its bucket: within 2%), None when empty."""
        if not self.n:
            return None
        rank = q * self.n
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return min(self._BASE * math.exp(self._STEP * index), self.max)
        return self.max

    def summary_ms(self) -> dict[str, float | int | None]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1e3, 3)

        return {"n": self.n, "p50": ms(self.quantile(0.5)), "p99": ms(self.quantile(0.99)), "max": ms(self.max)}
