"""The hostile half of the bad-input corpus: shards built as an attacker would build them.

Every root of ``tests/data/hostile.py`` (path traversal, memory bombs, pathological meta.json, values
that used to pass, duplicates) is refused in every reader with a one-line error naming shard,
sample and field, or skipped and counted under ``bad_sample_policy=skip``: the Ray-free reader,
``clasp data inspect``, the evaluator's reader and (slow) the Ray Data reader used by training.
Memory bombs are refused before they grow (tracemalloc peak), hostile manifests are one clear
``ManifestError``, floods of missing shards are summarised, and in training a bad sample stops the
run at once (no retry) with a one-line cause.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from clasp_dist import quiet_logs  # noqa: E402
from clasp_dist.cli import main as clasp  # noqa: E402
from clasp_dist.cli.common import EXIT_BAD_INPUT  # noqa: E402
from clasp_dist.config import DataConfig  # noqa: E402
from clasp_dist.data.errors import BadSampleError, ManifestError  # noqa: E402
from clasp_dist.data.sample_rows import SkipStats  # noqa: E402
from clasp_dist.quiet_logs import DATA_ERROR_LINE, DataErrorTracebacks, is_noise  # noqa: E402
from tests.data.data_helpers import good_members, tar_bytes, write_dataset_from_tars  # noqa: E402
from tests.data.hostile import HOSTILE, SHARD_LEVEL, gzip_bomb, sparse_bomb  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ERROR = DataConfig(bad_sample_policy="error")
SKIP = DataConfig(bad_sample_policy="skip", max_skipped_fraction=1.0)
SHARD = "validation-000000.tar"


def _read(root, cfg, stats=None) -> list[dict]:
    from clasp_dist.data.split_reader import iter_local_samples

    return list(iter_local_samples(str(root), "validation", cfg, include_segments=True, stats=stats))


def _names(message: str, field: str, reason: str) -> None:
    assert "\n" not in message and reason in message and SHARD in message, message
    if field:
        assert f"field {field!r}" in message, message


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_ray_free_reader_refuses_or_counts(name, tmp_path):
    build, field, reason = HOSTILE[name]
    root = build(tmp_path)
    with pytest.raises(BadSampleError) as info:
        _read(root, ERROR)
    _names(str(info.value), field, reason)
    stats = SkipStats(split="validation")
    ids = [r["video_id"] for r in _read(root, SKIP, stats)]
    assert stats.skipped >= 1 and reason in stats.messages[0]
    if name not in SHARD_LEVEL - {"member_claims_a_terabyte"}:
        assert {"good0", "good1"} <= set(ids)  # the good videos before it are intact
    assert all("/" not in v and "." not in v for v in ids)


def _inspect_main():
    """`clasp data inspect ROOT`'s main: argv = [ROOT]."""
    return lambda argv: clasp(["data", "inspect", f"data.root={argv[0]}", *argv[1:]])


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_inspect_data_reports_one_line(name, tmp_path, capsys):
    build, field, reason = HOSTILE[name]
    root = build(tmp_path)
    assert _inspect_main()([str(root)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    lines = [ln for ln in out.out.splitlines() if reason in ln]
    assert lines, out.out
    _names(lines[0].strip().split(": ", 1)[1], field, reason)


@pytest.mark.parametrize("bomb", [gzip_bomb, sparse_bomb])
def test_bombs_are_refused_before_they_grow(bomb, tmp_path):
    """A 64 MB .npy behind a ~64 KB gzip shard or a ~1 KB sparse member: refused at under 4 MB."""
    root = bomb(tmp_path)
    assert sum(p.stat().st_size for p in root.glob("*.tar")) < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(BadSampleError):
            _read(root, ERROR)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB"


EVALUATOR_ROOTS = [
    "key_parent_traversal",
    "sparse_member",
    "meta_deeply_nested",
    "float64_overflows_float16",
    "member_twice_in_sample",
]
"""One hostile root per class (traversal, memory bomb, escaped exception, unchecked value, duplicate)."""


def test_evaluator_reader_refuses_unsafe_ids(tmp_path):
    """The evaluator's in-process path (`predict_local`, rank-0 validation) reads through the same reader: one
    root of each class is refused with the one-line error; a traversal id is also skipped and counted. (Its Ray
    path reads through the datasource of `test_ray_reader_refuses_every_hostile_root`.)"""
    from clasp_dist.config import from_dict, to_dict
    from clasp_dist.inference.predict import predict_local
    from clasp_dist.training.checkpoint import load_inference_model

    from .test_bad_input_corpus import checkpoint_dir

    model, cfg, info = load_inference_model(checkpoint_dir(tmp_path))
    tree = to_dict(cfg)
    for name in EVALUATOR_ROOTS:
        build, field, reason = HOSTILE[name]
        root = build(tmp_path / name)
        tree["data"].update(bad_sample_policy="error")
        with pytest.raises(BadSampleError) as refused:
            predict_local(model.state_dict(), from_dict(tree), info, str(root), "validation")
        _names(str(refused.value), field, reason)
    tree["data"].update(bad_sample_policy="skip", max_skipped_fraction=0.5)
    predictions = predict_local(
        model.state_dict(), from_dict(tree), info, str(tmp_path / EVALUATOR_ROOTS[0] / "ds"), "validation"
    )
    assert [v.video_id for v in predictions.videos] == ["good0", "good1"]


# --------------------------------------------------------------------------------------- manifests
def _manifest(tmp_path: Path, edit) -> Path:
    root = write_dataset_from_tars(tmp_path / "ds", {"validation": [(tar_bytes([("v0", good_members("v0"))]), 1)]})
    doc = json.loads((root / "manifest.json").read_text())
    edit(doc)
    (root / "manifest.json").write_text(json.dumps(doc))
    return root


MANIFESTS = {
    "grid_fps_zero": (lambda d: d["grid"].update(fps=0), "'grid.fps' must be a finite number > 0"),
    "grid_stride_infinite": (lambda d: d["grid"].update(feat_stride=1e400), "'grid.feat_stride' must be an integer"),
    "shard_path_dot": (lambda d: d["splits"]["validation"]["shards"][0].update(path="."), "shard path '.'"),
    "shard_path_inner_traversal": (
        lambda d: d["splits"]["validation"]["shards"][0].update(path="a/../../x.tar"),
        "stay inside it",
    ),
    "shard_path_absolute": (
        lambda d: d["splits"]["validation"]["shards"][0].update(path="/etc/passwd"),
        "must be relative",
    ),
    "splits_wrong_type": (lambda d: d.update(splits=["validation"]), "'splits' must be an object"),
    "shard_entry_wrong_type": (lambda d: d["splits"]["validation"].update(shards=["x.tar"]), "shard 0 must be"),
    "classes_not_strings": (lambda d: d.update(classes=[1, 2]), "'classes' must be a non-empty list"),
    "dims_boolean": (lambda d: d.update(visual_dim=True), "'visual_dim' must be an integer"),
    "shard_listed_twice": (lambda d: d["splits"].update(test=d["splits"]["validation"]), "listed twice"),
}


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_hostile_manifest_is_one_clear_error(name, tmp_path, capsys):
    edit, expected = MANIFESTS[name]
    root = _manifest(tmp_path, edit)
    with pytest.raises(ManifestError, match="manifest.json") as info:
        _read(root, ERROR)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert _inspect_main()([str(root)]) == 1
    assert expected in capsys.readouterr().err


def test_many_missing_shards_are_summarised(tmp_path, capsys, caplog):
    """20,000 missing shards: one summary line (count and the first five), not 20,000 lines."""
    n = 20_000

    def edit(d):
        d["splits"]["validation"] = {
            "videos": n,
            "shards": [{"path": f"gone-{i:06d}.tar", "videos": 1, "sha256": "0"} for i in range(n)],
        }

    root = _manifest(tmp_path, edit)
    assert _inspect_main()([str(root)]) == 1
    out = capsys.readouterr().out
    assert f"{n} shard(s) missing: gone-000000.tar" in out and "first 5 of 20000" in out
    assert len(out.splitlines()) < 20
    with caplog.at_level(logging.WARNING, logger="clasp_dist.data.sample_rows"):
        stats = SkipStats(split="validation")
        assert _read(root, SKIP, stats) == [] and stats.skipped == n
    assert len(caplog.records) <= stats.max_messages + 2


# ---------------------------------------------------------------------------------------- training
def test_data_error_line_sees_through_ray_wrapping():
    from ray.exceptions import RayTaskError

    from clasp_dist.training.driver import data_error_line

    cause = BadSampleError("must be a list of integer class ids", shard="s.tar", video_id="v", field="meta.json:labels")
    wrapped = RayTaskError("ReadShard", "Traceback ...\nframes", cause).as_instanceof_cause()
    assert data_error_line(wrapped) == str(cause)
    outer = RuntimeError("rank 0 failed")
    outer.__cause__ = wrapped
    assert data_error_line(outer) == str(cause)
    assert data_error_line(RuntimeError(f"x\n  clasp_dist.data.errors.BadSampleError: {cause}\n")) == str(cause)
    assert data_error_line(RuntimeError("worker died")) is None


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ray_reader_refuses_every_hostile_root(ray_session, tmp_path):
    """All hostile shards in one split read by Ray Data (the training reader): each is a counted bad
    row whose message names shard, sample and field; every good video arrives; under `error` the
    first one raises the same message."""
    from clasp_dist.data.batch import iter_train_batches
    from clasp_dist.data.split_reader import read_split

    tars, expected = [], {}
    for i, name in enumerate(sorted(HOSTILE)):
        root = HOSTILE[name][0](tmp_path / name)
        manifest = json.loads((root / "manifest.json").read_text())["splits"]["validation"]["shards"][0]
        tars.append(((root / SHARD).read_bytes(), manifest["videos"]))
        expected[f"validation-{i:06d}.tar"] = name
    combined = write_dataset_from_tars(tmp_path / "all", {"validation": tars})
    stats = SkipStats(split="validation", max_messages=100)
    ds = read_split(str(combined), "validation", SKIP, include_segments=True)
    ids = [v for b in iter_train_batches(ds, 8, 5, stats=stats) for v in b.video_id]
    # every shard's good videos arrive, except in the gzip shard (refused as a whole before any sample)
    assert ids.count("good0") == ids.count("good1") == len(HOSTILE) - 1
    assert not any("/" in v or "." in v for v in ids)
    assert stats.skipped >= len(HOSTILE)
    for shard, name in expected.items():
        _, field, reason = HOSTILE[name]
        assert any(shard in m and reason in m and (not field or f"field {field!r}" in m) for m in stats.messages), name
    single = HOSTILE["key_parent_traversal"][0](tmp_path / "single")
    ds = read_split(str(single), "validation", ERROR, include_segments=True)
    with pytest.raises(Exception, match="field 'key': unsafe video id"):
        list(iter_train_batches(ds, 8, 5))


def _bad_train_root(tmp_path: Path, tiny_root: str) -> tuple[Path, str]:
    """A copy of `tiny` whose first training shard has labels given as strings in one video; (root, video id)."""
    import hashlib
    import io
    import tarfile

    root = tmp_path / "badtrain"
    shutil.copytree(tiny_root, root)
    manifest = json.loads((root / "manifest.json").read_text())
    shard = manifest["splits"]["train"]["shards"][0]
    out = io.BytesIO()
    with tarfile.open(root / shard["path"]) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for i, member in enumerate(src.getmembers()):
            data = src.extractfile(member).read()
            if i == 5:
                meta = json.loads(data)
                bad_id = meta["video_id"]
                data = json.dumps({**meta, "labels": [str(c) for c in meta["labels"]]}).encode()
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    (root / shard["path"]).write_bytes(out.getvalue())
    shard["sha256"] = hashlib.sha256(out.getvalue()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root, bad_id


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_train_stops_on_bad_data_without_retry(tiny_root, tmp_path):
    """`clasp train` on a training split with one bad sample: no retry (train.max_failures=3 would take
    minutes), exit 2 (bad input), and the last line is the one-line cause naming shard, sample and field: the only line
    that names the sample (no copy of its traceback forwarded from Ray's workers above it, no frame of ours)."""
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0", "TQDM_DISABLE": "1"}
    env.pop("RAY_ADDRESS", None)
    root, bad_id = _bad_train_root(tmp_path, tiny_root)
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "clasp_dist.cli",
            "train",
            "config=tiny",
            "train.epochs=1",
            "train.progress_bar=off",
            "train.max_failures=3",
            f"data.root={root}",
            f"run.output_dir={tmp_path / 'out'}",
            f"run.storage_path={tmp_path / 'store'}",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=380,
    )
    elapsed = time.monotonic() - started
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr[-3000:]
    assert last.startswith("error: rank 0: bad sample: shard ") and "train-000000.tar" in last, last
    assert "field 'meta.json:labels'" in last and "must be a list of integer class ids" in last
    assert "[FailurePolicy] RETRY" not in proc.stderr + proc.stdout
    assert elapsed < 240, elapsed
    lines = (proc.stdout + proc.stderr).splitlines()
    assert [ln for ln in lines if bad_id in ln] == [last], proc.stderr[-3000:]
    ours = [ln for ln in lines if ln.lstrip().startswith("File ") and ("/clasp_dist/" in ln or "/jobs/" in ln)]
    assert not ours, proc.stderr[-3000:]
    # Tracebacks of Ray's own that are not about the data may remain (with another Ray instance on the machine,
    # Ray Train's PlacementGroupCleaner cannot find its cluster): none ends in a data error
    assert not [ln for ln in lines if "BadSampleError" in ln or DATA_ERROR_LINE.match(ln)], proc.stderr[-3000:]
    print(
        f"bad-data run: {len(proc.stderr.splitlines())} stderr lines, {len(proc.stdout.splitlines())} stdout lines, "
        f"{sum(ln.startswith('Traceback') for ln in lines)} tracebacks, {elapsed:.0f} s"
    )


# Ray's workers' records of one bad sample, verbatim from a `jobs/train.py` run (Ray 2.60), frames cut
_CAUSE = (
    "clasp_dist.data.errors.BadSampleError: bad sample: shard /d/train-000000.tar, sample 'v5', "
    "field 'meta.json:labels': must be a list of integer class ids, got ['2', '4']"
)
_READ_TASK = [
    "\x1b[36mray::ReadShard()\x1b[39m (pid=1078, ip=192.0.2.2)",
    "    for block in block_iter:",
    '  File "/x/clasp_dist/data/sample_rows.py", line 163, in _labels',
    '    raise bad("meta.json:labels", f"must be a list of integer class ids, got {short_repr(labels)}")',
    _CAUSE,
    "Failed to read stream iteratively after 1/10 attempts (total backoff 0.0s).",
    "To change retry attempts, backoff, or which errors are retried, configure `ray.data.DataContext...`",
    "Failed to apply UDF transform after 1/1 attempts (total backoff 0.0s).",
]
_SPLIT_COORDINATOR = [
    'An exception was raised from a task of operator "ReadShard". Dataset execution will now abort. To ignore',
    "Traceback (most recent call last):",
    '  File "/x/ray/data/_internal/execution/interfaces/physical_operator.py", line 337, in on_data_ready',
    "    raise StopIteration from None",
    "StopIteration",
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    "Traceback (most recent call last):",
    '  File "/x/ray/_private/worker.py", line 1053, in get_objects',
    "    raise value.as_instanceof_cause()",
    "ray.exceptions.RayTaskError(BadSampleError): " + _READ_TASK[0],
    *_READ_TASK[1:],
    "\u26a0\ufe0f  Dataset train_0356haCdtQ9N2i22Ke3o45_0 execution failed",
    "Split 0 epoch 0 get() failed after 0 rows: " + _READ_TASK[0],
    *_READ_TASK[1:],
]
_TRAIN_WORKER = [
    "Error in training function:",
    "Traceback (most recent call last):",
    '  File "/x/clasp_dist/training/worker.py", line 195, in _run_epoch',
    "    for batch in batches:",
    "ray.exceptions.RayTaskError(BadSampleError): \x1b[36mray::SplitCoordinator.get()\x1b[39m (pid=1026, ip=192.0.2.2)",
    "           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
    '  File "/x/ray/data/_internal/iterator/stream_split_iterator.py", line 388, in get',
    "ray.exceptions.RayTaskError(BadSampleError): " + _READ_TASK[0],
    *_READ_TASK[1:],
]
_CONTROLLER = [
    "Error in control loop iteration: rank 0: " + _CAUSE.split(": ", 1)[1],
    "Traceback (most recent call last):",
    '  File "/x/clasp_dist/training/driver.py", line 79, in after_exception',
    '    raise TrainingDataError(f"rank {rank}: {line}")',
    "clasp_dist.training.driver.TrainingDataError: rank 0: " + _CAUSE.split(": ", 1)[1],
]
_UNEXPECTED = [
    "Error in training function:",
    "Traceback (most recent call last):",
    '  File "/x/clasp_dist/training/worker.py", line 195, in _run_epoch',
    "    loss = engine.step(batch)",
    "KeyError: 'visual'",
]
_UNEXPECTED_WHILE_HANDLING_BAD_DATA = [
    "Error in training function:",
    "Traceback (most recent call last):",
    '  File "/x/a.py", line 1, in f',
    "    decode()",
    _CAUSE,
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    "Traceback (most recent call last):",
    '  File "/x/a.py", line 3, in f',
    "    log(err)",
    "UnicodeEncodeError: 'ascii' codec can't encode character",
]
_PROGRESS = ["[clasp-dist] epoch   1/2 | loss 0.3103 (base 0.1587 prop 0.1515) | lr 1.00e-04 | 4.9 videos/s"]


def _forward(tracebacks, lines, pid=1):
    return tracebacks.filter({"lines": lines, "pid": pid, "ip": "192.0.2.2"})


def test_forwarded_copies_of_a_data_error_traceback_are_dropped():
    tracebacks = DataErrorTracebacks()
    assert _forward(tracebacks, _PROGRESS + _SPLIT_COORDINATOR) == _PROGRESS + [_SPLIT_COORDINATOR[-9]]
    assert is_noise(_SPLIT_COORDINATOR[-9])  # "Dataset ... execution failed": the error says it
    assert _forward(tracebacks, _TRAIN_WORKER + _PROGRESS, pid=2) == _PROGRESS
    assert _forward(tracebacks, _CONTROLLER, pid=3) == []
    # an unexpected error keeps its traceback, also one raised while handling a data error
    assert _forward(tracebacks, _UNEXPECTED + _PROGRESS, pid=2) == _UNEXPECTED + _PROGRESS
    assert _forward(tracebacks, _UNEXPECTED_WHILE_HANDLING_BAD_DATA) == _UNEXPECTED_WHILE_HANDLING_BAD_DATA


def test_a_data_error_record_split_across_forwarded_batches_is_dropped_whole():
    tracebacks = DataErrorTracebacks()
    record = _CONTROLLER + _READ_TASK[1:]
    assert _forward(tracebacks, _PROGRESS + record[:-4]) == _PROGRESS
    assert _forward(tracebacks, _UNEXPECTED[:1], pid=2) == _UNEXPECTED[:1]  # another worker's lines in between
    assert _forward(tracebacks, record[-4:] + _PROGRESS) == _PROGRESS
    assert _forward(tracebacks, _UNEXPECTED) == _UNEXPECTED  # the next record of that worker is its own


def test_debug_shows_ray_copies_of_a_data_error_traceback(monkeypatch):
    """`clasp train --debug` (show_data_error_tracebacks) prints every forwarded line, through Ray's own
    de-duplicating printer."""
    from clasp_dist.compat import ray_logging_module, ray_worker_module

    ray_worker, ray_logging = ray_worker_module(), ray_logging_module()

    for dedup in (ray_logging.stdout_deduplicator, ray_logging.stderr_deduplicator):
        monkeypatch.setattr(dedup, "deduplicate", dedup.deduplicate)  # restored afterwards
    monkeypatch.setattr(ray_worker, "print_worker_logs", ray_worker.print_worker_logs)
    monkeypatch.setattr(ray_worker, "_worker_logs_enabled", True)
    monkeypatch.setattr(quiet_logs, "_data_error_tracebacks_shown", False)
    monkeypatch.setattr(ray_logging, "RAY_DEDUP_LOGS", False)  # lines other tests' clusters printed stay visible
    quiet_logs.filter_forwarded_logs()

    def printed(lines, pid):
        sink = io.StringIO()
        monkeypatch.setattr(sys, "stderr", sink)
        ray_worker.print_to_stdstream(
            {"lines": lines, "pid": pid, "ip": "h", "localhost": "h", "is_err": True, "job": "01000000"},
            ignore_prefix=True,
        )
        return sink.getvalue()

    assert "Traceback" not in printed(_CONTROLLER, 31) and _CAUSE not in printed(_TRAIN_WORKER, 32)
    quiet_logs.show_data_error_tracebacks()
    out = printed(_CONTROLLER, 33)
    assert "Traceback" in out and "TrainingDataError" in out
