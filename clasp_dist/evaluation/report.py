"""Human and machine reports of a DetectionResult.

Convention (ActionFormer/UnAV): numbers are *fractions* (0..1) in the metrics JSON and
*percentages* in printed tables.

Metrics JSON (``metrics_dict``)::

    {"0.1": mAP, ..., "0.9": mAP, "average": mAP,
     "recall@1x": {"0.1": r, ...}, "recall@5x": {"0.1": r, ...}}

Threshold keys are ``format_threshold(t)`` ("0.3", "0.55"), in evaluation order.
"""

from __future__ import annotations

import os
from typing import Any

from .formats import write_json
from .metric import DetectionResult, format_threshold


def metrics_dict(result: DetectionResult) -> dict[str, Any]:
    """The metrics JSON document (fractions)."""
    out: dict[str, Any] = {format_threshold(t): float(m) for t, m in zip(result.tiou_thresholds, result.mAP)}
    out["average"] = float(result.average)
    for k, values in result.recall.items():
        out[f"recall@{k}"] = {format_threshold(t): float(r) for t, r in zip(result.tiou_thresholds, values)}
    return out


def write_metrics_json(path: str | os.PathLike, result: DetectionResult) -> dict[str, Any]:
    """Write metrics_dict(result) to path (local or fsspec URL) and return it."""
    document = metrics_dict(result)
    write_json(path, document)
    return document


def format_table(result: DetectionResult, title: str | None = None) -> str:
    """Fixed-width table: one row per threshold (mAP, Recall@kx in %), then the average row."""
    recall_keys = list(result.recall)
    header = ["tIoU", "mAP (%)"] + [f"R@{k} (%)" for k in recall_keys]
    rows = [
        [format_threshold(t), f"{100 * m:.2f}"] + [f"{100 * result.recall[k][i]:.2f}" for k in recall_keys]
        for i, (t, m) in enumerate(zip(result.tiou_thresholds, result.mAP))
    ]
    rows.append(["avg", f"{100 * result.average:.2f}"] + [f"{100 * result.recall[k].mean():.2f}" for k in recall_keys])
    widths = [max(len(r[j]) for r in [header] + rows) for j in range(len(header))]
    line = "  ".join("-" * w for w in widths)

    def render(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))

    lines = (
        ([title] if title else []) + [render(header), line] + [render(r) for r in rows[:-1]] + [line, render(rows[-1])]
    )
    classes = int(result.classes_with_gt.sum())
    lines.append(
        f"{classes} classes with ground truth, {int(result.num_gt.sum())} segments, "
        f"{result.num_videos} videos, {result.num_predictions} predictions scored"
    )
    notes = [f"{key}={count}" for key, count in result.warnings.items() if count]
    if notes:
        lines.append("warnings: " + ", ".join(notes))
    return "\n".join(lines)


def coverage_note(
    result: DetectionResult,
    split: str,
    split_videos: int,
    predictions_name: str = "the predictions",
    only_predicted: bool = False,
) -> str:
    """What the numbers include, in words, for each counted case that changes them (empty when none).

    Loud on purpose: scoring a predictions file for a few videos against a whole split is legal (the
    missing videos are misses) but gives a far lower mAP than the same model scored on its own videos.
    ``only_predicted``: the scored videos are the predicted ones (--only-predicted-videos, checkpoint mode).
    """
    w, lines = result.warnings, []
    if w.get("videos_without_predictions", 0) and only_predicted:
        lines.append(
            f"NOTE: {w['videos_without_predictions']} of the {result.num_videos} scored videos have no segment in "
            f"{predictions_name}; all their ground-truth segments count as misses."
        )
    elif w.get("videos_without_predictions", 0):
        lines.append(
            f"NOTE: {w['videos_without_predictions']} of the {split_videos} videos of split '{split}' have ground truth "
            f"but no prediction in {predictions_name}; all their segments count as misses (official protocol). "
            f"If {predictions_name} covers part of the split on purpose, add --only-predicted-videos."
        )
    if w.get("unknown_video", 0):
        how = (
            "dropped (--ignore-unknown-videos)"
            if result.ignored_unknown_videos
            else "each a false positive for its class (official protocol)"
        )
        lines.append(f"NOTE: {w['unknown_video']} prediction(s) are on videos outside split '{split}': {how}.")
    if w.get("class_without_gt", 0):
        lines.append(
            f"NOTE: {w['class_without_gt']} prediction(s) of labels without ground truth in split '{split}' "
            f"were ignored ({w.get('unknown_labels', 0)} of them with a label outside the class list)."
        )
    if w.get("predictions_over_cap", 0):
        lines.append(f"NOTE: {w['predictions_over_cap']} prediction(s) beyond --max-per-video were dropped.")
    return "\n".join(lines)
