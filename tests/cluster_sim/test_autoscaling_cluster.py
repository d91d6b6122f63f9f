"""Training jobs and Tune sweeps on a simulated autoscaling cluster shaped like `cluster/aws.yaml`
(`simcluster.py` says how the YAML maps onto it): a head with `CPU: 0`, GPU node types launched by the real
autoscaler on demand, the loopback S3 server as the only storage, spot workers that disappear.

One cluster serves the whole module (started once, stopped at the end). The tests run in file order and the
preemption test compares with the scale-out test's run, so run them together:
`./dev test tests/cluster_sim --simcluster -q` (about 8 minutes on a quiet 2-core machine).

Why not in the README's test command: the tests that start the cluster (marked `simcluster`) launch a head, an
autoscaler and up to four raylets on this machine and take 8 minutes or more on 2 cores, which does not fit the
suite's 20-minute budget; `./dev test` deselects them unless `--simcluster` is given, and still runs the fast part
(the node types read from `cluster/aws.yaml` here, and `test_capacity.py`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import job_env, registered_checkpoints

from .simcluster import GPU_STAND_IN, REPO, SimCluster, simulated_node_types

pytestmark = pytest.mark.slow

AWS_WORKER_TYPES = {"gpu_a10g_spot", "gpu_a100x8"}
TRAIN = [
    "jobs/train.py",
    "config=tiny",
    "train.epochs=2",
    "train.eval_every=2",
    "train.num_workers=2",
    "train.progress_bar=off",
    f"train.worker_resources={{{GPU_STAND_IN}: 1}}",
    "optim.lr=2e-3",
    "optim.warmup_epochs=0.5",
    "decode.class_threshold=0.01",
    "decode.loc_thresholds=[0.01,0.02,0.05,0.1]",
]
"""The training job: `train.worker_resources={fake_gpu: 1}` is the stand-in for `train.use_gpu=true`; two tiny
epochs, validated after the last; low decoding thresholds so that two tiny epochs give a non-zero mAP."""
BASELINE: dict = {}
"""The scale-out run's test mAP, which the preemption test must reproduce."""


@pytest.fixture(scope="module")
def sim(s3_server, tmp_path_factory):
    """(cluster, bucket URL, s3fs filesystem): one simulated cluster and one bucket for the module."""
    import boto3
    import s3fs

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="clasp-sim")  # credentials: s3_server's env
    env = job_env()
    env.pop("PYTHONPATH", None)  # jobs run the uploaded working dir's code
    cluster = SimCluster(tmp_path_factory.mktemp("sim"), env, idle_timeout_minutes=0.25)
    cluster.start()
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server}, skip_instance_cache=True)
    try:
        yield cluster, "s3://clasp-sim", fs
    finally:
        cluster.stop()
        assert not cluster.pids(), "processes of the simulated cluster outlived it"


def logs(done) -> str:
    return (done.stdout or "")[-6000:] + (done.stderr or "")[-3000:]


def wait_until(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def most_at_once(intervals: list[tuple[int, int]]) -> int:
    """The largest number of (start, end) intervals that overlap at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in edges:  # at equal times an end (-1) sorts before a start: touching intervals do not overlap
        running += step
        most = max(most, running)
    return most


def read_task_intervals(cluster: SimCluster, since_ms: int) -> list[tuple[int, int]]:
    """(start, end) in ms of every finished shard-read task (Ray Data's `ReadShard` operator) started after
    `since_ms`, from the cluster's task events."""
    tasks = cluster.ray_json(["list", "tasks", "--detail", "--limit", "10000"])
    reads = [t for t in tasks if "ReadShard" in (t.get("name") or "") and t.get("end_time_ms")]
    intervals = [(_cli_time_ms(t["start_time_ms"]), _cli_time_ms(t["end_time_ms"])) for t in reads]
    return [(start, end) for start, end in intervals if start >= since_ms]


def _cli_time_ms(value) -> int:
    """A task time as `ray list tasks --format json` prints it (a local 'YYYY-MM-DD HH:MM:SS.ffffff') in epoch ms."""
    from datetime import datetime

    return int(datetime.fromisoformat(str(value)).timestamp() * 1000)


def test_most_at_once_counts_overlapping_intervals():
    assert most_at_once([]) == 0
    assert most_at_once([(0, 10), (10, 20), (20, 30)]) == 1  # one after the other
    assert most_at_once([(0, 10), (5, 20), (6, 7), (30, 40)]) == 3


def test_node_types_come_from_the_aws_yaml():
    import yaml

    aws = yaml.safe_load((REPO / "cluster" / "aws.yaml").read_text())
    types = simulated_node_types(aws)
    assert set(types) == AWS_WORKER_TYPES
    for name, gpus in (("gpu_a10g_spot", 1), ("gpu_a100x8", 8)):
        assert types[name]["resources"][GPU_STAND_IN] == gpus
        assert types[name]["max_workers"] == aws["available_node_types"][name]["max_workers"]
        assert types[name]["min_workers"] == aws["available_node_types"][name]["min_workers"]


@pytest.mark.simcluster
def test_the_embedded_dataset_in_a_local_cache_stops_the_job_at_once(sim):
    cluster, _, _ = sim
    started = time.time()
    done = cluster.submit(
        ["jobs/train.py", "config=tiny", "train.epochs=1", "run.storage_path=s3://clasp-sim/x"], timeout=180
    )
    assert done.returncode != 0, logs(done)
    assert "data.cache_dir=s3://" in done.stdout and "cannot read" in done.stdout, logs(done)
    assert time.time() - started < 90
    assert not cluster.worker_nodes(), "a refused job must not have launched GPU nodes"


@pytest.mark.simcluster
def test_training_job_scales_out_and_leaves_everything_in_object_storage(sim):
    cluster, bucket, fs = sim
    started = time.time()
    done = cluster.submit(
        [*TRAIN, f"data.cache_dir={bucket}/cache", f"run.storage_path={bucket}/runs", "run.name=scaled"], timeout=480
    )
    wall = time.time() - started
    assert done.returncode == 0 and "succeeded" in done.stdout, logs(done)
    assert "test average mAP" in done.stdout, logs(done)

    launched = [n for n in cluster.nodes() if not n.get("is_head_node")]
    assert launched, "the autoscaler launched no worker node"
    assert all(n["resources_total"].get(GPU_STAND_IN) for n in launched)  # GPU node types, from aws.yaml
    head = next(n["node_id"] for n in cluster.nodes() if n.get("is_head_node"))
    run = f"{bucket}/runs/scaled"
    workers = json.loads(fs.cat(f"{run}/workers.json"))
    assert sorted(w["rank"] for w in workers) == [0, 1]
    assert head not in {w["node_id"] for w in workers}  # CPU 0: no training on the head
    assert {w["node_id"] for w in workers} <= {n["node_id"] for n in launched}

    names = {p.rsplit("/", 1)[-1] for p in fs.ls(run)}
    local = sorted(str(p) for p in Path(cluster.temp_dir).glob("**/runs/scaled/*"))  # the head's run dir
    assert {"config.yaml", "metrics.json", "metrics.jsonl", "tensorboard", "export", "test"} <= names, (
        sorted(names),
        local,
        logs(done),
    )
    assert any(n.startswith("checkpoint_") for n in names), names
    assert fs.exists(f"{run}/export/weights.pt") and fs.ls(f"{run}/tensorboard")
    assert [json.loads(line)["epoch"] for line in fs.cat(f"{run}/metrics.jsonl").decode().splitlines()] == [0, 1]
    cached = fs.ls(f"{bucket}/cache")
    assert len(cached) == 1 and fs.exists(f"{cached[0]}/manifest.json")  # generated once, in object storage
    metrics = json.loads(fs.cat(f"{run}/metrics.json"))
    assert metrics["dataset"]["root"].startswith(f"{bucket}/cache/")
    BASELINE["test_average"] = metrics["test"]["average"]
    print(f"scale-out training job: {wall:.1f} s from submit to success, {len(launched)} node(s) launched")

    # the driver built the train dataset on the CPU-0 head, before any node joined; its reads still ran side by
    # side on the GPU nodes (not sized from the head's CPUs at start-up). The first epoch's reads are the first
    # ones (validation and test read later, with datasets built once the nodes had joined).
    train_shards = len(json.loads(fs.cat(f"{cached[0]}/manifest.json"))["splits"]["train"]["shards"])
    reads = sorted(read_task_intervals(cluster, int(started * 1000)))
    assert len(reads) >= 2 * train_shards, reads  # two epochs
    first_epoch = reads[:train_shards]
    assert most_at_once(first_epoch) > 1, (reads, len(launched))
    print(f"{len(reads)} shard reads; the first epoch's {train_shards}: at most {most_at_once(first_epoch)} at once")

    try:
        wait_until(lambda: not cluster.worker_nodes(), 120, "the idle worker nodes to be terminated")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{cluster.status()}") from None
    print(f"workers gone {time.time() - started - wall:.1f} s after the job (idle timeout 15 s)")


@pytest.mark.simcluster
def test_spot_preemption_replaces_the_node_and_the_run_finishes_with_the_same_map(sim):
    cluster, bucket, fs = sim
    baseline = BASELINE.get("test_average")
    assert baseline is not None, "run the whole module: this test compares with the scale-out test's run"
    run = f"{bucket}/runs/preempted"
    job = cluster.submit(
        [
            *TRAIN,
            f"data.cache_dir={bucket}/cache",
            f"run.storage_path={bucket}/runs",
            "run.name=preempted",
            "train.max_failures=3",
        ],
        wait=False,
    )
    try:
        wait_until(lambda: registered_checkpoints(fs, run), 300, "the run's first registered checkpoint", interval=0.5)
        time.sleep(0.5)  # into epoch 2
        workers = json.loads(fs.cat(f"{run}/workers.json"))
        victim = next(w["node_id"] for w in workers if w["rank"] == 0)
        os.kill(cluster.raylet_pid(victim), signal.SIGKILL)  # the spot node is gone
        out, _ = job.communicate(timeout=480)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert job.returncode == 0 and "succeeded" in out, out[-6000:]
    nodes = {n["node_id"]: n for n in cluster.nodes()}
    assert nodes[victim]["state"] == "DEAD"
    final_workers = json.loads(fs.cat(f"{run}/workers.json"))
    assert victim not in {w["node_id"] for w in final_workers}  # the restarted group runs on a replacement
    epochs = [json.loads(line)["epoch"] for line in fs.cat(f"{run}/metrics.jsonl").decode().splitlines()]
    assert epochs == [0, 1], epochs  # resumed after epoch 1: at most the interrupted epoch was redone
    got = json.loads(fs.cat(f"{run}/metrics.json"))["test"]["average"]
    assert abs(got - baseline) <= 0.005, (got, baseline)  # within 0.5 mAP points
    print(f"preempted run test mAP {got * 100:.2f}, uninterrupted {baseline * 100:.2f}")


@pytest.mark.simcluster
@pytest.mark.timeout(1500)
def test_tune_sweep_runs_trials_side_by_side_and_resumes_from_s3_after_the_driver_dies(sim):
    """4 trials, 2 at a time (`--max-concurrent 2`: four DeepSpeed trials at once would only crowd 2 cores; the
    concurrency the cluster's node types allow is checked in tests/cluster_sim/test_capacity.py)."""
    cluster, bucket, fs = sim
    sweep = f"{bucket}/sweeps/ablation"
    args = [
        "jobs/tune.py",
        "--sweep",
        "ablation",
        "--arms",
        "base,full",
        "--seeds",
        "2",
        "--dir",
        sweep,
        "--max-concurrent",
        "2",
        "config=tiny",
        "train.epochs=1",
        f"train.worker_resources={{{GPU_STAND_IN}: 1}}",
        f"data.cache_dir={bucket}/cache",
        f"run.storage_path={bucket}/runs",
    ]
    job = cluster.submit(args, wait=False)
    output = ""
    try:

        def finished_trials():
            try:
                states = sorted(fs.glob(f"{sweep}/tune/experiment_state-*.json"))
                data = json.loads(fs.cat(states[-1])) if states else {}
            except (FileNotFoundError, ValueError):
                return None
            done = [
                json.loads(t)["trial_id"]
                for t, _ in data.get("trial_data", [])
                if json.loads(t)["status"] == "TERMINATED"
            ]
            return done or None

        finished = wait_until(finished_trials, 600, "a finished trial in the sweep's S3 state")
        os.kill(cluster.driver_pid("jobs/tune.py"), signal.SIGKILL)  # the driver dies; the sweep's state is in S3
        output = job.communicate(timeout=120)[0]
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            output = job.communicate()[0]
        print(output[-5000:])  # the first submission's log (shown with -s or on failure)
        print(cluster.trial_errors())
    assert not fs.exists(f"{sweep}/results.csv")
    first = finished[0]
    first_metrics = fs.info(f"{sweep}/trials/{first}/metrics.json")["LastModified"]

    resumed = cluster.submit(["jobs/tune.py", "--resume", "--out", sweep], timeout=600)
    assert resumed.returncode == 0 and "resuming sweep" in resumed.stdout, logs(resumed)
    assert fs.info(f"{sweep}/trials/{first}/metrics.json")["LastModified"] == first_metrics  # not run again
    rows = list(csv.DictReader(io.StringIO(fs.cat(f"{sweep}/results.csv").decode())))
    assert sorted((r["arm"], r["seed"]) for r in rows) == [("base", "0"), ("base", "1"), ("full", "0"), ("full", "1")]
    assert all(not r["error"] and 0.0 <= float(r["test_average"]) <= 1.0 for r in rows)
    assert fs.cat(f"{sweep}/ablation.png").startswith(b"\x89PNG") and b"| full |" in fs.cat(f"{sweep}/results.md")
    assert b"model:" in fs.cat(f"{sweep}/best.yaml")
    spans = sorted((float(r["trial_started"]), float(r["trial_finished"])) for r in rows)
    overlap = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert overlap >= 2, spans  # at least two trials ran at once, on autoscaled nodes
    assert not cluster.trial_errors()  # no trial failed on the way (Tune's retries would hide it from results.csv)
