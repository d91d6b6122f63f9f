"""A simulated autoscaling Ray cluster on this machine, shaped like `cluster/aws.yaml`.

Ray's fake multi-node provider (`ray/autoscaler/_private/fake_multi_node/`, what
`ray.cluster_utils.AutoscalingCluster` uses) runs the real autoscaler (monitor) on the head; when work is
pending it "launches" a node of a configured type by starting one more raylet here, and "terminates" it by
killing that raylet. It is loaded as an external provider (`provider/clasp_sim_provider.py`) that gives each
node its own folder for job working directories, as each real node has its own disk. Autoscaling decisions, node
types, resources, idle timeouts and node failures are real Ray; only the machines are not.

How `cluster/aws.yaml` maps onto it:

| aws.yaml | simulated |
|---|---|
| `head` (`CPU: 0`) | `ray.head.default` (the fake provider's fixed head type name), `CPU: 0` |
| worker type names, `min_workers`, `max_workers`, cluster `max_workers`, `upscaling_speed` | the same |
| `idle_timeout_minutes` (10) | `idle_timeout_minutes` argument (shortened for tests) |
| instance vCPUs (`g5.2xlarge` 8, `p4d.24xlarge` 96) | `CPU` = vCPUs / 4, at most 4 (two cores must hold everything) |
| instance GPUs (A10G x1, A100 x8) | `fake_gpu` = the GPU count, plus Ray's own `accelerator_type:<type>` marker |

The training job asks for the stand-in with `train.worker_resources={fake_gpu: 1}` where a real run says
`train.use_gpu=true` (one GPU per worker): the autoscaler then picks and launches a GPU node type exactly as it
would on AWS, while compute stays on CPU.

`AutoscalingCluster.start()`/`shutdown()` run `ray stop --force`, which kills every Ray on the machine, so this
class starts the head itself: `ray start --head --block` in its own process group, a private `--temp-dir` (the
fake nodes inherit it), free ports, token auth off (a throw-away local cluster). `stop()` ends exactly the
processes that name that temp dir. Storage is the loopback S3 server only; nothing is put on a path that nodes
share on purpose (they do share this machine's disk, which is why the tests read every result from S3).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.train.test_job_submit import EXCLUDES, _pids_naming, free_port

REPO = Path(__file__).resolve().parents[2]
AWS_YAML = REPO / "cluster" / "aws.yaml"
PROVIDER_DIR = Path(__file__).resolve().parent / "provider"
GPU_STAND_IN = "fake_gpu"
ACCELERATORS = {"g5.2xlarge": "A10G", "p4d.24xlarge": "A100"}
"""Ray's accelerator_type label of each GPU instance type of aws.yaml."""


def simulated_node_types(aws: dict) -> dict:
    """aws.yaml's node types as fake-provider node types (see the module table)."""
    from clasp_dist.training.capacity import node_type_resources

    types = {}
    for name, spec in aws["available_node_types"].items():
        if name == aws["head_node_type"]:
            continue
        real = node_type_resources(spec)
        resources = {"CPU": min(4, max(1, int(real.get("CPU", 4)) // 4)), "object_store_memory": 80 * 1024**2}
        if real.get("GPU"):
            resources[GPU_STAND_IN] = real["GPU"]
            resources[f"accelerator_type:{ACCELERATORS[spec['node_config']['InstanceType']]}"] = 1
        types[name] = {
            "resources": resources,
            "node_config": {},
            "min_workers": spec.get("min_workers", 0),
            "max_workers": spec["max_workers"],
        }
    return types


def simulated_config(idle_timeout_minutes: float, gcs_address: str, aws_yaml: Path = AWS_YAML) -> dict:
    """The autoscaler config of the simulated cluster (the shape of fake_multi_node/example.yaml)."""
    aws = yaml.safe_load(aws_yaml.read_text())
    head = aws["available_node_types"][aws["head_node_type"]]
    types = simulated_node_types(aws)
    types["ray.head.default"] = {"resources": dict(head["resources"]), "node_config": {}, "max_workers": 0}
    return {
        "cluster_name": "clasp-sim",
        "max_workers": aws["max_workers"],
        "upscaling_speed": aws["upscaling_speed"],
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {
            "type": "external",  # Ray's fake multi-node provider, one disk per node (provider/clasp_sim_provider.py)
            "module": "clasp_sim_provider.SeparateDisksProvider",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },
        "available_node_types": types,
        "head_node_type": "ray.head.default",
        "auth": {},
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


class SimCluster:
    """Start with `start()`, submit with `submit(...)`, inspect with `nodes()`, end with `stop()`."""

    def __init__(self, workdir: Path, env: dict, idle_timeout_minutes: float = 0.25):
        self.workdir = Path(workdir)
        self.env = dict(env)
        self.idle_timeout_minutes = idle_timeout_minutes
        # short (Ray's unix sockets live under it), inside `./dev test`'s private RAY_TMPDIR when there is one
        self.temp_dir = tempfile.mkdtemp(prefix="rs", dir=os.environ.get("RAY_TMPDIR") or "/tmp")
        self.port, self.dash_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.config_path = self.workdir / "sim_cluster.yaml"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dash_port}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ray_bin(self) -> str:
        return str(Path(sys.executable).parent / "ray")

    def start(self, timeout: float = 300) -> None:
        config = simulated_config(self.idle_timeout_minutes, self.gcs_address)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        # worker groups wait for nodes to be launched: allow minutes, as on a real cluster (not the tests' 60 s)
        self.env.update(
            RAY_FAKE_CLUSTER="1",
            AUTOSCALER_UPDATE_INTERVAL_S="1",
            RAY_AUTH_MODE="disabled",
            RAY_USAGE_STATS_ENABLED="0",
            RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S="300",
            PYTHONPATH=str(PROVIDER_DIR),  # the autoscaler loads the provider from there
        )
        cmd = [
            self.ray_bin(),
            "start",
            "--head",
            "--block",
            f"--temp-dir={self.temp_dir}",
            "--num-cpus=0",
            f"--port={self.port}",
            f"--autoscaling-config={self.config_path}",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dash_port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
        ]
        self.proc = subprocess.Popen(
            cmd,
            env=self.env,
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited ({self.proc.returncode}): {self.proc.stdout.read()[-3000:]}")
            try:
                urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=2)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the simulated cluster's dashboard at {self.dashboard} did not come up")

    def client_env(self) -> dict:
        env = {k: v for k, v in self.env.items() if k not in ("RAY_FAKE_CLUSTER", "PYTHONPATH")}
        env["RAY_ADDRESS"] = self.dashboard
        return env

    def submit_command(self, args: list[str]) -> list[str]:
        """`ray job submit --working-dir . -- python <args>` against this cluster (run it from the repo root)."""
        return [
            self.ray_bin(),
            "job",
            "submit",
            "--address",
            self.dashboard,
            "--working-dir",
            ".",
            "--runtime-env-json",
            EXCLUDES,
            "--",
            "python",
            *args,
        ]

    def submit(self, args: list[str], timeout: float = 420, wait: bool = True):
        """Run `submit_command(args)`; returns the CompletedProcess (or the Popen, with `wait=False`)."""
        cmd = self.submit_command(args)
        if not wait:
            return subprocess.Popen(
                cmd,
                env=self.client_env(),
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        return subprocess.run(cmd, env=self.client_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def driver_pid(self, entrypoint_part: str) -> int:
        """The driver process of the running job whose entrypoint contains `entrypoint_part` (`ray list jobs`)."""
        jobs = self.ray_json(["list", "jobs"])
        for job in jobs:
            pid = (job.get("driver_info") or {}).get("pid")
            if job.get("status") == "RUNNING" and entrypoint_part in (job.get("entrypoint") or "") and pid:
                return int(pid)
        raise LookupError(f"no running job with {entrypoint_part!r} in its entrypoint: {str(jobs)[-2000:]}")

    def trial_errors(self) -> str:
        """Every Tune `error.txt` under this cluster's session directories (what a failed trial said)."""
        return "\n".join(f"{path}:\n{path.read_text()[-3000:]}" for path in Path(self.temp_dir).glob("**/error.txt"))

    def ray_json(self, args: list[str], timeout: float = 60) -> list[dict]:
        """`ray <args> --address <dashboard> --format json`, retried while the dashboard's state API is not
        answering yet (right after start it prints nothing)."""
        deadline = time.time() + timeout
        while True:
            done = subprocess.run(
                [self.ray_bin(), *args, "--address", self.dashboard, "--format", "json"],
                env=self.client_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            try:
                if done.returncode == 0:
                    return json.loads(done.stdout)
            except ValueError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"ray {' '.join(args)}: {done.stdout[-1000:]}{done.stderr[-2000:]}")
            time.sleep(1)

    def nodes(self) -> list[dict]:
        """Every node the GCS knows (alive and dead): node_id, state, resources_total, is_head_node, labels."""
        return self.ray_json(["list", "nodes", "--limit", "1000"])

    def status(self) -> str:
        """The autoscaler's view (`ray status --verbose`: node types, idle nodes, resource demands), the alive
        actors and the object store's contents: what keeps a node from being idle."""
        outputs = []
        for args in (
            ["status", "--verbose", "--address", self.gcs_address],
            ["list", "actors", "--filter", "state=ALIVE", "--detail", "--address", self.dashboard],
            ["memory", "--address", self.gcs_address, "--units", "KB"],
        ):
            done = subprocess.run(
                [self.ray_bin(), *args], env=self.client_env(), capture_output=True, text=True, timeout=60
            )
            outputs.append(f"$ ray {' '.join(args[:2])}\n{done.stdout}{done.stderr[-2000:]}")
        return "\n".join(outputs)

    def worker_nodes(self, alive: bool = True) -> list[dict]:
        return [n for n in self.nodes() if not n.get("is_head_node") and (n["state"] == "ALIVE") == alive]

    def raylet_pid(self, node_id: str) -> int:
        """The raylet process of a fake node (its command line names the node id the provider gave it)."""
        for pid in self.pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "raylet" in cmdline.split(" ")[0] and f"RAY_OVERRIDE_NODE_ID_FOR_TESTING={node_id}" in environ:
                return pid
        raise LookupError(f"no raylet process for node {node_id}")

    def pids(self) -> list[int]:
        """Processes whose command line names this cluster's temp dir: ours only."""
        return _pids_naming(self.temp_dir)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in self.pids():  # fake nodes the monitor started, workers they forked
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)
