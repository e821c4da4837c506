"""Load control: bounded inboxes with backpressure or rejection, message filters, client retry policies.

* ``apartment.configure(max_queued=100, overflow="wait")``: callers wait for room (async callers under
  their deadline, blocking callers under their timeout); ``overflow="reject"`` refuses the call at once
  with :class:`RetryLaterError` (``RPC_E_SERVERCALL_RETRYLATER``).
* ``apartment.configure(message_filter=fn)``: the server side's HandleInComingCall. ``fn(IncomingCall)``
  runs on the apartment's thread before each call and answers ``ADMIT``, ``REJECT``
  (:class:`CallRejectedError`) or ``RETRY_LATER`` (:class:`RetryLaterError`).
* ``apartment.configure(retry_policy=RetryPolicy(...))``: the client side's RetryRejectedCall, for calls
  made *from* that apartment: a rejected call is retried after the delay the policy gives, or given up.
"""

from __future__ import annotations

import enum
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._exceptions import CallRejectedError, InvalidArgumentError, RetryLaterError
from ._validate import check_int

if TYPE_CHECKING:
    from ._call import Call


class Overflow(enum.Enum):
    """What a full bounded inbox does with one more call."""

    #: the caller waits for room (backpressure)
    WAIT = "wait"
    #: the call fails at once with RetryLaterError
    REJECT = "reject"


class FilterDecision(enum.Enum):
    """A message filter's answer (SERVERCALL_ISHANDLED, SERVERCALL_REJECTED, SERVERCALL_RETRYLATER)."""

    ADMIT = 0
    REJECT = 1
    RETRY_LATER = 2


class CallType(enum.Enum):
    """CALLTYPE: a call that starts a chain, or one nested in a chain the apartment is already serving."""

    TOPLEVEL = 1
    NESTED = 2


@dataclass(frozen=True)
class IncomingCall:
    """What a message filter is shown about an incoming call."""

    method: str
    causality: int
    call_type: CallType
    #: the calling apartment's name ("" for a plain thread outside any apartment)
    caller: str
    apartment: str


MessageFilter = Callable[[IncomingCall], FilterDecision]


@dataclass(frozen=True)
class RetryPolicy:
    """Retry rejected calls (RetryRejectedCall): up to *attempts* tries, waiting *delay* seconds before
    the first retry and multiplying the wait by *backoff* each time, capped at *max_delay*."""

    attempts: int = 5
    delay: float = 0.001
    backoff: float = 2.0
    max_delay: float = 0.5
    #: which rejections are retried (by default both "retry later" and plain rejection)
    retry_on: tuple[type[CallRejectedError], ...] = (RetryLaterError, CallRejectedError)

    def __post_init__(self) -> None:
        # checked here, not at the first rejected call (InvalidArgumentError, E_INVALIDARG)
        check_int(self.attempts, "attempts", low=0)
        for name, finite in (("delay", True), ("backoff", True), ("max_delay", False)):  # max_delay=inf: no cap
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= math.inf:
                raise InvalidArgumentError(f"{name} must be a number ≥ 0, not {value!r}")
            if finite and value == math.inf:
                raise InvalidArgumentError(f"{name} must be finite, not {value!r}")
        retry_on = self.retry_on
        if not isinstance(retry_on, tuple) or not all(
            isinstance(cls, type) and issubclass(cls, CallRejectedError) for cls in retry_on
        ):
            raise InvalidArgumentError(f"retry_on must be a tuple of CallRejectedError classes, not {retry_on!r}")

    def next_delay(self, attempt: int, error: BaseException) -> float | None:
        """Seconds to wait before retry number *attempt* (1-based) after *error*, or None to give up."""
        if attempt >= self.attempts or not isinstance(error, self.retry_on):
            return None
        return min(self.max_delay, self.delay * self.backoff ** (attempt - 1))


class NoRoom(Exception):
    """Internal: the target's bounded inbox is full and its policy is to make the caller wait."""


class InboxBound:
    """The bound of one apartment's inbox. Thread-safe: producers reserve, the apartment releases."""

    def __init__(self, max_queued: int, overflow: Overflow) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, not {max_queued}")
        self.max_queued = max_queued
        self.overflow = overflow
        self._lock = threading.Lock()
        self.queued = 0
        self.rejected = 0
        self._room_waiters: deque[Call] = deque()

    def reserve(self, call: Call, apartment_name: str) -> None:
        """Take a slot for *call* (any thread); raise RetryLaterError or NoRoom when full."""
        with self._lock:
            if self.queued < self.max_queued:
                self.queued += 1
                call.reserved = self
                return
            if self.overflow is Overflow.REJECT:
                self.rejected += 1
                reject = True
            else:
                reject = False
        if reject:
            raise RetryLaterError(f"the inbox of {apartment_name!r} is full ({self.max_queued} calls); retry later")
        raise NoRoom

    def release(self) -> None:
        """A reserved call left the inbox (apartment side): free its slot, wake one waiting caller."""
        with self._lock:
            self.queued -= 1
            waiter = None
            while self._room_waiters:  # skip callers that stopped waiting (cancelled, timed out)
                candidate = self._room_waiters.popleft()
                if not candidate.abandoned:
                    waiter = candidate
                    break
        if waiter is not None:
            waiter.deliver()

    def retire(self) -> None:
        """This bound is replaced or lifted: every caller waiting for room tries again (any thread)."""
        with self._lock:
            waiters, self._room_waiters = list(self._room_waiters), deque()
        for waiter in waiters:
            if not waiter.abandoned:
                waiter.deliver()

    def when_room(self, waiter: Call) -> None:
        """Answer *waiter* when a slot frees (at once if one is free now)."""
        with self._lock:
            if self.queued >= self.max_queued:
                self._room_waiters.append(waiter)
                return
        waiter.deliver()
