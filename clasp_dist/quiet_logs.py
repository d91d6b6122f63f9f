"""One line per real event: Ray's known noise is filtered, our own loggers stay at one line per event.

Ray prints these on every run, and none of them is an event of the run (Ray 2.60, pinned):
* `core_worker.cc ... Actor with class name: '...' ... has constructor arguments in the object store and
  max_restarts > 0 ... restart will fail` (error level): Ray Train's `PreemptionWatcher` and Ray Data's actor
  pools (our evaluator) are created that way by design (ray-project/ray#53727);
* `Token authentication is enabled for this Ray cluster ...`: a local cluster's default since Ray 2.60;
* `RayDeprecationWarning: ExecutionOptions.exclude_resources is deprecated`: raised inside Ray Data itself;
* `Progress bars disabled. To enable, ...`: Ray Data, once per process, because job logs turn its bars off;
* `N PYTHON worker processes have been started ... the maximum expected startup concurrency`: the raylet,
  when Ray Train and Ray Data start their workers together on a small node;
* Ray Train's INFO lines (worker group start, one `Reporting training result ...` dump per report):
  `ray_train_logging()` sets Ray Train's console level to WARNING (failures and retries still show);
* Ray Data's `Dataset ... execution finished in N seconds` after every pass (our epoch line says it).
Lines forwarded from Ray's worker processes are filtered in the driver (`filter_forwarded_logs`), the rest
at their logger. `CLASP_RAY_NOISE=1` turns every filter off.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings

NOISE = re.compile("|".join([
    r"has constructor arguments in the object store and max_restarts > 0",
    r"Token authentication is enabled for this Ray cluster",
    r"ExecutionOptions\.exclude_resources` is deprecated",
    r"Progress bars disabled\. To enable, set",
    r"worker processes have been started on node: .* the maximum expected startup concurrency",
    r"Reporting training result \d+: TrainingReport\(",
    r"Dataset \S+ execution finished in [\d.]+ seconds",
]))
"""Lines of Ray's known noise (one pattern each, see the module docstring)."""

QUIET_LOGGERS = {"ray.train": logging.WARNING, "ray.data": logging.WARNING, "ray.tune": logging.WARNING,
                 "ray.data._internal.progress": logging.ERROR,
                 "ray._private.authentication.authentication_token_setup": logging.ERROR}
"""Ray loggers that report routine progress at INFO (or known noise at WARNING) in our job logs."""


def enabled() -> bool:
    return os.environ.get("CLASP_RAY_NOISE", "") not in ("1", "true")


def is_noise(line: str) -> bool:
    return bool(NOISE.search(line))


def quiet_ray_loggers() -> None:
    """This process: Ray's routine INFO loggers to WARNING, its known-noise loggers and warning silenced."""
    if not enabled():
        return
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    warnings.filterwarnings("ignore", message=r".*ExecutionOptions\.exclude_resources` is deprecated")


@contextlib.contextmanager
def evaluation_warnings_quiet():
    """Validation during training: the evaluator's per-pass warnings (videos without predictions, ...) are
    not repeated every validation; the test pass after training reports them once."""
    logger = logging.getLogger("clasp_dist.evaluation")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def ray_train_logging():
    """Ray Train's `RunConfig(logging_config=...)`: its console lines at WARNING (None = Ray's default)."""
    if not enabled():
        return None
    import ray.train

    return ray.train.LoggingConfig(log_level="WARNING")


def filter_forwarded_logs() -> None:
    """Driver: drop known-noise lines from what Ray forwards (worker output, raylet messages). Idempotent."""
    import ray._private.worker as ray_worker

    original = getattr(ray_worker, "print_worker_logs", None)
    if not enabled() or original is None or getattr(original, "_clasp_filtered", False):
        return

    def print_worker_logs(data, print_file, ignore_prefix: bool = False):
        lines = [line for line in data.get("lines", []) if not is_noise(line)]
        if lines:
            original({**data, "lines": lines}, print_file, ignore_prefix)

    print_worker_logs._clasp_filtered = True  # type: ignore[attr-defined]
    ray_worker.print_worker_logs = print_worker_logs
