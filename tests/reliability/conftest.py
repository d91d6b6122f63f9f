"""Helpers of the reliability tests: registered checkpoints, waiting, ways to find and kill *this* test session's Ray
processes (the machine is shared: never touch another session's), and a killable S3 server. The `tiny` dataset, run
configs and ports are shared by every test directory (tests/conftest.py, tests/helpers.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import free_port, port_open

HERE = Path(__file__).resolve().parent


def registered_checkpoints(storage_run_dir: Path) -> list[str]:
    """Checkpoints Ray Train has registered (its manager snapshot), not merely directories on disk."""
    snapshot = Path(storage_run_dir) / "checkpoint_manager_snapshot.json"
    if not snapshot.exists():
        return []
    try:
        state = json.loads(snapshot.read_text())
    except (OSError, ValueError):  # being rewritten
        return []
    return [r["checkpoint_dir_name"] for r in state.get("checkpoint_results", [])]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05, alive=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if alive is not None and not alive():
            raise AssertionError(f"gave up waiting for {what}: the run ended first")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def session_processes(name: str) -> list:
    """This Ray session's worker processes whose title starts with `ray::<name>` (children of our raylet)."""
    import psutil

    from clasp_dist.compat import session_raylet_pid

    raylet = session_raylet_pid()
    found = []
    for proc in psutil.Process(raylet).children(recursive=True):
        try:
            if " ".join(proc.cmdline()).startswith(f"ray::{name}"):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_train_worker(rank_hint: int = 0) -> int:
    """SIGKILL one RayTrainWorker process of this session; returns its pid."""
    workers = wait_for(lambda: session_processes("RayTrainWorker"), 30, "a RayTrainWorker process")
    victim = sorted(workers, key=lambda p: p.pid)[min(rank_hint, len(workers) - 1)]
    os.kill(victim.pid, signal.SIGKILL)
    return victim.pid


class DurableS3:
    """A moto S3 server in its own process on a fixed port, killable and restartable on that port.

    moto keeps objects in memory, so a killed moto forgets them; a real object store keeps them on
    disk. To be realistic, each (re)start loads the bucket contents from a local "disk" directory
    into the server *before* its port opens (tests/reliability/durable_s3.py), so clients see an
    outage followed by the same, intact objects, never a window with an empty bucket.
    """

    def __init__(self, disk: Path, bucket: str, prefix: str):
        self.disk, self.bucket, self.prefix = Path(disk), bucket, prefix
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "durable_s3.py"), str(self.port), str(self.disk), self.bucket, self.prefix],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), 30, "the S3 server to listen", interval=0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
