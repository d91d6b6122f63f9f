"""Indexing existing tars: the manifest of a folder of WebDataset tars (ours, hand-made, or written by the
`webdataset` library), through the readers' own tar reader and decoder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clasp_dist.cli import main as clasp
from clasp_dist.cli.common import EXIT_BAD_INPUT
from clasp_dist.data import DataError, read_manifest, verify_checksums
from clasp_dist.data.filesystem import get_fs, join
from clasp_dist.data.index import assign_splits, index_dataset, read_class_list, split_from_name
from clasp_dist.data.split_reader import iter_local_samples
from tests.data.data_helpers import DA, DV, good_members, tar_bytes


def _copy_without_manifest(src: str, dst: Path) -> str:
    shutil.copytree(src, dst)
    (dst / "manifest.json").unlink()
    return str(dst)


def test_index_reproduces_the_writers_manifest(tiny_root, tmp_path):
    original = read_manifest(tiny_root)
    root = _copy_without_manifest(tiny_root, tmp_path / "copy")
    (tmp_path / "classes.json").write_text(json.dumps(original.classes))
    report = index_dataset(root, classes=read_class_list(str(tmp_path / "classes.json")))
    indexed = read_manifest(root)
    assert indexed.splits == original.splits  # same paths, counts and sha256 for every shard
    assert (indexed.classes, indexed.visual_dim, indexed.audio_dim, indexed.grid) == (
        original.classes,
        original.visual_dim,
        original.audio_dim,
        original.grid,
    )
    assert report.classes_from == "class list" and not verify_checksums(root, indexed)


def test_index_infers_classes_from_label_ids_and_keeps_existing_manifest(tmp_path):
    samples = [(f"v{i}", good_members(f"v{i}", labels=(i,), segments=((0.1, 0.5, i),), seed=i)) for i in range(3)]
    (tmp_path / "validation-000000.tar").write_bytes(tar_bytes(samples))
    (tmp_path / "train_part.tar").write_bytes(tar_bytes([("t0", good_members("t0", labels=(0, 4), segments=None))]))
    report = index_dataset(str(tmp_path))
    m = read_manifest(str(tmp_path))
    assert m.classes == ["0", "1", "2", "3", "4"] and report.classes_from == "label ids"
    assert {n: s.videos for n, s in m.splits.items()} == {"train": 1, "validation": 3}
    assert (m.visual_dim, m.audio_dim, m.dataset) == (DV, DA, tmp_path.name)
    with pytest.raises(DataError, match="manifest.json exists; pass --overwrite"):
        index_dataset(str(tmp_path))


def test_member_order_is_free_and_extra_members_are_counted(tmp_path):
    members = good_members("v0")
    reordered = {"meta.json": members["meta.json"], "cls": b"1", "audio.npy": members["audio.npy"]}
    reordered["visual.npy"] = members["visual.npy"]
    (tmp_path / "test-0.tar").write_bytes(tar_bytes([("v0", reordered)]))
    report = index_dataset(str(tmp_path))
    assert report.extra_members == 1 and "1 extra members skipped" in report.summary()
    (row,) = iter_local_samples(str(tmp_path), "test", include_segments=True)
    assert np.array_equal(row["visual"], np.load(__import__("io").BytesIO(members["visual.npy"])))


def test_a_sample_unlike_the_first_names_shard_sample_and_field(tmp_path):
    samples = [("a", good_members("a")), ("b", good_members("b", dv=DV + 2))]
    (tmp_path / "val-0.tar").write_bytes(tar_bytes(samples))
    with pytest.raises(DataError, match=r"val-0.tar.*'b'.*'visual.npy'.*first sample: .*'a'"):
        index_dataset(str(tmp_path))
    assert not (tmp_path / "manifest.json").exists()


def test_label_beyond_the_class_list_is_refused(tmp_path):
    (tmp_path / "train-0.tar").write_bytes(tar_bytes([("a", good_members("a", labels=(3,), segments=None))]))
    with pytest.raises(DataError, match=r"'a'.*meta.json:labels.*out of range \[0, 2\)"):
        index_dataset(str(tmp_path), classes=["x", "y"])


def test_splits_from_names_or_patterns():
    assert [split_from_name(p) for p in ("train-000001.tar", "val/3.tar", "x_testing_1.tar", "shard-1.tar")] == [
        "train",
        "validation",
        "test",
        None,
    ]
    with pytest.raises(DataError, match="names several splits"):
        split_from_name("train/val-1.tar")
    with pytest.raises(DataError, match="says no split.*--split NAME=GLOB"):
        assign_splits(["shard-1.tar"], None)
    by_split, left = assign_splits(["a/1.tar", "b/2.tar", "c/3.tar"], {"train": ["a/*"], "test": ["b/*"]})
    assert by_split == {"train": ["a/1.tar"], "test": ["b/2.tar"]} and left == ["c/3.tar"]


def test_class_list_file_formats_and_errors(tmp_path):
    (tmp_path / "c.txt").write_text("dog\n\ncat\n")
    assert read_class_list(str(tmp_path / "c.txt")) == ["dog", "cat"]
    (tmp_path / "d.txt").write_text("dog\ndog\n")
    with pytest.raises(DataError, match="listed twice"):
        read_class_list(str(tmp_path / "d.txt"))


def test_index_command_on_s3(s3_bucket, tmp_path, capsys):
    root = f"{s3_bucket}/byod"
    fs, base = get_fs(root)
    for name, vid in (("part-a.tar", "a"), ("part-b.tar", "b")):
        fs.pipe(join(base, "tars", name), tar_bytes([(vid, good_members(vid, labels=(1,), segments=None))]))
    (tmp_path / "classes.txt").write_text("c0\nc1\n")
    argv = ["data", "index", f"data.root={root}", "--classes", str(tmp_path / "classes.txt")]
    assert clasp(argv + ["--split", "train=tars/part-a.tar", "--split", "training=tars/part-b*"]) == 0
    assert "train 2 videos / 2 shards; 2 classes (class list)" in capsys.readouterr().out
    m = read_manifest(root)
    assert [s.path for s in m.split("train").shards] == ["tars/part-a.tar", "tars/part-b.tar"]
    assert not verify_checksums(root, m)
    assert clasp(["data", "index", f"data.root={root}"]) == EXIT_BAD_INPUT
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_evaluation_split_without_segments_is_recorded_unlabelled(tmp_path):
    from clasp_dist.data.manifest import final_eval_split

    (tmp_path / "train-0.tar").write_bytes(tar_bytes([("t", good_members("t", segments=None))]))
    (tmp_path / "val-0.tar").write_bytes(tar_bytes([("v", good_members("v"))]))
    (tmp_path / "test-0.tar").write_bytes(tar_bytes([("x", good_members("x", segments=()))]))
    index_dataset(str(tmp_path))
    m = read_manifest(str(tmp_path))
    assert m.extra["unlabelled_splits"] == ["test"] and final_eval_split(m) == "validation"
