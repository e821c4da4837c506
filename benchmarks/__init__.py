"""aptrt's benchmarks: cross-apartment call latency and throughput, next to the peers aptrt replaces.

``python -m benchmarks`` (``--quick`` for a smoke run, ``--help`` for the options) prints a table of every
mechanism with its ratios to aptrt's STA → STA call, then a table per scenario (marshaling, contexts,
observability, fan-in/fan-out, MTA scaling, direct calls, start-up, memory, remote calls through Ray) with
each figure's ratio to its baseline, checks the acceptance targets, and saves the result as JSON (default
``benchmarks/results/latest.json``) with a plot beside it (``latest.svg``). :func:`run` does the same
from Python.

Method (after ``/work/shared/transport-measurements.md``): the callee is ``f(x) = x + 1`` on another
thread; latency is one call in flight, each call timed with ``perf_counter_ns`` (median and p99);
throughput is calls/s with 1, 64 and 1024 calls in flight (async callers run that many tasks, plain-thread
callers a sliding window of futures). Mechanisms are interleaved and the suite repeated; figures are the
median of the reps and ratios are taken within a rep. Absolute µs vary with thread placement on a VM:
quote the ratios.

Adding a scenario: see ``_scenarios.py``. Adding a mechanism: subclass :class:`~benchmarks._harness.SyncMechanism` (the caller is a plain thread)
or :class:`~benchmarks._harness.AsyncMechanism` (the caller is a coroutine on a loop thread) and list it
in ``MECHANISMS`` of ``_peers.py`` (or ``_aptrt.py``).
"""

from __future__ import annotations

from ._runner import DEFAULT_JSON as DEFAULT_JSON
from ._runner import FULL as FULL
from ._runner import MECHANISMS as MECHANISMS
from ._runner import QUICK as QUICK
from ._runner import SCENARIOS as SCENARIOS
from ._runner import Config as Config
from ._runner import run as run
from ._targets import REFERENCE as REFERENCE
from ._targets import TARGETS as TARGETS

__all__ = ["DEFAULT_JSON", "FULL", "MECHANISMS", "QUICK", "REFERENCE", "SCENARIOS", "TARGETS", "Config", "run"]
