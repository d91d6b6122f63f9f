"""bench/regimes.py: finished sweep trials merged with an earlier regimes.json whose trial directories are gone."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_regimes():
    spec = importlib.util.spec_from_file_location("bench_regimes", ROOT / "bench" / "regimes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_trial(trial: Path, use_atp: bool, seed: int, test: float) -> None:
    trial.mkdir(parents=True)
    cfg = {
        "model": {"use_atp": use_atp, "global_ratio": 8, "csai_local": True},
        "data": {"synth_profile": "small"},
        "train": {"seed": seed},
    }
    (trial / "config.yaml").write_text(yaml.safe_dump(cfg))
    (trial / "metrics.json").write_text(json.dumps({"test": {"average": test}, "validation": {"average": test}}))


def previous_row(arm: str, seed: int, test_pct: float) -> dict:
    return {
        "regime": "small",
        "arm": arm,
        "seed": seed,
        "test_average": test_pct,
        "val_average": test_pct,
        "wall_time_s": None,
        "trial": f"/gone/{arm}_{seed}",
    }


def test_previous_trials_fill_only_missing_regime_arm_seed(tmp_path):
    regimes = load_regimes()
    sweep = tmp_path / "sweep"
    write_trial(sweep / "trials" / "t0", use_atp=False, seed=1, test=0.10)
    write_trial(sweep / "trials" / "t1", use_atp=True, seed=1, test=0.16)
    previous = tmp_path / "previous.json"
    # seed 1 base is also in the earlier file with another figure: the trial found on disk must win
    previous.write_text(
        json.dumps(
            {"trials": [previous_row("base", 0, 14.0), previous_row("full", 0, 18.0), previous_row("base", 1, 99.0)]}
        )
    )
    out = tmp_path / "out"
    assert regimes.main([str(sweep), "--previous", str(previous), "--out", str(out)]) == 0
    summary = json.loads((out / "regimes.json").read_text())["summary"]["small"]
    assert summary["arms"]["base"]["seeds"] == [0, 1]
    assert summary["arms"]["base"]["tests"] == [14.0, 10.0]
    assert summary["arms"]["full"]["tests"] == [18.0, 16.0]
    assert abs(summary["full_minus_base"] - 5.0) < 1e-9
    assert summary["full_minus_base_paired"]["seeds"] == [0, 1]
    assert summary["every_full_seed_beats_every_base_seed"] is True


def test_paired_margin_uses_only_the_seeds_both_arms_finished():
    regimes = load_regimes()
    full = {"seeds": [0, 1], "tests": [17.9, 16.8]}
    control = {"seeds": [0], "tests": [17.5]}
    paired = regimes.paired_margin(full, control)
    assert paired["seeds"] == [0]
    assert abs(paired["mean"] - 0.4) < 1e-9  # the difference of the means (17.35 - 17.5) would be negative
    assert regimes.paired_margin(full, {"seeds": [2], "tests": [1.0]}) is None
