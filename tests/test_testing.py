"""aptrt.testing: the fixtures (used here, as aptrt's own suite uses them), the leak check and its
helpers, and the plugin in a user's suite (run by pytester in a child process)."""

from __future__ import annotations

import threading

import pytest

import aptrt
from aptrt.testing import BACKENDS, assert_no_exported_objects, find_leaks, leak_baseline

from .objects import Counter


class TestFixtures:
    async def test_aptrt_runtime(self, aptrt_runtime: aptrt.Runtime, anyio_backend_name: str) -> None:
        assert aptrt.current_runtime() is aptrt_runtime
        main = aptrt_runtime.main_sta
        assert main is not None and aptrt.current_apartment() is main
        assert main.backend == anyio_backend_name

    async def test_aptrt_sta(self, aptrt_runtime: aptrt.Runtime, aptrt_sta: aptrt.STA, aptrt_sta_backend: str) -> None:
        assert aptrt_sta.backend == aptrt_sta_backend
        assert aptrt_sta in aptrt_runtime.apartments
        assert await aptrt_sta.run_sync(lambda: threading.current_thread().name) == "aptrt-sta-test"

    def test_aptrt_sync_runtime(self, aptrt_sync_runtime: aptrt.Runtime, aptrt_sta_backend: str) -> None:
        assert aptrt_sync_runtime.main_sta is None
        assert aptrt.current_apartment() is aptrt_sync_runtime.mta  # a plain thread: the implicit MTA
        sta = aptrt_sync_runtime.start_sta_blocking("sync", backend=aptrt_sta_backend)
        assert sta.run_sync_blocking(lambda: threading.current_thread().name) == "aptrt-sta-sync"
        sta.close_blocking()

    def test_backends(self) -> None:
        assert BACKENDS == ("asyncio", "trio", "uvloop")

    def test_the_suite_aliases(self, sta_backend: str, aptrt_sta_backend: str) -> None:
        assert sta_backend == aptrt_sta_backend  # tests/conftest.py's names are the plugin's fixtures


class TestLeakHelpers:
    def test_nothing_left(self) -> None:
        baseline = leak_baseline()
        with aptrt.Runtime() as rt:
            rt.start_sta_blocking("short-lived")
        assert find_leaks(baseline) == []

    def test_runtime_left_open(self) -> None:
        baseline = leak_baseline()
        rt = aptrt.Runtime()
        rt.__enter__()
        try:
            sta = rt.start_sta_blocking("left")
            leaks = find_leaks(baseline, grace=0.05)
            assert leaks == [f"{rt!r} was opened and not closed"]  # its STA and threads go with it
        finally:
            sta.close_blocking()
            rt.__exit__(None, None, None)
        assert find_leaks(baseline) == []

    def test_sta_left_in_a_runtime_that_lives_on(self) -> None:
        with aptrt.Runtime() as rt:
            baseline = leak_baseline()
            sta = rt.start_sta_blocking("stray")
            assert find_leaks(baseline, grace=0.05) == ["STA 'stray' was started and not closed"]
            sta.close_blocking()
            assert find_leaks(baseline) == []

    def test_thread_left_running(self) -> None:
        baseline = leak_baseline()
        release = threading.Event()
        stray = threading.Thread(target=release.wait, args=(10,), name="aptrt-stray")
        stray.start()
        try:
            (leak,) = find_leaks(baseline, grace=0.05)
            assert "aptrt-stray" in leak and "0.05 s after the test" in leak
        finally:
            release.set()
            stray.join(5)
        assert find_leaks(baseline) == []

    def test_threads_from_before_are_not_leaks(self) -> None:
        release = threading.Event()
        older = threading.Thread(target=release.wait, args=(10,), name="aptrt-older")
        older.start()
        try:
            assert find_leaks(leak_baseline(), grace=0.05) == []
        finally:
            release.set()
            older.join(5)

    def test_a_thread_that_ends_within_the_grace_is_fine(self) -> None:
        baseline = leak_baseline()
        ending = threading.Thread(target=threading.Event().wait, args=(0.05,), name="aptrt-ending")
        ending.start()
        assert find_leaks(baseline, grace=5) == []

    async def test_assert_no_exported_objects(self, aptrt_runtime: aptrt.Runtime, aptrt_sta: aptrt.STA) -> None:
        assert_no_exported_objects(aptrt_runtime)
        counter = await aptrt_sta.create(Counter)
        with pytest.raises(AssertionError, match="'test': 1"):
            assert_no_exported_objects(aptrt_runtime)
        counter.release()
        assert_no_exported_objects(aptrt_runtime)
        await aptrt_sta.create(Counter)  # dropped without release: collected, then given back
        assert_no_exported_objects(aptrt_runtime)


USER_TESTS = """
import threading

import pytest

import aptrt


class ICounter(aptrt.Interface, iid="4b1f2f63-2a8e-4f55-9d0c-0f3f2d1a9e11"):
    def add(self, n: int) -> int: ...


class Counter(ICounter):
    def __init__(self) -> None:
        self.total = 0

    def add(self, n: int) -> int:
        self.total += n
        return self.total


@pytest.mark.anyio
async def test_runtime(aptrt_runtime):
    counter = await aptrt_runtime.mta.create(Counter)
    assert await counter.add(2) == 2


@pytest.mark.anyio
async def test_sta(aptrt_sta, aptrt_sta_backend):
    counter = await aptrt_sta.create(Counter)
    assert await counter.add(1) == 1
    assert aptrt_sta.backend == aptrt_sta_backend


def test_sync(aptrt_sync_runtime):
    sta = aptrt_sync_runtime.start_sta_blocking("worker")
    assert sta.run_sync_blocking(lambda: threading.current_thread().name) == "aptrt-sta-worker"
    sta.close_blocking()


def test_leaky():
    aptrt.Runtime().__enter__()  # never closed


@pytest.mark.aptrt_allow_leaks
def test_leaky_but_allowed():
    pass
"""


class TestInAUserSuite:
    """The plugin as a user enables it, in a fresh process (its own runtimes and threads)."""

    def test_with_pytest_plugins(self, pytester: pytest.Pytester) -> None:
        pytester.makeconftest('pytest_plugins = ["aptrt.testing"]\n')
        pytester.makepyfile(test_user=USER_TESTS)
        result = pytester.runpytest_subprocess("--strict-markers", "-p", "no:cacheprovider", timeout=120)
        # anyio runs each async test on asyncio and trio: 2 runtime tests + 2 x 3 STA tests, then sync,
        # leaky and allowed; the leak is an error at teardown (its call passed)
        result.assert_outcomes(passed=11, errors=1)
        result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaky*", "*aptrt leak check: <Runtime open*"])

    def test_with_dash_p_and_the_ini_opt_out(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(test_user=USER_TESTS)
        result = pytester.runpytest_subprocess(
            "-p", "aptrt.testing", "-o", "aptrt_leak_check=false", "-p", "no:cacheprovider", "-v", timeout=120
        )
        result.assert_outcomes(passed=11)
        result.stdout.fnmatch_lines(["*test_sta?trio-asyncio?*PASSED*", "*test_sta?trio-trio?*PASSED*"])
        result.stdout.fnmatch_lines(["*test_leaky PASSED*"])

    def test_without_the_plugin_the_fixtures_are_missing(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(test_user="def test_x(aptrt_sync_runtime):\n    pass\n")
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*fixture 'aptrt_sync_runtime' not found*"])
