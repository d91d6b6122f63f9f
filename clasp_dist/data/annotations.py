"""Reading UnAV-100 / ActivityNet-style annotation JSON into per-split video records.

Schema: ``{"database": {video_id: {"subset", "duration", "annotations": [{"segment": [s, e], "label",
"label_id"?}]}}}``. Subsets ``training``/``testing`` (ActivityNet) map to ``train``/``test``. Class ids
come from ``label_id`` when present (UnAV-100), else from the sorted label names (ActivityNet).
Duplicate events (same class, start and end within 1e-3 s) are dropped, as UnAV does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .errors import DataError

SUBSET_TO_SPLIT = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
                   "test": "test", "testing": "test"}
DUPLICATE_TOLERANCE_S = 1e-3
PACKAGED_UNAV100 = "unav100_annotations.json"


@dataclass(frozen=True)
class VideoAnnotation:
    video_id: str
    split: str
    duration: float
    segments: tuple[tuple[float, float, int], ...]
    """(start_s, end_s, class_id), duplicates removed, in file order."""

    @property
    def labels(self) -> tuple[int, ...]:
        return tuple(sorted({c for _, _, c in self.segments}))


@dataclass(frozen=True)
class Annotations:
    classes: tuple[str, ...]
    splits: dict[str, list[VideoAnnotation]]
    """Videos per split, sorted by id."""
    duplicates_dropped: int = 0

    def limited(self, limits: Optional[dict[str, Optional[int]]]) -> dict[str, list[VideoAnnotation]]:
        """The first N videos (by id) of each split; a missing or None limit keeps the split whole."""
        limits = limits or {}
        return {name: list(videos) if limits.get(name) is None else videos[: limits[name]]
                for name, videos in self.splits.items()}


def packaged_unav100_path() -> Path:
    return Path(__file__).resolve().parent.parent / "resources" / PACKAGED_UNAV100


def load_annotations(path: Optional[str | Path] = None, splits: Sequence[str] = ("train", "validation", "test")) -> Annotations:
    """Parse an annotation file (default: the packaged UnAV-100 copy)."""
    path = Path(path) if path else packaged_unav100_path()
    try:
        db = json.loads(path.read_text())["database"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"annotations {str(path)!r}: unreadable ({type(exc).__name__}: {exc})") from None
    classes = _classes(db, path)
    index = {name: i for i, name in enumerate(classes)}
    out: dict[str, list[VideoAnnotation]] = {s: [] for s in splits}
    dropped = 0
    for vid, entry in db.items():
        split = SUBSET_TO_SPLIT.get(str(entry.get("subset", "")).lower())
        if split not in out:
            continue
        segments, n_dup = _dedup([(float(a["segment"][0]), float(a["segment"][1]),
                                   int(a["label_id"]) if "label_id" in a else index[a["label"]])
                                  for a in entry.get("annotations", [])])
        dropped += n_dup
        out[split].append(VideoAnnotation(str(vid), split, float(entry["duration"]), tuple(segments)))
    for videos in out.values():
        videos.sort(key=lambda v: v.video_id)
    return Annotations(classes=tuple(classes), splits=out, duplicates_dropped=dropped)


def _classes(db: dict, path: Path) -> list[str]:
    anns = [a for e in db.values() for a in e.get("annotations", [])]
    if anns and all("label_id" in a for a in anns):
        names: dict[int, str] = {}
        for a in anns:
            if names.setdefault(int(a["label_id"]), a["label"]) != a["label"]:
                raise DataError(f"annotations {str(path)!r}: label_id {a['label_id']} names both "
                                f"{names[int(a['label_id'])]!r} and {a['label']!r}")
        if sorted(names) != list(range(len(names))):
            raise DataError(f"annotations {str(path)!r}: label ids are not 0..{len(names) - 1}")
        return [names[i] for i in range(len(names))]
    return sorted({a["label"] for a in anns})


def _dedup(segments: list[tuple[float, float, int]]) -> tuple[list[tuple[float, float, int]], int]:
    kept: list[tuple[float, float, int]] = []
    for s, e, c in segments:
        if any(c == c2 and abs(s - s2) <= DUPLICATE_TOLERANCE_S and abs(e - e2) <= DUPLICATE_TOLERANCE_S
               for s2, e2, c2 in kept):
            continue
        kept.append((s, e, c))
    return kept, len(segments) - len(kept)
