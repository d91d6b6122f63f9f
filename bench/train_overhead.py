"""Training-path overhead: Ray Train + Ray Data + DeepSpeed vs a plain PyTorch loop, and 1 vs 2 workers.

    python bench/train_overhead.py [--videos 192] [--epochs 3] [--preset small]

All variants train the same CLASP config on the same rows (the first N training videos of the
generated `small` dataset, decoded once into memory) with the same micro-batch size and one torch
thread per worker:
  plain       a single-process loop: collate_rows -> model -> loss -> backward -> AdamW (no Ray, no DeepSpeed)
  ray+ds x1   TorchTrainer, 1 worker: ray.data.from_items(rows) -> get_dataset_shard -> iter_train_batches
              -> the training loop's own epoch function (training.worker._run_epoch: DeepSpeed ZeRO-0
              forward/backward/step, EMA, loss terms kept on the device)
  ray+ds x2   the same with 2 workers (each gets half the rows)
videos/s is measured inside the loop over epochs 2..N (epoch 1 warms up). Writes bench/results/local/train_overhead.json
(`--record`: the tracked bench/results/ one).
Target: ray+ds x1 >= 0.9x plain.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402

from bench.outputs import add_output_args, output_path  # noqa: E402
from clasp_dist.config import from_dict, load_config, to_dict  # noqa: E402
from clasp_dist.data import ensure_dataset  # noqa: E402
from clasp_dist.data.batch import collate_rows, iter_train_batches  # noqa: E402
from clasp_dist.data.manifest import DatasetInfo  # noqa: E402
from clasp_dist.data.sample_rows import ROW_COLUMNS  # noqa: E402
from clasp_dist.data.split_reader import iter_local_samples  # noqa: E402
from clasp_dist.model import build_model  # noqa: E402
from clasp_dist.model.losses import compute_loss  # noqa: E402
from clasp_dist.training.driver import dataset_info  # noqa: E402
from clasp_dist.training.engine import build_engine, param_groups, plan_batches  # noqa: E402
from clasp_dist.training.worker import LoopContext, _run_epoch, build_ema  # noqa: E402


def load_rows(cfg, n: int) -> tuple[list[dict], DatasetInfo]:
    root = ensure_dataset(cfg.data, cfg.storage)
    info, _ = dataset_info(root, cfg)
    rows = []
    for row in iter_local_samples(root, "train", cfg.data, cfg.storage):
        rows.append({k: row[k] for k in ROW_COLUMNS if k != "error"})  # the training columns
        if len(rows) == n:
            break
    return rows, info


def plain_loop(cfg, info: DatasetInfo, rows: list[dict], epochs: int) -> float:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(cfg, info)
    opt = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr)
    micro = cfg.deepspeed.micro_batch_size
    timed_videos, timed_s = 0, 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        for i in range(0, len(rows), micro):
            batch = collate_rows(rows[i : i + micro], info.num_classes)
            out = model(batch.visual, batch.audio, batch.mask, batch.labels)
            loss, _ = compute_loss(out, batch.labels, batch.mask, cfg.loss)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            opt.step()
        if epoch > 0:
            timed_s += time.perf_counter() - start
            timed_videos += len(rows)
    return timed_videos / timed_s


def ray_worker(config: dict) -> None:
    import ray.train

    cfg = from_dict(config["config"])
    info = DatasetInfo(**config["dataset"])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    context = ray.train.get_context()
    world = context.get_world_size()
    device = torch.device("cpu")
    engine = build_engine(build_model(cfg, info), cfg, plan_batches(cfg, world), steps_per_epoch=100, device=device)
    ema = build_ema(engine, cfg)
    ctx = LoopContext(
        cfg=cfg,
        info=info,
        data_root="",
        run_dir="",
        rank=context.get_world_rank(),
        world_size=world,
        device=device,
        interactive=False,
        num_train_videos=config["videos"],
    )
    shard = ray.train.get_dataset_shard("train")
    timed_videos, timed_s, step = 0, 0.0, 0
    for epoch in range(config["epochs"]):
        batches = iter_train_batches(shard, cfg.deepspeed.micro_batch_size, info.num_classes, device=device)
        stats = _run_epoch(engine, ema, batches, ctx, epoch, writer=None, global_step=step)
        step = stats["global_step"]
        if epoch > 0:
            timed_s += stats["epoch_time_s"]
            timed_videos += stats["train_videos"] / world
    if ray.train.get_context().get_world_rank() == 0:  # Result.metrics is None without a checkpoint: use a file
        Path(config["out"]).write_text(json.dumps({"videos_per_s": timed_videos / timed_s}))


def ray_deepspeed(cfg, info: DatasetInfo, rows: list[dict], epochs: int, workers: int) -> float:
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    wcfg = from_dict(
        {**to_dict(cfg), "train": {**to_dict(cfg)["train"], "batch_size": cfg.deepspeed.micro_batch_size * workers}}
    )
    trainer = TorchTrainer(
        ray_worker,
        train_loop_config={
            "config": to_dict(wcfg),
            "dataset": info.__dict__,
            "epochs": epochs,
            "videos": len(rows),
            "out": f"/tmp/clasp-overhead-{workers}.json",
        },
        scaling_config=ray.train.ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 0.5}),
        run_config=ray.train.RunConfig(name=f"overhead-{workers}-{time.time_ns()}", storage_path="/tmp/clasp-bench"),
        datasets={"train": ray.data.from_items(rows)},
    )
    trainer.fit()
    # rank 0's figure covers its share of the rows: scale by the world size
    return json.loads(Path(f"/tmp/clasp-overhead-{workers}.json").read_text())["videos_per_s"] * workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=192)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--preset", default="small")
    add_output_args(parser)
    args = parser.parse_args()
    cfg = load_config([f"config={args.preset}"])
    rows, info = load_rows(cfg, args.videos)
    import ray

    ray.init(num_cpus=2, logging_config=ray.LoggingConfig(log_level="WARNING"))
    figures = {"plain": plain_loop(cfg, info, rows, args.epochs)}
    figures["ray+ds x1"] = ray_deepspeed(cfg, info, rows, args.epochs, 1)
    figures["ray+ds x2"] = ray_deepspeed(cfg, info, rows, args.epochs, 2)
    ray.shutdown()
    out = {
        "preset": args.preset,
        "videos": len(rows),
        "epochs_timed": args.epochs - 1,
        "micro_batch_size": cfg.deepspeed.micro_batch_size,
        "d_model": cfg.model.d_model,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "videos_per_s": figures,
        "ray_ds_vs_plain": figures["ray+ds x1"] / figures["plain"],
        "two_vs_one_worker": figures["ray+ds x2"] / figures["ray+ds x1"],
    }
    print(f"{'path':<12} {'videos/s':>9}")
    for name, value in figures.items():
        print(f"{name:<12} {value:9.1f}")
    print(f"ray+ds x1 / plain = {out['ray_ds_vs_plain']:.2f} (target >= 0.9); x2 / x1 = {out['two_vs_one_worker']:.2f}")
    path = output_path(args, "train_overhead.json")
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
