"""Builders shared by the evaluation tests."""

from __future__ import annotations

import numpy as np

from clasp_dist.evaluation.metric import Segments

NAMES = tuple(f"class{i}" for i in range(4))


def gt_segments(rows, videos=None, names=NAMES) -> Segments:
    """rows: (video, label, start, end)."""
    return Segments.from_arrays(
        [r[0] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        np.array([r[1] for r in rows], dtype=np.int64),
        class_names=names,
        videos=videos,
    )


def pred_segments(rows, videos=None) -> Segments:
    """rows: (video, label, start, end, score)."""
    return Segments.from_arrays(
        [r[0] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        np.array([r[1] for r in rows], dtype=np.int64),
        [r[4] for r in rows],
        videos=videos,
    )


def random_case(seed: int, num_videos: int = 6, num_classes: int = 4, on_grid: bool = True):
    """Small random ground truth and predictions; on_grid=True makes many score and tIoU ties."""
    rng = np.random.default_rng(seed)
    videos = [f"v{i}" for i in range(num_videos)]
    gt, preds = [], []
    for v in videos:
        for _ in range(rng.integers(0, 5)):
            s = float(rng.integers(0, 20)) if on_grid else float(rng.uniform(0, 20))
            length = float(rng.integers(1, 8)) if on_grid else float(rng.uniform(0.3, 8))
            gt.append((v, int(rng.integers(num_classes)), s, s + length))
        for _ in range(rng.integers(0, 14)):
            s = float(rng.integers(0, 20)) if on_grid else float(rng.uniform(0, 20))
            length = float(rng.integers(0, 8)) if on_grid else float(rng.uniform(0, 8))
            score = float(rng.integers(0, 4)) / 4 if on_grid else float(rng.random())
            video = v if rng.random() > 0.05 else "not-in-gt"
            preds.append((video, int(rng.integers(num_classes)), s, s + length, score))
        if gt and rng.random() < 0.3:  # a duplicate of a ground-truth segment as a prediction
            g = gt[int(rng.integers(len(gt)))]
            preds.append((g[0], g[1], g[2], g[3], 0.5))
    return videos, gt, preds
