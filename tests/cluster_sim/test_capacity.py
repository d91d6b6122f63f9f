"""Cluster facts without a cluster: what cluster/*.yaml can grow to, and the generated dataset in object storage."""

from __future__ import annotations

import pytest

from clasp_dist.config import load_config
from clasp_dist.training.capacity import read_cluster_yaml, yaml_max_resources
from clasp_dist.tuning import max_concurrent_trials
from tests.helpers import REPO


def test_the_aws_yaml_can_grow_to_its_node_types_times_max_workers():
    aws = read_cluster_yaml(REPO / "cluster" / "aws.yaml")
    a10g, a100 = (aws["available_node_types"][t]["max_workers"] for t in ("gpu_a10g_spot", "gpu_a100x8"))
    grown = yaml_max_resources(aws)
    # the head is CPU 0 in the YAML; g5.2xlarge has 8 CPUs and 1 GPU, p4d.24xlarge 96 CPUs and 8 GPUs
    assert grown == {
        "CPU": a10g * 8 + a100 * 96,
        "GPU": a10g * 1 + a100 * 8,
        "accelerator_type:A10G": a10g,  # Ray's AWS launcher marks each GPU type with its model
        "accelerator_type:A100": a100,
    }
    gpu_trial = load_config(["config=tiny", "train.use_gpu=true", "train.num_workers=1"])
    assert max_concurrent_trials(gpu_trial, grown) == a10g + 8 * a100  # one GPU each; the head alone: 1


def test_gcp_yaml_and_a_bad_file(tmp_path):
    gcp = read_cluster_yaml(REPO / "cluster" / "gcp.yaml")
    grown = yaml_max_resources(gcp)
    assert grown["GPU"] == sum(
        t["max_workers"] * t["resources"].get("GPU", 0)
        for t in gcp["available_node_types"].values()
        if "max_workers" in t
    )
    (tmp_path / "x.yaml").write_text("a: 1\n")
    with pytest.raises(ValueError, match="not a Ray cluster launcher YAML"):
        read_cluster_yaml(tmp_path / "x.yaml")


def test_the_embedded_dataset_is_generated_once_into_an_object_storage_cache(s3_bucket):
    from clasp_dist.data.manifest import read_manifest
    from clasp_dist.data.roots import ensure_dataset

    cfg = load_config(["config=tiny", "data.synth_limit_per_split=3", f"data.cache_dir={s3_bucket}/cache"])
    root = ensure_dataset(cfg.data, cfg.storage, workers=1, progress=False)
    assert root.startswith(f"{s3_bucket}/cache/tiny-seed0-")
    manifest = read_manifest(root)
    assert manifest.splits["train"].videos == 3
    assert ensure_dataset(cfg.data, cfg.storage, workers=1, progress=False) == root  # reused, not regenerated
    assert read_manifest(root).splits == manifest.splits


def test_an_autoscaler_that_launches_nodes_is_told_from_a_fixed_cluster():
    """The v1 monitor's status (the shape it keeps in the GCS, seen on the simulated cluster and on a laptop's
    `ray.init()`): a fixed cluster maps each node to a read-only mirror type named after the node's id."""
    from ray.autoscaler._private.util import format_readonly_node_type

    from clasp_dist.training.capacity import launches_nodes

    node = "54214d79543a6e693fe970348192ceaf3fcc3bda8052157a559746c0"
    laptop = {"autoscaler_report": {"node_type_mapping": {node: format_readonly_node_type(node)}, "legacy": True}}
    simulated = {"autoscaler_report": {"node_type_mapping": {node: "ray.head.default"}, "legacy": True}}
    assert not launches_nodes(laptop)
    assert launches_nodes(simulated)
    assert not launches_nodes(None) and not launches_nodes({"time": 1.0})  # no report yet: nothing launches


def test_reads_are_sized_from_the_node_types_not_the_cpu0_head():
    from clasp_dist.training.capacity import read_task_limit

    from .simcluster import simulated_config

    aws = read_cluster_yaml(REPO / "cluster" / "aws.yaml")
    a10g, a100 = (aws["available_node_types"][t]["max_workers"] for t in ("gpu_a10g_spot", "gpu_a100x8"))
    assert read_task_limit(10_000, yaml_max_resources(aws)) == a10g * 8 + a100 * 96
    assert read_task_limit(6, yaml_max_resources(aws)) == 6  # never more tasks than shards
    sim = simulated_config(0.25, "127.0.0.1:1")  # the simulated cluster: 2 CPUs per A10G node, 4 per A100 node
    assert read_task_limit(10_000, yaml_max_resources(sim)) == a10g * 2 + a100 * 4
    assert read_task_limit(6, {"CPU": 0.0}) == 1  # the CPU-0 head alone (what reads were sized from before)
    assert read_task_limit(6, None) is None  # an autoscaler of unknown size: Ray Data's own limit


@pytest.mark.parametrize(
    "cpus_per_worker, crowded",
    [(8, {"gpu_a10g_spot": 0.0}), (4, {}), (7.9, {"gpu_a10g_spot": 0.1})],
)
def test_node_types_where_train_workers_would_leave_no_cpu_for_reads(cpus_per_worker, crowded):
    """8 GPU workers at 8 CPUs each fill a g5.2xlarge (8 vCPUs, 1 GPU): an autoscaler that picks it leaves reads no
    CPU and the first batch never comes; a p4d.24xlarge (96 vCPUs, 8 GPUs) keeps 32. The trainer refuses the run."""
    from clasp_dist.training.capacity import crowded_node_types, yaml_node_types
    from clasp_dist.training.preflight import read_room_shortfall

    types = yaml_node_types(read_cluster_yaml(REPO / "cluster" / "aws.yaml"))
    assert set(types) == {"gpu_a10g_spot", "gpu_a100x8"}  # the CPU-0 head runs no worker
    cfg = load_config(
        ["config=unav100_i3d", "train.use_gpu=true", "train.num_workers=8", f"train.cpus_per_worker={cpus_per_worker}"]
    )
    assert crowded_node_types(cfg, types) == pytest.approx(crowded)
    problem = read_room_shortfall(cfg, types)
    assert (problem is None) == (not crowded)
    if crowded:
        assert "gpu_a10g_spot (8 CPUs" in problem and "gpu_a100x8" not in problem
    cpu_run = load_config(["config=tiny", "train.num_workers=8", "train.cpus_per_worker=8"])
    assert crowded_node_types(cpu_run, {"gpu_a10g_spot": types["gpu_a10g_spot"]}) == {"gpu_a10g_spot": 0.0}
