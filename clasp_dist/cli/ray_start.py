"""Ray start-up for the commands: join the cluster or start a quiet local one."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
import tempfile

from .. import compat
from ..quiet_logs import filter_forwarded_logs, quiet_ray_loggers


@contextlib.contextmanager
def private_tmpdir_for_ray():
    """While Ray's processes start, TMPDIR is a private folder, removed when this process exits (after Ray stops).

    Ray's dashboard runs a multiprocessing forkserver whose listener socket lives in a `pymp-*` folder under
    TMPDIR; Ray kills the dashboard at shutdown, so multiprocessing never removes it, and every local run left
    one in /tmp. The processes started now (GCS, raylet, dashboard, and the workers the raylet spawns) inherit
    the private TMPDIR; this process keeps its own, and Ray's session folder stays where Ray puts it by default
    (RAY_TMPDIR pinned to that place while TMPDIR changes).
    """
    import ray

    tempfile.gettempdir()  # fixes this process's own temp dir before TMPDIR changes
    private = tempfile.mkdtemp(prefix="clasp-ray-tmp-")

    @atexit.register
    def _remove() -> None:
        ray.shutdown()  # the dashboard and workers first (a no-op if Ray's own exit hook ran), then their folder
        shutil.rmtree(private, ignore_errors=True)

    saved = {key: os.environ.get(key) for key in ("TMPDIR", "RAY_TMPDIR")}
    os.environ["RAY_TMPDIR"] = compat.ray_default_system_temp_dir()
    os.environ["TMPDIR"] = private
    try:
        yield private
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def pin_data_tracker_to_this_node() -> None:
    """Create Ray Data's cluster-wide, detached `ActorLocationTracker` here, on the driver's node (the head under
    `ray job submit`). Ray pins it to the node of whichever process creates it first; left to itself, that is the
    validation's actor pool inside a train worker, on an autoscaled GPU node, and a detached actor there keeps
    the node from ever being idle: the autoscaler never removes it (seen on the simulated cluster, Ray 2.60)."""
    compat.create_data_actor_location_tracker()


def init_ray(num_cpus: int | None = None) -> None:
    """Join RAY_ADDRESS's cluster if set (ray job submit), else start a local one quietly.

    DS_ACCELERATOR is not decided here: drivers often run on CPU-only heads, so each train worker picks
    DeepSpeed's accelerator from its own device (`engine.use_accelerator_for`).
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    from ray.data import DataContext

    quiet_ray_loggers()  # after importing ray.data: its import resets the "ray.data" logger to DEBUG

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = sys.stderr.isatty()
    ctx.print_on_execution_start = False
    quiet = ray.LoggingConfig(log_level="WARNING")
    env = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_DEDUP_LOGS": "0"}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING, logging_config=quiet, runtime_env={"env_vars": env})
        pin_data_tracker_to_this_node()
    else:
        with private_tmpdir_for_ray():
            ray.init(
                num_cpus=num_cpus, logging_level=logging.WARNING, logging_config=quiet, runtime_env={"env_vars": env}
            )
    filter_forwarded_logs()
