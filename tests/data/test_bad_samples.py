"""One test per bad input, through the shared decoder on the Ray-free reader (Ray: test_ray_source.py).

Each asserts that the error names the shard, the sample and the field, or that the skip is counted.
"""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest

from clasp_dist.config import DataConfig
from clasp_dist.data import BadSampleError, BadShardError, SkipStats, TooManySkippedError
from clasp_dist.data.format import npy_bytes
from clasp_dist.data.inspection import inspect_dataset
from clasp_dist.data.sample_rows import ROW_COLUMNS
from clasp_dist.data.split_reader import iter_local_samples
from tests.data.data_helpers import DA, DV, good_members, one_sample_dataset, tar_bytes, write_dataset_from_tars

ERROR = DataConfig(bad_sample_policy="error")
SKIP = DataConfig(bad_sample_policy="skip", max_skipped_fraction=0.5)


def _read(root, cfg=ERROR, stats=None):
    return list(iter_local_samples(str(root), "validation", cfg, include_segments=True, stats=stats))


def _members(**replace):
    members = good_members("bad")
    members.update(replace)
    return {k: v for k, v in members.items() if v is not None}


def _npy_raw(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


CASES = {
    "truncated_npy": (
        dict(**{"visual.npy": npy_bytes(np.zeros((6, DV), np.float16))[:-20]}),
        "visual.npy",
        "unreadable",
    ),
    "object_npy": (dict(**{"audio.npy": _npy_raw(np.array([{"x": 1}], dtype=object))}), "audio.npy", "unreadable"),
    "nan": (dict(**{"visual.npy": npy_bytes(np.full((6, DV), np.nan, np.float16))}), "visual.npy", "NaN/Inf"),
    "inf": (dict(**{"audio.npy": npy_bytes(np.full((6, DA), np.inf, np.float16))}), "audio.npy", "NaN/Inf"),
    "wrong_dims": (
        dict(**{"visual.npy": npy_bytes(np.zeros((6, DV + 1), np.float16))}),
        "visual.npy",
        "does not match",
    ),
    "length_mismatch": (
        dict(**{"audio.npy": npy_bytes(np.zeros((4, DA), np.float16))}),
        "audio.npy",
        "differ by 2 > tolerance 1",
    ),
    "label_out_of_range": (
        dict(**{"meta.json": json.dumps({**json.loads(good_members("bad")["meta.json"]), "labels": [9]}).encode()}),
        "meta.json:labels",
        "out of range",
    ),
    "segment_class_out_of_range": (
        dict(
            **{
                "meta.json": json.dumps(
                    {**json.loads(good_members("bad")["meta.json"]), "segments": [[0.1, 0.5, 7]]}
                ).encode()
            }
        ),
        "meta.json:segments",
        "out of range",
    ),
    "missing_member": (dict(**{"audio.npy": None}), "audio.npy", "member missing"),
    "bad_json": (dict(**{"meta.json": b"{not json"}), "meta.json", "not valid JSON"),
    "integer_features": (dict(**{"visual.npy": npy_bytes(np.zeros((6, DV), np.int32))}), "visual.npy", "not floating"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_sample_error_names_shard_sample_field(tmp_path, case):
    replace, field, reason = CASES[case]
    root = one_sample_dataset(tmp_path, _members(**replace), vid="bad", with_good_neighbours=2)
    with pytest.raises(BadSampleError) as info:
        _read(root)
    err = info.value
    assert (err.video_id, err.field) == ("bad", field)
    assert err.shard.endswith("validation-000000.tar")
    assert (
        "validation-000000.tar" in str(err) and "'bad'" in str(err) and repr(field) in str(err) and reason in str(err)
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_sample_skipped_and_counted(tmp_path, case):
    replace, field, _ = CASES[case]
    root = one_sample_dataset(tmp_path, _members(**replace), vid="bad", with_good_neighbours=2)
    stats = SkipStats(split="validation")
    rows = _read(root, SKIP, stats)
    assert [r["video_id"] for r in rows] == ["good0", "good1"]
    assert (stats.seen, stats.skipped) == (3, 1)
    assert "'bad'" in stats.messages[0] and repr(field) in stats.messages[0]
    report = inspect_dataset(str(root))
    assert not report.ok and any("'bad'" in p for p in report.all_problems())


EXTRA_MEMBERS = {"extra.pkl": pickle.dumps({"evil": 1}), "weights.pt": b"\x80\x02}q\x00.", "cls": b"3"}


def test_extra_members_are_skipped_unread_and_counted(tmp_path):
    root = one_sample_dataset(tmp_path, _members(**EXTRA_MEMBERS), vid="bad", with_good_neighbours=2)
    stats = SkipStats(split="validation")
    rows = _read(root, ERROR, stats)
    assert sorted(r["video_id"] for r in rows) == ["bad", "good0", "good1"]
    assert (stats.seen, stats.skipped, stats.extra_members) == (3, 0, 3)
    assert "3 extra members skipped" in stats.summary()
    assert sorted(next(r for r in rows if r["video_id"] == "bad")) == sorted(ROW_COLUMNS + ("segments",))
    report = inspect_dataset(str(root))
    assert report.ok and sum(s.stats.extra_members for s in report.splits) == 3


@pytest.mark.parametrize("member", sorted(EXTRA_MEMBERS))
def test_strict_members_refuses_an_extra_member(tmp_path, member):
    root = one_sample_dataset(tmp_path, _members(**{member: EXTRA_MEMBERS[member]}), vid="bad", with_good_neighbours=2)
    with pytest.raises(BadSampleError, match="unexpected member .*strict_members") as info:
        _read(root, DataConfig(bad_sample_policy="error", strict_members=True))
    assert (info.value.video_id, info.value.field) == ("bad", member)


def test_too_many_skipped_fails(tmp_path):
    root = one_sample_dataset(tmp_path, _members(**{"meta.json": b"{"}), vid="bad", with_good_neighbours=2)
    with pytest.raises(TooManySkippedError, match=r"1 skipped .*max_skipped_fraction=0.1"):
        _read(root, DataConfig(bad_sample_policy="skip", max_skipped_fraction=0.1))


def test_length_mismatch_of_one_step_is_truncated_and_counted(tmp_path):
    root = one_sample_dataset(tmp_path, _members(**{"audio.npy": npy_bytes(np.ones((5, DA), np.float16))}), vid="bad")
    stats = SkipStats()
    (row,) = _read(root, ERROR, stats)
    assert row["visual"].shape == (5, DV) and row["audio"].shape == (5, DA) and row["num_steps"] == 5
    assert row["truncated_steps"] == 1 and (stats.truncated, stats.skipped) == (1, 0)


def _two_shard_dataset(tmp_path, second: bytes):
    first = tar_bytes([(f"a{i}", good_members(f"a{i}", seed=i)) for i in range(3)])
    return write_dataset_from_tars(tmp_path, {"validation": [(first, 3), (second, 3)]})


def test_truncated_tar(tmp_path):
    data = tar_bytes([(f"b{i}", good_members(f"b{i}", seed=i)) for i in range(3)])
    root = _two_shard_dataset(tmp_path, data[: len(data) // 2])
    with pytest.raises(BadShardError, match=r"shard .*validation-000001.tar.*truncated"):
        _read(root)
    stats = SkipStats()
    rows = _read(root, DataConfig(bad_sample_policy="skip", max_skipped_fraction=0.6), stats)
    assert len(rows) == 3 + 1 and stats.skipped == 2 and stats.seen == 6  # b0 survives; b1, b2 lost and counted


def test_corrupt_tar(tmp_path):
    root = _two_shard_dataset(tmp_path, b"this is not a tar archive at all" * 40)
    with pytest.raises(BadShardError, match=r"validation-000001.tar"):
        _read(root)
    report = inspect_dataset(str(root))
    assert not report.ok and any("validation-000001.tar" in p for p in report.all_problems())


def test_train_segments_never_parsed_and_flagged_by_inspect(tmp_path):
    data = tar_bytes([("t0", good_members("t0"))])  # carries segments: a weak-supervision violation
    root = write_dataset_from_tars(tmp_path, {"train": [(data, 1)]})
    (row,) = iter_local_samples(str(root), "train")
    assert "segments" not in row
    with pytest.raises(Exception, match="never read"):
        list(iter_local_samples(str(root), "train", include_segments=True))
    report = inspect_dataset(str(root))
    assert any("carries segments" in p for p in report.all_problems())


def test_collate_refuses_malformed_rows_naming_the_video(tmp_path):
    """Rows built by other code than the decoder: malformed segments or labels are a BadSampleError, not a crash."""
    from clasp_dist.data.batch import collate_rows

    root = one_sample_dataset(tmp_path, good_members("v0"), vid="v0")
    row = _read(root)[0]
    with pytest.raises(BadSampleError, match="sample 'v0', field 'segments': malformed segments"):
        collate_rows([{**row, "segments": json.dumps([["a", 1.0, 1]])}], 5)
    with pytest.raises(BadSampleError, match=r"sample 'v0', field 'labels'.*\[0, 5\)"):
        collate_rows([{**row, "labels": np.array([7])}], 5)
    assert collate_rows([row], 5).segments == [[(0.5, 1.5, 1)]]
