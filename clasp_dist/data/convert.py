"""Converters from official per-video ``.npy`` feature folders to shards (docs/data.md#make-a-dataset).

Layouts (one flat folder, ``[T, D]`` arrays per file):

* UnAV-100 I3D: ``<vid>_rgb.npy`` (1024) + ``<vid>_flow.npy`` (1024), concatenated to the 2048-d
  visual stream, and ``<vid>_vggish.npy`` (128) audio; grid 25 fps / stride 8 / window 24.
* UnAV-100 ONE-PEACE: ``<vid>_one_peace_video_finetune.npy`` + ``<vid>_one_peace_audio.npy`` (1536 each);
  grid 16 fps / stride 4 / window 16.
* ActivityNet 1.3: ``<vid>_visual.npy`` + ``<vid>_audio.npy`` (any dims, taken from the first video),
  also found with ActivityNet's ``v_`` prefix (``v_<vid>_visual.npy``); the grid is an argument.

Other code bases name their files differently: :func:`custom_layout` changes a layout's file-name prefix and
suffixes, or reads one file per video holding both streams concatenated on the feature axis, split at the visual
dimension (ActionFormer-style folders of ``v_<id>.npy``). The feature folder may be local, ``s3://`` or ``gs://``.
An explicit class list (``classes``) fixes the classes and their ids when the annotation file covers only some of
them (every label must be in the list).

Streams (and the parts of one stream) differing in length by more than ``length_tolerance`` steps are
an error naming the video; by at most that, they are truncated to the shorter and counted in the
manifest's ``writer_counts``. An evaluation split whose videos carry no segment at all (ActivityNet's
``testing`` subset) is listed in the manifest's ``unlabelled_splits``. A video listed in the annotations without its files is an error unless
``allow_missing`` (then it is left out and counted).
"""

from __future__ import annotations

import io
import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .annotations import VideoAnnotation, load_annotations
from .errors import DataError
from .filesystem import get_fs, join, open_url, storage_errors
from .format import VideoSample
from .grid import I3D_GRID, ONEPEACE_GRID, Grid
from .manifest import UNLABELLED_SPLITS, Manifest
from .splits import EVAL_SPLITS
from .writer import DEFAULT_SHARD_SIZE, write_dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureLayout:
    visual: tuple[str, ...]
    """File suffixes concatenated (feature axis) into the visual stream."""
    audio: tuple[str, ...]
    visual_dim: int | None
    """Expected dim (None = from the first video)."""
    audio_dim: int | None
    grid: Grid | None
    prefixes: tuple[str, ...] = ("",)
    """File-name prefixes tried before the video id."""
    combined: str | None = None
    """Suffix of one file per video holding visual then audio features concatenated (split at ``visual_dim``)."""

    @property
    def files(self) -> tuple[str, ...]:
        """The file suffixes every video needs."""
        return (self.combined,) if self.combined else self.visual + self.audio


def custom_layout(
    base: FeatureLayout,
    *,
    prefix: str | None = None,
    visual_suffixes: Sequence[str] = (),
    audio_suffixes: Sequence[str] = (),
    combined_suffix: str | None = None,
    split_dim: int | None = None,
) -> FeatureLayout:
    """``base`` with other file names: a fixed ``prefix`` before the video id, other suffixes per stream (several
    are concatenated), or one ``combined_suffix`` file per video split at ``split_dim`` (its visual width)."""
    layout = base
    if prefix is not None:
        layout = replace(layout, prefixes=(prefix,))
    if visual_suffixes or audio_suffixes:
        if combined_suffix:
            raise DataError("give either per-stream suffixes or one combined suffix, not both")
        layout = replace(
            layout,
            visual=tuple(visual_suffixes) or layout.visual,
            audio=tuple(audio_suffixes) or layout.audio,
            visual_dim=None,
            audio_dim=None,
        )
    if combined_suffix:
        if not split_dim or split_dim < 1:
            raise DataError("a combined feature file needs the visual width to split it at (--split-dim >= 1)")
        layout = replace(layout, combined=combined_suffix, visual_dim=split_dim, audio_dim=None)
    elif split_dim:
        raise DataError("--split-dim only applies to a combined feature file (--combined-suffix)")
    return layout


FEATURE_SETS = {
    "i3d": FeatureLayout(("_rgb.npy", "_flow.npy"), ("_vggish.npy",), 2048, 128, I3D_GRID),
    "onepeace": FeatureLayout(("_one_peace_video_finetune.npy",), ("_one_peace_audio.npy",), 1536, 1536, ONEPEACE_GRID),
    "anet": FeatureLayout(("_visual.npy",), ("_audio.npy",), None, None, None, prefixes=("", "v_")),
}


def _stem(features_dir: str, names: set[str], layout: FeatureLayout, video_id: str) -> str | None:
    """The path prefix under which all of a video's files exist, or None."""
    for prefix in layout.prefixes:
        stem = prefix + video_id
        if all(stem + suffix in names for suffix in layout.files):
            return join(features_dir, stem)
    return None


def _list_names(features_dir: str, storage_cfg) -> set[str]:
    """File names in a feature folder (local, s3:// or gs://)."""
    fs, base = get_fs(features_dir, storage_cfg)
    with storage_errors(features_dir, storage_cfg):
        try:
            return {posixpath.basename(p.rstrip("/")) for p in fs.ls(base, detail=False)}
        except FileNotFoundError:
            raise DataError(f"feature folder {features_dir!r} does not exist") from None


def _load(path: str, video_id: str, storage_cfg=None) -> np.ndarray:
    try:
        with storage_errors(path, storage_cfg), open_url(path, "rb", storage_cfg) as f:
            array = np.load(io.BytesIO(f.read()), allow_pickle=False)
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
    storage_cfg: object = None

    def __call__(self, item: tuple[VideoAnnotation, str]) -> VideoSample:
        ann, stem = item
        if self.layout.combined:
            both = _load(stem + self.layout.combined, ann.video_id, self.storage_cfg)  # [T, Dv + Da]
            visual, audio, diff = both[:, : self.visual_dim], both[:, self.visual_dim :], 0  # [T, Dv], [T, Da]
        else:
            suffixes = self.layout.files
            parts = [_load(stem + s, ann.video_id, self.storage_cfg) for s in suffixes]
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
    grid: Grid | None = None,
    storage_cfg=None,
    workers: int = 1,
    shard_size: int = DEFAULT_SHARD_SIZE,
    limit_per_split: int | None = None,
    allow_missing: bool = False,
    length_tolerance: int = 1,
    progress: bool = True,
    layout: FeatureLayout | None = None,
    classes: Sequence[str] | None = None,
) -> Manifest:
    """Convert an official feature folder + annotation JSON into a shard dataset under ``out_root``.

    ``layout`` (from :func:`custom_layout`) replaces the feature set's file names; ``classes`` is an explicit
    class list (ids = positions) for an annotation file covering only some classes."""
    if feature_set not in FEATURE_SETS:
        raise DataError(f"unknown feature set {feature_set!r} (choose from {', '.join(FEATURE_SETS)})")
    layout = layout or FEATURE_SETS[feature_set]
    grid = grid or layout.grid
    if grid is None:
        raise DataError(f"feature set {feature_set!r} needs its grid (fps, feat_stride, window)")
    ann = load_annotations(annotations, classes=classes)
    if ann.duplicates_dropped:
        log.info("dropped %d duplicate annotations", ann.duplicates_dropped)
    names = _list_names(features_dir, storage_cfg)
    split_items, missing = {}, []
    for split, videos in ann.limited({s: limit_per_split for s in ann.splits}).items():
        items = [(v, _stem(features_dir, names, layout, v.video_id)) for v in videos]
        missing += [v.video_id for v, stem in items if stem is None]
        split_items[split] = [(v, stem) for v, stem in items if stem is not None]
    if missing and not allow_missing:
        raise DataError(
            f"{len(missing)} annotated videos have no (complete) feature files in {features_dir}, "
            f"e.g. {missing[:5]} (expected {'/'.join(layout.files)} per video); "
            "pass --allow-missing to leave them out"
        )
    if missing:
        log.warning("left out %d annotated videos without feature files, e.g. %s", len(missing), missing[:5])
    visual_dim, audio_dim = _dims(layout, split_items, storage_cfg)
    sampler = FeatureSampler(layout, visual_dim, audio_dim, length_tolerance, storage_cfg)
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
            },
            UNLABELLED_SPLITS: [
                s for s in EVAL_SPLITS if split_items.get(s) and not any(v.segments for v, _ in split_items[s])
            ],
        },
    )


def _dims(layout: FeatureLayout, split_items: dict, storage_cfg=None) -> tuple[int, int]:
    if layout.visual_dim and layout.audio_dim:
        return layout.visual_dim, layout.audio_dim
    first = next(((ann, stem) for items in split_items.values() for ann, stem in items), None)
    if first is None:
        raise DataError("no video with feature files to take the feature dims from")
    ann, stem = first

    def width(suffixes):
        return sum(int(_load(stem + s, ann.video_id, storage_cfg).shape[1]) for s in suffixes)

    if layout.combined:
        total = width((layout.combined,))
        if total <= layout.visual_dim:
            raise DataError(
                f"video {ann.video_id!r}: {stem + layout.combined} is {total}-d, not more than the visual width "
                f"{layout.visual_dim} it is split at (--split-dim)"
            )
        return layout.visual_dim, total - layout.visual_dim
    return layout.visual_dim or width(layout.visual), layout.audio_dim or width(layout.audio)
