"""The watchdog: reports an event loop that stops answering (a callee blocking its apartment's thread).

An STA serves its objects on one thread. A callee that blocks that thread (``time.sleep``, a lock, a
busy loop, a blocking socket) silently stalls every other call into the apartment. The watchdog
notices: its thread posts a heartbeat into each loop's inbox every ``interval`` seconds; a heartbeat
not handled within ``threshold`` seconds means the loop is stuck, and the watchdog reports it once per
stall, with the thread's stack and the call it is running, then reports the recovery.

Heartbeats cost one inbox item per loop and interval. Watched: every STA of the runtime (the main STA
included) and the MTA's event loop. Not watched: the MTA's worker threads (a blocked worker stalls only
itself) and pumping STAs (``aptrt.com`` threads serve only while they wait in a COM call).
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from ._call import Call
from ._exceptions import InvalidArgumentError
from ._execute import run_inline, run_task
from ._loophost import LoopHost, Message
from ._port import Port
from ._validate import check_seconds

if TYPE_CHECKING:
    from ._runtime import Runtime

logger = logging.getLogger("aptrt")

_CALLEE_RUNNERS = (run_inline.__code__, run_task.__code__)


@dataclass(frozen=True)
class StallReport:
    """An apartment whose event loop did not answer the watchdog's heartbeat in time."""

    #: the apartment's name
    apartment: str
    #: the name of the thread that is stuck
    thread: str
    #: how long the heartbeat has waited (a lower bound of how long the loop has been stuck), seconds
    blocked_for: float
    #: the method of the call running on the stuck thread, when the thread is inside one
    method: str | None
    #: that call's causality id, and the apartment that made it (None: a plain thread)
    causality: int | None
    caller: str | None
    #: the stuck thread's stack, most recent call last (as ``traceback.format_stack`` prints it)
    stack: str

    def __str__(self) -> str:
        running = f" running {self.method!r} (causality {self.causality}, from {self.caller or 'a plain thread'})"
        return (
            f"apartment {self.apartment!r} has not answered for {self.blocked_for:.3f} s: thread "
            f"{self.thread!r} is blocked{running if self.method else ''}\n{self.stack}"
        )


class _Heartbeat(Message):
    __slots__ = ("answered", "reported", "sent")

    def __init__(self) -> None:
        self.sent = time.monotonic()
        self.answered = False
        self.reported = False

    def handle(self, port: Port) -> None:
        self.answered = True


class Watchdog:
    """Watches the event loops of a runtime (see the module docstring). Made by ``Runtime(watchdog=...)``.

    :param threshold: seconds a loop may leave a heartbeat unanswered before it is reported
    :param interval: seconds between heartbeats (default: a quarter of *threshold*)
    :param on_stall: called with each :class:`StallReport` on the watchdog's thread (default: a warning
        on the ``aptrt`` logger, with the stack); it must be quick and must not raise (errors are logged)
    """

    def __init__(
        self,
        runtime: Runtime,
        threshold: float,
        *,
        interval: float | None = None,
        on_stall: Callable[[StallReport], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.threshold = threshold
        self.interval = interval if interval is not None else max(threshold / 4, 0.001)
        self.on_stall = on_stall if on_stall is not None else _log_stall
        #: the most recent reports, oldest first (at most 100)
        self.reports: deque[StallReport] = deque(maxlen=100)
        self._beats: dict[LoopHost, _Heartbeat] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<Watchdog threshold={self.threshold:g}s interval={self.interval:g}s reports={len(self.reports)}>"

    def stalled(self) -> list[str]:
        """The apartments whose loop is stuck now (reported and not yet recovered)."""
        return [host.apartment.name for host, beat in list(self._beats.items()) if beat.reported and not beat.answered]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="aptrt-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # the watchdog must outlive whatever it watches
                logger.exception("aptrt: watchdog check failed")

    def check(self) -> None:
        """One round: post heartbeats, report loops that left theirs unanswered too long (any thread)."""
        hosts = self.runtime._loop_hosts()
        now = time.monotonic()
        for host in list(self._beats):
            if host not in hosts:
                del self._beats[host]
        for host in hosts:
            beat = self._beats.get(host)
            if beat is None or beat.answered:
                if beat is not None and beat.reported:
                    logger.warning(
                        "aptrt: apartment %r answers again after %.3f s",
                        host.apartment.name,
                        now - beat.sent,
                    )
                port = host.port
                if port is not None and not port.closing:
                    beat = self._beats[host] = _Heartbeat()
                    port.post(beat)
            elif not beat.reported and now - beat.sent >= self.threshold:
                beat.reported = True
                report = _report(host, now - beat.sent)
                if report is not None:
                    self.reports.append(report)
                    try:
                        self.on_stall(report)
                    except Exception:
                        logger.exception("aptrt: the watchdog's on_stall callback failed")


def _report(host: LoopHost, blocked_for: float) -> StallReport | None:
    thread = host.thread
    if thread is None or thread.ident is None:
        return None
    frame = sys._current_frames().get(thread.ident)
    if frame is None:  # the thread has ended meanwhile
        return None
    call = _running_call(frame)
    caller = call.caller if call is not None else None
    return StallReport(
        apartment=host.apartment.name,
        thread=thread.name,
        blocked_for=blocked_for,
        method=call.name if call is not None else None,
        causality=call.causality if call is not None else None,
        caller=caller.name if caller is not None else None,
        stack="".join(traceback.format_stack(frame)),
    )


def _running_call(frame: FrameType | None) -> Call | None:
    """The call whose callee is on this stack: the innermost ``run_inline``/``run_task`` frame's."""
    while frame is not None:
        if frame.f_code in _CALLEE_RUNNERS:
            call = frame.f_locals.get("call")
            return call if isinstance(call, Call) else None
        frame = frame.f_back
    return None


def _log_stall(report: StallReport) -> None:
    logger.warning("aptrt: %s", report)


def check_watchdog_args(threshold: object, interval: object) -> None:
    """Validate ``Runtime(watchdog=..., watchdog_interval=...)`` (E_INVALIDARG, before anything starts)."""
    for name, value in (("watchdog", threshold), ("watchdog_interval", interval)):
        seconds = check_seconds(value, name)
        if seconds is not None and not 0 < seconds < math.inf:
            raise InvalidArgumentError(f"{name} must be a positive, finite number of seconds, not {value!r}")
    if threshold is None and interval is not None:
        raise InvalidArgumentError("watchdog_interval needs watchdog (the threshold)")
