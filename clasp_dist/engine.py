"""DeepSpeed engine from our config: explicit JSON config (never "auto"), AdamW, warm-up + cosine.

`deepspeed` is imported lazily, inside `build_engine`, so CPU-only drivers never need it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import Config


@dataclass(frozen=True)
class BatchPlan:
    """DeepSpeed batch arithmetic for one world size (derived, never written back to the config)."""

    world_size: int
    micro_batch_size: int
    grad_accum: int

    @property
    def global_batch_size(self) -> int:
        return self.micro_batch_size * self.grad_accum * self.world_size


def plan_batches(cfg: Config, world_size: int) -> BatchPlan:
    """global batch = micro * grad_accum * world; the config's train.batch_size must divide evenly."""
    micro = cfg.deepspeed.micro_batch_size
    per_step = micro * world_size
    if cfg.train.batch_size % per_step:
        raise ValueError(
            f"train.batch_size={cfg.train.batch_size} is not a multiple of deepspeed.micro_batch_size={micro} "
            f"x {world_size} workers; pick train.batch_size as a multiple of {per_step}")
    return BatchPlan(world_size, micro, cfg.train.batch_size // per_step)


def deepspeed_config(cfg: Config, plan: BatchPlan) -> dict:
    """The DeepSpeed JSON config (ZeRO stage, bf16, clipping, batch arithmetic) for this run."""
    return {
        "train_batch_size": plan.global_batch_size,
        "train_micro_batch_size_per_gpu": plan.micro_batch_size,
        "gradient_accumulation_steps": plan.grad_accum,
        "gradient_clipping": cfg.optim.grad_clip,
        "zero_optimization": {"stage": cfg.deepspeed.zero_stage},
        "bf16": {"enabled": cfg.deepspeed.bf16},
        "fp16": {"enabled": False},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices/kernels only; biases, norms and 1-D parameters are exempt."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 and "norm" not in name.lower() else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float):
    """lr multiplier: linear warm-up from ~0 to 1, then cosine to `min_ratio`."""
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps - 1) if total_steps > 1 else 0

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_engine(model: torch.nn.Module, cfg: Config, plan: BatchPlan, steps_per_epoch: int):
    """Wrap `model` in a DeepSpeed engine with a client AdamW (no JIT-compiled optimizer) and LambdaLR."""
    import deepspeed

    optimizer = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                  betas=tuple(cfg.optim.betas))
    total = steps_per_epoch * cfg.train.epochs
    warmup = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warmup, cfg.optim.min_lr_ratio))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=deepspeed_config(cfg, plan))
    return engine
