"""File formats of the evaluation: annotation JSON, shard meta.json, ActivityNet results JSON.

Ground truth
  * ActivityNet / UnAV annotation JSON ``{"database": {vid: {"subset", "duration", "annotations":
    [{"segment": [s, e], "label": name, "label_id": id}]}}}``, filtered by split. Split names
    ``train``/``validation``/``test`` and ActivityNet's ``training``/``validation``/``testing`` are
    the same splits (either spelling works on either file).
  * Read by the project's one annotation reader, ``clasp_dist.data.annotations``. Class list: the
    file's own ``label_id -> label`` pairs when every annotation has an id (gaps allowed: a subset or a
    user's file), else the sorted label names. Built from the whole file, so it never depends on the
    split; the classes *evaluated* are those with ground truth in the split.
  * Duplicate events (same label, start and end within 1e-3 s of an event already kept in the same
    video) are dropped, as UnAV's loader does, and counted in ``Segments.info["duplicates_dropped"]``.
  * Or built from shard ``meta.json`` dicts (``video_id, duration, segments [[s, e, class_id], ...]``)
    plus the manifest's class list (same duplicate rule).

Predictions
  * ActivityNet results JSON ``{"version", "results": {vid: [{"segment": [s, e], "label": name or
    int id, "score": x}]}, "external_data"}``; the writer stores both ``label`` (name) and
    ``label_id`` so that the official and ActionFormer readers both accept the file. Integer labels
    map through the ground truth's own ``label_id`` pairs. A label that is not a class of the ground
    truth (unknown name, unused id) is ignored and counted (``info["unknown_labels"]``, docs/evaluation.md); a
    label that cannot be a label (negative, fractional, boolean, missing) is an error.

No Ray, no pandas. Sources are local paths, s3:// or gs:// URLs, or already-parsed dicts.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..data import annotations
from ..data.annotations import DUPLICATE_TOLERANCE_S, AnnotationError, Source, drop_duplicate_segments
from ..data.filesystem import is_url, open_url
from ..data.splits import split_name
from ..limits import quote
from .metric import ANET_TIOU, UNAV100_TIOU, EvaluationInputError, Segments

RESULTS_VERSION = "clasp-dist results v1"


def normalise_split(name: str) -> str:
    """'training' -> 'train', 'testing' -> 'test', 'val' -> 'validation'; unknown names are an error."""
    split = split_name(name)
    if split is None:
        raise EvaluationInputError(f"unknown split '{name}' (use train/validation/test or training/testing)")
    return split


def read_json(source: Source) -> Mapping[str, Any]:
    """A parsed JSON document from a dict, a local path or an fsspec URL."""
    with _as_input_errors():
        return annotations.read_document(source)[0]


@contextlib.contextmanager
def _as_input_errors():
    """The annotation reader's errors as EvaluationInputError (same message)."""
    try:
        yield
    except AnnotationError as err:
        raise EvaluationInputError(str(err)) from None


@contextlib.contextmanager
def naming_source(source: Source):
    """Prefix an input error with the file it came from (sources given as paths or URLs). A value of the
    wrong type deep inside (an entry that is not an object, an infinite or huge number) that a reader did not
    name itself is still one EvaluationInputError naming the file."""
    try:
        try:
            yield
        except (TypeError, ValueError, OverflowError, AttributeError, KeyError, IndexError, RecursionError) as exc:
            if isinstance(exc, EvaluationInputError):
                raise
            raise EvaluationInputError(
                f"malformed entry ({type(exc).__name__}: {quote(str(exc), 200)[1:-1]})"
            ) from None
    except EvaluationInputError as err:
        if isinstance(source, Mapping) or str(err).startswith(os.fspath(source)):
            raise
        raise EvaluationInputError(f"{os.fspath(source)}: {err}") from None


def write_json(path: str | os.PathLike, document: Mapping[str, Any]) -> None:
    """Write JSON (floats as Python repr, so numbers round-trip exactly), creating parent folders."""
    path = os.fspath(path)
    if is_url(path):
        with open_url(path, "w", encoding="utf-8") as f:
            json.dump(document, f)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f)


# ---------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------


def class_names_from_annotations(document: Mapping[str, Any]) -> tuple[str, ...]:
    """Class list of an annotation file (``data.annotations.class_table``): by label_id when every
    annotation has one (gaps allowed), else sorted names."""
    with _as_input_errors():
        return annotations.class_table(annotations.database_of(document, "annotation JSON"), "annotation JSON").names


def load_ground_truth(
    source: Source,
    split: str,
    class_names: Sequence[str] | None = None,
    duplicate_tol: float = DUPLICATE_TOLERANCE_S,
) -> Segments:
    """Ground truth of one split of an ActivityNet/UnAV annotation JSON (read by ``data.annotations``).

    ``Segments.videos`` holds every video of the split (also those without annotations);
    ``info`` holds ``duplicates_dropped``, ``split``, ``durations`` {vid: s}, ``label_ids`` (the file's
    label_id of each class, so integer labels in predictions map through the file's own pairs) and
    ``activitynet_subsets`` (True when the file spells its subsets training/testing).
    """
    with naming_source(source), _as_input_errors():
        document, where = annotations.read_document(source)
        wanted = normalise_split(split)
        table = None
        if class_names is not None:
            table = annotations.ClassTable(tuple(class_names), tuple(range(len(class_names))))
        ann = annotations.parse_annotations(document, where, (wanted,), table, duplicate_tol)
        videos = ann.splits[wanted]
        if not videos:
            subsets = sorted(
                {str(v.get("subset", "")).lower() for v in annotations.database_of(document, where).values()}
            )
            raise EvaluationInputError(f"no video of split '{split}' in the annotation JSON (subsets: {subsets})")
        rows = [(v.video_id, s, e, c) for v in videos for s, e, c in v.segments]
        info = dict(
            duplicates_dropped=ann.duplicates_dropped,
            split=wanted,
            label_ids=ann.class_ids,
            durations={v.video_id: v.duration for v in videos},
            activitynet_subsets=ann.activitynet_subsets,
        )
        return _segments_from_rows(rows, ann.classes, [v.video_id for v in videos], info)


def ground_truth_from_metas(
    metas: Iterable[Mapping[str, Any]], class_names: Sequence[str], duplicate_tol: float = DUPLICATE_TOLERANCE_S
) -> Segments:
    """Ground truth from shard ``meta.json`` dicts (evaluation splits carry ``segments``)."""
    videos, durations, rows, dropped = [], {}, [], 0
    num_classes = len(class_names)
    for meta in metas:
        vid = str(meta.get("video_id", ""))
        if not vid:
            raise EvaluationInputError("meta.json without 'video_id'")
        if "segments" not in meta:
            raise EvaluationInputError(f"video '{vid}': meta.json has no 'segments' (a training shard?)")
        segs = []
        for k, seg in enumerate(meta["segments"]):
            if len(seg) != 3 or not 0 <= int(seg[2]) < num_classes:
                raise EvaluationInputError(
                    f"video '{vid}' segment {k}: expected [s, e, class_id < {num_classes}], got {seg}"
                )
            segs.append((float(seg[0]), float(seg[1]), int(seg[2])))
        kept, n_dup = drop_duplicate_segments(segs, duplicate_tol)
        dropped += n_dup
        if vid in durations:
            raise EvaluationInputError(f"video '{vid}' appears twice in the shard metadata")
        videos.append(vid)
        durations[vid] = float(meta.get("duration", float("nan")))
        rows.extend((vid, s, e, c) for s, e, c in kept)
    info = dict(duplicates_dropped=dropped, durations=durations, activitynet_subsets=False)
    return _segments_from_rows(rows, tuple(class_names), videos, info)


def _segments_from_rows(
    rows: list[tuple[str, float, float, int]], names: tuple[str, ...], videos: list[str], info: dict[str, Any]
) -> Segments:
    return Segments.from_arrays(
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        np.array([r[3] for r in rows], dtype=np.int64),
        None,
        class_names=names,
        videos=videos,
        info=info,
    )


def protocol_thresholds(ground_truth: Segments) -> tuple[float, ...]:
    """The dataset's tIoU protocol: ActivityNet 1.3 (200 classes or training/testing subsets) ->
    0.5:0.05:0.95, otherwise UnAV-100's 0.1:0.1:0.9."""
    names = ground_truth.class_names or ()
    if len(names) == 200 or ground_truth.info.get("activitynet_subsets"):
        return ANET_TIOU
    return UNAV100_TIOU


# ---------------------------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------------------------


def load_predictions(source: Source, class_names: Sequence[str], label_ids: Sequence[int] | None = None) -> Segments:
    """Predictions from an ActivityNet results JSON; labels are names or the file's integer ids.

    ``label_ids[k]`` is the id of ``class_names[k]`` (default 0..C-1; pass the ground truth's
    ``info["label_ids"]``). Labels outside the class list are dropped and counted in
    ``info["unknown_labels"]``; malformed entries are errors naming the video and the entry.
    """
    ids = tuple(label_ids) if label_ids is not None else tuple(range(len(class_names)))
    if len(ids) != len(class_names):
        raise EvaluationInputError(f"{len(ids)} label ids for {len(class_names)} class names")
    with naming_source(source):
        return _load_predictions(read_json(source), tuple(class_names), ids)


def _load_predictions(
    document: Mapping[str, Any], class_names: tuple[str, ...], label_ids: tuple[int, ...]
) -> Segments:
    results = document.get("results")
    if not isinstance(results, Mapping):
        raise EvaluationInputError("results JSON has no 'results' object")
    by_name = {n: k for k, n in enumerate(class_names)}
    by_id = {i: k for k, i in enumerate(label_ids)}
    vids, starts, ends, labels, scores, unknown = [], [], [], [], [], collections.Counter()
    for vid, entries in results.items():
        if not isinstance(entries, list):
            raise EvaluationInputError(f"results['{vid}'] must be a list of predictions")
        for k, entry in enumerate(entries):
            s, e, score = _prediction_numbers(vid, k, entry)
            label = _prediction_label(vid, k, entry, by_name, by_id)
            if isinstance(label, str):
                unknown[label] += 1
                continue
            vids.append(str(vid))
            starts.append(s)
            ends.append(e)
            scores.append(score)
            labels.append(label)
    info = dict(
        version=document.get("version"),
        unknown_labels=sum(unknown.values()),
        unknown_label_examples=[name for name, _ in unknown.most_common(5)],
    )
    return Segments.from_arrays(
        vids,
        starts,
        ends,
        np.array(labels, dtype=np.int64),
        scores,
        class_names=class_names,
        videos=[str(v) for v in results],
        info=info,
    )


def _prediction_numbers(vid: str, k: int, entry: Any) -> tuple[float, float, float]:
    if not isinstance(entry, Mapping):
        raise EvaluationInputError(f"results['{vid}'][{k}]: a prediction must be an object, got {entry!r}")
    try:
        s, e = (float(x) for x in entry["segment"])
    except (KeyError, TypeError, ValueError):
        raise EvaluationInputError(f"results['{vid}'][{k}]: 'segment' must be [start, end]") from None
    if "score" not in entry:
        raise EvaluationInputError(f"results['{vid}'][{k}]: no 'score'")
    try:
        score = float(entry["score"])
    except (TypeError, ValueError):
        raise EvaluationInputError(f"results['{vid}'][{k}]: score {entry['score']!r} is not a number") from None
    return s, e, score


def _prediction_label(
    vid: str, k: int, entry: Mapping[str, Any], by_name: Mapping[str, int], by_id: Mapping[int, int]
) -> int | str:
    """Class position of the entry's label, or a printable name of a label that is not a class."""
    label = entry["label"] if "label" in entry else entry.get("label_id")
    if isinstance(label, str):
        return by_name.get(label, label)
    is_number = isinstance(label, (int, float, np.integer, np.floating)) and not isinstance(label, bool)
    if not is_number or not np.isfinite(label) or label != int(label) or label < 0:
        raise EvaluationInputError(
            f"results['{vid}'][{k}]: label {label!r} is neither a class name nor a non-negative integer id"
        )
    return by_id.get(int(label), f"id {int(label)}")


def results_json(
    predictions: Segments | Iterable[Mapping[str, Any]],
    class_names: Sequence[str],
    videos: Iterable[str] | None = None,
    version: str = RESULTS_VERSION,
) -> dict[str, Any]:
    """ActivityNet results document from Segments or records ``dict(video_id, label: int, t_start,
    t_end, score)``. ``videos`` adds empty entries for videos without predictions."""
    if not isinstance(predictions, Segments):
        predictions = Segments.from_records(predictions, class_names)
    names = list(class_names)
    results: dict[str, list] = {str(v): [] for v in (videos or ())}
    for v in predictions.videos:
        results.setdefault(v, [])
    for v, c, s, e, p in zip(
        predictions.video_index, predictions.label, predictions.t_start, predictions.t_end, predictions.score
    ):
        if not 0 <= c < len(names):
            raise EvaluationInputError(f"video '{predictions.videos[v]}': label {int(c)} outside 0..{len(names) - 1}")
        results[predictions.videos[v]].append(
            {"segment": [float(s), float(e)], "label": names[c], "label_id": int(c), "score": float(p)}
        )
    return {"version": version, "results": results, "external_data": {"used": False, "details": ""}}


def write_predictions(
    path: str | os.PathLike,
    predictions: Segments | Iterable[Mapping[str, Any]],
    class_names: Sequence[str],
    videos: Iterable[str] | None = None,
    version: str = RESULTS_VERSION,
) -> None:
    """Write an ActivityNet results JSON (see results_json)."""
    write_json(path, results_json(predictions, class_names, videos, version))
