"""pytest fixtures for testing code that uses aptrt: a runtime, an STA per backend, and leak checks.

Enable the plugin in your ``conftest.py``::

    pytest_plugins = ["aptrt.testing"]

or on the command line with ``pytest -p aptrt.testing``. Async tests need anyio's pytest plugin, which
comes with anyio: mark them ``@pytest.mark.anyio`` or set ``anyio_mode = "auto"``.

Fixtures:

* ``aptrt_runtime``: an open :class:`aptrt.Runtime` whose main STA is the test's own event loop (async
  tests).
* ``aptrt_sync_runtime``: an open runtime for sync tests. The test's thread is a plain thread, which
  counts as a member of the MTA.
* ``aptrt_sta_backend``: ``"asyncio"``, ``"trio"`` and ``"uvloop"``, one test run each. uvloop is
  skipped when it is not installed.
* ``aptrt_sta``: an STA on ``aptrt_sta_backend``, started in ``aptrt_runtime`` and closed after the test.
* ``aptrt_ray`` (session): one private Ray instance on this machine for the whole run
  (:func:`aptrt.ray.init_local`, with the rootdir on the workers' ``PYTHONPATH`` so actors import your
  test modules); a test that uses it skips, with the reason, when Ray is not installed, cannot start, or
  ``APTRT_SKIP_RAY=1``. Set the ``num_cpus`` Ray gets with the ini option ``aptrt_ray_num_cpus``.
* ``aptrt_leak_check`` (autouse): fails the test when it leaves an apartment behind. That covers a
  runtime left open, an STA left running in a runtime that outlives the test, an ``aptrt-*`` thread
  still alive five seconds after the test, and the test's thread still in an apartment. Turn it off for
  one test with ``@pytest.mark.aptrt_allow_leaks``, or for a whole suite with the ini option
  ``aptrt_leak_check = false``.

Helpers: :func:`leak_baseline` and :func:`find_leaks` (the leak check, for use outside pytest), and
:func:`assert_no_exported_objects` (every proxy to the runtime's objects was released).
"""

from __future__ import annotations

import gc
import importlib.util
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

import aptrt
from aptrt._core._runtime import all_runtimes
from aptrt._core._threadstate import tls

__all__ = (
    "BACKENDS",
    "LeakBaseline",
    "aptrt_leak_check",
    "aptrt_ray",
    "aptrt_runtime",
    "aptrt_sta",
    "aptrt_sta_backend",
    "aptrt_sync_runtime",
    "assert_no_exported_objects",
    "find_leaks",
    "leak_baseline",
)

#: the event loops an STA can run, as ``aptrt_sta_backend`` parametrizes them
BACKENDS = ("asyncio", "trio", "uvloop")

#: how long a leaked-looking thread gets to finish after the test before it counts as leaked
THREAD_GRACE = 5.0

_ALLOW_LEAKS = "aptrt_allow_leaks"
_INI_LEAK_CHECK = "aptrt_leak_check"
_INI_RAY_CPUS = "aptrt_ray_num_cpus"


# -- plugin hooks --------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _INI_LEAK_CHECK,
        "fail tests that leave aptrt runtimes, STAs or aptrt-* threads behind (aptrt.testing)",
        type="bool",
        default=True,
    )
    parser.addini(_INI_RAY_CPUS, "CPUs the aptrt_ray fixture gives Ray (default: Ray's own choice)", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{_ALLOW_LEAKS}: skip aptrt.testing's leak check for this test")
    config.addinivalue_line("markers", "ray: needs the aptrt_ray fixture's local Ray instance")


# -- leak checks ---------------------------------------------------------------------------------------


def _aptrt_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("aptrt-")]


@dataclass(frozen=True)
class LeakBaseline:
    """What was open before the code under test ran (see :func:`leak_baseline`)."""

    threads: frozenset[threading.Thread]
    #: each runtime open at the time, with the apartments it had open
    runtimes: tuple[tuple[aptrt.Runtime, frozenset[aptrt.Apartment]], ...]
    #: the apartment the calling thread was in
    apartment: aptrt.Apartment | None


def leak_baseline() -> LeakBaseline:
    """Note the runtimes, apartments and ``aptrt-*`` threads that exist now, so that
    :func:`find_leaks` reports only what appears after this call."""
    return LeakBaseline(
        frozenset(_aptrt_threads()),
        tuple((rt, frozenset(rt.apartments)) for rt in all_runtimes()),
        tls.s.apartment,
    )


def find_leaks(baseline: LeakBaseline, *, grace: float = THREAD_GRACE) -> list[str]:
    """What was opened since *baseline* and is still open: one sentence per leak (empty: no leak).

    These count as leaks: a runtime opened since then and not closed; an STA started since then in a
    runtime that was already open; the calling thread still in an apartment it joined since then; and,
    when no runtime was open at *baseline*, any new ``aptrt-*`` thread still alive after *grace*
    seconds. A runtime that lives across tests keeps its MTA threads, so they are not counted.
    """
    leaks: list[str] = []
    before = {id(rt): apartments for rt, apartments in baseline.runtimes}
    for rt in all_runtimes():
        known = before.get(id(rt))
        if known is None:
            leaks.append(f"{rt!r} was opened and not closed")
            continue
        for apartment in rt.apartments:
            if apartment not in known and isinstance(apartment, aptrt.STA):
                leaks.append(f"STA {apartment.name!r} was started and not closed")
    if tls.s.apartment is not None and tls.s.apartment is not baseline.apartment:
        leaks.append(f"this thread is still in apartment {tls.s.apartment.name!r}")
    if not baseline.runtimes and not leaks:
        deadline = time.monotonic() + grace
        for thread in _aptrt_threads():
            if thread not in baseline.threads and thread is not threading.current_thread():
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        leaked = [t.name for t in _aptrt_threads() if t not in baseline.threads and t.is_alive()]
        if leaked:
            leaks.append(f"aptrt threads still alive {grace:g} s after the test: {', '.join(sorted(leaked))}")
    return leaks


def assert_no_exported_objects(runtime: aptrt.Runtime) -> None:
    """Assert that no apartment of *runtime* still exports an object: every proxy that another
    apartment held has been released. Collects garbage first, because a proxy dropped without
    ``release()`` gives its reference back when it is collected.

    :raises AssertionError: names each apartment that still exports objects, and how many
    """
    gc.collect()
    exported = {a.name: n for a in runtime.apartments if (n := a.statistics().exported)}
    assert not exported, f"objects still referenced from other apartments: {exported}"


@pytest.fixture(autouse=True)
def aptrt_leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves aptrt runtimes, STAs or threads behind (see :func:`find_leaks`)."""
    if request.node.get_closest_marker(_ALLOW_LEAKS) is not None or not request.config.getini(_INI_LEAK_CHECK):
        yield
        return
    baseline = leak_baseline()
    yield
    leaks = find_leaks(baseline)
    if leaks:
        pytest.fail("aptrt leak check: " + "; ".join(leaks), pytrace=False)


# -- Ray ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def aptrt_ray(request: pytest.FixtureRequest) -> Iterator[object]:
    """One private Ray instance on this machine for the whole run (the ``ray`` module); skips the tests
    that use it, saying why, when Ray is not installed, cannot start, or ``APTRT_SKIP_RAY=1``."""
    import os

    if os.environ.get("APTRT_SKIP_RAY") == "1":
        pytest.skip("APTRT_SKIP_RAY=1")
    from aptrt.ray import init_local

    cpus = request.config.getini(_INI_RAY_CPUS)
    options = {"num_cpus": int(cpus)} if cpus else {}
    try:
        ray = init_local(pythonpath=str(request.config.rootpath), **options)
    except aptrt.NotSupportedError as exc:
        pytest.skip(exc.message)
    yield ray
    ray.shutdown()


# -- runtimes and STAs ---------------------------------------------------------------------------------


@pytest.fixture
async def aptrt_runtime() -> AsyncIterator[aptrt.Runtime]:
    """A runtime whose main STA is the test's event loop; closed (every apartment in it) after the test."""
    async with aptrt.Runtime() as runtime:
        yield runtime


@pytest.fixture
def aptrt_sync_runtime() -> Iterator[aptrt.Runtime]:
    """A runtime for sync tests: the test's thread is a plain thread (an implicit member of the MTA)."""
    with aptrt.Runtime() as runtime:
        yield runtime


def _backend_params() -> list[object]:
    uvloop_missing = importlib.util.find_spec("uvloop") is None
    return [
        pytest.param(
            backend,
            id=backend,
            marks=pytest.mark.skipif(backend == "uvloop" and uvloop_missing, reason="uvloop is not installed"),
        )
        for backend in BACKENDS
    ]


@pytest.fixture(params=_backend_params())
def aptrt_sta_backend(request: pytest.FixtureRequest) -> str:
    """The event loop of the STAs the test starts: each test runs once per backend."""
    backend: str = request.param
    return backend


@pytest.fixture
async def aptrt_sta(aptrt_runtime: aptrt.Runtime, aptrt_sta_backend: str) -> AsyncIterator[aptrt.STA]:
    """An STA named ``test`` on ``aptrt_sta_backend``, in ``aptrt_runtime``; closed after the test."""
    async with aptrt_runtime.open_sta("test", backend=aptrt_sta_backend) as sta:
        yield sta
