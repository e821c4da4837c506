"""The load: caller tasks making sessions of mixed calls on services of other apartments."""

from __future__ import annotations

import random
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

import aptrt

from ._ledger import OK, Bound, Ledger

#: (kind, weight): what a session's calls do
OPS: tuple[tuple[str, int], ...] = (
    ("sync", 30),
    ("async", 25),
    ("raise", 10),
    ("cancel", 8),
    ("timeout", 5),
    ("spin", 3),
    ("relay", 12),
    ("spawn", 7),
)
_KINDS = [kind for kind, _ in OPS]
_WEIGHTS = [weight for _, weight in OPS]


async def caller(directory: Any, ledger: Ledger, seed: int, stop: threading.Event) -> None:
    """One caller task, in any apartment: sessions of calls on services until *stop* is set.

    The directory proxy it gets as an argument belongs to its apartment; it is dropped (and released by
    garbage collection) when this call ends. The service proxies it receives it releases itself.
    """
    async with anyio.create_task_group() as tg:
        this = Caller(directory, ledger, seed)
        tg.start_soon(this.bound.watch)
        while not stop.is_set():
            await this.session()
        tg.cancel_scope.cancel()


class Caller:
    """What one caller task does."""

    def __init__(self, directory: Any, ledger: Ledger, seed: int) -> None:
        self.directory = directory
        self.ledger = ledger
        self.bound = Bound(ledger.call_bound)
        self.rng = random.Random(seed)
        self.here = aptrt.current_apartment().name

    async def call(self, kind: str, method: Callable[..., Awaitable[Any]], *args: Any, **how: Any) -> tuple[str, Any]:
        return await self.ledger.call(kind, method, *args, bound=self.bound, **how)

    async def lookup(self) -> Any:
        """A proxy to a service of another apartment, or None when the lookup failed."""
        outcome, service = await self.call("lookup", self.directory.pick, self.here, self.rng.random())
        return service if outcome == OK else None

    async def session(self) -> None:
        target = await self.lookup()
        if target is None:
            return
        try:
            for _ in range(self.rng.randint(1, 8)):
                await self.one_call(self.rng.choices(_KINDS, _WEIGHTS)[0], target)
        finally:
            target.release()

    async def one_call(self, kind: str, target: Any) -> None:
        rng = self.rng
        n = rng.randrange(1_000_000)
        if kind == "sync":
            await self.call(kind, target.add, 1)
        elif kind == "async":
            await self.call(kind, target.echo, n, want=n)
        elif kind == "raise":
            await self.call(kind, target.fail, n)
        elif kind == "cancel":
            await self.call(kind, target.sleep, 1.0, cancel_after=rng.uniform(0.001, 0.03))
        elif kind == "timeout":
            await self.call(kind, target.sleep, 1.0, fail_after=rng.uniform(0.001, 0.03))
        elif kind == "spin":  # a sync callee blocks its thread until it sees the caller's deadline
            deadline = rng.uniform(0.001, 0.01)
            if rng.random() < 0.5:
                await self.call(kind, target.spin, 0.05, cancel_after=deadline)
            else:
                await self.call(kind, target.spin, 0.05, fail_after=deadline)
        elif kind == "relay":
            other = await self.lookup()
            if other is not None:
                try:
                    await self.call(kind, target.relay, other, n, want=n)
                finally:
                    other.release()
        elif kind == "spawn":
            outcome, child = await self.call(kind, target.spawn)
            if outcome == OK:
                try:
                    await self.call("spawned", child.add, 1, want=1)  # a new object: its first total is 1
                finally:
                    child.release()
        else:
            raise AssertionError(kind)
