"""Shared pieces of the ``aptrt.com`` conformance tests: COM threads, counted objects, HRESULT checks.

The tests follow Wine's conformance tests (run against Windows): ``compobj.c`` and ``marshal.c`` in
``dlls/ole32/tests``, cited as ``compobj.c test_X`` / ``marshal.c test_X``, and the Microsoft
documentation, cited as ``[D: page]``. Objects count their references (``locks``, Wine's ``cLocks``)
and, where they implement IExternalConnection, their external connections.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self

import pytest

import aptrt
from aptrt import com
from aptrt._core._threadstate import tls
from aptrt.com import _init

#: the longest any test waits for another thread (a bound, never an ordering device)
TIMEOUT = 10.0
TIMEOUT_MS = int(TIMEOUT * 1000)


@pytest.fixture(autouse=True)
def com_clean() -> Iterator[None]:
    """Every test leaves COM uninitialised everywhere: the facade's runtime is closed at its end."""
    yield
    state = _init.facade_state()
    if state["runtime_open"] or state["threads"] or state["mta_threads"] or state["cookies"]:
        _init.force_reset()
        pytest.fail(f"the test left the COM facade initialised: {state}")


@contextmanager
def raises_hr(hresult: int) -> Iterator[pytest.ExceptionInfo[aptrt.COMError]]:
    """Expect a COMError carrying exactly *hresult*."""
    with pytest.raises(aptrt.COMError) as info:
        yield info
    assert info.value.hresult == hresult, f"{info.value.hresult_name} instead of {aptrt.HRESULT(hresult).name}"


def wait(event: threading.Event) -> None:
    """Wait for *event*, pumping if this thread is an STA (its callers must be served meanwhile)."""
    if tls.s.pump is not None:
        com.CoWaitForMultipleHandles(0, TIMEOUT_MS, [event])
    else:
        assert event.wait(TIMEOUT), "timed out"


class ComThread:
    """A thread initialised for COM (STA by default) that runs jobs on request and pumps while idle,
    the way Wine's ``host_object_proc`` threads serve their objects in a message loop."""

    def __init__(self, mode: int = com.COINIT_APARTMENTTHREADED, name: str = "com-thread") -> None:
        self.mode = mode
        self.tid = 0
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()
        assert self._ready.wait(TIMEOUT)

    def _main(self) -> None:
        com.CoInitializeEx(None, self.mode)
        self.tid = threading.get_native_id()
        self._ready.set()
        try:
            while not self._stop.is_set():
                com.CoWaitForMultipleHandles(0, com.INFINITE, [self._stop, self._wake])
                self._wake.clear()
                while True:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    job()
        finally:
            com.CoUninitialize()

    def submit(self, fn: Callable[..., Any], *args: Any) -> tuple[threading.Event, dict[str, Any]]:
        """Start ``fn(*args)`` on the thread; returns (done event, result box)."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def job() -> None:
            try:
                box["value"] = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                box["error"] = exc
            finally:
                done.set()

        self._jobs.put(job)
        self._wake.set()
        return done, box

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the thread and return its result (or raise its exception)."""
        done, box = self.submit(fn, *args)
        wait(done)
        return result(box)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def result(box: dict[str, Any]) -> Any:
    if "error" in box:
        raise box["error"]
    return box.get("value")


def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` on a new plain thread (COM not initialised there) and return its result."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def main() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=main, name="plain-thread")
    thread.start()
    wait(done)
    thread.join(TIMEOUT)
    return result(box)


# -- interfaces and objects --------------------------------------------------------------------------------


class ITest(com.IUnknown, iid="3e1b6a70-9d5c-4c8e-9d55-0f3c7a1b2c01"):
    def Value(self) -> int:
        raise NotImplementedError

    def Where(self) -> tuple[str, tuple[int, int]]:
        raise NotImplementedError

    def Call(self, other: Any, method: str) -> Any:
        raise NotImplementedError


class IOther(com.IUnknown, iid="3e1b6a70-9d5c-4c8e-9d55-0f3c7a1b2c02"):
    def Other(self) -> str:
        raise NotImplementedError


class Counted(ITest):
    """A test object: its COM reference count is ``locks`` (Wine's ``cLocks``)."""

    def __init__(self, value: int = 42) -> None:
        self.value = value

    @property
    def locks(self) -> int:
        return getattr(self, "_com_refs", 0)

    def Value(self) -> int:
        return self.value

    def Where(self) -> tuple[str, tuple[int, int]]:
        return threading.current_thread().name, com.CoGetApartmentType()

    def Call(self, other: Any, method: str) -> Any:
        return getattr(other, method)()


class Both(Counted, IOther):
    def Other(self) -> str:
        return "other"


class Connected(Counted, com.IExternalConnection):
    """Counts IExternalConnection notifications (Wine's ``external_connections``/``last_release_closes``)."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0
        self.last_release_closes: bool | None = None

    def AddConnection(self, extconn: int, reserved: int) -> int:
        self.connections += 1
        return self.connections

    def ReleaseConnection(self, extconn: int, reserved: int, fLastReleaseCloses: bool) -> int:
        self.last_release_closes = bool(fLastReleaseCloses)
        self.connections -= 1
        return self.connections


class Factory(com.IClassFactory, com.IUnknown):
    """A class object that records what it was asked for."""

    def __init__(self, make: Callable[[], Any] = Counted) -> None:
        self.make = make
        self.created: list[Any] = []
        self.iids: list[Any] = []

    def CreateInstance(self, outer: object, iid: Any) -> Any:
        if outer is not None:
            raise aptrt.COMError("no aggregation", hresult=com.CLASS_E_NOAGGREGATION)
        self.iids.append(iid)
        obj = self.make()
        self.created.append(obj)
        return obj.QueryInterface(iid)

    def LockServer(self, lock: bool) -> None:
        return None


def marshal(obj: Any, flags: int = com.MSHLFLAGS_NORMAL, iid: Any = ITest) -> Any:
    """CoMarshalInterface into a new stream, rewound."""
    stream = com.CreateStreamOnHGlobal(None, True)
    assert com.CoMarshalInterface(stream, iid, obj, com.MSHCTX_INPROC, None, flags) == com.S_OK
    stream.Seek(0, com.STREAM_SEEK_SET)
    return stream


def unmarshal(stream: Any, iid: Any = ITest) -> Any:
    """Rewind and CoUnmarshalInterface."""
    stream.Seek(0, com.STREAM_SEEK_SET)
    return com.CoUnmarshalInterface(stream, iid)


def release_data(stream: Any) -> int:
    """Rewind and CoReleaseMarshalData."""
    stream.Seek(0, com.STREAM_SEEK_SET)
    return int(com.CoReleaseMarshalData(stream))


@pytest.fixture
def sta() -> Iterator[None]:
    """The test's thread as a COM STA for the test's duration."""
    com.CoInitializeEx(None, com.COINIT_APARTMENTTHREADED)
    try:
        yield
    finally:
        com.CoUninitialize()


@pytest.fixture
def host(sta: None) -> Iterator[ComThread]:
    """Another STA, pumping, where objects are marshaled (Wine's start_host_object)."""
    with ComThread(name="host-sta") as thread:
        yield thread


# -- marshal data in streams, in the states the bad-input tests need --------------------------------------


def rewound(stream: Any) -> Any:
    """*stream*, seeked back to its start."""
    stream.Seek(0, com.STREAM_SEEK_SET)
    return stream


def unmarshaled(stream: Any) -> Any:
    """NORMAL marshal data already unmarshaled once (stale), rewound."""
    com.CoUnmarshalInterface(stream, ITest)
    return rewound(stream)


def released(stream: Any) -> Any:
    """Marshal data given back with CoReleaseMarshalData, rewound."""
    com.CoReleaseMarshalData(stream)
    return rewound(stream)


def cross_apartment_value(obj: Counted) -> int:
    """Marshal *obj* (of this thread's apartment) to a new MTA thread and call it from there (this thread
    serves the call if it is an STA waiting in the join): the value it read back."""
    stream = com.CoMarshalInterThreadInterfaceInStream(ITest, obj)

    def use() -> int:
        com.CoInitializeEx(None, com.COINIT_MULTITHREADED)
        try:
            proxy = com.CoGetInterfaceAndReleaseStream(stream, ITest)
            result: int = proxy.Value()
            proxy.Release()
            return result
        finally:
            com.CoUninitialize()

    return in_thread(use)
