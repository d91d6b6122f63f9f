"""Segment-level detection mAP with the semantics of ActivityNet's official evaluation.

The definition (ActivityNet ``Evaluation/eval_detection.py``, as used unchanged by ActionFormer and
UnAV) for one class and one tIoU threshold:

1. Ground truth: every segment of that class in the evaluated videos; ``npos`` is their number.
2. Predictions of that class are ranked by descending score.
3. Each prediction, in rank order, visits the ground-truth segments *of its own video* in order of
   descending tIoU with it, skips those already matched, and stops at the first one whose tIoU is
   below the threshold. The first unmatched one at or above the threshold is matched (true positive);
   otherwise the prediction is a false positive. Predictions on a video without ground truth of that
   class are false positives. Greedy, not an optimal assignment.
4. Precision/recall after each rank; AP is the area under the interpolated curve (precision made
   monotone from the right, ``interpolated_prec_rec`` of the VOC 2011 devkit).
5. mAP is the mean AP over the classes that have ground truth; a class with ground truth and no
   predictions scores 0. A video without predictions contributes only misses.

Recall@kx (ActionFormer's ``compute_topkx_recall_detection``): for each class and each video with
``n`` ground-truth segments of it, take that video's top ``k * n`` predictions of the class by score;
a ground-truth segment is recalled if any of them reaches the threshold (no one-to-one matching).
Recall of a class = recalled / npos; the reported value is the mean over classes with ground truth.

Ties (``tie_break``). The official code sorts with ``np.argsort(score)[::-1]`` (and the ground truth
of a video with ``np.argsort(tiou)[::-1]``). numpy's default sort is not stable and, on CPUs with
SIMD sorting, orders ties differently from platform to platform, so the official tie order is not
a well-defined rule. ``"stable"`` (default) is deterministic: equal scores keep input order, equal
tIoU prefers the earlier ground-truth segment (input order). ``"official"`` replays the literal
numpy calls on the same per-class / per-video arrays in input order, which reproduces the official
script exactly on the same numpy build (slower: the ground-truth order is computed per prediction).

Inputs the official script meets too, handled as it does (docs/evaluation.md), always counted in ``warnings``:
- a prediction on a video that is not in the evaluated ground truth (``unknown_video``): a false
  positive for its class, as the official ``get_group`` miss; ``ignore_unknown_videos=True`` drops
  them instead (opt-in, not the official number);
- a prediction of a label with no ground truth in the evaluated videos (``class_without_gt``,
  including labels outside the class list that a reader counted in ``info["unknown_labels"]``):
  ignored, as ActionFormer/UnAV do; it could not change any AP that enters the mean;
- no cap on predictions per video (the decoder caps at ``decode.max_segments``);
  ``max_per_video=N`` keeps only the top N of each video by score (opt-in, ``predictions_over_cap``);
- a video of the ground truth without any prediction (``videos_without_predictions``): all its
  segments are misses.

The one departure: a prediction and a ground-truth segment that both have zero length have tIoU 1 if
they coincide, else 0 (the official formula gives 0/0 = NaN, which it counts as a match anywhere in
the video).

Everything is vectorised: the tIoU of every prediction with every ground-truth segment of its
(video, class) pair in one flat array, the greedy matching advanced one rank at a time for all pairs
and all thresholds at once, AP per class from cumulative sums. No Ray, no pandas.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from ..config.schema import DecodeConfig
from ..limits import MAX_TIOU_THRESHOLDS, quote
from .results import DetectionResult, EvaluationInputError, Segments

log = logging.getLogger(__name__)

TieBreak = Literal["stable", "official"]

UNAV100_TIOU: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.1, 0.9, 9))
"""UnAV-100 protocol thresholds, the same floats as the official np.linspace(0.1, 0.9, 9)."""
ANET_TIOU: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
"""ActivityNet 1.3 thresholds, the same floats as the official np.linspace(0.5, 0.95, 10)."""
MAX_PREDICTIONS_PER_VIDEO = DecodeConfig.max_segments
"""What the decoder keeps per video (docs/evaluation.md); the evaluator applies no cap unless asked (max_per_video)."""
TOP_KX = (1, 5)
"""Recall@kx values reported."""

WARNING_KEYS = (
    "unknown_video",
    "unknown_labels",
    "class_without_gt",
    "predictions_over_cap",
    "videos_without_predictions",
)
"""Counted warnings in DetectionResult.warnings (number of predictions; videos for the last).
``unknown_labels`` (labels outside the class list, dropped by the reader) is part of
``class_without_gt``."""


# ---------------------------------------------------------------------------------------------
# Thresholds
# ---------------------------------------------------------------------------------------------


def parse_tiou_thresholds(text: str) -> tuple[float, ...]:
    """``"START:STOP:STEP"`` (STOP inclusive, via np.linspace like the official scripts, so
    ``0.5:0.95:0.05`` gives 10 values) or a comma list ``"0.3,0.5,0.7"``."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if step <= 0 or stop < start:
                raise ValueError
            count = round((stop - start) / step) + 1
            if count > MAX_TIOU_THRESHOLDS:
                raise EvaluationInputError(
                    f"tIoU range {quote(text)} gives {count} thresholds, over the bound of {MAX_TIOU_THRESHOLDS}"
                )
            if abs(start + (count - 1) * step - stop) > 1e-6 * max(1.0, abs(step)):
                raise EvaluationInputError(f"tIoU range '{text}': STOP is not START + k * STEP")
            values = tuple(float(v) for v in np.linspace(start, stop, count))
        else:
            values = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise EvaluationInputError(
            f"cannot parse tIoU thresholds '{text}': use START:STOP:STEP (e.g. 0.1:0.9:0.1) "
            "or a comma list (e.g. 0.3,0.5,0.7)"
        ) from None
    return validate_thresholds(values)


def validate_thresholds(thresholds: Iterable[float]) -> tuple[float, ...]:
    """Non-empty, finite, each in [0, 1]."""
    values = tuple(float(t) for t in thresholds)
    if len(values) > MAX_TIOU_THRESHOLDS:
        raise EvaluationInputError(f"{len(values)} tIoU thresholds, over the bound of {MAX_TIOU_THRESHOLDS}")
    if not values or not all(math.isfinite(t) and 0.0 <= t <= 1.0 for t in values):
        raise EvaluationInputError(f"tIoU thresholds must be a non-empty list of values in [0, 1], got {values}")
    return values


def format_threshold(t: float) -> str:
    """JSON/table key of a threshold: 0.30000000000000004 -> '0.3', 0.55 -> '0.55'."""
    return f"{round(float(t), 6):g}"


# ---------------------------------------------------------------------------------------------
# tIoU and interpolated AP
# ---------------------------------------------------------------------------------------------


def segment_tiou(pred_start, pred_end, gt_start, gt_end) -> np.ndarray:
    """Temporal IoU, broadcasting; the same floating-point operations as the official segment_iou.

    Both zero-length: 1 where they coincide, else 0 (official: NaN).
    """
    inter = (np.minimum(pred_end, gt_end) - np.maximum(pred_start, gt_start)).clip(0)
    union = (gt_end - gt_start) + (pred_end - pred_start) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        tiou = inter / union
    degenerate = union <= 0
    if np.any(degenerate):
        same_point = (np.asarray(pred_start) == np.asarray(gt_start)) & degenerate
        tiou = np.where(degenerate, np.where(same_point, 1.0, 0.0), tiou)
    return tiou


def interpolated_average_precision(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """VOC-2011 interpolated AP per row: precision [R, N], recall [R, N] -> [R].

    Precision is made monotone from the right; the area sums precision over the points where recall
    changes (padding: precision 0 at both ends, recall 0 at the start and 1 at the end).
    """
    rows = precision.shape[0]
    mprec = np.hstack([np.zeros((rows, 1)), precision, np.zeros((rows, 1))])  # [R, N+2]
    mrec = np.hstack([np.zeros((rows, 1)), recall, np.ones((rows, 1))])  # [R, N+2]
    mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]  # [R, N+2] monotone from the right
    step = mrec[:, 1:] - mrec[:, :-1]  # [R, N+1]
    return np.where(step != 0, step * mprec[:, 1:], 0.0).sum(axis=1)  # [R]


# ---------------------------------------------------------------------------------------------
# The evaluation
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Aligned:
    """Predictions after the policies, as arrays indexed into the ground truth's videos."""

    vid: np.ndarray  # [P] int64 ground-truth video index
    label: np.ndarray  # [P] int64
    t_start: np.ndarray  # [P]
    t_end: np.ndarray  # [P]
    score: np.ndarray  # [P]


def evaluate_detection(
    ground_truth: Segments,
    predictions: Segments,
    tiou_thresholds: Iterable[float] = UNAV100_TIOU,
    video_ids: Iterable[str] | None = None,
    *,
    top_kx: Sequence[int] = TOP_KX,
    max_per_video: int | None = None,
    ignore_unknown_videos: bool = False,
    tie_break: TieBreak = "stable",
) -> DetectionResult:
    """Segment mAP (ActivityNet semantics) and Recall@kx of ``predictions`` against ``ground_truth``.

    ``video_ids`` restricts the evaluation to these ground-truth videos (default: all videos of the
    ground truth, including those without annotations); predictions on other videos are then
    unknown videos. ``max_per_video`` and ``ignore_unknown_videos`` are opt-in departures from the
    official number. See the module docstring for the semantics.
    """
    thresholds = np.asarray(validate_thresholds(tiou_thresholds))  # [T]
    if max_per_video is not None and max_per_video < 1:
        raise EvaluationInputError(f"max_per_video must be >= 1 or None, got {max_per_video}")
    if tie_break not in ("stable", "official"):
        raise EvaluationInputError(f"tie_break must be 'stable' or 'official', got {tie_break!r}")
    class_names = _shared_class_names(ground_truth, predictions)
    if video_ids is not None:
        ground_truth = ground_truth.restrict_to_videos(video_ids)
    num_classes = len(class_names)
    num_gt = np.bincount(ground_truth.label, minlength=num_classes)  # [C]
    if not num_gt.any():
        raise EvaluationInputError("the ground truth has no segment in the evaluated videos: nothing to score")

    warnings = dict.fromkeys(WARNING_KEYS, 0)
    preds, num_videos = _align_predictions(
        ground_truth, predictions, num_gt, max_per_video, ignore_unknown_videos, warnings
    )
    gt = _sorted_ground_truth(ground_truth, num_videos)
    order = _rank_predictions_per_class(preds, num_classes, tie_break)  # [P]
    preds = _Aligned(*(getattr(preds, f.name)[order] for f in dataclasses.fields(_Aligned)))
    pairs = _pair_with_ground_truth(preds, gt, num_videos, tie_break, order, float(thresholds.min()))

    tp = _greedy_match(pairs, gt["count"], thresholds)  # [P, T] bool
    ap = _average_precision_per_class(preds.label, tp, num_gt)  # [T, C]
    class_recall = {f"{k}x": _topkx_recall_per_class(pairs, gt, num_gt, thresholds, k) for k in top_kx}
    has_gt = num_gt > 0  # [C]

    predicted = {predictions.videos[i] for i in np.unique(predictions.video_index)}
    with_gt = {ground_truth.videos[i] for i in np.unique(ground_truth.video_index)}
    warnings["videos_without_predictions"] = len(with_gt - predicted)
    _log_warnings(warnings, max_per_video, ignore_unknown_videos)

    mean_ap = ap[:, has_gt].mean(axis=1)  # [T]
    return DetectionResult(
        tiou_thresholds=thresholds,
        mAP=mean_ap,
        average=float(mean_ap.mean()),
        ap=ap,
        recall={k: r[:, has_gt].mean(axis=1) for k, r in class_recall.items()},
        class_recall=class_recall,
        class_names=class_names,
        num_gt=num_gt,
        num_videos=len(ground_truth.videos),
        num_predictions=len(preds.vid),
        warnings=warnings,
        ignored_unknown_videos=ignore_unknown_videos,
    )


def _shared_class_names(ground_truth: Segments, predictions: Segments) -> tuple[str, ...]:
    if ground_truth.class_names is None:
        raise EvaluationInputError("the ground truth needs class_names")
    if predictions.class_names is not None and tuple(predictions.class_names) != tuple(ground_truth.class_names):
        raise EvaluationInputError(
            f"predictions and ground truth use different class lists ({len(predictions.class_names)} vs "
            f"{len(ground_truth.class_names)} classes, or a different order)"
        )
    if len(ground_truth) and ground_truth.label.max() >= len(ground_truth.class_names):
        i = int(np.argmax(ground_truth.label))
        raise EvaluationInputError(
            f"ground-truth segment {i} of video '{ground_truth.video_of(i)}': label "
            f"{int(ground_truth.label[i])} is not a class id (0..{len(ground_truth.class_names) - 1})"
        )
    return tuple(ground_truth.class_names)


def _align_predictions(
    gt: Segments,
    preds: Segments,
    num_gt: np.ndarray,
    max_per_video: int | None,
    ignore_unknown_videos: bool,
    warnings: dict[str, int],
) -> tuple[_Aligned, int]:
    """Map prediction videos onto ground-truth video indices; a video unknown to the ground truth gets
    an index of its own after them (no ground truth there: its predictions are false positives), or
    is dropped with ``ignore_unknown_videos``. Then: more than max_per_video on a video -> keep the
    top by score; label without ground truth -> drop. Input order is preserved (it decides ties).
    Returns the predictions and the size of the video index space."""
    gt_position = {v: i for i, v in enumerate(gt.videos)}
    unknown = [v for v in preds.videos if v not in gt_position]
    position = {**gt_position, **{v: len(gt.videos) + k for k, v in enumerate(unknown)}}
    num_videos = len(gt.videos) + len(unknown)
    video_map = np.array([position[v] for v in preds.videos], dtype=np.int64)  # [V_pred]
    vid = video_map[preds.video_index] if len(preds) else np.zeros(0, dtype=np.int64)  # [P]
    is_unknown = vid >= len(gt.videos)  # [P]
    warnings["unknown_video"] = int(is_unknown.sum())
    keep = ~is_unknown if ignore_unknown_videos else np.ones(len(vid), dtype=bool)  # [P]
    warnings["unknown_labels"] = int(preds.info.get("unknown_labels", 0))

    if max_per_video is not None and keep.any() and np.bincount(vid[keep]).max() > max_per_video:
        idx = np.flatnonzero(keep)  # [P_kept]
        by_video = idx[np.lexsort((-preds.score[idx], vid[idx]))]  # [P_kept] video, then score desc (stable)
        video_sorted = vid[by_video]
        first_of_video = np.searchsorted(video_sorted, video_sorted, side="left")  # [P_kept]
        rank_in_video = np.arange(len(by_video)) - first_of_video  # [P_kept]
        over = by_video[rank_in_video >= max_per_video]
        keep[over] = False
        warnings["predictions_over_cap"] = int(len(over))

    label_has_gt = np.zeros(len(preds), dtype=bool)  # [P] labels past the class list have no ground truth
    in_list = preds.label < len(num_gt)
    label_has_gt[in_list] = num_gt[preds.label[in_list]] > 0
    no_gt_class = keep & ~label_has_gt  # [P]
    warnings["class_without_gt"] = int(no_gt_class.sum()) + warnings["unknown_labels"]
    keep &= ~no_gt_class
    return _Aligned(
        vid=vid[keep],
        label=preds.label[keep],
        t_start=preds.t_start[keep],
        t_end=preds.t_end[keep],
        score=preds.score[keep],
    ), num_videos


def _sorted_ground_truth(gt: Segments, num_videos: int) -> dict[str, Any]:
    """Ground truth sorted by (class, video), input order inside a pair; pair keys for lookup."""
    order = np.lexsort((gt.video_index, gt.label))  # [G] stable
    label, vid = gt.label[order], gt.video_index[order]
    key = label * num_videos + vid  # [G] sorted
    return dict(key=key, t_start=gt.t_start[order], t_end=gt.t_end[order], label=label, count=len(key))


def _rank_predictions_per_class(preds: _Aligned, num_classes: int, tie_break: TieBreak) -> np.ndarray:
    """Permutation [P] that groups predictions by class, each class in descending score order."""
    if tie_break == "stable":
        by_score = np.argsort(-preds.score, kind="stable")  # [P] ties keep input order
        label_key = preds.label[by_score].astype(np.int16 if num_classes < 2**15 else np.int64)  # radix sort
        return by_score[np.argsort(label_key, kind="stable")]  # [P] class, then score descending
    parts = []
    for c in np.unique(preds.label):
        idx = np.flatnonzero(preds.label == c)  # input order, as the official per-class DataFrame
        parts.append(idx[np.argsort(preds.score[idx])[::-1]])  # the official call, ties included
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _pair_with_ground_truth(
    preds: _Aligned,
    gt: dict[str, Any],
    num_videos: int,
    tie_break: TieBreak,
    input_position: np.ndarray,
    min_threshold: float,
) -> dict[str, Any]:
    """For each prediction whose (video, class) pair has ground truth: its tIoU with those segments
    (flat: one entry per prediction x segment of its pair), its rank among the pair's predictions,
    and the segments the greedy step may visit, in visiting order, as a padded [M, W] table that keeps
    only segments reachable at the lowest threshold (W is small: a few overlapping segments).

    Rows are the matchable predictions only (``rows`` indexes into preds), grouped by pair, each pair
    in class-rank order. ``input_position`` [P] is each prediction's input position (official ties).
    """
    key = preds.label * num_videos + preds.vid  # [P]
    first = np.searchsorted(gt["key"], key, side="left")  # [P]
    count = np.searchsorted(gt["key"], key, side="right") - first  # [P] ground truth in the pair
    rows = np.flatnonzero(count > 0)  # [M] matchable, in class-rank order
    rows = rows[np.argsort(key[rows], kind="stable")]  # [M] grouped by pair, rank order inside
    pair_key, first, count = key[rows], first[rows], count[rows]  # [M]
    pair_start = np.searchsorted(pair_key, pair_key, side="left")  # [M]
    rank = np.arange(len(rows)) - pair_start  # [M] rank inside its pair

    row_offset = np.cumsum(count) - count  # [M] first flat entry of each row
    flat_row = np.repeat(np.arange(len(rows)), count)  # [F]
    flat_gt = first[flat_row] + (np.arange(len(flat_row)) - row_offset[flat_row])  # [F] into sorted ground truth
    flat_tiou = segment_tiou(
        preds.t_start[rows][flat_row], preds.t_end[rows][flat_row], gt["t_start"][flat_gt], gt["t_end"][flat_gt]
    )  # [F]
    visit = _visiting_order(flat_tiou, flat_row, count, row_offset, tie_break)  # [F] permutation
    tiou_visit, gt_visit = _reachable_table(
        flat_tiou[visit], flat_gt[visit], flat_row, row_offset, len(rows), min_threshold
    )
    recall_rank = (
        rank if tie_break == "stable" else _official_recall_rank(preds.score[rows], input_position[rows], pair_start)
    )
    return dict(
        rows=rows,
        rank=rank,
        recall_rank=recall_rank,
        count=count,
        flat_row=flat_row,
        flat_gt=flat_gt,
        flat_tiou=flat_tiou,
        tiou_visit=tiou_visit,
        gt_visit=gt_visit,
        num_predictions=len(key),
    )


def _visiting_order(
    flat_tiou: np.ndarray, flat_row: np.ndarray, count: np.ndarray, row_offset: np.ndarray, tie_break: TieBreak
) -> np.ndarray:
    """Permutation [F] that sorts each row's entries by descending tIoU (rows stay in place).

    stable: equal tIoU keeps the earlier segment first; official: np.argsort(tiou)[::-1] per row.
    """
    visit = np.arange(len(flat_tiou))  # [F]
    multi = np.flatnonzero(count[flat_row] > 1)  # [F_multi] entries of rows with several segments
    if not len(multi):
        return visit
    if tie_break == "stable":
        visit[multi] = multi[np.lexsort((-flat_tiou[multi], flat_row[multi]))]
        return visit
    for m in np.flatnonzero(count > 1):
        lo, hi = row_offset[m], row_offset[m] + count[m]
        visit[lo:hi] = lo + np.argsort(flat_tiou[lo:hi])[::-1]  # the official call, ties included
    return visit


def _reachable_table(
    tiou_sorted: np.ndarray,
    gt_sorted: np.ndarray,
    flat_row: np.ndarray,
    row_offset: np.ndarray,
    num_rows: int,
    min_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """[M, W] tIoU (-inf padding) and ground-truth index of the segments each row can reach at the
    lowest threshold, in visiting order; W = the largest such count (0 when nothing can match)."""
    reachable = tiou_sorted >= min_threshold  # [F] a prefix of each row (rows are sorted descending)
    position = np.arange(len(flat_row)) - row_offset[flat_row]  # [F] position inside the row
    width = int(position[reachable].max()) + 1 if reachable.any() else 0
    tiou_table = np.full((num_rows, width), -np.inf)  # [M, W]
    gt_table = np.zeros((num_rows, width), dtype=np.int64)  # [M, W]
    tiou_table[flat_row[reachable], position[reachable]] = tiou_sorted[reachable]
    gt_table[flat_row[reachable], position[reachable]] = gt_sorted[reachable]
    return tiou_table, gt_table


def _official_recall_rank(score: np.ndarray, input_position: np.ndarray, pair_start: np.ndarray) -> np.ndarray:
    """Rank [M] inside each pair as the official top-kx recall orders it: np.argsort(score)[::-1] over
    the pair's predictions taken in input order (ties therefore follow numpy, as in the official code)."""
    out = np.empty(len(score), dtype=np.int64)  # [M]
    starts = np.unique(pair_start)
    ends = np.append(starts[1:], len(score))
    for s, e in zip(starts, ends):
        in_input_order = np.argsort(input_position[s:e])  # [n]
        ranked = in_input_order[np.argsort(score[s:e][in_input_order])[::-1]]  # [n] the official call
        out[s + ranked] = np.arange(e - s)
    return out


def _greedy_match(pairs: dict[str, Any], num_gt_total: int, thresholds: np.ndarray) -> np.ndarray:
    """True positives [P, T]: official greedy matching, all pairs and all thresholds at once.

    Step r handles the r-th prediction of every pair (pairs have disjoint ground truth, so one step
    has no conflicts); inside a step each (prediction, threshold) takes the first unmatched segment in
    its visiting order whose tIoU reaches the threshold.
    """
    rows, tiou_visit = pairs["rows"], pairs["tiou_visit"]
    tp_rows = np.zeros((len(rows), len(thresholds)), dtype=bool)  # [M, T]
    if len(rows) and tiou_visit.shape[1]:
        _match_rank_by_rank(pairs["rank"], tiou_visit, pairs["gt_visit"], num_gt_total, thresholds, tp_rows)
    tp = np.zeros((pairs["num_predictions"], len(thresholds)), dtype=bool)  # [P, T]
    tp[rows] = tp_rows
    return tp


def _match_rank_by_rank(
    rank: np.ndarray,
    tiou_visit: np.ndarray,
    gt_visit: np.ndarray,
    num_gt: int,
    thresholds: np.ndarray,
    tp_rows: np.ndarray,
) -> None:
    """Fill tp_rows [M, T] in place; locked [G, T] marks matched ground truth per threshold."""
    locked = np.zeros((num_gt, len(thresholds)), dtype=bool)  # [G, T]
    by_rank = np.argsort(rank, kind="stable")  # [M]
    bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max()) + 2))  # [R+1]
    thr = thresholds[None, None, :]  # [1, 1, T]
    for r in range(len(bounds) - 1):
        sel = by_rank[bounds[r] : bounds[r + 1]]  # [n] one prediction per pair
        gts = gt_visit[sel]  # [n, W]
        free = (tiou_visit[sel][:, :, None] >= thr) & ~locked[gts]  # [n, W, T]
        hit = free.any(axis=1)  # [n, T]
        first = free.argmax(axis=1)  # [n, T]
        chosen = np.take_along_axis(gts, first, axis=1)  # [n, T] ground-truth index
        tp_rows[sel] = hit
        hit_row, hit_t = np.nonzero(hit)
        locked[chosen[hit_row, hit_t], hit_t] = True


def _average_precision_per_class(label: np.ndarray, tp: np.ndarray, num_gt: np.ndarray) -> np.ndarray:
    """AP [T, C] from true positives [P, T] of predictions grouped by class in rank order.

    NaN for classes without ground truth; 0 for classes with ground truth and no predictions.
    """
    num_classes, num_t = len(num_gt), tp.shape[1]
    ap = np.full((num_t, num_classes), np.nan)  # [T, C]
    ap[:, num_gt > 0] = 0.0
    bounds = np.searchsorted(label, np.arange(num_classes + 1))  # [C+1], label is grouped ascending
    for c in np.flatnonzero(num_gt > 0):
        lo, hi = bounds[c], bounds[c + 1]
        if hi == lo:
            continue
        tp_cum = np.cumsum(tp[lo:hi].T, axis=1, dtype=np.float64)  # [T, n]
        fp_cum = np.arange(1, hi - lo + 1, dtype=np.float64)[None, :] - tp_cum  # [T, n]
        precision = tp_cum / (tp_cum + fp_cum)  # [T, n]
        recall = tp_cum / float(num_gt[c])  # [T, n]
        ap[:, c] = interpolated_average_precision(precision, recall)
    return ap


def _topkx_recall_per_class(
    pairs: dict[str, Any], gt: dict[str, Any], num_gt: np.ndarray, thresholds: np.ndarray, k: int
) -> np.ndarray:
    """Recall@kx [T, C]: recalled ground truth / npos, NaN for classes without ground truth."""
    best = np.full(gt["count"], -np.inf)  # [G] best tIoU among its pair's top k*n predictions
    in_top = pairs["recall_rank"] < k * pairs["count"]  # [M]
    use = in_top[pairs["flat_row"]]  # [F]
    np.maximum.at(best, pairs["flat_gt"][use], pairs["flat_tiou"][use])
    recalled = best[:, None] >= thresholds[None, :]  # [G, T]
    hits = np.zeros((len(num_gt), len(thresholds)))  # [C, T]
    np.add.at(hits, gt["label"], recalled.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = hits.T / num_gt[None, :]  # [T, C]
    recall[:, num_gt == 0] = np.nan
    return recall


def _log_warnings(warnings: dict[str, int], max_per_video: int | None, ignore_unknown_videos: bool) -> None:
    text = {
        "unknown_video": "prediction(s) on videos that are not in the evaluated ground truth were "
        + (
            "ignored (--ignore-unknown-videos)"
            if ignore_unknown_videos
            else "scored as false positives (official semantics)"
        ),
        "unknown_labels": "prediction(s) have a label outside the ground truth's class list",
        "class_without_gt": "prediction(s) of labels without ground truth in the evaluated videos were ignored",
        "predictions_over_cap": f"prediction(s) beyond the top {max_per_video} of a video (by score) were dropped",
        "videos_without_predictions": "video(s) with ground truth had no prediction (all their segments are misses)",
    }
    for key, count in warnings.items():
        if count:
            log.warning("evaluation: %d %s", count, text[key])
