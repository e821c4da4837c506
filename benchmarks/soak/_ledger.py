"""Accounting: the outcomes a call may settle in, the call bound, and the :class:`Ledger` of every call."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio

import aptrt

from ._histogram import Histogram

OK = "ok"
CANCELLED = "cancelled"  # the caller's move_on_after deadline passed (no exception reaches it)
TIMEOUT = "timeout"  # the caller's fail_after deadline passed (TimeoutError)
DISCONNECTED = "disconnected"  # DisconnectedError: the service's context was disconnected
WRONG = "wrong-result"
LOST = "lost"  # no outcome within the call bound

#: the outcomes each kind of call may have; any other is unexpected (and fails the run)
EXPECTED: dict[str, frozenset[str]] = {
    "lookup": frozenset({OK, DISCONNECTED}),  # directory.pick (the proxy it returns may be disconnecting)
    "sync": frozenset({OK, DISCONNECTED}),  # service.add
    "async": frozenset({OK, DISCONNECTED}),  # service.echo
    "raise": frozenset({"ValueError", "KeyError", DISCONNECTED}),  # service.fail
    "cancel": frozenset({CANCELLED, DISCONNECTED}),  # service.sleep(1) under move_on_after
    "timeout": frozenset({TIMEOUT, DISCONNECTED}),  # service.sleep(1) under fail_after
    "spin": frozenset({CANCELLED, TIMEOUT, DISCONNECTED}),  # sync service.spin under either
    "relay": frozenset({OK, DISCONNECTED}),  # service.relay(proxy to another service)
    "spawn": frozenset({OK, DISCONNECTED}),  # service.spawn() -> a new object
    "spawned": frozenset({OK, DISCONNECTED}),  # a call on that new object
    "create": frozenset({OK}),  # churner: ctx.run_sync(Service)
    "publish": frozenset({OK}),  # churner: directory.publish(proxy)
    "clear": frozenset({OK}),  # teardown: directory.clear()
}
#: the timeouts a caller's own deadline raises (the builtin one from fail_after, or aptrt's subclass)
_DEADLINE_ERRORS = (TimeoutError, aptrt.DeadlineExceededError)
_ANY = object()


def _route(method: Callable[..., Awaitable[Any]]) -> str:
    """'from <caller's apartment> to <callee's apartment>' for a proxy's method (for the examples)."""
    proxy = getattr(method, "__self__", None)
    if not isinstance(proxy, aptrt.Proxy):
        return f"from {aptrt.current_apartment().name}"
    return f"from {proxy.apartment.name} to {proxy.target_apartment.name}"


class Bound:
    """The call bound of one caller task, kept without a deadline (a deadline would travel to the callee,
    and the calls of an app mostly have none): :meth:`watch`, a task beside the caller in its loop, cancels
    the call in progress once it has run longer than *seconds*."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._scope: anyio.CancelScope | None = None
        self._since = 0.0

    @contextmanager
    def guard(self) -> Iterator[anyio.CancelScope]:
        with anyio.CancelScope() as scope:
            self._scope, self._since = scope, time.monotonic()
            try:
                yield scope
            finally:
                self._scope = None

    async def watch(self) -> None:
        while True:
            await anyio.sleep(self.seconds / 4)
            if self._scope is not None and time.monotonic() - self._since > self.seconds:
                self._scope.cancel()


class Ledger:
    """Every call of the run: issued, then settled exactly once. Thread-safe: callers run in many threads."""

    def __init__(self, call_bound: float) -> None:
        self.call_bound = call_bound
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        #: calls issued and not settled yet: token -> (kind, time.monotonic() when issued)
        self.in_flight: dict[int, tuple[str, float]] = {}
        self.issued: Counter[str] = Counter()
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[str] = Counter()  # exceptions that reached a caller, by type
        self.double_settled = 0
        self.returned = Histogram()  # calls that returned a value or raised the callee's error
        self.window = Histogram()  # the same, since the last periodic report
        self.by_kind: dict[str, Histogram] = {kind: Histogram() for kind in EXPECTED}
        self.overshoot = Histogram()  # cancelled and timed-out calls: time past their deadline
        self.unexpected = 0
        self.examples: list[str] = []  # the first unexpected outcomes, described

    # -- the books -------------------------------------------------------------------------------------------

    def _issue(self, kind: str) -> int:
        with self._lock:
            token = next(self._tokens)
            self.issued[kind] += 1
            self.in_flight[token] = (kind, time.monotonic())
        return token

    def _settle(
        self,
        token: int,
        kind: str,
        outcome: str,
        elapsed: float,
        deadline: float | None,
        error: Exception | None,
        method: Callable[..., Awaitable[Any]],
    ) -> None:
        with self._lock:
            if self.in_flight.pop(token, None) is None:
                self.double_settled += 1
                return
            self.outcomes[kind, outcome] += 1
            if error is not None and outcome != WRONG:
                self.errors[type(error).__name__] += 1
            if outcome == OK or outcome in ("ValueError", "KeyError"):
                self.returned.add(elapsed)
                self.window.add(elapsed)
                self.by_kind[kind].add(elapsed)
            elif outcome in (CANCELLED, TIMEOUT) and deadline is not None:
                self.overshoot.add(max(0.0, elapsed - deadline))
            if outcome not in EXPECTED[kind]:
                self.unexpected += 1
                if len(self.examples) < 20:
                    note = "" if error is None else f" ({type(error).__name__}: {error})"
                    self.examples.append(f"{kind} {_route(method)}: {outcome} after {elapsed * 1e3:.1f} ms{note}")

    def note_unexpected(self, what: str, exc: BaseException) -> None:
        """Something other than a call went wrong (a disconnect raising what it should not)."""
        with self._lock:
            self.unexpected += 1
            if len(self.examples) < 20:
                self.examples.append(f"{what}: {type(exc).__name__}: {exc}")

    async def call(
        self,
        kind: str,
        method: Callable[..., Awaitable[Any]],
        *args: Any,
        bound: Bound | None = None,
        cancel_after: float | None = None,
        fail_after: float | None = None,
        want: object = _ANY,
    ) -> tuple[str, Any]:
        """Make one accounted call, ``await method(*args)``, and return (outcome, result).

        The call runs under ``move_on_after(cancel_after)`` or ``fail_after(fail_after)`` when given (that
        deadline travels with it), and always under the call bound: *bound*'s watcher cancels it once it is
        overdue (no deadline travels), or without a *bound* a ``move_on_after(call_bound)`` does.
        """
        token = self._issue(kind)
        start = time.perf_counter()
        outcome: str = LOST
        result: Any = None
        error: Exception | None = None
        with bound.guard() if bound is not None else anyio.move_on_after(self.call_bound):
            try:
                if cancel_after is not None:
                    with anyio.move_on_after(cancel_after) as scope:
                        result = await method(*args)
                    outcome = CANCELLED if scope.cancelled_caught else OK
                elif fail_after is not None:
                    with anyio.fail_after(fail_after):
                        result = await method(*args)
                    outcome = OK
                else:
                    result = await method(*args)
                    outcome = OK
            except aptrt.DisconnectedError as exc:
                error, reason = exc, exc.reason
                outcome = DISCONNECTED if reason is aptrt.DisconnectReason.CONTEXT_DISCONNECTED else reason.name
            except Exception as exc:  # noqa: BLE001 - every other error is an outcome too, expected or not
                error = exc
                outcome = TIMEOUT if type(exc) in _DEADLINE_ERRORS else type(exc).__name__
        elapsed = time.perf_counter() - start
        if outcome == OK and want is not _ANY and result != want:
            outcome, error = WRONG, ValueError(f"got {result!r}, want {want!r}")
        self._settle(token, kind, outcome, elapsed, cancel_after or fail_after, error, method)
        error = None  # the exception holds this frame through its traceback
        return outcome, result

    # -- reading -----------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The totals now (and the latency window since the last snapshot, which starts a new one)."""
        with self._lock:
            issued = sum(self.issued.values())
            totals: Counter[str] = Counter()
            for (_, outcome), n in self.outcomes.items():
                totals[outcome] += n
            window, self.window = self.window, Histogram()
            now = time.monotonic()
            overdue = sum(1 for _, since in self.in_flight.values() if now - since > self.call_bound)
            return {
                "issued": issued,
                "accounted": sum(n for outcome, n in totals.items() if outcome != LOST),
                "in_flight": len(self.in_flight),
                "overdue": overdue,
                "totals": totals,
                "window": window.summary_ms(),
                "unexpected": self.unexpected,
            }
