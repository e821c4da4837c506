"""A private Ray instance for the scenarios that call across processes: started on first use (once per
process) with :func:`aptrt.ray.init_local` (loopback only, no usage reporting, 2 CPUs, a 100 MB object store,
the repository root on the workers' ``PYTHONPATH`` so actors import the benchmark classes by reference), and
shut down by the runner when it is done with it (``Scenario.finish``). Ray's processes, and the driver's Ray
threads, take the CPUs of the thread that starts them: they are started with every CPU of the run (the
``"any"`` role), not the caller's.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import ModuleType

from aptrt.ray._local import RAY_ENV

from ._harness import pin
from ._scenarios import Skipped

#: what the actor processes need on their ``sys.path`` to import ``benchmarks``
ROOT = Path(__file__).resolve().parent.parent

#: the ray module once :func:`start` has an instance running
_ray: ModuleType | None = None
#: whether this module started that instance (and so shuts it down)
_owned = False
#: why Ray cannot start here (found once: a failed start can take 10 s)
_failure: str | None = None


def start() -> ModuleType:
    """The ``ray`` module, with a private local instance running (started on the first call).

    :raises Skipped: Ray cannot be imported or cannot start here (the reason is kept: later calls raise
        at once)
    """
    global _ray, _owned, _failure
    if _ray is not None:
        return _ray
    if _failure is not None:
        raise Skipped(_failure)
    import aptrt.ray  # without Ray: importing it does not import ray

    for name, value in RAY_ENV.items():  # before the first `import ray`, which reads them
        os.environ.setdefault(name, value)
    try:
        import ray
    except Exception as exc:  # noqa: BLE001 - a broken install: report it, do not stop the suite
        _failure = f"ray cannot be imported: {type(exc).__name__}: {exc}"[:300]
        raise Skipped(_failure) from None
    if ray.is_initialized():  # the caller's own instance (benchmarks.run() from a Ray driver): use it
        _ray, _owned = ray, False
        return ray
    pin("any")
    try:
        aptrt.ray.init_local(pythonpath=str(ROOT), num_cpus=2, logging_level=logging.WARNING)
    except aptrt.NotSupportedError as exc:
        _failure = exc.message
        raise Skipped(_failure) from None
    finally:
        pin("caller")
    _ray, _owned = ray, True
    return ray


def stop() -> None:
    """Shut down the instance :func:`start` started (no-op otherwise). Nothing of Ray's is left running."""
    global _ray, _owned
    ray, owned = _ray, _owned
    _ray, _owned = None, False
    if ray is not None and owned:
        ray.shutdown()
