"""How an endpoint's messages travel through Ray, in each direction.

Ray only lets the driver call the actor. So:

* **driver → actor**: ``actor.deliver.remote(batch)``. Everything queued when a batch leaves goes in it (up to
  ``RayHost.batch`` messages), with at most ``RayHost.window`` batches in flight: one call alone leaves at
  once; under load, calls pile up behind the window and leave together, so one Ray message (about 1 ms of
  CPU here) carries many calls.
* **actor → driver**: a batch's own replies come back as its return value when they are ready within
  ``RayHost.linger`` seconds of its arrival (the common case: one Ray round trip per batch); later replies,
  and the calls the actor makes back into the driver, go into an outbox that the driver's standing
  ``actor.poll.remote()`` collects (the outbox also rides on the next batch's return).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import anyio

from .._core._exceptions import DisconnectedError, DisconnectReason
from ._wire import CALL, DIED, RUN

if TYPE_CHECKING:
    from ._endpoint import Endpoint
    from ._host import RayHost

logger = logging.getLogger("aptrt")


def _died(exc: BaseException, what: str) -> DisconnectedError:
    return DisconnectedError(
        f"{what} died: {type(exc).__name__}: {exc}".strip(), reason=DisconnectReason.APARTMENT_DIED
    )


class DriverTransport:
    """The driver's side: batches out through ``deliver``, replies back through returns and ``poll``."""

    def __init__(self, host: RayHost, name: str, backend: str) -> None:
        self.host = host
        self.name = name
        self.backend = backend
        self.handle: Any = None
        self.pid: int | None = None
        self._backlog: list[tuple[Any, ...]] = []
        self._inflight = 0
        self.endpoint: Endpoint

    def attach(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def connect(self) -> None:
        from ._actor import actor_class

        options = {"max_restarts": 0, "max_concurrency": 1000, **self.host.actor_options}
        self.handle = actor_class().options(**options).remote(self.name, self.backend, self.host.linger)
        with anyio.fail_after(self.host.startup_timeout):
            info = await self.handle.ready.remote()
        self.pid = info["pid"]
        apartment = self.endpoint.apartment
        apartment.where = f"in Ray actor {info['actor_id'][:12]} (pid {self.pid})"
        apartment._spawn(self._poll)

    def send(self, messages: list[tuple[Any, ...]]) -> None:
        self._backlog.extend(messages)
        self._pump()

    def reply(self, call_id: int, message: tuple[Any, ...]) -> None:
        self.send([message])

    def _pump(self) -> None:
        host = self.host
        backlog = self._backlog
        while self._inflight < host.window and backlog and self.endpoint.gone is None:
            chunk = backlog[: host.batch]
            del backlog[: host.batch]
            try:
                ref = self.handle.deliver.remote(chunk)
            except Exception as exc:  # noqa: BLE001 - Ray could not send it: its calls fail, not the connection
                self._lost(chunk, exc)
                continue
            self._inflight += 1
            self.endpoint.apartment._spawn(self._await, ref, chunk)

    async def _await(self, ref: Any, chunk: list[tuple[Any, ...]]) -> None:
        import ray

        try:
            out = await ref
        except ray.exceptions.RayActorError as exc:
            self.endpoint.peer_gone(_died(exc, f"the Ray actor of {self.name!r}"))
            return
        except Exception as exc:  # noqa: BLE001 - e.g. a reply that does not unpickle here
            self._lost(chunk, exc)
        else:
            self.endpoint.receive(out)
        finally:
            self._inflight -= 1
        self._pump()

    def _lost(self, chunk: list[tuple[Any, ...]], exc: BaseException) -> None:
        logger.warning("aptrt: a batch to %r failed: %r", self.name, exc)
        for message in chunk:
            if message[0] in (CALL, RUN):
                self.endpoint._complete(message[1], False, exc)

    async def _poll(self) -> None:
        import ray

        while self.endpoint.gone is None:
            try:
                out = await self.handle.poll.remote()
            except ray.exceptions.RayActorError as exc:
                self.endpoint.peer_gone(_died(exc, f"the Ray actor of {self.name!r}"))
                return
            except Exception as exc:  # noqa: BLE001 - the connection is unusable
                self.endpoint.peer_gone(_died(exc, f"the connection to {self.name!r}"))
                return
            self.endpoint.receive(out)

    async def close(self, graceful: bool) -> None:
        import ray

        handle = self.handle
        if handle is None:
            return
        if graceful:
            with anyio.move_on_after(self.host.shutdown_timeout):
                try:
                    await handle.shutdown.remote()
                except Exception as exc:  # noqa: BLE001 - it is going anyway
                    logger.debug("aptrt: %r did not shut down cleanly: %r", self.name, exc)
        try:
            ray.kill(handle)
        except Exception as exc:  # noqa: BLE001 - already gone
            logger.debug("aptrt: ray.kill(%r): %r", self.name, exc)
        self.handle = None


class _Batch:
    __slots__ = ("future", "pending", "replies", "done")

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future
        self.pending = 0
        self.replies: list[tuple[Any, ...]] = []
        self.done = False


class ActorTransport:
    """The actor's side. ``deliver`` and ``poll`` run on the Ray actor's event loop; the rest on the
    endpoint's loop, which answers them through ``call_soon_threadsafe``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, linger: float) -> None:
        self.loop = loop
        self.linger = linger
        self._outbox: list[tuple[Any, ...]] = []
        self._poller: asyncio.Future[Any] | None = None
        self._batches: dict[int, _Batch] = {}
        self.endpoint: Endpoint

    def attach(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    # -- Ray's loop ------------------------------------------------------------------------------------

    async def deliver(self, messages: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        future = self.loop.create_future()
        if not self.endpoint.apartment._post(_Inbound(self, messages, future)):
            return [(DIED, f"apartment {self.endpoint.apartment.name!r} is closed")]
        result: list[tuple[Any, ...]] = await future
        return result

    async def poll(self) -> list[tuple[Any, ...]]:
        future = self.loop.create_future()
        if not self.endpoint.apartment._post(_Poll(self, future)):
            return [(DIED, f"apartment {self.endpoint.apartment.name!r} is closed")]
        result: list[tuple[Any, ...]] = await future
        return result

    # -- the endpoint's loop ---------------------------------------------------------------------------

    def inbound(self, messages: list[tuple[Any, ...]], future: asyncio.Future[Any]) -> None:
        batch = _Batch(future)
        for message in messages:
            if message[0] == CALL or message[0] == RUN:
                batch.pending += 1
                self._batches[message[1]] = batch
        self.endpoint.receive(messages)
        if batch.pending == 0:
            self._finish(batch)
        elif not batch.done:
            asyncio.get_running_loop().call_later(self.linger, self._finish, batch)

    def reply(self, call_id: int, message: tuple[Any, ...]) -> None:
        batch = self._batches.pop(call_id, None)
        if batch is None or batch.done:
            self.send([message])
            return
        batch.replies.append(message)
        batch.pending -= 1
        if batch.pending == 0:
            self._finish(batch)

    def send(self, messages: list[tuple[Any, ...]]) -> None:
        self._outbox.extend(messages)
        poller = self._poller
        if poller is not None:
            self._poller = None
            self._resolve(poller, self._take())

    def polled(self, future: asyncio.Future[Any]) -> None:
        if self._outbox:
            self._resolve(future, self._take())
        else:
            self._poller = future

    def _finish(self, batch: _Batch) -> None:
        if batch.done:
            return
        batch.done = True
        self._resolve(batch.future, batch.replies + self._take())

    def _take(self) -> list[tuple[Any, ...]]:
        out, self._outbox = self._outbox, []
        return out

    def _resolve(self, future: asyncio.Future[Any], value: list[tuple[Any, ...]]) -> None:
        self.loop.call_soon_threadsafe(_set_result, future, value)

    async def close(self, graceful: bool) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            self._resolve(poller, [(DIED, "the apartment closed")])


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


class _Inbound:
    __slots__ = ("transport", "messages", "future")

    def __init__(self, transport: ActorTransport, messages: list[tuple[Any, ...]], future: asyncio.Future[Any]) -> None:
        self.transport = transport
        self.messages = messages
        self.future = future

    def handle(self, port: Any) -> None:
        self.transport.inbound(self.messages, self.future)


class _Poll:
    __slots__ = ("transport", "future")

    def __init__(self, transport: ActorTransport, future: asyncio.Future[Any]) -> None:
        self.transport = transport
        self.future = future

    def handle(self, port: Any) -> None:
        self.transport.polled(self.future)
