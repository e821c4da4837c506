"""The Ray actor that hosts a remote apartment.

It is an *async* actor: Ray runs its methods on one event loop on one thread. That loop becomes the main
STA of an aptrt runtime and runs the connection (so no thread hop between Ray and aptrt); the objects live
in an STA of their own thread (asyncio, uvloop or trio), so a slow call never holds up the messages (cancel
requests among them) of the others. A local :class:`~aptrt.ray.RemoteApartment` without a thread of its own
stands for the driver: calls made back into the driver go through it.

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

    async def __init__(self, name: str, backend: str, linger: float, own_thread: bool = True) -> None:  # type: ignore[misc]
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._error: BaseException | None = None
        self._transport = ActorTransport(asyncio.get_running_loop(), linger)
        # Ray's loop becomes the main STA of a runtime that lives as long as the actor: the connection runs
        # on it (no thread hop between Ray and aptrt); the objects live in their own STA
        self._serving = asyncio.get_running_loop().create_task(self._serve(name, backend, own_thread))
        await self._ready.wait()
        if self._error is not None:
            raise self._error

    async def _serve(self, name: str, backend: str, own_thread: bool) -> None:
        try:
            async with Runtime(backend=backend) as runtime:
                # the objects' STA: one of its own, or Ray's loop itself (RayHost(own_thread=False))
                sta = await runtime.start_sta(name, backend=backend) if own_thread else runtime.main_sta
                assert sta is not None
                driver = RemoteApartment(
                    runtime, "driver", self._transport, served=sta, gateway=runtime.main_sta, where="the driver"
                )
                runtime._add_sta(driver)
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # noqa: BLE001 - to __init__ (Ray reports it as the actor's death)
            self._error = exc
            self._ready.set()

    async def ready(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "actor_id": ray.get_runtime_context().get_actor_id() or ""}

    async def deliver(self, messages: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return await self._transport.deliver(messages)

    async def poll(self) -> list[tuple[Any, ...]]:
        return await self._transport.poll()

    async def shutdown(self) -> None:
        """Close the runtime here: the apartment's objects are released, calls still running end."""
        self._stop.set()
        await asyncio.shield(self._serving)


_actor_class: Any = None


def actor_class() -> Any:
    """The Ray actor class (made once: ``ray.remote`` on a class is not free)."""
    global _actor_class
    if _actor_class is None:
        import ray

        _actor_class = ray.remote(ApartmentActor)
    return _actor_class
