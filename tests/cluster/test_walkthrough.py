"""docs/cluster.md's walkthroughs against the files: `python cluster/check.py` passes on a filled-in copy, the
documented commands write only where the documented IAM policy allows, and what the docs say about Ray's own
launchers is what the installed Ray does."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "cluster.md").read_text()
ACCOUNT = "123456789012"
PROJECT = "clasp-proj-123"
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com"


def _fill(text: str, rel: str) -> str:
    """What a user types into the placeholders: the account id (AWS, KubeRay) or project id (GCP), a registry."""
    value = PROJECT if rel == "gcp.yaml" else ACCOUNT
    return text.replace("registry.example.com", REGISTRY).replace("REPLACE_ME", value)


def _filled_copy(tmp_path: Path) -> tuple[Path, dict]:
    """A copy of cluster/ with every placeholder filled in, and a HOME with a private Ray token."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "cluster", repo / "cluster", ignore=shutil.ignore_patterns("__pycache__"))
    for path in (repo / "cluster").rglob("*"):
        if path.suffix in (".yaml", ".yml") or path.name == "Dockerfile":
            path.write_text(_fill(path.read_text(), path.relative_to(repo / "cluster").as_posix()))
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    token = home / ".ray" / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    return repo, {**os.environ, "HOME": str(home)}


def _check(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "cluster/check.py", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )


def test_check_without_arguments_passes_on_a_filled_in_copy(tmp_path):
    """The documented `python cluster/check.py && ray up ...`: 0 findings once the user filled everything in
    (its own source and the docs name the placeholders without being findings), and one left is a finding."""
    repo, env = _filled_copy(tmp_path)
    proc = _check(repo, env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert proc.stdout.strip().splitlines()[-1].endswith(", 0 finding(s)")
    gcp = repo / "cluster" / "gcp.yaml"
    gcp.write_text(gcp.read_text().replace(f"project_id: {PROJECT}", "project_id: REPLACE_ME"))
    proc = _check(repo, env)
    assert proc.returncode == 1 and "gcp.yaml: line" in proc.stdout and "placeholder to fill in" in proc.stdout
    assert "check.py" not in proc.stdout
