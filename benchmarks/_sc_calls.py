"""Scenarios about aptrt calls: marshaling, contexts, instruments, fan-in/fan-out, MTA scaling.

Every call here is aptrt's STA → STA call on asyncio (the suite's reference mechanism) or a variant of
it, with the caller STA pinned to the caller CPU and the callees to the callee CPU.
"""

from __future__ import annotations

import hashlib
import statistics
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel

import aptrt

from ._aptrt import Inc
from ._harness import BenchError, async_latency, check_result, pin, pin_once, timed_throughput
from ._scenarios import Metric, Rig, Scenario, Sizes, rotate

MB = 1 << 20

Figures = dict[str, float | None]
AsyncCall = Callable[[int], Awaitable[Any]]


async def _latency_us(call: AsyncCall, sizes: Sizes) -> float:
    """Median latency of *call* in µs (after a warm-up)."""
    for i in range(sizes.warmup_calls):
        await call(i)
    samples = await async_latency(call, sizes.latency_calls)
    return statistics.median(samples) / 1000


# -- marshaling ----------------------------------------------------------------------------------------------


class ISink(aptrt.Interface, iid="8416783b-1a93-45be-a867-59625a46b54b"):
    def inc(self, x: int) -> int:
        raise NotImplementedError

    def take(self, value: Any) -> int:
        raise NotImplementedError

    def identity(self, value: Any) -> tuple[int, bool]:
        raise NotImplementedError


class Sink(ISink):
    """The callee of the marshaling scenario: it receives an argument and drops it."""

    def inc(self, x: int) -> int:
        return x + 1

    def take(self, value: Any) -> int:
        return 0

    def identity(self, value: Any) -> tuple[int, bool]:
        # id() is the object's identity in this process: equal ids (while the caller holds the object)
        # mean the callee got the caller's very object
        return id(value), isinstance(value, aptrt.Proxy)


class ICallback(aptrt.Interface, iid="66f25084-715f-44e1-9d8e-9f7768638a5c"):
    def ping(self) -> int:
        raise NotImplementedError


class Callback(ICallback):
    def ping(self) -> int:
        return 1


_MARSHAL_VARIANTS = (
    ("int", "int argument (the plain call)"),
    ("iface", "an interface object of the caller (→ proxy in the callee)"),
    ("proxy", "a proxy to a third STA's object (→ new proxy)"),
    ("bytes", "1 MB bytes (immutable: passed, not copied)"),
    ("bytearray", "1 MB bytearray (copied by policy)"),
    ("byref", "aptrt.by_reference(1 MB bytearray) (not copied)"),
)


class MarshalScenario(Scenario):
    """One STA → STA call whose single argument is an int, an interface object, a proxy, or a 1 MB buffer.

    Latency is the sequential round trip (median); throughput is calls/s at 64 in flight, where the
    per-call CPU cost (an export, a copy) shows more than in a round trip dominated by thread wake-ups.
    One-off checks (callee's ``id(arg)`` against the caller's) show that ``bytes`` and ``by_reference``
    arrive as the caller's very object and that a ``bytearray`` arrives as a copy.
    """

    key = "marshal"
    title = "Marshaling: an STA → STA call by argument kind (asyncio)"

    def metrics(self) -> list[Metric]:
        out = [
            Metric(f"lat/{v}", f"latency, {label}", "us", versus=None if v == "int" else "lat/int")
            for v, label in _MARSHAL_VARIANTS
        ]
        out += [
            Metric(f"tput/{v}", f"throughput @64, {label}", "per_s", versus=None if v == "int" else "tput/int")
            for v, label in _MARSHAL_VARIANTS
        ]
        out += [
            Metric("same/bytes", "check: callee's 1 MB bytes `is` the caller's", "bool"),
            Metric("same/byref", "check: callee's by_reference(bytearray) `is` the caller's", "bool"),
            Metric("copied/bytearray", "check: callee's bytearray is a copy", "bool"),
            Metric("proxy/iface", "check: an interface object arrives as a proxy", "bool"),
        ]
        return out

    def run(self, sizes: Sizes, rep: int) -> Figures:
        with Rig() as rig:
            caller = rig.sta("bench-caller", "caller")
            target = rig.sta("bench-target", "callee")
            third = rig.sta("bench-third", "callee")
            return rig.run(caller, self._measure, target, third, sizes, rep)

    async def _measure(self, target: aptrt.STA, third: aptrt.STA, sizes: Sizes, rep: int) -> Figures:
        sink: Any = await target.create(Sink)
        remote: Any = await third.create(Callback)
        local = Callback()
        payload = bytes(MB)
        buffer = bytearray(MB)
        shared = bytearray(MB)
        shared_ref = aptrt.by_reference(shared)
        out: Figures = {}

        ident, _ = await sink.identity(payload)
        out["same/bytes"] = float(ident == id(payload))
        ident, _ = await sink.identity(shared_ref)
        out["same/byref"] = float(ident == id(shared))
        ident, _ = await sink.identity(buffer)
        out["copied/bytearray"] = float(ident != id(buffer))
        _, is_proxy = await sink.identity(local)
        out["proxy/iface"] = float(is_proxy)
        if not (out["same/bytes"] and out["same/byref"] and out["copied/bytearray"] and out["proxy/iface"]):
            raise BenchError(f"the marshaling policy is not what the README says: {out}")

        take = sink.take
        arguments: dict[str, Any] = {
            "iface": local,
            "proxy": remote,
            "bytes": payload,
            "bytearray": buffer,
            "byref": shared_ref,
        }

        def taker(value: Any) -> AsyncCall:
            return lambda x: take(value)

        calls: dict[str, AsyncCall] = {"int": sink.inc}
        calls.update({name: taker(value) for name, value in arguments.items()})
        check_result(41, await sink.inc(41))
        order = rotate([name for name, _ in _MARSHAL_VARIANTS], rep)
        for name in order:
            out[f"lat/{name}"] = await _latency_us(calls[name], sizes)
        for name in order:
            out[f"tput/{name}"] = await timed_throughput([calls[name]], sizes.inflight, sizes.tput_seconds)
        sink.release()
        remote.release()
        return out


# -- contexts ------------------------------------------------------------------------------------------------


class ILatch(aptrt.Interface, iid="630583b4-3879-4d6c-9aeb-075fa6f008d0"):
    def open(self) -> None:
        raise NotImplementedError


class Latch(ILatch):
    """Lives in the target's default context; parked calls wait for it (made on the target's loop)."""

    def __init__(self) -> None:
        self.event = anyio.Event()

    def open(self) -> None:
        self.event.set()


class IParker(aptrt.Interface, iid="961e0bfe-df64-4323-97c9-8b2a3bb05505"):
    async def park(self) -> int:
        raise NotImplementedError


class Parker(IParker):
    """Lives in a disconnectable context: each ``park`` call stays outstanding until the latch opens."""

    def __init__(self, latch: Latch) -> None:
        self.latch = latch

    async def park(self) -> int:
        await self.latch.event.wait()
        return 0


_PARKED = (1, 64, 1024)


class ContextScenario(Scenario):
    """What context accounting adds to a call, and how long ``Context.disconnect`` takes with N parked calls.

    The caller is the main STA (``async with aptrt.Runtime()`` on the harness thread): a coroutine that is
    itself an incoming call shares its causality with the calls it makes, and disconnecting a context
    where calls of its own chain are running is refused as a would-be deadlock.

    * call: ``inc`` on an object in the target's default context (keeps no books) against one made in a
      disconnectable context with ``await ctx.run_sync(Inc)`` (every call enters and leaves the context);
    * drain@N: N async calls are parked on an object of the context and ``ctx.disconnect()`` is waiting;
      the time from the moment the latch is opened (a call to a default-context object) until
      ``disconnect()`` returns;
    * cancel@N: the time ``ctx.disconnect(timeout=0, cancel_outstanding=True)`` takes to cancel N parked
      calls and return.

    Disconnect times are the median of ``trials`` trials, and are compared with one call's round trip.
    """

    key = "context"
    title = "Contexts: call accounting and disconnect latency (asyncio)"

    def metrics(self) -> list[Metric]:
        out = [
            Metric("lat/default", "latency, object in the default context", "us"),
            Metric("lat/context", "latency, object in a created context", "us", versus="lat/default"),
            Metric("tput/default", "throughput @64, object in the default context", "per_s"),
            Metric("tput/context", "throughput @64, object in a created context", "per_s", versus="tput/default"),
        ]
        for n in _PARKED:
            out.append(
                Metric(
                    f"drain@{n}",
                    f"disconnect: release {n} parked call(s) → disconnect() returns",
                    "us",
                    versus="lat/default",
                )
            )
        for n in _PARKED:
            out.append(
                Metric(
                    f"cancel@{n}",
                    f"disconnect(timeout=0, cancel_outstanding=True), {n} parked",
                    "us",
                    versus="lat/default",
                )
            )
        out.append(Metric("in_context", "check: the object made in the context belongs to it", "bool"))
        return out

    def run(self, sizes: Sizes, rep: int) -> Figures:
        return anyio.run(self._main, sizes, rep)

    async def _main(self, sizes: Sizes, rep: int) -> Figures:
        out: Figures = {}
        async with aptrt.Runtime() as rt:
            target = await rt.start_sta("bench-target")
            await target.run_sync(pin, "callee")
            plain: Any = await target.create(Inc)
            ctx = target.create_context()
            boxed: Any = await ctx.run_sync(Inc)
            out["in_context"] = float(ctx.statistics().objects == 1)
            calls: dict[str, AsyncCall] = {"default": plain.inc, "context": boxed.inc}
            for name in rotate(["default", "context"], rep):
                out[f"lat/{name}"] = await _latency_us(calls[name], sizes)
            for name in rotate(["default", "context"], rep):
                out[f"tput/{name}"] = await timed_throughput([calls[name]], sizes.inflight, sizes.tput_seconds)
            plain.release()
            boxed.release()
            await ctx.disconnect()

            times: dict[str, list[float]] = {}
            for _ in range(sizes.trials):
                for mode, n in rotate([(m, n) for m in ("drain", "cancel") for n in _PARKED], rep):
                    times.setdefault(f"{mode}@{n}", []).append(await self._disconnect(target, n, mode == "cancel"))
            for name, values in times.items():
                out[name] = statistics.median(values) * 1e6
        return out

    async def _disconnect(self, target: aptrt.STA, n: int, cancel: bool) -> float:
        latch: Any = await target.create(Latch)
        ctx = target.create_context()
        parker: Any = await ctx.run_sync(Parker, latch)
        finished: list[float] = []
        failures: list[BaseException] = []

        async def park() -> None:
            try:
                await parker.park()
            except aptrt.CallCancelledError:
                if not cancel:
                    raise

        async def disconnect() -> None:
            await ctx.disconnect()
            finished.append(time.perf_counter())

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(park)
                while ctx.outstanding < n:  # noqa: ASYNC110 - aptrt's books, kept on the target's thread
                    await anyio.sleep(0.0005)
                if cancel:
                    t0 = time.perf_counter()
                    await ctx.disconnect(timeout=0, cancel_outstanding=True)
                    finished.append(time.perf_counter())
                else:
                    tg.start_soon(disconnect)
                    while ctx.state is aptrt.ContextState.OPEN:  # disconnect() has begun once it is not
                        await anyio.lowlevel.checkpoint()
                    t0 = time.perf_counter()
                    await latch.open()
        except BaseException as exc:  # noqa: BLE001 - reported below with the scenario's own words
            failures.append(exc)
        finally:
            latch.release()
            parker.release()
        if failures or not finished:
            raise BenchError(f"disconnect with {n} parked call(s) failed: {failures[:1]!r}")
        return finished[0] - t0


# -- observability -------------------------------------------------------------------------------------------


class NoOpInstrument:
    """An instrument whose hooks do nothing: what remains is aptrt's cost of calling them."""

    def call_started(self, event: aptrt.CallEvent) -> None:
        pass

    def call_finished(self, event: aptrt.CallEvent, error: BaseException | None) -> None:
        pass


class ObserveScenario(Scenario):
    """The cost of call hooks: the same STA → STA call with a no-op instrument added (``rt.add_instrument``)
    and without, alternating off/on/off/on in each rep (the two measurements of each state are averaged).

    Latency statistics (a log-bucket histogram per executing thread) are always on in aptrt and record
    one call in ``LATENCY_SAMPLE`` (8): the cost of one record is timed directly (``Histogram.record``, a
    microbenchmark), and its share per call (one eighth of it) is put next to a pipelined call's time.
    ``statistics()`` is what a monitor calls to read them.
    """

    key = "observe"
    title = "Observability: instrument hooks and statistics (asyncio)"

    def metrics(self) -> list[Metric]:
        return [
            Metric("lat/off", "latency, no instrument", "us"),
            Metric("lat/on", "latency, a no-op instrument added", "us", versus="lat/off"),
            Metric("tput/off", "throughput @64, no instrument", "per_s"),
            Metric("tput/on", "throughput @64, a no-op instrument added", "per_s", versus="tput/off"),
            Metric("added_us", "time the hooks add per pipelined call (1/tput_on − 1/tput_off)", "us"),
            Metric("record_ns", "latency histogram: one Histogram.record (1 call in 8 is recorded)", "ns"),
            Metric("record_pct", "… its share per call, as a part of a pipelined call's time (1/tput_off)", "pct"),
            Metric("snapshot_us", "apartment.statistics() snapshot (read side)", "us"),
        ]

    def run(self, sizes: Sizes, rep: int) -> Figures:
        with Rig() as rig:
            caller = rig.sta("bench-caller", "caller")
            target = rig.sta("bench-target", "callee")
            out = rig.run(caller, self._measure, rig.rt, target, sizes, rep)
            snapshots = 200
            t0 = time.perf_counter()
            for _ in range(snapshots):
                target.statistics()
            out["snapshot_us"] = (time.perf_counter() - t0) / snapshots * 1e6
        out["record_ns"] = _histogram_record_ns()
        tput_off, tput_on = out["tput/off"], out["tput/on"]
        record = out["record_ns"]
        if tput_off and tput_on:
            out["added_us"] = (1 / tput_on - 1 / tput_off) * 1e6
        if tput_off and record is not None:
            out["record_pct"] = record / _latency_sample() / (1e9 / tput_off) * 100
        return out

    async def _measure(self, rt: aptrt.Runtime, target: aptrt.STA, sizes: Sizes, rep: int) -> Figures:
        proxy: Any = await target.create(Inc)
        call = proxy.inc
        check_result(41, await call(41))
        lat: dict[bool, list[float]] = {False: [], True: []}
        tput: dict[bool, list[float]] = {False: [], True: []}
        for on in [bool((rep + i) % 2) for i in range(4)]:
            instrument = NoOpInstrument()
            if on:
                rt.add_instrument(instrument)
            try:
                lat[on].append(await _latency_us(call, sizes))
                tput[on].append(await timed_throughput([call], sizes.inflight, sizes.tput_seconds))
            finally:
                if on:
                    rt.remove_instrument(instrument)
        proxy.release()
        return {
            "lat/off": statistics.fmean(lat[False]),
            "lat/on": statistics.fmean(lat[True]),
            "tput/off": statistics.fmean(tput[False]),
            "tput/on": statistics.fmean(tput[True]),
        }


def _latency_sample() -> int:
    try:
        from aptrt._core._execute import LATENCY_SAMPLE  # internal: one call in this many is recorded
    except ImportError:
        return 1
    return LATENCY_SAMPLE


def _histogram_record_ns() -> float | None:
    try:
        from aptrt._core._observe import Histogram  # internal: the recorder every executed call runs
    except ImportError:
        return None
    histogram = Histogram()
    record = histogram.record
    number = 100_000
    best = min(timeit.repeat(lambda: record(8.5e-5), number=number, repeat=3))
    return best / number * 1e9


# -- fan-in / fan-out ----------------------------------------------------------------------------------------


FAN = 8


#: each fan-in caller's proxy to the shared object, by STA name (written and read on that STA's thread)
_fan_proxies: dict[str, Any] = {}


async def _fan_in_prepare(name: str, proxy: Any) -> None:
    """In one fan-in caller STA: keep the proxy marshaled to it, and warm up."""
    _fan_proxies[name] = proxy
    for i in range(16):
        await proxy.inc(i)


async def _fan_in_burst(name: str, inflight: int, start_at: float, seconds: float) -> tuple[int, float, float]:
    """In one fan-in caller STA: from *start_at* (``perf_counter``), call back to back from *inflight* tasks
    for *seconds*. Returns the calls made, when this caller started, and when its last call returned."""
    clock = time.perf_counter
    call = _fan_proxies[name].inc
    await anyio.sleep(max(0.0, start_at - clock()))
    started = clock()
    end = start_at + seconds
    done = [0] * inflight

    async def worker(slot: int) -> None:
        n = 0
        while clock() < end:
            await call(n)
            n += 1
        done[slot] = n

    async with anyio.create_task_group() as tg:
        for slot in range(inflight):
            tg.start_soon(worker, slot)
    return sum(done), started, clock()


async def _fan_in_forget(name: str, release: bool) -> None:
    proxy = _fan_proxies.pop(name, None)
    if release and proxy is not None:
        proxy.release()


class FanScenario(Scenario):
    """Many apartments calling one, and one calling many (64 calls in flight in all, each time).

    * 1 → 1: one caller STA, 64 tasks, one target STA (the reference figure);
    * 8 → 1 (fan-in): 8 caller STAs, 8 tasks each, all calling one object in one target STA; the callers
      start together at a set time, and the throughput is every call over the time to the last reply;
    * 1 → 8 (fan-out): one caller STA, 64 tasks spread over objects in 8 target STAs.

    On a 2-CPU machine no layout can run faster than two CPUs allow: the ratios show how well batching
    holds up when inboxes have many producers (fan-in) or the caller many peers (fan-out).
    """

    key = "fan"
    title = f"Fan-in / fan-out: {FAN} apartments (asyncio, 64 calls in flight in all)"

    def metrics(self) -> list[Metric]:
        return [
            Metric("tput/1to1", "throughput, 1 caller STA → 1 target STA", "per_s"),
            Metric(
                "tput/fan_in", f"throughput, {FAN} caller STAs → 1 target STA (fan-in)", "per_s", versus="tput/1to1"
            ),
            Metric(
                "tput/fan_out", f"throughput, 1 caller STA → {FAN} target STAs (fan-out)", "per_s", versus="tput/1to1"
            ),
        ]

    def run(self, sizes: Sizes, rep: int) -> Figures:
        with Rig() as rig:
            callers = [rig.sta(f"bench-caller-{i}", "caller") for i in range(FAN)]
            targets = [rig.sta(f"bench-target-{i}", "callee") for i in range(FAN)]
            return rig.run(callers[0], self._measure, callers, targets, sizes, rep)

    async def _measure(self, callers: list[aptrt.STA], targets: list[aptrt.STA], sizes: Sizes, rep: int) -> Figures:
        proxies: list[Any] = [await t.create(Inc) for t in targets]
        out: Figures = {}
        for name in rotate(["1to1", "fan_in", "fan_out"], rep):
            if name == "1to1":
                out["tput/1to1"] = await timed_throughput([proxies[0].inc], sizes.inflight, sizes.tput_seconds)
            elif name == "fan_out":
                calls = [p.inc for p in proxies]
                out["tput/fan_out"] = await timed_throughput(calls, sizes.inflight, sizes.tput_seconds)
            else:
                out["tput/fan_in"] = await self._fan_in(callers, proxies[0], sizes)
        for proxy in proxies:
            proxy.release()
        return out

    async def _fan_in(self, callers: list[aptrt.STA], proxy: Any, sizes: Sizes) -> float:
        per_caller = max(1, sizes.inflight // len(callers))
        # first every caller gets its own proxy to the one object (sta.run marshals it) and warms up ...
        async with anyio.create_task_group() as tg:
            for sta in callers:
                tg.start_soon(sta.run, _fan_in_prepare, sta.name, proxy)
        # ... then all start together at a set time
        start_at = time.perf_counter() + 0.01
        results: list[tuple[int, float, float]] = []

        async def part(sta: aptrt.STA) -> None:
            results.append(await sta.run(_fan_in_burst, sta.name, per_caller, start_at, sizes.tput_seconds))

        try:
            async with anyio.create_task_group() as tg:
                for sta in callers:
                    tg.start_soon(part, sta)
        finally:
            async with anyio.create_task_group() as tg:
                for sta in callers:
                    tg.start_soon(sta.run, _fan_in_forget, sta.name, sta is not callers[0])
        late = max(started for _, started, _ in results) - start_at
        if late > sizes.tput_seconds / 4:
            raise BenchError(f"a fan-in caller started {late * 1e3:.0f} ms late (a stalled thread?)")
        calls = sum(n for n, _, _ in results)
        return calls / (max(last for _, _, last in results) - start_at)


# -- MTA scaling ---------------------------------------------------------------------------------------------


_DATA = bytes(64 * 1024)
_WORKERS = (1, 2, 4, 8)


class IWork(aptrt.Interface, iid="a10baf09-f06b-40c8-b83e-7a29651f79b9"):
    def sleep(self, x: int) -> int:
        raise NotImplementedError

    def digest(self, x: int) -> int:
        raise NotImplementedError


class Work(IWork):
    """An MTA object whose sync methods release the GIL while they work."""

    def sleep(self, x: int) -> int:
        pin_once("any")  # MTA workers start on the caller's CPU (they inherit it): let them use every CPU
        time.sleep(0.001)
        return x + 1

    def digest(self, x: int) -> int:
        pin_once("any")
        hashlib.sha256(_DATA).digest()  # hashlib releases the GIL for inputs over 2 KB
        return x + 1


class MtaScenario(Scenario):
    """Throughput of sync calls into an MTA object from a caller STA (64 in flight) against the MTA's
    worker count (``aptrt.Runtime(mta_workers=N)``), for two GIL-releasing workloads: ``time.sleep(1 ms)``
    (scales with workers until the caller is the limit) and SHA-256 of 64 KB (scales with CPUs: 2 here).
    MTA worker threads may run on every CPU (they are not pinned to the callee's)."""

    key = "mta"
    title = "MTA scaling: sync calls from an STA (64 in flight) by worker count"

    def metrics(self) -> list[Metric]:
        out = []
        for work, label in (("sleep", "time.sleep(1 ms)"), ("sha", "sha256(64 KB)")):
            for w in _WORKERS:
                versus = None if w == _WORKERS[0] else f"{work}@{_WORKERS[0]}"
                out.append(Metric(f"{work}@{w}", f"throughput, {label}, mta_workers={w}", "per_s", versus=versus))
        out.append(Metric("sha_1thread", "sha256(64 KB) on one plain thread, no calls (the floor)", "per_s"))
        return out

    def run(self, sizes: Sizes, rep: int) -> Figures:
        out: Figures = {}
        for workers in rotate(list(_WORKERS), rep):
            with Rig(mta_workers=workers) as rig:
                caller = rig.sta("bench-caller", "caller")
                sleep, sha = rig.run(caller, self._measure, rig.rt.mta, sizes)
                out[f"sleep@{workers}"] = sleep
                out[f"sha@{workers}"] = sha
        out["sha_1thread"] = _sha_rate(sizes.tput_seconds)
        return out

    async def _measure(self, mta: aptrt.MTA, sizes: Sizes) -> tuple[float, float]:
        work: Any = await mta.create(Work)
        check_result(41, await work.sleep(41))
        sleep = await timed_throughput([work.sleep], sizes.inflight, sizes.tput_seconds)
        sha = await timed_throughput([work.digest], sizes.inflight, sizes.tput_seconds)
        work.release()
        return sleep, sha


def _sha_rate(seconds: float) -> float:
    clock = time.perf_counter
    digest = hashlib.sha256
    n = 0
    t0 = clock()
    end = t0 + seconds
    while clock() < end:
        digest(_DATA).digest()
        n += 1
    return n / (clock() - t0)


SCENARIOS: tuple[type[Scenario], ...] = (MarshalScenario, ContextScenario, ObserveScenario, FanScenario, MtaScenario)
