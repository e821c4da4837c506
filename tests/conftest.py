from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import settings

import aptrt

# aptrt's own pytest plugin (the runtime/STA fixtures and the autouse leak check, aptrt_leak_check),
# and pytester for tests/test_testing.py, which runs the plugin in user suites
pytest_plugins = ["aptrt.testing", "pytester"]

# hypothesis profiles: "ci" (the default, fast) and "thorough"; pick one with
# APTRT_HYPOTHESIS_PROFILE=thorough or `pytest --hypothesis-profile=thorough`
settings.register_profile("ci", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("APTRT_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(
    scope="module",
    params=[
        # debug mode makes the thread-heavy tests slow; keep it off
        pytest.param(("asyncio", {"debug": False}), id="asyncio"),
        pytest.param("trio", id="trio"),
    ],
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


@pytest.fixture
def sta_backend(aptrt_sta_backend: str) -> str:
    """The event loop of the STAs a test starts (asyncio, trio, uvloop): aptrt.testing's parameter."""
    return aptrt_sta_backend


@pytest.fixture(autouse=True)
def no_leaked_threads(aptrt_leak_check: None) -> Iterator[None]:
    """Every apartment a test opened is closed again, and its threads are gone, when the test ends
    (aptrt_leak_check); and no runtime is left open for the next test."""
    yield
    with pytest.raises(aptrt.NotInitializedError):
        aptrt.current_apartment()  # no runtime left open, and this thread is in no apartment


@pytest.fixture
async def rt(aptrt_runtime: aptrt.Runtime) -> AsyncIterator[aptrt.Runtime]:
    """A runtime whose main STA is the test's own event loop (aptrt.testing's ``aptrt_runtime``)."""
    yield aptrt_runtime


# -- Ray (tests marked `ray`: tests/test_ray*.py) -----------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# read by Ray at `import ray`: no usage reporting, no auth token file, every port on loopback, and a start
# that fails after 10 s rather than 30 (longer than a test's timeout)
for _name, _value in (
    ("RAY_USAGE_STATS_ENABLED", "0"),
    ("RAY_AUTH_MODE", "disabled"),
    ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
    ("RAY_gcs_server_port_wait_time_s", "10"),
):
    os.environ.setdefault(_name, _value)


def _reap_ray_children(ray: object) -> None:
    """A failed ray.init leaves the processes it started: stop them, so nothing outlives the run and no
    ResourceWarning ("subprocess N is still running") turns into an error."""
    import gc
    import subprocess

    try:
        ray.shutdown()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001, S110 - best effort: the next lines kill what is left
        pass
    for obj in gc.get_objects():
        if isinstance(obj, subprocess.Popen) and obj.returncode is None:
            obj.kill()
            obj.wait(timeout=5)
    gc.collect()


@pytest.fixture(scope="session")
def ray_session() -> Iterator[object]:
    """One local Ray instance for the whole run (on this machine only: ``address="local"``); the tests that
    use it skip, saying why, when Ray is not installed, ``APTRT_SKIP_RAY=1``, or Ray cannot start here."""
    if os.environ.get("APTRT_SKIP_RAY") == "1":
        pytest.skip("APTRT_SKIP_RAY=1")
    os.environ.pop("RAY_ADDRESS", None)
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'aptrt[ray]')")
    import warnings

    error = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            ray.init(
                address="local",
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=100_000_000,
                runtime_env={"env_vars": {"PYTHONPATH": ROOT}},
            )
        except Exception as exc:  # noqa: BLE001 - any failure to start means: skip, with the reason
            error = f"Ray cannot start here: {type(exc).__name__}: {exc}"[:300]
            _reap_ray_children(ray)
    if error is not None:
        pytest.skip(error)
    yield ray
    ray.shutdown()
