"""Model diagnostics (clasp_dist.diagnostics package): ranking statistics, step categories, the regenerated
distractor record, and the whole tool on a generated dataset with real (untrained) exports."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from clasp_dist.diagnostics.collector import DiagnosticsCollector
from clasp_dist.diagnostics.diagnose import diagnose_checkpoint
from clasp_dist.diagnostics.distractors import DistractorRecord
from clasp_dist.diagnostics.stats import average_precision, class_mean_ap, roc_auc
from clasp_dist.diagnostics.sweep import diagnose_sweep
from clasp_dist.diagnostics.truth import video_truth
from clasp_dist.model import ModelOutput


# ------------------------------------------------------------------------------------ statistics
def brute_auc(pos, neg) -> float:
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    return sum(wins) / len(wins)


def brute_ap(scores, labels) -> float:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: input order among ties
    hits, precisions = 0, []
    for rank, i in enumerate(order, start=1):
        if labels[i]:
            hits += 1
            precisions.append(hits / rank)
    return sum(precisions) / sum(labels)


@pytest.mark.parametrize("seed", range(20))
def test_roc_auc_and_ap_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    pos = np.round(rng.random(rng.integers(1, 30)), 1)  # rounded: plenty of ties
    neg = np.round(rng.random(rng.integers(1, 30)) * 0.8, 1)
    assert roc_auc(pos, neg) == pytest.approx(brute_auc(pos, neg), abs=1e-12)
    scores = rng.random(40)
    labels = rng.random(40) < 0.3
    labels[0] = True
    assert average_precision(scores, labels) == pytest.approx(brute_ap(list(scores), list(labels)), abs=1e-12)


def test_statistics_edge_cases():
    assert math.isnan(roc_auc([], [0.1]))
    assert math.isnan(average_precision([0.3, 0.2], [False, False]))
    assert roc_auc([0.9, 0.8], [0.1]) == 1.0 and roc_auc([0.1], [0.9]) == 0.0
    labels = np.array([[1, 0], [0, 0], [1, 0]], bool)
    assert class_mean_ap(np.array([[0.9, 0.5], [0.1, 0.4], [0.8, 0.3]]), labels) == 1.0  # class 1 has no positive


# ------------------------------------------------------------------------------- step categories
def test_video_truth_categories():
    from clasp_dist.data.synthetic import Presence

    times = 0.5 + np.arange(20)  # centres 0.5 .. 19.5 s
    presences = [
        Presence(3, (2.0, 5.0, 1.0), (2.1, 5.2, 1.0), "event"),
        Presence(3, None, (9.0, 12.0, 1.7), "offscreen_sound"),
        Presence(7, (4.0, 6.0, 1.7), None, "absent_class"),
    ]  # overlaps the event: event wins
    truth = video_truth(times, [(2.0, 5.0, 3), (15.2, 15.3, 1)], presences)
    assert np.flatnonzero(truth.event).tolist() == [2, 3, 4, 15]  # the 0.1 s segment still covers its nearest step
    assert np.flatnonzero(truth.distractor).tolist() == [5, 9, 10, 11]
    assert np.flatnonzero(truth.distractor_by_class[3]).tolist() == [9, 10, 11]
    assert np.flatnonzero(truth.distractor_by_class[7]).tolist() == [4, 5]  # class 7 has no event here
    assert np.flatnonzero(truth.labelled_distractor).tolist() == [9, 10, 11]  # class 3's sound; class 7 is absent
    assert [c for c, _ in truth.segment_steps] == [3, 1]
    assert video_truth(times, [(2.0, 5.0, 3)]).distractor is None  # no record: no distractor category


def figures_of(out: ModelOutput, truth) -> dict:
    """One video's outputs (all steps valid, label = class 1) through a fresh collector."""
    collector = DiagnosticsCollector(out.cas_a.shape[-1], decode_floor=0.1)
    collector.add(out, torch.ones(out.cas_a.shape[:2], dtype=torch.bool), torch.tensor([[0.0, 1.0, 0.0, 0.0]]), [truth])
    return collector.result().figures


def test_collector_wiring_with_perfect_outputs():
    """Hand-made outputs that are right by construction must score 1.0 everywhere (and wrong ones 0)."""
    T, C = 12, 4
    times = 0.5 + np.arange(T)
    from clasp_dist.data.synthetic import Presence

    truth = video_truth(times, [(2.0, 4.0, 1)], [Presence(1, (8.0, 10.0, 1.7), None, "silent_object")])
    event = torch.from_numpy(truth.event)
    logits = torch.full((1, T, C), -6.0)
    logits[0, event, 1] = 6.0
    alpha = event.float()[None]  # [1, T]
    out = ModelOutput(
        cas_a=logits,
        cas_v=logits,
        video_a=torch.tensor([[-6.0, 6.0, -6.0, -6.0]]),
        video_v=torch.tensor([[-6.0, 6.0, -6.0, -6.0]]),
        agreement=alpha.clone(),
        anchor_score=alpha,
        anchor_mask=event[None].clone(),
    )
    f = figures_of(out, truth)
    assert f["base.step_ap"] == 1.0 and f["base.event_vs_distractor_auc"] == 1.0
    assert f["meae.alpha_auc_event_vs_distractor"] == 1.0 and f["meae.alpha_auc_event_vs_background"] == 1.0
    assert f["meae.alpha_auc_event_vs_labelled_distractor"] == 1.0  # the silent object is of class 1, labelled
    assert f["csai.anchor_precision"] == 1.0 and f["csai.segments_anchored"] == 1.0
    assert f["csai.anchors_on_distractors"] == 0.0 and f["base.segments_below_floor"] == 0.0
    assert f["meae.alpha_mean_distractor"] == 0.0 and f["base.video_map"] == 1.0
    assert f["base.segment_coverage"] == 1.0 and f["base.leak_outside"] == 0.0
    assert "final.step_ap" not in f  # no refined heads

    out.anchor_mask = ~event[None]  # anchors everywhere but the event
    out.cas_a = out.cas_v = -logits
    f = figures_of(out, truth)
    assert f["csai.anchor_precision"] == 0.0 and f["csai.segments_anchored"] == 0.0
    assert f["base.segments_below_floor"] == 1.0 and f["base.event_vs_distractor_auc"] == 0.0
    assert f["base.segment_coverage"] == 0.0 and f["base.leak_outside"] == 1.0


# -------------------------------------------------------------------------- distractor record
def test_distractor_record_regenerates_the_shards(tiny_root):
    from clasp_dist.data.manifest import read_manifest
    from clasp_dist.data.split_reader import iter_local_samples

    record = DistractorRecord(read_manifest(tiny_root).extra["synth"])
    assert record.reason == ""
    kinds = []
    for row in iter_local_samples(tiny_root, "validation", include_segments=True):
        presences = record.presences(row["video_id"], np.asarray(row["visual"]), np.asarray(row["audio"]))
        assert presences is not None, row["video_id"]
        events = sorted((p.visual[0], p.cls) for p in presences if p.kind == "event")
        assert events == sorted((s, c) for s, e, c in json.loads(row["segments"]))
        kinds += [p.kind for p in presences]
        tampered = np.asarray(row["visual"]).copy()
        tampered[0, 0] += 1.0
        assert record.presences(row["video_id"], tampered, np.asarray(row["audio"])) is None
    assert {"offscreen_sound", "silent_object"} <= set(kinds)
    assert record.unavailable == 16  # exactly the tampered calls
    assert "no synth entry" in DistractorRecord(None).reason
    assert "generator version" in DistractorRecord({"generator_version": 999}).reason


# ------------------------------------------------------------------------------- whole tool
def export_for(root: str, directory, *overrides: str, seed: int = 0):
    from clasp_dist.config import load_config
    from clasp_dist.model import build_model
    from clasp_dist.training.checkpoint import save_model_description, save_tensors
    from clasp_dist.training.driver import dataset_info

    cfg = load_config(["config=tiny", f"data.root={root}", *overrides])
    info, _ = dataset_info(root, cfg)
    directory.mkdir(parents=True)
    torch.manual_seed(seed)
    save_tensors(directory / "weights.pt", build_model(cfg, info).state_dict())
    save_model_description(directory, cfg, info)
    return directory


def test_diagnose_checkpoint_full_and_base(tiny_root, tmp_path):
    full = export_for(tiny_root, tmp_path / "full")
    result = diagnose_checkpoint(
        str(full), split="test", max_videos=10, out_dir=str(tmp_path / "out"), plot=2, progress=False
    )
    assert result.videos == 10 and result.videos_with_distractors == 10
    f = result.figures
    for key in (
        "base.step_ap",
        "final.step_ap",
        "meae.alpha_auc_event_vs_distractor",
        "csai.anchor_precision",
        "csai.segments_anchored",
        "final.video_map",
    ):
        assert 0.0 <= f[key] <= 1.0, key
    written = json.loads((tmp_path / "out" / "diagnostics.json").read_text())
    assert written["split"] == "test" and written["videos"] == 10
    assert (tmp_path / "out" / "alpha_by_category.png").stat().st_size > 0
    assert len(list((tmp_path / "out" / "timelines").glob("*.png"))) == 2

    base = export_for(tiny_root, tmp_path / "base", "model.use_meae=false", "model.use_atp=false")
    f = diagnose_checkpoint(str(base), split="validation", max_videos=5, progress=False).figures
    assert "base.step_ap" in f and not any(k.startswith(("meae.", "csai.", "final.")) for k in f)


def test_model_overrides_change_the_model_that_runs(tiny_root, tmp_path):
    """`key=value` overrides reach the model itself (they were once applied to the config after the model was
    built, so `model.*` overrides were silently ignored); one that changes a weight's shape is refused."""
    from clasp_dist.training.checkpoint import CheckpointError

    full = str(export_for(tiny_root, tmp_path / "full"))

    def anchors(*overrides: str) -> float:
        result = diagnose_checkpoint(full, split="validation", max_videos=6, overrides=overrides, progress=False)
        return result.figures["csai.anchors_per_video"]

    every_step = anchors("model.global_ratio=1", "model.csai_local=false")  # the all-anchors control
    assert anchors() < every_step
    with pytest.raises(CheckpointError, match="weight"):
        diagnose_checkpoint(full, split="validation", max_videos=2, overrides=["model.d_model=64"], progress=False)


def sweep_with(tmp_path, name: str, root: str, trials: dict[str, tuple[str, int, tuple[str, ...]]]):
    """A finished ablation sweep as jobs/tune.py leaves it: results.csv and trials/<id>/export."""
    sweep = tmp_path / name
    lines = ["trial_id,arm,seed,error"]
    for trial_id, (arm, seed, overrides) in trials.items():
        export_for(root, sweep / "trials" / trial_id / "export", *overrides, seed=seed)
        lines.append(f"{trial_id},{arm},{seed},")
    (sweep / "results.csv").write_text("\n".join(lines) + "\n")
    return sweep


def test_diagnose_sweep_averages_each_arm_over_several_sweeps(tiny_root, tmp_path):
    base = ("model.use_meae=false", "model.use_atp=false")
    seed0 = sweep_with(tmp_path, "s0", tiny_root, {"a": ("full", 0, ()), "b": ("base", 0, base)})
    seed1 = sweep_with(tmp_path, "s1", tiny_root, {"c": ("full", 1, ())})
    table = tmp_path / "diag" / "diagnostics.md"
    means = diagnose_sweep([seed0, seed1], split="validation", max_videos=4, progress=False, table_path=table)
    per_trial = {
        path: json.loads((path / "diagnostics.json").read_text())["figures"]
        for path in (seed0 / "diagnostics" / "full_seed0", seed1 / "diagnostics" / "full_seed1")
    }
    figures = [f["final.step_ap"] for f in per_trial.values()]
    assert figures[0] != figures[1]  # two different models, so the mean is a real average
    assert means["full"]["final.step_ap"] == pytest.approx(np.mean(figures))
    assert set(means) == {"full", "base"} and (seed0 / "diagnostics" / "base_seed0" / "diagnostics.json").exists()
    assert "| final.step_ap |" in table.read_text() and not (seed0 / "diagnostics.md").exists()
    with pytest.raises(FileNotFoundError, match="results.csv"):
        diagnose_sweep([seed0, tmp_path / "unfinished"], progress=False)


def test_diagnose_refuses_the_train_split(tiny_root, tmp_path):
    with pytest.raises(ValueError, match="train split"):
        diagnose_checkpoint(str(export_for(tiny_root, tmp_path / "m")), split="train")


def test_cli_names_a_missing_checkpoint(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "clasp_dist.cli", "diagnose", "--checkpoint", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "nope/model.json: missing" in proc.stderr


def test_cli_takes_sweep_folders_and_overrides_in_any_order():
    from clasp_dist.cli.app import build_parser, collect_overrides

    parser = build_parser()
    argv = ["diagnose", "--sweep", "runs/a_s0", "model.global_ratio=1", "--sweep", "b", "decode.x=2"]
    args, extra = parser.parse_known_args(argv)
    collect_overrides(parser, args, extra)
    assert args.sweep == ["runs/a_s0", "b"] and args.overrides == ["model.global_ratio=1", "decode.x=2"]
