"""Interfaces and classes for the Ray tests: importable (``tests.objects_ray``), so a Ray actor process can
load them by reference."""

from __future__ import annotations

import os
import threading

import anyio

import aptrt


class IRemote(aptrt.Interface, iid="5b0c8f3e-41a7-4f3e-9b6e-3c1f7a2d9e01"):
    def add(self, n: int) -> int: ...
    async def add_async(self, n: int) -> int: ...
    def where(self) -> tuple[int, int]: ...
    async def sleep(self, seconds: float) -> str: ...
    def fail(self, message: str) -> None: ...
    def make_child(self, start: int) -> IRemote: ...
    def call_back(self, other: ICallback, n: int) -> int: ...
    async def call_back_async(self, other: ICallback, n: int) -> int: ...
    def same(self, other: IRemote) -> bool: ...
    def echo(self, value: object) -> object: ...
    def keep(self, other: object) -> None: ...
    async def call_kept(self, n: int) -> int: ...
    async def add_to(self, other: IRemote, n: int) -> int: ...


class ICallback(aptrt.Interface, iid="5b0c8f3e-41a7-4f3e-9b6e-3c1f7a2d9e02"):
    def notify(self, n: int) -> int: ...
    async def notify_async(self, n: int) -> int: ...


class Remote(IRemote):
    def __init__(self, start: int = 0) -> None:
        self.value = start
        self.kept: object = None
        self.cancelled = 0

    def add(self, n: int) -> int:
        self.value += n
        return self.value

    async def add_async(self, n: int) -> int:
        await anyio.lowlevel.checkpoint()
        self.value += n
        return self.value

    def where(self) -> tuple[int, int]:
        return os.getpid(), threading.get_ident()

    async def sleep(self, seconds: float) -> str:
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        return "slept"

    def fail(self, message: str) -> None:
        raise KeyError(message)

    def make_child(self, start: int) -> Remote:
        return Remote(start)

    def call_back(self, other: ICallback, n: int) -> int:
        return aptrt.blocking(other).notify(n)  # type: ignore[arg-type]

    async def call_back_async(self, other: ICallback, n: int) -> int:
        return await other.notify_async(n)

    def same(self, other: IRemote) -> bool:
        return other is self

    def echo(self, value: object) -> object:
        return value

    def keep(self, other: object) -> None:
        self.kept = other

    async def call_kept(self, n: int) -> int:
        return await self.kept.notify_async(n)  # type: ignore[attr-defined, no-any-return]

    async def add_to(self, other: IRemote, n: int) -> int:
        return await other.add(n)  # type: ignore[misc, no-any-return]


class Callback(ICallback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def notify(self, n: int) -> int:
        self.seen.append((n, threading.get_ident()))
        return n * 10

    async def notify_async(self, n: int) -> int:
        await anyio.lowlevel.checkpoint()
        self.seen.append((n, threading.get_ident()))
        return n * 10


@aptrt.coclass(clsid="5b0c8f3e-41a7-4f3e-9b6e-3c1f7a2d9e10", progid="aptrt.tests.RayServed.1")
class Served(Remote):
    """A class served by a remote apartment (``remote.serve_class``)."""


def pid_and_thread() -> tuple[int, str]:
    return os.getpid(), threading.current_thread().name


async def pid_async() -> int:
    await anyio.lowlevel.checkpoint()
    return os.getpid()


class IProbe(aptrt.Interface, iid="5b0c8f3e-41a7-4f3e-9b6e-3c1f7a2d9e03"):
    def cancelled_count(self) -> int: ...
    def die(self, how: str) -> None: ...
    def unpicklable_result(self) -> object: ...
    def raise_unpicklable(self) -> None: ...
    def raise_com(self) -> None: ...


class Probe(Remote, IProbe):
    def cancelled_count(self) -> int:
        return self.cancelled

    def die(self, how: str) -> None:
        if how == "exit":
            os._exit(3)
        if how == "keyboard":
            raise KeyboardInterrupt
        raise SystemExit(4)

    def unpicklable_result(self) -> object:
        return threading.Lock()

    def raise_unpicklable(self) -> None:
        raise _Unpicklable("no way back", threading.Lock())

    def raise_com(self) -> None:
        raise aptrt.COMError("custom failure", hresult=0x80040001)


class _Unpicklable(Exception):
    def __init__(self, message: str, lock: object) -> None:
        super().__init__(message)
        self.lock = lock


class Disconnector(ICallback):
    """A local callback that disconnects a (remote) context from inside a call chain that runs in it."""

    def __init__(self, ctx: aptrt.Context) -> None:
        self.ctx = ctx
        self.error: BaseException | None = None

    def notify(self, n: int) -> int:
        return n

    async def notify_async(self, n: int) -> int:
        try:
            await self.ctx.disconnect(0)
        except BaseException as exc:
            self.error = exc
            raise
        return n
