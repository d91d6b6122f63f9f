"""Converters from official per-video ``.npy`` feature folders to shards (docs/data.md#make-a-dataset).

Layouts (one flat folder, ``[T, D]`` arrays per file):

* UnAV-100 I3D: ``<vid>_rgb.npy`` (1024) + ``<vid>_flow.npy`` (1024), concatenated to the 2048-d
  visual stream, and ``<vid>_vggish.npy`` (128) audio; grid 25 fps / stride 8 / window 24.
* UnAV-100 ONE-PEACE: ``<vid>_one_peace_video_finetune.npy`` + ``<vid>_one_peace_audio.npy`` (1536 each);
  grid 16 fps / stride 4 / window 16.
* ActivityNet 1.3: ``<vid>_visual.npy`` + ``<vid>_audio.npy`` (any dims, taken from the first video),
  also found with ActivityNet's ``v_`` prefix (``v_<vid>_visual.npy``); the grid is an argument.

Streams (and the parts of one stream) differing in length by more than ``length_tolerance`` steps are
an error naming the video; by at most that, they are truncated to the shorter and counted in the
manifest's ``writer_counts``. A video listed in the annotations without its files is an error unless
``allow_missing`` (then it is left out and counted).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .annotations import VideoAnnotation, load_annotations
from .errors import DataError
from .format import VideoSample
from .grid import I3D_GRID, ONEPEACE_GRID, Grid
from .manifest import Manifest
from .writer import DEFAULT_SHARD_SIZE, write_dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureLayout:
    visual: tuple[str, ...]
    """File suffixes concatenated (feature axis) into the visual stream."""
    audio: tuple[str, ...]
    visual_dim: Optional[int]
    """Expected dim (None = from the first video)."""
    audio_dim: Optional[int]
    grid: Optional[Grid]
    prefixes: tuple[str, ...] = ("",)
    """File-name prefixes tried before the video id."""


FEATURE_SETS = {
    "i3d": FeatureLayout(("_rgb.npy", "_flow.npy"), ("_vggish.npy",), 2048, 128, I3D_GRID),
    "onepeace": FeatureLayout(("_one_peace_video_finetune.npy",), ("_one_peace_audio.npy",), 1536, 1536, ONEPEACE_GRID),
    "anet": FeatureLayout(("_visual.npy",), ("_audio.npy",), None, None, None, prefixes=("", "v_")),
}


def _stem(features_dir: str, names: set[str], layout: FeatureLayout, video_id: str) -> Optional[str]:
    """The path prefix under which all of a video's files exist, or None."""
    for prefix in layout.prefixes:
        stem = prefix + video_id
        if all(stem + suffix in names for suffix in layout.visual + layout.audio):
            return os.path.join(features_dir, stem)
    return None


def _load(path: str, video_id: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"video {video_id!r}: cannot read {path} ({exc})") from None
    if array.ndim != 2 or array.dtype.kind != "f":
        raise DataError(f"video {video_id!r}: {path} has shape {array.shape} dtype {array.dtype}, want float [T, D]")
    if not np.isfinite(array).all():
        raise DataError(f"video {video_id!r}: {path} holds NaN/Inf values")
    return array


def _aligned(
    parts: list[np.ndarray], names: Sequence[str], video_id: str, tolerance: int
) -> tuple[list[np.ndarray], int]:
    lengths = [p.shape[0] for p in parts]
    diff = max(lengths) - min(lengths)
    if diff > tolerance:
        detail = ", ".join(f"{n}: {t}" for n, t in zip(names, lengths))
        raise DataError(
            f"video {video_id!r}: feature lengths differ by {diff} steps > tolerance {tolerance} ({detail})"
        )
    return [p[: min(lengths)] for p in parts], diff


@dataclass(frozen=True)
class FeatureSampler:
    """Picklable ``(annotation, stem) -> VideoSample`` reading one video's feature files."""

    layout: FeatureLayout
    visual_dim: int
    audio_dim: int
    length_tolerance: int = 1

    def __call__(self, item: tuple[VideoAnnotation, str]) -> VideoSample:
        ann, stem = item
        suffixes = self.layout.visual + self.layout.audio
        parts = [_load(stem + s, ann.video_id) for s in suffixes]
        parts, diff = _aligned(parts, suffixes, ann.video_id, self.length_tolerance)
        n_vis = len(self.layout.visual)
        visual = np.concatenate(parts[:n_vis], axis=1)  # [T, Dv]
        audio = np.concatenate(parts[n_vis:], axis=1)  # [T, Da]
        for name, array, dim in (("visual", visual, self.visual_dim), ("audio", audio, self.audio_dim)):
            if array.shape[1] != dim:
                raise DataError(f"video {ann.video_id!r}: {name} features are {array.shape[1]}-d, expected {dim}")
        return VideoSample(ann.video_id, visual, audio, ann.duration, ann.labels, ann.segments, truncated_steps=diff)


def convert_features(
    annotations: str,
    features_dir: str,
    out_root: str,
    feature_set: str,
    *,
    dataset: str,
    grid: Optional[Grid] = None,
    storage_cfg=None,
    workers: int = 1,
    shard_size: int = DEFAULT_SHARD_SIZE,
    limit_per_split: Optional[int] = None,
    allow_missing: bool = False,
    length_tolerance: int = 1,
    progress: bool = True,
) -> Manifest:
    """Convert an official feature folder + annotation JSON into a shard dataset under ``out_root``."""
    if feature_set not in FEATURE_SETS:
        raise DataError(f"unknown feature set {feature_set!r} (choose from {', '.join(FEATURE_SETS)})")
    layout = FEATURE_SETS[feature_set]
    grid = grid or layout.grid
    if grid is None:
        raise DataError(f"feature set {feature_set!r} needs its grid (fps, feat_stride, window)")
    ann = load_annotations(annotations)
    if ann.duplicates_dropped:
        log.info("dropped %d duplicate annotations", ann.duplicates_dropped)
    names = set(os.listdir(features_dir))
    split_items, missing = {}, []
    for split, videos in ann.limited({s: limit_per_split for s in ann.splits}).items():
        items = [(v, _stem(features_dir, names, layout, v.video_id)) for v in videos]
        missing += [v.video_id for v, stem in items if stem is None]
        split_items[split] = [(v, stem) for v, stem in items if stem is not None]
    if missing and not allow_missing:
        raise DataError(
            f"{len(missing)} annotated videos have no (complete) feature files in {features_dir}, "
            f"e.g. {missing[:5]} (expected {'/'.join(layout.visual + layout.audio)} per video); "
            "pass --allow-missing to leave them out"
        )
    if missing:
        log.warning("left out %d annotated videos without feature files, e.g. %s", len(missing), missing[:5])
    visual_dim, audio_dim = _dims(layout, split_items)
    sampler = FeatureSampler(layout, visual_dim, audio_dim, length_tolerance)
    return write_dataset(
        out_root,
        dataset=dataset,
        classes=ann.classes,
        visual_dim=visual_dim,
        audio_dim=audio_dim,
        grid=grid,
        split_items=split_items,
        make_sample=sampler,
        shard_size=shard_size,
        workers=workers,
        storage_cfg=storage_cfg,
        progress=progress,
        extra={
            "source": {
                "feature_set": feature_set,
                "missing_videos": len(missing),
                "duplicate_annotations_dropped": ann.duplicates_dropped,
            }
        },
    )


def _dims(layout: FeatureLayout, split_items: dict) -> tuple[int, int]:
    if layout.visual_dim and layout.audio_dim:
        return layout.visual_dim, layout.audio_dim
    first = next((stem for items in split_items.values() for _, stem in items), None)
    if first is None:
        raise DataError("no video with feature files to take the feature dims from")

    def width(suffixes):
        return sum(int(np.load(first + s, mmap_mode="r", allow_pickle=False).shape[1]) for s in suffixes)

    return layout.visual_dim or width(layout.visual), layout.audio_dim or width(layout.audio)
