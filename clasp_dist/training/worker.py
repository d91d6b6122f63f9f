"""The per-worker training loop run by Ray Train: engine, steps, EMA, validation cadence, checkpoints.

Runs inside each Ray Train worker (`train_loop_per_worker`). The training split arrives as this
worker's Ray Data shard; it carries video-level labels only (the source never parses segments of
the training split). Validation runs on rank 0 with EMA weights: in-process on its own device while
the workers hold GPUs (an evaluator actor asking for another GPU would never be scheduled), else
through the distributed evaluator's actor pool.

GPU path: DeepSpeed's accelerator is chosen from each worker's own device (never the driver's), every
collective's tensor lives on the worker's device (NCCL takes CUDA tensors only), and loss terms stay on
the device until a log interval asks for them (one host sync, not one per term per micro-batch).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import Config, from_dict
from ..data.batch import iter_train_batches
from ..data.manifest import DatasetInfo
from ..inference.predict import evaluate_weights, predict_local, score
from ..model import build_model
from ..model.losses import LossMeter, compute_loss
from ..quiet_logs import evaluation_warnings_quiet, quiet_ray_loggers
from ..tracking import mlflow_epoch_metrics, start_mlflow_run
from .checkpoint import TrainState, restore_checkpoint, restore_rng, save_checkpoint
from .ema import EMA, ema_interval
from .engine import build_engine, engine_zero_stage, fp32_weights, plan_batches
from .publish import publish_run_files, restore_run_files

NOT_VALIDATED = -1.0
"""val_average reported for epochs without validation (ranks them below every validated checkpoint)."""


@dataclass
class LoopContext:
    cfg: Config
    info: DatasetInfo
    data_root: str
    run_dir: str
    rank: int
    world_size: int
    device: torch.device
    interactive: bool
    num_train_videos: int


def worker_log(message: str) -> None:
    """One line to the worker's real stdout (Ray forwards it to the driver once; Ray Train's print
    patch would route print() through the root logger and show it twice)."""
    sys.__stdout__.write(message + "\n")
    sys.__stdout__.flush()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads(cfg: Config) -> None:
    """One intra-op thread per reserved CPU: oversubscribed OpenMP threads spin against Ray Data's
    read tasks and run ~10x slower on small machines (measured on 2 cores)."""
    torch.set_num_threads(cfg.train.torch_threads or max(1, int(cfg.train.cpus_per_worker)))


def steps_per_epoch(num_train_videos: int, world_size: int, micro: int, grad_accum: int) -> int:
    micro_batches = math.ceil(math.ceil(num_train_videos / world_size) / micro)
    return max(1, math.ceil(micro_batches / grad_accum))


def train_loop_per_worker(loop_config: dict) -> None:
    """Entry point for `TorchTrainer(train_loop_per_worker=...)`; `loop_config` is plain JSON-able data."""
    import ray.train

    quiet_ray_loggers()
    ctx_train = ray.train.get_context()
    cfg = from_dict(loop_config["config"])
    ctx = LoopContext(
        cfg=cfg,
        info=DatasetInfo(**loop_config["dataset"]),
        data_root=loop_config["data_root"],
        run_dir=loop_config["run_dir"],
        rank=ctx_train.get_world_rank(),
        world_size=ctx_train.get_world_size(),
        device=ray.train.torch.get_device(),
        interactive=bool(loop_config.get("interactive")),
        num_train_videos=int(loop_config["num_train_videos"]),
    )
    configure_threads(cfg)
    if ctx.rank == 0:  # resumed on a replacement node: continue the run's metrics.jsonl from storage
        restore_run_files(cfg, ctx.run_dir, ["metrics.jsonl"])
    _record_workers(ctx)
    seed_everything(cfg.train.seed)  # identical initial weights on every rank
    model = build_model(cfg, ctx.info).to(ctx.device)
    plan = plan_batches(cfg, ctx.world_size)
    n_steps = steps_per_epoch(ctx.num_train_videos, ctx.world_size, plan.micro_batch_size, plan.grad_accum)
    engine = build_engine(model, cfg, plan, n_steps, device=ctx.device)
    ema = build_ema(engine, cfg)
    state, saved_rng = _restore(engine, ema, ctx)
    seed_everything(cfg.train.seed + 1000 * ctx.rank)  # per-rank dropout streams
    if saved_rng is not None:
        restore_rng(saved_rng, ctx.device)
    shard = ray.train.get_dataset_shard("train")
    writer = _summary_writer(ctx)
    mlflow = _mlflow_run(ctx, loop_config.get("mlflow_uri"))
    for epoch in range(state.epoch + 1, cfg.train.epochs):
        stats = _run_epoch(engine, ema, _epoch_batches(shard, ctx, epoch), ctx, epoch, writer, state.global_step)
        state = TrainState(epoch, stats["global_step"], state.best_val, state.best_epoch)
        validating, checkpointing = validation_due(cfg, epoch), checkpoint_due(cfg, epoch)
        # whole weights only where needed, once for both (collectives every rank joins under bf16 ZeRO)
        ema_state = ema.state_dict() if ema is not None and (validating or checkpointing) else None
        weights = _inference_weights(engine, ema, cfg, ema_state) if validating or checkpointing else None
        val = _maybe_validate(weights, ctx, epoch) if validating else None
        if val is not None and val["val_average"] > state.best_val:
            state = TrainState(epoch, state.global_step, val["val_average"], epoch)
        metrics = {
            **stats,
            **(val or {"val_average": NOT_VALIDATED}),
            "best_val": state.best_val,
            "best_epoch": state.best_epoch,
            "epoch": epoch,
        }
        _log_epoch(ctx, metrics, writer)
        if mlflow is not None:
            mlflow.log_metrics(mlflow_epoch_metrics(metrics, NOT_VALIDATED), step=epoch)
            metrics["mlflow_run_id"] = mlflow.active_run().info.run_id  # the driver logs the final pass there
        _save_and_report(engine, ema_state, weights, ctx, state, metrics, checkpointing)
    if writer is not None:
        writer.close()
    if mlflow is not None:
        mlflow.end_run()


def _record_workers(ctx: LoopContext) -> None:
    """`workers.json` in the run directory (rank 0): where each rank runs (node id, IP, host, pid)."""
    import socket

    import ray
    import torch.distributed as dist

    me = {
        "rank": ctx.rank,
        "node_id": ray.get_runtime_context().get_node_id(),
        "ip": ray.util.get_node_ip_address(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
    }
    everyone = [me]
    if dist.is_initialized() and dist.get_world_size() > 1:
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, me)
    if ctx.rank == 0:
        Path(ctx.run_dir).mkdir(parents=True, exist_ok=True)
        (Path(ctx.run_dir) / "workers.json").write_text(json.dumps(everyone, indent=1) + "\n")


def build_ema(engine, cfg: Config) -> EMA | None:
    """The EMA of the engine's fp32 master weights (None when optim.ema_decay is 0)."""
    if cfg.optim.ema_decay <= 0:
        return None
    return EMA(engine.module, cfg.optim.ema_decay, every=ema_interval(cfg.optim.ema_every, engine_zero_stage(cfg)))


def _restore(engine, ema: EMA | None, ctx: LoopContext) -> tuple[TrainState, dict | None]:
    """Load the latest checkpoint Ray Train hands this attempt, if any: (train state, this rank's RNG)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return TrainState(epoch=-1, global_step=0, best_val=NOT_VALIDATED, best_epoch=-1), None
    with checkpoint.as_directory() as directory:
        state, rng = restore_checkpoint(Path(directory), engine, ctx.rank, ema)
    if ctx.rank == 0:
        worker_log(
            f"[clasp-dist] resumed after epoch {state.epoch + 1} (step {state.global_step}, "
            f"best val {state.best_val * 100:.2f}); continuing with epoch {state.epoch + 2}"
        )
    return state, rng


def _progress(ctx: LoopContext, epoch: int, total: int):
    wanted = ctx.cfg.train.progress_bar
    if ctx.rank != 0 or wanted == "off" or (wanted == "auto" and not ctx.interactive):
        return None
    from ray.experimental.tqdm_ray import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}", unit="video")


def _epoch_batches(shard, ctx: LoopContext, epoch: int):
    cfg = ctx.cfg
    return iter_train_batches(
        shard,
        batch_size=plan_batches(cfg, ctx.world_size).micro_batch_size,
        num_classes=ctx.info.num_classes,
        shuffle_buffer=cfg.data.shuffle_buffer,
        seed=cfg.train.seed + epoch,
        device=ctx.device,
        max_skipped_fraction=cfg.data.max_skipped_fraction,
    )


def _run_epoch(engine, ema: EMA | None, batches, ctx: LoopContext, epoch: int, writer, global_step: int) -> dict:
    """One pass over `batches` (Batch objects on ctx.device): forward, loss, backward, step, EMA.

    Loss terms accumulate on the device (LossMeter); the host reads them once per
    train.log_every_steps optimizer steps (TensorBoard, rank 0) and once at the end of the epoch.
    """
    cfg = ctx.cfg
    engine.train()
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)  # peak_gpu_mem_gb is this epoch's
    epoch_terms, window_terms = LossMeter(), LossMeter()
    n_videos, start = 0, time.perf_counter()
    bar = _progress(ctx, epoch, math.ceil(ctx.num_train_videos / ctx.world_size))
    for batch in batches:
        out = engine(batch.visual, batch.audio, batch.mask, batch.labels)
        loss, terms = compute_loss(out, batch.labels, batch.mask, cfg.loss)
        engine.backward(loss)
        boundary = engine.is_gradient_accumulation_boundary()
        engine.step()
        epoch_terms.add(terms)
        if writer is not None:
            window_terms.add(terms)
        if boundary:
            global_step += 1
            if ema is not None:
                ema.update(engine.module)
            if writer is not None and global_step % cfg.train.log_every_steps == 0:
                _log_window(writer, window_terms, engine, global_step)
        n_videos += len(batch.video_id)
        if bar is not None:
            bar.update(len(batch.video_id))
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - start
    videos = _sum_across_ranks(n_videos, ctx.device)
    memory = (
        {"peak_gpu_mem_gb": torch.cuda.max_memory_allocated(ctx.device) / 2**30} if ctx.device.type == "cuda" else {}
    )
    return {
        **epoch_terms.means(),
        **memory,
        "lr": float(engine.get_lr()[0]),
        "videos_per_s": videos / max(elapsed, 1e-9),
        "epoch_time_s": elapsed,
        "global_step": global_step,
        "train_videos": videos,
    }


def _log_window(writer, window: LossMeter, engine, global_step: int) -> None:
    """TensorBoard scalars for the micro-batches since the last log: the interval's one host sync."""
    writer.add_scalar("train/loss", window.means()["loss"], global_step)
    writer.add_scalar("train/lr", engine.get_lr()[0], global_step)
    window.reset()


def _sum_across_ranks(value: int, device: torch.device) -> int:
    """Sum an int over the ranks; the tensor lives on the worker's device (NCCL accepts CUDA tensors only)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    tensor = collective_tensor([value], device)
    dist.all_reduce(tensor)
    return int(tensor.item())


def collective_tensor(values: list[int], device: torch.device) -> torch.Tensor:
    """An int64 tensor for a collective, on `device` (the worker's own: cuda under NCCL, cpu under gloo)."""
    return torch.tensor(values, dtype=torch.int64, device=device)


def _inference_weights(engine, ema: EMA | None, cfg: Config, ema_state: dict | None = None) -> dict:
    """fp32 CPU state dict for evaluation/export, from the fp32 master weights (never the bf16 module
    copy): EMA weights when enabled (from `ema_state`, `ema.state_dict()`, when given). A collective on
    every rank under bf16 and ZeRO-3."""
    if ema is not None and cfg.eval.use_ema:
        return ema.weights_for(engine.module, ema_state)
    full = {k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items() if not v.dtype.is_floating_point}
    full.update({k: v.cpu().clone() for k, v in fp32_weights(engine.module).items()})
    return full


def validation_mode(cfg: Config) -> str:
    """How validation runs during training: "in-process" on rank 0's own device while the train workers
    hold GPUs (evaluator actors asking for more GPUs would wait forever, and the other ranks would time
    out in the barrier), else "actors" (the distributed evaluator's pool; it asks for no GPU here either)."""
    return "in-process" if cfg.train.use_gpu else "actors"


def validation_config(cfg: Config) -> Config:
    """The config validation runs with during training: never requests GPUs (eval.actor_num_gpus=0)."""
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, actor_num_gpus=0.0))


def validate(weights: dict, ctx: LoopContext, split: str = "validation"):
    """Score `weights` on `split` without asking Ray for a GPU (see validation_mode)."""
    cfg = validation_config(ctx.cfg)
    if validation_mode(cfg) == "in-process":
        predictions = predict_local(weights, cfg, ctx.info, ctx.data_root, split, device=str(ctx.device))
        return score(predictions, ctx.info, cfg)
    return evaluate_weights(weights, cfg, ctx.info, ctx.data_root, split)


def validation_due(cfg: Config, epoch: int) -> bool:
    """Validate after this epoch: every train.eval_every epochs and after the last."""
    return epoch == cfg.train.epochs - 1 or (epoch + 1) % cfg.train.eval_every == 0


def checkpoint_due(cfg: Config, epoch: int) -> bool:
    """Checkpoint after this epoch: every train.checkpoint_every epochs, every validated epoch (the best one
    must be exportable) and the last."""
    return validation_due(cfg, epoch) or (epoch + 1) % cfg.train.checkpoint_every == 0


def _maybe_validate(weights: dict, ctx: LoopContext, epoch: int) -> dict | None:
    if not validation_due(ctx.cfg, epoch):
        return None
    with evaluation_warnings_quiet():  # the test pass after training reports them, once
        result = validate(weights, ctx) if ctx.rank == 0 else None
    _barrier()
    if result is None:
        return {"val_average": NOT_VALIDATED}
    return {
        "val_average": float(result.average),
        **{f"val_map@{t:g}": float(m) for t, m in zip(result.tiou_thresholds, result.mAP)},
    }


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _mlflow_run(ctx: LoopContext, uri: str | None):
    """Rank 0's MLflow run when tracking.mlflow_uri is set (`uri`: made absolute by the driver), else None."""
    if ctx.rank != 0 or not uri:
        return None
    return start_mlflow_run(ctx.cfg, uri, ctx.run_dir)


def _summary_writer(ctx: LoopContext):
    if ctx.rank != 0:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(Path(ctx.run_dir) / "tensorboard"))


def format_epoch_line(metrics: dict, epochs: int) -> str:
    val = metrics.get("val_average", NOT_VALIDATED)
    val_text = f"val mAP {val * 100:5.2f}" if val != NOT_VALIDATED else "val mAP   -  "
    terms = " ".join(f"{k[5:]} {v:.4f}" for k, v in metrics.items() if k.startswith("loss_"))
    return (
        f"epoch {metrics['epoch'] + 1:>3}/{epochs} | loss {metrics.get('loss', float('nan')):.4f} ({terms}) | "
        f"lr {metrics['lr']:.2e} | {val_text} | {metrics['videos_per_s']:.1f} videos/s | "
        f"{metrics['epoch_time_s']:.1f}s"
    )


def _log_epoch(ctx: LoopContext, metrics: dict, writer) -> None:
    if ctx.rank != 0:
        return
    worker_log(f"[clasp-dist] {format_epoch_line(metrics, ctx.cfg.train.epochs)}")
    with open(Path(ctx.run_dir) / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(metrics, sort_keys=True) + "\n")
    if writer is not None:
        for key, value in metrics.items():
            if key.startswith(("val_", "loss")) and value != NOT_VALIDATED:
                writer.add_scalar(f"epoch/{key}", value, metrics["epoch"])
        writer.add_scalar("epoch/videos_per_s", metrics["videos_per_s"], metrics["epoch"])
        writer.flush()
    publish_run_files(ctx.cfg, ctx.run_dir, ["metrics.jsonl", "tensorboard", "workers.json"])  # off this node


def _save_and_report(
    engine,
    ema_state: dict | None,
    weights: dict | None,
    ctx: LoopContext,
    state: TrainState,
    metrics: dict,
    checkpointing: bool = True,
) -> None:
    """Report the epoch's metrics, with a checkpoint when `checkpointing` (checkpoint_due)."""
    import ray.train

    if not checkpointing:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="clasp-ckpt-") as tmp:
        save_checkpoint(Path(tmp), engine, ctx.rank, ctx.device, state, ctx.cfg, ctx.info, weights, ema_state)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
