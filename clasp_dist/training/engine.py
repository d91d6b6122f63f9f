"""DeepSpeed engine from our config: explicit JSON config (never "auto"), AdamW, warm-up + cosine.

`deepspeed` is imported lazily, inside `build_engine`, so CPU-only drivers never need it, and only
after DS_ACCELERATOR is set from the worker's own device (`use_accelerator_for`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from .. import compat
from ..config import Config


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
    """global batch = micro * grad_accum * world (docs/training.md, batch size).

    deepspeed.grad_accum=0 keeps train.batch_size as the global batch, which must divide evenly;
    deepspeed.micro_batch_size=0 then means batch_size / world_size per worker (no accumulation), so one
    preset serves every worker count that divides its batch. deepspeed.grad_accum >= 1 fixes the per-worker
    batch instead: the global batch grows with the workers.
    """
    configured = cfg.deepspeed.micro_batch_size
    if cfg.deepspeed.grad_accum:
        if configured < 1:
            raise ValueError(
                f"deepspeed.grad_accum={cfg.deepspeed.grad_accum} sets a per-worker batch, which needs "
                f"deepspeed.micro_batch_size >= 1 (it is {configured})"
            )
        return BatchPlan(world_size, configured, cfg.deepspeed.grad_accum)
    micro = configured or cfg.train.batch_size // world_size
    per_step = micro * world_size
    if micro < 1 or cfg.train.batch_size % per_step:
        raise ValueError(
            f"train.batch_size={cfg.train.batch_size} is not a multiple of deepspeed.micro_batch_size={configured} "
            f"{'(= batch_size / num_workers) ' if not configured else ''}x train.num_workers={world_size}; pick "
            f"train.batch_size as a multiple of {per_step if configured else world_size}"
            f"{', or deepspeed.micro_batch_size=0 (batch_size / num_workers)' if configured else ''}, or a "
            f"per-worker batch (deepspeed.grad_accum >= 1)"
        )
    return BatchPlan(world_size, micro, cfg.train.batch_size // per_step)


LR_SCALING = {"none": lambda ratio: 1.0, "linear": lambda ratio: ratio, "sqrt": math.sqrt}
"""optim.lr_scaling: the peak lr's factor for a global batch `ratio` times train.batch_size."""


def scaled_lr(cfg: Config, plan: BatchPlan) -> float:
    """The peak learning rate at this plan's global batch: optim.lr, scaled by optim.lr_scaling from the
    reference batch train.batch_size (optim.lr itself whenever the global batch is train.batch_size)."""
    return cfg.optim.lr * LR_SCALING[cfg.optim.lr_scaling](plan.global_batch_size / cfg.train.batch_size)


def deepspeed_config(cfg: Config, plan: BatchPlan) -> dict:
    """The DeepSpeed JSON config (ZeRO stage, bf16, clipping, batch arithmetic) for this run.

    With bf16, gradients accumulate in fp32 (`data_types.grad_accum_dtype`). DeepSpeed 0.19.8 has no
    fp32 accumulation at ZeRO-0 (NotImplementedError), so bf16 at zero_stage=0 runs its BF16_Optimizer,
    which DeepSpeed selects at stage 1: fp32 master weights and Adam state split over the ranks, the
    bf16 module and its gradient all-reduce as at ZeRO-0.
    """
    stage = engine_zero_stage(cfg)
    config = {
        "train_batch_size": plan.global_batch_size,
        "train_micro_batch_size_per_gpu": plan.micro_batch_size,
        "gradient_accumulation_steps": plan.grad_accum,
        "gradient_clipping": cfg.optim.grad_clip,
        "zero_optimization": {"stage": stage},
        "bf16": {"enabled": cfg.deepspeed.bf16},
        "fp16": {"enabled": False},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }
    if cfg.deepspeed.bf16:
        config["data_types"] = {"grad_accum_dtype": "fp32"}
    return config


def engine_zero_stage(cfg: Config) -> int:
    """The ZeRO stage DeepSpeed runs: the configured one, except bf16 at 0 -> 1 (see deepspeed_config)."""
    return 1 if cfg.deepspeed.bf16 and cfg.deepspeed.zero_stage == 0 else cfg.deepspeed.zero_stage


def accelerator_name(device: torch.device) -> str:
    """DeepSpeed's accelerator for a worker's own device: "cuda" when it holds a GPU, else "cpu"."""
    return "cuda" if torch.device(device).type == "cuda" else "cpu"


def use_accelerator_for(device: torch.device) -> str:
    """Point DeepSpeed at this worker's device before it is imported (its accelerator is chosen once, at
    import, from DS_ACCELERATOR); never inherit the driver's choice. Returns the accelerator name."""
    name = accelerator_name(device)
    os.environ["DS_ACCELERATOR"] = name
    from deepspeed.accelerator import get_accelerator

    chosen = get_accelerator().device_name()
    if chosen != name:
        raise RuntimeError(
            f"DeepSpeed's accelerator is {chosen!r} but this worker runs on {device}: deepspeed was "
            f"imported in this process before the worker set DS_ACCELERATOR={name}"
        )
    return name


def skip_cpu_inference_comm_op() -> None:
    """Keep DeepSpeed from JIT-compiling its CPU shared-memory all-reduce op when the engine starts: only
    `inference_all_reduce` uses it, never training, and its build costs ~40 s on a fresh machine under a lock file
    that a killed build leaves behind (every later start then hangs). Marked incompatible, DeepSpeed does not
    build it and collectives go through torch.distributed, as they do on GPUs."""
    compat.mark_deepspeed_op_incompatible("deepspeed_shm_comm")


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


def build_engine(
    model: torch.nn.Module, cfg: Config, plan: BatchPlan, steps_per_epoch: int, device: torch.device | None = None
):
    """Wrap `model` in a DeepSpeed engine with a client AdamW (no JIT-compiled optimizer) and LambdaLR.

    `device` is the worker's own device; it picks DeepSpeed's accelerator (default: the model's device).
    """
    if use_accelerator_for(device if device is not None else next(model.parameters()).device) == "cpu":
        skip_cpu_inference_comm_op()
    import deepspeed

    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.optim.weight_decay), lr=scaled_lr(cfg, plan), betas=tuple(cfg.optim.betas)
    )
    total = steps_per_epoch * cfg.train.epochs
    warmup = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warmup, cfg.optim.min_lr_ratio))
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, plan)
    )
    return engine


def fp32_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every floating parameter's fp32 master weight (DeepSpeed's copy when it keeps one: bf16 at any
    stage, ZeRO-3), and floating buffers as fp32, keyed like `module.state_dict()`, on the module's device.

    Collective when DeepSpeed holds the masters partitioned (bf16, ZeRO-3): every rank must call it.
    Without a DeepSpeed master (fp32 at ZeRO 0-2) the module's own fp32 parameters are the masters.
    """
    masters = {}
    for name, param in module.named_parameters():
        master = _deepspeed_master(param)
        masters[name] = (master if master is not None else param.detach()).float()
    out = {}
    for key, value in module.state_dict().items():
        if value.dtype.is_floating_point:
            out[key] = masters.get(key, value.detach().float())
    return out


def _deepspeed_master(param: torch.nn.Parameter) -> torch.Tensor | None:
    """DeepSpeed's full fp32 copy of `param` (gathered: a collective), or None where the parameter itself
    is the whole fp32 master (no DeepSpeed, or fp32 at ZeRO 0-2)."""
    partitioned = hasattr(param, "ds_id")  # ZeRO-3: the module holds only a shard
    low_precision = param.dtype != torch.float32 and hasattr(param, "_hp_mapping")
    if not (partitioned or low_precision):
        return None
    from deepspeed.utils import safe_get_full_fp32_param

    return safe_get_full_fp32_param(param)
