"""A run's identity is its resolved config: reruns under an existing name resume it only with the same
config (or named, safe changes), a finished run says so, and a GPU or CPU request no cluster can meet fails at once."""

from __future__ import annotations

import json
import time

import pytest

from clasp_dist.config import ConfigError, load_config
from clasp_dist.training.run_identity import (
    Difference,
    RunIdentityError,
    check_resume_changes,
    config_differences,
    dataset_differences,
)
from tests.helpers import epoch_metrics, run_cfg


def _differences(*overrides: str) -> list[Difference]:
    return config_differences(load_config(["config=tiny"]), load_config(["config=tiny", *overrides]))


def test_operational_keys_never_count_as_a_change():
    assert (
        _differences(
            "train.progress_bar=off",
            "run.output_dir=/elsewhere",
            "eval.num_actors=3",
            "storage.retries=9",
            "train.cpus_per_worker=2",
            "run.resume_changes=[train.epochs]",
        )
        == []
    )


def test_differences_name_each_key_with_both_values():
    found = {d.key: (d.saved, d.now) for d in _differences("optim.lr=3e-4", "data.root=/x", "train.epochs=9")}
    saved = load_config(["config=tiny"])
    assert found == {
        "optim.lr": (saved.optim.lr, 3e-4),
        "data.root": ("", "/x"),
        "train.epochs": (saved.train.epochs, 9),
    }


def test_unlisted_change_is_refused_with_both_ways_out():
    cfg = load_config(["config=tiny", "train.epochs=9"])
    with pytest.raises(RunIdentityError) as err:
        check_resume_changes(cfg, "runs/x/checkpoint_1", _differences("train.epochs=9"))
    text = str(err.value)
    assert f"train.epochs: {load_config(['config=tiny']).train.epochs} in the run, 9 now" in text
    assert "run.name=<new name>" in text and "run.resume_changes=[train.epochs]" in text


def test_listed_safe_change_is_accepted():
    cfg = load_config(["config=tiny", "train.epochs=9", "run.resume_changes=[train.epochs]"])
    accepted = check_resume_changes(cfg, "x", _differences("train.epochs=9"))
    assert [d.key for d in accepted] == ["train.epochs"]


@pytest.mark.parametrize(
    "override",
    ["deepspeed.zero_stage=2", "deepspeed.bf16=true", "train.num_workers=2", "optim.lr=3e-4", "model.d_model=64"],
)
def test_fixed_keys_are_refused_even_when_listed(override):
    """DeepSpeed cannot load another ZeRO stage, precision or world size; the restored optimizer keeps its lr."""
    key = override.split("=")[0]
    extra = ["train.batch_size=8"] if key == "train.num_workers" else []
    cfg = load_config(["config=tiny", override, *extra, f"run.resume_changes=[{key}]"])
    with pytest.raises(RunIdentityError, match=rf"{key}: .* \(cannot change on resume: ") as err:
        check_resume_changes(cfg, "x", [d for d in _differences(override, *extra) if d.key == key])
    assert "run.resume_changes=[" not in str(err.value)  # no false way out


def test_another_dataset_is_refused():
    diffs = dataset_differences({"classes": ["a", "b"], "visual_dim": 32}, {"classes": ["a"], "visual_dim": 32})
    with pytest.raises(RunIdentityError, match="dataset classes"):
        check_resume_changes(load_config(["config=tiny"]), "x", diffs)


def test_unknown_resume_change_key_is_named():
    with pytest.raises(ConfigError, match="train.epoch"):
        check_resume_changes(load_config(["config=tiny", "run.resume_changes=[train.epoch]"]), "x", [])


@pytest.mark.slow
def test_rerun_with_other_settings_is_refused_and_leaves_the_run_alone(tiny_run):
    """The issue's example: same run name, another dataset root and lr. Refused before anything starts;
    config.yaml and the epoch log are untouched."""
    from clasp_dist.config import load_saved_config, to_dict
    from clasp_dist.training.driver import run_training

    run_dir = tiny_run.run_dir
    before = {name: (run_dir / name).read_text() for name in ("config.yaml", "metrics.jsonl")}
    saved = load_saved_config(run_dir / "config.yaml")
    overrides = [f"{k}={json.dumps(v)}" for k, v in (("data.root", "/somewhere/else"), ("optim.lr", 3e-4))]
    cfg = load_config([f"config={run_dir / 'config.yaml'}", *overrides])
    assert to_dict(cfg)["run"] == to_dict(saved)["run"]
    with pytest.raises(RunIdentityError) as err:
        run_training(cfg)
    text = str(err.value)
    assert "data.root" in text and "optim.lr" in text and "run.name=<new name>" in text
    assert {name: (run_dir / name).read_text() for name in before} == before


@pytest.mark.slow
def test_finished_run_says_so_and_trains_nothing(tiny_run):
    from clasp_dist.config import load_saved_config
    from clasp_dist.training.driver import run_training

    lines: list[str] = []
    started = time.time()
    again = run_training(load_saved_config(tiny_run.run_dir / "config.yaml"), log=lines.append)
    assert time.time() - started < 30
    assert any("is finished (2 of 2 epochs trained)" in line and str(tiny_run.run_dir) in line for line in lines), lines
    assert not any("continuing" in line for line in lines)
    assert again.metrics == json.loads((tiny_run.run_dir / "metrics.json").read_text())
    assert sorted(m["epoch"] for m in epoch_metrics(tiny_run.run_dir)) == [0, 1]


@pytest.mark.slow
def test_trained_run_without_its_test_pass_only_evaluates(tiny_run):
    """Every epoch trained but metrics.json missing (killed during the test pass): the rerun evaluates the
    best registered checkpoint on test and trains nothing."""
    from clasp_dist.config import load_saved_config
    from clasp_dist.training.driver import run_training

    run_dir = tiny_run.run_dir
    saved_metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").unlink()
    lines: list[str] = []
    again = run_training(load_saved_config(run_dir / "config.yaml"), log=lines.append)
    assert any("all 2 epochs were trained; evaluating the best checkpoint on test" in line for line in lines), lines
    assert sorted(m["epoch"] for m in epoch_metrics(run_dir)) == [0, 1]
    assert again.metrics["test"] == saved_metrics["test"] and (run_dir / "metrics.json").is_file()


@pytest.mark.slow
def test_gpu_request_without_gpus_fails_at_once(ray_session, tiny_root, tmp_path):
    from clasp_dist.training.driver import run_training
    from clasp_dist.training.preflight import UnsatisfiableRequestError

    started = time.time()
    with pytest.raises(UnsatisfiableRequestError, match=r"train.use_gpu=true asks for 1 GPU.*can reach 0"):
        run_training(run_cfg(tmp_path, tiny_root, "train.use_gpu=true"))
    assert time.time() - started < 20


@pytest.mark.parametrize(
    "overrides, cpus, refused",
    [
        ([], 2, False),  # the defaults on 2 CPUs: 0.5 per worker + 0.5 evaluator + 0.25 read
        (["train.num_workers=2"], 2, False),  # 1 + 0.75
        (["train.num_workers=2", "train.cpus_per_worker=1"], 2, True),  # every CPU held: validation never starts
        (["train.num_workers=2", "train.cpus_per_worker=1"], 16, False),  # an autoscaler can reach 16
        (["train.num_workers=2", "train.cpus_per_worker=1", "train.use_gpu=true"], 2, True),  # no CPU left to read
        (["train.num_workers=2", "train.cpus_per_worker=0.75", "train.use_gpu=true"], 2, False),  # validation on GPU
    ],
)
def test_cpu_request_that_starves_validation_or_reads_is_refused(overrides, cpus, refused):
    """Train workers that hold every CPU leave none for the evaluator that validation starts beside them (CPU), or
    for the read tasks that feed them (CPU and GPU): the run would wait forever, so it is refused before anything
    is requested."""
    from clasp_dist.training.preflight import cpu_shortfall

    cfg = load_config(["config=tiny", *overrides])
    problem = cpu_shortfall(cfg, cpus, "the test")
    assert (problem is not None) == refused, problem
    if refused:
        assert "train.cpus_per_worker=1" in problem and "can reach 2" in problem and "data.read_num_cpus" in problem
        assert ("eval.actor_num_cpus" in problem) == (not cfg.train.use_gpu)  # GPU runs validate inside the workers


@pytest.mark.slow
def test_train_job_prints_the_refusal_without_a_traceback(tiny_run):
    """`clasp train` with the run's own config.yaml and another lr: exit 2 (bad input), the message, no traceback."""
    import sys

    from clasp_dist.cli.common import EXIT_BAD_INPUT
    from tests.helpers import job_env, run_job

    args = [
        sys.executable,
        "-m",
        "clasp_dist.cli",
        "train",
        f"config={tiny_run.run_dir / 'config.yaml'}",
        "optim.lr=0.0003",
    ]
    done = run_job(args, job_env(), timeout=120)
    assert done.returncode == EXIT_BAD_INPUT, done.stdout[-2000:] + done.stderr[-2000:]
    assert "error: run.name='tiny' already exists" in done.stderr and "optim.lr" in done.stderr
    assert "Traceback" not in done.stderr


def test_finished_message_names_the_final_split(tmp_path):
    from clasp_dist.training.run_identity import finished_message

    cfg = load_config(["config=tiny"])
    anet = finished_message(cfg, tmp_path, 2, {"final": {"split": "validation", "average": 0.25}})
    assert "validation avg mAP 25.00" in anet and "validation/" in anet
    older = finished_message(cfg, tmp_path, 2, {"test": {"average": 0.125}})  # a run from before "final"
    assert "test avg mAP 12.50" in older and "test/" in older
