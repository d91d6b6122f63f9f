"""Log noise: Ray's known noise lines are dropped from what the driver prints, ours and real events kept."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from clasp_dist import compat
from clasp_dist.quiet_logs import evaluation_warnings_quiet, filter_forwarded_logs, is_noise

RAY_NOISE_LINES = [  # verbatim from a `./dev jobs/train.py config=tiny` run and a `ray job submit` (Ray 2.60)
    "[2026-11-30 14:45:07,617 E 7931 7985] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' and ID: "
    "'e51165bad9182f3b59e3777f01000000' has constructor arguments in the object store and max_restarts > 0. If the "
    "arguments in the object store go out of scope or are lost, the actor restart will fail. See "
    "https://github.com/ray-project/ray/issues/53727 for more details.",
    "2026-11-30 14:44:51,303\tWARNING authentication_token_setup.py:85 -- Token authentication is enabled for this Ray "
    "cluster. Set RAY_AUTH_MODE=disabled to opt out.",
    "RayDeprecationWarning: `ExecutionOptions.exclude_resources` is deprecated and will be removed after January 2027.",
    "Progress bars disabled. To enable, set `ray.data.DataContext.get_current().enable_progress_bars = True`.",
    "WARNING: 8 PYTHON worker processes have been started on node: 5f3a with address: 10.0.0.2, which is 4x the "
    "maximum expected startup concurrency (2). This could be a result of using a large number of actors",
    "Reporting training result 1: TrainingReport(checkpoint=Checkpoint(filesystem=local, path=/tmp/r/after/"
    "checkpoint_2026-11-30_15-57-53.643420), metrics={'loss_base': 0.17586714029312134, ...}) from rank 0",
    "\u2714\ufe0f  Dataset train_0356e0JZUOxZHTZ3bocRtY_0 execution finished in 5.64 seconds",
]
REAL_LINES = [
    "[clasp-dist] epoch   1/1 | loss 0.3103 (base 0.1587 prop 0.1515) | lr 0.00e+00 | val mAP  0.00 | 4.9 videos/s",
    "[2026-11-30 14:45:07,617 E 7931 7985] core_worker.cc:120: Failed to connect to the raylet",
    "evaluation: 24 video(s) with ground truth had no prediction (all their segments are misses)",
    "ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.",
]


@pytest.mark.parametrize("line", RAY_NOISE_LINES)
def test_known_ray_noise_is_recognised(line):
    assert is_noise(line)


@pytest.mark.parametrize("line", REAL_LINES)
def test_real_events_are_kept(line):
    assert not is_noise(line)


def test_driver_drops_noise_from_forwarded_worker_logs(monkeypatch, capsys):
    """The filter wraps the function Ray's driver prints every forwarded worker line and raylet message with."""
    ray_worker = compat.ray_worker_module()

    monkeypatch.setattr(ray_worker, "_worker_logs_enabled", True)
    monkeypatch.setattr(ray_worker, "print_worker_logs", ray_worker.print_worker_logs)  # restored afterwards
    filter_forwarded_logs()
    filter_forwarded_logs()  # idempotent: wrapped once
    sink = io.StringIO()
    ray_worker.print_worker_logs(
        {"lines": RAY_NOISE_LINES + REAL_LINES, "pid": 7, "ip": "h", "localhost": "h", "is_err": True}, sink
    )
    printed = sink.getvalue()
    assert printed.count("\n") == len(REAL_LINES)
    assert all(line in printed for line in REAL_LINES)
    sink = io.StringIO()
    ray_worker.print_worker_logs(
        {"lines": RAY_NOISE_LINES[:1], "pid": 7, "ip": "h", "localhost": "h", "is_err": True}, sink
    )
    assert sink.getvalue() == ""  # nothing left: no empty prefixed line either
    # The raylet's messages (the `ray job submit` worker start-up line) reach the driver by another route:
    # listen_error_messages -> print_to_stdstream (de-duplication) -> print_worker_logs.
    startup = next(line for line in RAY_NOISE_LINES if "PYTHON worker processes" in line)
    for line in (startup, REAL_LINES[1]):
        ray_worker.print_to_stdstream({"lines": [line], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    printed = capsys.readouterr().out
    assert "PYTHON worker processes" not in printed and REAL_LINES[1] in printed


def test_every_filter_off_with_clasp_ray_noise(monkeypatch):
    ray_worker = compat.ray_worker_module()

    monkeypatch.setenv("CLASP_RAY_NOISE", "1")
    original = ray_worker.print_worker_logs
    filter_forwarded_logs()
    assert ray_worker.print_worker_logs is original


def test_validation_does_not_repeat_the_evaluator_warnings(caplog, monkeypatch):
    log = logging.getLogger("clasp_dist.evaluation.metric")
    # As in a training process: no level of its own (jobs/evaluate.py, run in-process by other tests, sets one).
    monkeypatch.setattr(log, "level", logging.NOTSET)
    logging.getLogger().manager._clear_cache()
    with caplog.at_level(logging.WARNING):
        with evaluation_warnings_quiet():
            log.warning("evaluation: 3 video(s) with ground truth had no prediction")
        log.warning("evaluation: 4 video(s) with ground truth had no prediction")
    assert [r.getMessage()[:13] for r in caplog.records] == ["evaluation: 4"]


FORKSERVER_CHILD = """
import os
from multiprocessing import forkserver, util
forkserver.ensure_running()  # what Ray's dashboard does for its modules: a listener socket in pymp-*
print(util.get_temp_dir(), flush=True)
os._exit(0)  # killed like the dashboard at ray.shutdown: multiprocessing's own clean-up never runs
"""


@pytest.fixture
def short_tmp():
    """A folder with a short path: the forkserver's socket path must fit AF_UNIX's 108 bytes (tmp_path does not)."""
    path = Path(tempfile.mkdtemp(prefix="clasp-pymp-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_processes_started_for_ray_leave_no_pymp_folder(short_tmp):
    """The dashboard's forkserver puts `pymp-*` under TMPDIR; inside `private_tmpdir_for_ray` that TMPDIR is a
    private folder, removed at exit, and the starting process's own TMPDIR and Ray's session root are untouched."""
    tmp_path = short_tmp
    script = f"""
import os, subprocess, sys, tempfile
from clasp_dist.cli import private_tmpdir_for_ray
from clasp_dist import compat
ray_root = compat.ray_default_system_temp_dir()
with private_tmpdir_for_ray() as private:
    assert os.environ["RAY_TMPDIR"] == ray_root
    child = subprocess.run([sys.executable, "-c", {FORKSERVER_CHILD!r}], capture_output=True, text=True, check=True)
    print("child", child.stdout.strip())
    print("private", private)
assert "RAY_TMPDIR" not in os.environ and os.environ["TMPDIR"] == {str(tmp_path)!r}
assert tempfile.gettempdir() == {str(tmp_path)!r}
"""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("RAY_TMPDIR", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert Path(lines["child"]).parent == Path(lines["private"]), lines  # pymp-* inside the private folder
    assert Path(lines["private"]).parent == tmp_path
    assert list(tmp_path.iterdir()) == []  # the private folder, and the pymp-* in it, removed at exit
