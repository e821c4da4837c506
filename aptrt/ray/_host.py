"""Where a remote apartment runs: :class:`RayHost`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._core._exceptions import InvalidArgumentError, NotSupportedError
from .._core._validate import check_int, check_seconds
from ._remote import RemoteApartment
from ._transport import DriverTransport

if TYPE_CHECKING:
    from .._core._runtime import Runtime


@dataclass(frozen=True)
class RayHost:
    """Host an STA in a new Ray actor: ``sta = await rt.start_sta("db", host=aptrt.ray.RayHost())``.

    The actor runs an aptrt STA on its own thread (the backend is ``start_sta``'s); ``sta`` is a
    :class:`RemoteApartment` of this process that sends it calls. Ray must be initialized (``ray.init()``),
    or Ray starts a local instance itself on the first actor.

    :param actor_options: passed to Ray's ``.options()`` (``num_cpus``, ``resources``, ``runtime_env``,
        ``scheduling_strategy``, ``name``, ...); aptrt sets ``max_restarts=0`` (a restarted actor would have
        lost every object) and ``max_concurrency=1000`` (calls in flight, not threads) unless given
    :param window: Ray messages in flight to the actor at most; calls queued behind them leave together
    :param batch: calls per Ray message at most
    :param linger: seconds the actor waits for a batch's calls to finish, so their replies ride on the
        batch's return; later replies come back through a standing poll
    :param startup_timeout: seconds to wait for the actor to start
    :param shutdown_timeout: seconds to let the actor close its apartment before it is killed
    :param own_thread: run the objects on an STA thread of their own in the actor (the default), or on the
        Ray actor's event loop itself (False; asyncio only): one thread hop less per call (about 0.15 ms
        here), but a sync method then holds up the actor's messages, cancel requests for it included
    :raises InvalidArgumentError: an argument of the wrong type or range (``E_INVALIDARG``)
    """

    actor_options: Mapping[str, Any] = field(default_factory=dict)
    window: int = 4
    batch: int = 64
    linger: float = 0.002
    startup_timeout: float = 60.0
    shutdown_timeout: float = 5.0
    own_thread: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.actor_options, Mapping):
            raise InvalidArgumentError(f"actor_options must be a mapping, not {type(self.actor_options).__name__}")
        check_int(self.window, "window", low=1)
        check_int(self.batch, "batch", low=1)
        if not isinstance(self.own_thread, bool):
            raise InvalidArgumentError(f"own_thread must be a bool, not {type(self.own_thread).__name__}")
        for what in ("linger", "startup_timeout", "shutdown_timeout"):
            if getattr(self, what) is None:
                raise InvalidArgumentError(f"{what} must be a number of seconds, not None")
            check_seconds(getattr(self, what), what)

    async def start(self, runtime: Runtime, name: str, backend: str) -> RemoteApartment:
        """Start the actor and connect to it (called by ``Runtime.start_sta(host=...)``)."""
        apartment = self._new(runtime, name, backend)
        try:
            await apartment._start()
            await apartment._connect()
        except BaseException:
            await apartment.aclose()
            raise
        return apartment

    def start_blocking(self, runtime: Runtime, name: str, backend: str) -> RemoteApartment:
        """The blocking twin of :meth:`start` (``Runtime.start_sta_blocking(host=...)``)."""
        apartment = self._new(runtime, name, backend)
        try:
            apartment._start_blocking()
            apartment._connect_blocking()
        except BaseException:
            apartment.close_blocking()
            raise
        return apartment

    def _new(self, runtime: Runtime, name: str, backend: str) -> RemoteApartment:
        if not self.own_thread and backend != "asyncio":
            raise InvalidArgumentError(f"RayHost(own_thread=False) runs on Ray's asyncio loop: backend {backend!r}")
        try:
            import ray  # noqa: F401
        except ImportError:
            raise NotSupportedError("Ray is not installed: pip install 'aptrt[ray]'") from None
        apartment = RemoteApartment(runtime, name, DriverTransport(self, name, backend), where="in a Ray actor")
        runtime._add_sta(apartment)
        return apartment
