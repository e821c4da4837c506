"""Objects for the call-flow tests: deadlines, cancellation, reentrancy, backpressure, observability.

Every IID is unique in the session. Handshakes are threading events with bounded waits; an async method
of an STA waits for one in a worker thread (``anyio.to_thread``), so its apartment's loop keeps serving.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

import aptrt

#: every STA backend, and pairs/triples of differing ones for tests that span apartments
MIXED_PAIRS = [("asyncio", "trio"), ("trio", "uvloop"), ("uvloop", "asyncio")]
MIXED_TRIPLE = ("asyncio", "trio", "uvloop")


class Handshake:
    """``entered``: the callee got there; ``release``: the test lets it go on; ``done``: the callee left."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()


class FlowLog:
    """An event log shared by the objects of a test, with named handshakes (plain objects cross as they are)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handshakes: dict[str, Handshake] = {}
        self.events: list[Any] = []

    def append(self, event: Any) -> None:
        with self._lock:
            self.events.append(event)

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.events)

    def __getitem__(self, tag: str) -> Handshake:
        with self._lock:
            handshake = self._handshakes.get(tag)
            if handshake is None:
                handshake = self._handshakes[tag] = Handshake()
            return handshake


async def wait_released(event: threading.Event) -> None:
    """Inside an apartment's loop: wait (without blocking the loop) until the test sets *event*.

    A checkpoint: cancelling the waiter leaves at once (the worker thread goes when *event* is set)."""
    if not await anyio.to_thread.run_sync(event.wait, 5, abandon_on_cancel=True):
        raise AssertionError("the test never released the handshake")


class INode(aptrt.Interface, iid="19344705-6b6a-49d7-92e6-7dc1a7d05af7"):
    def mark(self, tag: str) -> int | None: ...
    async def hold(self, tag: str) -> int | None: ...
    async def stubborn(self, tag: str) -> str: ...
    async def call_out(self, tag: str, other: Any) -> int | None: ...
    async def bounce(self, tag: str, back: Any) -> int | None: ...
    async def cross(self, tag: str, other: Any) -> int | None: ...
    async def forward(self, tag: str, hops: tuple[Any, ...]) -> tuple[int | None, ...]: ...
    async def deadline_left(self) -> float: ...
    def causality(self) -> int | None: ...
    def fail(self, message: str) -> None: ...


class Node(INode):
    """A named node of a call graph; every step it takes goes to the shared log as ``"<name>:<what>"``."""

    def __init__(self, name: str, log: FlowLog) -> None:
        self.name = name
        self.log = log

    def mark(self, tag: str) -> int | None:
        self.log.append(f"{self.name}:{tag}")
        return aptrt.current_causality()

    async def hold(self, tag: str) -> int | None:
        """Await (keeping the loop free) until the test releases handshake *tag*; log a cancellation."""
        handshake = self.log[tag]
        self.log.append(f"{self.name}:enter {tag}")
        handshake.entered.set()
        try:
            await wait_released(handshake.release)
            self.log.append(f"{self.name}:exit {tag}")
        except anyio.get_cancelled_exc_class():
            self.log.append(f"{self.name}:cancelled {tag}")
            raise
        finally:
            handshake.done.set()
        return aptrt.current_causality()

    async def stubborn(self, tag: str) -> str:
        """Ignore cancellation (a shielded wait for handshake *tag*), then reply anyway."""
        handshake = self.log[tag]
        handshake.entered.set()
        try:
            with anyio.CancelScope(shield=True):
                await wait_released(handshake.release)
            self.log.append(f"{self.name}:finished {tag}")
        finally:
            handshake.done.set()
        return tag

    async def call_out(self, tag: str, other: Any) -> int | None:
        """Call ``other.bounce(tag, self)``: *other* calls back into this object (A → B → A)."""
        self.log.append(f"{self.name}:enter {tag}")
        result: int | None = await other.bounce(tag, self)
        self.log.append(f"{self.name}:exit {tag}")
        return result

    async def bounce(self, tag: str, back: Any) -> int | None:
        """Call ``back.mark`` (the nested callback), then hold until the test releases handshake *tag*."""
        nested: int | None = await back.mark(f"{tag}/nested")
        handshake = self.log[tag]
        handshake.entered.set()
        await wait_released(handshake.release)
        return nested

    async def cross(self, tag: str, other: Any) -> int | None:
        """Hold this apartment (handshake *tag*), then call ``other.mark``."""
        handshake = self.log[tag]
        self.log.append(f"{self.name}:enter {tag}")
        handshake.entered.set()
        await wait_released(handshake.release)
        result: int | None = await other.mark(tag)
        self.log.append(f"{self.name}:exit {tag}")
        return result

    async def forward(self, tag: str, hops: tuple[Any, ...]) -> tuple[int | None, ...]:
        """Pass the call along *hops* (proxies); every hop answers with the causality it saw."""
        self.log.append(f"{self.name}:{tag}")
        here = aptrt.current_causality()
        if not hops:
            return (here,)
        rest: tuple[int | None, ...] = await hops[0].forward(tag, hops[1:])
        return (here, *rest)

    async def deadline_left(self) -> float:
        """Seconds left until this callee's effective deadline (inf: none)."""
        await anyio.lowlevel.checkpoint()
        return anyio.current_effective_deadline() - anyio.current_time()

    def causality(self) -> int | None:
        return aptrt.current_causality()

    def fail(self, message: str) -> None:
        raise ValueError(message)


class StrictNode(Node):
    """A node whose class takes strict turns, whatever its apartment's policy (a per-object gate)."""

    __reentrancy__ = aptrt.Reentrancy.NONE


class FreeNode(Node):
    """A node that lets every call in, whatever its apartment's policy."""

    __reentrancy__ = aptrt.Reentrancy.ALLOW


class ISink(aptrt.Interface, iid="c77acaf3-aa9e-4aee-896c-1c43021ea16c"):
    def put(self, n: int) -> int: ...
    async def put_async(self, n: int) -> int: ...


class Sink(ISink):
    """Records every argument it is called with (in a list the test shares, by reference)."""

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    def put(self, n: int) -> int:
        self.seen.append(n)
        return n

    async def put_async(self, n: int) -> int:
        await anyio.lowlevel.checkpoint()
        self.seen.append(n)
        return n
