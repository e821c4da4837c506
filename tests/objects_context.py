"""A service module for the unload scenario of ``test_context_unload.py`` (the seed's shared service host).

The host loads it by registering its class object inside a context of its own, and unloads it once
``Context.disconnect`` succeeded: then none of its objects may be alive (``aptrt.can_unload_now(this
module)``). Nothing else lives here, so the module's object count is this service's alone.
"""

from __future__ import annotations

import threading
import weakref

import anyio

import aptrt


class ISpooler(aptrt.Interface, iid="351ce6ea-83f0-4733-ae33-a05d6519e648"):
    def submit(self, document: str) -> int: ...
    async def print_job(self, pages: int) -> int: ...
    def token(self) -> int: ...


class Press:
    """What the service's objects share in one test: the press every print job waits for, and a census."""

    def __init__(self, expected: int) -> None:
        self._lock = threading.Lock()
        self.expected = expected
        self.printing = 0
        #: set once *expected* print jobs wait at the press
        self.all_printing = threading.Event()
        self.instances: list[weakref.ref[Spooler]] = []
        self._event: anyio.Event | None = None
        self._open = False

    def born(self, spooler: Spooler) -> None:
        with self._lock:
            self.instances.append(weakref.ref(spooler))

    def alive(self) -> int:
        return sum(1 for ref in self.instances if ref() is not None)

    async def wait(self) -> None:
        """Wait for the press (in the host's loop: the event is made there, on first use)."""
        if self._event is None:
            self._event = anyio.Event()
        with self._lock:
            self.printing += 1
            if self.printing == self.expected:
                self.all_printing.set()
        if not self._open:
            await self._event.wait()

    async def open(self) -> None:
        """Let every print job through (run it in the host's loop)."""
        self._open = True
        if self._event is not None:
            self._event.set()


#: the press of the test now running (the host's fixture sets it; class factories make objects with no arguments)
press = Press(0)


class Spooler(ISpooler):
    """The service's class: made only by its class factory (so the module counts it)."""

    def __init__(self) -> None:
        self.documents = 0
        press.born(self)

    def submit(self, document: str) -> int:
        self.documents += 1
        return self.documents

    async def print_job(self, pages: int) -> int:
        await press.wait()
        return pages

    def token(self) -> int:
        return aptrt.context_token()
