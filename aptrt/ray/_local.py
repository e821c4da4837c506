"""Start a private Ray instance on this machine, the way tests, benchmarks and demos want it."""

from __future__ import annotations

import gc
import os
import subprocess
import warnings
from typing import Any

from .._core._exceptions import NotSupportedError

#: read by Ray at ``import ray``: no usage reporting, no auth token file, every port on loopback, and a
#: start that fails after 10 s instead of 30 (see docs/ray-research.md)
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_gcs_server_port_wait_time_s": "10",
}


def init_local(*, pythonpath: str | None = None, **options: Any) -> Any:
    """``ray.init`` a private instance on this machine only (``address="local"``, never a cluster found in
    the environment), bound to loopback, with a small object store (100 MB) and no dashboard; keyword
    *options* override those. *pythonpath* is prepended to the workers' ``PYTHONPATH`` (so actors can import
    the caller's modules by reference). Returns the ``ray`` module.

    Set the environment before the first ``import ray`` for every setting to apply (``RAY_ENV``; values
    already set win). A start that fails stops every process it began.

    :raises NotSupportedError: Ray is not installed, or cannot start here (the reason is in the message)
    """
    for name, value in RAY_ENV.items():
        os.environ.setdefault(name, value)
    os.environ.pop("RAY_ADDRESS", None)
    try:
        import ray
    except ImportError:
        raise NotSupportedError("Ray is not installed: pip install 'aptrt[ray]'") from None
    settings: dict[str, Any] = {
        "address": "local",
        "include_dashboard": False,
        "log_to_driver": False,
        "object_store_memory": 100_000_000,
    }
    if pythonpath is not None:
        settings["runtime_env"] = {"env_vars": {"PYTHONPATH": _joined(pythonpath)}}
    settings.update(options)
    with warnings.catch_warnings():
        # a failed start leaves Popen objects of its children; their finalizers warn (an error under -W error)
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            ray.init(**settings)
        except Exception as exc:
            _reap(ray)
            raise NotSupportedError(f"Ray cannot start here: {type(exc).__name__}: {exc}"[:400]) from exc
    return ray


def _joined(path: str) -> str:
    current = os.environ.get("PYTHONPATH")
    return f"{path}{os.pathsep}{current}" if current else path


def _reap(ray: Any) -> None:
    try:
        ray.shutdown()
    except Exception:  # noqa: BLE001, S110 - best effort: the processes left are killed below
        pass
    for obj in gc.get_objects():
        if isinstance(obj, subprocess.Popen) and obj.returncode is None:
            obj.kill()
            obj.wait(timeout=5)
    gc.collect()
