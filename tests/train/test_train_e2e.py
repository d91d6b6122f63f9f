"""End to end on a real local Ray cluster with real DeepSpeed engines (CPU, gloo)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, epoch_metrics, job_env, registered_checkpoints, run_cfg, run_job, train_command

pytestmark = pytest.mark.slow


def test_embedded_pipeline_writes_a_complete_run_directory(tiny_run, tiny_root):
    from clasp_dist.training.checkpoint import load_inference_model

    summary = tiny_run
    run_dir = summary.run_dir
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "metrics.json",
        "export/weights.pt",
        "export/model.json",
        "test/predictions_test.json",
        "test/metrics_test.json",
    ):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(m["epoch"] for m in epoch_metrics(run_dir)) == [0, 1]
    test = summary.metrics["test"]
    assert set(test) >= {"0.1", "0.5", "0.9", "average"} and 0.0 <= test["average"] <= 1.0
    model, cfg, info = load_inference_model(summary.export_dir)
    assert info.num_classes == 100 and cfg.data.root == tiny_root


def _add_scrambled_segments(root: Path) -> None:
    """Rewrite every training shard with random `segments` in meta.json (as a careless tool might)."""
    import hashlib
    import io
    import json
    import random
    import tarfile

    manifest = json.loads((root / "manifest.json").read_text())
    rng = random.Random(0)
    for shard in manifest["splits"]["train"]["shards"]:
        path = root / shard["path"]
        members = []
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member).read()
                if member.name.endswith(".meta.json"):
                    meta = json.loads(data)
                    meta["segments"] = [[rng.uniform(0, 5), rng.uniform(5, 9), rng.randrange(100)] for _ in range(3)]
                    data = json.dumps(meta).encode()
                members.append((member.name, data))
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        path.write_bytes(buffer.getvalue())
        shard["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_training_never_reads_training_segments_and_is_reproducible(ray_session, tiny_root, tmp_path):
    """Weak-supervision guard: scrambled segments in every training shard leave training bit-identical.

    Two separate seeded runs matching bit for bit also needs training to be reproducible, so one pair of runs
    checks both (a mismatch means segments were read or a run is not deterministic: the message says so)."""
    import shutil

    from clasp_dist.training.checkpoint import load_tensors
    from clasp_dist.training.driver import run_training

    scrambled = tmp_path / "scrambled"
    shutil.copytree(tiny_root, scrambled)
    _add_scrambled_segments(scrambled)
    runs = {}
    for name, root in (("a", tiny_root), ("scrambled", str(scrambled))):
        summary = run_training(run_cfg(tmp_path / name, root, "train.epochs=1", f"run.name={name}"))
        runs[name] = (
            [m["loss"] for m in epoch_metrics(summary.run_dir)],
            load_tensors(summary.export_dir / "weights.pt"),
        )
    why = "training read the training segments, or two seeded runs are not reproducible"
    assert runs["scrambled"][0] == runs["a"][0], why
    assert all(torch.equal(runs["a"][1][k], runs["scrambled"][1][k]) for k in runs["a"][1]), why


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"job ended early ({proc.returncode}): {proc.stdout.read()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError("timed out waiting for the first checkpoint")


def test_two_workers_zero2_from_s3_resume_after_driver_killed(s3_bucket, tmp_path):
    """Data and checkpoints on the loopback S3 server; the driver is SIGKILLed after its first
    checkpoint; rerunning the same command resumes from it instead of starting again."""
    from clasp_dist.data.filesystem import get_fs
    from clasp_dist.data.synthetic import generate_dataset

    data = generate_dataset(f"{s3_bucket}/tiny", "tiny", seed=0, progress=False, workers=1)
    args = train_command(
        f"data.root={data}",
        "train.num_workers=2",
        "deepspeed.zero_stage=2",
        "train.epochs=2",
        "train.eval_every=2",
        f"run.storage_path={s3_bucket}/runs",
        f"run.output_dir={tmp_path}",
        "run.name=resume",
    )
    env = job_env()
    fs, base = get_fs(f"{s3_bucket}/runs/resume")

    proc = subprocess.Popen(
        args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        _wait_for(lambda: registered_checkpoints(fs, base), 300, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = [m["epoch"] for m in epoch_metrics(tmp_path / "resume")]
    assert first == [0], first
    done = run_job(args, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resumed after epoch" in done.stdout + done.stderr
    epochs = [m["epoch"] for m in epoch_metrics(tmp_path / "resume")]
    assert sorted(epochs) == [0, 1]  # epoch 0 was not trained again
    assert (tmp_path / "resume" / "metrics.json").is_file()


def test_rerun_with_a_different_model_under_the_same_name_is_refused(tiny_run, tiny_root):
    """Resuming is by run name; a changed model would load the wrong shapes, so it fails up front."""
    from clasp_dist.config import from_dict, load_saved_config, to_dict
    from clasp_dist.training.checkpoint import CheckpointError
    from clasp_dist.training.driver import run_training

    saved = load_saved_config(tiny_run.run_dir / "config.yaml")
    tree = to_dict(saved)
    tree["model"]["d_model"] = 48
    with pytest.raises(CheckpointError, match="model.d_model"):
        run_training(from_dict(tree))
