"""Memory: this process's RSS, and the slope of RSS over time."""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence


def rss_mib() -> float:
    """This process's resident set now, in MiB (/proc/self/statm; the peak from getrusage elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def slope_per_minute(samples: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope of (seconds, MiB) samples, in MiB per minute (None under 3 samples)."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return cov / var * 60
