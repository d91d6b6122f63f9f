"""Diagnose one checkpoint on one evaluation split, in this process; write its figures and plots."""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.batch import collate_rows
from ..data.manifest import read_manifest
from ..data.roots import ensure_dataset
from ..data.split_reader import iter_local_samples
from ..inference.predict import chunks, forward_batch, load_for_evaluation
from .collector import Diagnostics, DiagnosticsCollector, class_signal
from .distractors import DistractorRecord
from .truth import CATEGORIES, VideoTruth, video_truth

log = logging.getLogger(__name__)


@dataclass
class _TimelineData:
    """What one video's diagnostic timeline shows."""

    video_id: str
    times: np.ndarray  # [T] step centres, seconds
    truth: VideoTruth
    signals: dict[str, np.ndarray]  # head -> [T, C]
    alpha: np.ndarray | None  # [T]
    anchors: np.ndarray | None  # [T] bool
    class_names: list[str]


def diagnose_checkpoint(
    checkpoint: str,
    data_root: str | None = None,
    split: str = "validation",
    max_videos: int = 200,
    out_dir: str | None = None,
    plot: int = 0,
    overrides: Iterable[str] = (),
    progress: bool = True,
) -> Diagnostics:
    """Run a checkpoint over the first `max_videos` videos of an evaluation split (in this process) and
    measure its modules; with `out_dir`: diagnostics.json, alpha_by_category.png and `plot` timelines."""
    if split == "train":
        raise ValueError(
            "diagnostics read ground-truth segments, which the train split never gives: use validation or test"
        )
    model, cfg, info = load_for_evaluation(checkpoint, overrides)
    root = ensure_dataset(cfg.data, cfg.storage, root=data_root)
    manifest = read_manifest(root, cfg.storage)
    record = DistractorRecord(manifest.extra.get("synth"))
    if record.reason:
        log.info("diagnostics: no distractor figures: %s", record.reason)
    collector = DiagnosticsCollector(info.num_classes, min(cfg.decode.loc_thresholds))
    timelines: list[_TimelineData] = []
    rows = iter_local_samples(root, split, cfg.data, cfg.storage, include_segments=True, manifest=manifest)
    model.eval()
    bar = _progress(max_videos, progress, f"diagnosing {split}")
    for chunk in chunks(itertools.islice(rows, max_videos), cfg.eval.batch_size):
        batch = collate_rows(chunk, info.num_classes)
        out = forward_batch(model, batch, cfg.deepspeed.bf16)
        truths = []
        for i, row in enumerate(chunk):
            n = int(batch.num_steps[i])
            times = float(batch.offset_s[i]) + float(batch.step_s[i]) * np.arange(n)  # [T]
            presences = record.presences(row["video_id"], np.asarray(row["visual"]), np.asarray(row["audio"]))
            truths.append(video_truth(times, batch.segments[i], presences))
            if len(timelines) < plot:
                timelines.append(_timeline_data(out, i, n, row["video_id"], times, truths[-1], info.classes))
        collector.add(out, batch.mask, batch.labels, truths)
        bar.update(len(chunk))
    bar.close()
    result = collector.result()
    if out_dir:
        write_diagnostics(Path(out_dir), result, collector, timelines, checkpoint, split)
    return result


def _progress(total: int, enabled: bool, desc: str):
    return tqdm(total=total, desc=desc, unit="video", disable=not enabled, leave=False)


def _timeline_data(out, i: int, n: int, video_id: str, times: np.ndarray, truth: VideoTruth, classes) -> _TimelineData:
    signals = {"base": class_signal(out.cas_a[i, :n], out.cas_v[i, :n])}
    if out.refined:
        signals["refined"] = class_signal(out.cas_a_ref[i, :n], out.cas_v_ref[i, :n])
    alpha = out.anchor_score[i, :n].float().cpu().numpy() if out.anchor_score is not None else None
    anchors = out.anchor_mask[i, :n].cpu().numpy() if out.anchor_mask is not None else None
    return _TimelineData(video_id, times, truth, signals, alpha, anchors, list(classes))


def write_diagnostics(
    out_dir: Path,
    result: Diagnostics,
    collector: DiagnosticsCollector,
    timelines: list[_TimelineData],
    checkpoint: str,
    split: str,
) -> None:
    from ..viz import confined_path, plot_category_histograms, plot_signal_timeline

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "diagnostics.json").write_text(
        json.dumps({"checkpoint": str(checkpoint), "split": split, **result.to_json()}, indent=1)
    )
    if collector.has_agreement:
        plot_category_histograms(
            out_dir / "alpha_by_category.png",
            {cat: collector.pool.get(f"alpha/{cat}") for cat in CATEGORIES},
            xlabel="anchor score alpha_t = s_t e_t",
            title=f"MEAE anchor score by step category ({split})",
        )
    for t in timelines:
        plot_signal_timeline(
            confined_path(out_dir / "timelines", t.video_id, ".png"),
            t.video_id,
            t.times,
            events=t.truth.event_by_class,
            distractors=t.truth.distractor_by_class,
            signals=t.signals,
            alpha=t.alpha,
            anchors=t.anchors,
            class_names=t.class_names,
        )


def format_figures(result: Diagnostics) -> str:
    """The figures as an aligned two-column text table."""
    width = max(len(k) for k in result.figures) if result.figures else 10
    lines = [f"videos {result.videos} (distractor record for {result.videos_with_distractors})"]
    for key, value in result.figures.items():
        lines.append(f"  {key:<{width}}  {'n/a' if math.isnan(value) else f'{value:.3f}'}")
    return "\n".join(lines)
