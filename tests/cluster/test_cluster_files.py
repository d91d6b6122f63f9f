"""Static checks of the cluster deployment files (cluster/**, requirements/gpu.txt).

Fast and offline: YAML parsing, the Ray autoscaler JSON schema shipped in the installed ray
package, and the security policy of cluster/check.py. The second half generates deliberately
broken variants and asserts that every checker flags them ("test the test").
The multi-node one-machine simulation test lives with the training tests.
"""

from __future__ import annotations

import copy
import importlib
import importlib.resources
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"


def _load_check():
    return importlib.import_module("cluster.check")


check = _load_check()

AUTOSCALER_FILES = ["aws.yaml", "gcp.yaml"]
KUBERAY_FILES = ["kuberay/raycluster.yaml", "kuberay/rayjob.yaml"]
ALL_FILES = check.cluster_files(CLUSTER)
YAML_FILES = [p for p in ALL_FILES if p.suffix in (".yaml", ".yml")]
RAY_PORTS = (6379, 8265, 10001)
# Built at run time so that no credential-shaped literal sits in the repository.
FAKE_KEY_ID = "AKIA" + "Z7QX" * 4
SECRET_NAME = "aws_secret" + "_access_key"
WORLD4 = ".".join(["0"] * 4) + "/0"
WORLD6 = "::" + "/0"
FLOATING = "lat" + "est"
AUTH_OFF = "RAY_AUTH_MODE=" + "disabled"


def _text(rel: str) -> str:
    return (CLUSTER / rel).read_text()


def _doc(rel: str):
    return yaml.safe_load(_text(rel))


def _kuberay(rel: str) -> dict:
    return next(d for d in check.load_yaml_docs(_text(rel)) if check.is_kuberay(d))


def _has(findings: list[str], *needles: str) -> bool:
    return any(all(n.lower() in f.lower() for n in needles) for f in findings)


# ============================================================================ the real files


def test_expected_files_exist():
    for rel in AUTOSCALER_FILES + KUBERAY_FILES + ["Dockerfile", "check.py"]:
        assert (CLUSTER / rel).is_file(), rel
    assert (ROOT / "requirements" / "gpu.txt").is_file()


def test_schema_is_the_one_shipped_with_ray():
    import ray

    schema = check.ray_schema()
    on_disk = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    assert schema == on_disk
    assert importlib.resources.files("ray.autoscaler").joinpath("ray-schema.json").is_file()
    assert schema["additionalProperties"] is False
    assert ray.__version__ == "2.60.0"


def test_every_yaml_in_cluster_is_classified():
    kinds = {}
    for p in YAML_FILES:
        docs = check.load_yaml_docs(p.read_text())
        assert docs, p
        kinds[p.relative_to(CLUSTER).as_posix()] = (
            "autoscaler"
            if any(check.is_autoscaler_config(d) for d in docs)
            else "kuberay"
            if any(check.is_kuberay(d) for d in docs)
            else "other"
        )
    for rel in AUTOSCALER_FILES:
        assert kinds[rel] == "autoscaler"
    for rel in KUBERAY_FILES:
        assert kinds[rel] == "kuberay"


@pytest.mark.parametrize(
    "path",
    [p for p in YAML_FILES if any(map(check.is_autoscaler_config, check.load_yaml_docs(p.read_text())))],
    ids=lambda p: p.name,
)
def test_autoscaler_config_validates_against_ray_schema(path):
    config = yaml.safe_load(path.read_text())
    jsonschema.validate(config, check.ray_schema())
    # ...and still after Ray merges its provider defaults, as `ray up` does.
    jsonschema.validate(check.prepared_config(config), check.ray_schema())
    assert check.autoscaler_findings(config, path.read_text()) == []


@pytest.mark.parametrize("rel", AUTOSCALER_FILES)
def test_autoscaler_config_essentials(rel):
    config = _doc(rel)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    assert len(workers) >= 2
    assert all("min_workers" in w and w["max_workers"] >= 1 for w in workers.values())
    assert config["idle_timeout_minutes"] > 0
    image = config["docker"]["image"]
    assert check.image_problem(image) is None and not image.endswith(":" + FLOATING)
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands"):
        assert config[key] == [], key  # explicit: Ray's defaults would pip-install Ray
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "RAY_AUTH_MODE=token" in " ".join(config[key])
    assert all(v in (".", "~/.ray/auth_token") for v in config["file_mounts"].values())
    if config["provider"]["type"] == "aws":
        assert any("InstanceMarketOptions" in w["node_config"] for w in workers.values())
        assert all(t["node_config"].get("SecurityGroupIds") for t in types.values())
        assert "security_group" not in config["provider"]
    else:
        assert any(w["node_config"].get("scheduling", {}).get("provisioningModel") == "SPOT" for w in workers.values())
        assert all(t["node_config"]["tags"]["items"] == ["clasp-ray"] for t in types.values())


@pytest.mark.parametrize("rel", KUBERAY_FILES)
def test_kuberay_manifest_required_fields(rel):
    doc = _kuberay(rel)
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] in ("RayCluster", "RayJob")
    spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    templates = [head["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    for g in spec["workerGroupSpecs"]:
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
        assert g["maxReplicas"] >= g["minReplicas"]
    for t in templates:
        pod = t["spec"]
        assert pod["serviceAccountName"]
        shm = [v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
        assert shm and any(m["mountPath"] == "/dev/shm" for m in pod["containers"][0]["volumeMounts"])
        for c in pod["containers"]:
            assert check.image_problem(c["image"]) is None
    if doc["kind"] == "RayJob":
        entry = doc["spec"]["entrypoint"]
        assert entry.startswith("python jobs/train.py config=unav100_i3d")
        for part in ("data.root=s3://", "train.num_workers=", "train.use_gpu=true"):
            assert part in entry
    assert check.kuberay_findings(doc) == []


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.relative_to(CLUSTER).as_posix())
def test_every_cluster_file_passes_the_security_scan(path):
    assert check.check_file(path) == []


def test_cli_passes_on_the_repository_templates(capsys):
    assert check.main(["--template"]) == 0
    assert "0 finding(s)" in capsys.readouterr().out


def test_cli_help_prints_help_not_a_file_finding(capsys):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(CLUSTER / "check.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: cluster/check.py") and "--template" in proc.stdout
    assert "finding" not in proc.stdout.splitlines()[-1]


def test_cli_refuses_placeholders_before_deploying(capsys):
    """the example registry and REPLACE_ME are findings unless --template."""
    assert check.main(["--no-repo-scan", str(CLUSTER / "kuberay" / "rayjob.yaml")]) == 1
    out = capsys.readouterr().out
    assert "registry.example.com" in out and "REPLACE_ME" in out and "placeholder" in out
    assert check.placeholder_lines("image: registry.example.com/clasp/x:1\n# registry.example.com in a comment\n") == [
        "line 1: placeholder to fill in: image: registry.example.com/clasp/x:1"
    ]
    assert check.placeholder_lines("image: 123456789012.dkr.ecr.us-west-2.amazonaws.com/clasp/x:1\n") == []


def test_filled_in_config_passes_the_cli(tmp_path, capsys, monkeypatch):
    token = tmp_path / "auth_token"
    token.write_text("t")
    token.chmod(0o600)
    monkeypatch.setattr(check, "_RAY_TOKEN_FILE", str(token))
    text = _text("aws.yaml").replace("registry.example.com", "123456789012.dkr.ecr.us-west-2.amazonaws.com")
    text = text.replace("REPLACE_ME", "123456789012")
    (tmp_path / "aws.yaml").write_text(text)
    assert check.main(["--no-repo-scan", str(tmp_path / "aws.yaml")]) == 0, capsys.readouterr().out
    token.chmod(0o644)
    assert check.main(["--no-repo-scan", str(tmp_path / "aws.yaml")]) == 1
    assert "chmod 600" in capsys.readouterr().out


def test_token_source_inside_the_repository_is_refused():
    config = _doc("aws.yaml")
    config["file_mounts"]["/home/ray/.ray/auth_token"] = ".ray/auth_token"
    assert _has(check.autoscaler_findings(config), "token", "inside the repository")
    config["file_mounts"]["/home/ray/.ray/auth_token"] = str(ROOT / "secrets" / "clasp.token")
    assert _has(check.autoscaler_findings(config), "inside the repository")
    config["file_mounts"]["/home/ray/.ray/auth_token"] = "~/.ray/auth_token"
    assert not _has(check.autoscaler_findings(config), "inside the repository")


def test_world_readable_token_file_is_refused(tmp_path):
    token = tmp_path / "auth_token"
    token.write_text("0" * 64)
    token.chmod(0o644)
    assert _has(check.token_file_findings(token), "readable by others", "chmod 600")
    token.chmod(0o600)
    assert check.token_file_findings(token) == []


def test_token_looking_strings_and_token_files_in_tracked_files_are_refused(tmp_path):
    import secrets
    import subprocess

    token = secrets.token_hex(32)  # the shape of `ray get-auth-token --generate`
    assert _has(check.token_text_findings(f"RAY_TOKEN: {token}\n"), "token-looking")
    assert check.token_text_findings(f'"sha256": "{token}"\n') == []  # a checksum is not a token
    assert _has(check.token_text_findings(f"x = '{token}'\n", token=token), "holds the Ray token")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "notes.md").write_text(f"my token is {token}\n")
    (repo / "clasp.token").write_text("x\n")
    (repo / "ok.md").write_text(f"digest sha256:{secrets.token_hex(32)}\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    local = tmp_path / "auth_token"
    local.write_text(token)
    findings = check.repo_token_findings(repo, str(local))
    assert _has(findings, "notes.md", "holds the Ray token")
    assert _has(findings, "clasp.token", "token file is tracked")
    assert not _has(findings, "ok.md")


def test_repository_tracks_no_token():
    assert check.repo_token_findings() == []


def test_dockerfile_pins_base_and_installs_the_gpu_stack():
    text = _text("Dockerfile")
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and all(check.image_problem(f) is None for f in froms)
    assert froms[0].startswith("rayproject/ray:2.60.0-py311-cu12")
    assert "pip install -r requirements/gpu.txt" in text
    assert re.search(r"pip install .*-e \.", text)
    assert check.dockerfile_findings(text) == []


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(==|<|>=)\s*(.+)$", line)
        if m:
            pins[m.group(1).lower()] = (m.group(2) or "") + m.group(3) + m.group(4)
    return pins


def test_gpu_requirements_match_the_cpu_pins_except_torch():
    gpu_txt = (ROOT / "requirements" / "gpu.txt").read_text()
    gpu, cpu = _pins(ROOT / "requirements" / "gpu.txt"), _pins(ROOT / "requirements" / "cpu.txt")
    assert re.search(r"^--extra-index-url https://download\.pytorch\.org/whl/cu1\d\d\s*$", gpu_txt, re.M)
    cuda = re.search(r"whl/(cu1\d\d)", gpu_txt).group(1)
    assert gpu["torch"] == f"==2.13.0+{cuda}" and cpu["torch"] == "==2.13.0"
    for name in ("deepspeed", "ray", "pyarrow", "fsspec", "s3fs", "aiobotocore", "boto3", "numpy"):
        assert gpu[name] == cpu[name], name
    assert "-r cpu.txt" not in gpu_txt  # separate from the CPU pin


# ============================================================================ test the test


@pytest.fixture
def aws():
    return _doc("aws.yaml")


@pytest.fixture
def gcp():
    return _doc("gcp.yaml")


def test_unknown_key_fails_schema_validation(aws):
    bad = copy.deepcopy(aws)
    bad["not_a_ray_key"] = True
    assert _has(check.schema_errors(bad), "not_a_ray_key")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, check.ray_schema())
    assert _has(check.autoscaler_findings(bad), "schema")

    nested = copy.deepcopy(aws)
    nested["available_node_types"]["head"]["min_worker"] = 0  # typo
    assert _has(check.schema_errors(nested), "min_worker")

    typed = copy.deepcopy(aws)
    typed["max_workers"] = "ten"
    assert _has(check.schema_errors(typed), "max_workers")

    docker = copy.deepcopy(aws)
    docker["docker"]["imagee"] = docker["docker"].pop("image")
    assert _has(check.schema_errors(docker), "imagee")


@pytest.mark.parametrize("port", RAY_PORTS)
def test_security_group_opening_a_ray_port_to_the_world_is_flagged(aws, port):
    for cidr_key, ranges_key, cidr in (("CidrIp", "IpRanges", WORLD4), ("CidrIpv6", "Ipv6Ranges", WORLD6)):
        bad = copy.deepcopy(aws)
        bad["provider"]["security_group"] = {
            "GroupName": "x",
            "IpPermissions": [{"FromPort": port, "ToPort": port, "IpProtocol": "tcp", ranges_key: [{cidr_key: cidr}]}],
        }
        assert check.schema_errors(bad) == []  # schema-valid, so only the policy catches it
        findings = check.autoscaler_findings(bad)
        assert _has(findings, "ray port", str(port)), findings
        assert _has(check.check_text("aws.yaml", yaml.safe_dump(bad)), str(port))


@pytest.mark.parametrize(
    "rule",
    [
        {"FromPort": 0, "ToPort": 65535, "IpProtocol": "tcp"},
        {"FromPort": 8000, "ToPort": 9000, "IpProtocol": "tcp"},
        {"FromPort": -1, "ToPort": -1, "IpProtocol": "-1"},
        {"IpProtocol": "-1"},
    ],
)
def test_port_ranges_covering_ray_ports_are_flagged(aws, rule):
    bad = copy.deepcopy(aws)
    bad["provider"]["security_group"] = {"IpPermissions": [dict(rule, IpRanges=[{"CidrIp": WORLD4}])]}
    assert _has(check.autoscaler_findings(bad), "ray port")


def test_narrow_rules_are_not_flagged(aws):
    ok = copy.deepcopy(aws)
    ok["provider"]["security_group"] = {
        "IpPermissions": [
            {"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "203.0.113.7/32"}]},
            {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "10.0.0.0/16"}]},
            {"FromPort": 443, "ToPort": 443, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": WORLD4}]},
        ]
    }
    assert check.structured_port_findings(ok) == []


@pytest.mark.parametrize(
    "line,flagged",
    [
        (f"aws ec2 authorize-security-group-ingress --group-id sg-1 --protocol tcp --port 8265 --cidr {WORLD4}", True),
        (
            f"aws ec2 authorize-security-group-ingress --group-id sg-1 --protocol tcp --port 6000-7000 --cidr {WORLD4}",
            True,
        ),
        (f"aws ec2 authorize-security-group-ingress --group-id sg-1 --protocol all --cidr {WORLD4}", True),
        (
            f"aws ec2 authorize-security-group-ingress --group-id sg-1 \\\n  --protocol tcp --port 10001 \\\n  --cidr {WORLD4}",
            True,
        ),
        (f"gcloud compute firewall-rules create x --allow tcp:8265 --source-ranges {WORLD4}", True),
        (f"gcloud compute firewall-rules create x --allow tcp:1-65535 --source-ranges {WORLD6}", True),
        (f"gcloud compute firewall-rules create x --allow tcp --source-ranges {WORLD4}", True),
        (f"echo open everything to {WORLD4}", True),  # ports unknown: conservatively flagged
        (f"aws ec2 authorize-security-group-ingress --group-id sg-1 --protocol tcp --port 22 --cidr {WORLD4}", False),
        ("gcloud compute firewall-rules create x --allow tcp:8265 --source-ranges 203.0.113.7/32", False),
    ],
)
def test_shell_rules_opening_ray_ports_are_flagged(line, flagged):
    findings = check.check_text("net.sh", "#!/usr/bin/env bash\n" + line + "\n")
    assert bool(findings) is flagged, findings


def test_gcp_firewall_shaped_rule_is_flagged(gcp):
    rule = {"name": "x", "sourceRanges": [WORLD4], "allowed": [{"IPProtocol": "tcp", "ports": ["8000-9000"]}]}
    assert _has(check.structured_port_findings({"rules": [rule]}), "8265")
    rule["allowed"] = [{"IPProtocol": "tcp"}]  # no ports = all ports
    assert _has(check.structured_port_findings({"rules": [rule]}), "6379")


@pytest.mark.parametrize(
    "image",
    [
        "registry.example.com/clasp/clasp-dist:" + FLOATING,
        "registry.example.com/clasp/clasp-dist",
        "rayproject/ray:nightly-py311-gpu".replace("nightly-py311-gpu", "nightly"),
        "localhost:5000/clasp-dist",
    ],
)
def test_floating_or_untagged_images_are_flagged(aws, image):
    assert check.image_problem(image)
    bad = copy.deepcopy(aws)
    bad["docker"]["image"] = image
    assert _has(check.autoscaler_findings(bad), "image")
    text = _text("aws.yaml").replace(aws["docker"]["image"], image)
    assert check.check_text("aws.yaml", text)
    doc = _kuberay("kuberay/raycluster.yaml")
    doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["image"] = image
    assert _has(check.kuberay_findings(doc), "image")
    assert check.dockerfile_findings(f"FROM {image}\n")


def test_pinned_images_pass():
    for ref in (
        "rayproject/ray:2.60.0-py311-cu128",
        "localhost:5000/clasp-dist:0.1.0",
        "rayproject/ray@sha256:" + "a" * 64,
    ):
        assert check.image_problem(ref) is None
    assert check.dockerfile_findings("FROM rayproject/ray:2.60.0-py311-cu128 AS base\nFROM base\n") == []


@pytest.mark.parametrize(
    "secret",
    [
        f"AWS_ACCESS_KEY_ID={FAKE_KEY_ID}",
        f"{SECRET_NAME} = abc",
        SECRET_NAME.upper() + "=abc",
        "-----BEGIN " + "RSA PRIVATE KEY-----",
        "-----BEGIN " + "OPENSSH PRIVATE KEY-----",
        '{"type": "service_account", "private' + '_key": "x"}',
        "RAY_AUTH_TOKEN=" + "f" * 32,
    ],
)
@pytest.mark.parametrize("rel", ["aws.yaml", "kuberay/rayjob.yaml", "Dockerfile", "aws_network.sh"])
def test_credentials_are_flagged_in_any_file(rel, secret):
    assert check.check_text(rel, _text(rel)) == []
    text = _text(rel) + f"\n# {secret}\n"
    assert _has(check.check_text(rel, text), "looks like"), (rel, secret)


def test_credentials_in_config_values_are_flagged(aws):
    bad = copy.deepcopy(aws)
    bad["setup_commands"] = [f"export AWS_ACCESS_KEY_ID={FAKE_KEY_ID}"]
    assert _has(check.check_text("aws.yaml", yaml.safe_dump(bad)), "aws access key id")
    mounts = copy.deepcopy(aws)
    mounts["file_mounts"]["/home/ray/.aws"] = "~/.aws"
    assert _has(check.autoscaler_findings(mounts), "file_mounts", "credentials")
    data = copy.deepcopy(aws)
    data["file_mounts"]["/home/ray/data"] = "./data"
    assert _has(check.autoscaler_findings(data), "file_mounts")
    gcp_creds = copy.deepcopy(aws)
    gcp_creds["provider"]["gcp_credentials"] = {"type": "service_account", "credentials": "{}"}
    assert _has(check.autoscaler_findings(gcp_creds), "gcp_credentials")


def test_switching_token_auth_off_is_flagged(aws):
    for rel in AUTOSCALER_FILES:
        text = _text(rel).replace("export RAY_AUTH_MODE=token", "export " + AUTH_OFF)
        assert _has(check.check_text(rel, text), "token authentication switched off")
    bad = copy.deepcopy(aws)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        bad[key] = [c.replace("export RAY_AUTH_MODE=token;", "") for c in bad[key]]
    bad["docker"]["run_options"] = ["--ulimit nofile=65536:65536"]
    assert _has(check.autoscaler_findings(bad), "RAY_AUTH_MODE=token")

    doc = _kuberay("kuberay/raycluster.yaml")
    doc["spec"]["authOptions"]["mode"] = "disabled"
    assert _has(check.kuberay_findings(doc), "authOptions")
    assert _has(check.manifest_policy_findings(doc), "token authentication")
    env = _kuberay("kuberay/rayjob.yaml")
    env["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "RAY_AUTH_MODE", "value": "disabled"},
        {"name": "RAY_AUTH_TOKEN", "value": "t" * 16},
    ]
    findings = check.kuberay_findings(env)
    assert _has(findings, "RAY_AUTH_MODE must be token") and _has(findings, "literal")


@pytest.mark.parametrize(
    "key", ["setup_commands", "head_setup_commands", "worker_setup_commands", "initialization_commands"]
)
def test_pip_install_in_setup_commands_is_flagged(aws, key):
    for cmd in ("pip install torch", "python -m pip install -U ray", "conda install -y x", "uv pip install x"):
        bad = copy.deepcopy(aws)
        bad[key] = [cmd]
        assert _has(check.autoscaler_findings(bad), "installs packages"), (key, cmd)


def test_omitted_setup_commands_fall_back_to_pip_installing_defaults(aws):
    bad = copy.deepcopy(aws)
    del bad["setup_commands"], bad["head_setup_commands"]
    assert _has(check.autoscaler_findings(bad), "installs packages")


def test_head_doing_training_work_is_flagged(aws, gcp):
    for cfg in (aws, gcp):
        bad = copy.deepcopy(cfg)
        bad["available_node_types"][bad["head_node_type"]]["resources"] = {}
        assert _has(check.autoscaler_findings(bad), "CPU")


def test_network_guards_are_enforced(aws, gcp):
    bad = copy.deepcopy(aws)
    del bad["available_node_types"]["gpu_a10g_spot"]["node_config"]["SecurityGroupIds"]
    assert _has(check.autoscaler_findings(bad), "SecurityGroupIds")
    bad = copy.deepcopy(gcp)
    del bad["available_node_types"]["head"]["node_config"]["networkInterfaces"]
    assert _has(check.autoscaler_findings(bad), "networkInterfaces")


def test_uncommented_key_is_flagged():
    text = _text("aws.yaml").replace(
        "# Workers idle this long are terminated (GPU nodes are expensive; the head stays up).\n", ""
    )
    assert _has(check.check_text("aws.yaml", text), "idle_timeout_minutes", "no comment")


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda s: s["headGroupSpec"].update(serviceType="LoadBalancer"), "ClusterIP"),
        (lambda s: s["headGroupSpec"].update(serviceType="NodePort"), "ClusterIP"),
        (lambda s: s["headGroupSpec"]["rayStartParams"].update({"num-cpus": "4"}), "num-cpus"),
        (lambda s: s.update(enableInTreeAutoscaling=False), "enableInTreeAutoscaling"),
        (lambda s: s.pop("headGroupSpec"), "headGroupSpec"),
        (lambda s: s.update(workerGroupSpecs=[]), "workerGroupSpecs"),
        (
            lambda s: s["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"].pop(
                "nvidia.com/gpu"
            ),
            "nvidia.com/gpu",
        ),
        (lambda s: s["workerGroupSpecs"][0]["template"]["spec"].update(volumes=[]), "/dev/shm"),
        (lambda s: s["headGroupSpec"]["template"]["spec"]["volumes"][0]["emptyDir"].pop("medium"), "/dev/shm"),
        (lambda s: s["workerGroupSpecs"][0]["template"]["spec"].pop("serviceAccountName"), "serviceAccountName"),
        (
            lambda s: s["workerGroupSpecs"][0]["template"]["spec"]["containers"][0].update(
                command=["bash", "-c", "pip install x && ray start"]
            ),
            "installs packages",
        ),
    ],
)
@pytest.mark.parametrize("rel", KUBERAY_FILES)
def test_broken_kuberay_manifests_are_flagged(rel, mutate, needle):
    doc = _kuberay(rel)
    assert check.kuberay_findings(doc) == []
    spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    mutate(spec)
    findings = check.kuberay_findings(doc) + check.manifest_policy_findings(doc)
    assert _has(findings, needle), findings


def test_broken_rayjob_and_exposing_manifests_are_flagged():
    job = _kuberay("kuberay/rayjob.yaml")
    job["spec"]["entrypoint"] = "python other.py"
    assert _has(check.kuberay_findings(job), "entrypoint")
    job = _kuberay("kuberay/rayjob.yaml")
    job["spec"]["runtimeEnvYAML"] = "pip: [torch]\n"
    assert _has(check.kuberay_findings(job), "runtimeEnvYAML.pip")
    job = _kuberay("kuberay/rayjob.yaml")
    job["apiVersion"] = "ray.io/v1alpha1"
    assert _has(check.kuberay_findings(job), "apiVersion")
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "d"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 8265}]},
    }
    assert _has(check.check_text("svc.yaml", yaml.safe_dump(svc)), "LoadBalancer")
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "d"}}
    assert _has(check.check_text("ing.yaml", yaml.safe_dump(ingress)), "Ingress")
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}
    assert _has(check.check_text("s.yaml", yaml.safe_dump(secret)), "Secret")


def test_new_files_in_cluster_are_scanned_too(tmp_path):
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "open.sh").write_text(
        f"gcloud compute firewall-rules create x --allow tcp:10001 --source-ranges {WORLD4}\n"
    )
    (tmp_path / "Dockerfile.cpu").write_text("FROM python\n")
    found = {p.name: check.check_file(p) for p in check.cluster_files(tmp_path)}
    assert found["open.sh"] and found["Dockerfile.cpu"]


# ============================================================================ first contact, least privilege


def _gpu8(config: dict) -> str:
    return next(
        k
        for k, v in config["available_node_types"].items()
        if check._GPUS_PER_TYPE.search(
            str(v["node_config"].get("InstanceType") or v["node_config"].get("machineType") or "")
        )
    )


@pytest.mark.parametrize("rel", AUTOSCALER_FILES)
def test_autoscaler_first_contact_rules_each_break_on_purpose(rel):
    base = _doc(rel)
    head = base["head_node_type"]
    assert check.first_contact_findings(base, base["provider"]["type"], base["available_node_types"], head) == []

    def findings(mutate):
        config = copy.deepcopy(base)
        mutate(config)
        return check.autoscaler_findings(config)

    assert _has(findings(lambda c: c.update(initialization_commands=[])), "registry login")
    assert _has(
        findings(
            lambda c: c["available_node_types"][head]["node_config"].pop(
                "IamInstanceProfile" if c["provider"]["type"] == "aws" else "serviceAccounts"
            )
        ),
        "dedicated identity",
    )

    def share(c):
        key = "IamInstanceProfile" if c["provider"]["type"] == "aws" else "serviceAccounts"
        worker = next(
            k for k in c["available_node_types"] if k != head and key in c["available_node_types"][k]["node_config"]
        )
        c["available_node_types"][worker]["node_config"][key] = copy.deepcopy(
            c["available_node_types"][head]["node_config"][key]
        )

    assert _has(findings(share), "head's identity")
    assert _has(findings(lambda c: c["available_node_types"][_gpu8(c)].update(max_workers=2)), "NCCL")
    if base["provider"]["type"] == "aws":
        assert _has(
            findings(lambda c: c["docker"]["run_options"].remove("--env AWS_DEFAULT_REGION=us-west-2")),
            "AWS_DEFAULT_REGION",
        )
    else:

        def legacy(c):
            sched = next(
                v["node_config"]["scheduling"]
                for v in c["available_node_types"].values()
                if v["node_config"].get("scheduling", {}).get("provisioningModel") == "SPOT"
            )
            sched.pop("provisioningModel")
            sched["preemptible"] = True

        assert _has(findings(legacy), "provisioningModel")


def _cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


@pytest.mark.parametrize("rel", KUBERAY_FILES)
def test_kuberay_hardening_rules_each_break_on_purpose(rel):
    base = _kuberay(rel)

    def findings(mutate):
        doc = copy.deepcopy(base)
        mutate(_cluster_spec(doc))
        return check.kuberay_findings(doc)

    def head_pod(spec):
        return spec["headGroupSpec"]["template"]["spec"]

    def worker_pod(spec):
        return spec["workerGroupSpecs"][0]["template"]["spec"]

    assert _has(
        findings(lambda s: worker_pod(s).update(serviceAccountName=head_pod(s)["serviceAccountName"])),
        "autoscaler Role",
    )
    assert _has(
        findings(lambda s: worker_pod(s)["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True)),
        "allowPrivilegeEscalation",
    )
    assert _has(
        findings(lambda s: worker_pod(s)["containers"][0]["securityContext"].pop("capabilities")),
        "drop must contain ALL",
    )
    assert _has(
        findings(
            lambda s: (
                head_pod(s)["securityContext"].pop("runAsNonRoot"),
                head_pod(s)["containers"][0]["securityContext"].pop("runAsNonRoot"),
            )
        ),
        "runAsNonRoot",
    )
    assert _has(
        findings(
            lambda s: (
                worker_pod(s)["securityContext"].pop("seccompProfile"),
                worker_pod(s)["containers"][0]["securityContext"].pop("seccompProfile"),
            )
        ),
        "seccompProfile",
    )
    assert _has(findings(lambda s: worker_pod(s).pop("tolerations")), "toleration of the nvidia.com/gpu taint")
    assert "nodeSelector" not in worker_pod(_cluster_spec(base))  # GPUs by request + toleration (scale from zero)
    worker_sc = lambda s: worker_pod(s)["containers"][0]["securityContext"]  # noqa: E731
    assert _has(findings(lambda s: worker_sc(s).update(privileged=True)), "privileged")
    assert _has(findings(lambda s: worker_sc(s).update(capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]})), "add")
    assert _has(findings(lambda s: worker_sc(s).pop("readOnlyRootFilesystem")), "readOnlyRootFilesystem")
    assert _has(findings(lambda s: head_pod(s).update(hostNetwork=True)), "hostNetwork")
    assert _has(findings(lambda s: head_pod(s).update(hostPID=True)), "hostPID")
    assert _has(
        findings(lambda s: worker_pod(s)["volumes"].append({"name": "h", "hostPath": {"path": "/var/run"}})),
        "hostPath",
    )
    assert _has(findings(lambda s: s["autoscalerOptions"].pop("securityContext")), "autoscalerOptions", "runAsNonRoot")
    assert _has(
        findings(lambda s: s["autoscalerOptions"]["securityContext"].update(readOnlyRootFilesystem=False)),
        "autoscalerOptions",
        "readOnlyRootFilesystem",
    )
    eight = next(i for i, g in enumerate(_cluster_spec(base)["workerGroupSpecs"]) if g["groupName"] == "gpu-8x")
    assert _cluster_spec(base)["workerGroupSpecs"][eight]["maxReplicas"] == 1
    assert _has(findings(lambda s: s["workerGroupSpecs"][eight].update(maxReplicas=2)), "maxReplicas=2", "TCP")
    assert _has(findings(lambda s: worker_pod(s)["containers"][0].pop("env")), "AWS_DEFAULT_REGION")
    assert _has(findings(lambda s: head_pod(s).pop("affinity")), "off GPU nodes")
    assert _has(
        findings(
            lambda s: head_pod(s).update(
                tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
            )
        ),
        "GPU taint",
    )
    if base["kind"] == "RayJob":
        doc = copy.deepcopy(base)
        doc["spec"]["ttlSecondsAfterFinished"] = 3600
        assert _has(check.kuberay_findings(doc), "ttlSecondsAfterFinished")
        doc = copy.deepcopy(base)
        doc["spec"].pop("submitterPodTemplate")
        assert _has(check.kuberay_findings(doc), "submitterPodTemplate is missing")
        doc = copy.deepcopy(base)
        doc["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["securityContext"].pop("allowPrivilegeEscalation")
        assert _has(check.kuberay_findings(doc), "submitterPodTemplate", "allowPrivilegeEscalation")
        doc = copy.deepcopy(base)
        doc["spec"]["submitterPodTemplate"]["spec"]["hostNetwork"] = True
        assert _has(check.kuberay_findings(doc), "submitterPodTemplate", "hostNetwork")


def _security_docs() -> list[dict]:
    return check.load_yaml_docs(_text("kuberay/security.yaml"))


def test_service_accounts_and_network_policy_live_in_their_own_manifest():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _security_docs()}
    assert docs[("ServiceAccount", "clasp-ray-worker")]["automountServiceAccountToken"] is False
    assert ("ServiceAccount", "clasp-ray-head") in docs
    policy = docs[("NetworkPolicy", "clasp-ray-ingress")]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"ray.io/is-ray-node": "yes"}
    for rel in KUBERAY_FILES:  # the Ray manifests use exactly these accounts and define none themselves
        doc = _kuberay(rel)
        spec = _cluster_spec(doc)
        assert spec["headGroupSpec"]["template"]["spec"]["serviceAccountName"] == "clasp-ray-head"
        assert {g["template"]["spec"]["serviceAccountName"] for g in spec["workerGroupSpecs"]} == {"clasp-ray-worker"}
        assert not [d for d in check.load_yaml_docs(_text(rel)) if d.get("kind") == "ServiceAccount"]


def test_network_policy_rule_breaks_on_purpose():
    policy = copy.deepcopy(next(d for d in _security_docs() if d["kind"] == "NetworkPolicy"))
    assert check.manifest_policy_findings(policy) == []
    select_all = copy.deepcopy(policy)
    select_all["spec"]["podSelector"] = {}
    assert _has(check.manifest_policy_findings(select_all), "selects every pod")
    any_namespace = copy.deepcopy(policy)
    any_namespace["spec"]["ingress"][0]["from"][-1]["namespaceSelector"] = {}
    assert _has(check.manifest_policy_findings(any_namespace), "every namespace")
    policy["spec"]["ingress"][0]["from"].append({"ipBlock": {"cidr": "10.0.0.0/8"}})
    assert _has(check.manifest_policy_findings(policy), "podSelector only")
    policy["spec"]["ingress"] = [{}]
    assert _has(check.manifest_policy_findings(policy), "admits every source")


def test_core_kubernetes_objects_validate_against_their_schemas():
    """kubernetes-validate: the ServiceAccounts and the NetworkPolicy against the Kubernetes OpenAPI schemas."""
    import kubernetes_validate

    for doc in _security_docs():
        kubernetes_validate.validate(doc, "1.33", strict=True)
    broken = copy.deepcopy(next(d for d in _security_docs() if d["kind"] == "NetworkPolicy"))
    broken["spec"]["policyTypes"] = "Ingress"  # must be a list
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.33", strict=True)


def test_hadolint_passes_the_dockerfile_and_fails_a_broken_one(tmp_path):
    import shutil
    import subprocess

    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    ok = subprocess.run(
        [hadolint, "--no-color", str(CLUSTER / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM rayproject/ray\nRUN cd /tmp && apt-get install curl\n")
    broken = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0 and "DL3006" in broken.stdout  # untagged base image


# ============================================================================ KubeRay CRD fields


@pytest.mark.parametrize("rel", KUBERAY_FILES)
def test_kuberay_manifests_pass_the_crd_field_schema(rel):
    doc = _kuberay(rel)
    schema = check.crd_schema(doc["kind"])
    assert schema["x-kuberay-version"] == check.KUBERAY_VERSION == "v1.5.1"
    assert "ray-project/kuberay" in schema["$comment"] and (CLUSTER / "kuberay" / "crd" / "LICENSE.kuberay").is_file()
    assert check.crd_field_findings(doc) == []


@pytest.mark.parametrize("rel", KUBERAY_FILES)
def test_crd_field_check_breaks_on_purpose(rel):
    base = _kuberay(rel)

    def findings(mutate):
        doc = copy.deepcopy(base)
        mutate(doc, _cluster_spec(doc))
        return check.crd_field_findings(doc)

    assert _has(findings(lambda d, s: s["workerGroupSpecs"][0].update(maxReplica=3)), "maxReplica", "unexpected")
    assert _has(findings(lambda d, s: s["authOptions"].update(mode="tokens")), "authOptions.mode")
    assert _has(findings(lambda d, s: s.update(enableInTreeAutoscaling="yes")), "enableInTreeAutoscaling")
    assert _has(
        findings(
            lambda d, s: s["headGroupSpec"]["template"]["spec"]["containers"][0]["securityContext"].update(
                runAsNonroot=True
            )
        ),
        "PodTemplate",
        "runAsNonroot",
    )
    assert _has(
        findings(lambda d, s: s["workerGroupSpecs"][0]["template"]["spec"].update(nodeselector={})), "nodeselector"
    )


def _submitter_admitted(policy: dict, rayjob: dict) -> bool:
    """Whether a podSelector of the policy's ingress matches the labels the submitter pod carries: those of
    rayjob.yaml's submitterPodTemplate (KubeRay v1.5.1/v1.6.2 add no label of theirs to that pod; the Job
    controller adds only job-name and controller-uid ones)."""
    labels = rayjob["spec"]["submitterPodTemplate"]["metadata"]["labels"]
    return any(
        "namespaceSelector" not in src
        and (src.get("podSelector") or {}).get("matchLabels")
        and all(labels.get(k) == v for k, v in src["podSelector"]["matchLabels"].items())
        for rule in policy["spec"]["ingress"]
        for src in rule.get("from") or []
    )


def test_the_network_policy_admits_the_submitter_pod_and_the_namespace_enforces_restricted():
    docs = {d["kind"]: d for d in _security_docs()}
    policy, rayjob = docs["NetworkPolicy"], _kuberay("kuberay/rayjob.yaml")
    assert _submitter_admitted(policy, rayjob)
    broken = copy.deepcopy(policy)  # the first round's selector: a label of the Job object, not of its pod
    for src in broken["spec"]["ingress"][0]["from"]:
        if src.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "clasp-ray-submitter":
            src["podSelector"]["matchLabels"] = {"ray.io/originated-from-crd": "RayJob"}
    assert not _submitter_admitted(broken, rayjob)
    namespace = docs["Namespace"]
    assert namespace["metadata"]["name"] == policy["metadata"]["namespace"] == rayjob["metadata"]["namespace"]
    assert check.manifest_policy_findings(namespace) == []
    namespace = copy.deepcopy(namespace)
    namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "baseline"
    assert _has(check.manifest_policy_findings(namespace), "restricted")
