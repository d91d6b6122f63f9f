"""Plain helpers shared by the test directories (fixtures live in tests/conftest.py): the repository root, the
`tiny` run config, job subprocesses and their metrics, and free loopback ports. Import as
`from tests.helpers import ...` (tests/ is a package; pytest puts the repository root on sys.path)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = ["config=tiny", "train.epochs=2", "train.progress_bar=off"]
"""Overrides of every test run: the `tiny` preset, 2 epochs, no progress bar (tests override train.epochs)."""


def run_cfg(tmp_path: Path, root: str, *extra: str):
    """The typed `tiny` config of a test run on `root` that writes everything under `tmp_path`."""
    from clasp_dist.config import load_config

    return load_config(
        TINY + [f"data.root={root}", f"run.output_dir={tmp_path}", f"run.storage_path={tmp_path}", *extra]
    )


def epoch_metrics(run_dir: Path) -> list[dict]:
    """The epoch records of a run's metrics.jsonl ([] while there is none yet: tests poll a running job)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def job_env(**extra: str) -> dict:
    """The environment of a job subprocess: this checkout importable, the venv's `ray` on PATH, no RAY_ADDRESS."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO),
        RAY_USAGE_STATS_ENABLED="0",
        DS_ACCELERATOR="cpu",
        TQDM_DISABLE="1",
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        **extra,
    )
    env.pop("RAY_ADDRESS", None)
    return env


def train_command(*overrides: str) -> list[str]:
    return [sys.executable, str(REPO / "jobs" / "train.py"), *TINY, *overrides]


def run_job(args: list[str], env: dict, timeout: float = 420) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A loopback port nothing listens on (released on return: bind a server to it, or use it as a closed port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def registered_checkpoints(fs, run: str) -> list:
    """The checkpoints Ray Train has registered for the run stored at `run` (an fsspec path), [] before the first.
    A checkpoint folder can be uploaded before it is registered; a driver killed in between resumes from nothing."""
    fs.invalidate_cache()
    try:
        snapshot = json.loads(fs.cat(f"{run}/checkpoint_manager_snapshot.json"))
    except FileNotFoundError:
        return []
    return snapshot.get("checkpoint_results") or []
