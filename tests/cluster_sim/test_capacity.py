"""Cluster facts without a cluster: what cluster/*.yaml can grow to, and the generated dataset in object storage."""
from __future__ import annotations

import pytest

from clasp_dist.cluster import read_cluster_yaml, yaml_max_resources
from clasp_dist.config import load_config
from clasp_dist.tuning import max_concurrent_trials

from train.conftest import REPO


def test_the_aws_yaml_can_grow_to_its_node_types_times_max_workers():
    grown = yaml_max_resources(read_cluster_yaml(REPO / "cluster" / "aws.yaml"))
    # head m6i.2xlarge is CPU 0 in the YAML; 8 x g5.2xlarge (8 CPU, 1 GPU) + 2 x p4d.24xlarge (96 CPU, 8 GPU)
    assert grown == {"CPU": 8 * 8 + 2 * 96, "GPU": 8 * 1 + 2 * 8}
    gpu_trial = load_config(["config=tiny", "train.use_gpu=true", "train.num_workers=1"])
    assert max_concurrent_trials(gpu_trial, grown) == 24  # one GPU each; a CPU-0 head alone would give 1


def test_gcp_yaml_and_a_bad_file(tmp_path):
    grown = yaml_max_resources(read_cluster_yaml(REPO / "cluster" / "gcp.yaml"))
    assert grown["GPU"] == 8 * 1 + 2 * 8
    (tmp_path / "x.yaml").write_text("a: 1\n")
    with pytest.raises(ValueError, match="not a Ray cluster launcher YAML"):
        read_cluster_yaml(tmp_path / "x.yaml")


def test_the_embedded_dataset_is_generated_once_into_an_object_storage_cache(s3_bucket):
    from clasp_dist.data.shards import read_manifest
    from clasp_dist.data.synthetic import ensure_dataset

    cfg = load_config(["config=tiny", "data.synth_limit_per_split=3", f"data.cache_dir={s3_bucket}/cache"])
    root = ensure_dataset(cfg.data, cfg.storage, workers=1, progress=False)
    assert root.startswith(f"{s3_bucket}/cache/tiny-seed0-")
    manifest = read_manifest(root)
    assert manifest.splits["train"].videos == 3
    assert ensure_dataset(cfg.data, cfg.storage, workers=1, progress=False) == root  # reused, not regenerated
    assert read_manifest(root).splits == manifest.splits
