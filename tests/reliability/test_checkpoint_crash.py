"""Fault: a process killed while writing a checkpoint or an export.

The kills are real (SIGKILL of a child process); to hit an exact point inside a write, the child wraps
the file operation it is about to do so that it kills itself there (a write cut after half its bytes,
or a kill between two renames). Ray Train's own side is tested with a torn checkpoint directory planted
in the run's storage (a kill during an upload cannot be timed reliably): only checkpoints Ray Train
registered after `ray.train.report` returned are ever resumed from or chosen as best.
A truncated weights.pt is refused by name: tests/reliability/test_bad_input_corpus.py
(checkpoint_truncated_weights, checkpoint_corrupted_weights).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, epoch_metrics, run_cfg

from .conftest import registered_checkpoints

CHILD_PRELUDE = """
import os, shutil, signal, sys
sys.path.insert(0, {repo!r})
import clasp_dist.training.checkpoint as ck

def die():
    os.kill(os.getpid(), signal.SIGKILL)
"""

KILL_POINTS = {
    # half of weights.pt written into <out>.tmp, then killed
    "mid_copy": """
real_copy = shutil.copy2
def copy2(src, dst, **kw):
    if str(src).endswith("weights.pt"):
        data = open(src, "rb").read()
        with open(dst, "wb") as f:
            f.write(data[: len(data) // 2]); f.flush()
        die()
    return real_copy(src, dst, **kw)
shutil.copy2 = copy2
""",
    # <out>.tmp complete, killed before the first rename
    "before_swap": """
real_replace = os.replace
def replace(src, dst):
    if str(src).endswith(".tmp") or str(dst).endswith(".old"):
        die()
    return real_replace(src, dst)
os.replace = replace
""",
    # <out> already renamed to <out>.old, killed before <out>.tmp becomes <out>
    "between_renames": """
real_replace = os.replace
def replace(src, dst):
    if str(src).endswith(".tmp"):
        die()
    return real_replace(src, dst)
os.replace = replace
""",
}


def _fake_checkpoint(directory: Path, seed: int) -> dict:
    """A checkpoint directory as the training loop writes it (weights.pt + model.json), tiny model."""
    from clasp_dist.config import load_config
    from clasp_dist.data.manifest import DatasetInfo
    from clasp_dist.model import build_model
    from clasp_dist.training.checkpoint import save_model_description, save_tensors

    cfg = load_config(["config=tiny"])
    info = DatasetInfo("handmade", [f"c{i}" for i in range(5)], 8, 4, 25.0, 8, 24)
    torch.manual_seed(seed)
    weights = build_model(cfg, info).state_dict()
    directory.mkdir(parents=True)
    save_tensors(directory / "weights.pt", weights)
    save_model_description(directory, cfg, info)
    return weights


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def _run_child(code: str) -> int:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return proc.returncode


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_export_killed_midway_keeps_previous_export_loadable(tmp_path, point):
    from clasp_dist.training.checkpoint import export_inference, load_inference_model

    old_w = _fake_checkpoint(tmp_path / "ckpt_a", seed=1)
    new_w = _fake_checkpoint(tmp_path / "ckpt_b", seed=2)
    out = tmp_path / "export"
    export_inference(tmp_path / "ckpt_a", out)
    code = (
        CHILD_PRELUDE.format(repo=str(REPO))
        + textwrap.dedent(KILL_POINTS[point])
        + f"ck.export_inference({str(tmp_path / 'ckpt_b')!r}, {str(out)!r})\n"
    )
    assert _run_child(code) == -signal.SIGKILL

    model, _, _ = load_inference_model(out)  # the previous export, whole
    assert _same(model.state_dict(), old_w)
    export_inference(tmp_path / "ckpt_b", out)  # the next export recovers and replaces it
    model, _, _ = load_inference_model(out)
    assert _same(model.state_dict(), new_w)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_a", "ckpt_b", "export"]  # no .tmp/.old left


def test_tensor_file_killed_mid_write_keeps_previous_file(tmp_path):
    """`save_tensors` (weights.pt, ema.pt, rng_rank*.pt) writes a temporary then renames it."""
    from clasp_dist.training.checkpoint import load_tensors, save_tensors

    path = tmp_path / "weights.pt"
    save_tensors(path, {"w": torch.ones(1000)})
    code = CHILD_PRELUDE.format(repo=str(REPO)) + textwrap.dedent(f"""
        import torch
        real_save = torch.save
        def save(obj, f, *a, **kw):
            import io
            buf = io.BytesIO(); real_save(obj, buf)
            data = buf.getvalue()
            f.write(data[: len(data) // 2]); f.flush()  # save_tensors hands torch.save an open file
            die()
        torch.save = save
        ck.save_tensors(ck.Path({str(path)!r}), {{"w": torch.zeros(1000)}})
    """)
    assert _run_child(code) == -signal.SIGKILL
    assert torch.equal(load_tensors(path)["w"], torch.ones(1000))


@pytest.mark.slow
def test_torn_checkpoint_directory_is_never_resumed_from_or_chosen(ray_session, tiny_root, tmp_path):
    """A run is stopped after its first (registered) checkpoint; a later, half-written checkpoint
    directory (ema.pt cut short, no DeepSpeed state, newest timestamp) is left in its storage,
    as a process killed during the upload would leave it. Rerunning the run resumes from the
    registered checkpoint, finishes, and never picks the torn directory."""
    from clasp_dist.training.driver import run_training

    first = run_training(run_cfg(tmp_path, tiny_root, "train.epochs=1", "run.name=torn"))
    storage = tmp_path / "torn"
    [good] = registered_checkpoints(storage)
    torn = storage / "checkpoint_2999-01-01_00-00-00.000000"
    shutil.copytree(storage / good, torn)
    shutil.rmtree(torn / "deepspeed")
    weights = torn / "ema.pt"  # the inference weights of a run with the EMA (no separate weights.pt)
    weights.write_bytes(weights.read_bytes()[:100])
    (torn / "train_state.json").write_text('{"epoch": 5')

    second = run_training(
        run_cfg(tmp_path, tiny_root, "train.epochs=2", "run.name=torn", "run.resume_changes=[train.epochs]")
    )  # a named, safe change
    epochs = [m["epoch"] for m in epoch_metrics(second.run_dir)]
    assert epochs == [0, 1], epochs  # resumed after epoch 1 from the registered checkpoint
    assert torn.name not in registered_checkpoints(storage)
    assert Path(second.metrics["checkpoint"]).name != torn.name
    assert first.metrics["best_epoch"] == 0 and second.metrics["best_epoch"] == 1
