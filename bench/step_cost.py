"""Host-side cost of training the `unav100_i3d` model, on CPU: ops, collectives, validation, checkpoint size.

    python bench/step_cost.py            # all four measurements (a few minutes on 2 cores)
    python bench/step_cost.py --record   # update the tracked bench/results/step_cost.json

What each figure measures (the `unav100_i3d` preset: d_model 512, i3d features, 100 classes; generated
i3d-profile data, --limit videos per split, cached under --workdir):
  ops_per_step                  aten ops (torch profiler events named aten::*, nested ones included) in one
                                optimizer step at batch 16 on 1 rank, bf16 + ZeRO-2 with the EMA on: moving the
                                batch to the device, forward, loss, backward, DeepSpeed step, EMA update (the
                                loop's own `_run_epoch`); mean over --profile-steps steps after one warm-up step.
  collectives_per_step_ema_on   torch.distributed calls per optimizer step on 2 gloo ranks (bf16, ZeRO-2, batch
  collectives_per_step_ema_off  4 = 2 ranks x micro 2), with the EMA on and off; counted by wrapping the
                                torch.distributed collectives in the benchmark's processes only.
  validation_s_1_worker         wall time of the training loop's validation (`_maybe_validate`: predict the
  validation_s_2_workers        validation split with the current weights, score it) on 1 and on 2 gloo ranks,
                                one torch thread per rank, measured on rank 0 until every rank is done.
  checkpoint_bytes              bytes of one checkpoint directory (`save_checkpoint`, 1 rank, bf16 + ZeRO-2,
                                EMA on) as the training loop writes it every checkpointed epoch.
Writes bench/results/local/step_cost.json (`--record`: the tracked bench/results/ one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.outputs import add_output_args, output_path  # noqa: E402

COLLECTIVES = (
    "all_reduce",
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_object",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "broadcast",
    "broadcast_object_list",
    "reduce",
    "all_to_all",
    "all_to_all_single",
    "barrier",
    "gather",
    "scatter",
    "send",
    "recv",
    "isend",
    "irecv",
)
"""torch.distributed functions counted as collective calls (every one a round of communication)."""


def preset(args, *extra: str):
    from clasp_dist.config import load_config

    return load_config(
        [
            "config=unav100_i3d",
            f"data.synth_limit_per_split={args.limit}",
            f"data.cache_dir={args.workdir}/datasets",
            "deepspeed.bf16=true",
            "deepspeed.zero_stage=2",
            "train.progress_bar=off",
            "train.torch_threads=1",
            *extra,
        ]
    )


def dataset(args) -> str:
    from clasp_dist.data import ensure_dataset

    return ensure_dataset(preset(args).data, workers=2, progress=False)


def join_group(rank: int, world: int, port: int) -> None:
    import torch.distributed as dist

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        DS_ACCELERATOR="cpu",
    )
    dist.init_process_group("gloo", rank=rank, world_size=world)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def training_setup(cfg, root: str, rank: int, world: int, videos: int):
    """(engine, ema, batches on this rank, loop context) for `videos` training rows split over the ranks."""
    from clasp_dist.data.batch import collate_rows
    from clasp_dist.data.split_reader import iter_local_samples
    from clasp_dist.model import build_model
    from clasp_dist.training.driver import dataset_info
    from clasp_dist.training.engine import build_engine, plan_batches
    from clasp_dist.training.worker import build_ema, seed_everything

    info, _ = dataset_info(root, cfg)
    plan = plan_batches(cfg, world)
    seed_everything(0)
    engine = build_engine(build_model(cfg, info), cfg, plan, steps_per_epoch=8, device=torch.device("cpu"))
    ema = build_ema(engine, cfg)
    rows = [row for _, row in zip(range(videos), iter_local_samples(root, "train", cfg.data, cfg.storage))]
    mine = rows[rank::world]
    micro = plan.micro_batch_size
    batches = [collate_rows(mine[i : i + micro], info.num_classes) for i in range(0, len(mine), micro)]
    ctx = loop_context(cfg, info, root, rank, world, videos)
    return engine, ema, batches, ctx


def loop_context(cfg, info, root: str, rank: int, world: int, videos: int):
    from clasp_dist.training.worker import LoopContext

    return LoopContext(
        cfg=cfg,
        info=info,
        data_root=root,
        run_dir="",
        rank=rank,
        world_size=world,
        device=torch.device("cpu"),
        interactive=False,
        num_train_videos=videos,
    )


def run_steps(engine, ema, batches, ctx) -> int:
    """The training loop's own epoch function over `batches`; returns the optimizer steps taken."""
    from clasp_dist.training.worker import _run_epoch

    return _run_epoch(engine, ema, batches, ctx, epoch=0, writer=None, global_step=0)["global_step"]


def checkpoint_bytes(engine, ema, ctx, cfg) -> int:
    """Bytes of the checkpoint directory the loop writes for one epoch (rank 0 of 1)."""
    from clasp_dist.training.checkpoint import TrainState, save_checkpoint
    from clasp_dist.training.worker import _inference_weights

    state = TrainState(epoch=0, global_step=1, best_val=0.0, best_epoch=0)
    ema_state = ema.state_dict()
    weights = _inference_weights(engine, ema, cfg, ema_state)
    with tempfile.TemporaryDirectory(prefix="step-cost-ckpt-") as tmp:
        save_checkpoint(Path(tmp), engine, 0, ctx.device, state, cfg, ctx.info, weights, ema_state)
        return sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())


def measure_ops(args, root: str) -> dict:
    """ops_per_step and checkpoint_bytes, in this process (1 gloo rank)."""
    from torch.profiler import ProfilerActivity, profile

    join_group(0, 1, free_port())
    torch.set_num_threads(1)
    cfg = preset(args, "data.root=" + root)
    engine, ema, batches, ctx = training_setup(cfg, root, 0, 1, 16 * (1 + args.profile_steps))
    run_steps(engine, ema, batches[:1], ctx)  # warm-up: first-step allocations and lazy inits
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        steps = run_steps(engine, ema, batches[1:], ctx)
    names = [e.name for e in prof.events()]
    aten = [n for n in names if n.startswith("aten::")]
    top = prof.key_averages().table(sort_by="count", row_limit=15)
    result = {
        "ops_per_step": round(len(aten) / steps, 1),
        "ops_per_step_steps_profiled": steps,
        "checkpoint_bytes": checkpoint_bytes(engine, ema, ctx, cfg),
    }
    print(top)
    import torch.distributed as dist

    dist.destroy_process_group()
    return result


def count_collectives(counter: dict) -> None:
    """Wrap this process's torch.distributed collectives so each call adds one to `counter["calls"]`."""
    import torch.distributed as dist

    for name in COLLECTIVES:
        original = getattr(dist, name, None)
        if original is None:
            continue

        def wrapped(*a, _original=original, **kw):
            counter["calls"] += 1
            return _original(*a, **kw)

        setattr(dist, name, wrapped)


def _collectives_rank(rank: int, port: int, args, root: str, out: str) -> None:
    join_group(rank, 2, port)
    torch.set_num_threads(1)
    counter = {"calls": 0}
    count_collectives(counter)
    result = {}
    for ema_on in (True, False):
        cfg = preset(args, "data.root=" + root, "train.batch_size=4", f"optim.ema_decay={0.999 if ema_on else 0}")
        engine, ema, batches, ctx = training_setup(cfg, root, rank, 2, 4 * (1 + args.collective_steps))
        run_steps(engine, ema, batches[:1], ctx)
        counter["calls"] = 0
        steps = run_steps(engine, ema, batches[1:], ctx)
        result["on" if ema_on else "off"] = counter["calls"] / steps
    Path(out, f"collectives_rank{rank}.json").write_text(json.dumps(result))
    import torch.distributed as dist

    dist.destroy_process_group()


def measure_collectives(args, root: str) -> dict:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_collectives_rank, args=(free_port(), args, root, out), nprocs=2, join=True)
        ranks = [json.loads(Path(out, f"collectives_rank{r}.json").read_text()) for r in range(2)]
    return {
        "collectives_per_step_ema_on": ranks[0]["on"],
        "collectives_per_step_ema_off": ranks[0]["off"],
        "collectives_per_step_rank1": ranks[1],
    }


def _validation_rank(rank: int, world: int, port: int, args, root: str, out: str) -> None:
    import torch.distributed as dist

    from clasp_dist.model import build_model
    from clasp_dist.training.driver import dataset_info
    from clasp_dist.training.worker import _maybe_validate, seed_everything

    join_group(rank, world, port)
    torch.set_num_threads(1)
    # train.use_gpu=true only selects the loop's in-process validation path (the one GPU runs take); the
    # device stays the CPU
    cfg = preset(args, "data.root=" + root, "train.epochs=1", "train.use_gpu=true")
    info, _ = dataset_info(root, cfg)
    seed_everything(0)
    weights = build_model(cfg, info).state_dict()
    ctx = loop_context(cfg, info, root, rank, world, args.limit)
    dist.barrier()
    start = time.perf_counter()
    val = _maybe_validate(weights, ctx, epoch=0)
    dist.barrier()
    elapsed = time.perf_counter() - start
    Path(out, f"validation_{world}_rank{rank}.json").write_text(json.dumps({"seconds": elapsed, "val": val}))
    dist.destroy_process_group()


def measure_validation(args, root: str) -> dict:
    import torch.multiprocessing as mp

    result = {}
    with tempfile.TemporaryDirectory() as out:
        for world in (1, 2):
            mp.spawn(_validation_rank, args=(world, free_port(), args, root, out), nprocs=world, join=True)
            rank0 = json.loads(Path(out, f"validation_{world}_rank0.json").read_text())
            result[f"validation_s_{world}_worker{'s' if world > 1 else ''}"] = round(rank0["seconds"], 2)
            result[f"validation_val_average_{world}"] = rank0["val"]["val_average"]
    return result


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=32, help="videos per split of the generated i3d data")
    parser.add_argument("--profile-steps", type=int, default=2, help="optimizer steps profiled for ops_per_step")
    parser.add_argument("--collective-steps", type=int, default=2, help="optimizer steps counted per EMA setting")
    parser.add_argument("--workdir", default="/tmp/clasp-step-cost")
    parser.add_argument(
        "--only", nargs="+", choices=("ops", "collectives", "validation"), default=("ops", "collectives", "validation")
    )
    add_output_args(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    root = dataset(args)
    started = time.time()
    out = output_path(args, "step_cost.json")
    result = {
        "preset": "unav100_i3d",
        "precision": "bf16",
        "zero_stage": 2,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "videos_per_split": args.limit,
    }
    for part, measure in (
        ("ops", measure_ops),
        ("collectives", measure_collectives),
        ("validation", measure_validation),
    ):
        if part in args.only:
            t0 = time.time()
            result.update(measure(args, root))
            print(f"[step_cost] {part}: {time.time() - t0:.0f} s", flush=True)
            result["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
            result["total_s"] = round(time.time() - started, 1)
            out.write_text(json.dumps(result, indent=1) + "\n")  # after each part: a run cut short keeps them
    print(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
