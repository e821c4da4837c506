from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

import aptrt


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


@pytest.fixture(params=["asyncio", "trio", "uvloop"])
def sta_backend(request: pytest.FixtureRequest) -> str:
    """The event loop of the STAs a test starts."""
    return request.param


def _aptrt_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("aptrt-")]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every apartment a test opened is closed again, and its threads are gone, when the test ends."""
    yield
    deadline = time.monotonic() + 5
    for thread in _aptrt_threads():
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    leaked = [t.name for t in _aptrt_threads()]
    assert not leaked, f"aptrt threads still alive after the test: {leaked}"
    with pytest.raises(aptrt.NotInitializedError):
        aptrt.current_apartment()  # no runtime left open, and this thread is in no apartment


@pytest.fixture
async def rt() -> AsyncIterator[aptrt.Runtime]:
    """A runtime whose main STA is the test's own event loop."""
    async with aptrt.Runtime() as runtime:
        yield runtime
