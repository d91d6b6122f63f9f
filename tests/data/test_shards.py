"""Shard writer, manifest and readers without Ray: round trips (local, S3), ids, manifest errors, crash safety."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from clasp_dist.config import DataConfig
from clasp_dist.data import DataError, ManifestError, read_manifest, verify_checksums
from clasp_dist.data.format import VideoSample, check_video_id
from clasp_dist.data.grid import I3D_GRID
from clasp_dist.data.inspection import inspect_dataset
from clasp_dist.data.split_reader import iter_local_samples
from clasp_dist.data.writer import write_dataset
from tests.data.data_helpers import good_members, tar_bytes, write_dataset_from_tars

CLASSES = ["a", "b", "c", "d"]


def _samples(n: int, seed: int = 0) -> list[VideoSample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        steps = int(rng.integers(3, 12))
        out.append(
            VideoSample(
                f"vid{i:03d}",
                rng.standard_normal((steps, 6)).astype(np.float16),
                rng.standard_normal((steps, 3)).astype(np.float16),
                duration=steps * 0.32,
                labels=[int(i % 4), 0],
                segments=[(0.1, 0.9, int(i % 4)), (0.2, 0.5, 0)],
            )
        )
    return out


def _identity(sample):
    return sample


def _write_splits(root: str, split_items: dict, make_sample=_identity, shard_size=3, **options):
    """write_dataset of this file's toy dataset `t` (CLASSES, 6/3-dim features, the I3D grid)."""
    return write_dataset(
        root,
        dataset="t",
        classes=CLASSES,
        visual_dim=6,
        audio_dim=3,
        grid=I3D_GRID,
        split_items=split_items,
        make_sample=make_sample,
        shard_size=shard_size,
        progress=False,
        **options,
    )


def _write(root: str, samples, storage_cfg=None, shard_size=3, workers=1):
    """The first 5 samples as train, the rest as validation."""
    split_items = {"train": samples[:5], "validation": samples[5:]}
    return _write_splits(root, split_items, shard_size=shard_size, workers=workers, storage_cfg=storage_cfg)


def _check_round_trip(root: str, samples, storage_cfg=None):
    manifest = read_manifest(root, storage_cfg)
    assert manifest.splits["train"].videos == 5 and len(manifest.splits["train"].shards) == 2
    assert verify_checksums(root, manifest, storage_cfg) == []
    train = list(iter_local_samples(root, "train", storage_cfg=storage_cfg))
    val = list(iter_local_samples(root, "validation", storage_cfg=storage_cfg, include_segments=True))
    for row, sample in zip(train + val, samples):
        assert row["video_id"] == sample.video_id
        assert row["visual"].dtype == np.float16 and row["visual"].tobytes() == sample.visual.tobytes()
        assert row["audio"].tobytes() == sample.audio.tobytes()
        assert row["labels"].tolist() == sorted(set(sample.labels))
        assert row["num_steps"] == sample.visual.shape[0]
    assert all("segments" not in r for r in train)
    assert json.loads(val[0]["segments"]) == [list(s) for s in samples[5].segments]


def test_round_trip_local(tmp_path):
    samples = _samples(8)
    _write(str(tmp_path / "ds"), samples)
    _check_round_trip(str(tmp_path / "ds"), samples)


def test_round_trip_s3(s3_bucket):
    samples = _samples(8)
    root = f"{s3_bucket}/some/prefix"
    _write(root, samples, workers=2)
    _check_round_trip(root, samples)


def test_member_order_and_no_segments_in_train(tmp_path):
    _write(str(tmp_path), _samples(8))
    with tarfile.open(tmp_path / "train-000000.tar") as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile("vid000.meta.json").read())
    assert names[:3] == ["vid000.visual.npy", "vid000.audio.npy", "vid000.meta.json"]
    assert set(meta) == {"video_id", "duration", "fps", "feat_stride", "window", "labels"}
    assert meta["labels"] == [0]


def test_video_id_with_dot_is_rejected(tmp_path):
    sample = _samples(1)[0]
    sample.video_id = "abc.def"
    with pytest.raises(DataError, match=r"'abc\.def'.*'\.'"):
        _write(str(tmp_path), [sample] * 6)
    with pytest.raises(DataError):
        check_video_id("a/b")
    assert check_video_id("__2MwJ2uHu0") == "__2MwJ2uHu0"  # a real UnAV id


def test_missing_manifest_names_root(tmp_path):
    with pytest.raises(ManifestError, match=str(tmp_path)):
        read_manifest(str(tmp_path))


def test_newer_manifest_version_refused(tmp_path):
    write_dataset_from_tars(tmp_path, {"train": [(tar_bytes([("v", good_members("v", segments=None))]), 1)]}, version=2)
    with pytest.raises(ManifestError, match="version 2 is newer"):
        read_manifest(str(tmp_path))


def test_manifest_count_mismatch_refused(tmp_path):
    write_dataset_from_tars(tmp_path, {"train": [(tar_bytes([("v", good_members("v", segments=None))]), 1)]})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["splits"]["train"]["videos"] = 7
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="'videos' is 7 but its shards hold 1"):
        read_manifest(str(tmp_path))


def test_checksum_mismatch_reported(tmp_path):
    data = tar_bytes([("v", good_members("v", segments=None))])
    write_dataset_from_tars(tmp_path, {"train": [(data, 1)]}, sha_override="0" * 64)
    problems = verify_checksums(str(tmp_path), read_manifest(str(tmp_path)))
    assert len(problems) == 1 and "train-000000.tar" in problems[0] and "sha256" in problems[0]
    report = inspect_dataset(str(tmp_path))
    assert not report.ok and any("sha256" in p for p in report.all_problems())


class _Boom(Exception):
    pass


def _explode_on_fifth(sample):
    if sample.video_id == "vid004":
        raise _Boom("writer killed")
    return sample


def _write_train(root: str, make_sample=_explode_on_fifth, extra: dict | None = None):
    """8 train videos, 3 per shard; by default killed at the fifth video (in the second shard)."""
    return _write_splits(root, {"train": _samples(8)}, make_sample, extra=extra)


def test_killed_writer_leaves_no_manifest_and_no_partial_shard(tmp_path):
    root = tmp_path / "ds"
    _write(str(root), _samples(8))  # a previous good dataset: its manifest must go first
    with pytest.raises(_Boom):
        _write_train(str(root))
    assert not (root / "manifest.json").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporaries left behind
    with tarfile.open(root / "train-000001.tar") as tar:  # shard 1 (vid003..) is the old, complete one
        assert len(tar.getnames()) == 6


def test_rewriting_the_same_generated_dataset_keeps_its_manifest(tmp_path):
    """Two first runs filling an object-storage cache at once both generate the same bytes: the one still writing
    must not remove the manifest the other has written and is reading from (a Tune trial failed that way on the
    simulated cluster). A different dataset in the same folder still loses its manifest first."""
    root = tmp_path / "ds"
    same = {"synth": {"profile": "x", "seed": 0}}

    def rewrite(extra):
        with pytest.raises(_Boom):  # killed mid-write: what is left is what a concurrent reader sees
            _write_train(str(root), extra=extra)

    _write_train(str(root), make_sample=_identity, extra=same)
    rewrite(same)
    assert read_manifest(str(root)).extra["synth"] == same["synth"]
    rewrite({"synth": {"profile": "x", "seed": 1}})
    assert not (root / "manifest.json").exists()


def test_killed_writer_on_s3_leaves_nothing(s3_bucket):
    root = f"{s3_bucket}/ds"
    with pytest.raises(_Boom):
        _write_train(root)
    from clasp_dist.data.filesystem import get_fs

    fs, base = get_fs(root)
    names = sorted(p.rsplit("/", 1)[1] for p in fs.find(base))
    assert names == ["train-000000.tar"]  # the complete first shard only: no half shard, no manifest


def test_manifest_extra_keys_kept_and_data_config_defaults(tmp_path):
    m = _write(str(tmp_path), _samples(8))
    assert read_manifest(str(tmp_path)).extra["writer_counts"] == m.extra["writer_counts"]
    assert DataConfig().bad_sample_policy == "error"
