"""Indexing a folder of existing WebDataset tars: the ``manifest.json`` that tars written by other tools lack.

:func:`index_dataset` lists the ``.tar`` files under a root (local, ``s3://``, ``gs://``), assigns each to a
split (from its name, or from ``NAME=GLOB`` patterns), reads every sample through the readers' own bounded
tar reader and :class:`~clasp_dist.data.sample_rows.SampleDecoder` (so whatever a reader would refuse, indexing
refuses first, naming shard, sample and field), and writes the manifest:

* dimensions and grid come from the first sample (every other sample must agree);
* the classes come from a class-list file (``classes``), or are the integer ids the samples' labels (and, in
  evaluation splits, segments) use: ``"0" .. "N-1"`` with ``N`` = the largest id + 1;
* each shard's video count and sha256 (computed while the shard is read: one pass over the bytes);
* evaluation splits without any ground-truth segment, in ``unlabelled_splits`` (a run's final pass skips them).

Member order within a sample is free (``webdataset``'s writer sorts members by name), and members other
than the three are skipped unread and counted (``data.strict_members``). Training splits' segments are
never read (the decoder does not parse them for ``train``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import BadSampleError, DataError
from .filesystem import get_fs, join, open_url, storage_errors
from .format import VERSION
from .grid import Grid
from .manifest import (
    MANIFEST_NAME,
    UNLABELLED_SPLITS,
    Manifest,
    ShardInfo,
    SplitInfo,
    unsafe_shard_path_reason,
    write_manifest,
)
from .sample_rows import SampleDecoder, npy_shape
from .splits import EVAL_SPLITS, SPLITS, split_name
from .tar_reader import iter_tar_samples

log = logging.getLogger(__name__)

MAX_INFERRED_CLASSES = 100_000
"""Largest class count inferred from label ids (a larger id needs an explicit class list)."""
MAX_CLASS_FILE_BYTES = 4 << 20
"""Bound on a class-list file (4 MiB)."""


@dataclass
class IndexReport:
    """What :func:`index_dataset` found: per-split video counts, classes' origin, extra members skipped."""

    manifest: Manifest
    classes_from: str
    extra_members: int = 0
    not_indexed: list[str] = field(default_factory=list)
    """Tars under the root that no ``--split`` pattern matched (left out of the manifest)."""

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s.videos} videos / {len(s.shards)} shards" for n, s in self.manifest.splits.items())
        m = self.manifest
        return (
            f"indexed {m.dataset}: {counts}; {m.num_classes} classes ({self.classes_from}), visual {m.visual_dim}-d, "
            f"audio {m.audio_dim}-d, grid {m.grid.fps:g} fps / stride {m.grid.feat_stride} / window {m.grid.window}; "
            f"{self.extra_members} extra members skipped; {len(self.not_indexed)} tar(s) matched no split"
        )


# --------------------------------------------------------------------------------------------- splits
def split_from_name(path: str) -> str | None:
    """The split a shard's relative path names ('train-000000.tar', 'val/0003.tar', 'anet_testing_1.tar'),
    None when it names none; a path naming two different splits is an error."""
    tokens = re.split(r"[^A-Za-z0-9]+", path[: -len(".tar")])
    found = {s for s in (split_name(t) for t in tokens if t) if s is not None}
    if len(found) > 1:
        raise DataError(f"shard {path!r} names several splits ({', '.join(sorted(found))}); pass --split NAME=GLOB")
    return found.pop() if found else None


def parse_split_patterns(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["train=train/*.tar", "validation=val-*.tar"]`` -> {split: [glob, ...]} (split spellings accepted)."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        split = split_name(name)
        if not sep or not pattern or split is None:
            raise DataError(f"--split {spec!r}: expected NAME=GLOB with NAME one of {', '.join(SPLITS)}")
        out.setdefault(split, []).append(pattern)
    return out


def assign_splits(paths: Sequence[str], patterns: dict[str, list[str]] | None) -> tuple[dict, list[str]]:
    """{split: [relative path, ...]} in name order, and the paths left out (no pattern matched)."""
    by_split: dict[str, list[str]] = {}
    left_out: list[str] = []
    for path in sorted(paths):
        if patterns:
            hits = [s for s, globs in patterns.items() if any(fnmatch.fnmatchcase(path, g) for g in globs)]
            if len(hits) > 1:
                raise DataError(f"shard {path!r} matches the patterns of several splits: {', '.join(hits)}")
            split = hits[0] if hits else None
        else:
            split = split_from_name(path)
            if split is None:
                raise DataError(
                    f"shard {path!r}: its name says no split (train/training, validation/val, test/testing); "
                    "rename it or pass --split NAME=GLOB"
                )
        if split is None:
            left_out.append(path)
        else:
            by_split.setdefault(split, []).append(path)
    return {s: by_split[s] for s in SPLITS if s in by_split}, left_out


# -------------------------------------------------------------------------------------------- classes
def read_class_list(url: str, storage_cfg=None) -> list[str]:
    """A class list: a JSON list of names, or a text file with one name per line (blank lines ignored)."""
    with storage_errors(url, storage_cfg), open_url(url, "rb", storage_cfg) as f:
        raw = f.read(MAX_CLASS_FILE_BYTES + 1)
    if len(raw) > MAX_CLASS_FILE_BYTES:
        raise DataError(f"class list {url}: larger than {MAX_CLASS_FILE_BYTES} bytes")
    text = raw.decode("utf-8", errors="replace")
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise DataError(f"class list {url}: not valid JSON ({exc})") from None
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise DataError(f"class list {url}: a JSON class list must be a list of non-empty strings")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DataError(f"class list {url}: no class names")
    repeated = sorted({n for n in names if names.count(n) > 1})[:5]
    if repeated:
        raise DataError(f"class list {url}: names listed twice: {repeated}")
    return names


# ------------------------------------------------------------------------------------------- reading
class _HashingReader:
    """A read-only stream that hashes every byte read through it."""

    def __init__(self, fileobj):
        self.fileobj, self.sha = fileobj, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.fileobj.read(size)
        self.sha.update(data)
        return data

    def drain(self) -> str:
        """Hash the rest (the tar's end blocks, which a stream reader leaves unread); the hex digest."""
        while self.read(8 << 20):
            pass
        return self.sha.hexdigest()


@dataclass(frozen=True)
class _Layout:
    visual_dim: int
    audio_dim: int
    grid: Grid
    where: str
    """The sample the layout was taken from."""


def _layout_of(raw: dict, shard: str) -> _Layout:
    """Dimensions and grid of one raw sample, from its ``.npy`` headers and ``meta.json`` (bounded, no arrays)."""
    key = raw["__key__"]

    def bad(name: str, reason: str) -> BadSampleError:
        return BadSampleError(reason, shard=shard, video_id=key, field=name)

    if "__problem__" in raw:
        raise bad(*raw["__problem__"])
    for member in ("visual.npy", "audio.npy", "meta.json"):
        if member not in raw:
            raise bad(member, "member missing")
    dims = [npy_shape(raw[m], m, bad) for m in ("visual.npy", "audio.npy")]
    for m, shape in zip(("visual.npy", "audio.npy"), dims):
        if len(shape) != 2 or shape[1] < 1:
            raise bad(m, f"shape {shape} is not [T, D]")
    try:
        meta = json.loads(raw["meta.json"])
        grid = Grid(float(meta["fps"]), int(meta["feat_stride"]), int(meta["window"]))
    except Exception as exc:  # noqa: BLE001 - the decoder gives the precise message for the same sample
        raise bad("meta.json", f"no grid (fps, feat_stride, window) readable ({type(exc).__name__}: {exc})") from None
    return _Layout(dims[0][1], dims[1][1], grid, f"shard {shard}, sample {key!r}")


def _decoder(layout: _Layout, num_classes: int, split: str, data_cfg) -> SampleDecoder:
    return SampleDecoder(
        visual_dim=layout.visual_dim,
        audio_dim=layout.audio_dim,
        num_classes=num_classes,
        include_segments=split in EVAL_SPLITS,
        length_tolerance=data_cfg.length_mismatch_tolerance,
        policy="error",
        grid=layout.grid,
        step_tolerance=data_cfg.step_count_tolerance,
        step_tolerance_fraction=data_cfg.step_count_tolerance_fraction,
        max_member_bytes=int(data_cfg.max_member_mb * 2**20),
        strict_members=data_cfg.strict_members,
    )


@dataclass
class _Scan:
    layout: _Layout | None = None
    max_class: int = -1
    extra_members: int = 0
    labelled: set = field(default_factory=set)
    """Splits with at least one ground-truth segment."""


def _index_shard(fs, path: str, rel: str, split: str, scan: _Scan, num_classes: int, data_cfg) -> ShardInfo:
    """Read one shard through the readers' tar reader and decoder; its video count and sha256."""
    videos = 0
    max_bytes = int(data_cfg.max_member_mb * 2**20)
    with fs.open(path, "rb") as f:
        reader = _HashingReader(f)
        decoder = None
        for raw in iter_tar_samples(reader, path, None, max_bytes, data_cfg.strict_members):
            if scan.layout is None:
                scan.layout = _layout_of(raw, path)
            decoder = decoder or _decoder(scan.layout, num_classes, split, data_cfg)
            try:
                row = decoder(raw)
            except BadSampleError as exc:
                raise DataError(
                    f"{exc} (indexing takes dimensions and grid from the first sample: {scan.layout.where})"
                ) from None
            videos += 1
            scan.extra_members += row["extra_members"]
            segments = json.loads(row.get("segments", "[]"))
            if segments:
                scan.labelled.add(split)
            ids = [int(c) for c in row["labels"]] + [int(s[2]) for s in segments]
            scan.max_class = max([scan.max_class, *ids])
        sha = reader.drain()
    return ShardInfo(path=rel, videos=videos, sha256=sha)


def list_tars(fs, base: str) -> list[str]:
    """Relative paths of the ``.tar`` files under ``base`` (any depth; hidden files and temporaries left out)."""
    found = []
    for path in fs.find(base):
        rel = path[len(base) :].lstrip("/")
        if rel.endswith(".tar") and not any(p.startswith(".") for p in rel.split("/")):
            reason = unsafe_shard_path_reason(rel)
            if reason:
                raise DataError(f"shard {rel!r}: path {reason}")
            found.append(rel)
    return sorted(found)


# ---------------------------------------------------------------------------------------------- index
def index_dataset(
    root: str,
    *,
    storage_cfg=None,
    data_cfg=None,
    classes: Sequence[str] | None = None,
    split_patterns: dict[str, list[str]] | None = None,
    dataset: str | None = None,
    overwrite: bool = False,
) -> IndexReport:
    """Read every tar under ``root`` and write its ``manifest.json`` (module docstring); the report.

    An existing manifest is kept (error) unless ``overwrite``. Any bad sample, or a sample whose dimensions
    or grid differ from the first one's, is a :class:`DataError` naming shard, sample and field."""
    from ..config import DataConfig

    data_cfg = data_cfg or DataConfig()
    fs, base = get_fs(root, storage_cfg)
    with storage_errors(root, storage_cfg):
        if fs.exists(join(base, MANIFEST_NAME)) and not overwrite:
            raise DataError(f"{join(root, MANIFEST_NAME)} exists; pass --overwrite to replace it")
        paths = list_tars(fs, base)
    if not paths:
        raise DataError(f"no .tar files under {root!r}")
    by_split, left_out = assign_splits(paths, split_patterns)
    if not by_split:
        raise DataError(f"no tar under {root!r} matched a --split pattern ({len(left_out)} tar(s) found)")
    num_classes = len(classes) if classes else MAX_INFERRED_CLASSES
    scan = _Scan()
    splits = {}
    with storage_errors(root, storage_cfg):
        for split, rels in by_split.items():
            shards = [_index_shard(fs, join(base, r), r, split, scan, num_classes, data_cfg) for r in rels]
            splits[split] = SplitInfo(videos=sum(s.videos for s in shards), shards=shards)
            log.info("index: split %s: %d videos in %d shards", split, splits[split].videos, len(shards))
    if scan.layout is None:
        raise DataError(f"the tars under {root!r} hold no samples")
    names = list(classes) if classes else [str(i) for i in range(max(scan.max_class + 1, 1))]
    classes_from = "class list" if classes else "label ids"
    manifest = Manifest(
        dataset=dataset or posixpath.basename(base.rstrip("/")) or "dataset",
        version=VERSION,
        classes=names,
        visual_dim=scan.layout.visual_dim,
        audio_dim=scan.layout.audio_dim,
        grid=scan.layout.grid,
        splits=splits,
        extra={
            "indexed": {"classes_from": classes_from, "extra_members": scan.extra_members, "not_indexed": left_out},
            UNLABELLED_SPLITS: [s for s in EVAL_SPLITS if s in splits and s not in scan.labelled],
        },
    )
    write_manifest(root, manifest, storage_cfg)
    return IndexReport(manifest, classes_from, scan.extra_members, left_out)
