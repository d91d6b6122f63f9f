"""Shard format version 1 (SPEC 2.2): the writer, the manifest and checksums.

A dataset root holds ``manifest.json`` and WebDataset tars ``{split}-{NNNNNN}.tar``; each video is
one sample of three members in this order: ``<id>.visual.npy`` (float16 ``[T, Dv]``),
``<id>.audio.npy`` (float16 ``[T, Da]``), ``<id>.meta.json``. Video ids containing '.' (or '/') are
**rejected** at write time (WebDataset keys end at the first dot).

Crash safety: every shard is written atomically (local: temporary + rename; S3: the object appears
when its upload completes) and its sha256 is computed while streaming; any previous manifest is
deleted first and the new one is written last, so a killed writer never leaves a manifest that
points at a half-written shard. Tar headers are fixed (mtime 0, uid 0, ...) so a dataset's bytes
depend only on its content, not on the worker count, the machine or the time.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import multiprocessing as mp
import tarfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from .errors import ChecksumError, DataError, ManifestError
from .filesystem import atomic_write, ensure_dir, get_fs, join, storage_errors
from .grid import Grid

log = logging.getLogger(__name__)

FORMAT = "clasp-shards"
VERSION = 1
MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "validation", "test")
EVAL_SPLITS = ("validation", "test")
DEFAULT_SHARD_SIZE = 256
MEMBERS = ("visual.npy", "audio.npy", "meta.json")


@dataclass(frozen=True)
class ShardInfo:
    path: str
    """Relative to the dataset root."""
    videos: int
    sha256: str


@dataclass(frozen=True)
class SplitInfo:
    videos: int
    shards: list[ShardInfo]


@dataclass(frozen=True)
class Manifest:
    dataset: str
    version: int
    classes: list[str]
    visual_dim: int
    audio_dim: int
    grid: Grid
    splits: dict[str, SplitInfo]
    extra: dict[str, Any] = field(default_factory=dict)
    """Any further top-level keys (kept on a round trip)."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> SplitInfo:
        if name not in self.splits:
            raise ManifestError(f"manifest has no split {name!r} (it has: {', '.join(self.splits) or 'none'})")
        return self.splits[name]

    def to_dict(self) -> dict:
        d = {"format": FORMAT, "version": self.version, "dataset": self.dataset, "classes": list(self.classes),
             "visual_dim": self.visual_dim, "audio_dim": self.audio_dim, "grid": self.grid.to_dict(),
             "splits": {name: {"videos": s.videos, "shards": [vars(sh) for sh in s.shards]}
                        for name, s in self.splits.items()}}
        return {**self.extra, **d}

    @classmethod
    def from_dict(cls, d: dict, where: str = "manifest") -> "Manifest":
        return _parse_manifest(d, where)


@dataclass
class VideoSample:
    """One video as the writer takes it."""

    video_id: str
    visual: np.ndarray  # [T, Dv]
    audio: np.ndarray  # [T, Da]
    duration: float
    labels: Sequence[int]
    segments: Optional[Sequence[tuple[float, float, int]]] = None
    """(start_s, end_s, class_id); written for evaluation splits only."""
    truncated_steps: int = 0
    """Steps the producer cut to align the streams (counted into the manifest, not written)."""


# --------------------------------------------------------------------------------------------- ids
MAX_ID_LENGTH = 200
"""Longest video id (a file name derived from it must fit the usual 255-byte limit)."""


def unsafe_id_reason(video_id: object) -> Optional[str]:
    """Why ``video_id`` cannot be a sample key or a file name, or None when it is safe.

    The one rule of the writer and of every reader (SPEC 2.2): a non-empty string without '.'
    (WebDataset keys end at the first dot; '..' and '.' are path steps), '/' or '\\' (a path,
    absolute or not), or control characters, and at most MAX_ID_LENGTH characters long. Anything derived
    from such an id stays inside its folder.
    """
    if not isinstance(video_id, str) or not video_id:
        return "must be a non-empty string"
    if len(video_id) > MAX_ID_LENGTH:
        return f"longer than {MAX_ID_LENGTH} characters"
    bad = [ch for ch in (".", "/", "\\") if ch in video_id]
    if bad:
        return f"contains {' '.join(repr(b) for b in bad)}"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in video_id):
        return "contains control characters"
    return None


def check_video_id(video_id: str) -> str:
    """Reject ids WebDataset cannot key: '.' starts the member suffix, '/' makes a directory."""
    reason = unsafe_id_reason(video_id)
    if reason is not None:
        raise DataError(f"video id {video_id!r} cannot be a WebDataset key ({reason}); "
                        "rename the video (ids with '.' are rejected, not escaped)")
    return video_id


# ---------------------------------------------------------------------------------------- encoding
def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def sample_meta(sample: VideoSample, grid: Grid, include_segments: bool) -> dict:
    meta = {"video_id": sample.video_id, "duration": float(sample.duration), "fps": grid.fps,
            "feat_stride": grid.feat_stride, "window": grid.window,
            "labels": sorted({int(c) for c in sample.labels})}
    if include_segments:
        meta["segments"] = [[float(s), float(e), int(c)] for s, e, c in (sample.segments or [])]
    return meta


def encode_sample(sample: VideoSample, grid: Grid, include_segments: bool) -> list[tuple[str, bytes]]:
    """The three tar members of a video, in the order of SPEC 2.2."""
    check_video_id(sample.video_id)
    if sample.visual.shape[0] != sample.audio.shape[0]:
        raise DataError(f"video {sample.video_id!r}: visual has {sample.visual.shape[0]} steps, "
                        f"audio {sample.audio.shape[0]}; align them before writing")
    meta = json.dumps(sample_meta(sample, grid, include_segments)).encode()
    return [(f"{sample.video_id}.visual.npy", npy_bytes(sample.visual.astype(np.float16, copy=False))),
            (f"{sample.video_id}.audio.npy", npy_bytes(sample.audio.astype(np.float16, copy=False))),
            (f"{sample.video_id}.meta.json", meta)]


class _HashingWriter(io.RawIOBase):
    """Write-through file wrapper computing sha256 and size on the fly."""

    def __init__(self, raw):
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.sha.update(b)
        self.size += len(b)
        self.raw.write(b)
        return len(b)


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def write_shard(fs, path: str, samples: Iterable[Optional[VideoSample]], grid: Grid,
                include_segments: bool) -> tuple[int, str, dict]:
    """Write one tar atomically; returns (videos, sha256, counts of ``truncated``/``dropped`` samples).

    A ``None`` sample is a video its producer dropped (counted, not written)."""
    count, counts = 0, {"truncated": 0, "dropped": 0}
    with atomic_write(fs, path) as f:
        hashing = _HashingWriter(f)
        with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for sample in samples:
                if sample is None:
                    counts["dropped"] += 1
                    continue
                for name, data in encode_sample(sample, grid, include_segments):
                    add_member(tar, name, data)
                count += 1
                counts["truncated"] += bool(sample.truncated_steps)
    return count, hashing.sha.hexdigest(), counts


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


# ---------------------------------------------------------------------------------------- manifest
def manifest_path(root: str) -> str:
    return join(root, MANIFEST_NAME)


def write_manifest(root: str, manifest: Manifest, storage_cfg=None) -> None:
    fs, base = get_fs(root, storage_cfg)
    with storage_errors(root, storage_cfg), atomic_write(fs, join(base, MANIFEST_NAME)) as f:
        f.write((json.dumps(manifest.to_dict(), indent=1) + "\n").encode())


def read_manifest(root: str, storage_cfg=None) -> Manifest:
    """Read and check ``<root>/manifest.json`` (format, version, dims, counts)."""
    fs, base = get_fs(root, storage_cfg)
    path = join(base, MANIFEST_NAME)
    try:
        with storage_errors(root, storage_cfg):
            raw = fs.cat_file(path)
    except FileNotFoundError:
        raise ManifestError(f"no {MANIFEST_NAME} under dataset root {root!r}: not a clasp-shards dataset "
                            "(create one with `jobs/prepare_data.py`)") from None
    try:
        d = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser's stack
        raise ManifestError(f"{manifest_path(root)}: not valid JSON ({type(exc).__name__}: {exc})") from None
    return _parse_manifest(d, manifest_path(root))


def _parse_manifest(d: Any, where: str) -> Manifest:
    """Check every field's type and range first, so that any malformed manifest is one ManifestError."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ManifestError(f"{where}: 'format' must be {FORMAT!r}, got {d.get('format') if isinstance(d, dict) else d!r}")
    version = d.get("version")
    if not is_int(version):
        raise ManifestError(f"{where}: 'version' must be an integer, got {version!r}")
    if version > VERSION:
        raise ManifestError(f"{where}: shard format version {version} is newer than this clasp-dist supports "
                            f"(<= {VERSION}); upgrade clasp-dist to read it")
    problems = _manifest_problems(d)
    if problems:
        raise ManifestError(f"{where}: " + "; ".join(problems[:MAX_LISTED])
                            + (f"; ... {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""))
    grid = d["grid"]
    return Manifest(
        dataset=str(d["dataset"]), version=version, classes=list(d["classes"]), visual_dim=d["visual_dim"],
        audio_dim=d["audio_dim"], grid=Grid(float(grid["fps"]), grid["feat_stride"], grid["window"]),
        splits={name: _parse_split(s) for name, s in d["splits"].items()},
        extra={k: v for k, v in d.items() if k not in _KNOWN_KEYS})


_KNOWN_KEYS = {"format", "version", "dataset", "classes", "visual_dim", "audio_dim", "grid", "splits"}
MAX_LISTED = 5
"""Problems (missing shards, bad entries) listed one by one before the rest are only counted."""


def is_int(value: Any) -> bool:
    """A JSON integer (not a bool, which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A finite JSON number (int or float; not a bool, NaN or Infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _manifest_problems(d: dict) -> list[str]:
    """Every schema violation of a manifest dict (SPEC 2.2), as 'key: what is wrong'."""
    problems = [f"missing key {k!r}" for k in sorted(_KNOWN_KEYS) if k not in d]
    if problems:
        return problems
    if not isinstance(d["dataset"], str):
        problems.append(f"'dataset' must be a string, got {short_repr(d['dataset'])}")
    if not isinstance(d["classes"], list) or not d["classes"] or not all(isinstance(c, str) for c in d["classes"]):
        problems.append("'classes' must be a non-empty list of class names")
    for key in ("visual_dim", "audio_dim"):
        if not is_int(d[key]) or d[key] < 1:
            problems.append(f"{key!r} must be an integer >= 1, got {short_repr(d[key])}")
    problems += _grid_problems(d["grid"])
    if not isinstance(d["splits"], dict):
        return problems + [f"'splits' must be an object {{name: {{videos, shards}}}}, got {type(d['splits']).__name__}"]
    seen: dict[str, str] = {}
    for name, split in d["splits"].items():
        problems += _split_problems(name, split, seen)
    return problems


def _grid_problems(grid: Any) -> list[str]:
    if not isinstance(grid, dict):
        return [f"'grid' must be an object {{fps, feat_stride, window}}, got {type(grid).__name__}"]
    problems = []
    if not is_finite_number(grid.get("fps")) or grid["fps"] <= 0:
        problems.append(f"'grid.fps' must be a finite number > 0, got {short_repr(grid.get('fps'))}")
    for key in ("feat_stride", "window"):
        if not is_int(grid.get(key)) or grid[key] < 1:
            problems.append(f"'grid.{key}' must be an integer >= 1, got {short_repr(grid.get(key))}")
    return problems


def _split_problems(name: str, split: Any, seen: dict[str, str]) -> list[str]:
    where = f"split {name!r}"
    if name not in SPLITS:
        return [f"unknown split {name!r} (allowed: {', '.join(SPLITS)})"]
    if not isinstance(split, dict) or not is_int(split.get("videos")) or split["videos"] < 0 \
            or not isinstance(split.get("shards"), list):
        return [f"{where} must be {{'videos': int >= 0, 'shards': [...]}}"]
    problems, total = [], 0
    for i, shard in enumerate(split["shards"]):
        if not isinstance(shard, dict) or not is_int(shard.get("videos")) or shard["videos"] < 0 \
                or not isinstance(shard.get("sha256"), str) or not isinstance(shard.get("path"), str):
            problems.append(f"{where} shard {i} must be {{'path': str, 'videos': int >= 0, 'sha256': str}}")
            continue
        total += shard["videos"]
        reason = unsafe_shard_path_reason(shard["path"])
        if reason:
            problems.append(f"{where}: shard path {shard['path']!r} {reason}")
        elif shard["path"] in seen:
            problems.append(f"{where}: shard path {shard['path']!r} is listed twice (also in split {seen[shard['path']]!r})")
        seen.setdefault(shard["path"], name)
    if not problems and total != split["videos"]:
        problems.append(f"{where}: 'videos' is {split['videos']} but its shards hold {total}")
    return problems


def unsafe_shard_path_reason(path: str) -> Optional[str]:
    """Why a manifest shard path is refused (None = fine): relative to the root, inside it, a '.tar' file."""
    parts = path.split("/")
    if not path or path.startswith(("/", "\\")) or "://" in path or (len(path) > 1 and path[1] == ":"):
        return "must be relative to the root"
    if any(p in ("", ".", "..") for p in parts) or "\\" in path:
        return "must be relative to the root and stay inside it (no '.', '..', empty or '\\' steps)"
    if not path.endswith(".tar"):
        return "must name a '.tar' file"
    return None


def short_repr(value: Any) -> str:
    """repr() cut to 80 characters, for error messages about untrusted values."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _parse_split(s: dict) -> SplitInfo:
    shards = [ShardInfo(path=x["path"], videos=x["videos"], sha256=x["sha256"]) for x in s["shards"]]
    return SplitInfo(videos=s["videos"], shards=shards)


def verify_checksums(root: str, manifest: Manifest, storage_cfg=None, splits: Optional[Sequence[str]] = None) -> list[str]:
    """sha256 of every shard against the manifest; returns the problems found (empty = all good).

    Missing shards are summarised in one problem (their count and the first few paths)."""
    fs, base = get_fs(root, storage_cfg)
    problems, missing = [], []
    for name, split in manifest.splits.items():
        if splits is not None and name not in splits:
            continue
        for shard in split.shards:
            try:
                with storage_errors(root, storage_cfg):
                    digest = file_sha256(fs, join(base, shard.path))
            except FileNotFoundError:
                missing.append(shard.path)
                continue
            except IsADirectoryError:
                problems.append(f"shard {shard.path}: is a directory, not a tar file")
                continue
            if digest != shard.sha256:
                problems.append(str(ChecksumError(f"shard {shard.path}: sha256 {digest} != manifest {shard.sha256}")))
    if missing:
        problems.insert(0, summarise_missing(missing))
    return problems


def summarise_missing(paths: Sequence[str]) -> str:
    """'N shard(s) missing: a, b, ... (first MAX_LISTED)' in one line, however many there are."""
    listed = ", ".join(paths[:MAX_LISTED]) + (f", ... (first {MAX_LISTED} of {len(paths)})" if len(paths) > MAX_LISTED else "")
    return f"{len(paths)} shard(s) missing: {listed}"


def file_sha256(fs, path: str, chunk: int = 8 << 20) -> str:
    sha = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while block := f.read(chunk):
            sha.update(block)
    return sha.hexdigest()


# ------------------------------------------------------------------------------ parallel dataset writer
@dataclass(frozen=True)
class _ShardTask:
    root: str
    storage_cfg: Any
    split: str
    index: int
    items: list
    make_sample: Callable[[Any], VideoSample]
    grid: Grid
    include_segments: bool


def _run_shard_task(task: _ShardTask) -> tuple[str, int, ShardInfo, dict]:
    fs, base = get_fs(task.root, task.storage_cfg)
    rel = shard_name(task.split, task.index)
    samples = (task.make_sample(item) for item in task.items)
    with storage_errors(task.root, task.storage_cfg):
        count, sha, counts = write_shard(fs, join(base, rel), samples, task.grid, task.include_segments)
    return task.split, task.index, ShardInfo(path=rel, videos=count, sha256=sha), counts


def write_dataset(root: str, *, dataset: str, classes: Sequence[str], visual_dim: int, audio_dim: int, grid: Grid,
                  split_items: dict[str, Sequence[Any]], make_sample: Callable[[Any], VideoSample],
                  shard_size: int = DEFAULT_SHARD_SIZE, workers: int = 1, storage_cfg=None,
                  extra: Optional[dict] = None, progress: bool = True) -> Manifest:
    """Write every split's items (``make_sample(item) -> VideoSample | None``, picklable) as shards, then
    the manifest.

    Items are written in the given order, ``shard_size`` per shard; ``workers`` processes write
    shards in parallel (the bytes do not depend on it). Evaluation splits keep their segments,
    ``train`` never does. Samples the producer truncated or dropped are counted per split into the
    manifest's ``writer_counts`` (an extra key).
    """
    from tqdm.auto import tqdm

    if shard_size < 1:
        raise DataError("shard_size must be >= 1")
    for name in split_items:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r} (allowed: {', '.join(SPLITS)})")
    fs, base = get_fs(root, storage_cfg)
    with storage_errors(root, storage_cfg):
        if fs.exists(join(base, MANIFEST_NAME)):
            fs.rm(join(base, MANIFEST_NAME))  # a crash from here on leaves no manifest, never a stale one
        ensure_dir(fs, base)  # a no-op on object storage (never creates a bucket)
    tasks = [_ShardTask(root, storage_cfg, name, i // shard_size, list(items[i:i + shard_size]), make_sample, grid,
                        name in EVAL_SPLITS)
             for name, items in split_items.items() for i in range(0, len(items), shard_size)]
    results: dict[tuple[str, int], ShardInfo] = {}
    counts = {name: {"truncated": 0, "dropped": 0} for name in split_items}
    total = sum(len(t.items) for t in tasks)
    with tqdm(total=total, unit="video", desc=f"writing {dataset} shards", disable=not progress) as bar:
        for split, index, info, shard_counts in _map(_run_shard_task, tasks, workers):
            results[(split, index)] = info
            for k, v in shard_counts.items():
                counts[split][k] += v
            bar.update(info.videos + shard_counts["dropped"])
    splits = {}
    for name in split_items:
        shards = [results[k] for k in sorted(k for k in results if k[0] == name)]
        splits[name] = SplitInfo(videos=sum(s.videos for s in shards), shards=shards)
    manifest = Manifest(dataset=dataset, version=VERSION, classes=list(classes), visual_dim=visual_dim,
                        audio_dim=audio_dim, grid=grid, splits=splits,
                        extra={**(extra or {}), "writer_counts": counts})
    write_manifest(root, manifest, storage_cfg)
    return manifest


def _map(fn, tasks: list, workers: int):
    """Unordered map over worker processes.

    Forked where the platform allows it (works from any ``__main__``, even stdin or a notebook; the
    children build their own filesystems and never touch Ray), spawned elsewhere.
    """
    if workers <= 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap_unordered(fn, tasks)
