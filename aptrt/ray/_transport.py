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
from .._core._marshal import PLAIN
from ._wire import CALL, DIED, REPLY, RUN

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
        self.handle = (
            actor_class().options(**options).remote(self.name, self.backend, self.host.linger, self.host.own_thread)
        )
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

    def direct(self, call_id: int, call: Any) -> bool:
        """Send *call* from the caller's thread when the connection is idle (nothing queued, nothing in
        flight): no hop to the loop on the way out, and a plain reply answers the caller from Ray's thread.
        That is every call of a caller that makes one at a time. False: queue it as usual."""
        endpoint = self.endpoint
        with endpoint.lock:
            if self._inflight or self._backlog or self.handle is None:
                return False
            self._inflight += 1
        message = endpoint.direct_message(call_id, call)
        if message is None:
            self._done_one()
            return False
        chunk = [message]
        try:
            future = self.handle.deliver.remote(chunk).future()
        except Exception as exc:  # noqa: BLE001 - Ray could not send it: that call fails
            endpoint._complete(call_id, False, exc)
            self._done_one()
            return True
        future.add_done_callback(lambda done: self._direct_done(done, chunk))
        return True

    def _direct_done(self, future: Any, chunk: list[tuple[Any, ...]]) -> None:
        # on a Ray thread: a plain reply answers its caller from here; anything else goes to the loop
        endpoint = self.endpoint
        try:
            out = future.result()
        except BaseException as exc:  # noqa: BLE001 - handled on the loop, like a batch's
            endpoint.apartment._post(_Settle(self, chunk, None, exc))
            return
        if len(out) == 1 and out[0][0] == REPLY and type(out[0][3]) in PLAIN and out[0][2]:
            self._done_one()  # first: the caller it resumes may send its next call directly at once
            endpoint._complete(out[0][1], True, out[0][3])
            if self._backlog or endpoint._sendq:
                endpoint.apartment._post(_Settle(self, None, None, None))
        else:
            endpoint.apartment._post(_Settle(self, chunk, out, None))

    def _done_one(self) -> None:
        with self.endpoint.lock:
            self._inflight -= 1

    def settle(
        self, chunk: list[tuple[Any, ...]] | None, out: list[tuple[Any, ...]] | None, error: BaseException | None
    ) -> None:
        """A direct send's outcome, on the loop (*chunk* None: only a nudge to send what piled up meanwhile;
        an empty *out* is a real outcome: the reply missed the batch's linger and comes through the poll)."""
        if chunk is None:
            self._pump()
            return
        self._outcome(chunk, out, error)
        self._done_one()
        self._pump()

    def _pump(self) -> None:
        host = self.host
        backlog = self._backlog
        endpoint = self.endpoint
        while backlog and endpoint.gone is None:
            with endpoint.lock:
                if self._inflight >= host.window:
                    return
                self._inflight += 1
            chunk = backlog[: host.batch]
            del backlog[: host.batch]
            try:
                ref = self.handle.deliver.remote(chunk)
            except Exception as exc:  # noqa: BLE001 - Ray could not send it: its calls fail, not the connection
                self._done_one()
                self._lost(chunk, exc)
                continue
            endpoint.apartment._spawn(self._await, ref, chunk)

    async def _await(self, ref: Any, chunk: list[tuple[Any, ...]]) -> None:
        try:
            out = await ref
        except Exception as exc:  # noqa: BLE001 - sorted out below
            self._done_one()
            self._outcome(chunk, None, exc)
        else:
            self._done_one()  # first: a caller resumed by this reply may send its next call directly
            self._outcome(chunk, out, None)
        self._pump()

    def _outcome(
        self, chunk: list[tuple[Any, ...]], out: list[tuple[Any, ...]] | None, error: BaseException | None
    ) -> None:
        import ray

        if error is None:
            assert out is not None
            self.endpoint.receive(out)
        elif isinstance(error, ray.exceptions.RayActorError):
            self.endpoint.peer_gone(_died(error, f"the Ray actor of {self.name!r}"))
        else:  # e.g. a reply that does not unpickle here
            self._lost(chunk, error)

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
    """The actor's side. Everything runs on the Ray actor's event loop, which is also the endpoint's (the
    main STA of the actor's runtime)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, linger: float) -> None:
        self.loop = loop
        self.linger = linger
        self._outbox: list[tuple[Any, ...]] = []
        self._poller: asyncio.Future[Any] | None = None
        self._batches: dict[int, _Batch] = {}
        self.endpoint: Endpoint

    def attach(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def direct(self, call_id: int, call: Any) -> bool:
        return False  # the actor answers through its outbox only

    # -- Ray's loop ------------------------------------------------------------------------------------

    async def deliver(self, messages: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        future = self.loop.create_future()
        if self._closed():
            return [(DIED, f"apartment {self.endpoint.apartment.name!r} is closed")]
        self.inbound(messages, future)
        result: list[tuple[Any, ...]] = await future
        return result

    async def poll(self) -> list[tuple[Any, ...]]:
        future = self.loop.create_future()
        if self._closed():
            return [(DIED, f"apartment {self.endpoint.apartment.name!r} is closed")]
        self.polled(future)
        result: list[tuple[Any, ...]] = await future
        return result

    def _closed(self) -> bool:
        return self.endpoint.gone is not None or self.endpoint.apartment.closing

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
        _set_result(future, value)

    async def close(self, graceful: bool) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            self._resolve(poller, [(DIED, "the apartment closed")])


class _Settle:
    """Loop message: the outcome of a direct send (see ``DriverTransport.direct``)."""

    __slots__ = ("transport", "chunk", "out", "error")

    def __init__(
        self,
        transport: DriverTransport,
        chunk: list[tuple[Any, ...]] | None,
        out: list[tuple[Any, ...]] | None,
        error: BaseException | None,
    ) -> None:
        self.transport = transport
        self.chunk = chunk
        self.out = out
        self.error = error

    def handle(self, port: Any) -> None:
        self.transport.settle(self.chunk, self.out, self.error)


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)
