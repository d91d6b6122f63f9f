"""Pre-flight checks of a training run, before Ray Train starts anything: the storage path takes writes,
and the Ray cluster can provide the resources the run asks for."""

from __future__ import annotations

import os

from ..config import Config
from ..data.filesystem import ensure_dir, get_fs, join
from .capacity import growable_resources, training_cpus


def storage_uri(cfg: Config) -> str:
    path = cfg.run.storage_path
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


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
    problem = gpu_shortfall(cfg, reachable.get("GPU", 0.0), source) or cpu_shortfall(
        cfg, reachable.get("CPU", 0.0), source
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
    """On CPU, validation during training runs beside the train workers: the evaluator's actors
    (eval.num_actors x eval.actor_num_cpus) and at least one read task (data.read_num_cpus) need CPUs that the
    workers (train.num_workers x train.cpus_per_worker) do not hold; the refusal's message, or None. (On GPUs,
    validation runs inside rank 0.)"""
    if cfg.train.use_gpu:
        return None
    needed = training_cpus(cfg, read_tasks=1)
    if needed <= cpus + 1e-9:
        return None
    workers = cfg.train.num_workers * cfg.train.cpus_per_worker
    validation = needed - workers
    return (
        f"training needs {needed:g} CPUs at once: {workers:g} for the train workers "
        f"(train.num_workers={cfg.train.num_workers} x train.cpus_per_worker={cfg.train.cpus_per_worker:g}) and "
        f"{validation:g} for validation beside them (eval.num_actors={cfg.eval.num_actors} x "
        f"eval.actor_num_cpus={cfg.eval.actor_num_cpus:g} + data.read_num_cpus={cfg.data.read_num_cpus:g}), "
        f"but this Ray cluster can reach {cpus:g} (from {source}) and no autoscaler can add more; training "
        f"would wait forever at its first validation. Lower train.cpus_per_worker (fractions are fine) or "
        f"train.num_workers, or give Ray more CPUs."
    )
