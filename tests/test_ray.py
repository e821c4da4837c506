"""Apartments in Ray actors (``aptrt.ray``): the same proxies, deadlines, cancellation, errors, references
and activation as a local STA, across a process boundary. Each test starts its own actor(s) in one local
Ray instance shared by the session (``aptrt_ray``, from aptrt.testing)."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator

import anyio
import pytest
import sniffio

import aptrt
from aptrt.ray import RayHost, RemoteApartment, RemoteError
from tests.objects_ray import (
    Callback,
    IProbe,
    IRemote,
    Probe,
    Remote,
    Served,
    pid_and_thread,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _ray(aptrt_ray: object) -> object:
    return aptrt_ray


@pytest.fixture
async def remote(rt: aptrt.Runtime) -> AsyncIterator[RemoteApartment]:
    sta = await rt.start_sta("far", host=RayHost())
    assert isinstance(sta, RemoteApartment)
    yield sta
    await sta.aclose()


async def wait_until(predicate, what: str, seconds: float = 20.0) -> None:
    """Poll an async *predicate* (each poll is a round trip, not a sleep) until it holds, or fail."""
    with anyio.fail_after(seconds):
        while not await predicate():
            await anyio.lowlevel.checkpoint()
    assert await predicate(), what


async def start_slow_call(tg, remote: RemoteApartment, obj, seconds: float, catch: type[BaseException]) -> list:
    """Start ``obj.sleep(seconds)`` in *tg* and return once it runs in the actor; the list collects its
    result, or the *catch* error it ends with."""
    outcome: list = []

    async def slow() -> None:
        try:
            outcome.append(await obj.sleep(seconds))
        except catch as exc:
            outcome.append(exc)

    tg.start_soon(slow)
    await wait_until(_running_in(remote, 1), "the slow call is running")
    return outcome


# -- where things run ------------------------------------------------------------------------------------


async def test_objects_live_in_the_actor_process_on_one_sta_thread(remote: RemoteApartment) -> None:
    obj = await remote.create(Remote, 5)
    assert isinstance(obj, aptrt.Proxy)
    assert obj.target_apartment is remote
    assert await obj.add(3) == 8
    assert await obj.add_async(2) == 10
    places = {await obj.where() for _ in range(5)}
    assert len(places) == 1
    pid, _ = places.pop()
    assert pid != os.getpid()
    assert remote.pid == pid
    assert await remote.run_sync(pid_and_thread) == (pid, "aptrt-sta-far")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_the_remote_sta_runs_the_backend_asked_for(rt: aptrt.Runtime, backend: str) -> None:
    sta = await rt.start_sta("far", backend=backend, host=RayHost())
    try:
        assert await sta.run(_library) == backend
    finally:
        await sta.aclose()


async def _library() -> str:
    return sniffio.current_async_library()


async def test_many_calls_in_flight_all_come_back(remote: RemoteApartment) -> None:
    obj = await remote.create(Remote)
    results: list[int] = []

    async def caller(k: int) -> None:
        for _ in range(25):
            results.append(await obj.echo(k))

    async with anyio.create_task_group() as tg:
        for k in range(16):
            tg.start_soon(caller, k)
    assert sorted(results) == sorted(k for k in range(16) for _ in range(25))
    stats = remote.statistics()
    assert stats.completed >= 400
    assert stats.running == 0


# -- errors -----------------------------------------------------------------------------------------------


async def test_a_remote_exception_comes_back_as_itself_with_the_remote_traceback(remote: RemoteApartment) -> None:
    obj = await remote.create(Remote)
    with pytest.raises(KeyError, match="boom") as info:
        await obj.fail("boom")
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "remote traceback" in notes
    assert "objects_ray.py" in notes


async def test_a_com_error_keeps_its_hresult(remote: RemoteApartment) -> None:
    probe = await remote.create(Probe, interface=IProbe)
    with pytest.raises(aptrt.COMError) as info:
        await probe.raise_com()
    assert info.value.hresult == 0x80040001 - (1 << 32)
    assert "custom failure" in str(info.value)


async def test_an_exception_that_cannot_travel_becomes_a_remote_error(remote: RemoteApartment) -> None:
    probe = await remote.create(Probe, interface=IProbe)
    with pytest.raises(RemoteError, match="no way back") as info:
        await probe.raise_unpicklable()
    assert info.value.type_name == "_Unpicklable"


async def test_a_result_that_cannot_travel_fails_that_call_only(remote: RemoteApartment) -> None:
    probe = await remote.create(Probe, interface=IProbe)
    with pytest.raises(TypeError, match="cannot cross to another process"):
        await probe.unpicklable_result()
    assert await aptrt.query_interface(probe, IRemote).add(1) == 1


async def test_an_argument_that_cannot_travel_fails_that_call_only(remote: RemoteApartment) -> None:
    obj = await remote.create(Remote)
    with pytest.raises(TypeError, match="cannot cross to another process"):
        await obj.echo(threading.Lock())
    assert await obj.echo([1, (2, "x")]) == [1, (2, "x")]


# -- deadlines and cancellation -------------------------------------------------------------------------


async def test_the_callers_deadline_stops_the_remote_callee(remote: RemoteApartment) -> None:
    probe = await remote.create(Probe, interface=IProbe)
    obj = aptrt.query_interface(probe, IRemote)
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.3):
            await obj.sleep(30)

    async def cancelled_once() -> bool:
        return await probe.cancelled_count() == 1

    await wait_until(cancelled_once, "the remote callee was cancelled by the deadline")


async def test_cancelling_the_caller_cancels_the_remote_callee(remote: RemoteApartment) -> None:
    probe = await remote.create(Probe, interface=IProbe)
    obj = aptrt.query_interface(probe, IRemote)
    with anyio.move_on_after(0.3) as scope:
        await obj.sleep(30)
    assert scope.cancelled_caught

    async def cancelled_once() -> bool:
        return await probe.cancelled_count() == 1

    await wait_until(cancelled_once, "the remote callee saw the cancellation")
    assert remote.statistics().cancelled >= 1


async def test_a_pending_call_can_be_cancelled(remote: RemoteApartment) -> None:
    probe = await remote.create(Probe, interface=IProbe)
    pending = aptrt.begin(aptrt.query_interface(probe, IRemote).sleep, 30)
    await wait_until(_running_in(remote, 1), "the call is running there")
    pending.cancel()
    with pytest.raises(aptrt.CallCancelledError):
        await pending

    async def cancelled_once() -> bool:
        return await probe.cancelled_count() == 1

    await wait_until(cancelled_once, "the remote callee saw the cancellation")


# -- references both ways ------------------------------------------------------------------------------


async def test_a_remote_object_returned_by_a_remote_call_is_a_proxy_to_it(remote: RemoteApartment) -> None:
    obj = await remote.create(Remote)
    child = await obj.make_child(7)
    assert isinstance(child, aptrt.Proxy)
    assert child.target_apartment is remote
    assert await child.add(1) == 8
    assert await obj.same(obj) is True  # a proxy sent home arrives as the object itself
    assert await obj.same(child) is False


async def test_a_remote_proxy_passed_to_a_local_sta_and_back(rt: aptrt.Runtime, remote: RemoteApartment) -> None:
    obj = await remote.create(Remote, 1)
    async with rt.open_sta("local") as local:
        relay = await local.create(Remote)
        # the local object keeps the remote proxy (marshaled into its STA), and calls it from there
        await relay.keep(obj)
        assert await relay.echo(obj) == obj
        assert await local.run(_add_through, obj) == 3
    assert await obj.same(obj)


async def _add_through(proxy: aptrt.Proxy[IRemote]) -> int:
    return await proxy.add(2)  # type: ignore[no-any-return]


async def test_an_object_of_one_actor_passed_to_another(rt: aptrt.Runtime, remote: RemoteApartment) -> None:
    other = await rt.start_sta("other", host=RayHost())
    try:
        a = await remote.create(Remote, 10)
        b = await other.create(Remote)
        assert await b.add_to(a, 5) == 15  # b calls a (relayed through this process)
        assert await b.echo(a) == a
        assert (await a.where())[0] != (await b.where())[0]
    finally:
        await other.aclose()


async def test_a_release_that_overtakes_the_reply_carrying_the_object_back(
    rt: aptrt.Runtime, remote: RemoteApartment
) -> None:
    """``b.echo(a)`` hands ``a`` to ``b``'s process; ``b`` lets go of it as the call ends, so its RELEASE
    can reach this process before the reply that carries ``a`` back (they travel on two Ray returns).
    Forced here: replies that carry a reference wait until a RELEASE has been taken in."""
    from aptrt.ray._wire import RELEASE, REPLY, HomeRef

    other = await rt.start_sta("other", host=RayHost())
    try:
        endpoint = other.endpoint  # type: ignore[attr-defined]
        receive = endpoint.receive
        held: list[tuple[object, ...]] = []

        def reordering(messages: list[tuple[object, ...]]) -> None:
            carrying = [m for m in messages if m[0] == REPLY and type(m[3]) is HomeRef]
            held.extend(carrying)
            receive([m for m in messages if not any(m is c for c in carrying)])
            if held and any(m[0] == RELEASE for m in messages):
                late = held[:]
                held.clear()
                receive(late)

        endpoint.receive = reordering
        a = await remote.create(Remote, 10)
        b = await other.create(Remote)
        with anyio.fail_after(20):
            for _ in range(3):
                assert await b.echo(a) == a
        assert await a.add(1) == 11
    finally:
        await other.aclose()


async def test_a_local_object_passed_to_a_remote_one_is_called_back_on_its_thread(remote: RemoteApartment) -> None:
    obj = await remote.create(Remote)
    callback = Callback()
    assert await obj.call_back_async(callback, 4) == 40
    assert callback.seen == [(4, threading.get_ident())]
    # kept there, and called back after the first call returned
    await obj.keep(callback)
    assert await obj.call_kept(5) == 50
    assert callback.seen[-1] == (5, threading.get_ident())


async def test_releasing_the_last_proxy_releases_the_remote_object(remote: RemoteApartment) -> None:
    obj = await remote.create(Remote)
    child = await obj.make_child(1)
    await child.add(1)

    async def one_exported() -> bool:
        return (await remote.fetch_statistics()).exported == 1

    child.release()
    await wait_until(one_exported, "the child was released in the actor")
    assert remote.statistics().exported == 1


# -- contexts -----------------------------------------------------------------------------------------------


async def test_disconnecting_a_remote_context_waits_for_its_calls(remote: RemoteApartment) -> None:
    ctx = remote.create_context()
    assert isinstance(ctx, aptrt.ray.RemoteContext)
    obj = await ctx.run_sync(Remote, 1)
    outside = await remote.create(Remote, 1)
    async with anyio.create_task_group() as tg:
        results = await start_slow_call(tg, remote, obj, 0.5, aptrt.DisconnectedError)
        with pytest.raises(aptrt.RPCTimeoutError) as info:
            await ctx.disconnect(0)
        assert info.value.hresult_name == "RPC_E_TIMEOUT"
        with pytest.raises(aptrt.DisconnectedError) as refused:
            await obj.add(1)  # refused from the first instant
        assert refused.value.reason is aptrt.DisconnectReason.CONTEXT_DISCONNECTED
        await ctx.disconnect()  # S_OK once the slow call has ended
    assert results == ["slept"]
    assert ctx.state is aptrt.ContextState.DISCONNECTED
    with pytest.raises(aptrt.DisconnectedError):
        await obj.add(1)
    assert await outside.add(1) == 2  # the default context's objects are untouched


def _running_in(remote: RemoteApartment, n: int):
    async def check() -> bool:
        stats = await remote.fetch_statistics()
        return stats.running >= n

    return check


async def test_disconnect_with_cancel_outstanding_cancels_remote_calls(remote: RemoteApartment) -> None:
    ctx = remote.create_context()
    obj = await ctx.run_sync(Remote, 1)
    async with anyio.create_task_group() as tg:
        errors = await start_slow_call(tg, remote, obj, 30, aptrt.CallCancelledError)
        await ctx.disconnect(0, cancel_outstanding=True, reason="maintenance")
    assert len(errors) == 1
    assert errors[0].reason == "maintenance"


async def test_remote_default_context_and_bad_timeouts(remote: RemoteApartment) -> None:
    with pytest.raises(aptrt.NotSupportedError):
        await remote.default_context.disconnect()
    ctx = remote.create_context()
    with pytest.raises(aptrt.InvalidArgumentError):
        await ctx.disconnect(-1)
    with pytest.raises(aptrt.NotSupportedError):
        ctx.statistics()
    stats = await ctx.fetch_statistics()
    assert stats.state is aptrt.ContextState.OPEN


async def test_disconnect_from_inside_a_remote_call_chain_would_deadlock(remote: RemoteApartment) -> None:
    from tests.objects_ray import Disconnector

    ctx = remote.create_context()
    obj = await ctx.run_sync(Remote, 1)
    local = Disconnector(ctx)
    # driver → remote object in ctx → back to the driver → ctx.disconnect: it would wait for itself
    with pytest.raises(aptrt.WouldDeadlockError):
        await obj.call_back_async(local, 1)
    assert isinstance(local.error, aptrt.WouldDeadlockError)
    assert local.error.hresult_name == "CONTEXT_E_WOULD_DEADLOCK"


# -- activation ---------------------------------------------------------------------------------------------


async def test_create_instance_of_a_class_served_by_a_remote_apartment(
    rt: aptrt.Runtime, remote: RemoteApartment
) -> None:
    cookie = remote.serve_class(Served)
    obj = await rt.create_instance("aptrt.tests.RayServed.1")
    assert isinstance(obj, aptrt.Proxy)
    pid, _ = await obj.where()
    assert pid == remote.pid
    here = await rt.create_instance(Served, context=aptrt.CLSCTX.INPROC_SERVER)
    assert not isinstance(here, aptrt.Proxy)  # in-process only: made here
    factory = await rt.get_class_object("aptrt.tests.RayServed.1")
    made = await factory.CreateInstance(None, IRemote)
    assert (await made.where())[0] == remote.pid
    remote.revoke_class(cookie)
    local = await rt.create_instance("aptrt.tests.RayServed.1")
    assert not isinstance(local, aptrt.Proxy)


# -- the end of an actor ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["kill", "exit"])
async def test_an_actor_that_dies_fails_outstanding_and_later_calls(remote: RemoteApartment, how: str) -> None:
    import ray

    probe = await remote.create(Probe, interface=IProbe)
    obj = aptrt.query_interface(probe, IRemote)
    async with anyio.create_task_group() as tg:
        errors = await start_slow_call(tg, remote, obj, 60, aptrt.DisconnectedError)
        if how == "kill":
            ray.kill(remote.actor)
        else:
            with pytest.raises(aptrt.DisconnectedError):
                await probe.die("exit")
    assert len(errors) == 1
    assert errors[0].reason is aptrt.DisconnectReason.APARTMENT_DIED
    with pytest.raises(aptrt.DisconnectedError) as later:
        await obj.add(1)
    assert later.value.reason is aptrt.DisconnectReason.APARTMENT_DIED
    with pytest.raises(aptrt.DisconnectedError):
        await remote.run_sync(pid_and_thread)
    assert remote.failure is not None


async def test_a_keyboard_interrupt_in_a_remote_callee_kills_that_apartment_only(remote: RemoteApartment) -> None:
    probe = await remote.create(Probe, interface=IProbe)
    with pytest.raises(aptrt.DisconnectedError) as info:
        await probe.die("keyboard")
    assert info.value.reason is aptrt.DisconnectReason.APARTMENT_DIED
    with pytest.raises(aptrt.DisconnectedError):
        await aptrt.query_interface(probe, IRemote).add(1)


async def test_closing_the_runtime_fails_remote_calls_still_running() -> None:
    async with aptrt.Runtime() as rt:
        remote = await rt.start_sta("far", host=RayHost())
        obj = await remote.create(Remote)
        async with anyio.create_task_group() as tg:
            errors = await start_slow_call(tg, remote, obj, 60, aptrt.DisconnectedError)
            await remote.aclose()
        with pytest.raises(aptrt.DisconnectedError):
            await obj.add(1)
    assert len(errors) == 1
    assert errors[0].reason is aptrt.DisconnectReason.SERVER_SHUTDOWN  # type: ignore[attr-defined]
    assert remote.closed
    assert remote.failure is None


# -- blocking callers and bad input -----------------------------------------------------------------------


def test_a_plain_program_uses_a_remote_sta_with_blocking_calls(aptrt_sync_runtime: aptrt.Runtime) -> None:
    remote = aptrt_sync_runtime.start_sta_blocking("far", host=RayHost())
    obj = remote.create_blocking(Remote, 2)
    assert aptrt.blocking(obj).add(3) == 5
    assert aptrt.blocking(obj, timeout=0.3).echo("x") == "x"
    with pytest.raises(TimeoutError):
        aptrt.blocking(obj, timeout=0.3).sleep(30)
    remote.close_blocking()


@pytest.mark.parametrize(
    "options",
    [{"window": 0}, {"batch": "8"}, {"linger": -1.0}, {"startup_timeout": None}, {"actor_options": [1]}],
)
def test_bad_host_options_are_invalid_arguments(options: dict[str, object]) -> None:
    with pytest.raises(aptrt.InvalidArgumentError):
        RayHost(**options)  # type: ignore[arg-type]


async def test_bad_hosts_and_configure(rt: aptrt.Runtime, remote: RemoteApartment) -> None:
    with pytest.raises(aptrt.InvalidArgumentError):
        await rt.start_sta(host=object())
    with pytest.raises(aptrt.NotSupportedError):
        remote.configure(max_queued=4)


async def test_objects_can_live_on_the_actors_own_loop(rt: aptrt.Runtime) -> None:
    sta = await rt.start_sta("inline", host=RayHost(own_thread=False))
    try:
        obj = await sta.create(Remote, 1)
        assert await obj.add_async(2) == 3
        child = await obj.make_child(5)
        assert await child.add(1) == 6
        assert await obj.same(obj)
        callback = Callback()
        assert await obj.call_back_async(callback, 2) == 20
        pid, thread = await sta.run_sync(pid_and_thread)
        assert pid == sta.pid
        assert not thread.startswith("aptrt-")  # Ray's own loop thread
        with anyio.move_on_after(0.2):
            await obj.sleep(30)
        assert await obj.add(0) == 3
    finally:
        await sta.aclose()


async def test_own_thread_false_needs_asyncio(rt: aptrt.Runtime) -> None:
    with pytest.raises(aptrt.InvalidArgumentError):
        await rt.start_sta(backend="trio", host=RayHost(own_thread=False))
