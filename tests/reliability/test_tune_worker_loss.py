"""Fault: a Tune sweep's trial loses its Ray Train worker (SIGKILL of the RayTrainWorker process).

The trial's TorchTrainer restarts its worker group from the trial's last checkpoint
(`train.max_failures`); the trial then finishes normally and the sweep completes with its result.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.helpers import epoch_metrics

from .conftest import kill_train_worker, registered_checkpoints, wait_for

pytestmark = pytest.mark.slow


def test_sweep_trial_survives_losing_its_train_worker(ray_session, tiny_root, tmp_path):
    from clasp_dist.tuning import SweepSpec, claim_sweep_dir, result_rows, run_sweep

    sweep_dir = tmp_path / "sweep"
    base = [
        "config=tiny",
        f"data.root={tiny_root}",
        "train.epochs=2",
        "train.eval_every=2",
        "train.max_failures=1",
        "data.shuffle_buffer=0",
    ]
    state = {}

    def first_trial_checkpoint():
        trials = sweep_dir / "trials"
        if not trials.exists():
            return None
        for run in trials.iterdir():
            if run.is_dir() and registered_checkpoints(run):
                return run
        return None

    def killer():
        try:
            state["run"] = wait_for(first_trial_checkpoint, 240, "the trial's first checkpoint")
            time.sleep(0.3)
            state["epochs_at_kill"] = [m["epoch"] for m in epoch_metrics(state["run"])]
            state["pid"] = kill_train_worker()
        except BaseException as err:  # noqa: BLE001
            state["error"] = err

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    spec = claim_sweep_dir(SweepSpec("ablation", base, seeds=1, arms=["base"]), str(sweep_dir), resume=False)
    grid = run_sweep(spec, str(sweep_dir))
    thread.join(5)
    assert "error" not in state, state.get("error")
    assert state["epochs_at_kill"] == [0], state
    rows = result_rows(grid)
    assert len(rows) == 1 and not rows[0]["error"], rows
    assert 0.0 <= rows[0]["test_average"] <= 1.0
    epochs = [m["epoch"] for m in epoch_metrics(state["run"])]
    assert epochs == [0, 1], epochs  # the trial resumed after epoch 1, did not start over
