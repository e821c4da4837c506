"""The Ray actor that hosts a remote apartment.

It is an *async* actor: Ray runs its methods on one event loop on one thread. That loop only moves
messages; the objects live in an aptrt STA the actor starts on its own thread (asyncio, uvloop or trio), so
a slow call never holds up the messages (cancel requests among them) of the others. A second, local
:class:`~aptrt.ray.RemoteApartment` stands for the driver: calls made back into the driver go through it.

No exception escapes ``deliver`` or ``poll`` (one that did would stop Ray's loop for good, see
docs/ray-research.md): they only await futures the endpoint resolves.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .._core._runtime import Runtime
from ._remote import RemoteApartment
from ._transport import ActorTransport


class ApartmentActor:
    """One remote apartment: ``deliver``/``poll`` carry the messages, ``shutdown`` closes it."""

    async def __init__(self, name: str, backend: str, linger: float) -> None:  # type: ignore[misc]
        self._runtime = Runtime(backend=backend)
        self._runtime.__enter__()
        self._sta = await self._runtime.start_sta(name, backend=backend)
        self._transport = ActorTransport(asyncio.get_running_loop(), linger)
        driver = RemoteApartment(self._runtime, "driver", self._transport, served=self._sta, where="the driver")
        self._runtime._add_sta(driver)
        await driver._start()
        self._driver = driver

    async def ready(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "actor_id": ray.get_runtime_context().get_actor_id() or ""}

    async def deliver(self, messages: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return await self._transport.deliver(messages)

    async def poll(self) -> list[tuple[Any, ...]]:
        return await self._transport.poll()

    async def shutdown(self) -> None:
        """Close the runtime here: the apartment's objects are released, calls still running end."""
        import anyio

        await anyio.to_thread.run_sync(self._runtime.__exit__, None, None, None)


_actor_class: Any = None


def actor_class() -> Any:
    """The Ray actor class (made once: ``ray.remote`` on a class is not free)."""
    global _actor_class
    if _actor_class is None:
        import ray

        _actor_class = ray.remote(ApartmentActor)
    return _actor_class
