"""`clasp evaluate` end to end (subprocess), its checkpoint-mode wiring, and the report module."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

import clasp_dist.inference as inference_pkg
from clasp_dist.cli import main as clasp
from clasp_dist.evaluation.formats import load_ground_truth, load_predictions, write_predictions
from clasp_dist.evaluation.metric import ANET_TIOU, UNAV100_TIOU, evaluate_detection
from clasp_dist.evaluation.report import format_table, metrics_dict, write_metrics_json

from .helpers import random_case

REPO = Path(__file__).resolve().parents[2]


def make_files(tmp_path: Path, seed: int = 3, subsets=("train", "validation", "test")):
    """A small annotation JSON (test split = random_case videos) and a results JSON."""
    videos, gt, preds = random_case(seed, num_videos=12)
    names = [f"class {i}" for i in range(4)]
    database = {
        "tr": {
            "subset": subsets[0],
            "duration": 30.0,
            "annotations": [{"segment": [0, 5], "label": names[i], "label_id": i} for i in range(4)],
        }
    }
    for v in videos:
        database[v] = {
            "subset": subsets[2],
            "duration": 30.0,
            "annotations": [{"segment": [s, e], "label": names[c], "label_id": c} for (vid, c, s, e) in gt if vid == v],
        }
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps({"version": "t", "database": database}))
    pred_path = tmp_path / "pred.json"
    write_predictions(
        pred_path, [dict(video_id=v, label=c, t_start=s, t_end=e, score=p) for v, c, s, e, p in preds], names
    )
    return gt_path, pred_path


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "clasp_dist.cli", "evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_cli_end_to_end_matches_metric(tmp_path):
    gt_path, pred_path = make_files(tmp_path)
    proc = run_cli("--predictions", pred_path, "--ground-truth", gt_path, "--split", "test", "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "o" / "metrics_test.json"
    assert "mAP (%)" in proc.stdout and "avg" in proc.stdout
    written = json.loads(out.read_text())
    gt = load_ground_truth(gt_path, "test")
    expected = metrics_dict(evaluate_detection(gt, load_predictions(pred_path, gt.class_names), UNAV100_TIOU))
    assert list(written) == [f"0.{i}" for i in range(1, 10)] + ["average", "recall@1x", "recall@5x"]
    assert written == expected  # JSON floats round-trip exactly
    assert f"{100 * expected['0.5']:.2f}" in proc.stdout


def test_cli_custom_thresholds_and_activitynet_default(tmp_path):
    gt_path, pred_path = make_files(tmp_path)
    tiou = "eval.tiou_thresholds=0.3,0.5,0.7"
    proc = run_cli("--predictions", pred_path, "--ground-truth", gt_path, tiou, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads((tmp_path / "metrics_test.json").read_text()))[:4] == ["0.3", "0.5", "0.7", "average"]

    anet_dir = tmp_path / "anet"
    anet_dir.mkdir()
    gt_path, pred_path = make_files(anet_dir, subsets=("training", "validation", "testing"))
    proc = run_cli("--predictions", pred_path, "--ground-truth", gt_path, "--split", "testing", "--out", anet_dir)
    assert proc.returncode == 0, proc.stderr
    keys = [k for k in json.loads((anet_dir / "metrics_testing.json").read_text()) if k[0].isdigit()]
    assert len(keys) == len(ANET_TIOU) == 10 and keys[0] == "0.5" and keys[-1] == "0.95"


def test_cli_reports_bad_input_clearly(tmp_path):
    gt_path, _ = make_files(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": {"v0": [{"segment": [0, 1], "label": "unicorn", "score": 1}]}}))
    proc = run_cli("--predictions", bad, "--ground-truth", gt_path)
    assert proc.returncode == 0 and "1 of them with a label outside the class list" in proc.stdout
    bad.write_text(json.dumps({"results": {"v0": [{"segment": [0, 1], "label": -3, "score": 1}]}}))
    proc = run_cli("--predictions", bad, "--ground-truth", gt_path)
    assert proc.returncode == 2 and "results['v0'][0]: label -3 is neither" in proc.stderr

    proc = run_cli("--predictions", bad, "--ground-truth", gt_path, "eval.tiou_thresholds=0.1:0.9")
    assert proc.returncode == 2 and "START:STOP:STEP" in proc.stderr


def test_cli_usage_errors_and_help():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "--checkpoint" in proc.stdout and "0.5:0.95:0.05" in proc.stdout
    assert run_cli("--predictions", "p.json").returncode == 2  # half of the files mode
    proc = run_cli("--checkpoint", "c", "--predictions", "p.json")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "cannot be combined" in proc.stderr
    proc = run_cli("--predictions", "p.json", "--ground-truth", "g.json", "data.root=d")
    assert proc.returncode == 2 and "other keys need --checkpoint" in proc.stderr


def test_checkpoint_mode_calls_distributed_evaluator(monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("clasp_dist.inference.predict")
    fake.evaluate_checkpoint = lambda **kw: calls.append(kw)
    monkeypatch.setitem(sys.modules, "clasp_dist.inference.predict", fake)
    monkeypatch.setattr(inference_pkg, "predict", fake, raising=False)
    import clasp_dist.cli.evaluate

    # 'ck' and 'root' do not exist: the pre-Ray input checks (tested in tests/reliability) are out of this test
    monkeypatch.setattr(clasp_dist.cli.evaluate, "check_before_ray", lambda **kw: None)
    rc = clasp(
        [
            "evaluate",
            "--checkpoint",
            "ck",
            "data.root=root",
            "--split",
            "validation",
            "--out",
            "o",
            "--plot",
            "3",
            "eval.tiou_thresholds=0.5:0.95:0.05",
            "eval.num_actors=2",
        ]
    )
    assert rc == 0
    assert calls == [
        dict(
            checkpoint="ck",
            data_root=None,
            split="validation",
            out_dir="o",
            plot=3,
            overrides=["data.root=root", "eval.num_actors=2", f"eval.tiou_thresholds={list(ANET_TIOU)}"],
        )
    ]


def test_report_table_and_json(tmp_path):
    videos, gt, preds = random_case(7, num_videos=10)
    from .helpers import gt_segments, pred_segments

    res = evaluate_detection(gt_segments(gt, videos), pred_segments(preds), UNAV100_TIOU)
    table = format_table(res, title="T")
    lines = table.splitlines()
    assert lines[0] == "T" and "R@1x (%)" in lines[1] and "R@5x (%)" in lines[1]
    assert any(line.strip().startswith("0.3 ") for line in lines)
    assert f"{100 * res.average:.2f}" in [line for line in lines if line.strip().startswith("avg")][0]
    doc = write_metrics_json(tmp_path / "x" / "m.json", res)
    assert json.loads((tmp_path / "x" / "m.json").read_text()) == doc
    assert doc["0.5"] == float(res.mAP[4]) and 0 <= doc["average"] <= 1
    assert np.isclose(doc["recall@5x"]["0.9"], res.recall["5x"][-1])
