"""Real ActivityNet 1.3 runs to the end: a file shaped like the official annotation JSON (no `label_id`, the
`testing` subset without annotations) goes from `clasp data prepare anet13` to a run's `metrics.json`, whose final
pass uses the last split with ground truth (validation) and says so."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clasp_dist.data.grid import Grid
from tests.helpers import run_cfg

GRID = Grid(fps=15.0, feat_stride=16, window=16)
CLASSES = ("Archery", "Playing violin", "Zumba")


def official_shaped(n_train: int = 8, n_val: int = 4, n_test: int = 4) -> dict:
    """The official file's shape: version, taxonomy, database entries with url/resolution, labels by name only,
    and `testing` entries whose annotations are empty."""
    rng = np.random.default_rng(0)
    database = {}
    for subset, count in (("training", n_train), ("validation", n_val), ("testing", n_test)):
        for i in range(count):
            duration = float(rng.uniform(15.0, 30.0))
            anns = []
            if subset != "testing":
                for k in range(1 + i % 2):
                    start = float(rng.uniform(0.0, duration / 2))
                    anns.append({"segment": [start, min(duration, start + 5.0)], "label": CLASSES[(i + k) % 3]})
            database[f"{subset[:3]}{i:02d}Xy-z"] = {
                "subset": subset,
                "duration": duration,
                "resolution": "640x360",
                "url": f"https://www.youtube.com/watch?v={subset[:3]}{i:02d}",
                "annotations": anns,
            }
    taxonomy = [{"nodeId": k, "nodeName": name, "parentId": 0, "parentName": "Root"} for k, name in enumerate(CLASSES)]
    return {"version": "VERSION 1.3", "taxonomy": taxonomy, "database": database}


def write_features(folder, database: dict, visual_dim: int = 12, audio_dim: int = 6) -> None:
    folder.mkdir()
    for i, (vid, entry) in enumerate(database.items()):
        steps = GRID.num_steps(entry["duration"])
        rng = np.random.default_rng(i)
        np.save(folder / f"v_{vid}_visual.npy", rng.standard_normal((steps, visual_dim)).astype(np.float32))
        np.save(folder / f"v_{vid}_audio.npy", rng.standard_normal((steps, audio_dim)).astype(np.float32))


@pytest.mark.slow
def test_official_shaped_activitynet_runs_to_metrics_json(ray_session, tmp_path):
    from clasp_dist.cli import main as clasp
    from clasp_dist.data import read_manifest
    from clasp_dist.training.driver import run_training

    doc = official_shaped()
    (tmp_path / "activity_net.v1-3.min.json").write_text(json.dumps(doc))
    write_features(tmp_path / "feats", doc["database"])
    root = str(tmp_path / "anet13")
    argv = ["data", "prepare", "anet13", "--annotations", str(tmp_path / "activity_net.v1-3.min.json"), "--features"]
    argv += [str(tmp_path / "feats"), "--fps", "15", "--feat-stride", "16", "--window", "16", f"data.root={root}"]
    assert clasp(argv + ["--workers", "1", "--quiet"]) == 0
    manifest = read_manifest(root)
    assert manifest.classes == list(CLASSES) and manifest.extra["unlabelled_splits"] == ["test"]
    summary = run_training(run_cfg(tmp_path / "run", root, "train.epochs=1"))
    metrics = json.loads((summary.run_dir / "metrics.json").read_text())
    assert metrics["final"]["split"] == "validation" and "test" not in metrics
    assert 0.0 <= metrics["final"]["average"] <= 1.0
    assert (summary.run_dir / "validation" / "metrics_validation.json").is_file()
