from __future__ import annotations

import asyncio
import pickle
import threading
import traceback

import anyio
import anyio.lowlevel
import pytest

import aptrt

from .objects import Gate, ICounter, Signals, wait_event, wait_until


class IFail(aptrt.Interface, iid="1c24718d-9197-414a-afc5-e3d9e103b6a8"):
    def fail_sync(self, message: str) -> None: ...
    async def fail_async(self, message: str) -> None: ...
    async def relay(self, other: aptrt.Proxy[IFail], message: str) -> None: ...


class Failing(IFail):
    """Raises, keeping each exception it raised in ``raised`` (passed by reference)."""

    def __init__(self, raised: list[BaseException]) -> None:
        self.raised = raised

    def fail_sync(self, message: str) -> None:
        exc = ValueError(message)
        self.raised.append(exc)
        raise exc

    async def fail_async(self, message: str) -> None:
        await anyio.lowlevel.checkpoint()
        exc = KeyError(message)
        self.raised.append(exc)
        raise exc

    async def relay(self, other: aptrt.Proxy[IFail], message: str) -> None:
        await other.fail_sync(message)


def _frames(exc: BaseException) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(exc.__traceback__)]


class TestHRESULT:
    def test_alias(self) -> None:
        assert aptrt.HRESULT.CO_E_NOTSUPPORTED is aptrt.HRESULT.CO_E_NOT_SUPPORTED
        assert aptrt.HRESULT.CO_E_NOTSUPPORTED == aptrt.HRESULT.CO_E_NOT_SUPPORTED == 0x80004021 - (1 << 32)
        assert aptrt.HRESULT.CO_E_NOTSUPPORTED == -2147467231

    def test_values_are_signed_32_bit(self) -> None:
        for member in aptrt.HRESULT:
            assert -(1 << 31) <= member.value < (1 << 31), member
            assert member.failed == (member.value < 0)
        assert aptrt.HRESULT.E_FAIL == -2147467259
        assert aptrt.HRESULT.RPC_E_WRONG_THREAD == 0x8001010E - (1 << 32)
        assert aptrt.HRESULT.S_OK == 0
        assert not aptrt.HRESULT.S_FALSE.failed

    def test_hex(self) -> None:
        assert aptrt.HRESULT.E_FAIL.hex == "0x80004005"
        assert aptrt.HRESULT.E_NOINTERFACE.hex == "0x80004002"
        assert aptrt.HRESULT.S_FALSE.hex == "0x00000001"

    @pytest.mark.parametrize(
        ("cls", "code"),
        [
            (aptrt.COMError, aptrt.HRESULT.E_FAIL),
            (aptrt.DisconnectedError, aptrt.HRESULT.RPC_E_DISCONNECTED),
            (aptrt.ApartmentClosedError, aptrt.HRESULT.RPC_E_DISCONNECTED),
            (aptrt.ObjectNotConnectedError, aptrt.HRESULT.CO_E_OBJNOTCONNECTED),
            (aptrt.WrongThreadError, aptrt.HRESULT.RPC_E_WRONG_THREAD),
            (aptrt.NotInitializedError, aptrt.HRESULT.CO_E_NOTINITIALIZED),
            (aptrt.ChangedModeError, aptrt.HRESULT.RPC_E_CHANGED_MODE),
            (aptrt.WouldDeadlockError, aptrt.HRESULT.CONTEXT_E_WOULD_DEADLOCK),
            (aptrt.NotSupportedError, aptrt.HRESULT.CO_E_NOTSUPPORTED),
            (aptrt.ClassNotRegisteredError, aptrt.HRESULT.REGDB_E_CLASSNOTREG),
            (aptrt.NoInterfaceError, aptrt.HRESULT.E_NOINTERFACE),
            (aptrt.InvalidArgumentError, aptrt.HRESULT.E_INVALIDARG),
            (aptrt.CallRejectedError, aptrt.HRESULT.RPC_E_CALL_REJECTED),
            (aptrt.RetryLaterError, aptrt.HRESULT.RPC_E_SERVERCALL_RETRYLATER),
            (aptrt.CallCancelledError, aptrt.HRESULT.RPC_E_CALL_CANCELED),
            (aptrt.RPCTimeoutError, aptrt.HRESULT.RPC_E_TIMEOUT),
        ],
    )
    def test_error_codes(self, cls: type[aptrt.COMError], code: aptrt.HRESULT) -> None:
        exc = cls()
        assert isinstance(exc, aptrt.COMError)
        assert exc.hresult == code
        assert exc.hresult < 0
        assert type(exc.hresult) is int
        assert exc.hresult_name == code.name
        assert code.name in str(exc)

    def test_comerror_hresult_is_signed(self) -> None:
        assert aptrt.COMError(hresult=aptrt.HRESULT.E_NOTIMPL).hresult == -2147467263
        # the unsigned spelling of winerror.h names the same code
        exc = aptrt.COMError("not implemented", hresult=0x80004001)
        assert exc.hresult == aptrt.HRESULT.E_NOTIMPL
        assert exc.hresult_name == "E_NOTIMPL"

    def test_unknown_code(self) -> None:
        exc = aptrt.COMError(hresult=-1)
        assert exc.hresult == -1
        assert exc.hresult_name == "0xFFFFFFFF"

    def test_classes(self) -> None:
        assert issubclass(aptrt.ApartmentClosedError, aptrt.DisconnectedError)
        assert issubclass(aptrt.ObjectNotConnectedError, aptrt.DisconnectedError)
        assert issubclass(aptrt.RetryLaterError, aptrt.CallRejectedError)
        for misuse in (aptrt.WrongThreadError, aptrt.NotInitializedError, aptrt.ChangedModeError):
            assert issubclass(misuse, RuntimeError)
        assert issubclass(aptrt.RPCTimeoutError, TimeoutError)
        assert issubclass(aptrt.InvalidArgumentError, ValueError)
        assert aptrt.DisconnectedError().reason is aptrt.DisconnectReason.SERVER_SHUTDOWN
        assert aptrt.WouldDeadlockError(cycle=["a", "b"]).cycle == ("a", "b")
        assert aptrt.CallCancelledError(reason="gone").reason == "gone"

    def test_pickle(self) -> None:
        exc = aptrt.DisconnectedError("gone", reason=aptrt.DisconnectReason.OBJECT_DISCONNECTED)
        clone = pickle.loads(pickle.dumps(exc))
        assert type(clone) is aptrt.DisconnectedError
        assert (clone.message, clone.hresult, clone.reason) == ("gone", exc.hresult, exc.reason)
        assert str(clone) == str(exc)


class TestRemoteErrors:
    async def test_sync_callee(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta("thrower", backend=sta_backend)
        raised: list[BaseException] = []
        proxy = await sta.create(Failing, aptrt.by_reference(raised))
        with pytest.raises(ValueError, match="sync boom") as excinfo:
            await proxy.fail_sync("sync boom")
        assert excinfo.value is raised[0]  # the exception itself, not a copy or a wrapper
        assert "fail_sync" in _frames(excinfo.value)
        notes = excinfo.value.__notes__
        assert any("'thrower'" in note and "fail_sync" in note for note in notes)

    async def test_async_callee(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta("thrower", backend=sta_backend)
        raised: list[BaseException] = []
        proxy = await sta.create(Failing, aptrt.by_reference(raised))
        with pytest.raises(KeyError) as excinfo:
            await proxy.fail_async("async boom")
        assert excinfo.value is raised[0]
        assert "fail_async" in _frames(excinfo.value)
        assert any("'thrower'" in note for note in excinfo.value.__notes__)

    async def test_mta_callee(self, rt: aptrt.Runtime) -> None:
        raised: list[BaseException] = []
        proxy = await rt.mta.create(Failing, aptrt.by_reference(raised))
        for method in (proxy.fail_sync, proxy.fail_async):
            with pytest.raises((ValueError, KeyError)) as excinfo:
                await method("mta boom")
            assert excinfo.value is raised[-1]
            assert any("'MTA'" in note for note in excinfo.value.__notes__)

    async def test_through_two_apartments(self, rt: aptrt.Runtime) -> None:
        first = await rt.start_sta("first")
        second = await rt.start_sta("second", backend="trio")
        raised: list[BaseException] = []
        relay = await first.create(Failing, aptrt.by_reference(raised))
        thrower = await second.create(Failing, aptrt.by_reference(raised))
        with pytest.raises(ValueError) as excinfo:
            await relay.relay(thrower, "deep")
        assert excinfo.value is raised[0]
        assert {"relay", "fail_sync"} <= set(_frames(excinfo.value))
        notes = excinfo.value.__notes__
        assert any("'second'" in note for note in notes)
        assert any("'first'" in note for note in notes)

    async def test_plain_thread_caller(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta("thrower", backend=sta_backend)
        raised: list[BaseException] = []

        def plain() -> BaseException:
            proxy = sta.create_blocking(Failing, aptrt.by_reference(raised))
            with pytest.raises(KeyError) as excinfo:
                aptrt.blocking(proxy).fail_async("from a thread")
            return excinfo.value

        exc = await anyio.to_thread.run_sync(plain)
        assert exc is raised[0]
        assert "fail_async" in _frames(exc)

    async def test_run_sync_error(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta("thrower")

        def divide() -> float:
            return 1 / 0

        with pytest.raises(ZeroDivisionError) as excinfo:
            await sta.run_sync(divide)
        assert "divide" in _frames(excinfo.value)
        assert any("'thrower'" in note for note in excinfo.value.__notes__)

    async def test_failed_statistics(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Failing, aptrt.by_reference([]))
        for method, error in (
            (proxy.fail_sync, ValueError),
            (proxy.fail_async, KeyError),
            (proxy.fail_sync, ValueError),
        ):
            with pytest.raises(error):
                await method("x")
        stats = sta.statistics()
        assert (stats.completed, stats.failed) == (1, 3)


class TestCancellation:
    async def test_cancel_caller_cancels_async_callee(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def cancel_when_entered() -> None:
                    await wait_event(sig.entered)
                    scope.cancel()

                tg.start_soon(cancel_when_entered)
                await gate.hold_async()
        assert scope.cancelled_caught
        await wait_event(sig.done)
        assert sig.log == ["cancelled"]

        await sta.run_sync(int)  # a round trip: the callee's bookkeeping is done
        stats = sta.statistics()
        assert (stats.cancelled, stats.running, stats.queued, stats.failed, stats.expired) == (1, 0, 0, 0, 0)

    async def test_cancel_from_an_sta_caller(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        home = await rt.start_sta(backend=sta_backend)
        caller = await rt.start_sta(backend="trio" if sta_backend != "trio" else "asyncio")
        sig = Signals()
        gate = await home.create(Gate, sig)

        async def call_then_cancel(p: aptrt.Proxy[Gate]) -> bool:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:

                    async def cancel_when_entered() -> None:
                        await wait_event(sig.entered)
                        scope.cancel()

                    tg.start_soon(cancel_when_entered)
                    await p.hold_async()
            return scope.cancelled_caught

        assert await caller.run(call_then_cancel, gate)
        await wait_event(sig.done)
        assert sig.log == ["cancelled"]
        await home.run_sync(int)
        assert home.statistics().cancelled == 1

    async def test_move_on_after_is_quiet(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        # The callee runs under the caller's deadline; when it expires, the caller's own scope must
        # absorb it: a move_on_after never raises.
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        for _ in range(50):
            with anyio.move_on_after(0.001) as scope:
                await gate.sleep(10)
            assert scope.cancelled_caught

        def settled() -> bool:
            stats = sta.statistics()
            return stats.cancelled + stats.expired == 50 and stats.running == 0

        # each call was stopped in the callee, or never started: either way it is accounted for
        await wait_until(settled, "every call is accounted for")
        assert sta.statistics().failed == 0

    async def test_check_cancelled_in_sync_callee(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def cancel_when_entered() -> None:
                    await wait_event(sig.entered)
                    scope.cancel()

                tg.start_soon(cancel_when_entered)
                await gate.wait_then_check()
        assert scope.cancelled_caught
        sig.release.set()  # the callee goes on, and asks whether it should
        await wait_event(sig.done)
        assert len(sig.log) == 1
        assert isinstance(sig.log[0], aptrt.CallCancelledError)
        assert sig.log[0].hresult == aptrt.HRESULT.RPC_E_CALL_CANCELED

        await sta.run_sync(int)
        stats = sta.statistics()
        assert (stats.cancelled, stats.failed, stats.running) == (1, 0, 0)

    def test_outside_any_runtime(self) -> None:
        aptrt.check_cancelled()  # not serving a call: nothing to check
        assert aptrt.current_causality() is None

    async def test_check_cancelled_when_not_cancelled(self, rt: aptrt.Runtime) -> None:
        aptrt.check_cancelled()  # outside any call: nothing to do
        sta = await rt.start_sta()
        sig = Signals()
        sig.release.set()
        gate = await sta.create(Gate, sig)
        assert await gate.wait_then_check() == "finished"
        assert sig.log == ["not cancelled"]

    async def test_check_cancelled_when_apartment_closes(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        outcome: list[object] = []

        async def call() -> None:
            try:
                outcome.append(await gate.wait_then_check())
            except aptrt.COMError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await wait_event(sig.entered)
            tg.start_soon(sta.aclose)
            await anyio.wait_all_tasks_blocked()
            sig.release.set()
        assert isinstance(sig.log[0], aptrt.DisconnectedError)
        assert outcome == [sig.log[0]]

    async def test_cancelled_while_queued_never_runs(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.hold)
            await wait_event(sig.entered)
            with anyio.CancelScope() as scope:

                async def cancel() -> None:
                    scope.cancel()

                tg.start_soon(cancel)
                await gate.tick(1)
            assert scope.cancelled_caught
            sig.release.set()
        await sta.run_sync(int)
        assert sig.log == ["hold"]
        stats = sta.statistics()
        assert (stats.cancelled, stats.queued, stats.running) == (1, 0, 0)


class IStray(aptrt.Interface, iid="92b81ec8-4562-4be5-9d6b-f3b772a872a8"):
    async def stray(self) -> None: ...
    def ok(self) -> str: ...


class Stray(IStray):
    async def stray(self) -> None:
        # a CancelledError of *another* task escapes the method: not a cancellation of this call
        task = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        task.cancel()
        await task

    def ok(self) -> str:
        return "ok"


class TestStrayCancellation:
    @pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
    async def test_sta_survives(self, rt: aptrt.Runtime, backend: str) -> None:
        sta = await rt.start_sta(backend=backend)
        proxy = await sta.create(Stray)
        with pytest.raises(aptrt.CallCancelledError):
            await proxy.stray()
        assert sta.thread is not None
        # a loop that lets the stray cancellation through dies within moments; give it the chance
        await anyio.to_thread.run_sync(sta.thread.join, 0.2)
        assert sta.thread.is_alive()
        assert await proxy.ok() == "ok"

    async def test_mta_loop_survives(self) -> None:
        async with aptrt.Runtime(backend="asyncio") as rt:
            proxy = await rt.mta.create(Stray)
            with pytest.raises(aptrt.CallCancelledError):
                await proxy.stray()
            loop_thread = next(t for t in threading.enumerate() if t.name == "aptrt-mta-loop")
            await anyio.to_thread.run_sync(loop_thread.join, 0.2)
            assert loop_thread.is_alive()

            async def still_serving() -> str:
                return "ok"

            assert await rt.mta.run(still_serving) == "ok"


class TestDeadlines:
    async def test_fail_after(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        with pytest.raises(TimeoutError), anyio.fail_after(0.1):
            await gate.sleep(10)
        await wait_event(sig.done)
        assert sig.log == ["cancelled"]
        await sta.run_sync(int)
        stats = sta.statistics()
        assert stats.cancelled + stats.expired == 1
        assert stats.running == 0

    async def test_deadline_reaches_a_chain(self, rt: aptrt.Runtime) -> None:
        first = await rt.start_sta("first")
        second = await rt.start_sta("second", backend="trio")
        sig = Signals()
        gate = await second.create(Gate, sig)

        remaining: list[float] = []

        async def relay(p: aptrt.Proxy[Gate]) -> None:
            remaining.append(anyio.current_effective_deadline() - anyio.current_time())
            await p.sleep(10)

        with pytest.raises(TimeoutError), anyio.fail_after(0.2):
            await first.run(relay, gate)
        assert 0 < remaining[0] <= 0.2  # the first STA ran under the caller's deadline
        await wait_event(sig.done)
        assert sig.log == ["cancelled"]  # and so did the second

    async def test_blocking_timeout_while_queued(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        held: list[aptrt.Proxy[Gate]] = []
        await rt.mta.run_sync(held.append, gate)

        def plain() -> None:
            aptrt.blocking(held[0], timeout=0.05).tick(1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.hold)
            await wait_event(sig.entered)
            with pytest.raises(TimeoutError):
                await anyio.to_thread.run_sync(plain)
            sig.release.set()
        await sta.run_sync(int)
        assert sig.log == ["hold"]  # the abandoned call never started
        stats = sta.statistics()
        assert stats.cancelled + stats.expired == 1

    async def test_blocking_timeout_while_running(self, rt: aptrt.Runtime, sta_backend: str) -> None:
        sta = await rt.start_sta(backend=sta_backend)
        sig = Signals()
        gate = await sta.create(Gate, sig)
        held: list[aptrt.Proxy[Gate]] = []
        await rt.mta.run_sync(held.append, gate)

        def plain() -> None:
            aptrt.blocking(held[0], timeout=0.25).hold_async()

        with pytest.raises(TimeoutError):
            await anyio.to_thread.run_sync(plain)
        await wait_event(sig.done)
        assert sig.log == ["cancelled"]

    async def test_invalid_timeout(self, rt: aptrt.Runtime) -> None:
        sta = await rt.start_sta()
        proxy = await sta.create(Gate, Signals())
        held: list[aptrt.Proxy[ICounter]] = []
        await rt.mta.run_sync(held.append, proxy)
        for bad in (-1.0, float("nan")):
            with pytest.raises(ValueError):
                await anyio.to_thread.run_sync(lambda t=bad: aptrt.blocking(held[0], timeout=t).tick(1))
            with pytest.raises(ValueError):
                await anyio.to_thread.run_sync(lambda t=bad: sta.run_sync_blocking(int, timeout=t))
