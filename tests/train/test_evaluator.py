"""The distributed evaluator (Ray Data actor pool) on a trained checkpoint, and the checkpoint CLIs."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO, job_env

pytestmark = pytest.mark.slow


def test_distributed_matches_single_process(tiny_run, tiny_root):
    """Every video exactly once, and the same segments and mAP as the same predictor run in-process."""
    from dataclasses import replace

    from clasp_dist.checkpoint import load_inference_model
    from clasp_dist.evaluation.distributed import predict_local, predict_split, score

    model, cfg, info = load_inference_model(tiny_run.export_dir)
    weights = model.state_dict()
    cfg = replace(cfg, eval=replace(cfg.eval, num_actors=2, batch_size=5))
    distributed = predict_split(weights, cfg, info, tiny_root, "validation")
    local = predict_local(weights, cfg, info, tiny_root, "validation")
    assert [v.video_id for v in distributed.videos] == [v.video_id for v in local.videos]
    assert len(distributed.videos) == 16
    for d, l in zip(distributed.videos, local.videos):
        assert [p["label"] for p in d.predictions] == [p["label"] for p in l.predictions]
        for pd, pl in zip(d.predictions, l.predictions):
            assert pd["t_start"] == pytest.approx(pl["t_start"], abs=1e-5)
            assert pd["score"] == pytest.approx(pl["score"], abs=1e-5)
    a, b = score(distributed, info, cfg), score(local, info, cfg)
    assert a.mAP == pytest.approx(b.mAP, abs=1e-6)


def test_count_check_refuses_a_short_split(tiny_run, tiny_root, tmp_path):
    """A manifest that promises more videos than the shards hold is an error, not a quieter mAP."""
    import shutil

    from clasp_dist.checkpoint import load_inference_model
    from clasp_dist.data.errors import DataError
    from clasp_dist.evaluation.distributed import EvaluationCountError, predict_split

    root = tmp_path / "short"
    shutil.copytree(tiny_root, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["splits"]["validation"]["videos"] += 1
    manifest["splits"]["validation"]["shards"][0]["videos"] += 1  # consistent manifest, short shard
    (root / "manifest.json").write_text(json.dumps(manifest))
    model, cfg, info = load_inference_model(tiny_run.export_dir)
    with pytest.raises((EvaluationCountError, DataError), match="17"):
        predict_split(model.state_dict(), cfg, info, str(root), "validation")


def test_evaluate_and_predict_clis_on_a_checkpoint(tiny_run, tiny_root, tmp_path):
    out = tmp_path / "eval"
    env = job_env()
    done = subprocess.run([sys.executable, "jobs/evaluate.py", "--checkpoint", str(tiny_run.export_dir), "--data",
                           tiny_root, "--split", "test", "--out", str(out), "--plot", "2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "avg" in done.stdout
    metrics = json.loads((out / "metrics_test.json").read_text())
    assert metrics["average"] == pytest.approx(tiny_run.metrics["test"]["average"], abs=1e-9)
    assert len(list((out / "timelines").glob("*.png"))) == 2
    preds = tmp_path / "preds.json"
    done = subprocess.run([sys.executable, "jobs/predict.py", "--checkpoint", str(tiny_run.export_dir), "--data",
                           tiny_root, "--split", "test", "--out", str(preds)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(preds.read_text())["results"]
    assert len(results) == 16 and all(len(v) <= 100 for v in results.values())
