"""Time to first step: from launching a training job to its first optimizer step, on one machine and on the
simulated autoscaling cluster (tests/cluster_sim/simcluster.py, shaped like cluster/aws.yaml), cold and warm.

    ./dev bench/time_to_first_step.py [--record]

The job is the same everywhere: `config=tiny`, 1 epoch, 2 workers, the generated dataset already in the
(loopback S3) cache, checkpoints to S3. On the cluster each worker asks for the GPU stand-in
(`train.worker_resources={fake_gpu: 1}`), so the autoscaler has to launch GPU nodes.
  single machine   `python jobs/train.py ...` with its own local Ray (ray.init included)
  cluster, cold    `ray job submit` on a fresh cluster: head only (CPU 0), the autoscaler launches the workers
  cluster, warm    the same job again right after, while the worker nodes are still up (idle timeout 1 min)
The first step is dated from the run's first `metrics.jsonl` line: the moment it appears (polled every 0.2 s)
minus that epoch's own `epoch_time_s`. Writes bench/results/local/time_to_first_step.json (untracked);
`--record` writes the tracked bench/results/time_to_first_step.json instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.outputs import add_output_args, output_path  # noqa: E402
from clasp_dist.config import load_config  # noqa: E402
from clasp_dist.data import ensure_dataset  # noqa: E402

JOB = ["config=tiny", "train.epochs=1", "train.num_workers=2", "train.progress_bar=off"]


def first_step_at(read_metrics, started: float, proc, out: list, timeout: float = 600) -> float:
    """Seconds from `started` to the first optimizer step (first metrics line seen minus its epoch time)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = read_metrics()
        if text:
            seen = time.time()
            first = json.loads(text.splitlines()[0])
            return seen - first["epoch_time_s"] - started
        if proc.poll() is not None and proc.returncode != 0:
            time.sleep(1)
            raise RuntimeError(f"the job failed ({proc.returncode}): {''.join(out)[-4000:]}")
        time.sleep(0.2)
    raise RuntimeError("no epoch was reported in time")


def s3_reader(fs, path: str):
    def read() -> str | None:
        try:
            return fs.cat(path).decode()
        except FileNotFoundError:
            return None

    return read


def timed_job(cmd: list[str], env: dict, read_metrics, cwd: Path = REPO) -> dict:
    started = time.time()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()  # drain the pipe from the start, or a chatty job blocks on a full pipe
    first = first_step_at(read_metrics, started, proc, out)
    proc.wait(600)
    reader.join(10)
    if proc.returncode != 0:
        raise RuntimeError(f"the job failed ({proc.returncode}): {''.join(out)[-3000:]}")
    return {"first_step_s": round(first, 1), "job_wall_s": round(time.time() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(parser)
    args = parser.parse_args()
    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    from tests.cluster_sim.simcluster import GPU_STAND_IN, SimCluster, free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        RAY_USAGE_STATS_ENABLED="0",
        DS_ACCELERATOR="cpu",
    )
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    cache = "data.cache_dir=s3://bench/cache"

    cfg = load_config([*JOB, cache])
    ensure_dataset(cfg.data, cfg.storage, progress=False)  # every figure below reads the cached dataset

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    work = Path(tempfile.mkdtemp(prefix="ttfs-"))
    figures = {}
    local_run = work / "local"
    figures["single machine"] = timed_job(
        [
            sys.executable,
            "jobs/train.py",
            *JOB,
            cache,
            f"run.storage_path={local_run}",
            f"run.output_dir={local_run}",
            "run.name=local",
        ],
        env,
        lambda: (
            (local_run / "local" / "metrics.jsonl").exists() and (local_run / "local" / "metrics.jsonl").read_text()
        ),
    )
    print("single machine", figures["single machine"], flush=True)

    cluster_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    cluster = SimCluster(work, cluster_env, idle_timeout_minutes=1.0)
    started = time.time()
    cluster.start()
    figures["cluster start (head only)"] = {"wall_s": round(time.time() - started, 1)}
    try:
        for label, name in (("cluster, cold", "cold"), ("cluster, warm", "warm")):
            submit = cluster.submit_command(
                [
                    "jobs/train.py",
                    *JOB,
                    cache,
                    f"train.worker_resources={{{GPU_STAND_IN}: 1}}",
                    "run.storage_path=s3://bench/runs",
                    f"run.name={name}",
                ]
            )
            nodes_before = len(cluster.worker_nodes())
            figures[label] = {
                **timed_job(submit, cluster.client_env(), s3_reader(fs, f"bench/runs/{name}/metrics.jsonl")),
                "worker_nodes_at_submit": nodes_before,
            }
            print(label, figures[label], flush=True)
    finally:
        cluster.stop()
        server.stop()
    result = {
        "bench": "time_to_first_step",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "job": " ".join(JOB),
        "figures": figures,
    }
    out = output_path(args, "time_to_first_step.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
