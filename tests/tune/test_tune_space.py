"""Search-space validation and resource arithmetic of the Tune sweeps: pure config checks, no Ray session."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clasp_dist.cli.common import EXIT_BAD_INPUT
from clasp_dist.config import ConfigError, load_config
from clasp_dist.tuning import (
    ABLATION_ARMS,
    build_space,
    cpus_per_trial,
    max_concurrent_trials,
    trial_overrides,
    validate_space,
)
from tests.helpers import REPO, job_env

BASE = ["config=tiny", "train.epochs=1"]


def test_every_arm_is_a_valid_config():
    validate_space(BASE, build_space("ablation", seeds=2))
    assert build_space("ablation", seeds=2)["arm"]["grid_search"] == list(ABLATION_ARMS)
    cfg = load_config(BASE + [f"{k}={v}" for k, v in trial_overrides({"arm": "base", "train.seed": 1}).items()])
    assert not cfg.model.use_meae and not cfg.model.use_atp and cfg.train.seed == 1


@pytest.mark.parametrize(
    "space, message",
    [
        (lambda: build_space("ablation", 1, ["base", "bogus"]), "unknown ablation arm"),
        (lambda: build_space("ablation", 1, ["base"], {"model.no_such_key": [1, 2]}), "model.no_such_key"),
        (lambda: build_space("ablation", 1, ["base"], {"modl.window": [8]}), "modl.window"),
        (lambda: build_space("ablation", 1, ["full"], {"model.propagation": ["attention", "nope"]}), "nope"),
        (lambda: build_space("hparams", grid={"train.epochs": ["x"]}), "train.epochs"),
    ],
)
def test_invalid_search_space_is_rejected(space, message):
    with pytest.raises(ConfigError, match=message):
        validate_space(BASE, space())


def test_hparam_space_is_valid():
    validate_space(BASE, build_space("hparams"))


def test_cli_fails_before_ray_starts(tmp_path):
    """Bad arms / keys exit with the message before any Ray session or trial (no sweep directory)."""
    for flags in (["--arms", "base,bogus"], ["--arms", "base", "--grid", "model.nope=1,2"]):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "clasp_dist.cli",
                "tune",
                "--sweep",
                "ablation",
                *flags,
                "--out",
                str(tmp_path / "sweep"),
                *BASE,
            ],
            env=job_env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == EXIT_BAD_INPUT and "error: sweep:" in done.stderr, done.stderr
        assert "bogus" in done.stderr or "model.nope" in done.stderr
        assert "ray" not in done.stderr.lower().replace("arm", "")  # no Ray start-up output
        assert not (tmp_path / "sweep").exists()


def test_max_concurrent_trials_leaves_room_for_reads_and_evaluation():
    cfg = load_config(BASE)
    assert cpus_per_trial(cfg) == pytest.approx(0.25 + 0.5 + 0.5 + 0.5)
    assert max_concurrent_trials(cfg, {"CPU": 2.0}) == 1  # two trials would starve the readers: deadlock
    assert max_concurrent_trials(cfg, {"CPU": 8.0}) == 4
    assert max_concurrent_trials(cfg, {"CPU": 1.0}) == 1
    gpu = load_config(BASE + ["train.use_gpu=true", "train.num_workers=2"])
    assert max_concurrent_trials(gpu, {"CPU": 64.0, "GPU": 4.0}) == 2
