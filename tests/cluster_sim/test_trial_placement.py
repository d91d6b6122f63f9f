"""Where pending sweep trials make the autoscaler launch nodes: Ray's own resource-demand scheduler (the one the
autoscaler runs) on the node types of cluster/aws.yaml and cluster/gcp.yaml, with the trials of docs/cluster.md's
sweep command. Pinned, 1-GPU trials launch the 1-GPU spot type; unpinned, the scheduler packs them onto the 8-GPU
on-demand node."""

from __future__ import annotations

import copy
import re
import shlex

import pytest

from clasp_dist.config import load_config
from clasp_dist.training.capacity import node_type_resources, read_cluster_yaml
from clasp_dist.tuning import trial_resources
from tests.helpers import REPO

PENDING_TRIALS = 8
"""As many pending 1-GPU trials as the 1-GPU types' max_workers (8 in both YAMLs)."""


def _documented_tune_overrides() -> list[str]:
    """The key=value overrides of docs/cluster.md's `jobs/tune.py` submission."""
    docs = (REPO / "docs" / "cluster.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", docs, re.S) if "jobs/tune.py --sweep" in b)
    words = shlex.split(block.replace("\\\n", " "))
    return [w for w in words[words.index("jobs/tune.py") :] if "=" in w and not w.startswith("-")]


def _trial_demands(overrides: list[str]) -> list[dict]:
    """What one pending trial asks the autoscaler for: its own actor, its train worker, its validation actor."""
    cfg = load_config([o for o in overrides if not o.startswith(("data.root=", "run.storage_path="))])
    worker = {"CPU": cfg.train.cpus_per_worker, **cfg.train.worker_resources}
    if cfg.train.use_gpu:
        worker["GPU"] = 1
    return [trial_resources(cfg), worker, {"CPU": cfg.eval.actor_num_cpus}]


class _HeadOnly:
    """The cluster as the scheduler asks it (a running head, nothing else): a stand-in for the cloud API,
    which cannot be reached from here."""

    def node_tags(self, node_id):
        from ray.autoscaler.tags import NODE_KIND_HEAD, TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE

        return {TAG_RAY_USER_NODE_TYPE: "head", TAG_RAY_NODE_KIND: NODE_KIND_HEAD}

    def internal_ip(self, node_id):
        return "10.0.0.1"


def _launched(config: dict, demands: list[dict]) -> dict[str, int]:
    from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
    from ray.autoscaler._private.resource_demand_scheduler import ResourceDemandScheduler

    types = copy.deepcopy(config["available_node_types"])
    for node_type in types.values():
        node_type["resources"] = node_type_resources(node_type)  # what Ray's launcher fills in before scheduling
    head = types[config["head_node_type"]]
    scheduler = ResourceDemandScheduler(
        _HeadOnly(), types, config["max_workers"], config["head_node_type"], config["upscaling_speed"]
    )
    launch, _ = scheduler.get_nodes_to_launch(
        ["head"], {}, demands, {"10.0.0.1": {}}, [], {"10.0.0.1": head["resources"]}, [], NodeAvailabilitySummary({})
    )
    return launch


@pytest.mark.parametrize(
    ("yaml_name", "pin", "spot_type", "big_type"),
    [
        ("aws.yaml", None, "gpu_a10g_spot", "gpu_a100x8"),  # the docs' command carries the AWS pin
        ("gcp.yaml", "train.worker_resources={gpu_a100_1x: 0.001}", "gpu_a100_1x", "gpu_a100_8x"),
    ],
)
def test_pending_one_gpu_trials_launch_spot_nodes_only_when_pinned(yaml_name, pin, spot_type, big_type):
    config = read_cluster_yaml(REPO / "cluster" / yaml_name)
    overrides = _documented_tune_overrides()
    assert any(o.startswith("train.worker_resources=") for o in overrides), "the documented sweep is not pinned"
    if pin:
        overrides = [o for o in overrides if not o.startswith("train.worker_resources=")] + [pin]
    pinned = _launched(config, _trial_demands(overrides) * PENDING_TRIALS)
    assert set(pinned) == {spot_type} and pinned[spot_type] >= 1, pinned
    unpinned_overrides = [o for o in overrides if not o.startswith("train.worker_resources=")]
    unpinned = _launched(config, _trial_demands(unpinned_overrides) * PENDING_TRIALS)
    assert unpinned.get(big_type) == 1, unpinned  # the reason for the pin: an 8-GPU on-demand node
