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
