"""Pre-flight checks of a training run, before Ray Train starts anything: the storage path takes writes,
and the Ray cluster can provide the resources the run asks for."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..data.filesystem import absolute_location, ensure_dir, get_fs, join
from .capacity import (
    BOOTSTRAP_CONFIG,
    autoscaler_node_types,
    crowded_node_types,
    growable_resources,
    read_cluster_yaml,
    training_cpus,
    yaml_node_types,
)


def storage_uri(cfg: Config) -> str:
    return absolute_location(cfg.run.storage_path, follow_links=False)


def check_storage_writable(cfg: Config) -> None:
    """Fail at the first write, not after an epoch: write and delete a probe under the storage path."""
    uri = storage_uri(cfg)
    fs, base = get_fs(uri, cfg.storage)
    probe = join(base, cfg.run.name, ".write-probe")
    try:
        ensure_dir(fs, join(base, cfg.run.name))  # a no-op on object storage (never creates a bucket)
        with fs.open(probe, "wb") as handle:
            handle.write(b"ok")
        fs.rm(probe)
    except Exception as err:
        raise OSError(
            f"run.storage_path={cfg.run.storage_path!r}: cannot write checkpoints there ({type(err).__name__}: {err})"
        ) from None


class UnsatisfiableRequestError(RuntimeError):
    """The run asks for resources this Ray cluster can never provide (refused before anything is requested)."""


def check_resource_request(cfg: Config) -> None:
    """Fail at once when the run asks for what this Ray cluster can never provide, even after its autoscaler has
    added every node: GPUs it does not have (Ray Train would retry the worker group forever), or CPUs that leave
    nothing for validation beside the train workers (training would wait forever at the first validation).
    Without an initialised Ray (a caller that lets Ray Train start a local one) there is no cluster to ask yet."""
    import ray

    if not ray.is_initialized():
        return
    reachable, source = growable_resources()
    if reachable is None:  # an autoscaler may add what is asked for: nothing to refuse
        print(f"[clasp-dist] {source}: not checking whether it can provide the workers' resources", flush=True)
        return
    problem = (
        gpu_shortfall(cfg, reachable.get("GPU", 0.0), source)
        or cpu_shortfall(cfg, reachable.get("CPU", 0.0), source)
        or read_room_shortfall(cfg, known_node_types())
    )
    if problem:
        raise UnsatisfiableRequestError(problem)


def gpu_shortfall(cfg: Config, gpus: float, source: str) -> str | None:
    """One GPU per train worker when train.use_gpu is on; the refusal's message, or None."""
    wanted = cfg.train.num_workers
    if not cfg.train.use_gpu or gpus >= wanted:
        return None
    return (
        f"train.use_gpu=true asks for {wanted} GPU(s) (one per worker, train.num_workers={wanted}), but this Ray "
        f"cluster can reach {gpus:g} (from {source}) and no autoscaler can add more. Run on a cluster with "
        f"GPUs, or drop train.use_gpu=true to train on CPU."
    )


def cpu_shortfall(cfg: Config, cpus: float, source: str) -> str | None:
    """Beside the train workers (train.num_workers x train.cpus_per_worker), at least one read task
    (data.read_num_cpus) needs a CPU the workers do not hold, or the first batch never comes; on CPU, validation
    also starts the evaluator's actors (eval.num_actors x eval.actor_num_cpus) beside them (on GPUs it runs inside
    the workers). The refusal's message, or None."""
    evaluator = not cfg.train.use_gpu
    needed = training_cpus(cfg, read_tasks=1, evaluator=evaluator)
    if needed <= cpus + 1e-9:
        return None
    workers = cfg.train.num_workers * cfg.train.cpus_per_worker
    actors = f"eval.num_actors={cfg.eval.num_actors} x eval.actor_num_cpus={cfg.eval.actor_num_cpus:g} + "
    return (
        f"training needs {needed:g} CPUs at once: {workers:g} for the train workers "
        f"(train.num_workers={cfg.train.num_workers} x train.cpus_per_worker={cfg.train.cpus_per_worker:g}) and "
        f"{needed - workers:g} beside them for {'validation' if evaluator else 'data reads'} "
        f"({actors if evaluator else ''}data.read_num_cpus={cfg.data.read_num_cpus:g}), "
        f"but this Ray cluster can reach {cpus:g} (from {source}) and no autoscaler can add more; training "
        f"would wait forever for {'its first validation' if evaluator else 'its first batch'}. Lower "
        f"train.cpus_per_worker (fractions are fine) or train.num_workers, or give Ray more CPUs."
    )


def known_node_types() -> dict[str, dict[str, float]]:
    """The node types this cluster's autoscaler may launch: from the autoscaler, else `ray up`'s bootstrap YAML on
    the head; {} when neither is readable (a fixed cluster, or one whose node types are unknown here)."""
    found = autoscaler_node_types()
    bootstrap = Path(BOOTSTRAP_CONFIG).expanduser()
    if not found and bootstrap.is_file():
        found = yaml_node_types(read_cluster_yaml(bootstrap))
    return found


def read_room_shortfall(cfg: Config, node_types: dict[str, dict[str, float]]) -> str | None:
    """A node type that the autoscaler may launch for train workers but whose CPUs they would all hold: the read
    tasks of those workers would never start (`clasp_dist.training.capacity.crowded_node_types`). The refusal's message,
    or None."""
    crowded = crowded_node_types(cfg, node_types)
    if not crowded:
        return None
    listed = ", ".join(
        f"{name} ({node_types[name].get('CPU', 0):g} CPUs, {room:g} left)" for name, room in crowded.items()
    )
    return (
        f"train.cpus_per_worker={cfg.train.cpus_per_worker:g} leaves less than data.read_num_cpus="
        f"{cfg.data.read_num_cpus:g} CPU for data reads on node types the autoscaler may launch for the train "
        f"workers: {listed}; the first batch would never come. Lower train.cpus_per_worker below the node's CPUs "
        f"(docs/training.md, settings by cluster size)."
    )
