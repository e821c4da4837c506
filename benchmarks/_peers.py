"""The mechanisms aptrt is compared with. Keys follow /work/shared/transport-measurements.md.

Every callee computes ``f(x) = x + 1`` on a thread other than the caller's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar, TypeVar, cast

import anyio
import anyio.from_thread
import anyio.to_thread

from ._harness import AsyncCall, AsyncMechanism, LoopThread, Mechanism, SyncMechanism, ainc, inc, inc_pinning, pin

T = TypeVar("T")

_STOP: Any = object()


# -- the floor -----------------------------------------------------------------------------------------------


class LockPingPong(SyncMechanism):
    """Two plain threads hand the turn back and forth with two pre-acquired ``threading.Lock``s."""

    key = "2a"
    label = "threads: Lock ping-pong (floor)"
    family = "floor"
    pipeline = "none"
    max_inflight = 1

    def open(self) -> None:
        self._request = threading.Lock()
        self._reply = threading.Lock()
        self._request.acquire()
        self._reply.acquire()
        self._x = 0
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="bench-2a-callee", daemon=True)
        self._thread.start()
        self._stack.callback(self._stop)

    def _stop(self) -> None:
        self._running = False
        self._request.release()
        self._thread.join()

    def _serve(self) -> None:
        pin("callee")
        request, reply = self._request, self._reply
        while True:
            request.acquire()
            if not self._running:
                return
            self._x += 1
            reply.release()

    def call(self, x: int) -> int:
        self._x = x
        self._request.release()
        self._reply.acquire()
        return self._x


class SimpleQueueReqReply(SyncMechanism):
    """Two plain threads and two ``queue.SimpleQueue``s: the raw pipeline (values only, no futures)."""

    key = "2d"
    label = "threads: SimpleQueue request/reply (floor)"
    family = "floor"

    def open(self) -> None:
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._replies: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="bench-2d-callee", daemon=True)
        self._thread.start()
        self._stack.callback(self._thread.join)
        self._stack.callback(self._requests.put, _STOP)

    def _serve(self) -> None:
        pin("callee")
        get, put = self._requests.get, self._replies.put
        while True:
            x = get()
            if x is _STOP:
                return
            put(x + 1)

    def call(self, x: int) -> int:
        self._requests.put(x)
        return self._replies.get()

    def submit(self, x: int) -> None:
        self._requests.put(x)

    def wait(self, handle: None) -> int:
        return self._replies.get()  # replies come back in request order


# -- asyncio -------------------------------------------------------------------------------------------------


class _AsyncioCallee(SyncMechanism):
    """A plain caller thread; the callee runs on an asyncio loop thread."""

    backend: ClassVar[str] = "asyncio"

    def open(self) -> None:
        callee = self._stack.enter_context(LoopThread(self.backend, "callee"))
        assert callee.loop is not None
        self._loop = callee.loop


class ThreadToLoopRcts(_AsyncioCallee):
    key = "3a"
    label = "thread → asyncio: run_coroutine_threadsafe().result()"

    def call(self, x: int) -> int:
        return asyncio.run_coroutine_threadsafe(ainc(x), self._loop).result()

    def submit(self, x: int) -> concurrent.futures.Future[int]:
        return asyncio.run_coroutine_threadsafe(ainc(x), self._loop)

    def wait(self, handle: concurrent.futures.Future[int]) -> int:
        return handle.result()


def _serve_cf(x: int, future: concurrent.futures.Future[int]) -> None:
    future.set_result(x + 1)


class ThreadToLoopCallSoon(_AsyncioCallee):
    key = "3b"
    label = "thread → asyncio: call_soon_threadsafe + cf.Future"
    default = False

    def submit(self, x: int) -> concurrent.futures.Future[int]:
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(_serve_cf, x, future)
        return future

    def wait(self, handle: concurrent.futures.Future[int]) -> int:
        return handle.result()

    def call(self, x: int) -> int:
        return self.submit(x).result()


class _LoopToLoop(AsyncMechanism):
    """An async caller on loop thread A; the callee runs on loop thread B."""

    backend: ClassVar[str] = "asyncio"

    def open(self) -> None:
        self._caller = self._stack.enter_context(LoopThread(self.backend, "caller"))
        callee = self._stack.enter_context(LoopThread(self.backend, "callee"))
        assert callee.loop is not None
        self._callee_loop = callee.loop

    def run_on_caller(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self._caller.run(fn, *args)


class LoopToLoopRcts(_LoopToLoop):
    key = "4a"
    label = "asyncio → asyncio: run_coroutine_threadsafe + wrap_future"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncCall]:
        callee = self._callee_loop
        rcts = asyncio.run_coroutine_threadsafe
        wrap = asyncio.wrap_future

        async def call(x: int) -> int:
            return await wrap(rcts(ainc(x), callee))

        yield call


class UvloopToUvloopRcts(LoopToLoopRcts):
    key = "5/4a"
    label = "uvloop → uvloop: run_coroutine_threadsafe + wrap_future"
    backend = "uvloop"
    requires = ("uvloop",)
    default = False


def _resolve(future: asyncio.Future[int], value: int) -> None:
    if not future.done():
        future.set_result(value)


class LoopToLoopCallSoon(_LoopToLoop):
    key = "4b"
    label = "asyncio → asyncio: call_soon_threadsafe both ways"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncCall]:
        loop = asyncio.get_running_loop()
        reply = loop.call_soon_threadsafe
        request = self._callee_loop.call_soon_threadsafe
        create_future = loop.create_future

        def serve(x: int, future: asyncio.Future[int]) -> None:
            reply(_resolve, future, x + 1)

        async def call(x: int) -> int:
            future: asyncio.Future[int] = create_future()
            request(serve, x, future)
            return await future

        yield call


class _Inbox:
    """The transport blueprint of transport-measurements.md: a deque plus one doorbell per batch.

    Producers (any thread) append, and the one that wins the non-blocking ``Lock.acquire`` rings the
    loop (``loop.call_soon_threadsafe(drain)`` or ``TrioToken.run_sync_soon(drain)``); ``drain`` pops everything, runs *handle* on the batch,
    releases the flag and checks the deque once more.
    """

    def __init__(self, ring: Callable[[Callable[[], None]], object], handle: Callable[[list[Any]], None]) -> None:
        self._queue: deque[Any] = deque()
        self._armed = threading.Lock()
        self._ring = ring
        self._handle = handle

    def push(self, item: Any) -> None:
        self._queue.append(item)
        if self._armed.acquire(False):
            self._ring(self._drain)

    def extend(self, items: list[Any]) -> None:
        self._queue.extend(items)
        if self._armed.acquire(False):
            self._ring(self._drain)

    def _drain(self) -> None:
        queue, armed, handle = self._queue, self._armed, self._handle
        while True:
            batch = []
            pop = queue.popleft
            while queue:
                batch.append(pop())
            handle(batch)
            armed.release()
            if not queue or not armed.acquire(False):
                return


def _resolve_batch(batch: list[tuple[asyncio.Future[int], int]]) -> None:
    for future, value in batch:
        if not future.done():
            future.set_result(value)


def _serve_batch(batch: list[tuple[int, asyncio.Future[int], _Inbox]]) -> None:
    replies: dict[_Inbox, list[tuple[asyncio.Future[int], int]]] = {}
    for x, future, reply_to in batch:
        group = replies.get(reply_to)
        if group is None:
            group = replies[reply_to] = []
        group.append((future, x + 1))
    for inbox, group in replies.items():
        inbox.extend(group)


class LoopToLoopBatched(_LoopToLoop):
    key = "4c"
    label = "asyncio → asyncio: batched deque both ways (aptrt's blueprint)"

    def open(self) -> None:
        super().open()
        self._callee_inbox = _Inbox(self._callee_loop.call_soon_threadsafe, _serve_batch)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncCall]:
        loop = asyncio.get_running_loop()
        reply_inbox = _Inbox(loop.call_soon_threadsafe, _resolve_batch)
        push = self._callee_inbox.push
        create_future = loop.create_future

        async def call(x: int) -> int:
            future: asyncio.Future[int] = create_future()
            push((x, future, reply_inbox))
            return await future

        yield call


class UvloopToUvloopBatched(LoopToLoopBatched):
    key = "5/4c"
    label = "uvloop → uvloop: batched deque both ways"
    backend = "uvloop"
    requires = ("uvloop",)
    default = False


class UvloopToUvloopCallSoon(LoopToLoopCallSoon):
    key = "5/4b"
    label = "uvloop → uvloop: call_soon_threadsafe both ways"
    backend = "uvloop"
    requires = ("uvloop",)
    default = False


# -- anyio ---------------------------------------------------------------------------------------------------


class PortalCall(SyncMechanism):
    """``portal.call(f, x)`` from a plain thread; pipelined with ``portal.start_task_soon`` futures."""

    backend: ClassVar[str] = "asyncio"

    def open(self) -> None:
        portal = self._stack.enter_context(LoopThread(self.backend, "callee")).portal
        assert portal is not None
        self._portal: anyio.from_thread.BlockingPortal = portal

    def call(self, x: int) -> int:
        return self._portal.call(inc, x)

    def submit(self, x: int) -> concurrent.futures.Future[int]:
        return self._portal.start_task_soon(inc, x)

    def wait(self, handle: concurrent.futures.Future[int]) -> int:
        return handle.result()


class PortalAsyncio(PortalCall):
    key = "6a"
    label = "anyio BlockingPortal.call (asyncio)"


class PortalUvloop(PortalCall):
    key = "6b"
    label = "anyio BlockingPortal.call (uvloop)"
    backend = "uvloop"
    requires = ("uvloop",)
    default = False


class PortalTrio(PortalCall):
    key = "6c"
    label = "anyio BlockingPortal.call (trio)"
    backend = "trio"
    default = False


class ToThread(AsyncMechanism):
    """``await anyio.to_thread.run_sync(f, x)`` from a task (anyio's default 40-thread limiter)."""

    backend: ClassVar[str] = "asyncio"

    def open(self) -> None:
        self._caller = self._stack.enter_context(LoopThread(self.backend, "caller"))

    def run_on_caller(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self._caller.run(fn, *args)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncCall]:
        run_sync = anyio.to_thread.run_sync

        async def call(x: int) -> int:
            return await run_sync(inc_pinning, x)

        yield call


class ToThreadAsyncio(ToThread):
    key = "6d"
    label = "anyio to_thread.run_sync from asyncio task"


class ToThreadTrio(ToThread):
    key = "6e"
    label = "anyio to_thread.run_sync from trio task"
    backend = "trio"
    default = False


# -- trio ----------------------------------------------------------------------------------------------------


class TrioFromThread(SyncMechanism):
    """``trio.from_thread.run_sync(f, x, trio_token=...)`` from plain threads (blocking only)."""

    key = "7a"
    label = "thread → trio: trio.from_thread.run_sync"
    pipeline = "threads"
    requires = ("trio",)

    def open(self) -> None:
        import trio

        portal = self._stack.enter_context(LoopThread("trio", "callee")).portal
        assert portal is not None
        self._token = portal.call(_trio_token)
        self._run_sync = trio.from_thread.run_sync

    def call(self, x: int) -> int:
        return self._run_sync(inc, x, trio_token=self._token)


async def _trio_token() -> Any:
    import trio

    return trio.lowlevel.current_trio_token()


def _wake_batch(batch: list[tuple[Any, int]]) -> None:
    import outcome
    import trio

    for task, value in batch:
        trio.lowlevel.reschedule(task, outcome.Value(value))


class TrioToTrioBatched(AsyncMechanism):
    key = "7f"
    label = "trio → trio: batched deque both ways (run_sync_soon doorbell)"
    requires = ("trio",)
    default = False

    def open(self) -> None:
        self._caller = self._stack.enter_context(LoopThread("trio", "caller"))
        callee = self._stack.enter_context(LoopThread("trio", "callee"))
        assert callee.portal is not None
        token = callee.portal.call(_trio_token)
        self._callee_inbox = _Inbox(token.run_sync_soon, _serve_batch)

    def run_on_caller(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self._caller.run(fn, *args)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncCall]:
        import trio

        reply_inbox = _Inbox((await _trio_token()).run_sync_soon, _wake_batch)
        push = self._callee_inbox.push
        current_task = trio.lowlevel.current_task
        wait = trio.lowlevel.wait_task_rescheduled

        def abort(_: Any) -> Any:
            return trio.lowlevel.Abort.FAILED  # a call in flight cannot be taken back

        async def call(x: int) -> int:
            push((x, current_task(), reply_inbox))
            value: int = await wait(abort)
            return value

        yield call


# -- queues with a callee thread -----------------------------------------------------------------------------


class _MixedQueueRequestReply(AsyncMechanism):
    """An asyncio caller and a plain callee thread linked by two sync/async queues.

    The caller puts ``(x, future)`` on the request queue; the callee thread takes it from the sync side
    and puts ``(future, x + 1)`` on the reply queue; a reader task on the caller's loop resolves the
    future. That is per-call result routing, which the bare queues do not give.
    """

    def open(self) -> None:
        self._caller = self._stack.enter_context(LoopThread("asyncio", "caller"))

    def run_on_caller(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self._caller.run(fn, *args)

    def make_queue(self) -> Any:
        raise NotImplementedError

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncCall]:
        loop = asyncio.get_running_loop()
        requests = self.make_queue()
        replies = self.make_queue()
        sync_get, sync_put = requests.sync_q.get, replies.sync_q.put

        def serve() -> None:
            pin("callee")
            while True:
                item = sync_get()
                if item is _STOP:
                    return
                x, future = item
                sync_put((future, x + 1))

        async def read() -> None:
            get = replies.async_q.get
            while True:
                future, value = await get()
                future.set_result(value)

        thread = threading.Thread(target=serve, name=f"bench-{self.key}-callee", daemon=True)
        thread.start()
        reader = asyncio.ensure_future(read())
        put = requests.async_q.put_nowait
        create_future = loop.create_future

        async def call(x: int) -> int:
            future: asyncio.Future[int] = create_future()
            put((x, future))
            return await future

        try:
            yield call
        finally:
            put(_STOP)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await anyio.to_thread.run_sync(thread.join)
            for queue in (requests, replies):
                queue.close()
                await queue.wait_closed()


class Janus(_MixedQueueRequestReply):
    key = "9a"
    label = "janus: asyncio caller → thread callee"
    requires = ("janus",)

    def make_queue(self) -> Any:
        import janus

        return janus.Queue()


class Culsans(_MixedQueueRequestReply):
    key = "9b"
    label = "culsans: asyncio caller → thread callee"
    requires = ("culsans",)

    def make_queue(self) -> Any:
        import culsans

        return culsans.Queue()


# -- actors --------------------------------------------------------------------------------------------------


class PykkaAsk(SyncMechanism):
    """``actor_ref.ask(x)`` to a pykka ``ThreadingActor`` whose ``on_receive`` returns ``x + 1``."""

    key = "10b"
    label = "pykka ThreadingActor ref.ask"
    requires = ("pykka",)

    def open(self) -> None:
        import pykka

        class IncActor(pykka.ThreadingActor):
            def on_start(self) -> None:
                pin("callee")

            def on_receive(self, message: Any) -> Any:
                return message + 1

        self._ref = IncActor.start()
        self._stack.callback(self._ref.stop)

    def call(self, x: int) -> int:
        return cast(int, self._ref.ask(x))

    def submit(self, x: int) -> Any:
        return self._ref.ask(x, block=False)

    def wait(self, handle: Any) -> int:
        result: int = handle.get()
        return result


MECHANISMS: tuple[type[Mechanism], ...] = (
    LockPingPong,
    SimpleQueueReqReply,
    ThreadToLoopRcts,
    ThreadToLoopCallSoon,
    LoopToLoopRcts,
    LoopToLoopCallSoon,
    LoopToLoopBatched,
    UvloopToUvloopRcts,
    UvloopToUvloopCallSoon,
    UvloopToUvloopBatched,
    PortalAsyncio,
    PortalUvloop,
    PortalTrio,
    ToThreadAsyncio,
    ToThreadTrio,
    TrioFromThread,
    TrioToTrioBatched,
    Janus,
    Culsans,
    PykkaAsk,
)
