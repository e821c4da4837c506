"""The neutral apartment: objects that run on whichever thread calls them, still behind a proxy."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import anyio

from ._apartment import Apartment, ApartmentKind, ApartmentStatistics
from ._call import RUNNING, Call
from ._exceptions import ApartmentClosedError, DisconnectReason
from ._execute import Counters, admit, run_inline, run_task
from ._threadstate import tls

if TYPE_CHECKING:
    from ._runtime import Runtime


class NeutralApartment(Apartment):
    """The runtime's neutral apartment (``rt.neutral``, COM's NA).

    A call to a neutral object runs on the caller's thread, with no thread switch: sync methods inline,
    async methods as a task of the caller's own loop. Proxies held by neutral objects may be used from
    any thread. Counters are guarded by a lock, since any thread may run neutral code.
    """

    kind = ApartmentKind.NEUTRAL

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime, "NA")
        self._lock = threading.Lock()
        # one Counters per thread that ran neutral code (each written only by its thread), summed on read
        self._local = threading.local()
        self._all_counters: list[Counters] = []

    #: any thread may run neutral code, so proxies held by neutral objects work from any thread
    accepts_any_thread = True

    def submit(self, call: Call) -> None:
        if self.closing:
            raise ApartmentClosedError(
                f"the neutral apartment is closed; {call.name!r} was not run", reason=DisconnectReason.SERVER_SHUTDOWN
            )
        if self.exports._pending:  # references dropped by garbage collection (no thread to nudge)
            self.exports.flush_releases()
        counters = self._thread_counters()
        fn = admit(call, counters)
        if fn is not None:
            port = tls.port
            if call.is_async and port is not None:
                call.runner = port
                call.phase = RUNNING
                port.host.spawn(run_task, call, fn, self, counters, port)
            else:
                # a thread running neutral code is in the neutral apartment for that time (as in COM)
                previous = tls.apartment
                tls.apartment = self
                try:
                    if call.is_async:
                        run_inline(call, lambda *a, **k: anyio.run(_await, fn, a, k), self, counters)
                    else:
                        run_inline(call, fn, self, counters)
                finally:
                    tls.apartment = previous

    def _thread_counters(self) -> Counters:
        try:
            counters: Counters = self._local.counters
        except AttributeError:
            counters = self._local.counters = Counters()
            with self._lock:
                self._all_counters.append(counters)
        return counters

    def statistics(self) -> ApartmentStatistics:
        self.exports.flush_releases()
        with self._lock:
            counters = list(self._all_counters)
        return self._stats(0, counters)

    async def aclose(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        self.closing = True
        self._release_imports()
        self.exports.close(DisconnectReason.SERVER_SHUTDOWN)


async def _await(fn: object, args: tuple[object, ...], kwargs: dict[str, object]) -> object:
    return await fn(*args, **kwargs)  # type: ignore[operator]
