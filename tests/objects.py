"""Interfaces and implementation classes shared by the tests (every IID is unique in the session)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
import anyio.lowlevel

import aptrt


class ICounter(aptrt.Interface, iid="d6685935-f496-4ae0-af74-b1c990e35535"):
    def add(self, n: int) -> int: ...
    async def add_async(self, n: int) -> int: ...
    def value(self) -> int: ...
    def threads(self) -> set[int]: ...


class IReset(aptrt.Interface, iid="1717126e-f318-4767-a1d5-f5559354c2e1"):
    def reset(self) -> int: ...


class IUnrelated(aptrt.Interface, iid="026157e1-424b-4c10-bbf5-3669e7cda02c"):
    def nothing(self) -> None: ...


class Counter(ICounter, IReset):
    """Counts, and records the thread of every call it serves."""

    def __init__(self, start: int = 0) -> None:
        self._value = start
        self._threads: list[int] = []

    def add(self, n: int) -> int:
        self._threads.append(threading.get_ident())
        self._value += n
        return self._value

    async def add_async(self, n: int) -> int:
        await anyio.lowlevel.checkpoint()
        self._threads.append(threading.get_ident())
        self._value += n
        return self._value

    def value(self) -> int:
        return self._value

    def threads(self) -> set[int]:
        return set(self._threads)

    def reset(self) -> int:
        old, self._value = self._value, 0
        return old

    def secret(self) -> str:  # not part of any interface: unreachable through a proxy
        return "secret"


class Signals:
    """Handshakes between a test and a callee: plain objects cross apartments as they are."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()
        self.log: list[object] = []


class IGate(aptrt.Interface, iid="d140a541-b89f-4b55-a5ed-a233319f4b8c"):
    def hold(self) -> str: ...
    async def hold_async(self) -> str: ...
    async def sleep(self, seconds: float) -> str: ...
    def wait_then_check(self) -> str: ...
    def tick(self, n: int) -> int: ...


class Gate(IGate):
    """Holds its apartment's thread (or a task) until the test lets it go, logging what it saw."""

    def __init__(self, signals: Signals) -> None:
        self.sig = signals

    def hold(self) -> str:
        """Sync: hold the apartment's thread until ``release``."""
        self.sig.entered.set()
        if not self.sig.release.wait(5):
            raise AssertionError("the test never released the gate")
        self.sig.log.append("hold")
        return "released"

    async def hold_async(self) -> str:
        """Async: wait until cancelled; log it; ``done`` says the callee finished."""
        self.sig.entered.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.sig.log.append("cancelled")
            raise
        finally:
            self.sig.done.set()
        raise AssertionError("unreachable")

    async def sleep(self, seconds: float) -> str:
        self.sig.entered.set()
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            self.sig.log.append("cancelled")
            raise
        finally:
            self.sig.done.set()
        return "slept"

    def wait_then_check(self) -> str:
        """Sync: wait for ``release``, then ask :func:`aptrt.check_cancelled` whether to go on."""
        self.sig.entered.set()
        try:
            if not self.sig.release.wait(5):
                raise AssertionError("the test never released the gate")
            try:
                aptrt.check_cancelled()
            except Exception as exc:
                self.sig.log.append(exc)
                raise
            self.sig.log.append("not cancelled")
            return "finished"
        finally:
            self.sig.done.set()

    def tick(self, n: int) -> int:
        self.sig.log.append(n)
        return n


async def wait_event(event: threading.Event) -> None:
    """Wait (from a loop, without blocking it) until *event* is set; fail after 5 s."""
    assert await anyio.to_thread.run_sync(event.wait, 5), "the handshake never came"


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for a condition no handshake can signal (e.g. a plain thread's call is queued); fail after 5 s."""
    for _ in range(5000):
        if predicate():
            return
        await anyio.sleep(0.001)
    raise AssertionError(f"timed out waiting until {what}")
