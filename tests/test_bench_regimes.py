"""bench/regimes.py: finished sweep trials merged with an earlier regimes.json whose trial directories are gone."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import yaml


def load_regimes():
    return importlib.import_module("bench.regimes")


def write_trial(trial: Path, use_atp: bool, seed: int, test: float, *overrides: str) -> None:
    """A finished trial as a sweep writes it: the resolved config (base = the tuning's base arm) and metrics."""
    from clasp_dist.config import load_config, to_dict
    from clasp_dist.tuning import ABLATION_ARMS

    arm = [] if use_atp else [f"{k}={v}" for k, v in ABLATION_ARMS["base"].items()]
    trial.mkdir(parents=True)
    cfg = to_dict(load_config([*arm, f"train.seed={seed}", *overrides]))
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


def test_every_ablation_arm_is_read_back_as_itself(tmp_path):
    """A trial's arm comes from its saved config; full/thresholded (which has ATP and anchors) is not full."""
    from clasp_dist.config import load_config, to_dict
    from clasp_dist.tuning import ABLATION_ARMS

    regimes = load_regimes()
    for name, overrides in ABLATION_ARMS.items():
        cfg = to_dict(load_config([f"{k}={v}" for k, v in overrides.items()]))
        assert regimes.trial_arm(cfg) == name
    odd = to_dict(load_config(["model.global_ratio=2"]))
    assert regimes.trial_arm(odd) == "other (model.global_ratio=2)"


def test_a_thresholded_trial_is_listed_apart_and_not_averaged_into_full(tmp_path):
    regimes = load_regimes()
    sweep = tmp_path / "sweep"
    write_trial(sweep / "trials" / "t0", use_atp=True, seed=0, test=0.20)
    write_trial(sweep / "trials" / "t1", True, 0, 0.10, "model.propagation=thresholded", "model.prop_threshold=0.3")
    out = tmp_path / "out"
    assert regimes.main([str(sweep), "--out", str(out)]) == 0
    arms = json.loads((out / "regimes.json").read_text())["summary"]["small"]["arms"]
    assert arms["full"]["tests"] == [20.0]
    assert arms["full/thresholded"]["tests"] == [10.0]


def test_trials_of_different_budgets_in_one_regime_are_refused(tmp_path, capsys):
    regimes = load_regimes()
    sweep = tmp_path / "sweep"
    write_trial(sweep / "trials" / "old", True, 0, 0.18, "optim.lr=5e-4")
    write_trial(sweep / "trials" / "new", True, 1, 0.29, "optim.lr=2e-3")
    assert regimes.main([str(sweep), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "mixes budgets" in err and "old" in err and "new" in err and "0.0005" in err
    assert not (tmp_path / "out" / "regimes.json").exists()


def test_diagnosed_trials_add_mean_figures_with_the_decoding_heads(tmp_path):
    regimes = load_regimes()
    sweep = tmp_path / "sweep"
    nan = float("nan")
    figures = {
        ("base", 0): {"base.step_ap": 0.8, "final.step_ap": nan, "csai.anchors_per_video": nan},
        ("full", 0): {"base.step_ap": 0.7, "final.step_ap": 0.9, "csai.anchors_per_video": 20.0},
        ("full", 1): {"base.step_ap": 0.7, "final.step_ap": 0.7, "csai.anchors_per_video": 22.0},
    }
    for (arm, seed), figs in figures.items():
        write_trial(sweep / "trials" / f"{arm}{seed}", arm == "full", seed, 0.1)
        out = sweep / "diagnostics" / f"{arm}_seed{seed}"
        out.mkdir(parents=True)
        (out / "diagnostics.json").write_text(json.dumps({"figures": figs}))
    write_trial(sweep / "trials" / "full2", True, 2, 0.1)  # finished, not diagnosed
    out = tmp_path / "out"
    assert regimes.main([str(sweep), "--out", str(out)]) == 0
    arms = json.loads((out / "regimes.json").read_text())["summary"]["small"]["arms"]
    assert arms["base"]["diagnostics"]["heads.step_ap"] == 0.8  # the base model decodes with its base heads
    assert arms["base"]["diagnostics"]["csai.anchors_per_video"] is None
    assert abs(arms["full"]["diagnostics"]["heads.step_ap"] - 0.8) < 1e-9  # refined heads, seeds 0 and 1
    assert arms["full"]["diagnostics"]["seeds"] == [0, 1]
    assert "| small | full | s0, s1 | 0.800 |" in (out / "regimes.md").read_text()
