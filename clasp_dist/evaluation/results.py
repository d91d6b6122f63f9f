"""What the metric reads and returns: ground-truth / prediction segment tables and the scores of one evaluation.

:class:`Segments` is the validated columnar input of :func:`~clasp_dist.evaluation.metric.evaluate_detection`
(the algorithm); :class:`DetectionResult` is its output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


class EvaluationInputError(ValueError):
    """Invalid ground truth or predictions (names the video, the field and the index)."""


# ---------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Segments:
    """Column store of temporal segments (ground truth or predictions), validated on construction.

    ``videos`` is the universe of videos (for ground truth: every video of the split, including those
    without annotations); segment ``i`` belongs to ``videos[video_index[i]]``. Ground truth carries
    score 1. ``class_names[label]`` names a label; ``None`` for predictions means "the ground
    truth's class list". ``info`` holds counts and hints from readers (e.g. ``duplicates_dropped``).
    """

    videos: tuple[str, ...]
    video_index: np.ndarray  # [N] int64 into videos
    t_start: np.ndarray  # [N] float64 seconds
    t_end: np.ndarray  # [N] float64 seconds
    label: np.ndarray  # [N] int64 class ids
    score: np.ndarray  # [N] float64
    class_names: tuple[str, ...] | None = None
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        n = len(self.video_index)
        for name in ("t_start", "t_end", "label", "score"):
            if len(getattr(self, name)) != n:
                raise EvaluationInputError(f"Segments.{name} has {len(getattr(self, name))} rows, video_index has {n}")
        if len(set(self.videos)) != len(self.videos):
            raise EvaluationInputError("Segments.videos contains a video id twice")
        if n and (self.video_index.min() < 0 or self.video_index.max() >= len(self.videos)):
            raise EvaluationInputError("Segments.video_index points outside Segments.videos")
        _check_finite_and_ordered(self)
        if n and self.label.min() < 0:
            i = int(np.argmin(self.label))
            raise EvaluationInputError(
                f"segment {i} of video '{self.video_of(i)}': label {int(self.label[i])} is not a class id (negative)"
            )

    def __len__(self) -> int:
        return len(self.video_index)

    def video_of(self, i: int) -> str:
        """Video id of segment i."""
        return self.videos[int(self.video_index[i])]

    @property
    def video_ids(self) -> list[str]:
        """Video id of every segment, [N]."""
        return [self.videos[i] for i in self.video_index]

    @classmethod
    def from_arrays(
        cls,
        video_ids: Sequence[str],
        t_start,
        t_end,
        label,
        score=None,
        class_names: Sequence[str] | None = None,
        videos: Iterable[str] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> Segments:
        """Build from per-segment columns; ``videos`` (the universe) defaults to the ids that occur."""
        universe = list(dict.fromkeys(videos)) if videos is not None else []
        position = {v: i for i, v in enumerate(universe)}
        for v in video_ids:
            if v not in position:
                if videos is not None:
                    raise EvaluationInputError(f"segment on video '{v}', which is not in the given videos")
                position[v] = len(universe)
                universe.append(v)
        index = np.fromiter((position[v] for v in video_ids), dtype=np.int64, count=len(video_ids))  # [N]
        n = len(index)
        score_arr = np.ones(n) if score is None else _float_column(score, "score", n)
        return cls(
            videos=tuple(universe),
            video_index=index,
            t_start=_float_column(t_start, "t_start", n),
            t_end=_float_column(t_end, "t_end", n),
            label=_int_column(label, n),
            score=score_arr,
            class_names=tuple(class_names) if class_names is not None else None,
            info=dict(info or {}),
        )

    @classmethod
    def from_records(
        cls,
        records: Iterable[Mapping[str, Any]],
        class_names: Sequence[str] | None = None,
        videos: Iterable[str] | None = None,
    ) -> Segments:
        """Build from dicts ``video_id, label (int), t_start, t_end[, score]`` (the decoder's output)."""
        records = list(records)
        for i, r in enumerate(records):
            missing = [k for k in ("video_id", "label", "t_start", "t_end") if k not in r]
            if missing:
                raise EvaluationInputError(f"record {i} (video '{r.get('video_id')}') lacks {missing}")
        has_score = any("score" in r for r in records)
        if has_score and not all("score" in r for r in records):
            i = next(i for i, r in enumerate(records) if "score" not in r)
            raise EvaluationInputError(f"record {i} (video '{records[i]['video_id']}') lacks 'score'")
        return cls.from_arrays(
            [str(r["video_id"]) for r in records],
            [r["t_start"] for r in records],
            [r["t_end"] for r in records],
            [r["label"] for r in records],
            [r["score"] for r in records] if has_score else None,
            class_names=class_names,
            videos=videos,
        )

    def to_records(self) -> list[dict]:
        """Inverse of from_records (videos without segments are not represented)."""
        return [
            dict(video_id=self.videos[v], label=int(c), t_start=float(s), t_end=float(e), score=float(p))
            for v, c, s, e, p in zip(self.video_index, self.label, self.t_start, self.t_end, self.score)
        ]

    def select(self, mask: np.ndarray) -> Segments:
        """Segments where mask [N] is True, same video universe and classes."""
        return dataclasses.replace(
            self,
            video_index=self.video_index[mask],
            t_start=self.t_start[mask],
            t_end=self.t_end[mask],
            label=self.label[mask],
            score=self.score[mask],
        )

    def restrict_to_videos(self, video_ids: Iterable[str]) -> Segments:
        """Only the given videos (all of which must be in the universe), in the given order."""
        wanted = list(dict.fromkeys(video_ids))
        position = {v: i for i, v in enumerate(self.videos)}
        missing = [v for v in wanted if v not in position]
        if missing:
            raise EvaluationInputError(
                f"{len(missing)} requested video(s) are not in the ground truth, e.g. {missing[:3]}"
            )
        old_to_new = np.full(len(self.videos), -1, dtype=np.int64)  # [V_old]
        old_to_new[[position[v] for v in wanted]] = np.arange(len(wanted))
        new_index = old_to_new[self.video_index]  # [N]
        keep = new_index >= 0
        kept = self.select(keep)
        return dataclasses.replace(kept, videos=tuple(wanted), video_index=new_index[keep])


def _float_column(values, name: str, n: int) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)  # [N]
    except (TypeError, ValueError) as exc:
        raise EvaluationInputError(f"{name} values are not numbers: {exc}") from None
    if len(arr) != n:
        raise EvaluationInputError(f"{name} has {len(arr)} values for {n} segments")
    return arr


def _int_column(values, n: int) -> np.ndarray:
    arr = np.asarray(values).reshape(-1)  # [N]
    if n and not np.issubdtype(arr.dtype, np.integer):
        bad = [
            i for i, v in enumerate(arr.tolist()) if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool))
        ]
        if bad:
            raise EvaluationInputError(
                f"label of segment {bad[0]} is {arr[bad[0]]!r}, not an integer class id "
                "(class names are converted by clasp_dist.evaluation.formats)"
            )
    return arr.astype(np.int64) if n else np.zeros(0, dtype=np.int64)


def _check_finite_and_ordered(seg: Segments) -> None:
    """NaN/inf in any float column or t_end < t_start -> error naming segment index, video and field."""
    for name in ("t_start", "t_end", "score"):
        col = getattr(seg, name)
        bad = np.flatnonzero(~np.isfinite(col))
        if len(bad):
            i = int(bad[0])
            raise EvaluationInputError(
                f"segment {i} of video '{seg.video_of(i)}': {name} is {col[i]} "
                f"({len(bad)} non-finite {name} value(s) in total)"
            )
    bad = np.flatnonzero(seg.t_end < seg.t_start)
    if len(bad):
        i = int(bad[0])
        raise EvaluationInputError(
            f"segment {i} of video '{seg.video_of(i)}': t_end {seg.t_end[i]} < t_start "
            f"{seg.t_start[i]} ({len(bad)} such segment(s))"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class DetectionResult:
    """Scores of one evaluation. mAP and recall are fractions in [0, 1]."""

    tiou_thresholds: np.ndarray  # [T]
    mAP: np.ndarray  # [T] mean AP over classes with ground truth
    average: float  # mean of mAP over thresholds
    ap: np.ndarray  # [T, C] per-class AP, NaN for classes without ground truth
    recall: dict[str, np.ndarray]  # {"1x": [T], "5x": [T]} mean Recall@kx over classes with ground truth
    class_recall: dict[str, np.ndarray]  # {"1x": [T, C], ...} NaN for classes without ground truth
    class_names: tuple[str, ...]
    num_gt: np.ndarray  # [C] ground-truth segments per class
    num_videos: int  # evaluated videos
    num_predictions: int  # predictions that entered the metric (after the policies)
    warnings: dict[str, int]  # WARNING_KEYS -> count
    ignored_unknown_videos: bool = False  # True when unknown-video predictions were dropped (opt-in), not scored

    @property
    def classes_with_gt(self) -> np.ndarray:
        """[C] bool."""
        return self.num_gt > 0

    def map_at(self, threshold: float) -> float:
        """mAP at the threshold closest to the given one (must be within 1e-6)."""
        i = int(np.argmin(np.abs(self.tiou_thresholds - threshold)))
        if abs(self.tiou_thresholds[i] - threshold) > 1e-6:
            raise KeyError(f"threshold {threshold} was not evaluated ({self.tiou_thresholds.tolist()})")
        return float(self.mAP[i])
