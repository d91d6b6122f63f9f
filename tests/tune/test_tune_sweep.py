"""Ray Tune sweeps end to end on a real 2-CPU Ray cluster: outputs, best.yaml, kill and resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, epoch_metrics, job_env, run_job

pytestmark = pytest.mark.slow

TUNE = [sys.executable, "-m", "clasp_dist.cli", "tune"]


def sweep_command(sweep_dir: Path, root: str, *flags: str) -> list[str]:
    return [
        *TUNE,
        "--sweep",
        "ablation",
        *flags,
        "--num-cpus",
        "2",
        "--out",
        str(sweep_dir),
        "config=tiny",
        "train.epochs=1",
        f"data.root={root}",
    ]


def tune_trials(sweep_dir: Path) -> dict[str, str]:
    """{trial_id: status} from the latest experiment state Tune saved (what a restore will see)."""
    states = sorted((sweep_dir / "tune").glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
    except (OSError, ValueError):
        return {}  # being written
    trials = {}
    for trial_json, _ in data.get("trial_data", []):
        state = json.loads(trial_json)
        trials[state["trial_id"]] = state["status"]
    return trials


def _kill_after_first_finished_trial(args: list[str], env: dict, sweep_dir: Path) -> dict[str, str]:
    """Start the sweep, SIGKILL its whole process group once one trial has TERMINATED; return the trial states."""
    proc = subprocess.Popen(
        args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        deadline = time.time() + 240
        while not any(s == "TERMINATED" for s in tune_trials(sweep_dir).values()):
            if proc.poll() is not None:
                raise AssertionError(f"sweep ended early ({proc.returncode}): {proc.stdout.read()[-3000:]}")
            assert time.time() < deadline, "timed out waiting for the first finished trial"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return tune_trials(sweep_dir)


def test_killed_ablation_sweep_resumes_and_writes_results_and_a_trainable_best_config(tiny_root, tmp_path):
    """One sweep (arms base and full, one seed) is SIGKILLed after its first finished trial; the same command
    resumes it without rerunning that trial, then writes the results, the plot and best.yaml."""
    sweep_dir = tmp_path / "sweep"
    args = sweep_command(sweep_dir, tiny_root, "--arms", "base,full", "--seeds", "1")
    env = job_env()
    before = _kill_after_first_finished_trial(args, env, sweep_dir)
    finished = [t for t, s in before.items() if s == "TERMINATED"]
    # With one trial at a time, Tune may not have created the second trial yet when the first one ends.
    assert len(finished) == 1 and len(before) <= 2, before
    first_dir = sweep_dir / "trials" / finished[0]
    first_metrics = (first_dir / "metrics.json").stat().st_mtime_ns
    assert not (sweep_dir / "results.csv").exists()

    done = run_job(args, env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming sweep" in done.stdout
    after = tune_trials(sweep_dir)
    assert set(before) <= set(after) and len(after) == 2 and set(after.values()) == {"TERMINATED"}, after
    assert (first_dir / "metrics.json").stat().st_mtime_ns == first_metrics  # not run again

    rows = list(csv.DictReader(open(sweep_dir / "results.csv")))
    assert sorted(r["arm"] for r in rows) == ["base", "full"]
    assert sorted(r["trial_id"] for r in rows) == sorted(after)
    assert all(not r["error"] and 0.0 <= float(r["test_average"]) <= 1.0 for r in rows)
    assert {"test_map@0.1", "test_map@0.9", "val_average"} <= set(rows[0])
    md = (sweep_dir / "results.md").read_text()
    assert "| base |" in md and "| full |" in md
    png = (sweep_dir / "ablation.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    trial_dirs = sorted(p.name for p in (sweep_dir / "trials").iterdir() if p.is_dir())
    assert sorted(r["trial_id"] for r in rows) == trial_dirs  # run names are the trial ids
    for name in trial_dirs:
        assert [m["epoch"] for m in epoch_metrics(sweep_dir / "trials" / name)] == [0]
    # max_concurrent_trials on 2 CPUs is 1: the second trial started after the first one finished
    started = {n: (sweep_dir / "trials" / n / "config.yaml").stat().st_mtime for n in trial_dirs}
    first, second = sorted(trial_dirs, key=started.get)
    assert started[second] >= (sweep_dir / "trials" / first / "metrics.json").stat().st_mtime

    # the sweep's trials, diagnosed per arm (no Ray): the base arm has no MEAE/CSAI figures
    diag = run_job(
        [sys.executable, "-m", "clasp_dist.cli", "diagnose", "--sweep", str(sweep_dir), "--videos", "8"],
        job_env(),
        timeout=120,
    )
    assert diag.returncode == 0, diag.stdout[-3000:] + diag.stderr[-3000:]
    table = (sweep_dir / "diagnostics.md").read_text()
    assert "| figure | base | full |" in table or "| figure | full | base |" in table
    anchor_row = next(line for line in table.splitlines() if line.startswith("| csai.anchor_precision |"))
    cells = dict(zip(table.splitlines()[2].split("|")[2:-1], anchor_row.split("|")[2:-1]))
    assert cells[" base "].strip() == "n/a" and 0.0 <= float(cells[" full "]) <= 1.0
    assert len(list((sweep_dir / "diagnostics").glob("*_seed0/diagnostics.json"))) == 2

    # best.yaml is the winning trial's trained configuration: no difference that changes a number (run names,
    # paths and display settings are operational, as a resumed run sees them)
    from clasp_dist.config import load_config, load_saved_config
    from clasp_dist.training.run_identity import config_differences

    winner = max(rows, key=lambda r: float(r["val_average"]))
    best = load_config([f"config={sweep_dir / 'best.yaml'}"])
    trained = load_saved_config(sweep_dir / "trials" / winner["trial_id"] / "config.yaml")
    assert best.model.use_meae == (winner["arm"] == "full") and best.data.root == tiny_root
    assert best.train.epochs == 1 and best.model.d_model == 32
    assert config_differences(trained, best) == []
