"""First GPU figures in one short device call: model cost, then training through `jobs/train.py`'s own path.

    python bench/gpu_step.py                      # on a CUDA machine (the device call: docs/benchmarks.md)
    python bench/gpu_step.py --data ROOT          # a prepared dataset instead of the generated one
    ./dev bench/gpu_step.py --cpu                 # the same script on CPU, small: checks the script, not the GPU

First a preflight: the Python version and every package the training path imports, with their versions,
printed and in the JSON; the script stops at once, naming each package that does not import.
Then two stages, each written to the JSON as soon as it ends (a call cut short still returns what it measured):
  1. model cost: `bench/model_cost.py --device cuda --bf16` (forward + loss + backward, d=256 and 512, no Ray);
  2. training: the `unav100_i3d` preset (d=512) in bf16 with ZeRO-2 on 1 GPU (and 2 when present), on a
     generated i3d-profile dataset of --limit videos per split (cached under --workdir), --epochs epochs per
     worker count through `run_training` (Ray Train + Ray Data + DeepSpeed), validation after the last epoch
     only (in-process on rank 0's GPU, as during any GPU training), then the test pass with one evaluator
     actor on half a GPU (the GPUs are free by then). Epoch 1 is a warm-up, excluded from the summary; peak
     GPU memory is reset at the start of every epoch, so each epoch's figure is its own.
Meant for one device call (10 minutes at most; docs/benchmarks.md's command stops it at 570 s). Writes
bench/results/local/gpu_step.json (gpu_step_cpu.json with --cpu); `--record` the tracked bench/results/ one,
`--out PATH` anywhere (the device call: $OUT/gpu_step.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import model_cost  # noqa: E402
from bench.outputs import add_output_args, output_path  # noqa: E402
from clasp_dist.cli import init_ray  # noqa: E402
from clasp_dist.config import load_config  # noqa: E402
from clasp_dist.data import ensure_dataset  # noqa: E402
from clasp_dist.training.driver import run_training  # noqa: E402

MODEL_COST_CPU = [
    "--bf16",
    "--dims",
    "64",
    "--heads",
    "2",
    "--T",
    "32",
    "--batch",
    "2",
    "--warmup",
    "0",
    "--iters",
    "1",
]
"""The --cpu check of stage 1: the same code on a model small enough for a 2-core machine."""


CARRIED = ("torch", "numpy", "ray", "deepspeed", "pydantic", "pyarrow", "fsspec", "yaml", "tensorboard")
"""Every package the training path imports: a device machine must import each before the bench spends time."""


def preflight() -> dict:
    """Python version and each carried package's version, printed; exits naming every package that fails to
    import (a wheel that did not travel costs seconds here, not the whole device call)."""
    import importlib
    import platform

    found, missing = {"python": platform.python_version()}, []
    for name in CARRIED:
        try:
            found[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception as err:  # noqa: BLE001 - report every failure, then stop
            missing.append(f"{name} ({type(err).__name__}: {err})")
    print("[gpu_step] preflight: " + ", ".join(f"{k} {v}" for k, v in found.items()), flush=True)
    if missing:
        sys.exit("[gpu_step] preflight failed: cannot import " + "; ".join(missing))
    return found


def worker_cpus(args, workers: int, cpus: int) -> float:
    """CPUs per train worker, leaving room for what runs beside the workers during training: two Ray Data read
    tasks (data.read_num_cpus=0.25 each) and, on CPU, the validation evaluator actor (eval.actor_num_cpus=0.5).
    Workers that hold every CPU starve the validation's reads and training waits forever (seen: the first
    --cpu runs on 2 cores stalled at the first validation with 0 CPUs free)."""
    if args.cpu:
        return max(0.25, (cpus - 0.5 - 2 * 0.25) / workers)
    return float(max(1, min(8, (cpus - 2) // workers)))  # GPU: validation runs in-process, whole CPUs for threads


def overrides(args, workers: int, root: str, cpus: int) -> list[str]:
    """The unav100_i3d preset in bf16 + ZeRO-2 for one worker count (micro batch = 16 / workers)."""
    base = [
        "config=unav100_i3d",
        f"data.root={root}",
        f"train.epochs={args.epochs}",
        f"train.num_workers={workers}",
        "deepspeed.bf16=true",
        "deepspeed.zero_stage=2",
        f"train.eval_every={args.epochs}",
        f"train.cpus_per_worker={worker_cpus(args, workers, cpus)}",
        "train.progress_bar=off",
        f"run.output_dir={args.workdir}/runs",
        f"run.storage_path={args.workdir}/runs",
        f"run.name=gpu-step-{'cpu' if args.cpu else 'gpu'}{workers}-{int(time.time())}",
        "train.max_failures=0",
    ]
    if args.cpu:  # the smoke check: a small model, the default CPU evaluator (one actor, half a CPU)
        return base + ["model.d_model=64", "model.n_heads=2", "eval.actor_num_cpus=0.5"]
    return base + ["train.use_gpu=true", "eval.actor_num_gpus=0.5", "eval.actor_num_cpus=2"]


def summarise(epochs: list[dict], workers: int) -> dict:
    """Per-epoch figures, and their mean over the epochs after the warm-up (epoch 1)."""
    keys = ("epoch", "epoch_time_s", "videos_per_s", "peak_gpu_mem_gb", "loss", "val_average")
    timed = epochs[1:] or epochs
    return {
        "workers": workers,
        "epochs": [{k: e.get(k) for k in keys} for e in epochs],
        "timed_epochs": [e["epoch"] + 1 for e in timed],
        "videos_per_s": statistics.mean(e["videos_per_s"] for e in timed),
        "epoch_time_s": statistics.mean(e["epoch_time_s"] for e in timed),
        "peak_gpu_mem_gb": max((e.get("peak_gpu_mem_gb") or 0.0) for e in timed),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per worker count (the first is a warm-up)")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="videos per split of the generated i3d data (default 1024; 24 with --cpu)",
    )
    parser.add_argument("--data", default="", help="a prepared dataset root instead of generated data")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=None,
        help="worker counts (default: 1, and 2 when two GPUs are present)",
    )
    parser.add_argument("--workdir", default="/tmp/clasp-gpu-bench")
    parser.add_argument("--cpu", action="store_true", help="run on CPU, small (checks the script, not the GPU)")
    add_output_args(parser)
    args = parser.parse_args(argv)
    args.limit = args.limit or (24 if args.cpu else 1024)
    return args


def train_figures(args, root: str, workers: int, cpus: int) -> dict:
    """One training run of `overrides(...)`: the epoch summary, test mAP and wall time."""
    summary = run_training(load_config(overrides(args, workers, root, cpus)))
    epochs = [json.loads(line) for line in (summary.run_dir / "metrics.jsonl").read_text().splitlines()]
    run = {
        **summarise(epochs, workers),
        "test_average": summary.metrics["test"]["average"],
        "wall_time_s": summary.metrics["wall_time_s"],
        "run_dir": str(summary.run_dir),
    }
    print(
        f"[gpu_step] {workers} worker(s): {run['videos_per_s']:.1f} videos/s, {run['epoch_time_s']:.1f} s/epoch, "
        f"peak {run['peak_gpu_mem_gb']:.2f} GiB (after warm-up), test avg mAP {run['test_average']:.2f}",
        flush=True,
    )
    return run


def main(argv=None) -> None:
    args = parse_args(argv)
    versions = preflight()
    import torch

    gpus = torch.cuda.device_count()
    if not args.cpu and gpus == 0:
        sys.exit("bench/gpu_step.py needs a CUDA GPU (use --cpu to check the script on CPU)")
    path = output_path(args, "gpu_step_cpu.json" if args.cpu else "gpu_step.json")
    started = time.time()
    out = {
        "device": "cpu" if args.cpu else torch.cuda.get_device_name(0),
        "gpus_present": gpus,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "precision": "bf16",
        "zero_stage": 2,
        "preset": "unav100_i3d",
        "stages_done": [],
        "preflight": versions,
    }

    def save(stage: str) -> None:
        out["stages_done"].append(stage)
        out["total_s"] = round(time.time() - started, 1)
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"[gpu_step] {stage} done at {out['total_s']:.0f} s; wrote {path}", flush=True)

    mc_args = MODEL_COST_CPU if args.cpu else ["--device", "cuda", "--bf16"]
    out["model_cost"] = model_cost.measure(model_cost.parse_args(mc_args))
    save("model_cost")

    cpus = os.cpu_count() or 2
    data_cfg = load_config(
        ["config=unav100_i3d", f"data.synth_limit_per_split={args.limit}", f"data.cache_dir={args.workdir}/datasets"]
    ).data
    t0 = time.time()
    root = args.data or ensure_dataset(data_cfg, workers=min(16, cpus), progress=False)
    out.update(
        data=args.data or f"generated i3d profile, {args.limit} videos per split",
        data_root=root,
        dataset_generation_s=round(time.time() - t0, 1),
        runs=[],
    )
    save("dataset")
    init_ray()
    for workers in args.workers or ([1, 2] if gpus >= 2 else [1]):
        out["runs"].append(train_figures(args, root, workers, cpus))
        save(f"train_{workers}_worker")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
