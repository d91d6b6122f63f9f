"""docs/cluster.md's walkthroughs against the files: `python cluster/check.py` passes on a filled-in copy, the
documented commands write only where the documented IAM policy allows, and what the docs say about Ray's own
launchers is what the installed Ray does."""

from __future__ import annotations

import json
import os
import re
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


# ---------------------------------------------------------------------------- documented paths vs. permissions

_POLICY = re.compile(
    r"put-role-policy --role-name (\S+) --policy-name (\S+) --policy-document \\\n\s*'(\{.*?\})'\n", re.S
)
_URI_ARGS = re.compile(
    r"(run\.storage_path|data\.cache_dir|data\.root|--out|--data|--checkpoint)[= ]((?:s3|gs)://[^\s`'\")\\]+)"
)
WRITES = {"run.storage_path", "data.cache_dir", "--out"}
"""Arguments whose path the job writes (checkpoints, run files, the generated dataset, a sweep, outputs)."""
RAYJOB_BUCKETS = {"REPLACE_ME-bucket": "my-bucket", "REPLACE_ME-runs-bucket": "my-runs-bucket"}
"""rayjob.yaml's placeholders: the data and runs buckets of the docs (its header says which is which)."""


def documented_policies(docs: str) -> dict[tuple[str, str], dict]:
    """Every inline IAM policy of the docs' `aws iam put-role-policy` commands, by (role, policy name)."""
    return {
        (role, name): json.loads(body.replace("<account-id>", ACCOUNT)) for role, name, body in _POLICY.findall(docs)
    }


def allowed_prefixes(docs: str) -> tuple[list[str], list[str]]:
    """(readable, writable) object prefixes of the workers: the AWS policy's s3 actions, the GCS bucket roles."""
    readable, writable = [], []
    for st in documented_policies(docs)[("clasp-ray-worker", "clasp-s3")]["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        for arn in st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]:
            if arn.endswith("/*"):
                prefix = "s3://" + arn.removeprefix("arn:aws:s3:::")[:-1]
                if "s3:GetObject" in actions:
                    readable.append(prefix)
                if "s3:PutObject" in actions:
                    writable.append(prefix)
    for bucket, role in re.findall(r"buckets add-iam-policy-binding (gs://\S+) --role roles/storage\.(\w+)", docs):
        readable.append(bucket + "/")
        if role == "objectAdmin":
            writable.append(bucket + "/")
    return readable, writable


def documented_uris(docs: str, rayjob: str) -> list[tuple[str, str]]:
    """(argument, uri) of every object-storage path the docs' commands and rayjob.yaml's entrypoint use."""
    for placeholder, bucket in sorted(RAYJOB_BUCKETS.items(), key=lambda kv: -len(kv[0])):
        rayjob = rayjob.replace(f"s3://{placeholder}/", f"s3://{bucket}/")
    return [(arg, uri) for arg, uri in _URI_ARGS.findall(docs + "\n" + rayjob) if "://..." not in uri]


def permission_violations(docs: str, rayjob: str) -> list[str]:
    readable, writable = allowed_prefixes(docs)
    out = []
    for arg, uri in documented_uris(docs, rayjob):
        allowed = writable if arg in WRITES else readable
        if not any(uri.startswith(prefix) for prefix in allowed):
            out.append(f"{arg}={uri}: {'written' if arg in WRITES else 'read'} outside {allowed}")
    return out


def test_documented_commands_write_only_where_the_documented_policy_allows():
    rayjob = (ROOT / "cluster" / "kuberay" / "rayjob.yaml").read_text()
    uris = documented_uris(DOCS, rayjob)
    assert {arg for arg, _ in uris} >= {"run.storage_path", "data.cache_dir", "data.root", "--out", "--checkpoint"}
    assert sum(1 for arg, uri in uris if uri.startswith("gs://")) >= 2
    readable, writable = allowed_prefixes(DOCS)
    assert writable and not any(p in writable for p in readable if "my-bucket/" in p)  # the data bucket: read only
    assert permission_violations(DOCS, rayjob) == []
    # Broken on purpose: a checkpoint path, a cache and the RayJob's runs in the read-only data bucket.
    for broken_docs, broken_job in [
        (
            DOCS.replace("run.storage_path=s3://my-runs-bucket/clasp-runs", "run.storage_path=s3://my-bucket/x", 1),
            rayjob,
        ),
        (DOCS.replace("data.cache_dir=s3://my-runs-bucket/", "data.cache_dir=s3://my-bucket/"), rayjob),
        (DOCS, rayjob.replace("REPLACE_ME-runs-bucket", "REPLACE_ME-bucket")),
        (DOCS.replace("gs://<runs-bucket>/clasp-runs", "gs://<data-bucket>/clasp-runs"), rayjob),
    ]:
        assert permission_violations(broken_docs, broken_job), "a write outside the runs bucket went unnoticed"


def test_the_head_role_is_scoped_to_the_cluster_tag():
    import yaml

    from cluster import check

    aws = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    policy = documented_policies(DOCS)[("clasp-ray-head", "clasp-autoscaler")]
    assert aws["provider"]["cache_stopped_nodes"] is False
    assert check.aws_head_policy_findings(policy, aws["cluster_name"]) == []
    actions = {
        a for st in policy["Statement"] for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    }
    assert {"ec2:RunInstances", "ec2:TerminateInstances", "ec2:CreateTags", "iam:PassRole"} <= actions
    broken = [
        # the first round's policy: every instance of the region
        {
            "Effect": "Allow",
            "Action": ["ec2:TerminateInstances"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestedRegion": "us-west-2"}},
        },
        {
            "Effect": "Allow",
            "Action": "ec2:StopInstances",
            "Resource": "arn:aws:ec2:us-west-2:1:instance/*",
            "Condition": {"StringEquals": {"ec2:ResourceTag/ray-cluster-name": aws["cluster_name"]}},
        },
        {
            "Effect": "Allow",
            "Action": "ec2:TerminateInstances",
            "Resource": "arn:aws:ec2:us-west-2:1:instance/*",
            "Condition": {"StringEquals": {"ec2:ResourceTag/ray-cluster-name": "another-cluster"}},
        },
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"},
    ]
    for statement in broken:
        assert check.aws_head_policy_findings({"Statement": [statement]}, aws["cluster_name"]), statement
    assert "aws iam create-service-linked-role --aws-service-name spot.amazonaws.com" in DOCS


# ---------------------------------------------------------------------------- what Ray's GCP launcher does


def _ray_gcp_source(name: str) -> str:
    import ray

    return (Path(ray.__file__).parent / "autoscaler" / "_private" / "gcp" / name).read_text()


def test_the_docs_say_what_ray_up_does_to_the_gcp_project():
    """Ray 2.60's bootstrap always runs its IAM step (no `if` around it), creating the account the docs name with
    the roles they list, and keeps a binding write for missing roles only; the docs disable the account."""
    import ast

    from ray.autoscaler._private.gcp import config as gcp_config

    assert gcp_config.DEFAULT_SERVICE_ACCOUNT_ID == "ray-autoscaler-sa-v1"
    for role in gcp_config.DEFAULT_SERVICE_ACCOUNT_ROLES:
        assert f"`{role}`" in DOCS, role
    tree = ast.parse(_ray_gcp_source("config.py"))
    bootstrap = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "bootstrap_gcp")
    unconditional = [
        c.func.id
        for stmt in bootstrap.body
        if isinstance(stmt, ast.Assign)
        for c in [stmt.value]
        if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
    ]
    assert "_configure_iam_role" in unconditional
    assert "if already_configured:" in _ray_gcp_source("config.py")
    assert "gcloud iam service-accounts disable ray-autoscaler-sa-v1@<project>.iam.gserviceaccount.com" in DOCS
    # One zone: the compute resource gets the provider's availability_zone as it is, for every node.
    assert 'self.provider_config["availability_zone"],' in _ray_gcp_source("node_provider.py")


def test_gcp_zone_list_and_rays_own_account_are_refused():
    import copy

    import yaml

    from cluster import check

    gcp = yaml.safe_load(_fill((ROOT / "cluster" / "gcp.yaml").read_text(), "gcp.yaml"))
    assert not [f for f in check.autoscaler_findings(gcp) if "zone" in f or "ray-autoscaler" in f]
    zones = copy.deepcopy(gcp)
    zones["provider"]["availability_zone"] = "us-central1-a,us-central1-c"
    assert any("one zone" in f for f in check.autoscaler_findings(zones))
    ray_account = copy.deepcopy(gcp)
    node_config = ray_account["available_node_types"]["gpu_a100_1x"]["node_config"]
    node_config["serviceAccounts"][0]["email"] = f"ray-autoscaler-sa-v1@{PROJECT}.iam.gserviceaccount.com"
    assert any("ray-autoscaler-sa-v1" in f for f in check.autoscaler_findings(ray_account))


# ---------------------------------------------------------------------------- the files' own commands and names


def _normalised(text: str) -> str:
    return " ".join(text.replace("\\\n", " ").split())


def test_the_files_commands_and_names_are_the_docs():
    """Every command a cluster file's header gives is in the docs word for word, every cluster/ path the docs
    name exists, and the names the docs' commands use are the manifests' own."""
    import yaml

    docs = _normalised(DOCS)
    commands = []
    for path in sorted((ROOT / "cluster").rglob("*.yaml")):
        for line in path.read_text().splitlines():
            m = re.match(r"#\s+((?:kubectl|ray|bash|python|gcloud|aws)\s.*?)(?:\s{2,}#.*)?$", line)
            if m:
                commands.append((path.name, _normalised(m.group(1))))
    assert len(commands) >= 5
    for name, command in commands:
        assert command in docs, f"{name}: `{command}` is not in docs/cluster.md"
    for rel in set(re.findall(r"(?<![\w/])(cluster/[\w./-]+\.(?:yaml|sh|py|txt)|cluster/Dockerfile)", DOCS)):
        assert (ROOT / rel).is_file(), rel
    for rel in re.findall(r"requirements/[\w.-]+\.txt", DOCS):
        assert (ROOT / rel).is_file(), rel
    rayjob = next(d for d in yaml.safe_load_all((ROOT / "cluster/kuberay/rayjob.yaml").read_text()) if d)
    raycluster = next(d for d in yaml.safe_load_all((ROOT / "cluster/kuberay/raycluster.yaml").read_text()) if d)
    assert f"job/{rayjob['metadata']['name']}" in docs and f"rayjob {rayjob['metadata']['name']}" in docs
    assert f"svc/{raycluster['metadata']['name']}-head-svc" in docs
    assert f"-n {rayjob['metadata']['namespace']} " in docs
    aws = yaml.safe_load((ROOT / "cluster/aws.yaml").read_text())
    assert f'"aws:RequestTag/ray-cluster-name":"{aws["cluster_name"]}"' in DOCS.replace(" ", "")
