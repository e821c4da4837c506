"""Fault injection: callees raising BaseException subclasses, a loop that dies, a callee blocking its
apartment's thread (the watchdog), finalizers that raise, and closing a runtime while every apartment
is busy. Whatever happens, every call ends: it returns, raises, or is reported cancelled/disconnected."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import aptrt

from .objects import Gate, Signals, wait_event, wait_until

DIED = aptrt.DisconnectReason.APARTMENT_DIED


class IFaulty(aptrt.Interface, iid="3a0d8f5e-2b4c-4f7e-9e61-5d1c7a2b9e01"):
    def raise_sync(self, exc: BaseException) -> None: ...
    async def raise_async(self, exc: BaseException) -> None: ...
    def ok(self) -> str: ...
    async def park(self) -> None: ...
    async def park_then_raise(self, release: threading.Event, exc: BaseException) -> None: ...
    def stop_asyncio_loop(self) -> None: ...
    def block(self, release: threading.Event) -> bool: ...
    async def block_in_task(self, release: threading.Event) -> bool: ...


class Faulty(IFaulty):
    def __init__(self, parked: threading.Event | None = None) -> None:
        self.parked = parked

    def raise_sync(self, exc: BaseException) -> None:
        raise exc

    async def raise_async(self, exc: BaseException) -> None:
        await anyio.lowlevel.checkpoint()
        raise exc

    def ok(self) -> str:
        return threading.current_thread().name

    async def park(self) -> None:
        if self.parked is not None:
            self.parked.set()
        await anyio.sleep_forever()

    async def park_then_raise(self, release: threading.Event, exc: BaseException) -> None:
        if self.parked is not None:
            self.parked.set()
        await anyio.to_thread.run_sync(release.wait, 5)
        raise exc

    def stop_asyncio_loop(self) -> None:
        asyncio.get_running_loop().stop()

    def block(self, release: threading.Event) -> bool:
        """Block this apartment's thread until *release* (the watchdog's report sets it); 5 s at most."""
        return release.wait(5)

    async def block_in_task(self, release: threading.Event) -> bool:
        return release.wait(5)  # blocking the loop from a task is the fault under test


MAIN_STA_SYSTEM_EXIT = """
import sys, anyio, aptrt

class IM(aptrt.Interface, iid="3a0d8f5e-2b4c-4f7e-9e61-5d1c7a2b9e09"):
    def die(self) -> None: ...

class M(IM):
    def die(self) -> None:
        raise SystemExit(7)

async def call_die(proxy):
    await proxy.die()

async def main():
    async with aptrt.Runtime() as rt:
        here = M()
        async with rt.open_sta("x") as sta:
            await sta.run(call_die, here)
            await anyio.sleep(10)
            print("NOT REACHED")

anyio.run(main, backend=sys.argv[1])
"""

FATAL = [
    pytest.param(KeyboardInterrupt("boom"), id="KeyboardInterrupt"),
    pytest.param(SystemExit(3), id="SystemExit"),
]


@pytest.fixture
def aptrt_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="aptrt"):
        yield caplog


async def _assert_died(
    sta: aptrt.STA,
    obj: Any,
    exc: BaseException,
    parked_call: list[BaseException],
    log: pytest.LogCaptureFixture,
    cause: str | None = None,
) -> None:
    """*sta*'s loop died of *exc*: its parked call was disconnected, new calls are refused, it closes."""
    assert sta.failure is exc
    assert sta.closing
    assert len(parked_call) == 1
    assert isinstance(parked_call[0], aptrt.DisconnectedError)
    assert parked_call[0].reason is DIED
    assert (cause or repr(exc)) in str(parked_call[0])
    with pytest.raises(aptrt.ApartmentClosedError) as refused:
        await obj.ok()
    assert refused.value.reason is DIED
    assert refused.value.hresult == aptrt.HRESULT.RPC_E_DISCONNECTED
    await sta.aclose()
    assert sta.thread is not None
    assert not sta.thread.is_alive()
    assert "unhandled exception" not in log.text  # no noise from asyncio's shutdown


async def _park_then(obj: Any, parked: threading.Event, outcome: list[BaseException]) -> None:
    try:
        with anyio.fail_after(5):
            await obj.park()
    except aptrt.COMError as exc:
        outcome.append(exc)


class TestFatalCallee:
    """A callee raising KeyboardInterrupt or SystemExit: its caller gets it, and the loop that ran it
    dies of it (as an asyncio or trio loop does when one of its tasks raises it); everything else
    outstanding there is disconnected, never lost."""

    @pytest.mark.parametrize("exc", FATAL)
    @pytest.mark.parametrize("method", ["raise_sync", "raise_async"])
    async def test_sta_dies(
        self, rt: aptrt.Runtime, sta_backend: str, exc: BaseException, method: str, aptrt_log: Any
    ) -> None:
        sta = await rt.start_sta("faulty", backend=sta_backend)
        parked = threading.Event()
        obj = await sta.create(Faulty, parked)
        outcome: list[BaseException] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_park_then, obj, parked, outcome)
            await wait_event(parked)
            with anyio.fail_after(5), pytest.raises(type(exc)) as raised:
                await getattr(obj, method)(exc)
            assert raised.value is exc
        await _assert_died(sta, obj, exc, outcome, aptrt_log)
        assert f"the event loop of apartment 'faulty' died of {exc!r}" in aptrt_log.text
        async with rt.open_sta(backend=sta_backend) as other:  # the runtime itself is fine
            assert await (await other.create(Faulty)).ok() == f"aptrt-sta-{other.name}"

    async def test_asyncio_loop_stopped(self, rt: aptrt.Runtime, aptrt_log: Any) -> None:
        sta = await rt.start_sta("stopped", backend="asyncio")
        parked = threading.Event()
        obj = await sta.create(Faulty, parked)
        outcome: list[BaseException] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_park_then, obj, parked, outcome)
            await wait_event(parked)
            with anyio.fail_after(5):
                await obj.stop_asyncio_loop()
        assert sta.thread is not None
        await anyio.to_thread.run_sync(sta.thread.join, 5)  # the failure is known once the thread ended
        assert isinstance(sta.failure, RuntimeError)
        await _assert_died(sta, obj, sta.failure, outcome, aptrt_log, cause="its event loop stopped")

    @pytest.mark.parametrize("policy", [aptrt.Reentrancy.NONE, aptrt.Reentrancy.CALL_CHAIN])
    async def test_calls_held_at_a_gate_fail_when_the_loop_dies(
        self, rt: aptrt.Runtime, sta_backend: str, policy: aptrt.Reentrancy, aptrt_log: Any
    ) -> None:
        sta = await rt.start_sta("gated", backend=sta_backend)
        sta.configure(reentrancy=policy)
        parked, release = threading.Event(), threading.Event()
        obj = await sta.create(Faulty, parked)
        other = await rt.start_sta("other", backend=sta_backend)
        outcomes: list[BaseException] = []

        async def call_ok(proxy: IFaulty) -> None:
            await proxy.ok()

        async def call_ok_from_other() -> None:
            try:
                await other.run(call_ok, obj)
            except aptrt.COMError as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as tg:

            async def holder() -> None:
                with anyio.fail_after(5), pytest.raises(SystemExit):
                    await obj.park_then_raise(release, SystemExit(1))

            tg.start_soon(holder)  # holds the gate, then kills the loop
            await wait_event(parked)
            tg.start_soon(call_ok_from_other)  # another causality: waits at the gate
            await wait_until(lambda: len(sta.running_calls()) == 2, "the second call waits at the gate")
            release.set()
        assert len(outcomes) == 1 and isinstance(outcomes[0], aptrt.DisconnectedError)
        assert outcomes[0].reason is DIED
        await other.aclose()
        await sta.aclose()

    @pytest.mark.parametrize("backend", ["asyncio", "trio"])
    def test_main_sta_gets_it_as_if_its_own_code_raised_it(self, backend: str) -> None:
        """A callee on the app's own loop raising SystemExit: the app's loop gets it (run in a child
        process: it ends the program, as it should)."""
        result = subprocess.run(
            [sys.executable, "-c", MAIN_STA_SYSTEM_EXIT, backend],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert "NOT REACHED" not in result.stdout
        assert "SystemExit: 7" in result.stderr or result.returncode == 7
        assert result.returncode != 0

    @pytest.mark.parametrize("exc", FATAL)
    async def test_mta_worker_survives(self, rt: aptrt.Runtime, exc: BaseException) -> None:
        obj = await rt.mta.create(Faulty)
        with anyio.fail_after(5), pytest.raises(type(exc)):
            await obj.raise_sync(exc)
        assert rt.mta.failure is None
        assert (await obj.ok()).startswith("aptrt-mta-")
        assert rt.mta.statistics().failed == 1

    @pytest.mark.parametrize("exc", FATAL)
    async def test_mta_loop_is_replaced(self, rt: aptrt.Runtime, exc: BaseException, aptrt_log: Any) -> None:
        obj = await rt.mta.create(Faulty)
        with anyio.fail_after(5), pytest.raises(type(exc)):
            await obj.raise_async(exc)
        assert rt.mta.failure is None  # the MTA lives on; its next async call starts a new loop
        with anyio.fail_after(5), pytest.raises(ValueError, match="an ordinary error"):
            await obj.raise_async(ValueError("an ordinary error"))
        await wait_until(lambda: "'MTA' died of" in aptrt_log.text, "the old loop's thread logs its death")
        assert "asyncio" not in aptrt_log.text  # (no noise from asyncio's shutdown)

    async def test_sync_callee_raising_a_cancellation_only_fails_its_call(
        self, rt: aptrt.Runtime, sta_backend: str
    ) -> None:
        exc = asyncio.CancelledError()  # (trio.Cancelled cannot be made by hand)
        async with rt.open_sta(backend=sta_backend) as sta:
            obj = await sta.create(Faulty)
            with anyio.fail_after(5), pytest.raises(aptrt.CallCancelledError):
                await obj.raise_sync(exc)
            assert sta.failure is None
            assert await obj.ok() == f"aptrt-sta-{sta.name}"


class IDriver(aptrt.Interface, iid="3a0d8f5e-2b4c-4f7e-9e61-5d1c7a2b9e03"):
    async def drive(self, targets: list[Any], ledger: Ledger) -> int: ...


class Ledger:
    """Every call issued, and every outcome: one per call (list.append is atomic under the GIL)."""

    def __init__(self) -> None:
        self.issued: list[int] = []
        self.outcomes: list[tuple[int, str]] = []
        self.ids = iter(range(10**9))
        self.busy = threading.Event()

    def issue(self) -> int:
        n = next(self.ids)
        self.issued.append(n)
        if len(self.issued) >= 400:
            self.busy.set()
        return n


class Driver(IDriver):
    async def drive(self, targets: list[Any], ledger: Ledger) -> int:
        """Call every target in turn until one is gone; record each call's outcome."""
        n = 0
        while True:
            for target in targets:
                call = ledger.issue()
                try:
                    await target.tick(n)
                except aptrt.DisconnectedError as exc:
                    ledger.outcomes.append((call, type(exc).__name__))
                    return n
                except BaseException:
                    ledger.outcomes.append((call, "caller cancelled"))
                    raise
                ledger.outcomes.append((call, "ok"))
                n += 1


class TestCloseWhileBusy:
    @pytest.mark.timeout(60)
    def test_every_call_ends(self, sta_backend: str) -> None:
        """Close the runtime while every apartment has calls running, parked and queued, made from
        other apartments and from plain threads: each call returns or fails with a typed error."""
        ledger = Ledger()
        sig = Signals()
        threads: list[threading.Thread] = []

        def plain_caller(target: Any, method: str) -> None:
            n = 0
            while True:
                call = ledger.issue()
                try:
                    getattr(target, method)(*((n,) if method == "tick" else ()))
                except (aptrt.DisconnectedError, aptrt.NotInitializedError) as exc:
                    ledger.outcomes.append((call, type(exc).__name__))
                    return
                except BaseException as exc:  # anything else is a failure of the test: record it
                    ledger.outcomes.append((call, repr(exc)))
                    raise
                ledger.outcomes.append((call, "ok"))
                n += 1

        with aptrt.Runtime() as rt:
            stas = [rt.start_sta_blocking(f"busy-{i}", backend=sta_backend) for i in range(4)]
            # plain threads are in the MTA: they call the STAs' objects through proxies, the MTA's directly
            raw = [sta.create_blocking(Gate, sig) for sta in stas] + [rt.mta.create_blocking(Gate, sig)]
            for gate in [aptrt.blocking(proxy) for proxy in raw[:-1]]:
                for method in ("tick", "tick", "hold_async"):
                    threads.append(threading.Thread(target=plain_caller, args=(gate, method)))
            for i, sta in enumerate(stas):
                driver = aptrt.blocking(sta.create_blocking(Driver))
                others = [proxy for j, proxy in enumerate(raw) if j != i]
                threads.append(threading.Thread(target=plain_caller_drive, args=(driver, others, ledger)))
            for thread in threads:
                thread.start()
            assert ledger.busy.wait(10), "the load never got going"
        # the runtime closed under load: every caller ends, and every call issued has one outcome
        for thread in threads:
            thread.join(10)
        assert not [t for t in threads if t.is_alive()]
        ids = [call for call, _ in ledger.outcomes]
        assert len(ids) == len(set(ids)), "a call ended twice"
        assert sorted(ids) == sorted(ledger.issued), "a call was lost"
        kinds = {kind for _, kind in ledger.outcomes}
        assert kinds <= {"ok", "DisconnectedError", "ApartmentClosedError", "NotInitializedError", "caller cancelled"}
        assert "ok" in kinds and kinds & {"DisconnectedError", "ApartmentClosedError", "NotInitializedError"}

    async def test_close_waits_for_a_blocked_sync_callee(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta("blocked", backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        results: list[str] = []
        async with anyio.create_task_group() as tg:

            async def hold() -> None:
                results.append(await gate.hold())

            async def queued() -> None:
                try:
                    await gate.tick(1)
                except aptrt.DisconnectedError as exc:
                    results.append(type(exc).__name__)

            tg.start_soon(hold)
            await wait_event(sig.entered)
            tg.start_soon(queued)
            await anyio.lowlevel.checkpoint()
            tg.start_soon(sta.aclose)
            await wait_until(lambda: sta.closing, "the STA is closing")
            sig.release.set()  # the running call finishes; the queued one is refused
        assert sorted(results) in (["ApartmentClosedError", "released"], ["1", "released"])
        assert sta.closed


def plain_caller_drive(driver: Any, targets: list[Any], ledger: Ledger) -> None:
    call = ledger.issue()
    try:
        driver.drive(targets, ledger)
    except (aptrt.DisconnectedError, aptrt.NotInitializedError) as exc:
        ledger.outcomes.append((call, type(exc).__name__))
    else:
        ledger.outcomes.append((call, "ok"))


class StallLog:
    """The watchdog's reports, as ``on_stall`` receives them; each one lets the blocked callee go."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.reports: list[aptrt.StallReport] = []

    def __call__(self, report: aptrt.StallReport) -> None:
        self.reports.append(report)
        self.release.set()


class TestWatchdog:
    async def test_reports_a_blocked_sta_with_its_stack(self, sta_backend: str) -> None:
        on_stall = StallLog()
        release, reports = on_stall.release, on_stall.reports

        async with aptrt.Runtime(watchdog=0.05, on_stall=on_stall) as rt:
            assert rt.watchdog is not None
            async with rt.open_sta("stuck", backend=sta_backend) as sta:
                obj = await sta.create(Faulty)
                with anyio.fail_after(10):
                    assert await obj.block(release) is True  # released by the watchdog's report
                await wait_until(lambda: not rt.watchdog.stalled(), "the next heartbeat is answered")  # type: ignore[union-attr]
        assert len(reports) == 1
        report = reports[0]
        assert report.apartment == "stuck"
        assert report.thread == "aptrt-sta-stuck"
        assert report.method == "block"
        assert report.caller == "main"
        assert report.blocked_for >= 0.05
        assert "in block" in report.stack and "release.wait(5)" in report.stack
        assert "has not answered" in str(report) and "'block'" in str(report)
        assert not any(t.name == "aptrt-watchdog" for t in threading.enumerate())

    async def test_reports_a_task_blocking_its_loop(self, sta_backend: str) -> None:
        on_stall = StallLog()
        release, reports = on_stall.release, on_stall.reports

        async with (
            aptrt.Runtime(watchdog=0.05, on_stall=on_stall) as rt,
            rt.open_sta("task", backend=sta_backend) as sta,
        ):
            obj = await sta.create(Faulty)
            with anyio.fail_after(10):
                assert await obj.block_in_task(release) is True
        assert [r.method for r in reports] == ["block_in_task"]

    async def test_watches_the_main_sta_and_the_mta_loop(self) -> None:
        on_stall = StallLog()
        release, reports = on_stall.release, on_stall.reports

        async with aptrt.Runtime(watchdog=0.05, on_stall=on_stall) as rt:
            here = Faulty()  # lives in the main STA (this test's loop)

            async def block_from_there(proxy: IFaulty, release: threading.Event) -> bool:
                return await proxy.block(release)  # type: ignore[no-any-return, misc]

            async with rt.open_sta("caller") as sta:
                with anyio.fail_after(10):
                    assert await sta.run(block_from_there, here, release) is True
            release.clear()
            mta_obj = await rt.mta.create(Faulty)
            with anyio.fail_after(10):
                assert await mta_obj.block_in_task(release) is True
        assert [(r.apartment, r.method) for r in reports] == [("main", "block"), ("MTA", "block_in_task")]
        assert reports[0].caller == "caller"

    async def test_default_report_is_a_warning(self, aptrt_log: Any) -> None:
        release = threading.Event()
        async with aptrt.Runtime(watchdog=0.05) as rt, rt.open_sta("logged") as sta:
            obj = await sta.create(Faulty)
            async with anyio.create_task_group() as tg:
                tg.start_soon(obj.block, release)
                await wait_until(lambda: "has not answered" in aptrt_log.text, "the stall is logged")
                release.set()
            await wait_until(lambda: "answers again" in aptrt_log.text, "the recovery is logged")
        assert "apartment 'logged' has not answered" in aptrt_log.text
        assert "release.wait(5)" in aptrt_log.text

    async def test_dump_shows_a_blocked_apartment(self) -> None:
        release = threading.Event()
        dumped: list[str] = []

        def on_stall(report: aptrt.StallReport) -> None:
            dumped.append(aptrt.dump(report_runtime[0], file=io.StringIO()))
            release.set()

        report_runtime: list[aptrt.Runtime] = []
        async with aptrt.Runtime(watchdog=0.05, on_stall=on_stall) as rt, rt.open_sta("dumped") as sta:
            report_runtime.append(rt)
            obj = await sta.create(Faulty)
            with anyio.fail_after(10):
                assert await obj.block(release) is True
        assert len(dumped) == 1
        assert "sta 'dumped': BLOCKED" in dumped[0]

    async def test_no_report_while_calls_flow(self, sta_backend: str) -> None:
        reports: list[aptrt.StallReport] = []
        rt = aptrt.Runtime(watchdog=0.5, watchdog_interval=0.01, on_stall=reports.append)
        async with rt, rt.open_sta(backend=sta_backend) as sta:
            obj = await sta.create(Faulty)
            for _ in range(300):
                await obj.ok()
        assert reports == []

    async def test_a_failing_callback_is_logged(self, aptrt_log: Any) -> None:
        release = threading.Event()

        def on_stall(report: aptrt.StallReport) -> None:
            release.set()
            raise RuntimeError("callback bug")

        async with aptrt.Runtime(watchdog=0.05, on_stall=on_stall) as rt, rt.open_sta() as sta:
            obj = await sta.create(Faulty)
            with anyio.fail_after(10):
                assert await obj.block(release) is True
        assert "on_stall callback failed" in aptrt_log.text

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"watchdog": 0}, aptrt.InvalidArgumentError),
            ({"watchdog": -1.0}, aptrt.InvalidArgumentError),
            ({"watchdog": float("nan")}, aptrt.InvalidArgumentError),
            ({"watchdog": float("inf")}, aptrt.InvalidArgumentError),
            ({"watchdog": "1"}, aptrt.InvalidArgumentError),
            ({"watchdog": True}, aptrt.InvalidArgumentError),
            ({"watchdog": 1, "watchdog_interval": 0}, aptrt.InvalidArgumentError),
            ({"watchdog_interval": 1}, aptrt.InvalidArgumentError),
        ],
        ids=repr,
    )
    def test_bad_arguments(self, kwargs: dict[str, Any], error: type[Exception]) -> None:
        with pytest.raises(error):
            aptrt.Runtime(**kwargs)

    def test_sync_runtime(self) -> None:
        on_stall = StallLog()
        release, reports = on_stall.release, on_stall.reports

        with aptrt.Runtime(watchdog=0.05, on_stall=on_stall) as rt:
            sta = rt.start_sta_blocking("plain", backend="trio")
            obj = aptrt.blocking(sta.create_blocking(Faulty))
            assert obj.block(release) is True
            sta.close_blocking()
        assert [(r.apartment, r.caller) for r in reports] == [("plain", "MTA")]  # a plain thread is in the implicit MTA


class Finalized:
    """An object whose finalizer raises."""

    collected = threading.Event()

    def __del__(self) -> None:
        Finalized.collected.set()
        raise RuntimeError("finalizer bug")


class IHolder(aptrt.Interface, iid="3a0d8f5e-2b4c-4f7e-9e61-5d1c7a2b9e02"):
    def ping(self) -> int: ...


class Holder(IHolder):
    def __init__(self) -> None:
        self.payload = Finalized()

    def ping(self) -> int:
        return 1


class TestFinalizers:
    @pytest.mark.parametrize("how", ["release", "drop"])
    async def test_a_raising_finalizer_leaves_the_apartment_serving(
        self, rt: aptrt.Runtime, sta_backend: str, how: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        unraisable: list[Any] = []
        monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
        Finalized.collected.clear()
        async with rt.open_sta(backend=sta_backend) as sta:
            proxy = await sta.create(Holder)
            keep = await sta.create(Holder)
            assert await proxy.ping() == 1
            if how == "release":
                proxy.release()
            del proxy
            gc.collect()
            with anyio.fail_after(5):
                while not Finalized.collected.is_set():
                    sta.statistics()  # flushes GC-dropped references on the home thread
                    await anyio.sleep(0.01)
            assert await keep.ping() == 1
            assert sta.statistics().exported == 1
            keep.release()
            del keep
        gc.collect()
        assert any(isinstance(u.exc_value, RuntimeError) and "finalizer bug" in str(u.exc_value) for u in unraisable)
