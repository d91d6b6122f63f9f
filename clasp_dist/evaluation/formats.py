"""File formats of the evaluation: annotation JSON, shard meta.json, ActivityNet results JSON.

Ground truth
  * ActivityNet / UnAV annotation JSON ``{"database": {vid: {"subset", "duration", "annotations":
    [{"segment": [s, e], "label": name, "label_id": id}]}}}``, filtered by split. Split names
    ``train``/``validation``/``test`` and ActivityNet's ``training``/``validation``/``testing`` are
    the same splits (either spelling works on either file).
  * Class list: from ``label_id`` when every annotation of the file has one (``names[label_id]``, ids
    must be 0..C-1 with one name each), else the sorted label names. The list is built from the whole
    file, not one split, so ids never depend on the split.
  * Duplicate events (same label, start and end within 1e-3 s of an event already kept in the same
    video) are dropped, as UnAV's loader does, and counted in ``Segments.info["duplicates_dropped"]``.
  * Or built from shard ``meta.json`` dicts (``video_id, duration, segments [[s, e, class_id], ...]``)
    plus the manifest's class list (same duplicate rule).

Predictions
  * ActivityNet results JSON ``{"version", "results": {vid: [{"segment": [s, e], "label": name or
    int id, "score": x}]}, "external_data"}``; the writer stores both ``label`` (name) and
    ``label_id`` so that the official and ActionFormer readers both accept the file.

No Ray, no pandas. Sources are local paths, fsspec URLs (s3://...) or already-parsed dicts.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from .metric import ANET_TIOU, UNAV100_TIOU, EvaluationInputError, Segments

Source = Union[str, os.PathLike, Mapping[str, Any]]

SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
                 "test": "test", "testing": "test"}
ACTIVITYNET_SUBSETS = {"training", "testing"}
DUPLICATE_TOLERANCE_S = 1e-3
RESULTS_VERSION = "clasp-dist results v1"


def normalise_split(name: str) -> str:
    """'training' -> 'train', 'testing' -> 'test', 'val' -> 'validation'; unknown names are an error."""
    key = str(name).strip().lower()
    if key not in SPLIT_ALIASES:
        raise EvaluationInputError(f"unknown split '{name}' (use train/validation/test or training/testing)")
    return SPLIT_ALIASES[key]


def read_json(source: Source) -> Mapping[str, Any]:
    """A parsed JSON document from a dict, a local path or an fsspec URL."""
    if isinstance(source, Mapping):
        return source
    path = os.fspath(source)
    try:
        if "://" in path:
            import fsspec  # only for remote sources

            with fsspec.open(path, "r", encoding="utf-8") as f:
                return json.load(f)
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EvaluationInputError(f"{path}: not valid JSON ({err})") from None


@contextlib.contextmanager
def naming_source(source: Source):
    """Prefix an input error with the file it came from (sources given as paths or URLs)."""
    try:
        yield
    except EvaluationInputError as err:
        if isinstance(source, Mapping) or str(err).startswith(os.fspath(source)):
            raise
        raise EvaluationInputError(f"{os.fspath(source)}: {err}") from None


def write_json(path: Union[str, os.PathLike], document: Mapping[str, Any]) -> None:
    """Write JSON (floats as Python repr, so numbers round-trip exactly), creating parent folders."""
    path = os.fspath(path)
    if "://" in path:
        import fsspec

        with fsspec.open(path, "w", encoding="utf-8") as f:
            json.dump(document, f)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f)


# ---------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------

def _database(document: Mapping[str, Any]) -> Mapping[str, Any]:
    if "database" not in document or not isinstance(document["database"], Mapping):
        raise EvaluationInputError("annotation JSON has no 'database' object")
    return document["database"]


def class_names_from_annotations(document: Mapping[str, Any]) -> tuple[str, ...]:
    """Class list of an annotation file: by label_id when every annotation has one, else sorted names."""
    annotations = [a for v in _database(document).values() for a in v.get("annotations", [])]
    if not annotations:
        raise EvaluationInputError("annotation JSON has no annotations: cannot derive a class list")
    if all("label_id" in a for a in annotations):
        by_id: dict[int, str] = {}
        for a in annotations:
            i, name = int(a["label_id"]), str(a["label"])
            if by_id.setdefault(i, name) != name:
                raise EvaluationInputError(f"label_id {i} names two classes: '{by_id[i]}' and '{name}'")
        if sorted(by_id) != list(range(len(by_id))):
            missing = sorted(set(range(max(by_id) + 1)) - set(by_id))
            raise EvaluationInputError(f"label_id values are not 0..{max(by_id)}: missing {missing[:5]}")
        if len(set(by_id.values())) != len(by_id):
            raise EvaluationInputError("two label_id values share one label name")
        return tuple(by_id[i] for i in range(len(by_id)))
    return tuple(sorted({str(a["label"]) for a in annotations}))


def drop_duplicate_segments(segments: Sequence[tuple[float, float, int]], tol: float = DUPLICATE_TOLERANCE_S
                            ) -> tuple[list[tuple[float, float, int]], int]:
    """Drop a segment when one already kept has the same class and start/end within tol (UnAV rule).

    Returns (kept segments in input order, number dropped).
    """
    kept: list[tuple[float, float, int]] = []
    for s, e, c in segments:
        if any(c == kc and abs(s - ks) <= tol and abs(e - ke) <= tol for ks, ke, kc in kept):
            continue
        kept.append((s, e, c))
    return kept, len(segments) - len(kept)


def load_ground_truth(source: Source, split: str, class_names: Optional[Sequence[str]] = None,
                      duplicate_tol: float = DUPLICATE_TOLERANCE_S) -> Segments:
    """Ground truth of one split of an ActivityNet/UnAV annotation JSON.

    ``Segments.videos`` holds every video of the split (also those without annotations);
    ``info`` holds ``duplicates_dropped``, ``split``, ``durations`` {vid: s} and ``activitynet_subsets``
    (True when the file spells its subsets training/testing).
    """
    with naming_source(source):
        return _load_ground_truth(read_json(source), split, class_names, duplicate_tol)


def _load_ground_truth(document: Mapping[str, Any], split: str, class_names: Optional[Sequence[str]],
                       duplicate_tol: float) -> Segments:
    database = _database(document)
    wanted = normalise_split(split)
    names = tuple(class_names) if class_names is not None else class_names_from_annotations(document)
    name_to_id = {n: i for i, n in enumerate(names)}
    subsets = {str(v.get("subset", "")).lower() for v in database.values()}

    videos, durations, rows, dropped = [], {}, [], 0
    for vid, entry in database.items():
        if "subset" not in entry:
            raise EvaluationInputError(f"video '{vid}': annotation entry has no 'subset'")
        if SPLIT_ALIASES.get(str(entry["subset"]).lower()) != wanted:
            continue
        videos.append(str(vid))
        durations[str(vid)] = float(entry["duration"]) if "duration" in entry else float("nan")
        segs = [_annotation_segment(vid, k, a, name_to_id) for k, a in enumerate(entry.get("annotations", []))]
        kept, n_dup = drop_duplicate_segments(segs, duplicate_tol)
        dropped += n_dup
        rows.extend((str(vid), s, e, c) for s, e, c in kept)
    if not videos:
        raise EvaluationInputError(f"no video of split '{split}' in the annotation JSON (subsets: {sorted(subsets)})")
    info = dict(duplicates_dropped=dropped, split=wanted, durations=durations,
                activitynet_subsets=bool(subsets & ACTIVITYNET_SUBSETS))
    return _segments_from_rows(rows, names, videos, info)


def _annotation_segment(vid: str, k: int, ann: Mapping[str, Any], name_to_id: Mapping[str, int]
                        ) -> tuple[float, float, int]:
    try:
        s, e = (float(x) for x in ann["segment"])
    except (KeyError, TypeError, ValueError):
        raise EvaluationInputError(f"video '{vid}' annotation {k}: 'segment' must be [start, end]") from None
    label = ann.get("label")
    if label not in name_to_id:
        raise EvaluationInputError(f"video '{vid}' annotation {k}: unknown label {label!r}")
    return s, e, name_to_id[label]


def ground_truth_from_metas(metas: Iterable[Mapping[str, Any]], class_names: Sequence[str],
                            duplicate_tol: float = DUPLICATE_TOLERANCE_S) -> Segments:
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
                raise EvaluationInputError(f"video '{vid}' segment {k}: expected [s, e, class_id < {num_classes}], got {seg}")
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


def _segments_from_rows(rows: list[tuple[str, float, float, int]], names: tuple[str, ...], videos: list[str],
                        info: dict[str, Any]) -> Segments:
    return Segments.from_arrays([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                                np.array([r[3] for r in rows], dtype=np.int64), None, class_names=names,
                                videos=videos, info=info)


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

def load_predictions(source: Source, class_names: Sequence[str]) -> Segments:
    """Predictions from an ActivityNet results JSON; labels are names (or integer ids).

    An unknown label name or an out-of-range id is an error naming the video and the entry.
    """
    with naming_source(source):
        return _load_predictions(read_json(source), class_names)


def _load_predictions(document: Mapping[str, Any], class_names: Sequence[str]) -> Segments:
    results = document.get("results")
    if not isinstance(results, Mapping):
        raise EvaluationInputError("results JSON has no 'results' object")
    name_to_id = {n: i for i, n in enumerate(class_names)}
    vids, starts, ends, labels, scores = [], [], [], [], []
    for vid, entries in results.items():
        if not isinstance(entries, list):
            raise EvaluationInputError(f"results['{vid}'] must be a list of predictions")
        for k, entry in enumerate(entries):
            s, e, score = _prediction_numbers(vid, k, entry)
            vids.append(str(vid))
            starts.append(s)
            ends.append(e)
            scores.append(score)
            labels.append(_prediction_label(vid, k, entry, name_to_id, len(class_names)))
    return Segments.from_arrays(vids, starts, ends, np.array(labels, dtype=np.int64), scores,
                                class_names=tuple(class_names), videos=[str(v) for v in results],
                                info=dict(version=document.get("version")))


def _prediction_numbers(vid: str, k: int, entry: Mapping[str, Any]) -> tuple[float, float, float]:
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


def _prediction_label(vid: str, k: int, entry: Mapping[str, Any], name_to_id: Mapping[str, int],
                      num_classes: int) -> int:
    label = entry["label"] if "label" in entry else entry.get("label_id")
    if isinstance(label, str):
        if label not in name_to_id:
            raise EvaluationInputError(f"results['{vid}'][{k}]: unknown label '{label}' (not in the class list)")
        return name_to_id[label]
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if not 0 <= int(label) < num_classes:
            raise EvaluationInputError(f"results['{vid}'][{k}]: label id {label} outside 0..{num_classes - 1}")
        return int(label)
    raise EvaluationInputError(f"results['{vid}'][{k}]: label {label!r} is neither a class name nor an id")


def results_json(predictions: Union[Segments, Iterable[Mapping[str, Any]]], class_names: Sequence[str],
                 videos: Optional[Iterable[str]] = None, version: str = RESULTS_VERSION) -> dict[str, Any]:
    """ActivityNet results document from Segments or records ``dict(video_id, label: int, t_start,
    t_end, score)``. ``videos`` adds empty entries for videos without predictions."""
    if not isinstance(predictions, Segments):
        predictions = Segments.from_records(predictions, class_names)
    names = list(class_names)
    results: dict[str, list] = {str(v): [] for v in (videos or ())}
    for v in predictions.videos:
        results.setdefault(v, [])
    for v, c, s, e, p in zip(predictions.video_index, predictions.label, predictions.t_start, predictions.t_end,
                             predictions.score):
        if not 0 <= c < len(names):
            raise EvaluationInputError(f"video '{predictions.videos[v]}': label {int(c)} outside 0..{len(names) - 1}")
        results[predictions.videos[v]].append(
            {"segment": [float(s), float(e)], "label": names[c], "label_id": int(c), "score": float(p)})
    return {"version": version, "results": results, "external_data": {"used": False, "details": ""}}


def write_predictions(path: Union[str, os.PathLike], predictions: Union[Segments, Iterable[Mapping[str, Any]]],
                      class_names: Sequence[str], videos: Optional[Iterable[str]] = None,
                      version: str = RESULTS_VERSION) -> None:
    """Write an ActivityNet results JSON (see results_json)."""
    write_json(path, results_json(predictions, class_names, videos, version))
