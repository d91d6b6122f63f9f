"""Converters on small fixtures laid out exactly as the official releases (docs/data.md#make-a-dataset)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from clasp_dist.data import DataError, read_manifest
from clasp_dist.data.convert import convert_features
from clasp_dist.data.grid import Grid
from clasp_dist.data.manifest import final_eval_split
from clasp_dist.data.split_reader import iter_local_samples

UNAV = {
    "database": {
        "vidTrain1": {
            "subset": "train",
            "duration": 3.2,
            "annotations": [{"segment": [0.5, 2.0], "label": "dog barking", "label_id": 1}],
        },
        "vidTrain2": {
            "subset": "train",
            "duration": 3.0,
            "annotations": [
                {"segment": [0.1, 1.0], "label": "man speaking", "label_id": 0},
                {"segment": [1.0, 2.5], "label": "dog barking", "label_id": 1},
            ],
        },
        "vidVal": {
            "subset": "validation",
            "duration": 3.5,
            "annotations": [{"segment": [0.2, 3.0], "label": "man speaking", "label_id": 0}],
        },
        "vidTest": {
            "subset": "test",
            "duration": 2.9,
            "annotations": [
                {"segment": [1.0, 2.0], "label": "dog barking", "label_id": 1},
                {"segment": [1.0, 2.0], "label": "dog barking", "label_id": 1},
            ],
        },
    }
}


def _npy(path, steps, dim, seed):
    np.save(path, np.random.default_rng(seed).standard_normal((steps, dim)).astype(np.float32))


def _i3d_release(folder, audio_steps=None):
    folder.mkdir()
    for i, vid in enumerate(UNAV["database"]):
        _npy(folder / f"{vid}_rgb.npy", 9, 1024, i)
        _npy(folder / f"{vid}_flow.npy", 9, 1024, 100 + i)
        _npy(folder / f"{vid}_vggish.npy", (audio_steps or {}).get(vid, 9), 128, 200 + i)
    return folder


@pytest.fixture
def unav_json(tmp_path):
    path = tmp_path / "unav.json"
    path.write_text(json.dumps(UNAV))
    return str(path)


def test_unav100_i3d(tmp_path, unav_json):
    feats = _i3d_release(tmp_path / "features", audio_steps={"vidVal": 8})  # one step short: truncated, counted
    manifest = convert_features(
        unav_json, str(feats), str(tmp_path / "out"), "i3d", dataset="unav100-i3d", shard_size=1, progress=False
    )
    assert (manifest.visual_dim, manifest.audio_dim, manifest.classes) == (2048, 128, ["man speaking", "dog barking"])
    assert manifest.grid == Grid(25.0, 8, 24)
    assert {k: v.videos for k, v in manifest.splits.items()} == {"train": 2, "validation": 1, "test": 1}
    assert manifest.extra["writer_counts"]["validation"]["truncated"] == 1
    assert manifest.extra["source"]["duplicate_annotations_dropped"] == 1
    root = str(tmp_path / "out")
    train = list(iter_local_samples(root, "train"))
    rgb = np.load(feats / "vidTrain1_rgb.npy")
    flow = np.load(feats / "vidTrain1_flow.npy")
    np.testing.assert_array_equal(train[0]["visual"], np.concatenate([rgb, flow], 1).astype(np.float16))
    np.testing.assert_array_equal(train[0]["audio"], np.load(feats / "vidTrain1_vggish.npy").astype(np.float16))
    assert [r["labels"].tolist() for r in train] == [[1], [0, 1]]
    assert all("segments" not in r for r in train)
    (val,) = iter_local_samples(root, "validation", include_segments=True)
    assert val["num_steps"] == 8 and json.loads(val["segments"]) == [[0.2, 3.0, 0]]
    (test,) = iter_local_samples(root, "test", include_segments=True)
    assert json.loads(test["segments"]) == [[1.0, 2.0, 1]]  # duplicate dropped
    import tarfile

    with tarfile.open(tmp_path / "out" / "train-000000.tar") as tar:
        assert "segments" not in json.loads(tar.extractfile("vidTrain1.meta.json").read())


def test_unav100_length_mismatch_over_one_step_names_video(tmp_path, unav_json):
    feats = _i3d_release(tmp_path / "features", audio_steps={"vidTrain2": 6})
    with pytest.raises(DataError, match=r"'vidTrain2'.*differ by 3 steps"):
        convert_features(unav_json, str(feats), str(tmp_path / "out"), "i3d", dataset="u", progress=False)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_unav100_missing_features(tmp_path, unav_json):
    feats = _i3d_release(tmp_path / "features")
    (feats / "vidTest_vggish.npy").unlink()
    with pytest.raises(DataError, match=r"1 annotated videos.*vidTest"):
        convert_features(unav_json, str(feats), str(tmp_path / "out"), "i3d", dataset="u", progress=False)
    manifest = convert_features(
        unav_json, str(feats), str(tmp_path / "out"), "i3d", dataset="u", progress=False, allow_missing=True
    )
    assert manifest.splits["test"].videos == 0 and manifest.extra["source"]["missing_videos"] == 1


def test_unav100_onepeace(tmp_path, unav_json):
    feats = tmp_path / "op"
    feats.mkdir()
    for i, vid in enumerate(UNAV["database"]):
        _npy(feats / f"{vid}_one_peace_video_finetune.npy", 12, 1536, i)
        _npy(feats / f"{vid}_one_peace_audio.npy", 12, 1536, i + 50)
    manifest = convert_features(
        unav_json, str(feats), str(tmp_path / "out"), "onepeace", dataset="unav100-onepeace", progress=False
    )
    assert (manifest.visual_dim, manifest.audio_dim, manifest.grid.step_s) == (1536, 1536, 0.25)
    assert [r["visual"].shape for r in iter_local_samples(str(tmp_path / "out"), "train")] == [(12, 1536)] * 2


def test_anet13(tmp_path):
    db = {
        "version": "VERSION 1.3",
        "database": {
            "aaa": {"subset": "training", "duration": 5.0, "annotations": [{"segment": [1.0, 3.0], "label": "Zumba"}]},
            "bbb": {
                "subset": "validation",
                "duration": 6.0,
                "annotations": [{"segment": [0.5, 2.0], "label": "Archery"}, {"segment": [2.5, 4.0], "label": "Zumba"}],
            },
            "ccc": {"subset": "testing", "duration": 4.0, "annotations": []},
        },
    }
    ann = tmp_path / "anet.json"
    ann.write_text(json.dumps(db))
    feats = tmp_path / "feats"
    feats.mkdir()
    for i, vid in enumerate(db["database"]):
        prefix = "v_" if vid == "bbb" else ""  # ActivityNet's v_ prefix is accepted too
        _npy(feats / f"{prefix}{vid}_visual.npy", 7, 12, i)
        _npy(feats / f"{prefix}{vid}_audio.npy", 7, 5, i)
    grid = Grid(fps=15.0, feat_stride=16, window=16)
    manifest = convert_features(
        str(ann), str(feats), str(tmp_path / "out"), "anet", dataset="anet13", grid=grid, progress=False
    )
    assert manifest.classes == ["Archery", "Zumba"] and (manifest.visual_dim, manifest.audio_dim) == (12, 5)
    assert {k: v.videos for k, v in manifest.splits.items()} == {"train": 1, "validation": 1, "test": 1}
    (val,) = iter_local_samples(str(tmp_path / "out"), "validation", include_segments=True)
    assert val["labels"].tolist() == [0, 1] and json.loads(val["segments"]) == [[0.5, 2.0, 0], [2.5, 4.0, 1]]
    read_back = read_manifest(str(tmp_path / "out"))
    assert read_back.grid == grid
    assert read_back.extra["unlabelled_splits"] == ["test"] and final_eval_split(read_back) == "validation"


# ------------------------------------------------------------------ features as other code bases store them
ANET = {
    "database": {
        "aaa": {"subset": "training", "duration": 5.0, "annotations": [{"segment": [1.0, 3.0], "label": "Zumba"}]},
        "bbb": {"subset": "validation", "duration": 6.0, "annotations": [{"segment": [0.5, 2.0], "label": "Archery"}]},
    }
}
ANET_GRID = ["--fps", "15", "--feat-stride", "16", "--window", "16"]


def _prepare(argv):
    from clasp_dist.cli import main as clasp

    return clasp(["data", "prepare", *argv, "--workers", "1", "--quiet"])


def _combined_folder(write, steps=7, dv=12, da=5):
    """ActionFormer-style: one v_<id>.npy per video holding visual then audio; returns {vid: array}."""
    arrays = {}
    for i, vid in enumerate(ANET["database"]):
        arrays[vid] = np.random.default_rng(i).standard_normal((steps, dv + da)).astype(np.float32)
        buf = io.BytesIO()
        np.save(buf, arrays[vid])
        write(f"v_{vid}.npy", buf.getvalue())
    return arrays


def _check_combined(root, arrays, dv=12):
    m = read_manifest(root)
    assert (m.visual_dim, m.audio_dim) == (dv, 5)
    (row,) = iter_local_samples(root, "train")
    expected = arrays["aaa"].astype(np.float16)
    assert np.array_equal(row["visual"], expected[:, :dv]) and np.array_equal(row["audio"], expected[:, dv:])


def test_actionformer_style_combined_files(tmp_path):
    (tmp_path / "ann.json").write_text(json.dumps(ANET))
    (tmp_path / "feats").mkdir()
    arrays = _combined_folder(lambda name, data: (tmp_path / "feats" / name).write_bytes(data))
    out = str(tmp_path / "out")
    argv = [
        "anet13",
        "--annotations",
        str(tmp_path / "ann.json"),
        "--features",
        str(tmp_path / "feats"),
        f"data.root={out}",
    ]
    assert _prepare(argv + ANET_GRID + ["--prefix", "v_", "--combined-suffix", ".npy", "--split-dim", "12"]) == 0
    _check_combined(out, arrays)
    assert _prepare(argv + ANET_GRID + ["--combined-suffix", ".npy", "--split-dim", "17"]) == 2  # nothing left


def test_feature_folder_in_object_storage(s3_bucket, tmp_path):
    from clasp_dist.data.filesystem import get_fs, join

    fs, base = get_fs(f"{s3_bucket}/feats")
    arrays = _combined_folder(lambda name, data: fs.pipe(join(base, name), data))
    (tmp_path / "ann.json").write_text(json.dumps(ANET))
    out = str(tmp_path / "out")
    argv = [
        "anet13",
        "--annotations",
        str(tmp_path / "ann.json"),
        "--features",
        f"{s3_bucket}/feats",
        f"data.root={out}",
    ]
    assert _prepare(argv + ANET_GRID + ["--prefix", "v_", "--combined-suffix", ".npy", "--split-dim", "12"]) == 0
    _check_combined(out, arrays)


def test_prefix_and_per_stream_suffixes_with_an_explicit_class_list(tmp_path, capsys):
    feats = tmp_path / "feats"
    feats.mkdir()
    for i, vid in enumerate(ANET["database"]):
        _npy(feats / f"feat_{vid}_rgb.npy", 7, 6, i)
        _npy(feats / f"feat_{vid}_flow.npy", 7, 4, 10 + i)
        _npy(feats / f"feat_{vid}_vggish.npy", 7, 3, 20 + i)
    (tmp_path / "ann.json").write_text(json.dumps(ANET))
    (tmp_path / "classes.txt").write_text("Applying sunscreen\nArchery\nBaking cookies\nZumba\n")
    out = str(tmp_path / "out")
    argv = ["anet13", "--annotations", str(tmp_path / "ann.json"), "--features", str(feats), f"data.root={out}"]
    argv += ANET_GRID + ["--prefix", "feat_", "--visual-suffix", "_rgb.npy", "--visual-suffix", "_flow.npy"]
    argv += ["--audio-suffix", "_vggish.npy"]
    assert _prepare(argv + ["--classes", str(tmp_path / "classes.txt")]) == 0
    m = read_manifest(out)
    assert m.classes == ["Applying sunscreen", "Archery", "Baking cookies", "Zumba"] and (
        m.visual_dim,
        m.audio_dim,
    ) == (
        10,
        3,
    )
    (row,) = iter_local_samples(out, "train")
    assert row["labels"].tolist() == [3]  # Zumba's position in the explicit list
    expected = np.concatenate([np.load(feats / "feat_aaa_rgb.npy"), np.load(feats / "feat_aaa_flow.npy")], axis=1)
    assert np.array_equal(row["visual"], expected.astype(np.float16))
    (tmp_path / "few.txt").write_text("Archery\n")
    assert _prepare(argv + ["--classes", str(tmp_path / "few.txt"), f"data.root={tmp_path / 'out2'}"]) == 2
    assert "unknown label 'Zumba'" in capsys.readouterr().err
