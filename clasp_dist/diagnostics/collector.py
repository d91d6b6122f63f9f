"""Pooling a model's outputs over videos into the diagnostic figures (see the package docstring)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .stats import average_precision, class_mean_ap, roc_auc
from .truth import CATEGORIES, VideoTruth


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
        return {
            "videos": self.videos,
            "videos_with_distractors": self.videos_with_distractors,
            "figures": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.figures.items()},
        }


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def class_signal(logits_a: torch.Tensor, logits_v: torch.Tensor) -> np.ndarray:
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
        self.counts = {
            "videos": 0,
            "with_distractors": 0,
            "segments": 0,
            "anchors": 0,
            "anchors_event": 0,
            "anchors_distractor": 0,
            "segments_anchored": 0,
        }
        self.has_agreement = self.has_anchors = self.has_refined = False

    def add(self, out, mask: torch.Tensor, labels: torch.Tensor, truths: list[VideoTruth]) -> None:
        self.has_agreement = out.agreement is not None
        self.has_anchors = out.anchor_mask is not None
        self.has_refined = out.refined
        fa, fv, fva, fvv = out.final()
        self.video_scores["base"].append(class_signal(out.video_a, out.video_v))  # [B, C]
        self.video_scores["final"].append(class_signal(fva, fvv))
        self.video_labels.append(labels.cpu().numpy() > 0.5)
        for i, truth in enumerate(truths):
            n = int(mask[i].sum())
            self.counts["videos"] += 1
            self.counts["with_distractors"] += truth.distractor is not None
            self.counts["segments"] += len(truth.segment_steps)
            heads = {"base": class_signal(out.cas_a[i, :n], out.cas_v[i, :n])}  # [T, C]
            if self.has_refined:
                heads["final"] = class_signal(fa[i, :n], fv[i, :n])
            self._add_signals(heads, truth)
            if self.has_agreement:
                self._add_meae(
                    out.agreement[i, :n].float().cpu().numpy(), out.anchor_score[i, :n].float().cpu().numpy(), truth
                )
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
        labelled = truth.labelled_distractor  # [T] bool or None, built once for both scores
        for name, values in (("agreement", agreement), ("alpha", alpha)):
            self.pool.add(f"{name}/event", values[truth.event])
            background = ~truth.event
            if truth.distractor is not None:
                self.pool.add(f"{name}/distractor", values[truth.distractor])
                self.pool.add(f"{name}/labelled_distractor", values[labelled])
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
            f[f"{head}.step_ap"] = average_precision(
                self.pool.get(f"{head}/signal"), self.pool.get(f"{head}/is_event") > 0
            )
            f[f"{head}.event_vs_distractor_auc"] = roc_auc(
                self.pool.get(f"{head}/on_class_event"), self.pool.get(f"{head}/on_class_distractor")
            )
            coverage = self.pool.get(f"{head}/coverage")
            f[f"{head}.segments_below_floor"] = _mean(coverage == 0.0)
            f[f"{head}.segment_coverage"] = _mean(coverage)
            f[f"{head}.leak_outside"] = _mean(self.pool.get(f"{head}/leak"))
        if self.has_agreement:
            for name in ("agreement", "alpha"):
                for cat in CATEGORIES:
                    f[f"meae.{name}_mean_{cat}"] = _mean(self.pool.get(f"{name}/{cat}"))
            for name in ("agreement", "alpha"):
                for other in ("distractor", "labelled_distractor", "background"):
                    f[f"meae.{name}_auc_event_vs_{other}"] = roc_auc(
                        self.pool.get(f"{name}/event"), self.pool.get(f"{name}/{other}")
                    )
        if self.has_anchors:
            f["csai.anchors_per_video"] = c["anchors"] / max(1, c["videos"])
            f["csai.anchor_precision"] = c["anchors_event"] / c["anchors"] if c["anchors"] else float("nan")
            f["csai.anchors_on_distractors"] = (
                c["anchors_distractor"] / c["anchors"] if c["anchors"] and c["with_distractors"] else float("nan")
            )
            f["csai.chance_precision"] = _mean(self.pool.get("steps_event"))
            f["csai.segments_anchored"] = c["segments_anchored"] / c["segments"] if c["segments"] else float("nan")
        return Diagnostics(c["videos"], c["with_distractors"], f)
