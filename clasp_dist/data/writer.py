"""Writing a dataset: shards in parallel, then the manifest (shard format of :mod:`.format`).

Crash safety: every shard is written atomically (local: temporary + rename; S3: the object appears
when its upload completes) and its sha256 is computed while streaming; any previous manifest is
deleted first and the new one is written last, so a killed writer never leaves a manifest that
points at a half-written shard. Tar headers are fixed (mtime 0, uid 0, ...) so a dataset's bytes
depend only on its content, not on the worker count, the machine or the time.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing as mp
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from .errors import DataError
from .filesystem import atomic_write, ensure_dir, get_fs, join, storage_errors
from .format import VERSION, VideoSample, encode_sample, shard_name
from .grid import Grid
from .manifest import MANIFEST_NAME, Manifest, ShardInfo, SplitInfo, write_manifest
from .splits import EVAL_SPLITS, SPLITS, unknown_split

DEFAULT_SHARD_SIZE = 256


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


def write_shard(
    fs, path: str, samples: Iterable[VideoSample | None], grid: Grid, include_segments: bool
) -> tuple[int, str, dict]:
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


def _rewrites_same_dataset(root: str, storage_cfg, extra: dict | None) -> bool:
    """The manifest at `root` describes a generated dataset with this very `extra` (its generator's parameters):
    the write about to start rewrites every shard with the same bytes, so that manifest stays true throughout.
    Keeping it lets a concurrent first run (two trials filling an object-storage cache at once) that already
    finished read the dataset while the other one is still writing."""
    from .errors import ManifestError
    from .manifest import read_manifest

    if not extra or "synth" not in extra:
        return False
    try:
        return read_manifest(root, storage_cfg).extra.get("synth") == extra["synth"]
    except ManifestError:
        return False


def write_dataset(
    root: str,
    *,
    dataset: str,
    classes: Sequence[str],
    visual_dim: int,
    audio_dim: int,
    grid: Grid,
    split_items: dict[str, Sequence[Any]],
    make_sample: Callable[[Any], VideoSample],
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 1,
    storage_cfg=None,
    extra: dict | None = None,
    progress: bool = True,
) -> Manifest:
    """Write every split's items (``make_sample(item) -> VideoSample | None``, picklable) as shards, then
    the manifest.

    Items are written in the given order, ``shard_size`` per shard; ``workers`` processes write
    shards in parallel (the bytes do not depend on it). Evaluation splits keep their segments,
    ``train`` never does. Samples the producer truncated or dropped are counted per split into the
    manifest's ``writer_counts`` (an extra key). An existing manifest is removed first, unless it describes
    the same generated dataset (same ``extra["synth"]`` parameters: same bytes, see `_rewrites_same_dataset`).
    """
    if shard_size < 1:
        raise DataError("shard_size must be >= 1")
    for name in split_items:
        if name not in SPLITS:
            raise DataError(unknown_split(name))
    fs, base = get_fs(root, storage_cfg)
    with storage_errors(root, storage_cfg):
        if fs.exists(join(base, MANIFEST_NAME)) and not _rewrites_same_dataset(root, storage_cfg, extra):
            fs.rm(join(base, MANIFEST_NAME))  # a crash from here on leaves no manifest, never a stale one
        ensure_dir(fs, base)  # a no-op on object storage (never creates a bucket)
    tasks = [
        _ShardTask(
            root,
            storage_cfg,
            name,
            i // shard_size,
            list(items[i : i + shard_size]),
            make_sample,
            grid,
            name in EVAL_SPLITS,
        )
        for name, items in split_items.items()
        for i in range(0, len(items), shard_size)
    ]
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
    manifest = Manifest(
        dataset=dataset,
        version=VERSION,
        classes=list(classes),
        visual_dim=visual_dim,
        audio_dim=audio_dim,
        grid=grid,
        splits=splits,
        extra={**(extra or {}), "writer_counts": counts},
    )
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
    pool = ctx.Pool(min(workers, len(tasks)))
    try:
        yield from pool.imap_unordered(fn, tasks)
        # Let the workers exit on their own: a SIGTERM (Pool's exit) makes the failure-signal handlers that a
        # forked child inherits from Ray's core worker print stack dumps into a normal run's output.
        pool.close()
        pool.join()
    finally:
        pool.terminate()  # an error or an abandoned iteration: stop the workers
