"""Cluster facts without a cluster: what cluster/*.yaml can grow to, and the generated dataset in object storage."""

from __future__ import annotations

import pytest

from clasp_dist.training.capacity import read_cluster_yaml, yaml_max_resources
from clasp_dist.config import load_config
from clasp_dist.tuning import max_concurrent_trials

from tests.helpers import REPO


def test_the_aws_yaml_can_grow_to_its_node_types_times_max_workers():
    aws = read_cluster_yaml(REPO / "cluster" / "aws.yaml")
    a10g, a100 = (aws["available_node_types"][t]["max_workers"] for t in ("gpu_a10g_spot", "gpu_a100x8"))
    grown = yaml_max_resources(aws)
    # the head is CPU 0 in the YAML; g5.2xlarge has 8 CPUs and 1 GPU, p4d.24xlarge 96 CPUs and 8 GPUs
    assert grown == {"CPU": a10g * 8 + a100 * 96, "GPU": a10g * 1 + a100 * 8}
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
