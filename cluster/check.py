"""Static checks of the cluster deployment files: schema validity and security policy.

    python cluster/check.py              # before deploying: every file under cluster/, placeholders are findings
    python cluster/check.py FILE ...     # just these files
    python cluster/check.py --template   # the repository's templates: placeholders listed, not findings
    python cluster/check.py --help

Exits 1 and prints one line per finding when anything fails. Needs pyyaml, jsonschema and an installed
ray (the autoscaler schema ships inside it); no network access. tests/cluster/ runs the same functions.

What is enforced (each function returns a list of human-readable findings; empty = pass):
- Ray autoscaler configs (a YAML with `cluster_name` + `provider`): valid against the
  `ray/autoscaler/ray-schema.json` of the installed Ray, before and after Ray's own default
  merging (`prepare_config`, offline); a head node type with `resources: {"CPU": 0}`; at least one
  GPU-capable worker type with min/max workers; `idle_timeout_minutes`; a pinned docker image; no
  package installs in any setup/initialization/start command (including Ray's merged defaults,
  which install Ray with pip when a command list is left out); token authentication in the start
  commands; file_mounts carrying code only (plus Ray's token), never cloud credentials or data;
  every key commented; AWS node types on a pre-created security group (Ray's auto-created one
  opens SSH to the world) and GCP node types on an explicit network with tags.
- KubeRay manifests (apiVersion ray.io/v1, RayCluster or RayJob): head group with
  rayStartParams num-cpus "0", worker groups with nvidia.com/gpu limits, a memory-backed /dev/shm
  emptyDir mounted in every Ray container, enableInTreeAutoscaling true, token auth, a service
  account, pinned images, a ClusterIP head Service; RayJob entrypoint runs jobs/train.py.
- First contact and least privilege: a registry login in initialization_commands for a
  private image; AWS_DEFAULT_REGION of the provider region in the containers; a dedicated head
  identity (IamInstanceProfile / serviceAccounts) that no worker shares; GCP Spot through
  provisioningModel (never the legacy `preemptible`); an 8-GPU node type on one node unless EFA and a
  placement group are configured. KubeRay: head and workers on different service accounts (only the
  head carries the autoscaler Role), Restricted Pod Security in every Ray container, a GPU-model
  nodeSelector on GPU groups, the head kept off GPU nodes, AWS_DEFAULT_REGION in every Ray container,
  RayJob ttlSecondsAfterFinished <= 600, and NetworkPolicy ingress only from pods selected by label.
- KubeRay fields: every RayCluster/RayJob field against the KubeRay v1.5.1 CRD (vendored, strict:
  unknown fields are errors) and every pod template against Kubernetes' PodTemplateSpec
  (kubernetes-validate, strict); other Kubernetes objects against their own schemas.
- Placeholders (`REPLACE_ME`, the example registry `registry.example.com`): findings unless --template.
- The Ray token: a token file_mounts source outside the repository (and, when it exists, mode 0600);
  no tracked file of the repository holding a token-looking string (64 hex characters outside a
  checksum context, or the local ~/.ray/auth_token itself) or named like a token file.
- Every file (any format): no world-open (all-IPv4 or all-IPv6 CIDR) rule that covers the Ray ports
  6379/8265/10001 (single ports, ranges, "all" protocols, or rules whose ports cannot be
  determined); token authentication never switched off; no credential-looking strings (AWS
  access key ids, AWS secret/session key names, private key blocks, service-account key JSON,
  literal Ray tokens); no floating or untagged images; no LoadBalancer/NodePort services,
  Ingresses or Secrets.
"""

from __future__ import annotations

import argparse
import copy
import importlib.resources
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

CLUSTER_DIR = Path(__file__).resolve().parent
REPO_DIR = CLUSTER_DIR.parent
PROTECTED_PORTS = (6379, 8265, 10001)
"""Ray GCS, dashboard/job API and client ports: never reachable from the whole internet."""
ALL_PORTS = (0, 65535)
PLACEHOLDER = "REPLACE_ME"
MAX_JOB_TTL_S = 600
"""Longest a RayJob's finished cluster (GPU pods) may be kept."""
RAY_GCP_ACCOUNT = "ray-autoscaler-sa-v1"
"""The service account Ray's GCP launcher creates with project-wide roles on every `ray up`; no node runs as it."""
PLACEHOLDERS = (PLACEHOLDER, "registry.example.com")
"""Strings that mark a value still to fill in: the account/project/bucket ids and the example registry."""

# Patterns are assembled so that this file never matches its own text scan.
_WORLD_V4 = re.compile(r"(?<![\d.])0\.0\.0\.0/0(?!\d)")
_WORLD_V6 = re.compile(r"(?<![0-9A-Fa-f:]):{2}/0(?!\d)")
_AUTH_OFF = re.compile(r"RAY_AUTH_MODE[\"']?\s*[=:]\s*[\"']?(?:disabled)\b", re.I)
_CREDENTIALS = [
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile("aws_secret" + "_access_key", re.I), "an AWS secret access key name"),
    (re.compile("aws_session" + "_token", re.I), "an AWS session token name"),
    (re.compile(r"-{5}BEGIN[A-Z ]*PRIVATE KEY-{5}"), "a private key block"),
    (re.compile("[\"']private_key" + r"(?:_id)?[\"']\s*:"), "a service-account key (JSON)"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"), "a GitHub token"),
    (re.compile(r"RAY_AUTH_TOKEN\s*=\s*[\"']?(?![\"'$<{])[A-Za-z0-9_+/=.-]{8,}"), "a literal Ray auth token"),
]
_FLOATING_TAG = re.compile(":" + "lat" + r"est(?![\w.-])", re.I)
_FLOATING_TAGS = {"latest", "nightly"}
_INSTALL = re.compile(r"\b(?:pip3?|uv\s+pip|conda|mamba|micromamba)\s+install\b|\bpython3?\s+-m\s+pip\s+install\b")
_CREDENTIAL_PATHS = re.compile(
    r"(?:^|/)(?:\.aws|\.config/gcloud|\.ssh|\.kube|\.docker|\.netrc|\.boto)(?:/|$)"
    r"|credentials|\.pem$|\.p12$|\.key$|service[-_]?account.*\.json$|/data(?:/|$)|^data(?:/|$)|^s3://|^gs://",
    re.I,
)
_RAY_TOKEN_FILE = "~/.ray/auth_token"
_COMMAND_KEYS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)
_TEXT_SUFFIXES = {
    ".yaml",
    ".yml",
    ".json",
    ".sh",
    ".bash",
    ".py",
    ".md",
    ".txt",
    ".toml",
    ".cfg",
    ".ini",
    ".env",
    ".tf",
    ".dockerignore",
    "",
}


# ----------------------------------------------------------------------------- loading


def ray_schema() -> dict:
    """The autoscaler JSON schema shipped inside the installed ray package."""
    ref = importlib.resources.files("ray.autoscaler").joinpath("ray-schema.json")
    return json.loads(ref.read_text())


def load_yaml_docs(text: str) -> list[Any]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def is_autoscaler_config(doc: Any) -> bool:
    return isinstance(doc, dict) and "cluster_name" in doc and "provider" in doc and "apiVersion" not in doc


def is_kuberay(doc: Any) -> bool:
    return isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("ray.io/")


def _walk(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, value) in a parsed YAML/JSON tree, the root included."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{path}[{i}]")


# ----------------------------------------------------------------------------- images


def image_problem(ref: str) -> str | None:
    """Why an image reference is not pinned (None when it has an explicit tag or a digest)."""
    ref = ref.strip()
    if not ref:
        return "empty image reference"
    if "@sha256:" in ref:
        return None
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {ref!r} has no tag (resolves to a floating tag)"
    tag = last.rsplit(":", 1)[1]
    if tag.lower() in _FLOATING_TAGS or not tag:
        return f"image {ref!r} uses the floating tag {tag!r}"
    return None


def yaml_image_findings(doc: Any) -> list[str]:
    out = []
    for path, value in _walk(doc):
        key = path.rsplit(".", 1)[-1]
        if key in ("image", "head_image", "worker_image") and isinstance(value, str):
            problem = image_problem(value)
            if problem:
                out.append(f"{path}: {problem}")
    return out


def dockerfile_findings(text: str) -> list[str]:
    out, stages = [], set()
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if not m:
            continue
        ref = m.group(1)
        if m.group(2):
            stages.add(m.group(2).lower())
        if ref.lower() == "scratch" or ref.lower() in stages or "$" in ref:
            if "$" in ref:
                out.append(f"line {n}: FROM {ref}: base image via a build arg cannot be checked; write it literally")
            continue
        problem = image_problem(ref)
        if problem:
            out.append(f"line {n}: FROM {problem}")
    return out


# ----------------------------------------------------------------------------- open ports


def _covers(lo: int, hi: int) -> list[int]:
    return [p for p in PROTECTED_PORTS if lo <= p <= hi]


def _world(values: Iterable[Any]) -> list[str]:
    return [str(v) for v in values if isinstance(v, str) and (_WORLD_V4.search(v) or _WORLD_V6.search(v))]


def _rule_port_ranges(rule: dict) -> list[tuple[int, int]]:
    """Port ranges of an AWS IpPermission- or GCP firewall-shaped dict (unknown = all ports)."""
    if "IpProtocol" in rule:  # AWS IpPermission
        proto = str(rule.get("IpProtocol")).lower()
        if proto in ("-1", "all"):
            return [ALL_PORTS]
        lo, hi = rule.get("FromPort"), rule.get("ToPort", rule.get("FromPort"))
        try:
            lo, hi = int(lo), int(hi)
        except (TypeError, ValueError):
            return [ALL_PORTS]
        return [ALL_PORTS] if lo < 0 or hi < 0 else [(lo, hi)]
    for key in ("allowed", "allow"):  # GCP firewall rule
        if isinstance(rule.get(key), list):
            ranges = []
            for entry in rule[key]:
                ports = entry.get("ports") if isinstance(entry, dict) else None
                if not ports:
                    ranges.append(ALL_PORTS)
                    continue
                for spec in ports:
                    m = re.fullmatch(r"\s*(\d+)(?:\s*-\s*(\d+))?\s*", str(spec))
                    ranges.append((int(m.group(1)), int(m.group(2) or m.group(1))) if m else ALL_PORTS)
            return ranges
    for lo_key, hi_key in (("FromPort", "ToPort"), ("from_port", "to_port"), ("port", "port")):
        if lo_key in rule:
            try:
                return [(int(rule[lo_key]), int(rule.get(hi_key, rule[lo_key])))]
            except (TypeError, ValueError):
                return [ALL_PORTS]
    return [ALL_PORTS]


def structured_port_findings(doc: Any) -> list[str]:
    """World-open ingress rules in a parsed document that cover a Ray port."""
    out = []
    for path, node in _walk(doc):
        if not isinstance(node, dict):
            continue
        cidrs: list[str] = []
        for key in ("IpRanges", "Ipv6Ranges"):
            for r in node.get(key) or []:
                if isinstance(r, dict):
                    cidrs += _world([r.get("CidrIp"), r.get("CidrIpv6")])
        for key in ("sourceRanges", "source_ranges", "cidr_blocks", "ipv6_cidr_blocks", "loadBalancerSourceRanges"):
            if isinstance(node.get(key), list):
                cidrs += _world(node[key])
        if any(k in node for k in ("IpProtocol", "FromPort", "ToPort", "protocol", "port", "from_port")):
            # A rule that carries its CIDR inline; bare {CidrIp: ...} entries are judged by the
            # IpRanges/Ipv6Ranges rule that contains them.
            for key in ("CidrIp", "CidrIpv6", "cidr", "cidrBlock"):
                cidrs += _world([node.get(key)])
        if not cidrs:
            continue
        hit = sorted({p for lo, hi in _rule_port_ranges(node) for p in _covers(lo, hi)})
        if hit:
            out.append(f"{path or '<root>'}: {', '.join(sorted(set(cidrs)))} may reach Ray port(s) {hit}")
    return out


_PORT_SPECS = [
    re.compile(r"--port[s]?[= ]\s*(\d+)(?:\s*-\s*(\d+))?"),
    re.compile(r"\b(?:tcp|udp|sctp)[:/](\d+)(?:-(\d+))?", re.I),
    re.compile(r"\bFromPort\W+(\d+)\W+ToPort\W+(\d+)", re.I),
    re.compile(r"\bport\s*[=:]\s*(\d+)(?:\s*-\s*(\d+))?", re.I),
]
_ALL_PORT_SPECS = re.compile(
    r"--protocol[= ]\s*(?:all|-1)\b|IpProtocol\W+(?:-1|all)\b|--allow[= ]\s*(?:all\b|(?:tcp|udp)(?![:/\w]))"
    r"|--rules[= ]\s*all\b",
    re.I,
)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    buf, start = [], 0
    for n, line in enumerate(text.splitlines(), 1):
        if not buf:
            start = n
        if line.rstrip().endswith("\\"):
            buf.append(line.rstrip()[:-1])
            continue
        buf.append(line)
        yield start, " ".join(buf)
        buf = []
    if buf:
        yield start, " ".join(buf)


def text_port_findings(text: str) -> list[str]:
    """World-open CIDRs in shell/Terraform/prose lines whose ports cover, or may cover, a Ray port."""
    out = []
    for n, line in _logical_lines(text):
        if not (_WORLD_V4.search(line) or _WORLD_V6.search(line)):
            continue
        ranges = [(int(m.group(1)), int(m.group(2) or m.group(1))) for rx in _PORT_SPECS for m in rx.finditer(line)]
        if _ALL_PORT_SPECS.search(line):
            ranges.append(ALL_PORTS)
        if not ranges:
            out.append(
                f"line {n}: world-open CIDR with ports that cannot be determined (could include "
                f"{list(PROTECTED_PORTS)})"
            )
            continue
        hit = sorted({p for lo, hi in ranges for p in _covers(lo, hi)})
        if hit:
            out.append(f"line {n}: world-open CIDR reaches Ray port(s) {hit}")
    return out


# ----------------------------------------------------------------------------- text scan


def text_findings(text: str, *, structured: bool = False) -> list[str]:
    """Checks that apply to the raw text of any file. With structured=True (YAML/JSON that
    parsed), world-open rules are judged from the parsed rules instead of line by line."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if _AUTH_OFF.search(line):
            out.append(f"line {n}: Ray token authentication switched off")
        for rx, what in _CREDENTIALS:
            if rx.search(line):
                out.append(f"line {n}: looks like {what}")
        if _FLOATING_TAG.search(line):
            out.append(f"line {n}: floating image tag")
    if not structured:
        out += text_port_findings(text)
    return out


# ----------------------------------------------------------------------------- autoscaler configs


def schema_errors(config: Any, schema: dict | None = None) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema or ray_schema())
    return [
        f"schema: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    ]


def prepared_config(config: dict) -> dict:
    """The config as `ray up` sees it: Ray's provider defaults merged in (offline)."""
    import logging

    from ray.autoscaler._private.util import prepare_config

    logging.getLogger("ray.autoscaler._private.util").setLevel(logging.WARNING)

    return prepare_config(copy.deepcopy(config))


def _commands(config: dict) -> Iterator[tuple[str, str]]:
    for key in _COMMAND_KEYS:
        for i, cmd in enumerate(config.get(key) or []):
            yield f"{key}[{i}]", str(cmd)
    for name, nt in (config.get("available_node_types") or {}).items():
        for key in ("initialization_commands", "worker_setup_commands"):
            for i, cmd in enumerate(nt.get(key) or []):
                yield f"available_node_types.{name}.{key}[{i}]", str(cmd)


def uncommented_keys(text: str) -> list[str]:
    """Mapping keys of a block-style YAML file with no comment on the line above or inline."""
    out, prev, in_block, block_indent = [], "", False, 0
    key_re = re.compile(r"^(\s*)(?:-\s+)?([^\s#'\"{\[-][^#]*?|\"[^\"]*\"|'[^']*'):(?:\s|$)")
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if in_block and indent > block_indent:
            continue  # inside a block scalar
        in_block = False
        stripped = line.strip()
        if stripped.startswith("#"):
            prev = line
            continue
        m = key_re.match(line)
        if m and not stripped.startswith("---"):
            if not prev.strip().startswith("#") and " #" not in line:
                out.append(f"line {n}: key {m.group(2).strip()!r} has no comment")
            if re.search(r":\s*[>|][-+]?\s*$", line):
                in_block, block_indent = True, indent
        prev = line
    return out


def autoscaler_findings(config: dict, text: str | None = None) -> list[str]:
    """Schema + policy findings for one Ray cluster launcher config."""
    out = schema_errors(config)
    if out:
        return out  # the rest assumes a well-formed config
    try:
        prepared = prepared_config(config)
    except Exception as exc:  # noqa: BLE001 - any failure of Ray's own preparation is a finding
        return [f"ray prepare_config failed: {type(exc).__name__}: {exc}"]
    out += [f"after Ray's defaults: {e}" for e in schema_errors(prepared)]
    try:
        from ray.autoscaler._private.util import validate_config

        validate_config(prepared)
    except Exception as exc:  # noqa: BLE001
        out.append(f"ray validate_config: {type(exc).__name__}: {exc}")

    provider = config["provider"].get("type")
    types = config.get("available_node_types") or {}
    head = config.get("head_node_type")
    if head not in types:
        out.append("head_node_type must name one of available_node_types")
    else:
        if (types[head].get("resources") or {}).get("CPU") != 0:
            out.append(f'head node type {head!r} must set resources: {{"CPU": 0}} (no training work on the head)')
    workers = {k: v for k, v in types.items() if k != head}
    if not workers:
        out.append("no worker node types")
    for name, nt in workers.items():
        if "min_workers" not in nt or "max_workers" not in nt:
            out.append(f"worker type {name!r} needs min_workers and max_workers")
        elif nt["max_workers"] < max(1, nt["min_workers"]):
            out.append(f"worker type {name!r}: max_workers must be >= max(1, min_workers)")
    if not any(_is_gpu_type(provider, nt) for nt in workers.values()):
        out.append("no GPU worker node type")
    if "idle_timeout_minutes" not in config:
        out.append("idle_timeout_minutes is not set")

    docker = config.get("docker") or {}
    if not (docker.get("image") or (docker.get("head_image") and docker.get("worker_image"))):
        out.append("docker.image is not set: the cluster must run the pinned clasp-dist image")
    out += yaml_image_findings(config)

    for where, cmd in _commands(prepared):
        if _INSTALL.search(cmd):
            out.append(f"{where}: installs packages at node start ({cmd.strip()[:60]!r}); build them into the image")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        cmds = " ".join(map(str, prepared.get(key) or []))
        run_opts = " ".join(map(str, docker.get("run_options") or []))
        if not re.search(r"RAY_AUTH_MODE=token", cmds + " " + run_opts):
            out.append(f"{key}: Ray must start with RAY_AUTH_MODE=token")

    for remote, local in (config.get("file_mounts") or {}).items():
        local_s, remote_s = str(local), str(remote)
        if _is_token_mount(remote_s, local_s):
            out += token_source_findings(f"file_mounts[{remote_s!r}]", local_s)
            continue  # Ray's documented way to give every node the cluster token
        if _CREDENTIAL_PATHS.search(local_s) or _CREDENTIAL_PATHS.search(remote_s):
            out.append(
                f"file_mounts[{remote_s!r}] = {local_s!r}: file_mounts carry code only, never credentials or data"
            )
    if "gcp_credentials" in config["provider"]:
        out.append("provider.gcp_credentials: credentials do not belong in the config (use service accounts)")

    out += first_contact_findings(config, provider, types, head)
    if provider == "aws":
        for name, nt in types.items():
            if not nt.get("node_config", {}).get("SecurityGroupIds"):
                out.append(
                    f"aws node type {name!r} has no SecurityGroupIds: Ray's auto-created group "
                    "opens SSH to the whole internet"
                )
    if provider == "gcp":
        zone = str(config["provider"].get("availability_zone", ""))
        if re.search(r"[,\s]", zone.strip()):
            out.append(
                f"provider.availability_zone={zone!r}: Ray's GCP launcher creates every node in one zone; "
                "name one (docs/cluster.md: moving a cluster to another zone)"
            )
        for name, nt in types.items():
            emails = [str(a.get("email", "")) for a in (nt.get("node_config") or {}).get("serviceAccounts") or []]
            if any(e.startswith(RAY_GCP_ACCOUNT + "@") for e in emails):
                out.append(
                    f"gcp node type {name!r} runs as {RAY_GCP_ACCOUNT}, which `ray up` grants project-wide "
                    "compute and storage admin; use clasp-ray-head / clasp-ray-worker"
                )
        for name, nt in types.items():
            nc = nt.get("node_config", {})
            if not nc.get("networkInterfaces") or not (nc.get("tags") or {}).get("items"):
                out.append(
                    f"gcp node type {name!r} needs explicit networkInterfaces and network tags "
                    "(the default network lets SSH in from anywhere)"
                )
    out += structured_port_findings(config)
    if text is not None:
        out += uncommented_keys(text)
    return out


_REGISTRY_LOGIN = re.compile(r"docker\s+login\b|configure-docker\b|docker-credential-", re.I)
_GPUS_PER_TYPE = re.compile(r"p4d\.24xlarge|p4de\.24xlarge|p5\.48xlarge|a2-highgpu-8g|a2-ultragpu-8g|a3-")


def _identity(provider: str | None, nt: dict):
    nc = nt.get("node_config") or {}
    if provider == "aws":
        return (nc.get("IamInstanceProfile") or {}).get("Arn") or (nc.get("IamInstanceProfile") or {}).get("Name")
    return tuple(sorted(a.get("email", "") for a in nc.get("serviceAccounts") or []))


def first_contact_findings(config: dict, provider: str | None, types: dict, head: str | None) -> list[str]:
    """What fails on the first `ray up` or is broader than needed: registry login, region,
    dedicated head identity, Spot model, multi-node NCCL without a fabric."""
    out = []
    image = str((config.get("docker") or {}).get("image") or "")
    host = image.split("/", 1)[0] if "/" in image else ""
    init = " ".join(map(str, config.get("initialization_commands") or []))
    if ("." in host or ":" in host) and host != "docker.io" and not _REGISTRY_LOGIN.search(init):
        out.append(
            f"initialization_commands: no registry login for the private image {image!r} (docker pull "
            "fails with 'no basic auth credentials'): add `aws ecr get-login-password | docker login ...` "
            "or `gcloud auth configure-docker ...`"
        )
    if provider == "aws":
        region = str(config["provider"].get("region", ""))
        opts = " ".join(map(str, (config.get("docker") or {}).get("run_options") or []))
        if not re.search(rf"AWS_(?:DEFAULT_)?REGION={re.escape(region)}\b", opts):
            out.append(
                f"docker.run_options: pass --env AWS_DEFAULT_REGION={region} (the provider region) into the containers"
            )
    if head in types:
        head_id = _identity(provider, types[head])
        if not head_id:
            out.append(
                f"head node type {head!r}: no dedicated identity in node_config (IamInstanceProfile / "
                "serviceAccounts); Ray's default head role is shared by every cluster and far too broad"
            )
        for name, nt in types.items():
            if name != head and head_id and _identity(provider, nt) == head_id:
                out.append(f"worker type {name!r} runs as the head's identity; workers get their own")
    for name, nt in types.items():
        sched = (nt.get("node_config") or {}).get("scheduling") or {}
        if sched.get("preemptible"):
            out.append(
                f"node type {name!r}: scheduling.preemptible is the legacy model (stopped after 24 h); "
                "use provisioningModel: SPOT"
            )
        nc = nt.get("node_config") or {}
        itype = str(nc.get("InstanceType") or nc.get("machineType") or "")
        fabric = any(str(i.get("InterfaceType")) == "efa" for i in nc.get("NetworkInterfaces") or []) and bool(
            (nc.get("Placement") or {}).get("GroupName")
        )
        if name != head and _GPUS_PER_TYPE.search(itype) and int(nt.get("max_workers", 0)) > 1 and not fabric:
            out.append(
                f"worker type {name!r} ({itype}): max_workers > 1 spreads NCCL over plain TCP; keep 1 node "
                "or add EFA interfaces and a placement group"
            )
    return out


_TAG_CONDITIONS = {
    "ec2:RunInstances": ("aws:RequestTag/ray-cluster-name",),
    "ec2:TerminateInstances": ("ec2:ResourceTag/ray-cluster-name",),
    "ec2:CreateTags": ("ec2:ResourceTag/ray-cluster-name", "ec2:CreateAction"),
}
"""EC2 calls of the autoscaler that touch instances, and the condition keys that tie them to one cluster (Ray
tags every instance it launches with `ray-cluster-name`; CreateTags may also be limited to RunInstances' own)."""


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def aws_head_policy_findings(policy: dict, cluster_name: str, cache_stopped_nodes: bool = False) -> list[str]:
    """The head's autoscaler policy (docs/cluster.md): instance calls scoped by the cluster's tag, no
    Start/StopInstances unless stopped nodes are reused, nothing but Describe on every resource, PassRole on
    named roles only."""
    out = []
    for i, st in enumerate(_listed(policy.get("Statement") or [])):
        if st.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in _listed(st.get("Action") or [])]
        resources = [str(r) for r in _listed(st.get("Resource") or [])]
        conditions = {k: v for op in (st.get("Condition") or {}).values() for k, v in op.items()}
        for action in actions:
            where = f"Statement[{i}] {action}"
            if action in ("ec2:StartInstances", "ec2:StopInstances", "ec2:*") and not cache_stopped_nodes:
                out.append(f"{where}: not needed with cache_stopped_nodes: false (idle nodes are terminated)")
            if action == "iam:PassRole" and any(r == "*" or r.endswith(":role/*") for r in resources):
                out.append(f"{where}: PassRole on every role; name the worker role")
            if action.startswith("ec2:") and not action.startswith("ec2:Describe") and "*" in resources:
                out.append(f"{where} on Resource '*': scope it to this cluster's instances")
            keys = _TAG_CONDITIONS.get(action)
            if keys and any(r == "*" or ":instance/" in r for r in resources):
                tagged = [k for k in keys if k in conditions]
                value = conditions.get(keys[0])
                if not tagged or (tagged[0] == keys[0] and value != cluster_name):
                    out.append(f"{where}: instances not limited to the tag ray-cluster-name={cluster_name}")
    return out


def _is_gpu_type(provider: str | None, nt: dict) -> bool:
    if (nt.get("resources") or {}).get("GPU", 0) > 0:
        return True
    nc = nt.get("node_config") or {}
    itype = str(nc.get("InstanceType") or nc.get("machineType") or "")
    return bool(nc.get("guestAccelerators")) or bool(re.match(r"(?:g\d|p\d|a\d-|a2|a3|g2|gr\d)", itype))


# ----------------------------------------------------------------------------- KubeRay


def _containers(template: dict) -> list[dict]:
    return list(((template or {}).get("spec") or {}).get("containers") or [])


def _gpus_per_pod(template: dict) -> int:
    limits = ((_containers(template) or [{}])[0].get("resources") or {}).get("limits") or {}
    try:
        return int(str(limits.get("nvidia.com/gpu", 0)))
    except ValueError:
        return 0


def _pod_findings(where: str, template: dict, *, gpu: bool) -> list[str]:
    out = []
    spec = (template or {}).get("spec") or {}
    containers = _containers(template)
    if not containers:
        return [f"{where}: no containers"]
    if not spec.get("serviceAccountName"):
        out.append(f"{where}: no serviceAccountName (object storage access must come from a service account)")
    shm_volumes = {
        v.get("name") for v in spec.get("volumes") or [] if (v.get("emptyDir") or {}).get("medium") == "Memory"
    }
    ray = containers[0]
    mounts = {m.get("name") for m in ray.get("volumeMounts") or [] if m.get("mountPath") == "/dev/shm"}
    if not (mounts & shm_volumes):
        out.append(f"{where}: no /dev/shm mount of an emptyDir with medium Memory")
    if gpu:
        limits = (ray.get("resources") or {}).get("limits") or {}
        try:
            ngpu = int(str(limits.get("nvidia.com/gpu", 0)))
        except ValueError:
            ngpu = 0
        if ngpu < 1:
            out.append(f"{where}: no nvidia.com/gpu limit")
    for c in containers:
        for key in ("command", "args"):
            if _INSTALL.search(" ".join(map(str, c.get(key) or []))):
                out.append(f"{where}: container {c.get('name')!r} installs packages at start")
        for hook in (c.get("lifecycle") or {}).values():
            if _INSTALL.search(json.dumps(hook)):
                out.append(f"{where}: container {c.get('name')!r} installs packages in a lifecycle hook")
        if not any(e.get("name") in ("AWS_DEFAULT_REGION", "AWS_REGION") for e in c.get("env") or []):
            out.append(f"{where}: container {c.get('name')!r} sets no AWS_DEFAULT_REGION (the SDKs' region on EKS)")
        for env in c.get("env") or []:
            if env.get("name") == "RAY_AUTH_TOKEN" and "value" in env:
                out.append(f"{where}: RAY_AUTH_TOKEN given as a literal value (use authOptions or a secretKeyRef)")
            if env.get("name") == "RAY_AUTH_MODE" and str(env.get("value", "")).lower() != "token":
                out.append(f"{where}: RAY_AUTH_MODE must be token")
    return out


def _restricted_findings(where: str, template: dict) -> list[str]:
    """Restricted Pod Security: non-root, no escalation, no capabilities, RuntimeDefault seccomp, a read-only root
    filesystem, no host namespaces or host paths."""
    out = []
    spec = (template or {}).get("spec") or {}
    pod_sc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(f"{where}: {key}: true shares the node's namespaces; never on a Ray pod")
    for v in spec.get("volumes") or []:
        if "hostPath" in v:
            out.append(f"{where}: volume {v.get('name')!r} is a hostPath (the node's filesystem); use an emptyDir")
    for c in _containers(template) + list(spec.get("initContainers") or []):
        out += security_context_findings(
            f"{where}: container {c.get('name')!r}", c.get("securityContext") or {}, pod_sc
        )
    return out


def security_context_findings(name: str, sc: dict, pod_sc: dict | None = None) -> list[str]:
    """One container's securityContext (with its pod's) against the Restricted profile and a read-only root."""
    out, pod_sc = [], pod_sc or {}
    if sc.get("privileged"):
        out.append(f"{name}: securityContext.privileged must not be set")
    if (sc.get("capabilities") or {}).get("add"):
        out.append(f"{name}: securityContext.capabilities.add {sc['capabilities']['add']}: add no capabilities")
    if sc.get("readOnlyRootFilesystem") is not True:
        out.append(f"{name}: securityContext.readOnlyRootFilesystem must be true (writable emptyDir mounts instead)")
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append(f"{name}: securityContext.allowPrivilegeEscalation must be false")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        out.append(f"{name}: securityContext.capabilities.drop must contain ALL")
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
        out.append(f"{name}: runAsNonRoot must be true (pod or container securityContext)")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        out.append(f"{name}: seccompProfile.type must be RuntimeDefault")
    return out


_GPU_NODE_LABELS = (
    "nvidia.com/gpu.product",
    "cloud.google.com/gke-accelerator",
    "node.kubernetes.io/instance-type",
    "karpenter.k8s.aws/instance-gpu-name",
)


def _placement_findings(where: str, template: dict, *, gpu: bool) -> list[str]:
    spec = (template or {}).get("spec") or {}
    if gpu:
        if not any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations") or []):
            return [f"{where}: no toleration of the nvidia.com/gpu taint; GPU nodes would refuse the pod"]
        return []
    out = []
    if any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations") or []):
        out.append(f"{where}: the head tolerates the GPU taint; keep it off GPU nodes")
    terms = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        or {}
    ).get("nodeSelectorTerms") or []
    if not terms or not all(
        any(
            e.get("operator") in ("DoesNotExist", "NotIn")
            and e.get("key") in ("nvidia.com/gpu.present",) + _GPU_NODE_LABELS
            for e in t.get("matchExpressions") or []
        )
        for t in terms
    ):
        out.append(f"{where}: no required node affinity that keeps the head off GPU nodes")
    return out


def _cluster_spec_findings(where: str, spec: dict) -> list[str]:
    out = []
    if spec.get("enableInTreeAutoscaling") is not True:
        out.append(f"{where}.enableInTreeAutoscaling must be true")
    out += security_context_findings(
        f"{where}.autoscalerOptions (the sidecar KubeRay injects)",
        (spec.get("autoscalerOptions") or {}).get("securityContext") or {},
    )
    if (spec.get("authOptions") or {}).get("mode") != "token":
        out.append(f"{where}.authOptions.mode must be token (Ray token authentication)")
    head = spec.get("headGroupSpec")
    if not isinstance(head, dict):
        out.append(f"{where}.headGroupSpec is missing")
    else:
        if str((head.get("rayStartParams") or {}).get("num-cpus")) != "0":
            out.append(f'{where}.headGroupSpec.rayStartParams.num-cpus must be "0" (no training on the head)')
        if head.get("serviceType", "ClusterIP") != "ClusterIP":
            out.append(f"{where}.headGroupSpec.serviceType must be ClusterIP")
        out += _pod_findings(f"{where}.headGroupSpec", head.get("template"), gpu=False)
        out += _restricted_findings(f"{where}.headGroupSpec", head.get("template"))
        out += _placement_findings(f"{where}.headGroupSpec", head.get("template"), gpu=False)
    head_sa = (
        (((head or {}).get("template") or {}).get("spec") or {}).get("serviceAccountName")
        if isinstance(head, dict)
        else None
    )
    groups = spec.get("workerGroupSpecs")
    if not groups:
        out.append(f"{where}.workerGroupSpecs is missing or empty")
    for i, g in enumerate(groups or []):
        gw = f"{where}.workerGroupSpecs[{i}]"
        for key in ("groupName", "minReplicas", "maxReplicas"):
            if key not in g:
                out.append(f"{gw}.{key} is missing")
        out += _pod_findings(gw, g.get("template"), gpu=True)
        if _gpus_per_pod(g.get("template")) >= 8 and int(g.get("maxReplicas", 0) or 0) > 1:
            out.append(
                f"{gw}.maxReplicas={g.get('maxReplicas')}: 8-GPU pods on several nodes all-reduce over plain TCP; "
                "keep 1 unless the nodes have EFA / GPUDirect-TCPX"
            )
        out += _restricted_findings(gw, g.get("template"))
        out += _placement_findings(gw, g.get("template"), gpu=True)
        worker_sa = ((g.get("template") or {}).get("spec") or {}).get("serviceAccountName")
        if head_sa and worker_sa == head_sa:
            out.append(
                f"{gw}: workers share the head's service account {head_sa!r}, which carries KubeRay's "
                "autoscaler Role; give the workers their own"
            )
    return out


KUBERAY_VERSION = "v1.5.1"
"""The KubeRay release the manifests target; its CRD field schemas are vendored under cluster/kuberay/crd/."""
KUBERNETES_VERSION = "1.33"
"""Kubernetes API version for kubernetes-validate (pod templates, ServiceAccounts, NetworkPolicies)."""
CRD_DIR = CLUSTER_DIR / "kuberay" / "crd"
_CRD_FILES = {"RayCluster": "rayclusters", "RayJob": "rayjobs"}


def crd_schema(kind: str) -> dict:
    """The strict field schema of a KubeRay kind, derived from the CRD (cluster/kuberay/crd/derive.py)."""
    return json.loads((CRD_DIR / f"ray.io_{_CRD_FILES[kind]}.{KUBERAY_VERSION}.schema.json").read_text())


def crd_field_findings(doc: dict) -> list[str]:
    """Every field of a RayCluster/RayJob against the KubeRay CRD (unknown fields are errors), and every pod
    template against the core Kubernetes PodTemplateSpec schema (kubernetes-validate, strict)."""
    import jsonschema

    kind = doc.get("kind")
    if kind not in _CRD_FILES:
        return []
    validator = jsonschema.Draft7Validator(crd_schema(kind))
    out = [
        f"KubeRay {KUBERAY_VERSION} {kind} schema: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]
    spec = doc.get("spec") or {}
    cluster, base = (spec.get("rayClusterSpec") or {}, "spec.rayClusterSpec") if kind == "RayJob" else (spec, "spec")
    templates = [(f"{base}.headGroupSpec.template", (cluster.get("headGroupSpec") or {}).get("template"))]
    templates += [
        (f"{base}.workerGroupSpecs[{i}].template", g.get("template"))
        for i, g in enumerate(cluster.get("workerGroupSpecs") or [])
    ]
    if kind == "RayJob" and spec.get("submitterPodTemplate"):
        templates.append(("spec.submitterPodTemplate", spec["submitterPodTemplate"]))
    for where, template in templates:
        if isinstance(template, dict):
            out += [
                f"{where}: {e}"
                for e in core_object_findings(
                    {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
                )
            ]
    return out


def core_object_findings(doc: dict) -> list[str]:
    """A core Kubernetes object against its schema (kubernetes-validate, strict: unknown fields are errors)."""
    try:
        import kubernetes_validate
    except ImportError:
        return ["kubernetes-validate is not installed (requirements/test.txt): core objects not checked"]
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(map(str, getattr(exc, "path", []) or []))
        return [f"Kubernetes {KUBERNETES_VERSION} {doc.get('kind')} schema: {path or '<root>'}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"Kubernetes {KUBERNETES_VERSION}: no schema for {doc.get('apiVersion')} {doc.get('kind')} ({exc})"]
    return []


def kuberay_findings(doc: dict) -> list[str]:
    """Required fields and policy of one KubeRay RayCluster/RayJob manifest."""
    out = crd_field_findings(doc)
    kind = doc.get("kind")
    if doc.get("apiVersion") != "ray.io/v1":
        out.append(f"apiVersion must be ray.io/v1, not {doc.get('apiVersion')!r}")
    if not (doc.get("metadata") or {}).get("name"):
        out.append("metadata.name is missing")
    spec = doc.get("spec") or {}
    if kind == "RayCluster":
        out += _cluster_spec_findings("spec", spec)
    elif kind == "RayJob":
        entry = str(spec.get("entrypoint") or "")
        if "jobs/train.py" not in entry and "jobs/tune.py" not in entry and "jobs/evaluate.py" not in entry:
            out.append("spec.entrypoint must run one of jobs/train.py, jobs/tune.py, jobs/evaluate.py")
        if _INSTALL.search(entry):
            out.append("spec.entrypoint installs packages")
        runtime_env = yaml.safe_load(spec.get("runtimeEnvYAML") or "") or {}
        for key in ("pip", "uv", "conda"):
            if key in runtime_env:
                out.append(f"spec.runtimeEnvYAML.{key}: installs packages at job start; use the image")
        ttl = spec.get("ttlSecondsAfterFinished")
        if spec.get("shutdownAfterJobFinishes") and (not isinstance(ttl, int) or ttl > MAX_JOB_TTL_S):
            out.append(
                f"spec.ttlSecondsAfterFinished={ttl!r}: keep a finished job's cluster minutes, not "
                f"longer (<= {MAX_JOB_TTL_S})"
            )
        if spec.get("submissionMode", "K8sJobMode") == "K8sJobMode":
            template = spec.get("submitterPodTemplate")
            if not isinstance(template, dict):
                out.append(
                    "spec.submitterPodTemplate is missing: KubeRay's default submitter pod has no security context "
                    "(refused under Restricted Pod Security) and no label a NetworkPolicy can admit"
                )
            else:
                out += _restricted_findings("spec.submitterPodTemplate", template)
                if not ((template.get("metadata") or {}).get("labels") or {}):
                    out.append("spec.submitterPodTemplate.metadata.labels: label the submitter for the NetworkPolicy")
        if "rayClusterSpec" in spec:
            out += _cluster_spec_findings("spec.rayClusterSpec", spec["rayClusterSpec"])
        elif not spec.get("clusterSelector"):
            out.append("spec.rayClusterSpec (or clusterSelector) is missing")
    else:
        out.append(f"unsupported KubeRay kind {kind!r}")
    out += yaml_image_findings(doc)
    return out


def _selects_by_label(selector: Any) -> bool:
    """A label selector that selects something narrower than everything (an empty selector matches all)."""
    return isinstance(selector, dict) and bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def manifest_policy_findings(doc: Any) -> list[str]:
    """Policy for any parsed document: services, ingresses, secrets, token auth switched off."""
    out = []
    if not isinstance(doc, dict):
        return out
    kind = doc.get("kind")
    if kind == "Service" and (doc.get("spec") or {}).get("type") in ("LoadBalancer", "NodePort"):
        out.append(f"Service type {(doc['spec'])['type']}: expose Ray only through port-forward/SSH tunnels")
    if kind in ("Ingress", "Gateway", "HTTPRoute"):
        out.append(f"{kind}: the Ray dashboard/job API must not be exposed")
    if kind == "Namespace":
        labels = (doc.get("metadata") or {}).get("labels") or {}
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            out.append("Namespace: label pod-security.kubernetes.io/enforce: restricted (Pod Security admission)")
    if kind == "NetworkPolicy":
        if not _selects_by_label((doc.get("spec") or {}).get("podSelector")):
            out.append("spec.podSelector selects every pod of the namespace; select the Ray pods by label")
        for i, rule in enumerate((doc.get("spec") or {}).get("ingress") or []):
            for j, src in enumerate(rule.get("from") or []):
                if "namespaceSelector" in src and not _selects_by_label(src["namespaceSelector"]):
                    out.append(f"spec.ingress[{i}].from[{j}]: namespaceSelector admits every namespace; name one")
        for i, rule in enumerate((doc.get("spec") or {}).get("ingress") or []):
            sources = rule.get("from")
            if not sources:
                out.append(f"spec.ingress[{i}]: no `from`: admits every source; admit the cluster's own pods only")
            for j, src in enumerate(sources or []):
                if "ipBlock" in src or not src.get("podSelector"):
                    out.append(
                        f"spec.ingress[{i}].from[{j}]: admit pods by podSelector only (no ipBlock, no whole namespaces)"
                    )
    if kind == "Secret" and (doc.get("data") or doc.get("stringData")):
        out.append("Secret with data: secrets do not belong in the repository")
    for path, value in _walk(doc):
        key = path.rsplit(".", 1)[-1]
        if key == "serviceType" and value in ("LoadBalancer", "NodePort"):
            out.append(f"{path}: {value}: the head Service must stay ClusterIP")
        if key == "authOptions" and isinstance(value, dict) and value.get("mode") not in (None, "token"):
            out.append(f"{path}.mode: Ray token authentication must stay on")
    out += structured_port_findings(doc)
    return out


# ----------------------------------------------------------------------------- files


def check_text(name: str, text: str) -> list[str]:
    """All findings for one file's content; `name` picks the format (suffix / Dockerfile)."""
    out: list[str] = []
    base = Path(name).name
    suffix = Path(name).suffix.lower()
    structured = False
    if suffix in (".yaml", ".yml", ".json"):
        try:
            docs = load_yaml_docs(text)
            structured = True
        except yaml.YAMLError as exc:
            return [f"does not parse: {exc}"]
        for doc in docs:
            if is_autoscaler_config(doc):
                out += autoscaler_findings(doc, text if suffix in (".yaml", ".yml") else None)
            elif is_kuberay(doc):
                out += kuberay_findings(doc)
            else:
                out += yaml_image_findings(doc)
                if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
                    out += core_object_findings(doc)
            out += manifest_policy_findings(doc)
    if (
        base == "Dockerfile"
        or base.startswith("Dockerfile.")
        and not base.endswith(".dockerignore")
        or suffix == ".dockerfile"
    ):
        out += dockerfile_findings(text)
    out += text_findings(text, structured=structured)
    return list(dict.fromkeys(out))


def check_file(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return []  # binary: nothing to scan
    return check_text(path.name, text)


def cluster_files(root: Path = CLUSTER_DIR) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def placeholder_lines(text: str) -> list[str]:
    """`line N: ...` for every non-comment line holding a placeholder (REPLACE_ME, the example registry)."""
    return [
        f"line {n}: placeholder to fill in: {line.strip()[:120]}"
        for n, line in enumerate(text.splitlines(), 1)
        if any(p in line for p in PLACEHOLDERS) and not line.lstrip().startswith("#")
    ]


def holds_placeholders(path: Path) -> bool:
    """Deployment files, whose placeholders the user fills in (YAML, Dockerfiles); this checker's own source
    and the docs name the placeholders without being filled in."""
    return path.suffix in (".yaml", ".yml") or path.name == "Dockerfile"


def placeholders(root: Path = CLUSTER_DIR) -> list[str]:
    found = []
    for p in cluster_files(root):
        if holds_placeholders(p):
            found += [f"{p.relative_to(root.parent)}: {line}" for line in placeholder_lines(p.read_text())]
    return found


# ----------------------------------------------------------------------------- the Ray token

_TOKEN_HEX = re.compile(r"(?<![0-9A-Fa-f])[0-9a-f]{64}(?![0-9A-Fa-f])")
"""Ray's token shape (`ray get-auth-token --generate` = secrets.token_hex(32)); sha256 digests share it."""
_CHECKSUM_CONTEXT = re.compile(r"sha256|sha-256|digest|checksum|fingerprint|hash", re.I)
_TOKEN_FILE_NAME = re.compile(r"(?:^|[._-])(?:auth_token|ray[_-]?token)$|\.token$", re.I)


def _is_token_mount(remote: str, local: str) -> bool:
    return remote.endswith("/.ray/auth_token") or bool(_TOKEN_FILE_NAME.search(Path(local).name))


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def token_source_findings(where: str, local: str, repo: Path = REPO_DIR) -> list[str]:
    """The token's source must live outside the repository (a relative path is relative to the repo,
    where `ray up` runs). Its mode is checked by :func:`token_file_findings` before deploying."""
    path = Path(os.path.expanduser(local))
    if not path.is_absolute():
        path = repo / path
    if _inside(path, repo):
        return [
            f"{where} = {local!r}: the Ray token's source is inside the repository; keep it in "
            f"{_RAY_TOKEN_FILE} (outside the repo, mode 0600)"
        ]
    return []


def token_file_findings(path: Path) -> list[str]:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return []  # not generated on this machine yet
    if mode & 0o077:
        return [f"{path}: the Ray token is readable by others (mode {mode:04o}); run chmod 600 {path}"]
    return []


def tracked_files(repo: Path = REPO_DIR) -> list[Path]:
    """The repository's tracked files (`git ls-files`), or every file when git cannot say."""
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-z"], capture_output=True, check=True, timeout=30
        ).stdout.decode()
        return [repo / name for name in out.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        return [p for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts and ".venv" not in p.parts]


def token_text_findings(text: str, token: str | None = None) -> list[str]:
    """Token-looking strings in one file's text: the local token itself, or 64 lowercase hex characters
    with no checksum word (sha256, digest, hash, checksum, fingerprint) on that line or the 3 above."""
    out, lines = [], text.splitlines()
    for n, line in enumerate(lines, 1):
        if token and token in line:
            out.append(f"line {n}: holds the Ray token of {_RAY_TOKEN_FILE}")
            continue
        if _TOKEN_HEX.search(line) and not _CHECKSUM_CONTEXT.search(" ".join(lines[max(0, n - 4) : n])):
            out.append(f"line {n}: a token-looking string (64 hex characters outside a checksum context)")
    return out


def repo_token_findings(repo: Path = REPO_DIR, token_path: str = _RAY_TOKEN_FILE) -> list[str]:
    """Every tracked file: no Ray token (by value or by shape) and no token file committed."""
    try:
        token = Path(os.path.expanduser(token_path)).read_text().strip() or None
    except OSError:
        token = None
    out = []
    for path in tracked_files(repo):
        rel = path.relative_to(repo).as_posix()
        if _TOKEN_FILE_NAME.search(path.name):
            out.append(f"{rel}: a token file is tracked by git; remove it and keep the token in {_RAY_TOKEN_FILE}")
        try:
            if path.stat().st_size > 20_000_000:
                continue
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue  # deleted in the work tree, or binary
        out += [f"{rel}: {f}" for f in token_text_findings(text, token)]
    return out


# ----------------------------------------------------------------------------- command line


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="cluster/check.py",
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("files", nargs="*", type=Path, help="files to check (default: every file under cluster/)")
    ap.add_argument(
        "--template",
        action="store_true",
        help="check the repository's templates: list placeholders (REPLACE_ME, registry.example.com) "
        "instead of failing on them (what tests/cluster runs)",
    )
    ap.add_argument("--no-repo-scan", action="store_true", help="skip the scan of every tracked file for Ray tokens")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    paths = args.files or cluster_files()
    findings = []
    for p in paths:
        findings += [f"{p}: {f}" for f in check_file(p)]
        if not args.template and p.is_file() and holds_placeholders(p):
            findings += [f"{p}: {f}" for f in placeholder_lines(p.read_text(errors="replace"))]
    if not args.no_repo_scan:
        findings += repo_token_findings()
    if not args.template:
        findings += token_file_findings(Path(os.path.expanduser(_RAY_TOKEN_FILE)))
    for finding in findings:
        print(finding)
    todo = placeholders()
    if args.template and todo:
        print(f"(info) {len(todo)} placeholder line(s) to fill in before deploying:", file=sys.stderr)
        for line in todo:
            print(f"(info)   {line}", file=sys.stderr)
    print(f"{len(paths)} file(s) checked, {len(findings)} finding(s)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
