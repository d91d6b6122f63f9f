"""What a Ray cluster is, and what it can grow to: the driver-side facts that decide where work may run.

* :func:`growable_resources`: the resources the cluster can reach once the autoscaler has launched every node
  type up to its ``max_workers``: from a given cluster YAML, else the autoscaler's config in the GCS (KubeRay,
  autoscaler v2), else the head's ``~/ray_bootstrap_config.yaml`` (``ray up``), never fewer than the
  resources present now. Tune sizes its concurrency from it: at
  start, a head with ``CPU: 0`` and no worker nodes would otherwise allow a single trial. ``None`` when an
  autoscaler runs but its node types cannot be read here (autoscaler v1 outside ``ray up``, e.g. KubeRay's default):
  the cluster may grow by an unknown amount.
* :func:`autoscaler_of_unknown_size`: whether the autoscaler's last status names real node types (an autoscaler that
  can launch nodes) rather than the read-only mirrors Ray reports for a fixed cluster (a laptop, `ray start`).
* :func:`yaml_max_resources`: the same sum, read from a ``ray up`` YAML (``cluster/aws.yaml``, ``cluster/gcp.yaml``).
  AWS node types leave ``resources`` empty (Ray detects them from the instance type), so the instance types
  of our YAMLs are known here.
* :func:`has_shared_local_disk`: False on a cluster whose tasks may run on another machine than the driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .. import compat

INSTANCE_RESOURCES: dict[str, dict[str, float]] = {
    "m6i.2xlarge": {"CPU": 8},
    "g5.2xlarge": {"CPU": 8, "GPU": 1, "accelerator_type:A10G": 1},
    "p4d.24xlarge": {"CPU": 96, "GPU": 8, "accelerator_type:A100": 1},
    "n2-standard-8": {"CPU": 8},
    "a2-highgpu-1g": {"CPU": 12, "GPU": 1},
    "a2-highgpu-8g": {"CPU": 96, "GPU": 8},
}
"""CPUs and GPUs Ray detects on the instance types of cluster/*.yaml (when a node type's `resources` is empty), and
the `accelerator_type:<GPU>` marker Ray's AWS launcher adds to EC2 GPU types (a trial pins its node type with it)."""


def node_type_resources(node_type: Mapping) -> dict[str, float]:
    """A node type's resources: its explicit `resources`, completed from the instance type's known ones."""
    node_config = node_type.get("node_config") or {}
    instance = node_config.get("InstanceType") or node_config.get("machineType") or ""
    return {**INSTANCE_RESOURCES.get(instance, {}), **(node_type.get("resources") or {})}


def yaml_max_resources(config: Mapping) -> dict[str, float]:
    """Sum over node types of max_workers x resources (the head once): the cluster at its largest."""
    head = config.get("head_node_type")
    total: dict[str, float] = {}
    for name, node_type in (config.get("available_node_types") or {}).items():
        count = 1 if name == head else int(node_type.get("max_workers", 0))
        for key, value in node_type_resources(node_type).items():
            total[key] = total.get(key, 0) + count * float(value)
    return total


def read_cluster_yaml(path: str | Path) -> dict:
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"--cluster-config {path}: cannot read it ({err})") from None
    if not isinstance(config, dict) or "available_node_types" not in config:
        raise ValueError(f"--cluster-config {path}: not a Ray cluster launcher YAML (no available_node_types)")
    return config


def autoscaler_max_resources() -> dict[str, float] | None:
    """The autoscaler's own view of the largest cluster (node types x max_workers), when it reports one."""
    state = compat.ray_global_state()
    try:
        found = state.get_max_resources_from_cluster_config()
    except Exception:  # noqa: BLE001 - an older GCS or no autoscaler: no information, not an error
        return None
    return {k: float(v) for k, v in found.items()} if found else None


def autoscaler_node_types() -> dict[str, dict[str, float]]:
    """{node type: resources} of the node types the autoscaler may launch, when it reports them ({} otherwise)."""
    state = compat.ray_global_state()
    try:
        config = state.get_cluster_config()
        groups = list(config.node_group_configs) if config is not None else []
    except Exception:  # noqa: BLE001 - an older GCS or no autoscaler: no information, not an error
        return {}
    return {g.name: {k: float(v) for k, v in g.resources.items()} for g in groups if g.max_count != 0}


BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
"""Where `ray up` leaves the autoscaler's config on the head node (where `ray job submit` drivers run)."""


def training_cpus(cfg, read_tasks: int, evaluator: bool = True) -> float:
    """CPUs a training run holds at once while it validates: its train workers (train.num_workers x
    train.cpus_per_worker), with `evaluator` the evaluator's actors beside them (eval.num_actors x
    eval.actor_num_cpus; a GPU run validates inside its workers) and `read_tasks` Ray Data read tasks
    (data.read_num_cpus each)."""
    return (
        cfg.train.num_workers * cfg.train.cpus_per_worker
        + (cfg.eval.num_actors * cfg.eval.actor_num_cpus if evaluator else 0.0)
        + read_tasks * cfg.data.read_num_cpus
    )


def train_worker_resources(cfg) -> dict[str, float]:
    """What each train worker asks Ray for: train.cpus_per_worker CPUs, one GPU with train.use_gpu, and
    train.worker_resources."""
    resources = {"CPU": float(cfg.train.cpus_per_worker), **cfg.train.worker_resources}
    if cfg.train.use_gpu:
        resources["GPU"] = 1.0
    return resources


def read_room(cfg, node: Mapping[str, float]) -> float | None:
    """CPUs a node of this type keeps for read tasks once it holds as many train workers as fit on it; None when
    no train worker fits on it (it is never launched for one)."""
    wanted = train_worker_resources(cfg)
    fit = min((float(node.get(key, 0.0)) // amount for key, amount in wanted.items() if amount > 0), default=0)
    fit = min(fit, cfg.train.num_workers)
    if fit < 1:
        return None
    return float(node.get("CPU", 0.0)) - fit * wanted["CPU"]


def crowded_node_types(cfg, node_types: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """{node type: CPUs left} for each node type that an autoscaler may launch for a train worker but that then
    keeps less than one read task's CPUs (data.read_num_cpus): reads of workers placed there never start."""
    rooms = {name: read_room(cfg, resources) for name, resources in node_types.items()}
    return {name: room for name, room in rooms.items() if room is not None and room < cfg.data.read_num_cpus}


def yaml_node_types(config: Mapping) -> dict[str, dict[str, float]]:
    """{worker node type: resources} of a cluster launcher YAML (the head, and types without workers, left out)."""
    head = config.get("head_node_type")
    return {
        name: node_type_resources(spec)
        for name, spec in (config.get("available_node_types") or {}).items()
        if name != head and int(spec.get("max_workers", 0)) > 0
    }


def launches_nodes(status: Mapping | None) -> bool:
    """True when an autoscaler status (the JSON Ray's v1 monitor keeps in the GCS) maps some node to a real node
    type. On a fixed cluster (a laptop's `ray.init()`, a hand-made `ray start` cluster) the monitor runs with Ray's
    read-only provider, whose node types are mirrors named after each node's id; no status at all is read the
    same way (nothing that could launch a node has reported)."""
    mapping = ((status or {}).get("autoscaler_report") or {}).get("node_type_mapping") or {}
    return any(node_type != compat.readonly_node_type(node_id) for node_id, node_type in mapping.items())


def autoscaler_of_unknown_size() -> bool:
    """An autoscaler that can launch nodes manages this cluster, per its last status in the GCS. Ray must be
    initialised."""
    import json

    compat.require("ray")  # before the try: an untested Ray fails with its own message
    try:
        raw = compat.autoscaling_status_raw()
        return launches_nodes(json.loads(raw) if raw else None)
    except Exception:  # noqa: BLE001 - an unreadable status says nothing either way: treat the cluster as fixed
        return False


def growable_resources(cluster_yaml: str | Path | None = None) -> tuple[dict[str, float] | None, str]:
    """(resources the cluster can grow to, where that figure came from); the resources are None when an
    autoscaler runs whose node types are not readable here (see the module docstring). Ray must be initialised."""
    import ray

    now = {k: float(v) for k, v in ray.cluster_resources().items()}
    bootstrap = Path(BOOTSTRAP_CONFIG).expanduser()
    if cluster_yaml:
        found, source = yaml_max_resources(read_cluster_yaml(cluster_yaml)), f"{cluster_yaml}'s node types"
    elif found := autoscaler_max_resources():
        source = "the autoscaler's node types"
    elif bootstrap.is_file():
        found, source = yaml_max_resources(read_cluster_yaml(bootstrap)), f"{bootstrap}'s node types"
    elif autoscaler_of_unknown_size():
        return None, "an autoscaler whose node types this driver cannot read"
    if not found:
        return now, "the resources present now"
    return {k: max(now.get(k, 0.0), found.get(k, 0.0)) for k in set(now) | set(found)}, source


def read_task_limit(num_paths: int, reachable: Mapping[str, float] | None) -> int | None:
    """Read tasks at once for `num_paths` shards: one per CPU the cluster can reach (`growable_resources`: the
    autoscaler's node types x max_workers, not the CPU-0 head alone at start-up), at most one per shard. Decoding is
    CPU-bound, and fractional read CPUs alone would let Ray start several worker processes per core. None (no cap:
    Ray Data schedules reads on the CPUs present as it runs) when the cluster may grow by an unknown amount."""
    if reachable is None:
        return None
    return max(1, min(num_paths, int(reachable.get("CPU", 0))))


def has_shared_local_disk() -> bool:
    """True when every Ray task runs on the driver's machine: a single node that has CPUs of its own.

    A head started with `CPU: 0` (our cluster YAMLs) runs no task itself, so its disk is never where the
    work runs, even before the autoscaler has added a node. Without Ray, the disk is trivially shared."""
    import ray

    if not ray.is_initialized():
        return True
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) != 1:
        return False
    return float(alive[0].get("Resources", {}).get("CPU", 0)) > 0
