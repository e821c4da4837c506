"""A bounded soak: mixed cross-apartment load for minutes, and every call accounted for.

``python -m benchmarks.soak --minutes 10`` (``--seconds S`` for a short run; ``--help`` for the options) opens a
runtime whose main STA is this program's asyncio loop, starts STAs on asyncio and trio (16 apartments in all
with the main STA and the MTA, by default) and keeps callers busy in the main STA, the MTA and about half the
STAs. Each caller looks up a service in a directory (an object of its own STA), makes a short session of calls
on it and releases it:

* sync and async calls, their results checked;
* raising calls (``ValueError``, ``KeyError``: expected errors, counted by type);
* slow calls (an async sleep, a sync spin polling ``aptrt.check_cancelled``) under an ``anyio.move_on_after``
  or ``fail_after`` deadline shorter than the call: cancelled, or timed out;
* calls passing a proxy to a second service as an argument (the callee calls it in turn);
* calls returning a new object (made in the service's context), called once and released.

Every service lives in a context of its own. A churner in the main STA keeps replacing them: it makes a new
context and a service in it, publishes that in the directory, then disconnects the old context, calling
``ctx.disconnect(timeout)`` again on ``RPCTimeoutError`` until it succeeds (the README's loop). Calls still
reaching the old service fail with ``DisconnectedError``, an expected outcome.

Accounting: every call goes through the :class:`Ledger` and settles in exactly one outcome (ok, an error by
type, cancelled, timeout, disconnected). Each call is also bounded (``--call-bound``): a watcher task beside
each caller cancels a call still unanswered then, which counts as lost, and the caller moves on, so a lost call
cannot hang the run. The bound is not a deadline: apart from the deliberately slow calls, calls carry none, as
most of an app's calls. lost = issued - accounted, and must be 0. An outcome a call of its kind should not have (a wrong result, an
unexpected error) is counted and its first examples are printed.

The report: a line every ~10% of the run (at most 30 s apart), then calls and outcomes, errors by type,
latency percentiles, how far cancelled calls overshot their deadline, the context churn, RSS over time with
its least-squares slope after a warm-up, the objects each apartment still exports once everything is released
(``statistics().exported``, which must be back to 0) and how the runtime closed. Exit status 1 when a call
was lost, an outcome was unexpected, an object stayed exported, or the runtime did not close cleanly.
"""

from __future__ import annotations

from ._cli import main as main
from ._config import Config as Config
from ._histogram import Histogram as Histogram
from ._memory import rss_mib as rss_mib
from ._memory import slope_per_minute as slope_per_minute
from ._report import summary as summary
from ._run import run as run

__all__ = ["Config", "Histogram", "main", "rss_mib", "run", "slope_per_minute", "summary"]
