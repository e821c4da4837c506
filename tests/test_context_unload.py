"""The seed's scenario: unloading one service of a shared service host without affecting another.

"The CoDisconnectContext function is used to support unloading services in shared service hosts where you
must unload your service's binaries without affecting other COM servers that are running in the same
process." A host STA runs two services, each loaded into a context of its own (its class factory registered
inside it). Clients in other apartments create spoolers, hold proxies and are in the middle of calls when
the host unloads the spooler service: it disconnects the context, calling again on RPC_E_TIMEOUT until it
succeeds, and only then checks that the module can go (no object alive, ``can_unload_now``). All the while a
client hammers the indexer service in the same apartment, and not one of its calls fails.
"""

from __future__ import annotations

import gc
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

import aptrt

from . import objects_context as spooler_service
from .objects import wait_event, wait_until
from .objects_context import ISpooler, Press, Spooler

CLSCTX = aptrt.CLSCTX
SPOOLER_CLSID = uuid.UUID("e4bbba75-c9f8-4e15-adf0-070952f86320")
INDEXER_CLSID = uuid.UUID("88849352-15d5-4384-837b-647d17139c06")
this_module = sys.modules[__name__]


class IIndexer(aptrt.Interface, iid="b46f4598-4878-4457-bcd3-17d2bfe793f7"):
    def index(self, word: str) -> int: ...
    async def lookup(self, word: str) -> int: ...
    def token(self) -> int: ...


class Indexer(IIndexer):
    """The service that stays: its module is this test module."""

    def __init__(self) -> None:
        self.words: dict[str, int] = {}

    def index(self, word: str) -> int:
        self.words[word] = self.words.get(word, 0) + 1
        return self.words[word]

    async def lookup(self, word: str) -> int:
        await anyio.lowlevel.checkpoint()
        return self.words.get(word, 0)

    def token(self) -> int:
        return aptrt.context_token()


def collect() -> None:
    gc.collect()
    gc.collect()


@pytest.fixture
def installed() -> Iterator[None]:
    """Both services are installed (in the registry) and neither has an object yet."""
    aptrt.registry.register(Spooler, clsid=SPOOLER_CLSID, progid="AptrtTests.Spooler.1", threading_model="Apartment")
    aptrt.registry.register(Indexer, clsid=INDEXER_CLSID, progid="AptrtTests.Indexer.1", threading_model="Apartment")
    collect()
    assert aptrt.can_unload_now(spooler_service) and aptrt.can_unload_now(this_module)
    yield
    for clsid in (SPOOLER_CLSID, INDEXER_CLSID):
        try:
            aptrt.registry.unregister(clsid)
        except aptrt.ClassNotRegisteredError:
            pass  # the test uninstalled it


class Countdown:
    def __init__(self, n: int) -> None:
        self._lock = threading.Lock()
        self.n = n
        self.zero = threading.Event()

    def tick(self) -> None:
        with self._lock:
            self.n -= 1
            if self.n == 0:
                self.zero.set()


class Hammer:
    """Calls the indexer service without pause until told to stop; counts calls and failures."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.failures: list[str] = []
        self.stop = threading.Event()

    def _done(self, n: int, m: int) -> None:
        if m < n:
            self.failures.append(f"lookup saw {m} after index said {n}")
        with self._lock:
            self.calls += 2

    async def run(self, rt: aptrt.Runtime) -> None:
        indexer = await rt.create_instance(INDEXER_CLSID, IIndexer)
        try:
            i = 0
            while not self.stop.is_set() and not self.failures:
                word = f"word-{i % 7}"
                try:
                    self._done(await indexer.index(word), await indexer.lookup(word))
                except Exception as exc:  # noqa: BLE001 - a failed call is what this test looks for
                    self.failures.append(repr(exc))
                i += 1
        finally:
            indexer.release()

    def run_blocking(self, rt: aptrt.Runtime) -> None:
        proxy = rt.create_instance_blocking(INDEXER_CLSID, IIndexer)
        indexer = aptrt.blocking(proxy)
        try:
            i = 0
            while not self.stop.is_set() and not self.failures:
                word = f"blocking-{i % 5}"
                try:
                    self._done(indexer.index(word), indexer.lookup(word))
                except Exception as exc:  # noqa: BLE001
                    self.failures.append(repr(exc))
                i += 1
        finally:
            proxy.release()


class Clients:
    """What the spooler's clients saw, and the handshakes with the host."""

    def __init__(self, clients: int) -> None:
        self._lock = threading.Lock()
        self.tokens: list[int] = []
        self.printed: list[int] = []
        self.after: list[tuple[str, int, aptrt.DisconnectReason | None]] = []
        #: the host's disconnect succeeded: clients try their proxies again
        self.disconnected = threading.Event()
        #: every client tried
        self.checked = Countdown(clients)
        #: the host has looked at the service's objects while the proxies were still held: release them
        self.proceed = threading.Event()

    def saw(self, field: str, value: Any) -> None:
        with self._lock:
            getattr(self, field).append(value)

    def failed_after(self, exc: Exception) -> None:
        # keep a summary, not the exception: it must not keep anything of the service alive
        self.saw("after", (type(exc).__name__, getattr(exc, "hresult", 0), getattr(exc, "reason", None)))


async def spooler_client(rt: aptrt.Runtime, clients: Clients, spoolers: int, first_page: int) -> None:
    """An apartment's client: creates spoolers through the service's class factory, uses them, is in the
    middle of a print job on each when the host unloads the service, then finds them disconnected."""
    proxies = [await rt.create_instance(SPOOLER_CLSID, ISpooler) for _ in range(spoolers)]
    for proxy in proxies:
        clients.saw("tokens", await proxy.token())
        assert await proxy.submit("draft") == 1

    async def print_job(proxy: Any, pages: int) -> None:
        clients.saw("printed", await proxy.print_job(pages))

    async with anyio.create_task_group() as tg:
        for k, proxy in enumerate(proxies):
            tg.start_soon(print_job, proxy, first_page + k)
    await wait_event(clients.disconnected)
    for proxy in proxies:
        try:
            await proxy.submit("after")
            clients.saw("after", ("no error", 0, None))
        except Exception as exc:  # noqa: BLE001
            clients.failed_after(exc)
    clients.checked.tick()
    await wait_event(clients.proceed)
    for proxy in proxies:
        proxy.release()


def spooler_client_blocking(rt: aptrt.Runtime, clients: Clients, pages: int) -> None:
    """The same from a plain thread (the implicit MTA), with blocking calls."""
    proxy = rt.create_instance_blocking(SPOOLER_CLSID, ISpooler)
    spooler = aptrt.blocking(proxy, timeout=10)
    clients.saw("tokens", spooler.token())
    assert spooler.submit("draft") == 1
    clients.saw("printed", spooler.print_job(pages))
    assert clients.disconnected.wait(10)
    try:
        spooler.submit("after")
        clients.saw("after", ("no error", 0, None))
    except Exception as exc:  # noqa: BLE001
        clients.failed_after(exc)
    clients.checked.tick()
    assert clients.proceed.wait(10)
    proxy.release()


def load_service(rt: aptrt.Runtime, clsid: uuid.UUID) -> int:
    """The service's start-up, run inside its context: register its class object for every apartment."""
    factory = aptrt.ClassFactory(aptrt.registry.lookup(clsid))
    return rt.register_class_object(clsid, factory, context=CLSCTX.LOCAL_SERVER)


class TestUnloadingAService:
    async def test_unload_one_service_while_the_other_serves(
        self, rt: aptrt.Runtime, sta_backend: str, installed: None
    ) -> None:
        host = await rt.start_sta("svchost", backend=sta_backend)
        client_stas = [await rt.start_sta(f"client-{b}", backend=b) for b in ("asyncio", "trio")]
        hammer_sta = await rt.start_sta("hammer", backend="trio" if sta_backend != "trio" else "uvloop")
        module = aptrt.server_module(spooler_service.__name__)

        # the host loads both services, each into a context of its own
        spooler_ctx, indexer_ctx = host.create_context(), host.create_context()
        await spooler_ctx.run_sync(load_service, rt, SPOOLER_CLSID)
        await indexer_ctx.run_sync(load_service, rt, INDEXER_CLSID)
        assert len(rt.class_objects) == 2

        # 2 spoolers for the main STA and each client STA, 1 for a plain thread: 7 print jobs at the press
        press = spooler_service.press = Press(expected=2 + 2 * len(client_stas) + 1)
        clients = Clients(2 + len(client_stas))
        hammer = Hammer()
        attempts = 0

        with anyio.fail_after(25):
            async with anyio.create_task_group() as tg:
                tg.start_soon(hammer_sta.run, hammer.run, rt)
                tg.start_soon(anyio.to_thread.run_sync, hammer.run_blocking, rt)
                await wait_until(lambda: hammer.calls >= 20, "the indexer serves")

                tg.start_soon(spooler_client, rt, clients, 2, 100)
                for k, sta in enumerate(client_stas):
                    tg.start_soon(sta.run, spooler_client, rt, clients, 2, 200 + 100 * k)
                tg.start_soon(anyio.to_thread.run_sync, spooler_client_blocking, rt, clients, 900)
                await wait_event(press.all_printing)
                # every client holds proxies and is in the middle of a call
                stats = spooler_ctx.statistics()
                assert (stats.objects, stats.outstanding) == (7, 7)
                assert set(clients.tokens) == {spooler_ctx.token}  # the factory's objects are the context's
                assert module.objects == 7 and not aptrt.can_unload_now(spooler_service)

                # unloading: uninstall (the registry makes no more spoolers), then disconnect from inside
                # the service's context until it succeeds
                aptrt.registry.unregister(SPOOLER_CLSID)
                while True:
                    try:
                        await spooler_ctx.run(spooler_ctx.disconnect, 0.02)
                        break
                    except aptrt.RPCTimeoutError as exc:
                        assert exc.hresult == aptrt.HRESULT.RPC_E_TIMEOUT
                        attempts += 1
                        assert spooler_ctx.state is aptrt.ContextState.DISCONNECTING
                        if attempts == 1:
                            # closed from the first instant: the factory is revoked, new objects can't be had
                            assert len(rt.class_objects) == 1
                            with pytest.raises(aptrt.ClassNotRegisteredError):
                                await rt.create_instance(SPOOLER_CLSID, ISpooler)
                            # and the other service serves on, meanwhile
                            mark = hammer.calls
                            await wait_until(lambda m=mark: hammer.calls >= m + 20, "the indexer serves on")
                            assert aptrt.can_unload_now(spooler_service) is False  # not yet: calls are running
                        if attempts == 3:
                            await host.run(press.open)  # the print jobs end

                # S_OK: every object is disconnected; the clients' proxies fail from now on
                clients.disconnected.set()
                await wait_event(clients.checked.zero)
                stats = spooler_ctx.statistics()
                assert (stats.state, stats.objects, stats.outstanding) == (aptrt.ContextState.DISCONNECTED, 0, 0)
                # the proxies are still held, and yet the service's objects are gone: it may be unloaded
                collect()
                assert press.alive() == 0 and len(press.instances) == 7
                assert module.objects == 0
                assert aptrt.can_unload_now(spooler_service)

                # the other service was never touched, and serves on
                assert indexer_ctx.state is aptrt.ContextState.OPEN
                assert indexer_ctx.statistics().objects == 2
                assert not aptrt.can_unload_now(this_module)
                mark = hammer.calls
                await wait_until(lambda: hammer.calls >= mark + 20, "the indexer serves after the unload")
                clients.proceed.set()
                hammer.stop.set()

        assert attempts >= 3
        assert hammer.failures == []
        assert sorted(clients.printed) == [100, 101, 200, 201, 300, 301, 900]
        assert len(clients.after) == 7
        for kind, hresult, reason in clients.after:
            assert (kind, hresult, reason) == (
                "DisconnectedError",
                aptrt.HRESULT.RPC_E_DISCONNECTED,
                aptrt.DisconnectReason.CONTEXT_DISCONNECTED,
            )
        assert len(rt.class_objects) == 1  # the indexer's

        # and the indexer, unloaded in turn once its clients are gone, can go as well
        await indexer_ctx.disconnect(5)
        collect()
        assert aptrt.can_unload_now(this_module)
        assert len(rt.class_objects) == 0
