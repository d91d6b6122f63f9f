"""Every kind of bad input, from every layer, in one table: data plane, config, checkpoints, evaluator.

Each row builds one bad input under a temporary directory and feeds it to a public entry point
(`iter_local_samples`, `read_manifest`, `verify_checksums`, `load_config`, `jobs/train.py`,
`load_inference_model`, `load_train_state`, `load_ground_truth`, `load_predictions`,
`evaluate_detection`, `jobs/evaluate.py`, `predict_local`). The outcome is either an error of the
expected type whose message names the file (or key) and the field, or, where the documented policy
is to skip, a skip that is counted and leaves the numbers right (never a silent wrong number).
pytest-timeout guards against hangs. Shard builders come from tests/data/data_helpers.py; the
per-defect data-plane unit tests stay in tests/data (this corpus keeps one row per kind).
"""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clasp_dist.config import ConfigError, DataConfig  # noqa: E402
from clasp_dist.data.errors import (
    BadSampleError,
    BadShardError,
    DataError,
    ManifestError,  # noqa: E402
    TooManySkippedError,
)
from clasp_dist.data.format import npy_bytes  # noqa: E402
from clasp_dist.evaluation.metric import EvaluationInputError  # noqa: E402
from clasp_dist.training.checkpoint import CheckpointError  # noqa: E402
from tests.data.data_helpers import DA, DV, good_members, one_sample_dataset, tar_bytes, write_dataset_from_tars  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ERROR = DataConfig(bad_sample_policy="error")
SKIP = DataConfig(bad_sample_policy="skip", max_skipped_fraction=0.5)


@dataclass
class Case:
    layer: str
    build: Callable[[Path], dict]
    """Writes the bad input under the given directory; returns a context (paths, expected names)."""
    call: Callable[[dict], Any]
    """The public entry point, called on the bad input."""
    raises: type | None = None
    names: tuple[str, ...] = ()
    """Substrings the error must contain; `{key}` is filled from the context (file paths, ids)."""
    check: Callable[[Any, dict], None] | None = None
    """For counted skips (no error): checks the result and the counts."""
    tags: list[str] = field(default_factory=list)


CASES: dict[str, Case] = {}


def case(name: str, **kw):
    CASES[name] = Case(**kw)


# ------------------------------------------------------------------------------------- data plane
def read_split(ctx, cfg=ERROR, split="validation"):
    from clasp_dist.data.split_reader import iter_local_samples

    return list(
        iter_local_samples(str(ctx["root"]), split, cfg, include_segments=split != "train", stats=ctx.get("stats"))
    )


def sample_dataset(**replace):
    """A validation split: two good videos, then video 'bad' with the given members replaced/removed."""

    def build(tmp: Path) -> dict:
        members = good_members("bad")
        members.update(replace)
        members = {k: v for k, v in members.items() if v is not None}
        root = one_sample_dataset(tmp / "ds", members, vid="bad", with_good_neighbours=2)
        return {"root": root, "shard": "validation-000000.tar"}

    return build


def meta_with(**fields) -> bytes:
    return json.dumps({**json.loads(good_members("bad")["meta.json"]), **fields}).encode()


def manifest_edit(edit):
    def build(tmp: Path) -> dict:
        root = write_dataset_from_tars(tmp / "ds", {"validation": [(tar_bytes([("v0", good_members("v0"))]), 1)]})
        path = root / "manifest.json"
        doc = json.loads(path.read_text())
        text = edit(doc)
        path.write_text(text if isinstance(text, str) else json.dumps(doc))
        return {"root": root, "manifest": path}

    return build


def two_shards(second: Callable[[bytes], bytes | None]):
    """validation: a good shard of 3 videos, then a second shard of 3 (transformed; None = file removed)."""

    def build(tmp: Path) -> dict:
        first = tar_bytes([(f"a{i}", good_members(f"a{i}", seed=i)) for i in range(3)])
        data = tar_bytes([(f"b{i}", good_members(f"b{i}", seed=i)) for i in range(3)])
        root = write_dataset_from_tars(tmp / "ds", {"validation": [(first, 3), (data, 3)]})
        shard = root / "validation-000001.tar"
        new = second(data)
        if new is None:
            shard.unlink()
        else:
            shard.write_bytes(new)
        return {"root": root, "shard": "validation-000001.tar"}

    return build


def verify(ctx):
    from clasp_dist.data.manifest import read_manifest, verify_checksums

    problems = verify_checksums(str(ctx["root"]), read_manifest(str(ctx["root"])))
    if problems:
        raise DataError("; ".join(problems))


def _raw_npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


SAMPLE = ("{shard}", "'bad'")
case(
    "manifest_missing",
    layer="data",
    build=lambda tmp: {"root": (tmp / "empty").mkdir() or tmp / "empty"},
    call=read_split,
    raises=ManifestError,
    names=("{root}", "manifest.json"),
)
case(
    "manifest_not_json",
    layer="data",
    build=manifest_edit(lambda d: "{not json"),
    call=read_split,
    raises=ManifestError,
    names=("{manifest}", "not valid JSON"),
)
case(
    "shard_format_newer_version",
    layer="data",
    build=manifest_edit(lambda d: d.update(version=2)),
    call=read_split,
    raises=ManifestError,
    names=("{manifest}", "version 2 is newer"),
)
case(
    "manifest_count_mismatch",
    layer="data",
    call=read_split,
    raises=ManifestError,
    build=manifest_edit(lambda d: d["splits"]["validation"].update(videos=5)),
    names=("{manifest}", "split 'validation'", "'videos' is 5"),
)
case(
    "manifest_shard_path_outside_root",
    layer="data",
    call=read_split,
    raises=ManifestError,
    build=manifest_edit(lambda d: d["splits"]["validation"]["shards"][0].update(path="../x.tar")),
    names=("{manifest}", "shard path '../x.tar'"),
)
case(
    "manifest_missing_key",
    layer="data",
    call=read_split,
    raises=ManifestError,
    build=manifest_edit(lambda d: d.pop("visual_dim")),
    names=("{manifest}", "visual_dim"),
)
case(
    "shard_checksum_mismatch",
    layer="data",
    build=two_shards(lambda b: b[:-1] + b"\x01"),
    call=verify,
    raises=DataError,
    names=("{shard}", "sha256"),
)
case(
    "shard_missing",
    layer="data",
    build=two_shards(lambda b: None),
    call=read_split,
    raises=BadShardError,
    names=("{shard}", "missing"),
)
case(
    "shard_truncated",
    layer="data",
    build=two_shards(lambda b: b[: len(b) // 2]),
    call=read_split,
    raises=BadShardError,
    names=("{shard}", "truncated"),
)
case(
    "shard_not_a_tar",
    layer="data",
    build=two_shards(lambda b: b"garbage, not a tar " * 50),
    call=read_split,
    raises=BadShardError,
    names=("{shard}", "corrupt or truncated tar"),
)
case(
    "sample_truncated_npy",
    layer="data",
    call=read_split,
    raises=BadSampleError,
    build=sample_dataset(**{"visual.npy": npy_bytes(np.zeros((6, DV), np.float16))[:-20]}),
    names=SAMPLE + ("field 'visual.npy'", "unreadable"),
)
case(
    "sample_pickled_member",  # extra members are skipped unread by default; strict_members refuses them
    layer="data",
    call=lambda ctx: read_split(ctx, DataConfig(bad_sample_policy="error", strict_members=True)),
    raises=BadSampleError,
    build=sample_dataset(**{"extra.pkl": pickle.dumps({"evil": 1})}),
    names=SAMPLE + ("field 'extra.pkl'",),
)
case(
    "sample_object_npy",
    layer="data",
    call=read_split,
    raises=BadSampleError,
    build=sample_dataset(**{"audio.npy": _raw_npy(np.array([{"x": 1}], dtype=object))}),
    names=SAMPLE + ("field 'audio.npy'",),
)
case(
    "sample_nan_features",
    layer="data",
    call=read_split,
    raises=BadSampleError,
    build=sample_dataset(**{"visual.npy": npy_bytes(np.full((6, DV), np.nan, np.float16))}),
    names=SAMPLE + ("field 'visual.npy'", "NaN/Inf"),
)
case(
    "sample_wrong_feature_dim",
    layer="data",
    call=read_split,
    raises=BadSampleError,
    build=sample_dataset(**{"audio.npy": npy_bytes(np.zeros((6, DA + 3), np.float16))}),
    names=SAMPLE + ("field 'audio.npy'", "does not match"),
)
case(
    "sample_stream_lengths_differ",
    layer="data",
    call=read_split,
    raises=BadSampleError,
    build=sample_dataset(**{"audio.npy": npy_bytes(np.zeros((3, DA), np.float16))}),
    names=SAMPLE + ("field 'audio.npy'", "tolerance"),
)
case(
    "sample_missing_member",
    layer="data",
    call=read_split,
    raises=BadSampleError,
    build=sample_dataset(**{"meta.json": None}),
    names=SAMPLE + ("field 'meta.json'", "missing"),
)
case(
    "sample_meta_not_json",
    layer="data",
    call=read_split,
    raises=BadSampleError,
    build=sample_dataset(**{"meta.json": b"{oops"}),
    names=SAMPLE + ("field 'meta.json'", "not valid JSON"),
)
case(
    "sample_meta_id_differs_from_key",
    layer="data",
    call=read_split,
    raises=BadSampleError,
    build=sample_dataset(**{"meta.json": meta_with(video_id="other")}),
    names=SAMPLE + ("meta.json:video_id",),
)
case(
    "sample_label_out_of_range",
    layer="data",
    call=read_split,
    raises=BadSampleError,
    build=sample_dataset(**{"meta.json": meta_with(labels=[42])}),
    names=SAMPLE + ("meta.json:labels",),
)
case(
    "sample_segment_class_out_of_range",
    layer="data",
    call=read_split,
    raises=BadSampleError,
    build=sample_dataset(**{"meta.json": meta_with(segments=[[0.1, 0.5, 9]])}),
    names=SAMPLE + ("meta.json:segments",),
)
case(
    "sample_eval_split_without_segments",
    layer="data",
    call=read_split,
    raises=BadSampleError,
    build=sample_dataset(
        **{
            "meta.json": json.dumps(
                {k: v for k, v in json.loads(good_members("bad")["meta.json"]).items() if k != "segments"}
            ).encode()
        }
    ),
    names=SAMPLE + ("meta.json:segments", "missing"),
)


def _skip_counted(rows, ctx):
    assert [r["video_id"] for r in rows] == ["good0", "good1"]  # the bad video dropped, the rest intact
    stats = ctx["stats"]
    assert (stats.seen, stats.skipped) == (3, 1) and "'bad'" in stats.messages[0]


def _with_stats(build):
    def wrapped(tmp):
        from clasp_dist.data.sample_rows import SkipStats

        return {**build(tmp), "stats": SkipStats(split="validation")}

    return wrapped


case(
    "sample_bad_under_skip_policy_is_counted",
    layer="data",
    call=lambda ctx: read_split(ctx, SKIP),
    build=_with_stats(sample_dataset(**{"visual.npy": npy_bytes(np.full((6, DV), np.inf, np.float16))})),
    check=_skip_counted,
)
case(
    "too_many_skipped_under_skip_policy",
    layer="data",
    raises=TooManySkippedError,
    call=lambda ctx: read_split(ctx, DataConfig(bad_sample_policy="skip", max_skipped_fraction=0.1)),
    build=sample_dataset(**{"meta.json": b"{"}),
    names=("split validation", "1 skipped", "max_skipped_fraction=0.1", "{shard}", "'bad'"),
)
case(
    "segments_of_train_split_requested",
    layer="data",
    raises=DataError,
    build=lambda tmp: {
        "root": write_dataset_from_tars(
            tmp / "ds", {"train": [(tar_bytes([("v0", good_members("v0", segments=None))]), 1)]}
        )
    },
    call=lambda ctx: (
        __import__("clasp_dist.data.split_reader", fromlist=["x"])
        .iter_local_samples(str(ctx["root"]), "train", ERROR, include_segments=True)
        .__next__()
    ),
    names=("segments of the train split",),
)


# ------------------------------------------------------------------------------------------ config
def load(*overrides):
    from clasp_dist.config import load_config

    return lambda ctx: load_config(["config=tiny", *[o.format(**ctx) for o in overrides]])


def yaml_file(text: str):
    def build(tmp):
        path = tmp / "preset.yaml"
        path.write_text(text)
        return {"preset": path}

    return build


def no_ctx(tmp):
    return {}


case(
    "config_unknown_key",
    layer="config",
    build=no_ctx,
    call=load("train.epoch=3"),
    raises=ConfigError,
    names=("unknown key 'train.epoch'", "epochs"),
)
case(
    "config_wrong_type",
    layer="config",
    build=no_ctx,
    call=load("train.epochs=many"),
    raises=ConfigError,
    names=("train.epochs", "'many'"),
)
case(
    "config_cross_field_rule",
    layer="config",
    build=no_ctx,
    call=load("model.d_model=30", "model.n_heads=4"),
    raises=ConfigError,
    names=("model.d_model=30", "model.n_heads=4"),
)
case(
    "config_not_key_value",
    layer="config",
    build=no_ctx,
    call=load("train.epochs"),
    raises=ConfigError,
    names=("'train.epochs'", "key=value"),
)
case(
    "config_unknown_preset",
    layer="config",
    build=no_ctx,
    call=load("config=tinyy"),
    raises=ConfigError,
    names=("'tinyy'", "tiny"),
)
case(
    "config_preset_file_not_a_mapping",
    layer="config",
    build=yaml_file("- just\n- a list\n"),
    call=load("config={preset}"),
    raises=ConfigError,
    names=("{preset}", "not a mapping"),
)
case(
    "config_preset_file_bad_value",
    layer="config",
    build=yaml_file("train:\n  batch_size: -3\n  epochs: x\n"),
    call=load("config={preset}"),
    raises=ConfigError,
    names=("train.epochs", "'x'"),
)


def train_cli(*args):
    def call(ctx):
        proc = subprocess.run(
            [sys.executable, str(REPO / "jobs" / "train.py"), *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        if proc.returncode == 0:
            return proc
        raise SystemExit(proc.stderr.strip().splitlines()[-1])

    return call


case(
    "cli_train_unknown_key",
    layer="config",
    build=no_ctx,
    call=train_cli("config=tiny", "optim.learning_rate=1"),
    raises=SystemExit,
    names=("error: config: unknown key 'optim.learning_rate'", "lr"),
)


# -------------------------------------------------------------------------------------- checkpoints
def checkpoint_dir(tmp: Path, *overrides: str, seed: int = 0) -> Path:
    """A checkpoint/export directory (weights.pt + model.json) of a tiny model, as training writes it."""
    from clasp_dist.config import load_config
    from clasp_dist.data.manifest import DatasetInfo
    from clasp_dist.model import build_model
    from clasp_dist.training.checkpoint import save_model_description, save_tensors

    directory = tmp / f"ckpt{seed}"
    directory.mkdir(parents=True)
    cfg = load_config(["config=tiny", *overrides])
    info = DatasetInfo("handmade", [f"c{i}" for i in range(5)], DV, DA, 25.0, 8, 24)
    torch.manual_seed(seed)
    save_tensors(directory / "weights.pt", build_model(cfg, info).state_dict())
    save_model_description(directory, cfg, info)
    save_tensors(directory / "rng_rank0.pt", {"torch": torch.get_rng_state()})
    (directory / "train_state.json").write_text(
        json.dumps({"format_version": 1, "epoch": 0, "global_step": 6, "best_val": 0.1, "best_epoch": 0})
    )
    return directory


def broken_checkpoint(edit):
    def build(tmp):
        directory = checkpoint_dir(tmp)
        edit(directory, tmp)
        return {
            "dir": directory,
            "weights": directory / "weights.pt",
            "model_json": directory / "model.json",
            "state": directory / "train_state.json",
        }

    return build


def load_model(ctx):
    from clasp_dist.training.checkpoint import load_inference_model

    return load_inference_model(ctx["dir"])


def load_state(ctx):
    from clasp_dist.training.checkpoint import load_train_state

    return load_train_state(ctx["dir"])


def _edit_json(name, edit):
    def run(directory, tmp):
        path = directory / name
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))

    return run


def _other_model_weights(directory, tmp):
    other = checkpoint_dir(tmp, "model.d_model=64", seed=9)
    (directory / "weights.pt").write_bytes((other / "weights.pt").read_bytes())


def _pickled_weights(directory, tmp):
    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"w": Evil()}, directory / "weights.pt")


case(
    "checkpoint_corrupted_weights",
    layer="checkpoint",
    call=load_model,
    raises=CheckpointError,
    build=broken_checkpoint(lambda d, t: (d / "weights.pt").write_bytes(b"\x00garbage" * 100)),
    names=("{weights}", "unreadable or corrupted"),
)
case(
    "checkpoint_truncated_weights",
    layer="checkpoint",
    call=load_model,
    raises=CheckpointError,
    build=broken_checkpoint(lambda d, t: (d / "weights.pt").write_bytes((d / "weights.pt").read_bytes()[:-2048])),
    names=("{weights}", "unreadable or corrupted"),
)
case(
    "checkpoint_weights_with_pickled_object",
    layer="checkpoint",
    call=load_model,
    raises=CheckpointError,
    build=broken_checkpoint(_pickled_weights),
    names=("{weights}", "unreadable or corrupted"),
)
case(
    "checkpoint_from_different_model_config",
    layer="checkpoint",
    call=load_model,
    raises=CheckpointError,
    build=broken_checkpoint(_other_model_weights),
    names=("{weights}", "shape", "model config"),
)
case(
    "checkpoint_model_json_missing",
    layer="checkpoint",
    call=load_model,
    raises=CheckpointError,
    build=broken_checkpoint(lambda d, t: (d / "model.json").unlink()),
    names=("{model_json}", "missing"),
)
case(
    "checkpoint_model_json_not_json",
    layer="checkpoint",
    call=load_model,
    raises=CheckpointError,
    build=broken_checkpoint(lambda d, t: (d / "model.json").write_text("{")),
    names=("{model_json}", "not valid JSON"),
)
case(
    "checkpoint_newer_format_version",
    layer="checkpoint",
    call=load_model,
    raises=CheckpointError,
    build=broken_checkpoint(_edit_json("model.json", lambda d: d.update(format_version=2))),
    names=("{model_json}", "format_version 2"),
)
case(
    "checkpoint_unknown_config_key",
    layer="checkpoint",
    call=load_model,
    raises=CheckpointError,
    build=broken_checkpoint(_edit_json("model.json", lambda d: d["config"]["model"].update(use_magic=True))),
    names=("{model_json}", "model.use_magic", "unknown key"),
)
case(
    "checkpoint_dataset_field_missing",
    layer="checkpoint",
    call=load_model,
    raises=CheckpointError,
    build=broken_checkpoint(_edit_json("model.json", lambda d: d.pop("dataset"))),
    names=("{model_json}", "dataset"),
)
case(
    "checkpoint_train_state_corrupted",
    layer="checkpoint",
    call=load_state,
    raises=CheckpointError,
    build=broken_checkpoint(lambda d, t: (d / "train_state.json").write_text('{"epoch": 3')),
    names=("{state}", "unreadable or malformed"),
)
case(
    "checkpoint_train_state_missing_field",
    layer="checkpoint",
    call=load_state,
    raises=CheckpointError,
    build=broken_checkpoint(_edit_json("train_state.json", lambda d: d.pop("global_step"))),
    names=("{state}", "global_step"),
)


# -------------------------------------------------------------------------------------- evaluator
NAMES = ["speech", "dog", "car"]


def annotations(tmp: Path, database: dict) -> Path:
    path = tmp / "gt.json"
    path.write_text(json.dumps({"version": "t", "database": database}))
    return path


def ann(label_id: int, s: float, e: float) -> dict:
    return {"segment": [s, e], "label": NAMES[label_id], "label_id": label_id}


BASE_DB = {
    "v0": {"subset": "test", "duration": 10.0, "annotations": [ann(0, 1.0, 3.0), ann(1, 4.0, 6.0)]},
    "v1": {"subset": "test", "duration": 10.0, "annotations": [ann(2, 0.0, 2.0)]},
    "tr": {"subset": "train", "duration": 10.0, "annotations": [ann(0, 0, 1), ann(1, 0, 1), ann(2, 0, 1)]},
}


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def results(tmp: Path, entries: dict, name: str = "pred.json") -> Path:
    path = tmp / name
    path.write_text(json.dumps({"version": "t", "results": entries}))
    return path


def perfect_entries(db=BASE_DB) -> dict:
    return {
        v: [{"segment": a["segment"], "label": a["label"], "score": 0.9} for a in e["annotations"]]
        for v, e in db.items()
        if e["subset"] == "test"
    }


def eval_files(db=BASE_DB, preds=None, raw_preds: str | None = None):
    def build(tmp):
        gt = annotations(tmp, db)
        pred = results(tmp, perfect_entries() if preds is None else preds)
        if raw_preds is not None:
            pred.write_text(raw_preds)
        return {"gt": gt, "pred": pred}

    return build


def evaluate(ctx):
    from clasp_dist.evaluation.formats import load_ground_truth, load_predictions
    from clasp_dist.evaluation.metric import UNAV100_TIOU, evaluate_detection

    gt = load_ground_truth(ctx["gt"], "test")
    return gt, evaluate_detection(gt, load_predictions(ctx["pred"], gt.class_names), UNAV100_TIOU)


def evaluate_cli(*extra):
    def call(ctx):
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "jobs" / "evaluate.py"),
                "--predictions",
                str(ctx["pred"]),
                "--ground-truth",
                str(ctx["gt"]),
                "--split",
                "test",
                *extra,
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        if proc.returncode == 0:
            return proc
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        raise SystemExit(proc.stderr.strip())

    return call


def _duplicates_dropped_and_counted(out, ctx):
    gt, result = out
    assert gt.info["duplicates_dropped"] == 1  # the exact repeat (within 1e-3 s) is dropped and counted
    assert len(gt.t_start) == 4  # 3 distinct events + the overlapping, different one kept
    assert result.average == pytest.approx(1.0)  # perfect predictions still score exactly 1


DUP_DB = {
    **BASE_DB,
    "v0": {
        "subset": "test",
        "duration": 10.0,
        "annotations": [ann(0, 1.0, 3.0), ann(0, 1.0004, 3.0), ann(0, 2.0, 4.0), ann(1, 4.0, 6.0)],
    },
}
case(
    "annotations_overlapping_duplicate_events",
    layer="evaluator",
    call=evaluate,
    check=_duplicates_dropped_and_counted,
    build=eval_files(
        DUP_DB,
        preds=perfect_entries(
            {**DUP_DB, "v0": {**DUP_DB["v0"], "annotations": [ann(0, 1.0, 3.0), ann(0, 2.0, 4.0), ann(1, 4.0, 6.0)]}}
        ),
    ),
)


def _unknown_videos_counted(out, ctx):
    gt, result = out
    assert result.warnings["unknown_video"] == 2  # counted
    # official semantics: each is a false positive of its class, ranked first (score 1.0 > 0.9):
    # dog and car AP 0.5, speech 1.0
    assert result.average == pytest.approx(2 / 3)


def _unknown_labels_ignored_and_counted(out, ctx):
    gt, result = out
    assert result.warnings["unknown_labels"] == 1 and result.warnings["class_without_gt"] == 1
    assert result.average == pytest.approx(1.0)  # ignored (docs/evaluation.md): the perfect predictions still score 1


def _cli_unknown_label_noted(proc, ctx):
    assert "1 of them with a label outside the class list" in proc.stdout


case(
    "predictions_for_unknown_videos",
    layer="evaluator",
    call=evaluate,
    check=_unknown_videos_counted,
    build=eval_files(
        preds={
            **perfect_entries(),
            "ghost": [
                {"segment": [0, 1], "label": "dog", "score": 1.0},
                {"segment": [2, 3], "label": "car", "score": 1.0},
            ],
        }
    ),
)
case(
    "predictions_unknown_label",
    layer="evaluator",
    call=evaluate,
    check=_unknown_labels_ignored_and_counted,
    build=eval_files(
        preds={
            **perfect_entries(),
            "v0": perfect_entries()["v0"] + [{"segment": [0, 1], "label": "unicorn", "score": 1.0}],
        }
    ),
)
case(
    "predictions_label_id_out_of_range",
    layer="evaluator",
    call=evaluate,
    check=_unknown_labels_ignored_and_counted,
    build=eval_files(
        preds={**perfect_entries(), "v1": perfect_entries()["v1"] + [{"segment": [0, 1], "label_id": 7, "score": 1.0}]}
    ),
)
case(
    "predictions_label_id_negative",
    layer="evaluator",
    call=evaluate,
    raises=EvaluationInputError,
    build=eval_files(preds={"v1": [{"segment": [0, 1], "label_id": -7, "score": 1.0}]}),
    names=("{pred}", "results['v1'][0]", "label -7"),
)
case(
    "predictions_nan_score",
    layer="evaluator",
    call=evaluate,
    raises=EvaluationInputError,
    build=eval_files(raw_preds='{"results": {"v0": [{"segment": [0, 1], "label": "dog", "score": NaN}]}}'),
    names=("{pred}", "video 'v0'", "score"),
)
case(
    "predictions_end_before_start",
    layer="evaluator",
    call=evaluate,
    raises=EvaluationInputError,
    build=eval_files(preds={"v0": [{"segment": [5, 1], "label": "dog", "score": 0.5}]}),
    names=("{pred}", "video 'v0'", "t_end"),
)
case(
    "predictions_segment_malformed",
    layer="evaluator",
    call=evaluate,
    raises=EvaluationInputError,
    build=eval_files(preds={"v0": [{"segment": "0-1", "label": "dog", "score": 0.5}]}),
    names=("{pred}", "results['v0'][0]", "'segment'"),
)
case(
    "predictions_not_json",
    layer="evaluator",
    call=evaluate,
    raises=EvaluationInputError,
    build=eval_files(raw_preds="{truncated"),
    names=("{pred}", "not valid JSON"),
)
case(
    "predictions_without_results_object",
    layer="evaluator",
    call=evaluate,
    raises=EvaluationInputError,
    build=eval_files(raw_preds='{"version": "x"}'),
    names=("{pred}", "'results'"),
)
case(
    "annotations_without_database",
    layer="evaluator",
    call=evaluate,
    raises=EvaluationInputError,
    build=lambda tmp: {**eval_files()(tmp), "gt": write_text(tmp / "gt.json", '{"version": "x"}')},
    names=("{gt}", "'database'"),
)
case(
    "annotations_split_absent",
    layer="evaluator",
    call=evaluate,
    raises=EvaluationInputError,
    build=eval_files({"tr": BASE_DB["tr"]}),
    names=("{gt}", "no video of split 'test'"),
)
case(
    "annotations_segment_malformed",
    layer="evaluator",
    call=evaluate,
    raises=EvaluationInputError,
    build=eval_files(
        {**BASE_DB, "v1": {"subset": "test", "annotations": [{"segment": [1], "label": "car", "label_id": 2}]}}
    ),
    names=("{gt}", "video 'v1' annotation 0", "'segment'"),
)
case(
    "annotations_label_id_conflict",
    layer="evaluator",
    call=evaluate,
    raises=EvaluationInputError,
    build=eval_files(
        {**BASE_DB, "v1": {"subset": "test", "annotations": [{"segment": [1, 2], "label": "cat", "label_id": 2}]}}
    ),
    names=("{gt}", "label_id 2", "'car'", "'cat'"),
)
case(
    "cli_evaluate_unknown_label",
    layer="evaluator",
    call=evaluate_cli(),
    check=_cli_unknown_label_noted,
    build=eval_files(preds={"v0": [{"segment": [0, 1], "label": "unicorn", "score": 1.0}]}),
)
case(
    "cli_evaluate_predictions_not_json",
    layer="evaluator",
    call=evaluate_cli(),
    raises=SystemExit,
    build=eval_files(raw_preds="{truncated"),
    names=("error:", "{pred}", "not valid JSON"),
)
case(
    "cli_evaluate_bad_tiou_spec",
    layer="evaluator",
    call=evaluate_cli("eval.tiou_thresholds=0.1:0.9"),
    raises=SystemExit,
    build=eval_files(),
    names=("0.1:0.9", "START:STOP:STEP"),
)


def predict(policy: str):
    def call(ctx):
        from clasp_dist.config import from_dict, to_dict
        from clasp_dist.inference.predict import predict_local
        from clasp_dist.training.checkpoint import load_inference_model

        model, cfg, info = load_inference_model(ctx["ckpt"])
        tree = to_dict(cfg)
        tree["data"].update(bad_sample_policy=policy, max_skipped_fraction=0.5)
        return predict_local(model.state_dict(), from_dict(tree), info, str(ctx["root"]), "validation")

    return call


def eval_split_with_bad_sample(tmp):
    return {
        **sample_dataset(**{"visual.npy": npy_bytes(np.zeros((6, DV + 1), np.float16))})(tmp),
        "ckpt": checkpoint_dir(tmp),
    }


def _evaluator_skip_counted(predictions, ctx):
    assert [v.video_id for v in predictions.videos] == ["good0", "good1"]  # the bad one is not predicted


case(
    "evaluator_bad_sample_error_policy",
    layer="evaluator",
    call=predict("error"),
    raises=BadSampleError,
    build=eval_split_with_bad_sample,
    names=SAMPLE + ("field 'visual.npy'",),
)
case(
    "evaluator_bad_sample_skip_policy",
    layer="evaluator",
    call=predict("skip"),
    build=eval_split_with_bad_sample,
    check=_evaluator_skip_counted,
)


# -------------------------------------------------------------------------------------------- test
def test_corpus_is_broad():
    assert len(CASES) >= 20
    assert {c.layer for c in CASES.values()} == {"data", "config", "checkpoint", "evaluator"}
    for required in (
        "checkpoint_corrupted_weights",
        "checkpoint_from_different_model_config",
        "shard_format_newer_version",
        "annotations_overlapping_duplicate_events",
        "predictions_for_unknown_videos",
    ):
        assert required in CASES


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path):
    spec = CASES[name]
    ctx = spec.build(tmp_path)
    if spec.raises is None:
        spec.check(spec.call(ctx), ctx)
        return
    with pytest.raises(spec.raises) as info:
        spec.call(ctx)
    message = str(info.value)
    for pattern in spec.names:
        expected = pattern.format(**{k: str(v) for k, v in ctx.items()})
        assert expected in message, f"{expected!r} not in: {message}"
