"""Interoperability with the real `webdataset` library and `ray.data.read_webdataset`, both directions.

Our shards read by `webdataset.WebDataset` and by `ray.data.read_webdataset` give the same arrays and metadata as
our reader; shards written by `webdataset.ShardWriter` (default settings, an extra `.cls` member, members in its
sorted order) are indexed by `index_dataset`, read back with the same arrays, and train for an epoch.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from clasp_dist.data import read_manifest
from clasp_dist.data.index import index_dataset
from clasp_dist.data.split_reader import iter_local_samples

SPLITS = ("train", "validation", "test")


def _ours(root: str, split: str) -> dict[str, dict]:
    return {r["video_id"]: r for r in iter_local_samples(root, split, include_segments=split != "train")}


def _shard_urls(root: str, split: str) -> list[str]:
    return [str(Path(root) / s.path) for s in read_manifest(root).split(split).shards]


def _assert_same(ours: dict[str, dict], theirs: dict[str, dict], split: str) -> None:
    """`theirs`: video id -> (visual, audio, meta dict) decoded by the other library."""
    assert sorted(theirs) == sorted(ours)
    for vid, (visual, audio, meta) in theirs.items():
        row = ours[vid]
        assert visual.dtype == np.float16 and np.array_equal(visual, row["visual"])
        assert np.array_equal(audio, row["audio"])
        assert meta["labels"] == row["labels"].tolist() and meta["duration"] == row["duration"]
        assert (meta["fps"], meta["feat_stride"], meta["window"]) == (row["fps"], row["feat_stride"], row["window"])
        if split != "train":
            assert meta["segments"] == json.loads(row["segments"])


@pytest.mark.parametrize("split", ["train", "validation"])
def test_webdataset_reads_our_shards(tiny_root, split):
    theirs = {}
    for sample in wds.WebDataset(_shard_urls(tiny_root, split), shardshuffle=False, empty_check=False):
        theirs[sample["__key__"]] = (
            np.load(io.BytesIO(sample["visual.npy"])),
            np.load(io.BytesIO(sample["audio.npy"])),
            json.loads(sample["meta.json"]),
        )
    _assert_same(_ours(tiny_root, split), theirs, split)


@pytest.mark.slow
def test_ray_read_webdataset_reads_our_shards(ray_session, tiny_root):
    import ray.data

    rows = ray.data.read_webdataset(_shard_urls(tiny_root, "validation")).take_all()
    theirs = {r["__key__"]: (r["visual.npy"], r["audio.npy"], r["meta.json"]) for r in rows}
    _assert_same(_ours(tiny_root, "validation"), theirs, "validation")


def write_with_shardwriter(src_root: str, out: Path, per_shard: int = 12, limit: int = 0) -> None:
    """Rewrite a dataset's samples with `webdataset.ShardWriter` at its default settings: float32 arrays, an extra
    `.cls` member (the first label), members in the writer's sorted order, its own header stamps; ``limit`` > 0
    keeps the first videos of each split only."""
    out.mkdir(parents=True)
    for split in SPLITS:
        with wds.ShardWriter(str(out / f"{split}-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
            for i, row in enumerate(iter_local_samples(src_root, split, include_segments=split != "train")):
                if limit and i >= limit:
                    break
                meta = {k: row[k] for k in ("video_id", "duration", "fps", "feat_stride", "window")}
                meta["labels"] = row["labels"].tolist()
                if split != "train":
                    meta["segments"] = json.loads(row["segments"])
                sink.write(
                    {
                        "__key__": row["video_id"],
                        "visual.npy": row["visual"].astype(np.float32),
                        "audio.npy": row["audio"].astype(np.float32),
                        "meta.json": meta,
                        "cls": int(meta["labels"][0]) if meta["labels"] else 0,
                    }
                )


def test_shardwriter_shards_are_indexed_and_read_back(tiny_root, tmp_path):
    out = tmp_path / "wds"
    write_with_shardwriter(tiny_root, out)
    original = read_manifest(tiny_root)
    report = index_dataset(str(out), classes=original.classes)
    assert report.extra_members == sum(s.videos for s in original.splits.values())  # one .cls per video
    m = read_manifest(str(out))
    assert {n: s.videos for n, s in m.splits.items()} == {n: s.videos for n, s in original.splits.items()}
    assert len(m.split("train").shards) == -(-original.split("train").videos // 12)
    for split in SPLITS:
        ours, theirs = _ours(tiny_root, split), _ours(str(out), split)
        assert sorted(ours) == sorted(theirs)
        for vid, row in theirs.items():
            assert np.array_equal(row["visual"], ours[vid]["visual"]) and np.array_equal(
                row["audio"], ours[vid]["audio"]
            )
            assert row["labels"].tolist() == ours[vid]["labels"].tolist() and row["extra_members"] == 1


@pytest.mark.slow
def test_shardwriter_shards_train_for_an_epoch(ray_session, tiny_root, tmp_path):
    """The user's path: tars written by webdataset -> `clasp data index` -> one epoch of training -> test."""
    from clasp_dist.cli import main as clasp
    from clasp_dist.training.driver import run_training
    from tests.helpers import run_cfg

    out = tmp_path / "wds"
    write_with_shardwriter(tiny_root, out, per_shard=4, limit=8)  # 8 videos per split: 2 shards each
    (tmp_path / "classes.json").write_text(json.dumps(read_manifest(tiny_root).classes))
    assert clasp(["data", "index", f"data.root={out}", "--classes", str(tmp_path / "classes.json")]) == 0
    summary = run_training(run_cfg(tmp_path / "run", str(out), "train.epochs=1"))
    assert (summary.run_dir / "metrics.json").is_file()
    assert 0.0 <= summary.metrics["test"]["average"] <= 1.0
