"""`ray start --head` + `ray job submit --working-dir . -- python jobs/train.py ...` on a throw-away local
cluster with token authentication on.

The cluster is this test's alone: its own --temp-dir, free ports, its own token file
(RAY_AUTH_TOKEN_PATH); `ray start --block` runs in its own process group, and stopping it (SIGTERM,
then SIGKILL of its process group and of any process still naming the temp dir) leaves other Ray sessions on
the machine, such as the test session's own, untouched. `ray stop` is never called: it stops every
Ray on the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO, epoch_metrics, free_port, job_env

pytestmark = pytest.mark.slow

EXCLUDES = '{"excludes": ["/.venv", "/runs", "/data", "/.git", "__pycache__", "*.egg-info"]}'
"""Upload filter (gitignore patterns, anchored with '/' so clasp_dist/data/ still travels)."""


def _ray(env: dict) -> str:
    return str(Path(env["PATH"].split(":")[0]) / "ray")


def _pids_naming(text: str) -> list[int]:
    """Processes whose command line mentions `text` (this cluster's temp dir): ours only."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ray start exited ({proc.returncode}): {proc.stdout.read()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # answered (401 without a token): the dashboard is up
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"dashboard at {url} did not come up")


@pytest.fixture
def head_node(tmp_path):
    """A head node with token auth on; yields (dashboard URL, env for clients)."""
    temp_dir = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray's unix sockets live under it
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = job_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    env.pop("PYTHONPATH", None)  # the job must run the uploaded working dir's code
    env.pop("RAY_AUTH_TOKEN", None)
    port, dash = free_port(), free_port()
    cmd = [
        _ray(env),
        "start",
        "--head",
        "--block",
        f"--temp-dir={temp_dir}",
        "--num-cpus=2",
        f"--port={port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        "--object-store-memory=200000000",
        "--disable-usage-stats",
    ]
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        _wait_http(f"http://127.0.0.1:{dash}/api/version", 90, proc)
        yield f"http://127.0.0.1:{dash}", env
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` drains, then stops what it started
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a throw-away cluster needs no graceful drain
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in _pids_naming(temp_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_trains_from_the_uploaded_working_dir(head_node, tiny_root, tmp_path):
    address, env = head_node
    out = tmp_path / "out"
    submit = [
        _ray(env),
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        ".",
        "--runtime-env-json",
        EXCLUDES,
        "--",
        "python",
        "jobs/train.py",
        "config=tiny",
        "train.epochs=1",
        "train.progress_bar=off",
        f"data.root={tiny_root}",
        f"run.output_dir={out}",
        f"run.storage_path={out}",
        "run.name=submitted",
    ]
    done = subprocess.run(submit, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    logs = done.stdout[-4000:] + done.stderr[-3000:]
    assert done.returncode == 0, logs
    assert "succeeded" in done.stdout and "test average mAP" in done.stdout, logs
    assert [m["epoch"] for m in epoch_metrics(out / "submitted")] == [0]
    assert (out / "submitted" / "metrics.json").is_file()

    unauthenticated = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    unauthenticated.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64)  # wrong token: refused
    refused = subprocess.run(
        [_ray(env), "job", "list", "--address", address],
        env=unauthenticated,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
