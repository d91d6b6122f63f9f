"""The distributed evaluator (Ray Data actor pool) on a trained checkpoint, and the checkpoint CLIs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO, job_env

pytestmark = pytest.mark.slow


def test_distributed_matches_single_process(tiny_run, tiny_root):
    """Every video exactly once, and the same segments and mAP as the same predictor run in-process."""
    from dataclasses import replace

    from clasp_dist.inference.predict import predict_local, predict_split, score
    from clasp_dist.training.checkpoint import load_inference_model

    model, cfg, info = load_inference_model(tiny_run.export_dir)
    weights = model.state_dict()
    cfg = replace(cfg, eval=replace(cfg.eval, num_actors=2, batch_size=5))
    distributed = predict_split(weights, cfg, info, tiny_root, "validation")
    local = predict_local(weights, cfg, info, tiny_root, "validation")
    assert [v.video_id for v in distributed.videos] == [v.video_id for v in local.videos]
    assert len(distributed.videos) == 16
    for d, loc in zip(distributed.videos, local.videos):
        assert [p["label"] for p in d.predictions] == [p["label"] for p in loc.predictions]
        for pd, pl in zip(d.predictions, loc.predictions):
            assert pd["t_start"] == pytest.approx(pl["t_start"], abs=1e-5)
            assert pd["score"] == pytest.approx(pl["score"], abs=1e-5)
    a, b = score(distributed, info, cfg), score(local, info, cfg)
    assert a.mAP == pytest.approx(b.mAP, abs=1e-6)


def test_count_check_refuses_a_short_split(tiny_run, tiny_root, tmp_path):
    """A manifest that promises more videos than the shards hold is an error, not a quieter mAP."""
    import shutil

    from clasp_dist.data.errors import DataError
    from clasp_dist.inference.predict import predict_split
    from clasp_dist.training.checkpoint import load_inference_model

    root = tmp_path / "short"
    shutil.copytree(tiny_root, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["splits"]["validation"]["videos"] += 1
    manifest["splits"]["validation"]["shards"][0]["videos"] += 1  # consistent manifest, short shard
    (root / "manifest.json").write_text(json.dumps(manifest))
    model, cfg, info = load_inference_model(tiny_run.export_dir)
    with pytest.raises(DataError, match="manifest lists (17|9)"):  # the split count, or the shard reader's own
        predict_split(model.state_dict(), cfg, info, str(root), "validation")


def corrupt_samples(root, split: str, count: int) -> list[str]:
    """Replace the visual.npy of the first `count` samples of the split's first shard with a wrong-width
    array (a bad sample); returns their ids."""
    import io
    import tarfile

    import numpy as np

    manifest = json.loads((root / "manifest.json").read_text())
    shard = root / manifest["splits"][split]["shards"][0]["path"]
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    bad_ids = [m.name.split(".")[0] for m, _ in members if m.name.endswith(".visual.npy")][:count]
    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 3), dtype=np.float16))
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in members:
            if member.name.split(".")[0] in bad_ids and member.name.endswith(".visual.npy"):
                data = buf.getvalue()
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return bad_ids


def test_skip_policy_on_the_evaluation_path(tiny_run, tiny_root, tmp_path):
    """bad_sample_policy=skip: skipped samples are counted, bounded by max_skipped_fraction and left
    out of the exactly-once count, with Ray (batches of one bad row: the collate yields nothing) and without."""
    import shutil
    from dataclasses import replace

    from clasp_dist.data.errors import BadSampleError, TooManySkippedError
    from clasp_dist.inference.predict import predict_local, predict_split, score
    from clasp_dist.training.checkpoint import load_inference_model

    root = tmp_path / "bad"
    shutil.copytree(tiny_root, root)
    bad = corrupt_samples(root, "validation", 2)
    model, cfg, info = load_inference_model(tiny_run.export_dir)
    weights = model.state_dict()
    skip = replace(
        cfg,
        data=replace(cfg.data, bad_sample_policy="skip", max_skipped_fraction=0.3),
        eval=replace(cfg.eval, batch_size=1, num_actors=1),
    )
    for predict in (predict_split, predict_local):
        got = predict(weights, skip, info, str(root), "validation")
        assert got.skipped == 2 and len(got.videos) == 14
        assert not set(bad) & {v.video_id for v in got.videos}
        assert 0 <= score(got, info, skip).average <= 1
    strict = replace(skip, data=replace(skip.data, max_skipped_fraction=0.1))  # 2 of 16 > 10 %
    with pytest.raises(TooManySkippedError, match="max_skipped_fraction"):
        predict_split(weights, strict, info, str(root), "validation")
    with pytest.raises(Exception, match="visual.npy") as err:
        predict_split(
            weights, replace(skip, data=replace(skip.data, bad_sample_policy="error")), info, str(root), "validation"
        )
    assert bad[0] in str(err.value) or isinstance(err.value, BadSampleError)


def test_evaluate_and_predict_clis_on_a_checkpoint(tiny_run, tiny_root, tmp_path):
    from clasp_dist.inference.predict import evaluate_checkpoint

    again = evaluate_checkpoint(str(tiny_run.export_dir), tiny_root, "test")  # checkpoint mode = the run's number
    assert again.average == pytest.approx(tiny_run.metrics["test"]["average"], abs=1e-9)
    assert (tiny_run.export_dir.parent / "test" / "predictions_test.json").is_file()  # the path the README names

    out = tmp_path / "eval"
    env = job_env()
    # relative localisation thresholds: the 2-epoch model's weak signals still give segments to draw
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "clasp_dist.cli",
            "evaluate",
            "--checkpoint",
            str(tiny_run.export_dir),
            f"data.root={tiny_root}",
            "--split",
            "test",
            "--out",
            str(out),
            "--plot",
            "2",
            "decode.loc_threshold_mode=relative",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics_test.json").read_text())
    assert f"{100 * metrics['average']:.2f}" in [line for line in done.stdout.splitlines() if "avg" in line][0]
    pngs = sorted((out / "timelines").glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in pngs)
    predictions = json.loads((out / "predictions_test.json").read_text())["results"]
    assert {p.stem for p in pngs} <= set(predictions) and all(predictions[p.stem] for p in pngs)
    preds = tmp_path / "preds" / "predictions_test.json"
    done = subprocess.run(
        [
            sys.executable,
            "jobs/predict.py",  # the thin wrapper `ray job submit` runs = `clasp predict`
            "--checkpoint",
            str(tiny_run.export_dir),
            f"data.root={tiny_root}",
            "--split",
            "test",
            "--out",
            str(preds.parent),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(preds.read_text())["results"]
    assert len(results) == 16 and all(len(v) <= 100 for v in results.values())
