"""What a training run will do and ask for, resolved on the driver without Ray, data or a model: the batch plan,
the peak learning rate, the ZeRO stage and the resource request (`clasp train --dry-run` prints it, before a
cluster is paid for). Every figure comes from the functions the run itself uses; nothing is written back into the
config."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .training.capacity import train_worker_resources, training_cpus
from .training.engine import BatchPlan, engine_zero_stage, plan_batches, scaled_lr


@dataclass(frozen=True)
class RunPlan:
    """A training run's derived settings for its config's train.num_workers."""

    batch: BatchPlan
    lr: float
    """Peak learning rate at this global batch (optim.lr scaled by optim.lr_scaling)."""
    zero_stage: int
    """The ZeRO stage DeepSpeed runs (bf16 at stage 0 runs as 1)."""
    per_worker: dict[str, float]
    """Ray resources of each train worker."""
    total: dict[str, float]
    """Ray resources held at once: the workers, one read task and, on CPU, the validation evaluator."""


def plan_run(cfg: Config) -> RunPlan:
    """The run plan of `cfg`; raises ValueError when its batch arithmetic does not work out."""
    batch = plan_batches(cfg, cfg.train.num_workers)
    per_worker = train_worker_resources(cfg)
    total = {key: amount * cfg.train.num_workers for key, amount in per_worker.items()}
    total["CPU"] = training_cpus(cfg, read_tasks=1, evaluator=not cfg.train.use_gpu)
    return RunPlan(batch, scaled_lr(cfg, batch), engine_zero_stage(cfg), per_worker, total)


def _resources(resources: dict[str, float]) -> str:
    return ", ".join(f"{key} {amount:g}" for key, amount in resources.items())


def format_run_plan(cfg: Config, plan: RunPlan) -> str:
    """The plan as the lines `--dry-run` prints."""
    batch = plan.batch
    fixed = "fixed: train.batch_size" if not cfg.deepspeed.grad_accum else "grows with train.num_workers"
    return "\n".join(
        [
            f"run {cfg.run.name!r}: {cfg.train.num_workers} worker(s) on {'GPU' if cfg.train.use_gpu else 'CPU'}, "
            f"{cfg.train.epochs} epochs, storage {cfg.run.storage_path}",
            f"batch: {batch.micro_batch_size} per worker x {batch.grad_accum} accumulation x "
            f"{batch.world_size} worker(s) = global {batch.global_batch_size} ({fixed})",
            f"learning rate: peak {plan.lr:.4g} (optim.lr {cfg.optim.lr:g} at batch {cfg.train.batch_size}, "
            f"optim.lr_scaling={cfg.optim.lr_scaling}), warm-up {cfg.optim.warmup_epochs:g} epoch(s), cosine to "
            f"{cfg.optim.min_lr_ratio:g} x peak",
            f"deepspeed: ZeRO-{plan.zero_stage}, bf16 {'on' if cfg.deepspeed.bf16 else 'off'}",
            f"resources: each worker {_resources(plan.per_worker)}; at once {_resources(plan.total)} "
            f"(with one read task at data.read_num_cpus={cfg.data.read_num_cpus:g}"
            f"{'' if cfg.train.use_gpu else ' and the validation evaluator'})",
        ]
    )
