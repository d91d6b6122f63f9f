"""Ray Data streaming of shards (local and S3) through PaddingCollate; evaluation reads; bad samples in Ray."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clasp_dist.config import DataConfig
from clasp_dist.data import generate_dataset, read_manifest
from clasp_dist.data.batch import collate_rows, iter_train_batches
from clasp_dist.data.sample_rows import SkipStats
from clasp_dist.data.split_reader import check_all_seen, iter_local_samples, read_split
from tests.data.data_helpers import good_members, one_sample_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _check_against_local(root: str, batches, split: str = "train") -> None:
    manifest = read_manifest(root)
    local = {r["video_id"]: r for r in iter_local_samples(root, split)}
    seen = []
    for batch in batches:
        B, T, _ = batch.visual.shape
        assert batch.audio.shape == (B, T, manifest.audio_dim) and batch.mask.shape == (B, T)
        assert batch.labels.shape == (B, manifest.num_classes) and batch.segments is None
        for i, vid in enumerate(batch.video_id):
            row = local[vid]
            n = row["num_steps"]
            assert int(batch.num_steps[i]) == n and batch.mask[i].sum() == n and bool(batch.mask[i, :n].all())
            np.testing.assert_array_equal(batch.visual[i, :n].numpy(), row["visual"].astype(np.float32))
            assert float(batch.visual[i, n:].abs().sum()) == 0.0
            assert sorted(np.flatnonzero(batch.labels[i].numpy()).tolist()) == row["labels"].tolist()
            assert abs(float(batch.step_s[i]) - 0.32) < 1e-9 and abs(float(batch.offset_s[i]) - 0.48) < 1e-9
        seen += batch.video_id
    assert sorted(seen) == sorted(local)


def test_stream_local_through_padding_collate(ray_session, tiny_root):
    manifest = read_manifest(tiny_root)
    ds = read_split(tiny_root, "train", DataConfig(), manifest=manifest)
    batches = list(iter_train_batches(ds, batch_size=8, num_classes=manifest.num_classes, shuffle_buffer=16, seed=3))
    assert len(batches) == 6
    _check_against_local(tiny_root, batches)


def test_stream_s3_through_padding_collate(ray_session, s3_bucket, tiny_root):
    root = generate_dataset(f"{s3_bucket}/tiny", "tiny", seed=0, workers=1, progress=False)
    assert [s.sha256 for s in read_manifest(root).splits["train"].shards] == [
        s.sha256 for s in read_manifest(tiny_root).splits["train"].shards
    ]
    ds = read_split(root, "train")
    _check_against_local(tiny_root, iter_train_batches(ds, batch_size=5, num_classes=100))


def test_eval_read_sees_every_video_once_with_segments(ray_session, tiny_root):
    ds, expected = read_split(tiny_root, "test", include_segments=True), read_manifest(tiny_root).split("test").videos
    ids, segments = [], {}
    for batch in iter_train_batches(ds, batch_size=3, num_classes=100):
        ids += batch.video_id
        segments.update(zip(batch.video_id, batch.segments))
    check_all_seen(ids, expected, split="test")
    assert expected == 16
    local = {r["video_id"]: r for r in iter_local_samples(tiny_root, "test", include_segments=True)}
    assert all([list(s) for s in segments[v]] == json.loads(local[v]["segments"]) for v in ids)
    with pytest.raises(Exception, match="saw 15 videos"):
        check_all_seen(ids[:-1], expected, split="test")
    with pytest.raises(Exception, match="never read"):
        read_split(tiny_root, "train", include_segments=True)


def test_collate_rows_matches_padding_collate(ray_session, tiny_root):
    rows = list(iter_local_samples(tiny_root, "validation", include_segments=True))[:4]
    batch = collate_rows(rows, 100)
    assert batch.visual.shape == (4, max(r["num_steps"] for r in rows), 32) and batch.visual.dtype.is_floating_point
    assert batch.segments[0] == [tuple(s) for s in json.loads(rows[0]["segments"])]


def _bad_root(tmp_path):
    members = good_members("bad")
    members["visual.npy"] = members["visual.npy"][:-20]  # truncated .npy
    return str(one_sample_dataset(tmp_path, members, vid="bad", with_good_neighbours=3))


def test_bad_sample_error_in_ray_names_shard_sample_field(ray_session, tmp_path):
    ds = read_split(_bad_root(tmp_path), "validation", DataConfig(bad_sample_policy="error"), include_segments=True)
    with pytest.raises(Exception) as info:
        list(iter_train_batches(ds, batch_size=2, num_classes=5))
    text = str(info.value)
    assert "validation-000000.tar" in text and "'bad'" in text and "'visual.npy'" in text and "unreadable .npy" in text


def test_bad_sample_skipped_in_ray_is_counted(ray_session, tmp_path):
    cfg = DataConfig(bad_sample_policy="skip", max_skipped_fraction=0.3)
    root = _bad_root(tmp_path)
    ds, expected = (
        read_split(root, "validation", cfg, include_segments=True),
        read_manifest(root).split("validation").videos,
    )
    stats = SkipStats(split="validation")
    ids = [
        v
        for b in iter_train_batches(ds, 2, 5, stats=stats, max_skipped_fraction=cfg.max_skipped_fraction)
        for v in b.video_id
    ]
    assert sorted(ids) == ["good0", "good1", "good2"] and (stats.seen, stats.skipped) == (4, 1)
    check_all_seen(ids, expected, stats.skipped)
    assert "'bad'" in stats.messages[0] and "'visual.npy'" in stats.messages[0]
    train_stats = SkipStats()
    list(iter_train_batches(read_split(root, "validation", cfg), 4, 5, stats=train_stats))
    assert train_stats.skipped == 1
    with pytest.raises(Exception, match="max_skipped_fraction=0.1"):
        list(iter_train_batches(read_split(root, "validation", cfg), 4, 5, max_skipped_fraction=0.1))
