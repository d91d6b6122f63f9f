"""A sweep's identity (search space + base config) guards its folder; concurrency from what the cluster can grow
to. Pure config and file checks (local folders and the loopback S3 server), no Ray session."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clasp_dist.cli.common import EXIT_BAD_INPUT
from clasp_dist.config import load_config
from clasp_dist.tuning import (
    SWEEP_RECORD,
    SweepIdentityError,
    SweepSpec,
    claim_sweep_dir,
    default_sweep_dir,
    max_concurrent_trials,
    trial_config,
    trial_demand,
)
from tests.helpers import REPO, job_env

BASE = ["config=tiny", "train.epochs=1"]


def spec(**kw) -> SweepSpec:
    return SweepSpec(**{"sweep": "ablation", "base": BASE, "seeds": 1, "arms": ["base"], **kw})


def test_identity_is_the_search_space_and_the_base_config():
    assert spec().identity() == spec().identity()
    assert spec().identity() == spec(base=BASE + ["run.name=x", "train.progress_bar=on"]).identity()  # run.* aside
    others = [
        spec(arms=["full"]),
        spec(seeds=2),
        spec(grid={"optim.lr": [1e-4, 3e-4]}),
        spec(base=BASE + ["optim.lr=3e-4"]),
        spec(sweep="hparams", arms=None),
    ]
    assert len({s.identity() for s in others} | {spec().identity()}) == len(others) + 1
    assert spec(sweep="hparams", samples=4).identity() != spec(sweep="hparams", samples=8).identity()


def test_a_different_sweep_is_refused_in_a_folder_that_holds_one_and_names_what_differs(tmp_path):
    folder = str(tmp_path / "sweep")
    first = claim_sweep_dir(spec(), folder, resume=False)
    record = json.loads((tmp_path / "sweep" / SWEEP_RECORD).read_text())
    assert record["identity"] == first.identity() and record["base"] == BASE
    assert claim_sweep_dir(spec(), folder, resume=False) == first  # the same sweep: continued
    with pytest.raises(SweepIdentityError) as err:
        claim_sweep_dir(spec(arms=["full"], grid={"optim.lr": [1e-4, 3e-4]}), folder, resume=False)
    message = str(err.value)
    assert "space.arm.grid_search" in message and "space.optim.lr" in message and "--resume --out" in message
    with pytest.raises(SweepIdentityError, match=r"optim.lr \(0.0005 -> 0.0003\)|optim.lr \(.* -> 0.0003\)"):
        claim_sweep_dir(spec(base=BASE + ["optim.lr=3e-4"]), folder, resume=False)
    assert claim_sweep_dir(None, folder, resume=True) == first  # a bare --resume continues what is stored


def test_resume_needs_a_recorded_sweep_and_an_unrecorded_tune_state_is_refused(tmp_path):
    with pytest.raises(SweepIdentityError, match="holds no sweep"):
        claim_sweep_dir(spec(), str(tmp_path / "empty"), resume=True)
    (tmp_path / "old" / "tune").mkdir(parents=True)
    with pytest.raises(SweepIdentityError, match="without a sweep.json identity record"):
        claim_sweep_dir(spec(), str(tmp_path / "old"), resume=False)


def test_each_sweep_gets_its_own_default_folder_under_the_storage_path(tmp_path):
    local = spec(base=BASE + [f"run.storage_path={tmp_path}"])
    assert default_sweep_dir(local) == f"{tmp_path}/sweeps/ablation-{local.identity()}"
    remote = spec(base=BASE + ["run.storage_path=s3://bucket/runs"], arms=["full"])
    assert default_sweep_dir(remote) == f"s3://bucket/runs/sweeps/ablation-{remote.identity()}"


def test_trials_of_a_sweep_in_object_storage_keep_their_runs_there(s3_bucket):
    sweep = f"{s3_bucket}/sweeps/one"
    cfg = trial_config(BASE, {"arm": "base", "train.seed": 0}, "abc_00000", sweep)
    assert cfg.run.storage_path == f"{sweep}/trials" and cfg.run.name == "abc_00000"
    assert "://" not in cfg.run.output_dir  # local scratch; the trainer copies the run files to storage
    claim_sweep_dir(spec(), sweep, resume=False)
    assert claim_sweep_dir(None, sweep, resume=True) == spec()
    with pytest.raises(SweepIdentityError):
        claim_sweep_dir(spec(seeds=2), sweep, resume=False)


def test_concurrency_counts_every_resource_a_trial_asks_for():
    cfg = load_config(BASE + ["train.num_workers=2", "train.worker_resources={sim_gpu: 1}"])
    assert trial_demand(cfg) == {"CPU": pytest.approx(0.25 + 1.0 + 0.5 + 0.5), "sim_gpu": 2.0}
    assert max_concurrent_trials(cfg, {"CPU": 100.0, "sim_gpu": 5.0}) == 2  # GPU stand-in bound
    assert max_concurrent_trials(cfg, {"CPU": 4.5, "sim_gpu": 24.0}) == 2  # CPU bound
    assert max_concurrent_trials(cfg, {"CPU": 0.0}) == 1  # a CPU-0 head alone: still one, never zero


def test_cli_refuses_a_different_sweep_in_an_existing_folder_before_ray_starts(tmp_path):
    folder = tmp_path / "sweep"
    claim_sweep_dir(spec(), str(folder), resume=False)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "clasp_dist.cli",
            "tune",
            "--sweep",
            "ablation",
            "--arms",
            "full",
            "--seeds",
            "1",
            "--out",
            str(folder),
            *BASE,
        ],
        env=job_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_BAD_INPUT and "holds another sweep" in done.stderr, done.stderr
    assert "space.arm.grid_search" in done.stderr
    assert not (folder / "tune").exists()
