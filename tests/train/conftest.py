"""Fixtures for the Ray Train + DeepSpeed end-to-end tests: small generated datasets, a job runner."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["config=tiny", "train.epochs=2", "train.progress_bar=off"]


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> str:
    """The `tiny` semi-synthetic dataset (48/16/16 videos) in a local directory."""
    from clasp_dist.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("tiny") / "data"
    return generate_dataset(str(root), "tiny", seed=0, progress=False, workers=1)


@pytest.fixture(scope="session")
def tiny_run(ray_session, tiny_root, tmp_path_factory):
    """One complete 2-epoch training run on `tiny` (shared by the tests that need a trained run)."""
    from clasp_dist.trainer import run_training

    return run_training(run_cfg(tmp_path_factory.mktemp("tiny_run"), tiny_root))


def run_cfg(tmp_path: Path, root: str, *extra: str):
    from clasp_dist.config import load_config

    return load_config(TINY + [f"data.root={root}", f"run.output_dir={tmp_path}", f"run.storage_path={tmp_path}",
                               *extra])


def epoch_metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def job_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0", DS_ACCELERATOR="cpu", TQDM_DISABLE="1",
               PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}", **extra)
    env.pop("RAY_ADDRESS", None)
    return env


def train_command(*overrides: str) -> list[str]:
    return [sys.executable, str(REPO / "jobs" / "train.py"), *TINY, *overrides]


def run_job(args: list[str], env: dict, timeout: float = 420) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
