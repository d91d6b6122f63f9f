"""Model diagnostics: does each CLASP module do what it claims, measured on the model's own outputs.

For a trained checkpoint and an evaluation split (validation/test ground truth; never the training
split), every step of every video is put in one of three categories from the annotations and, for
the semi-synthetic data, from the generator's own record of where it drew modality-only
distractors (regenerated from the manifest's ``synth`` parameters and checked bit-for-bit against
the shard features in their stored dtype, so a mismatch disables the distractor figures instead of reporting wrong ones):

* ``event``: inside a ground-truth segment;
* ``distractor``: inside a one-stream presence (off-screen sound, silent object, absent class) and
  not inside an event;
* ``background``: everything else.

Figures (all in [0, 1]; pooled over videos):

* **MEAE** (models with agreement): mean agreement s_t and anchor score alpha_t per category, and
  the ROC-AUC of each for event-vs-distractor and event-vs-background steps.
* **CSAI** (models with anchors): the fraction of anchors on events / distractors, the chance rate
  (fraction of steps that are events) and the fraction of ground-truth segments holding an anchor.
* **Localisation signal** sqrt(P_a P_v) of each ground-truth class, from the base heads and (with
  ATP) the refined heads: step-level AP of that class's event steps, the ROC-AUC of event-vs-same-
  class-distractor steps, the fraction of segments whose peak signal stays under the decoder's
  lowest threshold (a segment that can never be proposed), the mean fraction of a segment's steps at or
  above that threshold (completeness) and the fraction of the class's non-event steps above it (leak).
* **Video classification**: class-mean AP of the video score sqrt(p_a p_v), base and final heads.
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch

log = logging.getLogger(__name__)

CATEGORIES = ("event", "distractor", "background")


# ---------------------------------------------------------------------------------------- ranking stats
def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U); NaN if a side is empty."""
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if positive.size == 0 or negative.size == 0:
        return float("nan")
    scores = np.concatenate([positive, negative])
    order = np.argsort(scores, kind="stable")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(scores.size, dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based ranks, averaged over ties
    u = ranks[: positive.size].sum() - positive.size * (positive.size + 1) / 2.0
    return float(u / (positive.size * negative.size))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Non-interpolated AP (mean precision at each positive, ranked by score); NaN without positives."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return float("nan")
    hits = labels[np.argsort(-scores, kind="stable")]
    precision_at = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision_at[hits].sum() / n_pos)


def class_mean_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes with at least one positive of the AP of scores [N, C] against labels [N, C]."""
    aps = [average_precision(scores[:, c], labels[:, c]) for c in range(labels.shape[1]) if labels[:, c].any()]
    return float(np.mean(aps)) if aps else float("nan")


# -------------------------------------------------------------------------------- step categories
@dataclass
class VideoTruth:
    """Where, on one video's step grid, the events and (when known) the distractors are."""

    event: np.ndarray  # [T] bool, any ground-truth segment
    event_by_class: dict[int, np.ndarray]  # class -> [T] bool
    distractor: Optional[np.ndarray] = None  # [T] bool, one-stream presence and not an event
    distractor_by_class: dict[int, np.ndarray] = field(default_factory=dict)  # class -> [T] bool, not that class's event
    segment_steps: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (class, [T] bool) per segment


def covered(centres: np.ndarray, start: float, end: float) -> np.ndarray:
    """[T] bool: step centres inside [start, end]; a span shorter than a step still covers its nearest step."""
    inside = (centres >= start) & (centres <= end)
    if not inside.any() and centres.size:
        inside[int(np.argmin(np.abs(centres - 0.5 * (start + end))))] = True
    return inside


def video_truth(centres: np.ndarray, segments: Iterable, presences: Optional[list] = None) -> VideoTruth:
    """Step categories from ground truth ``(start, end, class)`` and generator presences (or None)."""
    T = centres.size
    event = np.zeros(T, dtype=bool)
    by_class: dict[int, np.ndarray] = {}
    seg_steps = []
    for s, e, c in segments:
        steps = covered(centres, float(s), float(e))
        seg_steps.append((int(c), steps))
        event |= steps
        by_class[int(c)] = by_class.get(int(c), np.zeros(T, dtype=bool)) | steps
    truth = VideoTruth(event, by_class, segment_steps=seg_steps)
    if presences is not None:
        distractor = np.zeros(T, dtype=bool)
        for p in presences:
            if p.kind == "event":
                continue
            span = p.visual or p.audio
            steps = covered(centres, span[0], span[1])
            distractor |= steps
            own = by_class.get(p.cls, np.zeros(T, dtype=bool))
            truth.distractor_by_class[p.cls] = truth.distractor_by_class.get(p.cls, np.zeros(T, dtype=bool)) | (steps & ~own)
        truth.distractor = distractor & ~event
    return truth


# ------------------------------------------------------------------------------- distractor record
class DistractorRecord:
    """Regenerates the generator's presences of a semi-synthetic dataset from its manifest ``synth`` entry.

    `presences(video_id, visual, audio)` returns the list, or None when the dataset is not generated,
    the annotation file differs from the packaged one, or the regenerated features do not equal the
    shard's (each case logged once and counted in `unavailable`)."""

    def __init__(self, synth: Optional[dict]):
        self.reason = ""
        self.unavailable = 0
        self._ready = False
        if not synth:
            self.reason = "not a generated dataset (no synth entry in the manifest)"
            return
        from .data.annotations import load_annotations, packaged_unav100_path
        from .data.grid import Grid
        from .data.synthetic import GENERATOR_VERSION, SynthProfile, make_class_bank

        if synth.get("generator_version") != GENERATOR_VERSION:
            self.reason = f"generator version {synth.get('generator_version')} != {GENERATOR_VERSION}"
            return
        if hashlib.sha256(packaged_unav100_path().read_bytes()).hexdigest() != synth.get("annotations_sha256"):
            self.reason = "generated from an annotation file other than the packaged one"
            return
        prof = dict(synth["profile"])
        prof["grid"] = Grid.from_dict(prof["grid"])
        for key in ("distractor_mix", "distractor_len_s"):
            prof[key] = tuple(prof[key])
        self.profile = SynthProfile(**prof)
        self.seed = int(synth["seed"])
        ann = load_annotations()
        self.videos = {v.video_id: v for videos in ann.splits.values() for v in videos}
        self.bank = make_class_bank(self.profile, len(ann.classes), self.seed)
        self._ready = True

    def presences(self, video_id: str, visual: np.ndarray, audio: np.ndarray) -> Optional[list]:
        from .data.synthetic import synthesize_video

        if not self._ready or video_id not in self.videos:
            self.unavailable += 1
            return None
        v, a, presences = synthesize_video(self.videos[video_id], self.profile, self.bank, self.seed)
        same = (v.shape == visual.shape and a.shape == audio.shape  # compared in the shard's dtype (e.g. float16)
                and np.array_equal(v.astype(visual.dtype), visual) and np.array_equal(a.astype(audio.dtype), audio))
        if not same:
            self.unavailable += 1
            if self.unavailable == 1:
                log.warning("diagnostics: regenerated features of %s differ from the shard's; distractor figures "
                            "skip such videos", video_id)
            return None
        return presences


# ---------------------------------------------------------------------------------------- accumulation
@dataclass
class _Pool:
    """Per-step values collected over videos, flattened at the end."""

    values: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, key: str, array: np.ndarray) -> None:
        self.values.setdefault(key, []).append(np.asarray(array, dtype=np.float64).ravel())

    def get(self, key: str) -> np.ndarray:
        parts = self.values.get(key)
        return np.concatenate(parts) if parts else np.zeros(0)


@dataclass
class Diagnostics:
    """The figures of one checkpoint on one split (see the module docstring); NaN = not applicable."""

    videos: int
    videos_with_distractors: int
    figures: dict[str, float]

    def to_json(self) -> dict:
        return {"videos": self.videos, "videos_with_distractors": self.videos_with_distractors,
                "figures": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.figures.items()}}


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _signal(logits_a: torch.Tensor, logits_v: torch.Tensor) -> np.ndarray:
    """sqrt(P_a P_v), same shape as the logits ([T, C] per-step or [B, C] video scores)."""
    return torch.sqrt(torch.sigmoid(logits_a.float()) * torch.sigmoid(logits_v.float())).cpu().numpy()


class DiagnosticsCollector:
    """Feeds on (batch, model output) pairs; `result()` gives the pooled figures."""

    def __init__(self, num_classes: int, decode_floor: float):
        self.num_classes = num_classes
        self.decode_floor = decode_floor
        self.pool = _Pool()
        self.video_scores: dict[str, list[np.ndarray]] = {"base": [], "final": []}
        self.video_labels: list[np.ndarray] = []
        self.counts = {"videos": 0, "with_distractors": 0, "segments": 0, "anchors": 0, "anchors_event": 0,
                       "anchors_distractor": 0, "segments_anchored": 0}
        self.has_agreement = self.has_anchors = self.has_refined = False

    def add(self, out, mask: torch.Tensor, labels: torch.Tensor, truths: list[VideoTruth]) -> None:
        self.has_agreement = out.agreement is not None
        self.has_anchors = out.anchor_mask is not None
        self.has_refined = out.refined
        fa, fv, fva, fvv = out.final()
        self.video_scores["base"].append(_signal(out.video_a, out.video_v))  # [B, C]
        self.video_scores["final"].append(_signal(fva, fvv))
        self.video_labels.append(labels.cpu().numpy() > 0.5)
        for i, truth in enumerate(truths):
            n = int(mask[i].sum())
            self.counts["videos"] += 1
            self.counts["with_distractors"] += truth.distractor is not None
            self.counts["segments"] += len(truth.segment_steps)
            heads = {"base": _signal(out.cas_a[i, :n], out.cas_v[i, :n])}  # [T, C]
            if self.has_refined:
                heads["final"] = _signal(fa[i, :n], fv[i, :n])
            self._add_signals(heads, truth)
            if self.has_agreement:
                self._add_meae(out.agreement[i, :n].float().cpu().numpy(), out.anchor_score[i, :n].float().cpu().numpy(),
                               truth)
            if self.has_anchors:
                self._add_anchors(out.anchor_mask[i, :n].cpu().numpy(), truth)

    def _add_signals(self, heads: dict[str, np.ndarray], truth: VideoTruth) -> None:
        for head, signal in heads.items():
            for c, steps in truth.event_by_class.items():
                self.pool.add(f"{head}/signal", signal[:, c])
                self.pool.add(f"{head}/is_event", steps)
                distract = truth.distractor_by_class.get(c)
                if distract is not None:
                    self.pool.add(f"{head}/on_class_distractor", signal[distract, c])
                self.pool.add(f"{head}/on_class_event", signal[steps, c])
                self.pool.add(f"{head}/leak", signal[~steps, c] >= self.decode_floor)
            for c, steps in truth.segment_steps:  # share of the segment at or above the floor (0 = never proposed)
                self.pool.add(f"{head}/coverage", [(signal[steps, c] >= self.decode_floor).mean()])

    def _add_meae(self, agreement: np.ndarray, alpha: np.ndarray, truth: VideoTruth) -> None:
        for name, values in (("agreement", agreement), ("alpha", alpha)):
            self.pool.add(f"{name}/event", values[truth.event])
            background = ~truth.event
            if truth.distractor is not None:
                self.pool.add(f"{name}/distractor", values[truth.distractor])
                background &= ~truth.distractor
            self.pool.add(f"{name}/background", values[background])

    def _add_anchors(self, anchors: np.ndarray, truth: VideoTruth) -> None:
        self.counts["anchors"] += int(anchors.sum())
        self.counts["anchors_event"] += int((anchors & truth.event).sum())
        if truth.distractor is not None:
            self.counts["anchors_distractor"] += int((anchors & truth.distractor).sum())
        self.pool.add("steps_event", truth.event)
        for _, steps in truth.segment_steps:
            self.counts["segments_anchored"] += bool((anchors & steps).any())

    def result(self) -> Diagnostics:
        f: dict[str, float] = {}
        labels = np.concatenate(self.video_labels) if self.video_labels else np.zeros((0, self.num_classes), bool)
        c = self.counts
        for head in ("base", "final") if self.has_refined else ("base",):
            scores = np.concatenate(self.video_scores[head]) if self.video_scores[head] else np.zeros(labels.shape)
            f[f"{head}.video_map"] = class_mean_ap(scores, labels)
            f[f"{head}.step_ap"] = average_precision(self.pool.get(f"{head}/signal"), self.pool.get(f"{head}/is_event") > 0)
            f[f"{head}.event_vs_distractor_auc"] = roc_auc(self.pool.get(f"{head}/on_class_event"),
                                                           self.pool.get(f"{head}/on_class_distractor"))
            coverage = self.pool.get(f"{head}/coverage")
            f[f"{head}.segments_below_floor"] = _mean(coverage == 0.0)
            f[f"{head}.segment_coverage"] = _mean(coverage)
            f[f"{head}.leak_outside"] = _mean(self.pool.get(f"{head}/leak"))
        if self.has_agreement:
            for name in ("agreement", "alpha"):
                for cat in CATEGORIES:
                    f[f"meae.{name}_mean_{cat}"] = _mean(self.pool.get(f"{name}/{cat}"))
            for name in ("agreement", "alpha"):
                for other in ("distractor", "background"):
                    f[f"meae.{name}_auc_event_vs_{other}"] = roc_auc(self.pool.get(f"{name}/event"),
                                                                     self.pool.get(f"{name}/{other}"))
        if self.has_anchors:
            f["csai.anchors_per_video"] = c["anchors"] / max(1, c["videos"])
            f["csai.anchor_precision"] = c["anchors_event"] / c["anchors"] if c["anchors"] else float("nan")
            f["csai.anchors_on_distractors"] = (c["anchors_distractor"] / c["anchors"]
                                                if c["anchors"] and c["with_distractors"] else float("nan"))
            f["csai.chance_precision"] = _mean(self.pool.get("steps_event"))
            f["csai.segments_anchored"] = c["segments_anchored"] / c["segments"] if c["segments"] else float("nan")
        return Diagnostics(c["videos"], c["with_distractors"], f)


# ------------------------------------------------------------------------------------------ driver
@dataclass
class _TimelineData:
    """What one video's diagnostic timeline shows."""

    video_id: str
    times: np.ndarray  # [T] step centres, seconds
    truth: VideoTruth
    signals: dict[str, np.ndarray]  # head -> [T, C]
    alpha: Optional[np.ndarray]  # [T]
    anchors: Optional[np.ndarray]  # [T] bool
    class_names: list[str]


def diagnose_checkpoint(checkpoint: str, data_root: Optional[str] = None, split: str = "validation",
                        max_videos: int = 200, out_dir: Optional[str] = None, plot: int = 0,
                        overrides: Iterable[str] = (), progress: bool = True) -> Diagnostics:
    """Run a checkpoint over the first `max_videos` videos of an evaluation split (in this process) and
    measure its modules; with `out_dir`: diagnostics.json, alpha_by_category.png and `plot` timelines."""
    from .data.batch import collate_rows
    from .data.shards import read_manifest
    from .data.source import iter_local_samples
    from .evaluation.distributed import chunks, load_for_evaluation, resolve_data_root

    if split == "train":
        raise ValueError("diagnostics read ground-truth segments, which the train split never gives: "
                         "use validation or test")
    model, cfg, info = load_for_evaluation(checkpoint, overrides)
    root = resolve_data_root(cfg, data_root)
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
        with torch.no_grad():
            out = model(batch.visual, batch.audio, batch.mask, None)
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
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="video", disable=not enabled, leave=False)


def _timeline_data(out, i: int, n: int, video_id: str, times: np.ndarray, truth: VideoTruth, classes) -> _TimelineData:
    signals = {"base": _signal(out.cas_a[i, :n], out.cas_v[i, :n])}
    if out.refined:
        signals["refined"] = _signal(out.cas_a_ref[i, :n], out.cas_v_ref[i, :n])
    alpha = out.anchor_score[i, :n].float().cpu().numpy() if out.anchor_score is not None else None
    anchors = out.anchor_mask[i, :n].cpu().numpy() if out.anchor_mask is not None else None
    return _TimelineData(video_id, times, truth, signals, alpha, anchors, list(classes))


def write_diagnostics(out_dir: Path, result: Diagnostics, collector: DiagnosticsCollector,
                      timelines: list[_TimelineData], checkpoint: str, split: str) -> None:
    from .viz import confined_path, plot_category_histograms, plot_signal_timeline

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "diagnostics.json").write_text(json.dumps(
        {"checkpoint": str(checkpoint), "split": split, **result.to_json()}, indent=1))
    if collector.has_agreement:
        plot_category_histograms(out_dir / "alpha_by_category.png",
                                 {cat: collector.pool.get(f"alpha/{cat}") for cat in CATEGORIES},
                                 xlabel="anchor score alpha_t = s_t e_t", title=f"MEAE anchor score by step category ({split})")
    for t in timelines:
        plot_signal_timeline(confined_path(out_dir / "timelines", t.video_id, ".png"), t.video_id, t.times,
                             events=t.truth.event_by_class, distractors=t.truth.distractor_by_class,
                             signals=t.signals, alpha=t.alpha, anchors=t.anchors, class_names=t.class_names)


def format_figures(result: Diagnostics) -> str:
    """The figures as an aligned two-column text table."""
    width = max(len(k) for k in result.figures) if result.figures else 10
    lines = [f"videos {result.videos} (distractor record for {result.videos_with_distractors})"]
    for key, value in result.figures.items():
        lines.append(f"  {key:<{width}}  {'n/a' if math.isnan(value) else f'{value:.3f}'}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- sweeps
def diagnose_sweep(sweep_dir: str | Path, split: str = "validation", max_videos: int = 200, plot: int = 0,
                   overrides: Iterable[str] = (), progress: bool = True) -> dict[str, dict[str, float]]:
    """Diagnose every finished trial of an ablation sweep (from its results.csv) and average per arm.

    Writes <sweep>/diagnostics/<arm>_seed<k>/ per trial and <sweep>/diagnostics.md (figures x arms,
    mean over seeds); returns {arm: {figure: mean}}."""
    sweep_dir = Path(sweep_dir)
    table = sweep_dir / "results.csv"
    if not table.exists():
        raise FileNotFoundError(f"{table}: no results table (run or finish the sweep first)")
    with open(table, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if not r.get("error") and r.get("trial_id")]
    per_arm: dict[str, list[Diagnostics]] = {}
    for row in rows:
        export = sweep_dir / "trials" / row["trial_id"] / "export"
        name = f"{row['arm'].replace('/', '_')}_seed{row.get('seed', 0)}"
        result = diagnose_checkpoint(str(export), split=split, max_videos=max_videos,
                                     out_dir=str(sweep_dir / "diagnostics" / name), plot=plot,
                                     overrides=overrides, progress=progress)
        per_arm.setdefault(row["arm"], []).append(result)
    means = {arm: _mean_figures(results) for arm, results in per_arm.items()}
    (sweep_dir / "diagnostics.md").write_text(figures_markdown(means, split, max_videos))
    return means


def _mean_figures(results: list[Diagnostics]) -> dict[str, float]:
    keys = dict.fromkeys(k for r in results for k in r.figures)
    return {k: float(np.nanmean([r.figures.get(k, float("nan")) for r in results]))
            if any(not math.isnan(r.figures.get(k, float("nan"))) for r in results) else float("nan") for k in keys}


def figures_markdown(means: dict[str, dict[str, float]], split: str, max_videos: int) -> str:
    """Figures (rows) x arms (columns), mean over seeds, as a Markdown table."""
    arms = list(means)
    keys = list(dict.fromkeys(k for figures in means.values() for k in figures))
    lines = [f"Model diagnostics on the first {max_videos} {split} videos (mean over seeds; n/a = module off).", "",
             "| figure | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for key in keys:
        cells = [means[a].get(key, float("nan")) for a in arms]
        lines.append(f"| {key} | " + " | ".join("n/a" if math.isnan(v) else f"{v:.3f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"
