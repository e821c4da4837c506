"""FRECLIEN: mover threads and apartments move one ball while a painter apartment draws it.

:func:`run_async` is the whole client:

1. Open a runtime. The calling loop becomes the main STA, which is the painter.
2. Activate ``DllBall`` by ProgID from inside the MTA. The class is ``ThreadingModel=Both``, so the ball
   lives in the MTA, and the painter gets a proxy.
3. Start the movers. MTA movers are plain threads, which COM counts as the implicit MTA. Each one
   resolves an :class:`aptrt.AgileReference` to the ball object itself and calls it directly, as
   FRECLIEN's threads do. STA movers are apartments on asyncio, trio or uvloop. Each receives the
   ball as an argument, marshaled into a proxy of its own, and awaits its calls. Those calls run on MTA
   worker threads, unless the ball is agile (``DemoConfig(agile=True)``).
4. Paint. Every frame the painter reads ``GetBall`` and ``GetThreads`` and hands a :class:`Snapshot`
   to ``on_frame``.
5. Stop on time, on a frame count, on ``stop``, or on Ctrl-C. The painter kills the ball with
   ``Move(False)``. Every mover sees ``E_FAIL`` on its next move and ends. Then the movers are joined,
   the references released, and the runtime closed.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import random
import signal
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import anyio

import aptrt

from ._server import COLORREF, RECT, BallState, BallThread, IBall2, can_unload_now

BACKENDS = ("mixed", "asyncio", "uvloop", "trio")
#: the default bounds: 64 x 16 cells of the headless canvas, 20 units a pixel (two pixels a cell row)
DEFAULT_RECT = RECT(0, 0, 1280, 640)


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


@dataclass(frozen=True)
class DemoConfig:
    """How the FRECLIEN demo runs.

    :param seconds: how long to paint; None or 0 means until ``stop``, Ctrl-C or ``frames``
    :param frames: stop after painting this many frames (None: no limit)
    :param mta_movers: mover threads in the MTA, which call the ball directly
    :param sta_movers: mover STAs, which call the ball through proxies (or directly when it is agile)
    :param backend: the event loop of the STAs. ``"mixed"`` alternates asyncio and trio (and uvloop when
        installed), with the painter on asyncio. Any other value is used by the painter too.
    :param agile: use the free-threaded ball (``DllBall.FreeThreaded``)
    :param fps: frames painted per second
    :param rate: moves per second of each mover
    :param rect: the ball's bounds (RECT units are the painter's business: the renderers scale them)
    :param size: the ball's diameter, in the same units
    :param trail: how many recent positions a snapshot carries, for drawing a trail
    :param start_timeout: seconds to wait for every mover's first move before giving up
    :raises ValueError: no mover, a negative count, an unknown backend, a non-positive fps or rate,
        negative seconds, frames below 1, or a ball that does not fit in ``rect``
    :raises NotSupportedError: ``backend="uvloop"`` without uvloop installed
    """

    seconds: float | None = 5.0
    frames: int | None = None
    mta_movers: int = 2
    sta_movers: int = 2
    backend: str = "mixed"
    agile: bool = False
    fps: float = 30.0
    rate: float = 30.0
    rect: RECT = DEFAULT_RECT
    size: int = 80
    trail: int = 45
    start_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.mta_movers < 0 or self.sta_movers < 0 or self.mta_movers + self.sta_movers < 1:
            raise ValueError("the demo needs at least one mover (and no negative counts)")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.backend == "uvloop" and not uvloop_available():
            raise aptrt.NotSupportedError("uvloop is not installed (pip install 'aptrt[uvloop]')")
        if not self.fps > 0 or not self.rate > 0:
            raise ValueError("fps and rate must be positive")
        if self.seconds is not None and not self.seconds >= 0:
            raise ValueError(f"seconds must be non-negative or None, not {self.seconds!r}")
        if self.frames is not None and self.frames < 1:
            raise ValueError(f"frames must be at least 1 or None, not {self.frames!r}")
        if self.size <= 0 or self.size > min(self.rect.width, self.rect.height):
            raise ValueError(f"a ball of size {self.size} does not fit in {self.rect}")

    @property
    def painter_backend(self) -> str:
        """The main STA's loop: asyncio for a mixed demo, else :attr:`backend`."""
        return "asyncio" if self.backend == "mixed" else self.backend

    def sta_backends(self) -> list[str]:
        """The backend of each mover STA, in order."""
        if self.backend != "mixed":
            return [self.backend] * self.sta_movers
        cycle = ("asyncio", "trio", "uvloop") if uvloop_available() else ("asyncio", "trio")
        return [cycle[i % len(cycle)] for i in range(self.sta_movers)]

    @property
    def progid(self) -> str:
        return "DllBall.FreeThreaded" if self.agile else "DllBall"


class PathPoint(NamedTuple):
    """Where the painter saw the ball's center, in which color, and when (seconds since painting began)."""

    x: float
    y: float
    color: COLORREF
    t: float


@dataclass(frozen=True)
class MoverReport:
    """One mover, as the painter last saw it."""

    name: str
    #: ``"MTA thread"`` or ``"STA <backend>"``
    kind: str
    #: the apartment it runs in (``"MTA"`` or the STA's name)
    apartment: str
    #: the thread its loop runs on
    thread: str
    #: successful ``Move(True)`` calls
    moves: int
    #: it saw ``E_FAIL`` from a dead ball, and stopped
    saw_dead: bool
    #: a call is on its way to the ball right now
    in_flight: bool = False


@dataclass(frozen=True)
class Snapshot:
    """Everything one painted frame shows."""

    index: int
    elapsed: float
    rect: RECT
    ball: BallState
    alive: bool
    threads: tuple[BallThread, ...]
    #: moves per second of each thread over about the last second, by ``thread_id``
    rates: Mapping[int, float]
    #: the most recent positions, oldest first (the newest is the ball's own)
    trail: tuple[PathPoint, ...]
    movers: tuple[MoverReport, ...]
    #: the open apartments, e.g. ``"main(asyncio)"``, ``"mover-2(trio)"``, ``"MTA(3 workers)"``
    apartments: tuple[str, ...]
    #: movers' calls on their way to or from the ball (STA movers using a proxy)
    calls_in_flight: int


@dataclass(frozen=True)
class DemoResult:
    """What a finished demo run leaves behind (for the picture and the summary)."""

    config: DemoConfig
    frames: int
    elapsed: float
    path: tuple[PathPoint, ...]
    #: the ball's thread table after the kill
    threads: tuple[BallThread, ...]
    movers: tuple[MoverReport, ...]
    #: the last state of the (dead) ball
    ball: BallState
    #: stopped by Ctrl-C (or SIGTERM) rather than by time, frames or ``stop``
    interrupted: bool
    #: ``DllCanUnloadNow`` after everything was released: no ball alive, no server lock
    can_unload_now: bool
    last: Snapshot | None = None

    @property
    def total_moves(self) -> int:
        return sum(t.moves for t in self.threads)


@dataclass(eq=False)
class _Mover:
    """A mover's live state. Each field is written only by the mover's own thread and read racily by
    the painter, which is fine for counters and flags."""

    name: str
    kind: str
    apartment: str
    thread: str = ""
    moves: int = 0
    in_flight: bool = False
    saw_dead: bool = False
    error: BaseException | None = None

    def report(self) -> MoverReport:
        return MoverReport(self.name, self.kind, self.apartment, self.thread, self.moves, self.saw_dead, self.in_flight)


def _is_dead_ball(exc: aptrt.COMError) -> bool:
    return exc.hresult == aptrt.HRESULT.E_FAIL


async def _call(ball: Any, method: str, *args: Any) -> Any:
    """Call *method* on *ball*: await a proxy; call an agile ball (the object itself) directly."""
    if isinstance(ball, aptrt.Proxy):
        return await getattr(ball, method)(*args)
    return getattr(ball, method)(*args)


# -- the movers ----------------------------------------------------------------------------------------


def _pause(pace: random.Random, interval: float) -> float:
    """*interval*, give or take half. Without the jitter, movers and painter fall into step, and the
    same mover is always the last one before each frame."""
    return interval * pace.uniform(0.5, 1.5)


def _mta_mover(ref: aptrt.AgileReference[IBall2], mover: _Mover, interval: float, halt: threading.Event) -> None:
    """A FRECLIEN thread: a plain thread is in the MTA, where the ball lives, so it calls the ball itself.
    It ends when the ball is dead (or, as a safety net, when *halt* is set)."""
    mover.thread = threading.current_thread().name
    pace = random.Random()
    try:
        ball = ref.resolve()
        while not halt.is_set():
            try:
                ball.Move(True)
            except aptrt.COMError as exc:
                if not _is_dead_ball(exc):
                    raise
                mover.saw_dead = True
                return
            mover.moves += 1
            halt.wait(_pause(pace, interval))
    except BaseException as exc:  # noqa: BLE001  (the painter raises it on the main thread)
        mover.error = exc


async def _sta_mover(ball: Any, mover: _Mover, interval: float) -> None:
    """Runs in a mover STA. *ball* arrived as this apartment's own proxy, or as the agile ball itself."""
    mover.thread = threading.current_thread().name
    pace = random.Random()
    while True:
        mover.in_flight = True
        try:
            await _call(ball, "Move", True)
        except aptrt.COMError as exc:
            if not _is_dead_ball(exc):
                raise
            mover.saw_dead = True
            return
        finally:
            mover.in_flight = False
        mover.moves += 1
        await anyio.sleep(_pause(pace, interval))


async def _run_sta_mover(sta: aptrt.STA, ball: Any, mover: _Mover, interval: float) -> None:
    try:
        await sta.run(_sta_mover, ball, mover, interval)
    except Exception as exc:  # noqa: BLE001  (the painter raises it, with the mover's name)
        mover.error = exc


def _create_ball(progid: str) -> Any:
    """Runs in the MTA: activation by ProgID places a ``Both`` object in the caller's apartment."""
    return aptrt.current_runtime().create_instance_blocking(progid, IBall2)


# -- the painter ---------------------------------------------------------------------------------------


class _Rates:
    """Moves per second of each thread over a sliding window of about one second."""

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self._history: deque[tuple[float, dict[int, int]]] = deque()

    def update(self, now: float, threads: tuple[BallThread, ...]) -> dict[int, float]:
        counts = {t.thread_id: t.moves for t in threads}
        history = self._history
        history.append((now, counts))
        while len(history) > 2 and now - history[1][0] >= self.window:
            history.popleft()
        then, old = history[0]
        span = now - then
        if span <= 0:
            return dict.fromkeys(counts, 0.0)
        return {tid: (moves - old.get(tid, 0)) / span for tid, moves in counts.items()}


def _apartment_label(apartment: aptrt.Apartment) -> str | None:
    if isinstance(apartment, aptrt.STA):
        return f"{apartment.name}({apartment.backend})"
    if isinstance(apartment, aptrt.MTA):
        return f"MTA({apartment.workers} workers)"
    return None  # the neutral apartment: unused here


@contextlib.asynccontextmanager
async def _signals_stop(stop: threading.Event, interrupted: list[bool], enabled: bool) -> AsyncIterator[None]:
    """While inside, SIGINT/SIGTERM set *stop* instead of raising (only on the main thread, when enabled)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        receiver = anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
        signals = receiver.__enter__()
    except (NotImplementedError, RuntimeError, ValueError):  # e.g. asyncio on Windows: Ctrl-C raises instead
        yield
        return
    try:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                async for _ in signals:
                    interrupted[0] = True
                    stop.set()

            tg.start_soon(watch)
            try:
                yield
            finally:
                tg.cancel_scope.cancel("the demo is over")
    finally:
        receiver.__exit__(None, None, None)


async def run_async(
    config: DemoConfig | None = None,
    *,
    on_frame: Callable[[Snapshot], None] | None = None,
    stop: threading.Event | None = None,
    handle_signals: bool = False,
) -> DemoResult:
    """Run the FRECLIEN demo on the current event loop, which becomes the main STA and the painter.

    :param config: how to run it (default: :class:`DemoConfig`'s defaults)
    :param on_frame: called on the painter's thread with each frame's :class:`Snapshot`
    :param stop: set it (from any thread) to end the demo early
    :param handle_signals: turn Ctrl-C (SIGINT) and SIGTERM into a clean stop (main thread only)
    :returns: the path, the thread table and the movers' counts, after everything was shut down
    :raises RuntimeError: a mover failed, or did not move the ball within ``config.start_timeout``

    An exception from ``on_frame`` ends the demo (after the same clean shutdown) and is raised here.
    """
    try:
        return await _run(config or DemoConfig(), on_frame, stop or threading.Event(), handle_signals)
    except BaseExceptionGroup as group:
        # the task groups wrap a single failure; give it back as itself
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        if inner is group:
            raise
        raise inner from None


async def _run(
    config: DemoConfig,
    on_frame: Callable[[Snapshot], None] | None,
    stop: threading.Event,
    handle_signals: bool,
) -> DemoResult:
    # `stop` asks the painter to finish; `halt` is the MTA movers' safety net, set only once the ball is
    # dead and they had their chance to see E_FAIL (or when something went wrong)
    halt = threading.Event()
    interrupted = [False]
    interval = 1.0 / config.rate
    movers: list[_Mover] = []
    threads: list[threading.Thread] = []
    path: list[PathPoint] = []
    last: Snapshot | None = None
    frames = 0
    elapsed = 0.0
    try:
        async with aptrt.Runtime(backend=config.painter_backend) as rt:
            ball = await rt.mta.run_sync(_create_ball, config.progid)
            await _call(ball, "Reset", config.rect, config.size)
            ref: aptrt.AgileReference[IBall2] = aptrt.AgileReference(ball)
            try:
                async with anyio.create_task_group() as tg:
                    try:
                        _start_mta_movers(config, ref, interval, halt, movers, threads)
                        for j, backend in enumerate(config.sta_backends(), start=config.mta_movers):
                            sta = await rt.start_sta(f"mover-{j}", backend=backend)
                            mover = _Mover(sta.name, f"STA {backend}", sta.name)
                            movers.append(mover)
                            tg.start_soon(_run_sta_mover, sta, ball, mover, interval)
                        await _wait_for_first_moves(movers, config.start_timeout)
                        async with _signals_stop(stop, interrupted, handle_signals):
                            frames, elapsed, last = await _paint(rt, ball, config, movers, path, stop, on_frame)
                    finally:
                        # FRECLIEN's shutdown: kill the ball; every mover sees E_FAIL on its next move and ends
                        with anyio.CancelScope(shield=True):
                            await _call(ball, "Move", False)
                with anyio.CancelScope(shield=True):
                    await _join(threads, within=5.0)
                _raise_mover_errors(movers)
                final_threads: tuple[BallThread, ...] = await _call(ball, "GetThreads")
                final_ball: BallState = await _call(ball, "GetBall")
            finally:
                ref.release()
                if isinstance(ball, aptrt.Proxy):
                    ball.release()
                # drop our references too: a released AgileReference still holds an agile ball itself
                del ball, ref
    finally:
        halt.set()
        for thread in threads:
            thread.join(timeout=5.0)
    gc.collect()  # the ball's last references were cycles through frames of finished calls
    return DemoResult(
        config,
        frames,
        elapsed,
        tuple(path),
        final_threads,
        tuple(m.report() for m in movers),
        final_ball,
        interrupted[0],
        can_unload_now(),
        last,
    )


def run(
    config: DemoConfig | None = None,
    *,
    on_frame: Callable[[Snapshot], None] | None = None,
    stop: threading.Event | None = None,
    handle_signals: bool = False,
) -> DemoResult:
    """Run the demo from a plain program: :func:`run_async` on a new event loop of ``config``'s painter
    backend, on this thread. Blocks until the demo is over and shut down."""
    config = config or DemoConfig()
    backend, options = _anyio_backend(config.painter_backend)
    result: DemoResult = anyio.run(
        lambda: run_async(config, on_frame=on_frame, stop=stop, handle_signals=handle_signals),
        backend=backend,
        backend_options=options,
    )
    return result


def _start_mta_movers(
    config: DemoConfig,
    ref: aptrt.AgileReference[IBall2],
    interval: float,
    halt: threading.Event,
    movers: list[_Mover],
    threads: list[threading.Thread],
) -> None:
    for i in range(config.mta_movers):
        mover = _Mover(f"mover-{i}", "MTA thread", "MTA")
        movers.append(mover)
        thread = threading.Thread(target=_mta_mover, args=(ref, mover, interval, halt), name=f"ball-{mover.name}")
        thread.daemon = True  # a safety net only: every mover is joined before the demo returns
        threads.append(thread)
        thread.start()


def _anyio_backend(name: str) -> tuple[str, dict[str, Any]]:
    if name == "uvloop":
        return "asyncio", {"use_uvloop": True}
    return name, {}


async def _wait_for_first_moves(movers: list[_Mover], within: float) -> None:
    """Start painting once every mover has moved the ball (or failed), so every one shows from frame 0."""
    with anyio.move_on_after(within):
        # the movers are other threads: polling their counters is simpler than a cross-thread event
        while not all(m.moves or m.error is not None for m in movers):  # noqa: ASYNC110
            await anyio.sleep(0.002)
    _raise_mover_errors(movers)
    slow = [m.name for m in movers if not m.moves]
    if slow:
        raise RuntimeError(f"movers {', '.join(slow)} did not move the ball within {within} s")


def _raise_mover_errors(movers: list[_Mover]) -> None:
    for mover in movers:
        if mover.error is not None:
            raise RuntimeError(f"{mover.name} ({mover.kind}) failed: {mover.error!r}") from mover.error


async def _paint(
    rt: aptrt.Runtime,
    ball: Any,
    config: DemoConfig,
    movers: list[_Mover],
    path: list[PathPoint],
    stop: threading.Event,
    on_frame: Callable[[Snapshot], None] | None,
) -> tuple[int, float, Snapshot | None]:
    """The painter: a frame every 1/fps seconds until time, frames or *stop* say so."""
    period = 1.0 / config.fps
    rates = _Rates()
    trail: deque[PathPoint] = deque(maxlen=max(1, config.trail))
    t0 = time.monotonic()
    index = 0
    last: Snapshot | None = None
    while True:
        state: BallState = await _call(ball, "GetBall")
        table: tuple[BallThread, ...] = await _call(ball, "GetThreads")
        alive: bool = await _call(ball, "IsAlive")
        now = time.monotonic() - t0
        x, y = state.center
        point = PathPoint(x, y, state.color, now)
        path.append(point)
        trail.append(point)
        apartments = tuple(label for a in rt.apartments if (label := _apartment_label(a)) is not None)
        reports = tuple(m.report() for m in movers)
        last = Snapshot(
            index,
            now,
            config.rect,
            state,
            alive,
            table,
            rates.update(now, table),
            tuple(trail),
            reports,
            apartments,
            sum(r.in_flight for r in reports),
        )
        if on_frame is not None:
            on_frame(last)
        index += 1
        _raise_mover_errors(movers)
        if (
            stop.is_set()
            or not alive
            or (config.frames is not None and index >= config.frames)
            or (config.seconds and now >= config.seconds)
        ):
            return index, now, last
        await anyio.sleep(max(0.0, t0 + index * period - time.monotonic()))


async def _join(threads: list[threading.Thread], within: float) -> None:
    """Wait for the MTA mover threads without blocking the painter's loop (they end within one move)."""
    with anyio.move_on_after(within):
        while any(t.is_alive() for t in threads):  # noqa: ASYNC110  (threads: nothing to await)
            await anyio.sleep(0.002)
    for thread in threads:
        thread.join(timeout=0)
