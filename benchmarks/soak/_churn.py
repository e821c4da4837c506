"""The context churn: services replaced in new contexts, the old contexts disconnected."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import anyio

import aptrt

from ._histogram import Histogram
from ._ledger import OK, Ledger
from ._objects import Service


@dataclass
class Slot:
    """Where one service lives: an apartment, and the context its current service belongs to."""

    index: int
    apartment: aptrt.Apartment
    context: aptrt.Context | None = None


#: the timeouts the churner passes to ``ctx.disconnect`` (each retried on RPCTimeoutError until it succeeds)
DISCONNECT_TIMEOUTS = (0.001, 0.005, 0.02, 0.1)


class Churner:
    """Keeps replacing services: a new context and service, published, then the old context disconnected."""

    def __init__(self, ledger: Ledger, directory: Any, slots: list[Slot], rng: random.Random) -> None:
        self.ledger = ledger
        self.directory = directory
        self.slots = slots
        self.rng = rng
        self.created = 0
        self.disconnected = 0
        self.retries = 0  # RPCTimeoutError from ctx.disconnect(timeout), called again
        self.stuck = 0  # disconnects still not done after the call bound
        self.durations = Histogram()

    async def run(self, every: float, stop: threading.Event) -> None:
        while not stop.is_set():
            await anyio.sleep(every)  # pacing, not ordering
            await self.replace(self.rng.choice(self.slots))

    async def replace(self, slot: Slot) -> None:
        ctx = slot.apartment.create_context()
        outcome, service = await self.ledger.call("create", ctx.run_sync, Service)
        if outcome != OK:
            await self.disconnect(ctx)
            return
        self.created += 1
        try:
            outcome, _ = await self.ledger.call(
                "publish", self.directory.publish, slot.index, slot.apartment.name, service
            )
        finally:
            service.release()
        if outcome != OK:
            await self.disconnect(ctx)
            return
        old, slot.context = slot.context, ctx
        if old is not None:
            await self.disconnect(old)

    async def disconnect(self, ctx: aptrt.Context) -> None:
        """The README's loop: disconnect, and call again on RPC_E_TIMEOUT until it succeeds (bounded)."""
        start = time.perf_counter()
        try:
            with anyio.move_on_after(self.ledger.call_bound) as bound:
                while True:
                    try:
                        await ctx.disconnect(timeout=self.rng.choice(DISCONNECT_TIMEOUTS))
                        break
                    except aptrt.RPCTimeoutError:
                        self.retries += 1
        except Exception as exc:  # noqa: BLE001 - anything but RPC_E_TIMEOUT is reported, and the run goes on
            self.ledger.note_unexpected(f"disconnect {ctx!r}", exc)
            return
        if bound.cancelled_caught:
            self.stuck += 1
            self.ledger.note_unexpected("disconnect", TimeoutError(f"{ctx!r} still not disconnected"))
        else:
            self.disconnected += 1
            self.durations.add(time.perf_counter() - start)
