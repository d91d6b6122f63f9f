#!/usr/bin/env python
"""Speed of the evaluation: the mAP metric on UnAV-100-like data at 2,000 and 10,000 videos.

Ground truth is sampled from the real UnAV-100 annotations (whole videos drawn with replacement:
real durations, event counts, lengths and class mix); each video gets 100 predictions over 100
classes: half on its own classes (jittered copies of its events and random spans), half on random
classes, random scores. Thresholds 0.1:0.1:0.9. Median of --repeats runs, timed around
``evaluate_detection`` only (inputs already in memory as Segments).

Results go to bench/results/local/eval_speed.json (``--record``: the tracked bench/results/ one) as ``{"machine": ..., "sections": {name: {...}}}``.
Another bench (e.g. the distributed evaluator's videos/s) adds a section with
``update_results(section_name, payload)`` without touching this one.

    python bench/eval_speed.py [--videos 2000 10000] [--repeats 5] [--record | --out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from bench.outputs import add_output_args, output_path
from clasp_dist.config import load_config
from clasp_dist.data.synthetic import generate_dataset
from clasp_dist.evaluation.metric import UNAV100_TIOU, Segments, evaluate_detection
from clasp_dist.inference.predict import predict_split
from clasp_dist.model import build_model
from clasp_dist.training.driver import dataset_info

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ANNOTATIONS = ROOT / "clasp_dist" / "resources" / "unav100_annotations.json"  # the packaged copy
PREDICTIONS_PER_VIDEO = 100
NUM_CLASSES = 100


def load_annotation_videos(path: Path) -> list[dict]:
    database = json.loads(path.read_text())["database"]
    return [v for v in database.values() if v["annotations"]]


def synthesize(videos: list[dict], num_videos: int, seed: int = 0) -> tuple[Segments, Segments]:
    """Ground truth drawn from real videos, predictions as described in the module docstring."""
    rng = np.random.default_rng(seed)
    gt_vid, gt_s, gt_e, gt_c = [], [], [], []
    pr_vid, pr_s, pr_e, pr_c, pr_p = [], [], [], [], []
    names = [f"video{i:06d}" for i in range(num_videos)]
    for name, k in zip(names, rng.integers(0, len(videos), num_videos)):
        video = videos[k]
        duration = float(video["duration"])
        events = [(float(a["segment"][0]), float(a["segment"][1]), int(a["label_id"])) for a in video["annotations"]]
        for s, e, c in events:
            gt_vid.append(name)
            gt_s.append(s)
            gt_e.append(e)
            gt_c.append(c)
        n_own = PREDICTIONS_PER_VIDEO // 2
        pick = rng.integers(0, len(events), n_own)  # [n_own]
        base_s = np.array([events[i][0] for i in pick])  # [n_own]
        base_e = np.array([events[i][1] for i in pick])  # [n_own]
        jitter = rng.normal(0.0, 0.15, (n_own, 2)) * (base_e - base_s)[:, None]  # [n_own, 2]
        random_spans = rng.random(n_own) < 0.4  # [n_own] part of the own-class ones are random spans
        starts = rng.uniform(0, duration, PREDICTIONS_PER_VIDEO)  # [P]
        lengths = rng.uniform(0.3, duration / 2, PREDICTIONS_PER_VIDEO)  # [P]
        s = np.clip(starts, 0, duration)  # [P]
        e = np.clip(starts + lengths, 0, duration)  # [P]
        s[:n_own] = np.where(random_spans, s[:n_own], np.clip(base_s + jitter[:, 0], 0, duration))
        e[:n_own] = np.where(random_spans, e[:n_own], np.clip(base_e + jitter[:, 1], 0, duration))
        e = np.maximum(e, s)
        labels = np.concatenate(
            [[events[i][2] for i in pick], rng.integers(0, NUM_CLASSES, PREDICTIONS_PER_VIDEO - n_own)]
        )
        pr_vid += [name] * PREDICTIONS_PER_VIDEO
        pr_s.append(s)
        pr_e.append(e)
        pr_c.append(labels)
        pr_p.append(rng.random(PREDICTIONS_PER_VIDEO))
    classes = [f"class{i}" for i in range(NUM_CLASSES)]
    gt = Segments.from_arrays(gt_vid, gt_s, gt_e, np.array(gt_c), class_names=classes, videos=names)
    preds = Segments.from_arrays(
        pr_vid, np.concatenate(pr_s), np.concatenate(pr_e), np.concatenate(pr_c), np.concatenate(pr_p)
    )
    return gt, preds


def time_metric(gt: Segments, preds: Segments, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = evaluate_detection(gt, preds, UNAV100_TIOU)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return dict(
        videos=len(gt.videos),
        gt_segments=len(gt),
        predictions=len(preds),
        thresholds=len(UNAV100_TIOU),
        classes=NUM_CLASSES,
        repeats=repeats,
        median_s=round(median, 4),
        min_s=round(min(times), 4),
        videos_per_s=round(len(gt.videos) / median, 1),
        average_map=round(result.average, 6),
    )


def machine() -> dict:
    return dict(
        cpu=platform.processor() or platform.machine(),
        cores=os.cpu_count(),
        python=platform.python_version(),
        numpy=np.__version__,
    )


def update_results(section: str, payload: dict, path: Path) -> dict:
    """Merge one section into the results file (other sections are kept)."""
    document = json.loads(path.read_text()) if path.exists() else {}
    document.setdefault("sections", {})[section] = payload
    document["machine"] = machine()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return document


def time_distributed(num_videos: int, actors: list[int], workdir: Path) -> list[dict]:
    """The distributed evaluator (Ray Data actor pool) on the `i3d` profile's first `num_videos` test
    videos: a freshly initialised `unav100_i3d` model (d=512), videos/s for each actor-pool size."""
    import time

    import ray
    import torch

    root = str(workdir / f"i3d-test{num_videos}")
    if not (Path(root) / "manifest.json").exists():
        generate_dataset(root, "i3d", seed=0, limit_per_split={"train": 1, "validation": 1, "test": num_videos})
    rows = []
    ray.init(num_cpus=2, include_dashboard=False, logging_config=ray.LoggingConfig(log_level="WARNING"))
    for n in actors:
        cfg = load_config(
            [
                "config=unav100_i3d",
                f"data.root={root}",
                f"eval.num_actors={n}",
                f"eval.actor_num_cpus={2 / n - 0.25}",
                "eval.batch_size=16",
            ]
        )
        info, _ = dataset_info(root, cfg)
        torch.manual_seed(0)
        weights = build_model(cfg, info).state_dict()
        start = time.perf_counter()
        predictions = predict_split(weights, cfg, info, root, "test")
        elapsed = time.perf_counter() - start
        rows.append(
            {
                "actors": n,
                "videos": len(predictions.videos),
                "seconds": round(elapsed, 2),
                "videos_per_s": round(len(predictions.videos) / elapsed, 1),
            }
        )
    ray.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--distributed",
        type=int,
        default=0,
        metavar="N",
        help="instead: time the distributed evaluator on N i3d test videos with 1 and 2 actors",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/clasp-eval-bench"))
    parser.add_argument("--videos", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--annotations", type=Path, default=DEFAULT_ANNOTATIONS)
    add_output_args(parser)
    args = parser.parse_args()
    args.out = output_path(args, "eval_speed.json")
    if args.distributed:
        rows = time_distributed(args.distributed, [1, 2], args.workdir)
        for r in rows:
            print(
                f"{r['actors']} actor(s): {r['videos']} videos in {r['seconds']:.1f} s = {r['videos_per_s']:.1f} videos/s"
            )
        update_results(
            "distributed",
            dict(
                description="predict_split on i3d test videos, unav100_i3d model (d=512), "
                "untrained weights, CPU, batch 16, includes actor start-up",
                runs=rows,
            ),
            args.out,
        )
        return

    videos = load_annotation_videos(args.annotations)
    rows = []
    for n in args.videos:
        gt, preds = synthesize(videos, n, seed=n)
        evaluate_detection(gt, preds, UNAV100_TIOU)  # warm-up
        rows.append(time_metric(gt, preds, args.repeats))
    print(f"{'videos':>8} {'GT segs':>8} {'preds':>9} {'median s':>9} {'min s':>7} {'videos/s':>9} {'avg mAP':>8}")
    for r in rows:
        print(
            f"{r['videos']:>8} {r['gt_segments']:>8} {r['predictions']:>9} {r['median_s']:>9.3f} {r['min_s']:>7.3f} "
            f"{r['videos_per_s']:>9.0f} {r['average_map']:>8.4f}"
        )
    update_results(
        "metric",
        dict(description="evaluate_detection, 100 preds/video, 100 classes, tIoU 0.1:0.1:0.9", runs=rows),
        args.out,
    )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
