"""The one reader of UnAV-100 / ActivityNet-style annotation JSON (data plane and evaluator alike).

Schema: ``{"database": {video_id: {"subset", "duration", "annotations": [{"segment": [s, e], "label",
"label_id"?}]}}}``. Subsets ``training``/``testing`` (ActivityNet) map to ``train``/``test``.

Classes (:func:`class_table`): when every annotation has a ``label_id``, the file's own
``label_id -> label`` pairs, in id order, whatever the ids are (a subset or a user's file may have
gaps); else the sorted label names with ids 0..N-1. Segments carry the *position* of their class in
that table. Duplicate events (same class, start and end within ``DUPLICATE_TOLERANCE_S`` of an event
already kept in the same video) are dropped, as UnAV/ActionFormer's ``remove_duplicate_annotations``.

:func:`load_annotations` is the data plane's view (manifests index classes 0..N-1, so gaps are
refused there); the evaluator (``evaluation.formats.load_ground_truth``) reads through
:func:`read_split_annotations` and accepts gaps.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..limits import quote
from .errors import DataError
from .splits import SPLITS, split_name

ACTIVITYNET_SUBSETS = frozenset({"training", "testing"})
DUPLICATE_TOLERANCE_S = 1e-3
PACKAGED_UNAV100 = "unav100_annotations.json"

Source = str | os.PathLike | Mapping[str, Any]


class AnnotationError(DataError, ValueError):
    """An annotation JSON that cannot be read as the schema says (names the file, video and field)."""


@dataclass(frozen=True)
class VideoAnnotation:
    video_id: str
    split: str
    duration: float
    segments: tuple[tuple[float, float, int], ...]
    """(start_s, end_s, class position), duplicates removed, in file order."""

    @property
    def labels(self) -> tuple[int, ...]:
        return tuple(sorted({c for _, _, c in self.segments}))


@dataclass(frozen=True)
class ClassTable:
    """The classes of an annotation file: ``names[k]`` has the file's id ``ids[k]`` (ascending)."""

    names: tuple[str, ...]
    ids: tuple[int, ...]

    @property
    def contiguous(self) -> bool:
        """True when the ids are exactly 0..N-1."""
        return self.ids == tuple(range(len(self.ids)))


@dataclass(frozen=True)
class Annotations:
    classes: tuple[str, ...]
    splits: dict[str, list[VideoAnnotation]]
    """Videos per split, sorted by id."""
    duplicates_dropped: int = 0
    class_ids: tuple[int, ...] = ()
    """The file's label_id of each class (``classes[k]`` has id ``class_ids[k]``)."""
    activitynet_subsets: bool = False
    """True when the file spells its subsets training/testing."""

    def limited(self, limits: dict[str, int | None] | None) -> dict[str, list[VideoAnnotation]]:
        """The first N videos (by id) of each split; a missing or None limit keeps the split whole."""
        limits = limits or {}
        return {
            name: list(videos) if limits.get(name) is None else videos[: limits[name]]
            for name, videos in self.splits.items()
        }


def packaged_unav100_path() -> Path:
    return Path(__file__).resolve().parent.parent / "resources" / PACKAGED_UNAV100


def read_document(source: Source) -> tuple[Mapping[str, Any], str]:
    """(parsed JSON, name for messages) from a dict, a local path or an fsspec URL."""
    if isinstance(source, Mapping):
        return source, "annotations"
    path = os.fspath(source)
    from ..limits import MAX_RESULTS_BYTES, InputLimitError, parse_json, read_bounded_bytes

    try:  # a regular file under the bound, depth-bounded strict-UTF-8 JSON, checked before parsing
        return parse_json(read_bounded_bytes(path, MAX_RESULTS_BYTES, "JSON file"), path), path
    except InputLimitError as exc:
        raise AnnotationError(str(exc)) from None


def database_of(document: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    db = document.get("database") if isinstance(document, Mapping) else None
    if not isinstance(db, Mapping):
        raise AnnotationError(f"{where}: annotation JSON has no 'database' object")
    return db


def video_entry(vid: str, entry: Any, where: str) -> Mapping[str, Any]:
    """One video's entry of the database: an object whose 'annotations', when present, is a list."""
    if not isinstance(entry, Mapping):
        raise AnnotationError(f"{where}: video '{vid}': the entry is a {type(entry).__name__}, not an object")
    if not isinstance(entry.get("annotations") or [], list):
        raise AnnotationError(f"{where}: video '{vid}': 'annotations' must be a list")
    return entry


def class_table(db: Mapping[str, Any], where: str) -> ClassTable:
    """The file's classes (module docstring); an id naming two classes, or a name with two ids, is an error."""
    anns = [
        (f"{where}: video '{vid}' annotation {k}", a)
        for vid, e in db.items()
        for k, a in enumerate(video_entry(str(vid), e, where).get("annotations") or [])
    ]
    if not anns:
        raise AnnotationError(f"{where}: annotation JSON has no annotations: cannot derive a class list")
    if not all(isinstance(a, Mapping) and "label_id" in a for _, a in anns):
        names = sorted({str(a.get("label")) for _, a in anns if isinstance(a, Mapping)})
        return ClassTable(tuple(names), tuple(range(len(names))))
    by_id: dict[int, str] = {}
    for place, a in anns:
        i, name = _label_id(a["label_id"], place), str(a.get("label"))
        if by_id.setdefault(i, name) != name:
            raise AnnotationError(f"{where}: label_id {i} names two classes: '{by_id[i]}' and '{name}'")
    if len(set(by_id.values())) != len(by_id):
        raise AnnotationError(f"{where}: two label_id values share one label name")
    ids = tuple(sorted(by_id))
    return ClassTable(tuple(by_id[i] for i in ids), ids)


MAX_LABEL_ID = 10**9
"""A label id is an index into a class table (UnAV-100: 0-99): anything larger is not one."""


def _label_id(value: Any, where: str) -> int:
    """`where` names the file, video and annotation; the message quotes at most a short prefix of the value."""
    finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if isinstance(value, bool) or not finite or not 0 <= value <= MAX_LABEL_ID or int(value) != value:
        raise AnnotationError(f"{where}: 'label_id' {quote(value, 40)} is not an integer from 0 to {MAX_LABEL_ID}")
    return int(value)


def _duration(vid: str, entry: Mapping[str, Any], where: str) -> float:
    """The entry's 'duration' in seconds (NaN when absent); a value that is not a number is an error."""
    value = entry.get("duration")
    if value is None:
        return float("nan")
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: video '{vid}': 'duration' {quote(value, 40)} is not a number") from None


def drop_duplicate_segments(
    segments: Sequence[tuple[float, float, int]], tol: float = DUPLICATE_TOLERANCE_S
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


def _video_segments(
    vid: str, entry: Mapping[str, Any], position: Mapping[str, int], where: str
) -> list[tuple[float, float, int]]:
    out = []
    for k, a in enumerate(entry.get("annotations") or []):
        try:
            s, e = (float(x) for x in a["segment"])
        except (KeyError, TypeError, ValueError):
            raise AnnotationError(f"{where}: video '{vid}' annotation {k}: 'segment' must be [start, end]") from None
        label = a.get("label")
        if label not in position:
            raise AnnotationError(f"{where}: video '{vid}' annotation {k}: unknown label {label!r}")
        out.append((s, e, position[label]))
    return out


def parse_annotations(
    document: Mapping[str, Any],
    where: str = "annotations",
    splits: Sequence[str] = SPLITS,
    classes: ClassTable | None = None,
    tol: float = DUPLICATE_TOLERANCE_S,
) -> Annotations:
    """Every video of the given splits, file order kept inside a split (``load_annotations`` sorts)."""
    db = database_of(document, where)
    table = classes or class_table(db, where)
    position = {name: k for k, name in enumerate(table.names)}
    out: dict[str, list[VideoAnnotation]] = {s: [] for s in splits}
    dropped, subsets = 0, set()
    for vid, entry in db.items():
        if "subset" not in video_entry(str(vid), entry, where):
            raise AnnotationError(f"{where}: video '{vid}': annotation entry has no 'subset'")
        subsets.add(str(entry["subset"]).lower())
        split = split_name(entry["subset"])
        if split not in out:
            continue
        kept, n_dup = drop_duplicate_segments(_video_segments(str(vid), entry, position, where), tol)
        dropped += n_dup
        duration = _duration(str(vid), entry, where)
        out[split].append(VideoAnnotation(str(vid), split, duration, tuple(kept)))
    return Annotations(
        classes=table.names,
        splits=out,
        duplicates_dropped=dropped,
        class_ids=table.ids,
        activitynet_subsets=bool(subsets & ACTIVITYNET_SUBSETS),
    )


def load_annotations(
    path: str | Path | None = None, splits: Sequence[str] = SPLITS, classes: Sequence[str] | None = None
) -> Annotations:
    """Parse an annotation file for the data plane (default: the packaged UnAV-100 copy); videos sorted
    by id. Class ids must be 0..N-1 here: shards and manifests index classes by id. ``classes`` is an explicit
    class list (ids = positions) for a file covering only some of them; a label outside it is an error."""
    path = Path(path) if path else packaged_unav100_path()
    try:
        document, where = read_document(path)
    except OSError as exc:
        raise DataError(f"annotations {str(path)!r}: unreadable ({type(exc).__name__}: {exc})") from None
    table = ClassTable(tuple(classes), tuple(range(len(classes)))) if classes else None
    ann = parse_annotations(document, str(path), splits, classes=table)
    if ann.class_ids != tuple(range(len(ann.classes))):
        raise AnnotationError(
            f"annotations {str(path)!r}: label ids are not 0..{len(ann.classes) - 1} "
            "(shards index classes by id; the evaluator accepts gaps)"
        )
    for videos in ann.splits.values():
        videos.sort(key=lambda v: v.video_id)
    return ann
