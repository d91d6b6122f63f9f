"""Reading a split: Ray Data streaming (``read_split``) and a Ray-free reader (``iter_local_samples``).

Both read the shards the manifest lists (never a directory listing) and run every sample through
the same :class:`~clasp_dist.data.sample_rows.SampleDecoder`, for local roots and ``s3://`` alike.

Rows (docs/CONTRACTS.md): ``video_id``, ``visual`` float16 ``[T, Dv]``, ``audio`` float16 ``[T, Da]``,
``labels`` int64 ``[n]``, ``duration``, ``num_steps``, ``fps``, ``feat_stride``, ``window``, ``error``
(``""``; with ``bad_sample_policy=skip`` a skipped sample's message), ``truncated_steps``,
``extra_members`` (members other than the three skipped unread; ``data.strict_members``) and, only when
``include_segments`` (never for ``train``), ``segments`` (JSON ``[[s, e, cls], ...]``).

Skipped samples: ``iter_local_samples`` drops them itself and counts them in the ``stats`` it is given
(or a fresh one, logged at the end), failing past ``data.max_skipped_fraction``. In Ray Data streams
the flagged rows travel on to the consumer, whose collate (:mod:`clasp_dist.data.batch`) drops and
counts them the same way (the evaluator's predictor does it in ``map_batches``, then checks the split
with :func:`check_all_seen`).
Ray is imported lazily, only here and in ``batch.py``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..config import DataConfig
from .errors import BadShardError, DataError
from .filesystem import get_arrow_fs, get_fs, join, storage_errors
from .manifest import Manifest, check_shard_file, read_manifest
from .sample_rows import SampleDecoder, SkipStats

if TYPE_CHECKING:  # pragma: no cover
    import ray.data

log = logging.getLogger(__name__)


def _data_cfg(cfg):
    if cfg is None:
        return DataConfig()
    return cfg


def make_decoder(manifest: Manifest, data_cfg, include_segments: bool, policy: str | None = None) -> SampleDecoder:
    """The one decoder of a split (both readers, ``inspect_data``): dims, grid and bounds from the manifest/config."""
    data_cfg = _data_cfg(data_cfg)
    return SampleDecoder(
        visual_dim=manifest.visual_dim,
        audio_dim=manifest.audio_dim,
        num_classes=manifest.num_classes,
        include_segments=include_segments,
        length_tolerance=data_cfg.length_mismatch_tolerance,
        policy=policy or data_cfg.bad_sample_policy,
        grid=manifest.grid,
        step_tolerance=data_cfg.step_count_tolerance,
        step_tolerance_fraction=data_cfg.step_count_tolerance_fraction,
        max_member_bytes=int(data_cfg.max_member_mb * 2**20),
        strict_members=data_cfg.strict_members,
    )


def _check_segments_allowed(split: str, include_segments: bool) -> None:
    if include_segments and split == "train":
        raise DataError("segments of the train split are never read (weakly supervised training: video labels only)")


def read_split(
    root: str,
    split: str,
    data_cfg=None,
    storage_cfg=None,
    include_segments: bool = False,
    manifest: Manifest | None = None,
) -> ray.data.Dataset:
    """A lazy Ray Dataset of one split's rows (module docstring), one row per video, shard order.

    Read tasks reserve ``data_cfg.read_num_cpus`` CPUs each (fractional, so that reads never
    starve train workers); at most one read task per CPU the cluster can grow to runs at a time. S3 roots are read
    through a native ``pyarrow.fs.S3FileSystem``.
    """
    import ray.data

    data_cfg = _data_cfg(data_cfg)
    _check_segments_allowed(split, include_segments)
    manifest = manifest or read_manifest(root, storage_cfg)
    shards = manifest.split(split).shards
    if not shards:
        raise DataError(f"split {split!r} of {root!r} has no shards")
    fs, local_base = get_fs(root, storage_cfg)
    for s in shards:  # a FIFO or device shard would hang a read task: refused here, under either policy
        with contextlib.suppress(FileNotFoundError):  # a missing shard is the read's (counted under skip)
            check_shard_file(fs, local_base, join(local_base, s.path))
    filesystem, base = get_arrow_fs(root, storage_cfg)
    paths = [join(base, s.path) for s in shards]
    source = _shard_datasource_class()(
        paths,
        decoder=make_decoder(manifest, data_cfg, include_segments),
        expected={p: s.videos for p, s in zip(paths, shards)},
        filesystem=filesystem,
        file_extensions=["tar"],
    )
    return ray.data.read_datasource(
        source,
        num_cpus=data_cfg.read_num_cpus,
        override_num_blocks=len(paths),
        concurrency=_read_concurrency(len(paths)),
    )


ROWS_PER_BLOCK = 512


@functools.cache
def _shard_datasource_class():
    """Ray Data's file datasource reading shards with the shared bounded tar reader and decoder
    (``ray.data.read_webdataset``'s own tar reader decompresses, expands sparse members and reads
    members of any size before a decoder sees them)."""
    from ray.data.datasource import FileBasedDatasource

    class ShardDatasource(FileBasedDatasource):
        _FILE_EXTENSIONS = ["tar"]

        def __init__(self, paths, decoder: SampleDecoder, expected: dict, **kwargs):
            super().__init__(paths, **kwargs)
            self.decoder, self.expected = decoder, expected

        def _read_stream(self, stream, path: str):
            import pandas as pd

            rows = []
            for row in decode_shard(self.decoder, stream, path, _expected_for(self.expected, path)):
                rows.append(row)
                if len(rows) >= ROWS_PER_BLOCK:
                    yield pd.DataFrame.from_records(rows)
                    rows = []
            if rows:
                yield pd.DataFrame.from_records(rows)

    ShardDatasource.__module__ = __name__
    return ShardDatasource


def _expected_for(expected: dict, path: str) -> int | None:
    """The manifest's count for a path as Ray hands it back (it may drop a leading '/')."""
    if path in expected:
        return expected[path]
    matches = [n for p, n in expected.items() if p.lstrip("/") == path.lstrip("/")]
    return matches[0] if len(matches) == 1 else None


def decode_shard(decoder: SampleDecoder, fileobj, path: str, expected: int | None) -> Iterator[dict]:
    """Rows of one shard for a Ray read task: under ``skip`` a damaged archive ends with one bad row
    saying how many videos it lost (the Ray-free reader counts each lost video instead)."""
    decoded = 0
    try:
        for row in decoder.rows(fileobj, path, expected):
            decoded += 1
            yield row
    except BadShardError as exc:
        if decoder.policy != "skip":
            raise
        lost = f"{max(0, (expected or 0) - decoded)} video(s) of this shard lost"
        yield decoder.bad_row(exc.video_id or "?", f"{exc} ({lost})")


def _read_concurrency(num_paths: int) -> int | None:
    """Concurrent read tasks (:func:`clasp_dist.training.capacity.read_task_limit`), sized from what the cluster can grow
    to, so that the reads of a run started on a CPU-0 head spread over the GPU nodes that join later."""
    import ray

    from ..training.capacity import growable_resources, read_task_limit

    if not ray.is_initialized():
        return read_task_limit(num_paths, {"CPU": os.cpu_count() or 1})
    return read_task_limit(num_paths, growable_resources()[0])


def check_all_seen(video_ids: Sequence[str], expected: int, skipped: int = 0, split: str = "") -> None:
    """Every video exactly once: no duplicates and ``len(video_ids) + skipped == expected``."""
    counts = collections.Counter(video_ids)
    seen = set(counts)
    if len(seen) != len(video_ids):
        dup = sorted(v for v, n in counts.items() if n > 1)[:5]
        raise DataError(f"split {split!r}: videos seen more than once: {dup}")
    if len(seen) + skipped != expected:
        raise DataError(f"split {split!r}: saw {len(seen)} videos (+{skipped} skipped), manifest lists {expected}")


def iter_local_samples(
    root: str,
    split: str,
    data_cfg=None,
    storage_cfg=None,
    include_segments: bool = False,
    manifest: Manifest | None = None,
    stats: SkipStats | None = None,
) -> Iterator[dict]:
    """The same rows as :func:`read_split`, in manifest order, without Ray; bad rows dropped and counted.

    Reads each tar as a stream through fsspec (local or S3). With ``bad_sample_policy=skip`` a
    corrupt or truncated shard costs its remaining videos (counted); past
    ``data.max_skipped_fraction`` of the split, :class:`TooManySkippedError` is raised.
    """
    data_cfg = _data_cfg(data_cfg)
    _check_segments_allowed(split, include_segments)
    manifest = manifest or read_manifest(root, storage_cfg)
    decoder = make_decoder(manifest, data_cfg, include_segments)
    stats = stats if stats is not None else SkipStats(split=split)
    fs, base = get_fs(root, storage_cfg)
    for shard in manifest.split(split).shards:
        yield from _iter_shard(fs, join(base, shard.path), shard.videos, decoder, stats, root, storage_cfg, base)
        stats.check(data_cfg.max_skipped_fraction)
    if stats.skipped or stats.truncated:
        log.warning("data: %s", stats.summary())
    elif stats.extra_members:
        log.info("data: %s", stats.summary())


def _iter_shard(fs, path: str, expected: int, decoder: SampleDecoder, stats: SkipStats, root, storage_cfg, base):
    decoded = 0
    try:
        check_shard_file(fs, base, path)
        with storage_errors(root, storage_cfg), fs.open(path, "rb") as f:
            for row in decoder.rows(f, path, expected):
                decoded += 1
                stats.record(row["error"], row["truncated_steps"], row["extra_members"])
                if not row["error"]:
                    yield row
    except BadShardError as exc:
        if decoder.policy != "skip":
            raise
        stats.add_lost(max(0, expected - decoded), str(exc))
    except (FileNotFoundError, IsADirectoryError) as exc:
        reason = "missing" if isinstance(exc, FileNotFoundError) else "is a directory, not a tar file"
        if decoder.policy != "skip":
            raise BadShardError(f"shard file {reason}", shard=path) from None
        stats.add_lost(expected, f"shard {path}: {reason}")
