"""The FRESERVE/FRECLIEN sample: IBall, the DllBall class, its server counts, and the client."""

from __future__ import annotations

import gc
import math
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import aptrt
from aptrt.samples.ball import (
    MAX_BALLTHREADS,
    OVERFLOW_COLOR,
    PALETTE,
    RECT,
    RGB,
    UNMOVED_COLOR,
    Ball,
    BallState,
    CLSID_DllBall,
    CLSID_DllBallFreeThreaded,
    DemoConfig,
    DllCanUnloadNow,
    FreeThreadedBall,
    IBall,
    IBall2,
    Snapshot,
    can_unload_now,
    hex_of,
    rgb_of,
    server,
)
from aptrt.samples.ball import run as run_demo


def in_rect(state: BallState, rect: RECT) -> bool:
    (x, y), (w, h) = state.origin, state.extent
    return rect.left <= x and x + w <= rect.right and rect.top <= y and y + h <= rect.bottom


class Visitors:
    """Threads that move a ball on request and stay alive until closed (a thread's ident is reused
    once it ends, and the ball tells threads apart by ident, as COM's FindThread does)."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.release = threading.Event()

    def move(self, name: str, ball: Ball, times: int = 1) -> None:
        done = threading.Event()

        def visit() -> None:
            for _ in range(times):
                ball.Move(True)
            done.set()
            self.release.wait(10)

        thread = threading.Thread(target=visit, name=name)
        thread.start()
        self.threads.append(thread)
        assert done.wait(5)

    def close(self) -> None:
        self.release.set()
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def visitors() -> Iterator[Visitors]:
    v = Visitors()
    yield v
    v.close()


def is_dead_error(exc: BaseException) -> bool:
    return isinstance(exc, aptrt.COMError) and exc.hresult == aptrt.HRESULT.E_FAIL


class TestRegistration:
    def test_progids_and_threading_model(self) -> None:
        assert aptrt.registry.clsid_from_progid("DllBall.1") == CLSID_DllBall
        assert aptrt.registry.clsid_from_progid("DllBall") == CLSID_DllBall  # through CurVer
        registration = aptrt.registry.lookup("DllBall")
        assert registration.cls is Ball
        assert registration.threading_model is aptrt.ThreadingModel.BOTH
        assert registration.version_independent_progid == "DllBall"
        assert registration.module == "aptrt.samples.ball"
        assert aptrt.registry.clsid_from_progid("DllBall.FreeThreaded") == CLSID_DllBallFreeThreaded
        assert aptrt.registry.lookup(CLSID_DllBallFreeThreaded).cls is FreeThreadedBall

    def test_interfaces(self) -> None:
        assert issubclass(IBall2, IBall)
        assert IBall2.__iid__ != IBall.__iid__
        assert IBall.__interface_methods__ == {"Reset", "GetBall", "Move"}
        assert IBall2.__interface_methods__ == {"Reset", "GetBall", "Move", "GetThreads", "IsAlive"}
        ball = Ball()
        assert aptrt.query_interface(ball, IBall) is ball

    def test_both_lives_in_the_mta_when_a_plain_thread_creates_it(self) -> None:
        with aptrt.Runtime() as rt:
            ball = rt.create_instance_blocking("DllBall", IBall)
            assert type(ball) is Ball  # created here, in the (implicit) MTA: no proxy

    async def test_both_lives_in_the_creating_sta(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        async def create_and_move() -> tuple[bool, str]:
            ball = await aptrt.current_runtime().create_instance("DllBall.1", IBall)
            ball.Move(True)  # the object itself: a direct call on this STA's thread
            name = next(t.name for t in ball.GetThreads())
            return type(ball) is Ball, name

        async with rt.open_sta("creator", backend=sta_backend) as sta:
            direct, name = await sta.run(create_and_move)
        assert direct
        assert name == "aptrt-sta-creator"

    async def test_created_in_the_mta_reaches_an_sta_as_a_proxy(self, rt: aptrt.Runtime) -> None:
        ball = await rt.mta.run_sync(rt.create_instance_blocking, "DllBall", IBall2)
        assert isinstance(ball, aptrt.Proxy)
        assert ball.target_apartment is rt.mta
        await ball.Move(True)
        (entry,) = await ball.GetThreads()
        assert entry.name.startswith("aptrt-mta-")  # a call from an STA runs on an MTA worker
        ball.release()


class TestReset:
    def test_a_fresh_ball_sits_in_the_middle_unmoved(self) -> None:
        ball = Ball(seed=1)
        ball.Reset(RECT(0, 0, 200, 100), 20)
        state = ball.GetBall()
        assert state == BallState((90, 40), (20, 20), UNMOVED_COLOR)
        assert state.center == (100.0, 50.0)
        assert ball.IsAlive()

    def test_accepts_a_tuple(self) -> None:
        ball = Ball(seed=1)
        ball.Reset((10, 10, 110, 60), 10)
        assert ball.GetBall().origin == (55, 30)

    @pytest.mark.parametrize(
        ("rect", "size"),
        [
            (RECT(0, 0, 100, 100), 0),
            (RECT(0, 0, 100, 100), -5),
            (RECT(0, 0, 100, 100), True),
            (RECT(0, 0, 100, 100), 2.5),
            (RECT(0, 0, 100, 50), 51),
            (RECT(10, 10, 10, 100), 1),
            ((0, 0, 100), 10),
            ((0, 0, 100, "x"), 10),
            ("nope", 10),
        ],
    )
    def test_rejects_bad_arguments(self, rect: object, size: object) -> None:
        ball = Ball()
        before = ball.GetBall()
        with pytest.raises(aptrt.InvalidArgumentError) as info:
            ball.Reset(rect, size)  # type: ignore[arg-type]
        assert info.value.hresult == aptrt.HRESULT.E_INVALIDARG
        assert ball.GetBall() == before


class TestMotion:
    @pytest.mark.parametrize("seed", range(8))
    @pytest.mark.parametrize(
        ("rect", "size"),
        [
            (RECT(0, 0, 640, 480), 48),
            (RECT(-300, 50, 20, 90), 40),  # exactly as tall as the ball
            (RECT(5, 5, 37, 300), 30),  # narrower than one move is long
            (RECT(0, 0, 10_000, 9), 1),
        ],
    )
    def test_bounces_stay_in_the_rectangle(self, seed: int, rect: RECT, size: int) -> None:
        ball = Ball(seed=seed)
        ball.Reset(rect, size)
        for _ in range(3000):
            ball.Move(True)
            state = ball.GetBall()
            assert in_rect(state, rect), (state, rect)

    def test_reaches_every_edge(self) -> None:
        rect = RECT(0, 0, 400, 300)
        ball = Ball(seed=3)
        ball.Reset(rect, 40)
        xs, ys = [], []
        for _ in range(5000):
            ball.Move(True)
            x, y = ball.GetBall().origin
            xs.append(x)
            ys.append(y)
        step = 40 / 6 * 2  # the fastest a move can be
        assert min(xs) <= rect.left + step and max(xs) >= rect.right - 40 - step
        assert min(ys) <= rect.top + step and max(ys) >= rect.bottom - 40 - step

    def test_bounces_are_skewed(self) -> None:
        # Between bounces the ball moves in a straight line at constant speed. A plain reflection would
        # keep one speed and one slope forever; the skew changes both a little at every bounce.
        rect = RECT(0, 0, 60_000, 40_000)
        ball = Ball(seed=11)
        ball.Reset(rect, 6000)  # big, so rounding to whole units is negligible
        positions = [ball.GetBall().origin]
        for _ in range(4000):
            ball.Move(True)
            positions.append(ball.GetBall().origin)
        speeds, slopes = set(), set()
        for (x0, y0), (x1, y1), (x2, y2) in zip(positions, positions[1:], positions[2:], strict=False):
            dx, dy = x1 - x0, y1 - y0
            if abs(x2 - x1 - dx) <= 2 and abs(y2 - y1 - dy) <= 2:  # a straight stretch, not a bounce
                speeds.add(round(math.hypot(dx, dy), -1))
                slopes.add(round(math.degrees(math.atan2(abs(dy), abs(dx)))))
        assert len(speeds) > 3
        assert len(slopes) > 3
        assert all(14 <= slope <= 76 for slope in slopes)  # never flat against an edge

    def test_seed_makes_it_repeatable(self) -> None:
        def path(seed: int | None) -> list[BallState]:
            ball = Ball(seed=seed)
            ball.Reset(RECT(0, 0, 300, 200), 30)
            states = []
            for _ in range(500):
                ball.Move(True)
                states.append(ball.GetBall())
            return states

        assert path(42) == path(42)
        assert path(42) != path(43)


class TestColors:
    def test_palette(self) -> None:
        assert len(PALETTE) == MAX_BALLTHREADS == 64
        assert len(set(PALETTE)) == 64
        assert UNMOVED_COLOR not in PALETTE and OVERFLOW_COLOR not in PALETTE
        assert RGB(0x12, 0x34, 0x56) == 0x563412
        assert rgb_of(0x563412) == (0x12, 0x34, 0x56)
        assert hex_of(0x563412) == "#123456"

    def test_each_thread_gets_its_color_on_first_visit_and_keeps_it(self, visitors: Visitors) -> None:
        ball = Ball(seed=1)
        visitors.move("first", ball, times=3)
        assert ball.GetBall().color == PALETTE[0]
        visitors.move("second", ball)
        assert ball.GetBall().color == PALETTE[1]
        ball.Move(True)  # this thread: the third visitor
        assert ball.GetBall().color == PALETTE[2]
        ball.Move(True)
        assert ball.GetBall().color == PALETTE[2]
        threads = ball.GetThreads()
        assert [(t.name, t.color, t.moves) for t in threads] == [
            ("first", PALETTE[0], 3),
            ("second", PALETTE[1], 1),
            (threading.current_thread().name, PALETTE[2], 2),
        ]
        assert threads[2].thread_id == threading.get_ident()

    def test_a_revisiting_thread_takes_its_old_color_back(self) -> None:
        ball = Ball(seed=1)
        gate = threading.Event()
        ready = threading.Event()

        def come_back() -> None:
            ball.Move(True)
            ready.set()
            gate.wait(5)
            ball.Move(True)  # the same thread, later

        thread = threading.Thread(target=come_back, name="returner")
        thread.start()
        assert ready.wait(5)
        ball.Move(True)
        assert ball.GetBall().color == PALETTE[1]
        gate.set()
        thread.join(5)
        assert ball.GetBall().color == PALETTE[0]
        assert [t.moves for t in ball.GetThreads()] == [2, 1]

    def test_up_to_64_threads_then_a_shared_color(self) -> None:
        ball = Ball(seed=1)
        count = MAX_BALLTHREADS + 2
        moved = threading.Barrier(count + 1, timeout=10)
        colors: dict[int, int] = {}
        turn = threading.Lock()

        def visit(i: int) -> None:
            with turn:  # one at a time, so visitor i is the i-th to arrive
                ball.Move(True)
                colors[i] = ball.GetBall().color
            moved.wait()  # stay alive until everyone moved: thread idents are reused after a thread ends

        threads = []
        for i in range(count):
            thread = threading.Thread(target=visit, args=(i,), name=f"visitor-{i}")
            thread.start()
            threads.append(thread)
        moved.wait()
        for thread in threads:
            thread.join(5)
        assert sorted(colors.values()) == sorted([*PALETTE, OVERFLOW_COLOR, OVERFLOW_COLOR])
        table = ball.GetThreads()
        assert len(table) == MAX_BALLTHREADS + 1
        assert [t.color for t in table[:-1]] == list(PALETTE)
        assert table[-1].thread_id == 0 and table[-1].color == OVERFLOW_COLOR and table[-1].moves == 2

    async def test_free_threaded_ball_reaches_stas_as_itself(self, rt: aptrt.Runtime) -> None:
        # agile: marshaling hands the STAs the object, and their moves run on their own threads
        ball = await rt.mta.run_sync(rt.create_instance_blocking, "DllBall.FreeThreaded", IBall2)
        assert type(ball) is FreeThreadedBall

        async def move(b: IBall2) -> bool:
            b.Move(True)
            return type(b) is FreeThreadedBall

        async with rt.open_sta("a", backend="asyncio") as a, rt.open_sta("b", backend="trio") as b:
            assert await a.run(move, ball)
            assert await b.run(move, ball)
        assert [(t.name, t.color) for t in ball.GetThreads()] == [
            ("aptrt-sta-a", PALETTE[0]),
            ("aptrt-sta-b", PALETTE[1]),
        ]


class TestKill:
    def test_kill_then_moves_fail_with_e_fail(self) -> None:
        ball = Ball(seed=1)
        ball.Move(True)
        last = ball.GetBall()
        ball.Move(False)
        assert not ball.IsAlive()
        with pytest.raises(aptrt.COMError) as info:
            ball.Move(True)
        assert info.value.hresult == aptrt.HRESULT.E_FAIL
        assert info.value.hresult_name == "E_FAIL"
        ball.Move(False)  # killing a dead ball again is harmless
        with pytest.raises(aptrt.COMError) as info:
            ball.Reset(RECT(0, 0, 100, 100), 10)
        assert info.value.hresult == aptrt.HRESULT.E_FAIL
        assert ball.GetBall() == last  # a dead ball still answers, and no longer moves
        assert ball.GetThreads()[0].moves == 1

    async def test_e_fail_crosses_apartments(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        ball = await rt.mta.run_sync(rt.create_instance_blocking, "DllBall", IBall2)

        async def move_dead(b: aptrt.Proxy[IBall]) -> int:
            try:
                await b.Move(True)
            except aptrt.COMError as exc:
                return exc.hresult
            return 0

        await ball.Move(False)
        async with rt.open_sta("mover", backend=sta_backend) as sta:
            assert await sta.run(move_dead, ball) == aptrt.HRESULT.E_FAIL
        with pytest.raises(aptrt.COMError) as info:
            await ball.Move(True)
        assert type(info.value) is aptrt.COMError
        ball.release()

    def test_any_thread_can_kill_and_every_mover_sees_it(self) -> None:
        ball = Ball(seed=2)
        ball.Reset(RECT(0, 0, 1000, 1000), 50)
        started = threading.Barrier(5, timeout=10)
        outcomes: dict[str, tuple[bool, int]] = {}

        def mover() -> None:
            started.wait()
            moves = 0
            try:
                while True:
                    ball.Move(True)
                    moves += 1
            except aptrt.COMError as exc:
                outcomes[threading.current_thread().name] = (is_dead_error(exc), moves)

        threads = [threading.Thread(target=mover, name=f"m{i}") for i in range(4)]
        for thread in threads:
            thread.start()
        started.wait()
        killer = threading.Thread(target=ball.Move, args=(False,), name="killer")
        killer.start()
        for thread in [killer, *threads]:
            thread.join(10)
            assert not thread.is_alive()
        assert sorted(outcomes) == ["m0", "m1", "m2", "m3"]
        assert all(dead for dead, _ in outcomes.values())
        assert sum(t.moves for t in ball.GetThreads()) == sum(n for _, n in outcomes.values())
        assert "killer" not in [t.name for t in ball.GetThreads()]  # killing is not moving


class TestGuarded:
    def test_is_a_guarded_object(self) -> None:
        ball = Ball()
        assert isinstance(ball, aptrt.Guarded)
        with ball.owned():  # the lock is reentrant: a method can run while its holder holds it
            ball.Move(True)

    def test_concurrent_moves_lose_nothing(self) -> None:
        ball = Ball(seed=5)
        rect = RECT(0, 0, 500, 300)
        ball.Reset(rect, 30)
        barrier = threading.Barrier(8, timeout=10)
        outside: list[BallState] = []

        def hammer() -> None:
            barrier.wait()
            for _ in range(2000):
                ball.Move(True)
                state = ball.GetBall()
                if not in_rect(state, rect):
                    outside.append(state)

        threads = [threading.Thread(target=hammer, name=f"h{i}") for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not outside
        table = ball.GetThreads()
        assert len(table) == 8
        assert all(t.moves == 2000 for t in table)


class TestServerCounts:
    @pytest.fixture(autouse=True)
    def unloadable(self) -> None:
        gc.collect()
        assert can_unload_now(), f"a ball from another test is still alive: {server()!r}"

    def test_the_class_factory_counts_its_objects(self) -> None:
        with aptrt.Runtime() as rt:
            ball = rt.create_instance_blocking("DllBall", IBall)
            assert server().objects == 1
            assert not can_unload_now()
            assert DllCanUnloadNow() == aptrt.HRESULT.S_FALSE
            other = rt.create_instance_blocking(CLSID_DllBall, IBall)
            assert server().objects == 2
            del ball, other
            gc.collect()
            assert server().objects == 0
            assert can_unload_now()
            assert DllCanUnloadNow() == aptrt.HRESULT.S_OK

    def test_balls_made_directly_are_not_counted(self) -> None:
        ball = Ball()
        assert can_unload_now()
        del ball

    def test_aptrt_can_unload_now_takes_the_module(self) -> None:
        import aptrt.samples.ball as module

        assert aptrt.can_unload_now(module)
        assert aptrt.server_module("aptrt.samples.ball") is server()

    async def test_lock_server(self, rt: aptrt.Runtime) -> None:
        factory = await rt.get_class_object("DllBall")
        factory.LockServer(True)
        assert not can_unload_now() and server().locks == 1
        factory.LockServer(False)
        assert can_unload_now()
        ball = factory.CreateInstance(None, IBall)
        assert type(ball) is Ball and server().objects == 1
        del ball
        gc.collect()
        assert can_unload_now()

    async def test_a_remote_ball_is_released_with_its_proxies(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        async with rt.open_sta("home", backend=sta_backend) as home:

            async def create() -> Any:
                return await aptrt.current_runtime().create_instance("DllBall", IBall)

            proxy: aptrt.Proxy[IBall] = await home.run(create)  # the ball lives in `home`; the main STA holds a proxy
            await proxy.Move(True)
            assert not can_unload_now()
            proxy.release()
            await home.run_sync(gc.collect)  # the stub let go; collect the ball on its own thread
            await anyio.lowlevel.checkpoint()
        gc.collect()
        assert can_unload_now()


class TestFreclien:
    """The client: movers in several apartments move one ball; the painter reads it and kills it."""

    def test_every_mover_moves_and_sees_the_kill(self) -> None:
        frames: list[int] = []
        result = run_demo(
            DemoConfig(seconds=None, frames=6, mta_movers=2, sta_movers=2), on_frame=lambda s: frames.append(s.index)
        )
        assert frames == list(range(6)) and result.frames == 6
        assert [m.kind for m in result.movers] == ["MTA thread", "MTA thread", "STA asyncio", "STA trio"]
        for mover in result.movers:
            assert mover.moves > 0, mover
            assert mover.saw_dead, mover
        assert [m.thread for m in result.movers[:2]] == ["ball-mover-0", "ball-mover-1"]
        assert [m.thread for m in result.movers[2:]] == ["aptrt-sta-mover-2", "aptrt-sta-mover-3"]
        names = {t.name for t in result.threads}
        assert {"ball-mover-0", "ball-mover-1"} <= names  # MTA movers call the ball on their own threads
        assert any(name.startswith("aptrt-mta-") for name in names)  # STA movers' calls run on MTA workers
        assert result.total_moves >= sum(m.moves for m in result.movers)
        assert not result.interrupted and result.can_unload_now
        assert len(result.path) == 6
        assert all(
            in_rect(BallState((round(p.x) - 40, round(p.y) - 40), (80, 80), p.color), result.config.rect)
            for p in result.path
        )
        assert not [t.name for t in threading.enumerate() if t.name.startswith("ball-")]

    def test_agile_ball_shows_every_mover_in_its_color(self) -> None:
        result = run_demo(DemoConfig(seconds=None, frames=3, mta_movers=1, sta_movers=2, backend="trio", agile=True))
        movers = {m.thread for m in result.movers}
        assert {t.name for t in result.threads} == movers == {"ball-mover-0", "aptrt-sta-mover-1", "aptrt-sta-mover-2"}
        assert {t.color for t in result.threads} == set(PALETTE[:3])
        assert all(m.saw_dead for m in result.movers)
        assert result.can_unload_now

    def test_stop_event_ends_it_early(self) -> None:
        stop = threading.Event()

        def on_frame(snapshot: object) -> None:
            stop.set()

        result = run_demo(DemoConfig(seconds=None, mta_movers=1, sta_movers=0), on_frame=on_frame, stop=stop)
        assert result.frames == 1
        assert result.movers[0].saw_dead

    @pytest.mark.parametrize("backend", ["asyncio", "trio"])
    def test_an_error_in_on_frame_stops_it_cleanly(self, backend: str) -> None:
        def on_frame(snapshot: Snapshot) -> None:
            raise LookupError("the display went away")

        with pytest.raises(LookupError, match="the display went away"):
            run_demo(DemoConfig(seconds=None, mta_movers=1, sta_movers=1, backend=backend), on_frame=on_frame)
        assert not [t.name for t in threading.enumerate() if t.name.startswith(("aptrt-", "ball-"))]
        gc.collect()
        assert can_unload_now()

    def test_snapshots(self) -> None:
        snapshots: list[Snapshot] = []
        run_demo(
            DemoConfig(seconds=None, frames=4, mta_movers=1, sta_movers=1, backend="asyncio", trail=2),
            on_frame=snapshots.append,
        )
        first, last = snapshots[0], snapshots[-1]
        assert first.alive and last.alive  # the painter kills it after its last frame
        assert len(last.trail) == 2 and last.trail[-1].color == last.ball.color
        assert "main(asyncio)" in last.apartments and "mover-1(asyncio)" in last.apartments
        assert any(a.startswith("MTA(") for a in last.apartments)
        assert 0 <= last.calls_in_flight <= 1
        assert set(last.rates) == {t.thread_id for t in last.threads}
        assert last.elapsed >= first.elapsed

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"mta_movers": 0, "sta_movers": 0},
            {"mta_movers": -1},
            {"backend": "tokio"},
            {"fps": 0},
            {"rate": -1},
            {"seconds": -1},
            {"frames": 0},
            {"size": 10_000},
        ],
    )
    def test_config_validation(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError):
            DemoConfig(**kwargs)  # type: ignore[arg-type]

    def test_mixed_backends(self) -> None:
        config = DemoConfig(sta_movers=4)
        backends = config.sta_backends()
        assert backends[:2] == ["asyncio", "trio"] and len(backends) == 4
        assert config.painter_backend == "asyncio"
        assert DemoConfig(backend="trio", sta_movers=2).sta_backends() == ["trio", "trio"]
        assert DemoConfig(backend="trio").painter_backend == "trio"
