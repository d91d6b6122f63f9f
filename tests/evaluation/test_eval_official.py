"""The official number on every input: annotation and results files as users have them, scored by
the reader + metric (Python), by `clasp evaluate`, and by the official reference (tests/evaluation/reference.py).

The random files include predictions on videos absent from the split, labels absent from the ground
truth (unused ids, ids past the list, unknown names), ground-truth ids with gaps, more than 100
predictions on a video, duplicate ground truth (UnAV de-duplication) and score/tIoU ties.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clasp_dist.evaluation.formats import load_ground_truth, load_predictions
from clasp_dist.evaluation.metric import UNAV100_TIOU, EvaluationInputError, evaluate_detection

from . import reference
from .test_eval_metric import assert_matches_reference

REPO = Path(__file__).resolve().parents[2]
LABEL_IDS = (0, 2, 3, 7, 9)  # the file's ids: gaps at 1, 4-6, 8
NAMES = {i: f"class {i}" for i in LABEL_IDS}


def official_case(seed: int, many_on_one_video: bool = False):
    """(annotation document, results document, reference ground truth, reference predictions)."""
    rng = np.random.default_rng(seed)
    database, results, ref_preds = {}, {}, []
    test_videos = [f"v{i}" for i in range(8)]
    for vid in test_videos + ["tr0", "tr1"]:
        events = []
        for _ in range(rng.integers(0, 4)):
            s = float(rng.integers(0, 20))
            c = int(rng.choice(LABEL_IDS[:4]))  # id 9 has no ground truth in the test split
            events.append((s, s + float(rng.integers(1, 8)), c))
            if rng.random() < 0.25:  # a duplicate within the tolerance (UnAV drops it)
                events.append((s + 5e-4, events[-1][1], c))
        subset = "test" if vid in test_videos else "train"
        if vid == "tr0":
            events.append((0.0, 5.0, 9))
        database[vid] = {
            "subset": subset,
            "duration": 30.0,
            "annotations": [{"segment": [s, e], "label": NAMES[c], "label_id": c} for s, e, c in events],
        }
    for vid in test_videos + ["tr0", "elsewhere"]:  # tr0: another split; elsewhere: in no split
        count = int(rng.integers(0, 10)) + (120 if many_on_one_video and vid == "v0" else 0)
        entries = []
        for _ in range(count):
            s = float(rng.integers(0, 20))
            e = s + float(rng.integers(0, 8))
            score = float(rng.integers(0, 5)) / 4  # ties
            kind = rng.random()
            if kind < 0.06:
                label, ref_label = "unicorn", -1  # a name that is not a class
            elif kind < 0.12:
                label = ref_label = int(rng.choice([1, 5, 11]))  # an id in a gap or past the list
            else:
                ref_label = int(rng.choice(LABEL_IDS))
                label = NAMES[ref_label] if rng.random() < 0.5 else ref_label
            entries.append({"segment": [s, e], "label": label, "score": score})
            ref_preds.append((vid, ref_label, s, e, score))
        results[vid] = entries
    gt_doc = {"version": "test", "database": database}
    return gt_doc, {"version": "test", "results": results}, reference.ground_truth_of(database, "test"), ref_preds


def score_files(gt_doc, pred_doc, **kw):
    gt = load_ground_truth(gt_doc, "test")
    preds = load_predictions(pred_doc, gt.class_names, gt.info["label_ids"])
    return gt, evaluate_detection(gt, preds, UNAV100_TIOU, **kw)


@pytest.mark.parametrize("tie_break", ["stable", "official"])
def test_files_match_official_reference_on_random_cases(tie_break):
    compared = 0
    for seed in range(80):
        gt_doc, pred_doc, ref_gt, ref_preds = official_case(seed, many_on_one_video=seed % 4 == 0)
        if not ref_gt:
            continue
        gt, res = score_files(gt_doc, pred_doc, tie_break=tie_break)
        assert set(gt.info["label_ids"]) <= set(LABEL_IDS) and 9 in gt.info["label_ids"]
        split_videos = [v for v, e in gt_doc["database"].items() if e["subset"] == "test"]
        ref = reference.evaluate(ref_gt, ref_preds, UNAV100_TIOU, tie_break=tie_break, split_videos=split_videos)
        assert_matches_reference(res, ref, label_of_class=gt.info["label_ids"], counts=("class_without_gt",))
        # the reader drops labels outside the class list before the metric counts unknown videos
        assert res.warnings["unknown_video"] == sum(
            p[0] not in split_videos and p[1] in gt.info["label_ids"] for p in ref_preds
        )
        compared += 1
    assert compared > 60


def test_random_cases_exercise_every_policy():
    """Guards the comparison above against generating easy cases only."""
    totals = dict(unknown_video=0, class_without_gt=0, unknown_labels=0, duplicates=0, over_100=0)
    for seed in range(80):
        gt_doc, pred_doc, ref_gt, _ = official_case(seed, many_on_one_video=seed % 4 == 0)
        if not ref_gt:
            continue
        gt, res = score_files(gt_doc, pred_doc)
        for key in ("unknown_video", "class_without_gt", "unknown_labels"):
            totals[key] += res.warnings[key]
        totals["duplicates"] += gt.info["duplicates_dropped"]
        totals["over_100"] += len(pred_doc["results"]["v0"]) > 100
    assert all(v > 5 for v in totals.values()), totals


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "clasp_dist.cli", "evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_cli_scores_the_official_number(tmp_path):
    """`clasp evaluate` on the same files: the official number (and the opt-ins change it as documented)."""
    gt_doc, pred_doc, ref_gt, ref_preds = official_case(4, many_on_one_video=True)
    gt_path, pred_path, out = tmp_path / "gt.json", tmp_path / "pred.json", tmp_path / "metrics_test.json"
    gt_path.write_text(json.dumps(gt_doc))
    pred_path.write_text(json.dumps(pred_doc))
    split_videos = [v for v, e in gt_doc["database"].items() if e["subset"] == "test"]
    ref = reference.evaluate(ref_gt, ref_preds, UNAV100_TIOU, split_videos=split_videos)
    proc = run_cli("--predictions", pred_path, "--ground-truth", gt_path, "--split", "test", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = json.loads(out.read_text())
    np.testing.assert_allclose([written[k] for k in list(written)[:9]], ref["mAP"], atol=1e-12)
    assert "false positive for its class (official protocol)" in proc.stdout

    ref_opt = reference.evaluate(
        ref_gt, ref_preds, UNAV100_TIOU, split_videos=split_videos, cap=100, ignore_unknown_videos=True
    )
    proc = run_cli(
        "--predictions",
        pred_path,
        "--ground-truth",
        gt_path,
        "--out",
        tmp_path,
        "--max-per-video",
        100,
        "--ignore-unknown-videos",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["average"] == pytest.approx(ref_opt["average"], abs=1e-12)
    assert ref_opt["average"] != pytest.approx(ref["average"])


def test_issue_12_worked_case_through_files_and_cli(tmp_path):
    gt_doc = {
        "database": {
            "a": {
                "subset": "test",
                "duration": 40,
                "annotations": [
                    {"segment": [0, 10], "label": "dog", "label_id": 0},
                    {"segment": [20, 30], "label": "car", "label_id": 5},
                ],
            },
            "b": {
                "subset": "test",
                "duration": 40,
                "annotations": [{"segment": [5, 15], "label": "dog", "label_id": 0}],
            },
        }
    }
    pred_doc = {
        "results": {
            "b": [{"segment": [20, 30], "label": "car", "score": 0.99}],
            "zzz": [{"segment": [0, 10], "label": 0, "score": 0.98}],
            "a": [
                {"segment": [0, 10], "label": "dog", "score": 0.90},
                {"segment": [20, 30], "label": 5, "score": 0.50},
            ],
        }
    }
    _, res = score_files(gt_doc, pred_doc)
    np.testing.assert_allclose(res.mAP, [0.375] * 9, atol=1e-12)
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "p.json"
    gt_path.write_text(json.dumps(gt_doc))
    pred_path.write_text(json.dumps(pred_doc))
    proc = run_cli("--predictions", pred_path, "--ground-truth", gt_path, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "metrics_test.json").read_text())["average"] == pytest.approx(0.375, abs=1e-12)


@pytest.mark.parametrize(
    "label,pattern",
    [
        (-1, "label -1 is neither"),
        (2.5, "label 2.5 is neither"),
        (True, "label True is neither"),
        (None, "label None is neither"),
    ],
)
def test_impossible_labels_stay_errors(label, pattern):
    gt_doc, _, _, _ = official_case(1)
    pred_doc = {"results": {"v0": [{"segment": [0, 1], "label": label, "score": 0.5}]}}
    with pytest.raises(EvaluationInputError, match=rf"results\['v0'\]\[0\]: {pattern}"):
        score_files(gt_doc, pred_doc)


@pytest.mark.parametrize(
    "entry,pattern",
    [
        ({"segment": [0, 1], "label": 0, "score": float("nan")}, "score is nan"),
        ({"segment": [float("nan"), 1], "label": 0, "score": 1}, "t_start is nan"),
    ],
)
def test_nan_numbers_stay_errors(entry, pattern):
    gt_doc, _, _, _ = official_case(1)
    with pytest.raises(EvaluationInputError, match=pattern):
        score_files(gt_doc, {"results": {"v0": [entry]}})


def test_partial_predictions_are_noted_loudly_and_only_predicted_videos_is_opt_in(tmp_path):
    """a predictions file for part of a split scores the rest as misses (official), says so,
    and --only-predicted-videos scores just the listed videos."""
    database = {
        f"v{i}": {
            "subset": "test",
            "duration": 20,
            "annotations": [{"segment": [0, 10], "label": "dog", "label_id": 0}],
        }
        for i in range(10)
    }
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "p.json"
    gt_path.write_text(json.dumps({"database": database}))
    pred_path.write_text(
        json.dumps(
            {
                "results": {
                    "v0": [{"segment": [0, 10], "label": "dog", "score": 0.9}],
                    "v1": [{"segment": [0, 10], "label": "dog", "score": 0.8}],
                }
            }
        )
    )
    out = tmp_path / "metrics_test.json"
    proc = run_cli("--predictions", pred_path, "--ground-truth", gt_path, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["average"] == pytest.approx(0.2)  # 2 of 10 segments recalled, precision 1
    assert f"NOTE: 8 of the 10 videos of split 'test' have ground truth but no prediction in {pred_path}" in proc.stdout
    assert "--only-predicted-videos" in proc.stdout
    proc = run_cli("--predictions", pred_path, "--ground-truth", gt_path, "--out", tmp_path, "--only-predicted-videos")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["average"] == pytest.approx(1.0)
    assert "only the 2 predicted videos of 10 (--only-predicted-videos)" in proc.stdout and "NOTE" not in proc.stdout
    empty = json.loads(pred_path.read_text())
    empty["results"]["v2"] = []  # listed without segments: scored, all misses
    pred_path.write_text(json.dumps(empty))
    proc = run_cli("--predictions", pred_path, "--ground-truth", gt_path, "--out", tmp_path, "--only-predicted-videos")
    assert json.loads(out.read_text())["average"] == pytest.approx(2 / 3)
    assert f"NOTE: 1 of the 3 scored videos have no segment in {pred_path}" in proc.stdout


def test_help_states_the_semantics_and_real_paths():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for text in (
        "--ignore-unknown-videos",
        "--only-predicted-videos",
        "--max-per-video",
        "false positive",
        "runs/<name>/test/predictions_test.json",
        "clasp_dist/resources/unav100_annotations.json",
        "runs/<name>/export",
    ):
        assert text in proc.stdout, text
    assert "runs/x/" not in proc.stdout
    assert (REPO / "clasp_dist/resources/unav100_annotations.json").exists()
