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
* Ray Data's `Dataset ... execution finished in N seconds` after every pass (our epoch line says it), and its
  `Dataset ... execution failed` (the error that failed it is reported on its own).
Lines forwarded from Ray's worker processes are filtered in the driver (`filter_forwarded_logs`), the rest
at their logger. `CLASP_RAY_NOISE=1` turns every filter off.

A bad sample (a deterministic data error) is reported once, by the driver, as one line naming shard,
sample and field. Ray's processes each log their own copy of its traceback first: the Ray Data executor ("An
exception was raised from a task of operator ..."), the split coordinator ("Split 0 epoch 0 get() failed ..."),
the Train worker ("Error in training function:") and the Train controller ("Error in control loop iteration:").
`filter_forwarded_logs` drops those records from what the driver prints when the exception they end with is a
data error (`DATA_ERROR_LINE`), before Ray's de-duplication cuts them apart; any other traceback is printed as
before, and the workers' log files keep everything. `show_data_error_tracebacks()` (`clasp train --debug`)
turns this one filter off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings

from . import compat

NOISE = re.compile(
    "|".join(
        [
            r"has constructor arguments in the object store and max_restarts > 0",
            r"Token authentication is enabled for this Ray cluster",
            r"ExecutionOptions\.exclude_resources` is deprecated",
            r"Progress bars disabled\. To enable, set",
            r"worker processes have been started on node: .* the maximum expected startup concurrency",
            r"Reporting training result \d+: TrainingReport\(",
            r"Dataset \S+ execution (?:finished in [\d.]+ seconds|failed)$",
        ]
    )
)
"""Lines of Ray's known noise (one pattern each, see the module docstring)."""

QUIET_LOGGERS = {
    "ray.train": logging.WARNING,
    "ray.data": logging.WARNING,
    "ray.tune": logging.WARNING,
    **compat.RAY_PRIVATE_QUIET_LOGGERS,
}
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
    """Driver: drop known-noise lines and bad-data tracebacks from what Ray forwards (worker output, raylet
    messages). Idempotent."""
    if not enabled():
        return
    ray_worker = compat.ray_worker_module()
    _filter_data_error_tracebacks()
    original = getattr(ray_worker, "print_worker_logs", None)
    if original is None or getattr(original, "_clasp_filtered", False):
        return

    def print_worker_logs(data, print_file, ignore_prefix: bool = False):
        lines = [line for line in data.get("lines", []) if not is_noise(line)]
        if lines:
            original({**data, "lines": lines}, print_file, ignore_prefix)

    print_worker_logs._clasp_filtered = True  # type: ignore[attr-defined]
    ray_worker.print_worker_logs = print_worker_logs


DATA_ERROR_LINE = re.compile(
    r"(?<!\w)(?:clasp_dist\.(?:data\.errors|training\.driver)\.)?"
    r"(?:DataError|BadSampleError|BadShardError|TooManySkippedError|ManifestError|ChecksumError|"
    r"TrainingDataError)(?:\([\w.]+\))?: (.+)$"
)
"""The exception line of a bad-data failure, its message as group 1: a data-plane error other than an unreachable
storage, or training's `TrainingDataError` (the errors `driver.data_error_line` reports as one line). `match` it
against a whole exception line, or `search` a line that a wrapper prefixed."""
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:\([\w.]+\))?(?::\s|$)")
_TRACE_MARKS = (
    "Traceback (most recent call last):",
    "During handling of the above exception",
    "The above exception was the direct cause",
)
_RAY_DATA_TAIL = re.compile(
    r"^(?:Failed to .+ after \d+/\d+ attempts \(total backoff|To change retry attempts, "
    r"backoff|This looks like an AWS S3 permissions error)"
)
"""Lines Ray Data appends to the message of an exception it gave up retrying."""
_data_error_tracebacks_shown = False


def show_data_error_tracebacks(shown: bool = True) -> None:
    """Print Ray's forwarded tracebacks of bad-data failures too (`clasp train --debug`)."""
    global _data_error_tracebacks_shown
    _data_error_tracebacks_shown = shown


def _continues(line: str, previous: str) -> bool:
    """Whether `line` belongs to the log record (header, traceback, exception message) that `previous` ends."""
    if not line or line[0].isspace() or line.startswith(_TRACE_MARKS) or _RAY_DATA_TAIL.match(line):
        return True
    return previous[:1].isspace() and bool(_EXCEPTION_LINE.match(line))  # an exception line ends a traceback


def _records(lines: list[str]) -> list[list[str]]:
    records: list[list[str]] = []
    for line in lines:
        if records and _continues(line, records[-1][-1]):
            records[-1].append(line)
        else:
            records.append([line])
    return records


def _is_data_error_report(record: list[str]) -> bool:
    exceptions = [line for line in record[1:] if _EXCEPTION_LINE.match(line)]
    return bool(exceptions) and bool(DATA_ERROR_LINE.match(exceptions[-1]))


class DataErrorTracebacks:
    """Drops the forwarded log records of a bad-data failure, one source (worker process) at a time.

    A record split across two forwarded batches: its tail is dropped with it (the source is remembered)."""

    def __init__(self):
        self._dropping: set = set()

    def filter(self, batch: dict) -> list[str]:
        lines, source = list(batch.get("lines", [])), (batch.get("ip"), batch.get("pid"))
        if _data_error_tracebacks_shown or not lines:
            return lines
        records = _records(lines)
        dropping = source in self._dropping and _continues(records[0][0], " ")  # the tail of a dropped record
        kept, dropped = [], False
        for i, record in enumerate(records):
            dropped = (i == 0 and dropping) or _is_data_error_report(record)
            if not dropped:
                kept += record
        (self._dropping.add if dropped else self._dropping.discard)(source)
        return kept


def _filter_data_error_tracebacks() -> None:
    """Wrap Ray's de-duplicators of forwarded stdout/stderr (they run before printing, and cut records apart)."""
    tracebacks = DataErrorTracebacks()
    for dedup in compat.ray_log_deduplicators():
        original = dedup.deduplicate
        if getattr(original, "_clasp_filtered", False):
            continue

        def deduplicate(batch, original=original):
            return original({**batch, "lines": tracebacks.filter(batch)})

        deduplicate._clasp_filtered = True  # type: ignore[attr-defined]
        dedup.deduplicate = deduplicate
