"""checkov's generic Kubernetes and Dockerfile policies on cluster/, run from a venv of its own
(requirements/checkov.txt: its pins conflict with the stack's boto3). The first run on a machine installs it
into .venv/checkov-<hash> (about a minute); later runs reuse it. cluster/check.py keeps the rules only this
project knows."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQ = ROOT / "requirements" / "checkov.txt"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def checkov() -> str:
    venv = ROOT / ".venv" / f"checkov-{hashlib.sha256(REQ.read_bytes()).hexdigest()[:12]}"
    exe = venv / "bin" / "checkov"
    if not exe.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-r", str(REQ)],
            check=True,
            timeout=780,
        )
    return str(exe)


def _run(checkov: str, directory: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    return subprocess.run(
        [
            checkov,
            "-d",
            str(directory),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--compact",
            "--quiet",
            "--skip-download",
            "-o",
            "cli",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_checkov_passes_the_cluster_files(checkov):
    proc = _run(checkov, ROOT / "cluster")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "dockerfile scan results" in proc.stdout and "kubernetes scan results" in proc.stdout


def test_checkov_fails_broken_copies(checkov, tmp_path):
    docker = (ROOT / "cluster" / "Dockerfile").read_text().replace("USER 1000\n", "")
    (tmp_path / "Dockerfile").write_text(docker)
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n"
    )  # the default namespace
    proc = _run(checkov, tmp_path)
    assert proc.returncode == 1
    assert "CKV_DOCKER_3" in proc.stdout and "CKV_K8S_21" in proc.stdout
